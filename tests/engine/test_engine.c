/* The engine on a small untrained network: loading and its errors, determinism (seed,
 * batch position, thread count), every sampler, guidance, editing and interpolation.
 * An untrained network makes noise, not drums: what is checked here is the plumbing and
 * the contracts of nf_engine.h, not sound quality (the CLI end-to-end test and the
 * default-model check do that). */
#include "nf_engine.h"
#include "nf_test.h"
#include "nf_test_model.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void make_model(const char *path, const char *repr, int classes, const char *objective)
{
    nf_test_model_opts o;
    nf_test_model_opts_init(&o);
    o.repr = (nf_repr_kind)nf_repr_kind_from_name(repr); /* n_fft 32, hop 8, power 0.5 */
    o.norm_scale = 2.0f;
    o.length = 300;
    o.objective = objective;
    o.T = 100;
    o.num_classes = classes;
    o.net.base = 16;
    o.net.heads = 2;
    o.net.groups = 4;
    o.net.mid_attn = 1;
    o.seed = 7;
    CHECK_OK(nf_test_model_save(&o, path));
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || fabsf(x[i]) > 1.0f) return 0;
    return 1;
}

static void test_generate(const char *repr)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, repr);
    make_model(path, repr, 3, "v");
    nf_model *m;
    CHECK_OK(nf_model_load(path, &m));
    if (!m) return;
    const nf_model_info *info = nf_model_get_info(m);
    CHECK(info->num_classes == 3 && info->length == 300 && info->sample_rate == 8000, "info");
    CHECK(nf_model_class_index(m, "CLASS1") == 1 && nf_model_class_index(m, "nope") == -1, "class lookup");
    CHECK(strlen(info->hash) == 16, "hash %s", info->hash);
    int L = info->length;
    float *a = malloc(4 * L * sizeof(float)), *b = malloc(4 * L * sizeof(float));

    nf_gen_params p;
    nf_gen_params_default(&p);
    p.steps = 6;
    p.class_id = 1;
    p.cfg_scale = 2.0f;
    p.seed = 100;
    for (int k = 0; k < NF_SAMPLER_COUNT; k++) {
        p.sampler = (nf_sampler_kind)k;
        p.eta = k == NF_SAMPLER_DDIM ? 0.5f : 0.0f;
        CHECK_OK(nf_generate(m, &p, 3, a));
        CHECK(all_finite(a, 3 * (size_t)L), "%s/%s: finite, within full scale", repr, nf_sampler_name(p.sampler));
        /* Example 2 of the batch is seed 102 rendered alone. */
        nf_gen_params q = p;
        q.seed = 102;
        q.threads = 1;
        CHECK_OK(nf_generate(m, &q, 1, b));
        CHECK(memcmp(a + 2 * L, b, L * sizeof(float)) == 0, "%s/%s: batch position does not change a sound",
              repr, nf_sampler_name(p.sampler));
        CHECK(memcmp(a, a + L, L * sizeof(float)) != 0, "%s/%s: different seeds differ", repr,
              nf_sampler_name(p.sampler));
    }
    /* Stepwise rendering (the plugin's path) equals the one-call path. */
    p.sampler = NF_SAMPLER_DPMPP;
    CHECK_OK(nf_generate(m, &p, 1, a));
    nf_gen *g;
    CHECK_OK(nf_gen_begin(m, &p, 1, &g));
    int left, calls = 0;
    while ((left = nf_gen_step(g)) > 0) calls++;
    CHECK(left == 0 && calls >= 1, "steps run to completion");
    CHECK_OK(nf_gen_finish(g, b));
    nf_gen_free(g);
    CHECK(memcmp(a, b, L * sizeof(float)) == 0, "stepwise == one call");

    /* The fade-in: the same render without it, shaped by 0.5 - 0.5 cos(pi i / F) over the
     * first F = 2 ms * 8 kHz = 16 samples and untouched after them, up to the one gain
     * that keeps a render within full scale. */
    {
        const int F = 16;
        nf_gen_params q = p;
        q.fade_in_ms = 0.0f;
        CHECK_OK(nf_generate(m, &q, 1, b));
        q.fade_in_ms = 2.0f;
        CHECK_OK(nf_generate(m, &q, 1, a));
        double gain = 0;
        for (int i = F; i < L && gain == 0; i++)
            if (fabsf(b[i]) > 0.01f) gain = (double)a[i] / b[i];
        double dev = 0;
        for (int i = 0; i < L; i++) {
            double w = i < F ? 0.5 - 0.5 * cos(M_PI * i / F) : 1.0;
            dev = fmax(dev, fabs(a[i] - gain * w * b[i]));
        }
        CHECK(gain > 0.5 && gain <= 1.0 + 1e-6 && dev < 1e-6 && a[0] == 0.0f && b[0] != 0.0f,
              "%s: fade-in of 2 ms is the raised-cosine ramp over 16 samples (gain %g, max dev %g, first %g)", repr,
              gain, dev, (double)b[0]);
        q.fade_in_ms = -1.0f;
        CHECK(nf_generate(m, &q, 1, a) == NF_ERR_ARG && strstr(nf_last_error(), "fade-in"), "bad fade-in refused");
    }

    /* Variation at strength 0 gives the input back; inpainting keeps the known part (also
     * where the default fade-in would have shaped it: the mask starts at sample 0). */
    float *init = malloc(L * sizeof(float)), *mask = malloc(L * sizeof(float));
    for (int i = 0; i < L; i++) {
        init[i] = 0.5f * sinf(0.1f * i) * expf(-i / 100.0f);
        mask[i] = (i < 100 || i >= 200) ? 1.0f : 0.0f;
    }
    p.init_audio = init;
    p.strength = 0.0f;
    CHECK_OK(nf_generate(m, &p, 1, a));
    double err = 0;
    for (int i = 0; i < L; i++) err = fmax(err, fabs(a[i] - init[i]));
    CHECK(err < 1e-4, "%s: variation at strength 0 returns the input (max err %g)", repr, err);
    p.strength = 1.0f;
    p.known_mask = mask;
    p.sampler = NF_SAMPLER_DDIM;
    CHECK_OK(nf_generate(m, &p, 2, a));
    int kept = 1, changed = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < L; i++) {
            if (mask[i] > 0.5f) kept &= a[k * L + i] == init[i];
            else changed |= a[k * L + i] != init[i];
        }
    CHECK(kept && changed, "%s: inpainting keeps the known region exactly and fills the rest", repr);
    p.known_mask = NULL;
    p.init_audio = NULL;

    /* Interpolation between seeds: the ends are the two seeds' own sounds (DDIM). */
    p.sampler = NF_SAMPLER_DDIM;
    p.eta = 0.0f;
    float *k4 = malloc(4 * L * sizeof(float));
    CHECK_OK(nf_interpolate_seeds(m, &p, 5, 9, 4, k4));
    p.seed = 5;
    CHECK_OK(nf_generate(m, &p, 1, a));
    p.seed = 9;
    CHECK_OK(nf_generate(m, &p, 1, b));
    CHECK(memcmp(k4, a, L * sizeof(float)) == 0 && memcmp(k4 + 3 * L, b, L * sizeof(float)) == 0,
          "%s: seed interpolation ends are the seeds' sounds", repr);
    CHECK_OK(nf_interpolate_sounds(m, &p, a, b, 3, k4));
    CHECK(all_finite(k4, 3 * (size_t)L), "%s: sound interpolation is finite", repr);

    /* Bad parameters are refused with a message. */
    p.class_id = 3;
    CHECK(nf_generate(m, &p, 1, a) == NF_ERR_ARG && strstr(nf_last_error(), "class"), "bad class refused");
    p.class_id = 0;
    p.strength = 0.5f;
    CHECK(nf_generate(m, &p, 1, a) == NF_ERR_ARG, "variation without a sound refused");
    free(a);
    free(b);
    free(k4);
    free(init);
    free(mask);
    nf_model_free(m);
}

