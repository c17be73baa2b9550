/* Model files cross between C and Python (issue 3): a checkpoint written by Python loads in
 * C, and one written by C loads in Python, checked by the PyTorch mirror of the network
 * (tests/reference/unet_ref.py, which reads safetensors with numpy: safetensors_np.py).
 *
 * Python -> C (always runs, from committed fixtures):
 *   tests/reference/fixtures/py_model.safetensors was written by `unet_ref.py
 *   write-py-model` in the full model-file format (weights, "ema.*" weights, metadata
 *   format / format_version / noisefloor.config / noisefloor.model). This test reads it
 *   with nf_checkpoint_read_info and nf_checkpoint_load, checks every config and
 *   description field against the values the script put there, runs the network on the
 *   inputs of py_model_data.safetensors and compares with torch's float64 outputs for the
 *   raw and for the EMA weights (relative error max|c - ref| / max|ref| <= 1e-4). Saving
 *   what was loaded with nf_checkpoint_save must give the Python file back byte for byte
 *   (so Python writes exactly what C writes). Finally the engine (nf_model_load) must
 *   accept the file, describe it correctly and generate finite, repeatable sound with it.
 *
 * C -> Python (needs /usr/bin/python3 with torch and numpy; says so when it cannot run):
 *   a network of the same small config with fresh nf_unet_init_params weights and an EMA
 *   copy is saved with nf_checkpoint_save, as F32 and as F16, next to the C outputs on
 *   fixed inputs; `unet_ref.py check-c` rebuilds the network in torch from the stored
 *   config and must agree (exit status 0). A tampered output file must make it fail, so
 *   the check is not vacuous. */
#include "nf_checkpoint.h"
#include "nf_engine.h"
#include "nf_rng.h"
#include "nf_safetensors.h"
#include "nf_test.h"
#include "nf_unet.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FWD_TOL 1e-4

static char source_root[2048], build_root[2048];

/* SMALL in tests/reference/unet_ref.py. */
static nf_unet_config small_config(void)
{
    nf_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 2;
    c.out_ch = 2;
    c.base = 8;
    c.n_levels = 2;
    c.mults[0] = 1;
    c.mults[1] = 2;
    c.blocks = 2;
    c.attn[0] = 0;
    c.attn[1] = 1;
    c.mid_attn = 1;
    c.heads = 2;
    c.groups = 4;
    c.num_classes = 3;
    c.dropout = 0.0f;
    return c;
}

static int config_equal(const nf_unet_config *a, const nf_unet_config *b)
{
    if (a->in_ch != b->in_ch || a->out_ch != b->out_ch || a->base != b->base || a->n_levels != b->n_levels ||
        a->blocks != b->blocks || a->mid_attn != b->mid_attn || a->heads != b->heads || a->groups != b->groups ||
        a->num_classes != b->num_classes || a->dropout != b->dropout)
        return 0;
    for (int i = 0; i < a->n_levels; i++)
        if (a->mults[i] != b->mults[i] || a->attn[i] != b->attn[i]) return 0;
    return 1;
}

/* Max relative error of c against ref (max|c - ref| / max|ref|), reported on one line. */
static double compare(const char *what, const float *c, const float *ref, size_t n, double tol)
{
    double maxref = 0, maxdiff = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(c[i])) finite = 0;
        double d = fabs((double)c[i] - ref[i]);
        if (d > maxdiff) maxdiff = d;
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    }
    double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
    int ok = finite && rel <= tol && maxref > 0;
    printf("  %-28s n=%-5zu max|ref| %.3e  max|diff| %.3e  rel %.2e  %s\n", what, n, maxref, maxdiff, rel,
           ok ? "ok" : "FAIL");
    CHECK(ok, "%s: relative error %.3g > %.g (or non-finite, or an all-zero reference)", what, rel, tol);
    return rel;
}

