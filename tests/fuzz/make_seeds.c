/* make_seeds OUTDIR: write the seed corpora of the fuzz targets with the project's own
 * writers (nf_checkpoint_save, nf_train_state_save, nf_st_write, nf_audio_write) plus a
 * few hand-written edge cases, into OUTDIR/<target>/. Run once by hand; the output is
 * committed as tests/fuzz/corpus/ (small files only: libFuzzer's -max_len follows them). */
#include "nf_audio.h"
#include "nf_checkpoint.h"
#include "nf_json.h"
#include "nf_safetensors.h"
#include "nf_test_model.h"
#include "nf_unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *out;

static void die(const char *what)
{
    fprintf(stderr, "make_seeds: %s: %s\n", what, nf_last_error());
    exit(1);
}

static void path_of(char *buf, size_t n, const char *target, const char *name)
{
    snprintf(buf, n, "%s/%s", out, target);
    mkdir(buf, 0755);
    snprintf(buf, n, "%s/%s/%s", out, target, name);
}

static void text(const char *target, const char *name, const char *s)
{
    char p[1024];
    path_of(p, sizeof p, target, name);
    if (nf_write_file_atomic(p, s, strlen(s))) die(p);
}

static void checkpoints(void)
{
    char p[1024];
    static const char *names[3] = {"model-f32.safetensors", "model-classes-f16.safetensors",
                                   "model-attn-ema.safetensors"};
    for (int variant = 0; variant < 3; variant++) {
        nf_test_model_opts o;
        nf_test_model_opts_init(&o); /* 8 kHz mono, 64 samples */
        o.net.base = 4;
        o.seed = 7 + (uint64_t)variant;
        if (variant == 1) {
            o.class_names = "kick,snare";
            o.f16 = 1;
        }
        if (variant == 2) {
            o.net.attn[1] = o.net.mid_attn = 1;
            o.ema = 1;
        }
        path_of(p, sizeof p, "checkpoint", names[variant]);
        if (nf_test_model_save(&o, p)) die(p);
        if (variant == 0) {
            /* A training state for the same network (moments: a copy of the weights). */
            nf_unet *net;
            if (nf_test_model_create(&o, &net, NULL)) die("unet");
            size_t np = nf_unet_num_params(net);
            float *ema = malloc(sizeof(float) * np);
            memcpy(ema, nf_unet_params(net), sizeof(float) * np);
            nf_train_state s;
            memset(&s, 0, sizeof s);
            int64_t order[5] = {3, 1, 4, 0, 2};
            s.n_params = np;
            s.params = nf_unet_params(net);
            s.adam_m = ema;
            s.adam_v = ema;
            s.step = 12;
            s.epoch = 2;
            s.order = order;
            s.n_order = 5;
            s.order_pos = 1;
            s.loss_scale = 1;
            path_of(p, sizeof p, "checkpoint", "model.state.safetensors");
            if (nf_train_state_save(p, &s)) die(p);
            free(ema);
            nf_unet_free(net);
        }
    }
    /* Plain safetensors files with every dtype and a scalar. */
    float f[6] = {1, -2, 3.5f, 0, 1e-3f, 65504};
    int64_t i64[3] = {-1, 0, 1};
    uint8_t u8[4] = {0, 1, 2, 255};
    double f64[2] = {0.5, -0.25};
    nf_st_tensor t[5] = {
        {"a", NF_DT_F32, 2, {2, 3}, f},
        {"b", NF_DT_F16, 1, {6}, f},
        {"c", NF_DT_I64, 1, {3}, i64},
        {"d", NF_DT_U8, 0, {0}, u8},
        {"e", NF_DT_F64, 2, {1, 2}, f64},
    };
    nf_st_meta m[2] = {{"format", "noisefloor"}, {"format_version", "1"}};
    path_of(p, sizeof p, "checkpoint", "dtypes.safetensors");
    if (nf_st_write(p, t, 5, m, 2)) die(p);
    path_of(p, sizeof p, "checkpoint", "empty.safetensors");
    if (nf_st_write(p, NULL, 0, NULL, 0)) die(p);
}