static void test_load_errors(void)
{
    char path[128];
    nf_model *m = NULL;
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    CHECK(nf_model_load(path, &m) != NF_OK && m == NULL, "missing file");
    CHECK(strstr(nf_last_error(), "missing.safetensors") != NULL, "error names the file: %s", nf_last_error());
    snprintf(path, sizeof path, "%s/text.safetensors", dir);
    CHECK_OK(nf_write_file_atomic(path, "hello, not a model\n", 19));
    CHECK(nf_model_load(path, &m) != NF_OK && m == NULL, "text file");
    CHECK(strstr(nf_last_error(), "text.safetensors") != NULL, "error names the file: %s", nf_last_error());
    /* Unconditional x0-prediction model: loads, renders, ignores the class. */
    snprintf(path, sizeof path, "%s/uncond.safetensors", dir);
    make_model(path, "wave", 0, "x0");
    CHECK_OK(nf_model_load(path, &m));
    if (m) {
        float out[300];
        nf_gen_params p;
        nf_gen_params_default(&p);
        p.steps = 4;
        CHECK_OK(nf_generate(m, &p, 1, out));
        CHECK(all_finite(out, 300), "unconditional render");
        nf_model_free(m);
    }
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/nf_engineXXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_generate("wave");
    test_generate("stft");
    test_generate("mag");
    test_load_errors();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return nf_test_done();
}