static float *read_floats(const nf_st_file *f, const char *name, size_t count)
{
    float *a = malloc(count * sizeof(float));
    nf_status st = a ? nf_st_read_f32(f, name, a, count, 0, NULL) : NF_ERR_NOMEM;
    CHECK(st == NF_OK, "reading %s: %s", name, nf_last_error());
    if (st != NF_OK) {
        free(a);
        return NULL;
    }
    return a;
}

/* Two files must be byte for byte the same; reports the first difference. */
static void check_same_bytes(const char *a, const char *b)
{
    void *da = NULL, *db = NULL;
    size_t na = 0, nb = 0;
    CHECK_OK(nf_read_file(a, &da, &na));
    CHECK_OK(nf_read_file(b, &db, &nb));
    if (da && db) {
        size_t n = na < nb ? na : nb, at = 0;
        while (at < n && ((const unsigned char *)da)[at] == ((const unsigned char *)db)[at]) at++;
        int same = na == nb && at == n;
        printf("  re-saved by C: %zu bytes, Python's file %zu bytes: %s\n", nb, na,
               same ? "identical" : "DIFFERENT");
        CHECK(same, "%s (%zu bytes) and %s (%zu bytes) differ first at byte %zu", a, na, b, nb, at);
        if (!same && at < n) {
            /* Show the context: most likely a metadata string. */
            size_t from = at > 40 ? at - 40 : 0, len = n - from < 80 ? n - from : 80;
            fprintf(stderr, "  python: %.*s\n  c:      %.*s\n", (int)len, (const char *)da + from, (int)len,
                    (const char *)db + from);
        }
    }
    free(da);
    free(db);
}

/* ------------------------------------------------------------------ Python -> C */

static void check_py_desc(const nf_model_desc *d)
{
    /* PY_DESC in unet_ref.py. */
    CHECK(strcmp(d->representation, "wave") == 0, "representation %s", d->representation);
    CHECK(d->n_fft == 0 && d->hop == 0, "n_fft %d hop %d", d->n_fft, d->hop);
    CHECK(d->compress_power == 1.0f && d->norm_scale == 1.0f, "compress %g scale %g", (double)d->compress_power,
          (double)d->norm_scale);
    CHECK(d->sample_rate == 16000 && d->channels == 2 && d->length == 45, "format %d Hz %d ch %d samples",
          d->sample_rate, d->channels, d->length);
    CHECK(strcmp(d->objective, "v") == 0 && strcmp(d->schedule, "cosine") == 0 && d->T == 1000,
          "objective %s schedule %s T %d", d->objective, d->schedule, d->T);
    CHECK(d->learned_variance == 0, "learned_variance %d", d->learned_variance);
    CHECK(d->num_classes == 3, "num_classes %d", d->num_classes);
    static const char *names[3] = {"kick", "snare", "hat"};
    static const long long files[3] = {3, 4, 5};
    for (int i = 0; i < 3 && i < d->num_classes; i++) {
        CHECK(strcmp(d->class_names[i], names[i]) == 0, "class %d is '%s', want '%s'", i, d->class_names[i], names[i]);
        CHECK(d->class_files[i] == files[i], "class_files[%d] = %lld", i, d->class_files[i]);
    }
    CHECK(d->steps == 1234 && d->examples_seen == 9876, "steps %lld examples %lld", d->steps, d->examples_seen);
    /* Python wrote repr-exact math.pi / 100 in 16-17 digits: it must read back exactly. */
    CHECK(d->final_loss == M_PI / 100, "final_loss %.17g, want %.17g", d->final_loss, M_PI / 100);
    CHECK(d->seed == 12345678901234567890ULL, "seed %llu (a u64 above 2^53)", (unsigned long long)d->seed);
    CHECK(d->n_extra == 1 && strcmp(d->extra_key[0], "writer") == 0 &&
              strcmp(d->extra_value[0], "tests/reference/unet_ref.py write-py-model") == 0,
          "extra: %d entries", d->n_extra);
}

