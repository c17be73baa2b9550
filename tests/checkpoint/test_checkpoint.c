/* Model checkpoints and training state (model/nf_checkpoint.h): save and load give the
 * identical network (F32 exact, F16 to half precision), the description and config
 * survive, EMA weights are kept apart or used on request, a newer format_version is
 * NF_ERR_VERSION, missing or bad keys and mismatched shapes are named, and the
 * training state round-trips bit for bit. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_checkpoint.h"
#include "nf_safetensors.h"
#include "nf_test.h"

static char build_root[2048] = ".", source_root[2048] = ".";

/* Check with tests/reference/safetensors_np.py (the reference's validation rules) that a
 * C-written file is valid safetensors, when /usr/bin/python3 with numpy exists. */
static void python_validates(const char *path)
{
    char cmd[9000];
    if (system("test -x /usr/bin/python3 && /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        printf("NOTE: Python check of %s NOT run (no /usr/bin/python3 with numpy)\n", path);
        return;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/reference/safetensors_np.py' '%s' >/dev/null", source_root, path);
    CHECK(system(cmd) == 0, "safetensors_np.py rejects %s", path);
}

static void path_in(char *out, size_t n, const char *rel) { snprintf(out, n, "%s/%s", build_root, rel); }

static nf_unet_config small_config(void)
{
    nf_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 1;
    c.out_ch = 1;
    c.base = 8;
    c.n_levels = 2;
    c.mults[0] = 1;
    c.mults[1] = 2;
    c.blocks = 1;
    c.attn[1] = 1;
    c.mid_attn = 1;
    c.heads = 2;
    c.groups = 4;
    c.num_classes = 3;
    c.dropout = 0.1f;
    return c;
}

static void fill_desc(nf_model_desc *d)
{
    nf_model_desc_init(d);
    strcpy(d->representation, "stft");
    d->n_fft = 512;
    d->hop = 128;
    d->compress_power = 0.5f;
    d->lead_frames = 4;
    d->norm_scale = 1.7f;
    d->sample_rate = 44100;
    d->channels = 2;
    d->length = 22050;
    strcpy(d->objective, "x0");
    strcpy(d->schedule, "linear");
    d->T = 1000;
    d->learned_variance = 0;
    d->num_classes = 3;
    strcpy(d->class_names[0], "kick");
    strcpy(d->class_names[1], "snare \"tight\"");
    strcpy(d->class_names[2], "h\xc3\xa9-hat");
    d->steps = 12345;
    d->examples_seen = 12345LL * 16;
    d->final_loss = 0.0123456789;
    d->class_files[0] = 10;
    d->class_files[1] = 20;
    d->class_files[2] = 30;
    d->seed = UINT64_MAX - 5;
    d->n_extra = 2;
    strcpy(d->extra_key[0], "dataset");
    strcpy(d->extra_value[0], "/data/kit\n2");
    strcpy(d->extra_key[1], "note");
    strcpy(d->extra_value[1], "");
}

static int same_desc(const nf_model_desc *a, const nf_model_desc *b)
{
    int ok = strcmp(a->representation, b->representation) == 0 && a->n_fft == b->n_fft && a->hop == b->hop &&
             a->compress_power == b->compress_power && a->norm_scale == b->norm_scale &&
             a->log_floor == b->log_floor && a->phase_bins == b->phase_bins && a->lead_frames == b->lead_frames &&
             a->sample_rate == b->sample_rate && a->channels == b->channels && a->length == b->length &&
             strcmp(a->objective, b->objective) == 0 && strcmp(a->schedule, b->schedule) == 0 && a->T == b->T &&
             a->learned_variance == b->learned_variance && a->num_classes == b->num_classes &&
             a->steps == b->steps && a->examples_seen == b->examples_seen && a->final_loss == b->final_loss &&
             a->seed == b->seed && a->n_extra == b->n_extra;
    for (int i = 0; ok && i < a->num_classes; i++)
        ok = strcmp(a->class_names[i], b->class_names[i]) == 0 && a->class_files[i] == b->class_files[i];
    for (int i = 0; ok && i < a->n_extra; i++)
        ok = strcmp(a->extra_key[i], b->extra_key[i]) == 0 && strcmp(a->extra_value[i], b->extra_value[i]) == 0;
    return ok;
}

/* Copy an F32 file, replacing metadata `key` by `value` (NULL: drop it). */
static nf_status copy_with_meta(const char *src, const char *dst, const char *key, const char *value)
{
    nf_st_file *f;
    nf_status st = nf_st_open(src, &f);
    if (st) return st;
    int n = nf_st_count(f), nm = nf_st_meta_count(f), k = 0;
    nf_st_tensor *t = calloc((size_t)n + 1, sizeof *t);
    nf_st_meta *m = calloc((size_t)nm + 1, sizeof *m);
    for (int i = 0; i < n; i++) {
        const nf_st_info *in = nf_st_at(f, i);
        t[i].name = in->name;
        t[i].dtype = in->dtype;
        t[i].ndim = in->ndim;
        memcpy(t[i].shape, in->shape, sizeof in->shape);
        t[i].data = nf_st_data(f, in); /* F32 raw bytes are floats on this (little-endian) host */
    }
    for (int i = 0; i < nm; i++) {
        const char *mk, *mv;
        nf_st_meta_at(f, i, &mk, &mv);
        if (strcmp(mk, key) == 0) {
            if (!value) continue;
            mv = value;
        }
        m[k].key = mk;
        m[k++].value = mv;
    }
    st = nf_st_write(dst, t, n, m, k);
    free(t);
    free(m);
    nf_st_close(f);
    return st;
}

static void test_model_round_trip(void)
{
    char path[4096], path16[4096], bad[4096];
    path_in(path, sizeof path, "ckpt_model.safetensors");
    path_in(path16, sizeof path16, "ckpt_model_f16.safetensors");
    path_in(bad, sizeof bad, "ckpt_model_bad.safetensors");
    nf_unet_config cfg = small_config();
    nf_unet *net = NULL;
    CHECK_OK(nf_unet_create(&cfg, 1, 64, &net));
    if (!net) return;
    nf_unet_init_params(net, 7);
    size_t np = nf_unet_num_params(net);
    float *params = nf_unet_params(net);
    float *ema = malloc(sizeof(float) * np);
    for (size_t i = 0; i < np; i++) ema[i] = params[i] * 0.5f + 1e-3f * (float)(i % 17);
    nf_model_desc desc;
    fill_desc(&desc);
    CHECK_OK(nf_checkpoint_save(path, net, ema, &desc, 0));
    python_validates(path);

    nf_unet *net2 = NULL;
    float *ema2 = NULL;
    nf_checkpoint_info info;
    CHECK_OK(nf_checkpoint_load(path, 1, 64, 0, &net2, &ema2, &info));
    if (net2) {
        CHECK(nf_unet_num_params(net2) == np, "param count");
        CHECK(memcmp(nf_unet_params(net2), params, sizeof(float) * np) == 0, "raw weights identical");
        CHECK(ema2 && memcmp(ema2, ema, sizeof(float) * np) == 0, "EMA identical");
        CHECK(info.has_ema && !info.stored_f16 && info.format_version == 1 && info.param_count == (long long)np,
              "info flags");
        CHECK(memcmp(&info.config, &cfg, sizeof cfg) == 0, "config identical");
        CHECK(same_desc(&info.desc, &desc), "description identical");
        char h[17];
        nf_weights_hash(params, np, h);
        CHECK(strcmp(info.hash, h) == 0, "hash of the loaded weights %s vs %s", info.hash, h);
        /* The same network: same output for the same input. */
        float x[64], t = 10, out1[64], out2[64];
        int y = 1;
        for (int i = 0; i < 64; i++) x[i] = sinf((float)i * 0.3f);
        CHECK_OK(nf_unet_forward(net, x, &t, &y, 1, 64, out1, 0, 0));
        CHECK_OK(nf_unet_forward(net2, x, &t, &y, 1, 64, out2, 0, 0));
        CHECK(memcmp(out1, out2, sizeof out1) == 0, "identical forward pass");
    }
    nf_unet_free(net2);
    free(ema2);

    /* Using the EMA weights for generation. */
    net2 = NULL;
    CHECK_OK(nf_checkpoint_load(path, 1, 64, NF_CKPT_USE_EMA, &net2, NULL, &info));
    if (net2) CHECK(memcmp(nf_unet_params(net2), ema, sizeof(float) * np) == 0, "EMA weights in the network");
    char he[17];
    nf_weights_hash(ema, np, he);
    CHECK(strcmp(info.hash, he) == 0, "hash follows the weights used");
    nf_unet_free(net2);

    nf_checkpoint_info ri;
    CHECK_OK(nf_checkpoint_read_info(path, &ri));
    CHECK(ri.has_ema && ri.param_count == (long long)np && same_desc(&ri.desc, &desc), "read_info");

    /* F16 storage: half the size, weights to half precision. */
    CHECK_OK(nf_checkpoint_save(path16, net, NULL, &desc, 1));
    python_validates(path16);
    net2 = NULL;
    ema2 = (float *)1;
    CHECK_OK(nf_checkpoint_load(path16, 1, 64, NF_CKPT_USE_EMA, &net2, &ema2, &info));
    CHECK(ema2 == NULL && !info.has_ema && info.stored_f16, "F16 file without EMA");
    if (net2) {
        const float *p2 = nf_unet_params(net2);
        int bad_n = 0;
        for (size_t i = 0; i < np; i++)
            if (fabsf(p2[i] - params[i]) > fmaxf(fabsf(params[i]) * 0x1p-11f, 0x1p-25f)) bad_n++;
        CHECK(bad_n == 0, "%d F16 weights out of half precision", bad_n);
    }
    nf_unet_free(net2);

    /* A newer format version. */
    net2 = NULL;
    CHECK_OK(copy_with_meta(path, bad, "format_version", "2"));
    CHECK(nf_checkpoint_load(bad, 1, 64, 0, &net2, NULL, NULL) == NF_ERR_VERSION && !net2, "newer version: %s",
          nf_last_error());
    CHECK(strncmp(nf_last_error(), bad, strlen(bad)) == 0 && strstr(nf_last_error(), "version 2"), "%s", nf_last_error());
    CHECK(nf_checkpoint_read_info(bad, &ri) == NF_ERR_VERSION, "read_info: newer version");
    /* Missing and wrong keys are named. */
    struct {
        const char *key, *value;
        nf_status want;
        const char *needle;
    } cases[] = {
        {"noisefloor.config", NULL, NF_ERR_CORRUPT, "\"noisefloor.config\" is missing"},
        {"noisefloor.model", NULL, NF_ERR_CORRUPT, "\"noisefloor.model\" is missing"},
        {"format_version", NULL, NF_ERR_CORRUPT, "\"format_version\" is missing"},
        {"format_version", "one", NF_ERR_CORRUPT, "not a version number"},
        {"format", "pytorch", NF_ERR_FORMAT, "not a noisefloor model"},
        {"format", NULL, NF_ERR_FORMAT, "not a noisefloor model"},
        {"noisefloor.config", "{\"in_ch\":1}", NF_ERR_CORRUPT, "\"out_ch\" is missing"},
        {"noisefloor.config", "{\"in_ch\":1,", NF_ERR_CORRUPT, "JSON error"},
        {"noisefloor.model", "{\"representation\":\"wave\"}", NF_ERR_CORRUPT, "\"n_fft\" is missing"},
        {"noisefloor.model", "[]", NF_ERR_CORRUPT, "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_OK(copy_with_meta(path, bad, cases[i].key, cases[i].value));
        net2 = NULL;
        nf_status st = nf_checkpoint_load(bad, 1, 64, 0, &net2, NULL, NULL);
        CHECK(st == cases[i].want && !net2 && strstr(nf_last_error(), cases[i].needle) &&
                  strncmp(nf_last_error(), bad, strlen(bad)) == 0 && !strchr(nf_last_error(), '\n'),
              "case %zu: status %d, message '%s'", i, st, nf_last_error());
    }
    /* A description with a bad objective, via JSON surgery on the real one. */
    {
        char *dj = NULL;
        CHECK_OK(nf_model_desc_to_json(&desc, &dj));
        char *o = dj ? strstr(dj, "\"objective\":\"x0\"") : NULL;
        CHECK(o != NULL, "objective in the JSON");
        if (o) {
            memcpy(o + 13, "q0", 2);
            CHECK_OK(copy_with_meta(path, bad, "noisefloor.model", dj));
            CHECK(nf_checkpoint_load(bad, 1, 64, 0, &net2, NULL, NULL) == NF_ERR_CORRUPT &&
                      strstr(nf_last_error(), "\"objective\""),
                  "bad objective: %s", nf_last_error());
        }
        free(dj);
    }
    /* A lead-frame count out of range (a hand-edited or foreign file). */
    {
        char *dj = NULL;
        CHECK_OK(nf_model_desc_to_json(&desc, &dj));
        char *o = dj ? strstr(dj, "\"lead_frames\":4") : NULL;
        CHECK(o != NULL, "lead_frames in the JSON: %s", dj ? dj : "");
        if (o) {
            size_t n = strlen(dj) + 2;
            char *neg = malloc(n);
            snprintf(neg, n, "%.*s-%s", (int)(o + 14 - dj), dj, o + 14); /* "lead_frames":-4 */
            CHECK_OK(copy_with_meta(path, bad, "noisefloor.model", neg));
            free(neg);
            net2 = NULL;
            CHECK(nf_checkpoint_load(bad, 1, 64, 0, &net2, NULL, NULL) == NF_ERR_CORRUPT && !net2 &&
                      strstr(nf_last_error(), "\"lead_frames\" is -4"),
                  "bad lead_frames: %s", nf_last_error());
        }
        free(dj);
    }
    /* A config that does not match the stored tensors: the shapes are named. */
    {
        nf_unet_config c2 = cfg;
        c2.base = 16;
        char *cj = NULL;
        CHECK_OK(nf_unet_config_to_json(&c2, &cj));
        CHECK_OK(copy_with_meta(path, bad, "noisefloor.config", cj));
        free(cj);
        net2 = NULL;
        CHECK(nf_checkpoint_load(bad, 1, 64, 0, &net2, NULL, NULL) == NF_ERR_CORRUPT && !net2, "mismatched config");
        CHECK(strstr(nf_last_error(), "has shape [") && strstr(nf_last_error(), "], expected ["), "%s",
              nf_last_error());
    }
    nf_unet_free(net);
    free(ema);
}

static void test_hash(void)
{
    /* FNV-1a 64 of no bytes is the offset basis (published test vector). */
    CHECK(nf_weights_hash64(NULL, 0) == 0xcbf29ce484222325ULL, "empty hash");
    /* Against a byte-wise reference over the float bytes (little-endian host). */
    float v[5] = {1.0f, -2.5f, 0.0f, 3e-20f, 65504.0f};
    unsigned char b[20];
    memcpy(b, v, 20);
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 20; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    CHECK(nf_weights_hash64(v, 5) == h, "hash of five floats");
    char s[17];
    nf_weights_hash(v, 5, s);
    CHECK(strlen(s) == 16, "16 hex digits");
    v[3] = -v[3];
    CHECK(nf_weights_hash64(v, 5) != h, "one bit changes the hash");
}

static void test_train_state(void)
{
    char path[4096], bad[4096];
    path_in(path, sizeof path, "ckpt_model.state.safetensors");
    path_in(bad, sizeof bad, "ckpt_state_bad.safetensors");
    enum { NP = 1001, NO = 37 };
    nf_train_state s;
    memset(&s, 0, sizeof s);
    s.n_params = NP;
    float *m = malloc(sizeof(float) * NP), *v = malloc(sizeof(float) * NP), *e = malloc(sizeof(float) * NP),
          *p = malloc(sizeof(float) * NP);
    int64_t order[NO];
    for (int i = 0; i < NP; i++) {
        m[i] = sinf((float)i) * 1e-3f;
        v[i] = (float)i * 1e-9f + 1e-30f;
        e[i] = cosf((float)i);
        p[i] = -e[i] / 3.0f;
    }
    for (int i = 0; i < NO; i++) order[i] = (i * 11) % NO;
    s.adam_m = m;
    s.adam_v = v;
    s.ema = e;
    s.params = p;
    s.step = 4242;
    s.epoch = 17;
    s.rng.seed = UINT64_MAX - 1;
    s.rng.stream = 0x8000000000000001ULL;
    s.rng.index = 99;
    s.order = order;
    s.n_order = NO;
    s.order_pos = 12;
    s.loss_scale = 65536.0f;
    s.loss_scale_good_steps = 300;
    strcpy(s.model_hash, "0123456789abcdef");
    CHECK_OK(nf_train_state_save(path, &s));
    python_validates(path);
    nf_train_state r;
    CHECK_OK(nf_train_state_load(path, NP, &r));
    CHECK(r.n_params == NP && r.adam_m && memcmp(r.adam_m, m, sizeof(float) * NP) == 0 &&
              memcmp(r.adam_v, v, sizeof(float) * NP) == 0 && r.ema && memcmp(r.ema, e, sizeof(float) * NP) == 0 &&
              r.params && memcmp(r.params, p, sizeof(float) * NP) == 0,
          "slabs exact");
    CHECK(r.step == 4242 && r.epoch == 17 && r.rng.seed == UINT64_MAX - 1 && r.rng.stream == 0x8000000000000001ULL &&
              r.rng.index == 99 && r.n_order == NO && r.order && memcmp(r.order, order, sizeof order) == 0 &&
              r.order_pos == 12 && r.loss_scale == 65536.0f && r.loss_scale_good_steps == 300 &&
              strcmp(r.model_hash, "0123456789abcdef") == 0,
          "counters, RNG, order exact");
    nf_train_state_free(&r);
    CHECK(nf_train_state_load(path, NP + 1, &r) == NF_ERR_CORRUPT && strstr(nf_last_error(), "parameters"),
          "parameter count mismatch: %s", nf_last_error());
    CHECK_OK(copy_with_meta(path, bad, "format_version", "7"));
    CHECK(nf_train_state_load(bad, NP, &r) == NF_ERR_VERSION, "newer state version");
    CHECK(nf_train_state_load("/nonexistent/s.safetensors", NP, &r) == NF_ERR_IO, "missing file");
    /* A model file is not a state file. */
    char model[4096];
    path_in(model, sizeof model, "ckpt_model.safetensors");
    CHECK(nf_train_state_load(model, NP, &r) == NF_ERR_FORMAT, "model file as state: %s", nf_last_error());
    /* Without optional parts. */
    s.ema = NULL;
    s.params = NULL;
    CHECK_OK(nf_train_state_save(path, &s));
    CHECK_OK(nf_train_state_load(path, 0, &r));
    CHECK(r.ema == NULL && r.params == NULL && r.n_params == NP, "optional slabs absent");
    nf_train_state_free(&r);
    free(m);
    free(v);
    free(e);
    free(p);
}

int main(void)
{
    const char *b = getenv("NF_BUILD_ROOT");
    const char *src = getenv("NF_SOURCE_ROOT");
    if (b) snprintf(build_root, sizeof build_root, "%s", b);
    if (src) snprintf(source_root, sizeof source_root, "%s", src);
    test_hash();
    test_model_round_trip();
    test_train_state();
    return nf_test_done();
}
