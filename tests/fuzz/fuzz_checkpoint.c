/* libFuzzer target: the checkpoint loader. The input is a would-be model file: it is
 * validated in memory (nf_st_open_memory; every tensor read back through the typed
 * readers), then written to a temporary file and read with nf_checkpoint_read_info,
 * nf_checkpoint_load and nf_train_state_load, exactly as `noisefloor generate`, the
 * plugin and `--resume` open them. */
#include "nf_checkpoint.h"
#include "nf_safetensors.h"
#include "nf_unet.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmp_path[64];

static void cleanup(void)
{
    if (tmp_path[0]) unlink(tmp_path);
}

static void exercise_memory(const uint8_t *data, size_t size)
{
    nf_st_file *f = NULL;
    if (nf_st_open_memory(data, size, "fuzz.safetensors", &f) != NF_OK) {
        if (f) abort();
        return;
    }
    for (int i = 0; i < nf_st_count(f); i++) {
        const nf_st_info *t = nf_st_at(f, i);
        if (t->end < t->begin) abort();
        const unsigned char *bytes = nf_st_data(f, t);
        /* Touch the first and last byte: ASan checks that they are inside the file. */
        volatile unsigned char sink = 0;
        if (t->end > t->begin) sink ^= bytes[0] ^ bytes[t->end - t->begin - 1];
        (void)sink;
        if (nf_st_find(f, t->name) == NULL) abort();
        if (t->count <= 4096) {
            float fv[4096];
            int64_t iv[4096];
            (void)nf_st_read_f32(f, t->name, fv, (size_t)t->count, 0, NULL);
            (void)nf_st_read_i64(f, t->name, iv, (size_t)t->count, 0, NULL);
        }
    }
    for (int i = 0; i < nf_st_meta_count(f); i++) {
        const char *k, *v;
        nf_st_meta_at(f, i, &k, &v);
        if (!k || !v) abort();
        (void)strlen(k);
        (void)strlen(v);
    }
    (void)nf_st_meta_get(f, "noisefloor.config");
    nf_st_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tmp_path[0]) {
        snprintf(tmp_path, sizeof tmp_path, "/tmp/nf-fuzz-ckpt-%d.safetensors", (int)getpid());
        atexit(cleanup);
    }
    exercise_memory(data, size);

    FILE *f = fopen(tmp_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f)) abort();

    nf_checkpoint_info info;
    if (nf_checkpoint_read_info(tmp_path, &info) == NF_OK) {
        /* Only build the network when it is small: a valid header may describe a
         * model of any size (see RESULTS.md: the loader allocates it before checking
         * that the file holds that many weights). The work per sample at length 64 is
         * a cheap proxy for the size. */
        if (nf_unet_flops(&info.config, 64) < 2e8) {
            nf_unet *net = NULL;
            float *ema = NULL;
            nf_checkpoint_info info2;
            if (nf_checkpoint_load(tmp_path, 1, 64, NF_CKPT_USE_EMA, &net, &ema, &info2) == NF_OK) {
                if (!net) abort();
                if (info2.param_count != (long long)nf_unet_num_params(net)) abort();
            }
            nf_unet_free(net);
            free(ema);
        }
    }
    nf_train_state s;
    memset(&s, 0, sizeof s);
    if (nf_train_state_load(tmp_path, 0, &s) == NF_OK) nf_train_state_free(&s);
    return 0;
}
