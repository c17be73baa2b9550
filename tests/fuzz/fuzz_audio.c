/* libFuzzer target: the audio loader through the dataset path. The input is one sound
 * file (any format libsndfile sniffs from its content), put alone in a temporary folder
 * and loaded with nf_dataset_open, which decodes it (nf_audio_read, bounded to the clip
 * length), converts channels, resamples, trims, crops or pads and normalises it, the
 * way `noisefloor train` reads a corpus. The options vary with the input's size so that
 * every conversion is reached. A clip that loads must be finite and within the peak. */
#include "nf_audio.h"
#include "nf_dataset.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], file[96];

static void cleanup(void)
{
    if (file[0]) unlink(file);
    if (dir[0]) rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/nf-fuzz-audio-%d", (int)getpid());
        snprintf(file, sizeof file, "%s/clip.wav", dir);
        (void)mkdir(dir, 0700);
        atexit(cleanup);
    }
    FILE *f = fopen(file, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f)) abort();

    static const int rates[3] = {8000, 22050, 44100};
    nf_dataset_opts o;
    nf_dataset_opts_default(&o);
    o.channels = 1 + (int)(size & 1);
    o.rate = rates[(size >> 1) % 3];
    o.length = 512;
    o.trim_silence = (size >> 3) & 1;
    o.quality = NF_RESAMPLE_FASTEST;
    nf_dataset ds;
    memset(&ds, 0, sizeof ds);
    nf_status st = nf_dataset_open(dir, &o, &ds);
    if (st == NF_OK) {
        if (ds.n != 1 || ds.channels != o.channels || ds.length != o.length) abort();
        for (size_t i = 0; i < (size_t)ds.channels * (size_t)ds.length; i++)
            if (!isfinite(ds.audio[i]) || fabsf(ds.audio[i]) > o.peak * 1.0001f) abort();
    } else if (nf_last_error()[0] == 0) {
        abort(); /* every failure names the problem */
    }
    nf_dataset_free(&ds);

    char *comment = NULL;
    if (nf_audio_read_comment(file, &comment) == NF_OK && comment) (void)strlen(comment);
    free(comment);
    return 0;
}