static void sounds(void)
{
    char p[1024];
    struct {
        const char *name;
        int ch, frames, rate;
        nf_file_format fmt;
        nf_sample_format bits;
        const char *comment;
    } v[] = {
        {"mono16.wav", 1, 200, 8000, NF_FILE_WAV, NF_SAMPLE_PCM16, NULL},
        {"stereo24.wav", 2, 150, 44100, NF_FILE_WAV, NF_SAMPLE_PCM24, "{\"seed\":1}"},
        {"float.wav", 1, 100, 22050, NF_FILE_WAV, NF_SAMPLE_FLOAT32, NULL},
        {"mono.flac", 1, 300, 48000, NF_FILE_FLAC, NF_SAMPLE_PCM16, "a comment"},
        {"stereo.aiff", 2, 100, 96000, NF_FILE_AIFF, NF_SAMPLE_PCM16, NULL},
        {"six.wav", 6, 60, 8000, NF_FILE_WAV, NF_SAMPLE_PCM16, NULL},
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        nf_audio a;
        if (nf_audio_alloc(&a, v[k].ch, v[k].frames, v[k].rate)) die("alloc");
        for (int c = 0; c < a.channels; c++)
            for (int i = 0; i < a.frames; i++)
                a.data[(size_t)c * a.frames + i] = 0.8f * expf(-i / 30.0f) * sinf(0.3f * i * (c + 1));
        path_of(p, sizeof p, "audio", v[k].name);
        if (nf_audio_write(p, &a, v[k].fmt, v[k].bits, v[k].comment)) die(p);
        nf_audio_free(&a);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds OUTDIR\n");
        return 2;
    }
    out = argv[1];
    mkdir(out, 0755);
    checkpoints();
    sounds();
    text("json", "object.json", "{\"a\":[1,-2.5e3,true,false,null],\"b\":{\"c\":\"\\u00e9\\ud83d\\ude00\\n\"}}");
    text("json", "numbers.json", "[0,-0,1e308,-1e-308,18446744073709551615,-9223372036854775808,0.1]");
    text("json", "nested.json", "[[[[[[[[[[{\"x\":[]}]]]]]]]]]]");
    text("json", "string.json", "\"tab\\t quote\\\" slash\\/ back\\\\ \\u0000 \"");
    text("json", "config.json",
         "{\"in_ch\":1,\"out_ch\":1,\"base\":4,\"n_levels\":2,\"mults\":[1,2],\"blocks\":1,"
         "\"attn\":[0,1],\"mid_attn\":1,\"heads\":1,\"groups\":2,\"num_classes\":0,\"dropout\":0}");
    nf_model_desc d;
    nf_model_desc_init(&d);
    d.sample_rate = 44100;
    d.channels = 1;
    d.length = 8192;
    d.num_classes = 1;
    strcpy(d.class_names[0], "kick");
    char *js;
    if (nf_model_desc_to_json(&d, &js)) die("desc json");
    text("json", "model.json", js);
    free(js);
    text("jobs", "jobs.txt",
         "# a job file\n"
         "generate -m kit.safetensors --class kick -n 8 --seed 100 -o out/kicks\n"
         "noisefloor vary -m kit.safetensors in/snare.wav --strength 0.3 -n 4 -o 'out/my snares'\n"
         "inpaint in.wav --region 0.2:0.35 --jumps 3 -o out\n"
         "inpaint in.wav --region=0.1s:0.25s -o out\n");
    text("jobs", "options.txt",
         "generate -n8 -o\"a b\" --sampler=ddim --eta 0.5 --cfg 3 --bits 24 --format flac --seed 0xff\n"
         "generate -a --length 1.5 -j 2 --batch 4 --rate 48000 -- -odd-name\n"
         "generate --steps 20 --class any \\#notacomment # a comment\n");
    text("jobs", "bad.txt", "generate --count\ngenerate \"unterminated\ngenerate --rate 1e9 --seed -1 --nope\n");
    return 0;
}