static void python_to_c(void)
{
    char model[4096], data[4096], resaved[4096];
    snprintf(model, sizeof model, "%s/tests/reference/fixtures/py_model.safetensors", source_root);
    snprintf(data, sizeof data, "%s/tests/reference/fixtures/py_model_data.safetensors", source_root);
    snprintf(resaved, sizeof resaved, "%s/tests/model/xlang_py_model_resaved.safetensors", build_root);
    printf("Python -> C: %s\n", model);

    nf_checkpoint_info info;
    nf_status st = nf_checkpoint_read_info(model, &info);
    CHECK(st == NF_OK, "nf_checkpoint_read_info: %s", nf_last_error());
    if (st) return;
    nf_unet_config want = small_config();
    CHECK(info.format_version == NF_CKPT_FORMAT_VERSION, "format_version %d", info.format_version);
    CHECK(config_equal(&info.config, &want), "stored config is not unet_ref.py's SMALL");
    CHECK(info.has_ema == 1 && info.stored_f16 == 0, "has_ema %d stored_f16 %d", info.has_ema, info.stored_f16);
    check_py_desc(&info.desc);

    nf_st_file *df = NULL;
    CHECK_OK(nf_st_open(data, &df));
    if (!df) return;
    const nf_st_info *xi = nf_st_find(df, "x");
    CHECK(xi && xi->ndim == 3 && xi->shape[1] == want.in_ch, "data: x must be [B, %d, L]", want.in_ch);
    if (!xi || xi->ndim != 3) {
        nf_st_close(df);
        return;
    }
    const int B = (int)xi->shape[0], L = (int)xi->shape[2];
    const size_t nx = (size_t)B * want.in_ch * L, no = (size_t)B * want.out_ch * L;
    float *x = read_floats(df, "x", nx), *t = read_floats(df, "t", (size_t)B);
    float *ref = read_floats(df, "out", no), *ref_ema = read_floats(df, "out.ema", no);
    int64_t y64[16];
    int y[16];
    CHECK(B >= 1 && B <= 16, "batch %d", B);
    if (B >= 1 && B <= 16) CHECK_OK(nf_st_read_i64(df, "y", y64, (size_t)B, 0, NULL));
    nf_st_close(df);
    if (B < 1 || B > 16) {
        free(x);
        free(t);
        free(ref);
        free(ref_ema);
        return;
    }
    for (int b = 0; b < B; b++) y[b] = (int)y64[b];
    printf("  inputs: B %d L %d, t = %g %g %g, y = %d %d %d\n", B, L, t ? (double)t[0] : 0.0,
           t && B > 1 ? (double)t[1] : 0.0, t && B > 2 ? (double)t[2] : 0.0, y[0], B > 1 ? y[1] : 0,
           B > 2 ? y[2] : 0);
    float *out = malloc(no * sizeof(float));

    /* Raw weights (flags 0), EMA handed back separately. */
    nf_unet *net = NULL, *net_ema = NULL;
    float *ema = NULL;
    nf_checkpoint_info li;
    CHECK_OK(nf_checkpoint_load(model, B, L, 0, &net, &ema, &li));
    if (net && x && t && ref && ref_ema && out) {
        CHECK(ema != NULL, "the EMA weights were not returned");
        CHECK(li.param_count == (long long)nf_unet_num_params(net), "param_count %lld", li.param_count);
        printf("  %lld parameters in %d tensors (+ EMA)\n", li.param_count, nf_unet_num_tensors(net));
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, out, 0, 0));
        compare("out (raw weights)", out, ref, no, FWD_TOL);

        /* NF_CKPT_USE_EMA puts the EMA set into the network (what the engine uses). */
        CHECK_OK(nf_checkpoint_load(model, B, L, NF_CKPT_USE_EMA, &net_ema, NULL, &li));
        if (net_ema && ema) {
            size_t np = nf_unet_num_params(net_ema);
            CHECK(memcmp(nf_unet_params(net_ema), ema, np * sizeof(float)) == 0, "USE_EMA weights != returned EMA");
            char h[17];
            nf_weights_hash(ema, np, h);
            CHECK(strcmp(h, li.hash) == 0, "hash %s, EMA weights hash %s", li.hash, h);
            CHECK_OK(nf_unet_forward(net_ema, x, t, y, B, L, out, 0, 0));
            compare("out.ema (EMA weights)", out, ref_ema, no, FWD_TOL);
        }

        /* Saving what was loaded must give Python's file back, byte for byte: the JSON of
         * both metadata keys, the tensor order and the padding all agree. */
        if (ema) {
            CHECK_OK(nf_checkpoint_save(resaved, net, ema, &info.desc, 0));
            check_same_bytes(model, resaved);
        }
    }

    /* The engine accepts the file as a model. */
    nf_model *m = NULL;
    st = nf_model_load(model, &m);
    CHECK(st == NF_OK, "nf_model_load: %s", nf_last_error());
    if (m) {
        const nf_model_info *mi = nf_model_get_info(m);
        printf("  engine: %d Hz, %d ch, %d samples, %d classes, %s/%s, %lld params, hash %s\n", mi->sample_rate,
               mi->channels, mi->length, mi->num_classes, mi->representation, mi->objective, mi->param_count,
               mi->hash);
        CHECK(mi->sample_rate == 16000 && mi->channels == 2 && mi->length == 45, "engine audio format");
        CHECK(mi->num_classes == 3 && nf_model_class_index(m, "snare") == 1 && nf_model_class_index(m, "HAT") == 2,
              "engine classes");
        CHECK(strcmp(mi->representation, "wave") == 0 && strcmp(mi->objective, "v") == 0, "engine repr/objective");
        CHECK(mi->train_steps == 1234, "engine train_steps %lld", mi->train_steps);
        CHECK(mi->param_count == li.param_count, "engine param_count %lld", mi->param_count);
        CHECK(strcmp(mi->hash, li.hash) == 0, "engine hash %s, EMA hash %s (the engine must use the EMA)", mi->hash,
              li.hash);
        nf_gen_params gp;
        nf_gen_params_default(&gp);
        gp.sampler = NF_SAMPLER_DDIM;
        gp.steps = 4;
        gp.class_id = 1;
        gp.seed = 77;
        gp.threads = 1;
        const size_t ng = 2 * (size_t)mi->channels * mi->length;
        float *g1 = calloc(ng, sizeof(float)), *g2 = calloc(ng, sizeof(float));
        CHECK_OK(nf_generate(m, &gp, 2, g1));
        CHECK_OK(nf_generate(m, &gp, 2, g2));
        int finite = 1;
        double energy = 0;
        for (size_t i = 0; i < ng; i++) {
            if (!isfinite(g1[i])) finite = 0;
            energy += (double)g1[i] * g1[i];
        }
        CHECK(finite && energy > 0, "generated sound is not finite and non-silent");
        CHECK(memcmp(g1, g2, ng * sizeof(float)) == 0, "the same seed gave different sounds");
        printf("  engine: generated 2 sounds (DDIM, 4 steps), rms %.3g, repeatable\n", sqrt(energy / (double)ng));
        free(g1);
        free(g2);
        nf_model_free(m);
    }

    nf_unet_free(net);
    nf_unet_free(net_ema);
    free(ema);
    free(out);
    free(x);
    free(t);
    free(ref);
    free(ref_ema);
}

