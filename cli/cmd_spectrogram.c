/* noisefloor spectrogram IN -o OUT.png: a picture of a sound (dsp/nf_image.h). */
#include "cli.h"
#include "nf_audio.h"
#include "nf_image.h"
#include "options.h"

#include <stdio.h>

static int run(int argc, char **argv)
{
    const char *out = NULL;
    nf_spectrogram_opts so;
    nf_spectrogram_opts_default(&so);
    if (!so.width) so.width = 800;
    if (!so.height) so.height = 400;
    if (!so.n_fft) so.n_fft = 1024;
    if (so.range_db <= 0) so.range_db = 80;
    int linear = !so.log_freq;
    const nf_opt opts[] = {
        {"output", 'o', NF_OPT_STRING, &out, "OUT.png", "picture to write", 0, 0, NULL, NULL},
        {"width", 'W', NF_OPT_INT, &so.width, NULL, "pixels", 16, 16384, NULL, NULL},
        {"height", 'H', NF_OPT_INT, &so.height, NULL, "pixels", 16, 16384, NULL, NULL},
        {"n-fft", 0, NF_OPT_INT, &so.n_fft, NULL, "FFT size (power of two)", 16, 65536, NULL, NULL},
        {"range", 0, NF_OPT_FLOAT, &so.range_db, "DB", "dynamic range shown", 10, 200, NULL, NULL},
        {"linear", 0, NF_OPT_FLAG, &linear, NULL, "linear frequency axis (default: logarithmic)", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {"spectrogram", "IN.wav -o OUT.png [options]",
                              "Draw a log-magnitude spectrogram (time left to right, frequency upwards).", opts, 1, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    so.log_freq = !linear;
    if (!out) return nf_cli_error("spectrogram: missing -o OUT.png"), 2;
    if (so.n_fft & (so.n_fft - 1)) return nf_cli_error("--n-fft: %d is not a power of two", so.n_fft), 2;
    if (nf_cli_skip_existing && nf_cli_file_exists(out)) {
        printf("skipped existing %s\n", out);
        return 0;
    }
    nf_audio a = {0};
    nf_status st = nf_audio_read(pos[0], 0, &a);
    if (!st) st = nf_spectrogram_png(out, &a, &so);
    nf_audio_free(&a);
    if (st) return nf_cli_fail_status(st);
    return 0;
}

const nf_cli_command nf_cmd_spectrogram = {"spectrogram", "draw a spectrogram picture of a sound", run};