/* ------------------------------------------------------------------ C -> Python */

enum { CB = 3, CL = 37 };

/* The C network's outputs on fixed inputs, for unet_ref.py check-c. */
static nf_status write_outputs(const char *path, const float *x, const float *t, const int32_t *y, const float *out,
                               const float *out_ema, const nf_unet_config *c)
{
    nf_st_tensor tt[] = {
        {"x", NF_DT_F32, 3, {CB, c->in_ch, CL}, x},
        {"t", NF_DT_F32, 1, {CB}, t},
        {"y", NF_DT_I32, 1, {CB}, y},
        {"out", NF_DT_F32, 3, {CB, c->out_ch, CL}, out},
        {"out.ema", NF_DT_F32, 3, {CB, c->out_ch, CL}, out_ema},
    };
    nf_st_meta meta[] = {{"writer", "tests/model/test_xlang.c"}};
    return nf_st_write(path, tt, 5, meta, 1);
}

/* Forward with the raw weights, then with `ema` swapped in (and the raw ones put back). */
static void forward_both(nf_unet *net, const float *ema, const float *x, const float *t, const int *y, float *out,
                         float *out_ema)
{
    size_t np = nf_unet_num_params(net);
    float *keep = malloc(np * sizeof(float));
    if (!keep) {
        CHECK(0, "out of memory");
        return;
    }
    memcpy(keep, nf_unet_params(net), np * sizeof(float));
    CHECK_OK(nf_unet_forward(net, x, t, y, CB, CL, out, 0, 0));
    memcpy(nf_unet_params(net), ema, np * sizeof(float));
    CHECK_OK(nf_unet_forward(net, x, t, y, CB, CL, out_ema, 0, 0));
    memcpy(nf_unet_params(net), keep, np * sizeof(float));
    free(keep);
}

static int run_python(const char *args, const char *redirect)
{
    char cmd[4 * 4096 + 64 + 2048 + 256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/reference/unet_ref.py' check-c %s%s", source_root, args,
             redirect);
    fflush(stdout);
    fflush(stderr);
    int rc = system(cmd);
    fflush(stdout);
    return rc;
}

static void c_to_python(void)
{
    printf("C -> Python:\n");
    const nf_unet_config cfg = small_config();
    nf_unet *net = NULL;
    CHECK_OK(nf_unet_create(&cfg, CB, CL, &net));
    if (!net) return;
    nf_unet_init_params(net, 20240611);
    const size_t np = nf_unet_num_params(net);
    const float *params = nf_unet_params(net);
    /* An EMA set that differs from the raw weights everywhere (GroupNorm affines included,
     * which fresh weights leave at 1 and 0). */
    float *ema = malloc(np * sizeof(float));
    nf_randn(ema, np, 99, nf_stream_id("xlang-ema", 0, 0), 0);
    for (size_t i = 0; i < np; i++) ema[i] = params[i] + 0.05f * ema[i];

    nf_model_desc desc;
    nf_model_desc_init(&desc);
    desc.sample_rate = 44100;
    desc.channels = 2;
    desc.length = CL;
    desc.num_classes = 3;
    strcpy(desc.class_names[0], "kick");
    strcpy(desc.class_names[1], "tom \"floor\"\t2");   /* escapes in the JSON */
    strcpy(desc.class_names[2], "caf\xc3\xa9");         /* UTF-8 kept as is */
    desc.class_files[0] = 10;
    desc.class_files[1] = 20;
    desc.class_files[2] = 30;
    desc.steps = 500;
    desc.examples_seen = 16000;
    desc.final_loss = 1.0 / 3.0; /* needs 17 digits */
    desc.seed = UINT64_MAX - 1;
    desc.n_extra = 2;
    strcpy(desc.extra_key[0], "dataset");
    strcpy(desc.extra_value[0], "/data/drums");
    strcpy(desc.extra_key[1], "git");
    strcpy(desc.extra_value[1], "test_xlang");

    const size_t nx = (size_t)CB * cfg.in_ch * CL, no = (size_t)CB * cfg.out_ch * CL;
    float *x = malloc(nx * sizeof(float)), *out = malloc(no * sizeof(float)), *out_ema = malloc(no * sizeof(float));
    nf_randn(x, nx, 99, nf_stream_id("xlang-x", 0, 0), 0);
    const float t[CB] = {3.0f, 400.0f, 999.0f};
    const int y[CB] = {0, -1, 2};
    const int32_t y32[CB] = {0, -1, 2};

    char m32[4096], o32[4096], m16[4096], o16[4096], bad[4096];
    snprintf(m32, sizeof m32, "%s/tests/model/xlang_c_model.safetensors", build_root);
    snprintf(o32, sizeof o32, "%s/tests/model/xlang_c_model_outputs.safetensors", build_root);
    snprintf(m16, sizeof m16, "%s/tests/model/xlang_c_model_f16.safetensors", build_root);
    snprintf(o16, sizeof o16, "%s/tests/model/xlang_c_model_f16_outputs.safetensors", build_root);
    snprintf(bad, sizeof bad, "%s/tests/model/xlang_c_model_tampered_outputs.safetensors", build_root);

    /* F32 file: the outputs of the network as it is in memory. */
    CHECK_OK(nf_checkpoint_save(m32, net, ema, &desc, 0));
    forward_both(net, ema, x, t, y, out, out_ema);
    CHECK_OK(write_outputs(o32, x, t, y32, out, out_ema, &cfg));

    /* A tampered copy of the outputs: one value moved by 1e-3 of the largest, which the
     * checker must notice (10x its tolerance). */
    double mx = 0;
    for (size_t i = 0; i < no; i++) mx = fmax(mx, fabs(out[i]));
    out[no / 2] += (float)(1e-3 * mx);
    CHECK_OK(write_outputs(bad, x, t, y32, out, out_ema, &cfg));

    /* F16 file: the outputs of the network loaded back from it (weights rounded to half). */
    desc.final_loss = NAN; /* no loss yet: JSON null */
    CHECK_OK(nf_checkpoint_save(m16, net, ema, &desc, 1));
    nf_unet *net16 = NULL;
    float *ema16 = NULL;
    nf_checkpoint_info i16;
    CHECK_OK(nf_checkpoint_load(m16, CB, CL, 0, &net16, &ema16, &i16));
    if (net16 && ema16) {
        CHECK(i16.stored_f16 && i16.has_ema, "F16 file: stored_f16 %d has_ema %d", i16.stored_f16, i16.has_ema);
        CHECK(memcmp(nf_unet_params(net16), params, np * sizeof(float)) != 0, "F16 weights equal the F32 ones");
        forward_both(net16, ema16, x, t, y, out, out_ema);
        CHECK_OK(write_outputs(o16, x, t, y32, out, out_ema, &cfg));
    }
    nf_unet_free(net16);
    free(ema16);
    printf("  wrote %s\n  wrote %s\n", m32, m16);

    if (access("/usr/bin/python3", X_OK) != 0 ||
        /* find_spec rather than an import: importing torch takes seconds, and a torch that
         * is present but broken should fail the check below, not skip it. */
        system("/usr/bin/python3 -c 'import importlib.util as u, sys; "
               "sys.exit(not (u.find_spec(\"torch\") and u.find_spec(\"numpy\")))' >/dev/null 2>&1") != 0) {
        printf("NOTE: the C -> Python half was NOT run: no /usr/bin/python3 with torch and numpy. Only the\n"
               "      Python -> C half (committed fixtures) was checked. Run this test where torch is installed,\n"
               "      or by hand: /usr/bin/python3 tests/reference/unet_ref.py check-c %s %s\n",
               m32, o32);
    } else {
        char args[4 * 4096 + 64];
        snprintf(args, sizeof args, "'%s' '%s' '%s' '%s'", m32, o32, m16, o16);
        int rc = run_python(args, "");
        CHECK(rc == 0, "unet_ref.py check-c failed (status %d): the torch network disagrees with C's file", rc);
        printf("  unet_ref.py check-c on C's F32 and F16 files: %s\n", rc == 0 ? "passed" : "FAILED");
        snprintf(args, sizeof args, "'%s' '%s'", m32, bad);
        rc = run_python(args, " >/dev/null 2>&1");
        CHECK(rc != 0, "unet_ref.py check-c accepted a tampered output file");
        printf("  unet_ref.py check-c on a tampered output file: %s\n",
               rc != 0 ? "rejected, as it must be" : "ACCEPTED (wrong)");
    }

    nf_unet_free(net);
    free(ema);
    free(x);
    free(out);
    free(out_ema);
}

int main(void)
{
    const char *s = getenv("NF_SOURCE_ROOT"), *b = getenv("NF_BUILD_ROOT");
    snprintf(source_root, sizeof source_root, "%s", s ? s : ".");
    snprintf(build_root, sizeof build_root, "%s", b ? b : ".");
    python_to_c();
    c_to_python();
    return nf_test_done();
}
