/* The noise-aware classifier: backward (parameters and input) against central finite
 * differences, batch independence, save/load, training to high accuracy on noised
 * tones, and classifier guidance with the trained network on the exact Gaussian-mixture
 * denoiser of tests/diffusion/gmm.h (it must raise the requested class's share). */
#include "../diffusion/gmm.h"
#include "nf_classifier.h"

#include <stdio.h>
#include <unistd.h>

static double loss_of(nf_classifier *c, const float *x, const float *t, int B, int L, const float *w, float *lg)
{
    int K = nf_classifier_get_config(c)->num_classes;
    CHECK_OK(nf_classifier_forward(c, x, t, B, L, lg));
    double s = 0;
    for (int k = 0; k < B * K; k++) s += (double)w[k] * lg[k];
    return s;
}

static void test_gradients(void)
{
    enum { B = 2, L = 7, K = 3 };
    nf_classifier_config cfg;
    nf_classifier_config_default(&cfg);
    cfg.in_ch = 2;
    cfg.base = 8;
    cfg.n_levels = 2;
    cfg.mults[0] = 1;
    cfg.mults[1] = 2; /* level 1: a ResBlock with a 1x1 skip conv; level 0: identity skip */
    cfg.blocks = 2;
    cfg.groups = 4;
    cfg.num_classes = K;
    nf_classifier *c;
    CHECK_OK(nf_classifier_create(&cfg, 4, 16, &c));
    nf_classifier_init_params(c, 11);
    float *p = nf_classifier_params(c);
    /* Non-trivial norm affines, so their gradients are exercised off the identity. */
    for (int i = 0; i < nf_classifier_num_tensors(c); i++) {
        const nf_param_info *t = nf_classifier_tensor(c, i);
        if (strstr(t->name, "norm")) {
            float z[64];
            nf_randn(z, t->size, 5, (uint64_t)i, 0);
            for (size_t k = 0; k < t->size; k++) p[t->offset + k] += 0.3f * z[k];
        }
    }
    float x[B * 2 * L], t[B] = {17.0f, 640.0f}, w[B * K], lg[B * K], dx[B * 2 * L];
    nf_randn(x, B * 2 * L, 1, 0, 0);
    nf_randn(w, B * K, 2, 0, 0);
    nf_classifier_zero_grad(c);
    loss_of(c, x, t, B, L, w, lg);
    CHECK_OK(nf_classifier_backward(c, w, dx));
    const float *g = nf_classifier_grads(c);
    const double h = 1e-2;
    /* Input gradient: every value. */
    double num = 0, den = 0;
    for (int k = 0; k < B * 2 * L; k++) {
        float keep = x[k];
        x[k] = keep + (float)h;
        double lp = loss_of(c, x, t, B, L, w, lg);
        x[k] = keep - (float)h;
        double lm = loss_of(c, x, t, B, L, w, lg);
        x[k] = keep;
        double fd = (lp - lm) / (2 * h);
        num += (fd - dx[k]) * (fd - dx[k]);
        den += fd * fd;
    }
    CHECK(den > 0 && num / den < 1e-4, "input gradient matches finite differences (normalised error %.2e)", num / den);
    /* Parameter gradients: up to 6 entries of every tensor. */
    int bad = 0;
    for (int i = 0; i < nf_classifier_num_tensors(c); i++) {
        const nf_param_info *ti = nf_classifier_tensor(c, i);
        double tn = 0, td = 0;
        for (int q = 0; q < 6 && q < (int)ti->size; q++) {
            size_t k = ti->offset + (size_t)q * (ti->size / 6 > 0 ? ti->size / 6 : 1);
            float keep = p[k];
            p[k] = keep + (float)h;
            double lp = loss_of(c, x, t, B, L, w, lg);
            p[k] = keep - (float)h;
            double lm = loss_of(c, x, t, B, L, w, lg);
            p[k] = keep;
            double fd = (lp - lm) / (2 * h);
            tn += (fd - g[k]) * (fd - g[k]);
            td += fd * fd + g[k] * g[k];
        }
        if (!(tn <= 1e-4 * td + 1e-8)) {
            bad++;
            fprintf(stderr, "  %s: normalised error %.2e\n", ti->name, td > 0 ? tn / td : tn);
        }
    }
    CHECK(bad == 0, "parameter gradients of all %d tensors match finite differences (%d bad)",
          nf_classifier_num_tensors(c), bad);
    CHECK(nf_classifier_find_tensor(c, "down.1.res.0.skip.weight") >= 0 &&
              nf_classifier_find_tensor(c, "down.0.res.0.skip.weight") < 0 && nf_classifier_find_tensor(c, "head.weight") >= 0,
          "parameter table names");

    /* Example 1 alone gives bit-identical logits to example 1 inside the batch. */
    float lg2[K];
    CHECK_OK(nf_classifier_forward(c, x, t, B, L, lg));
    CHECK_OK(nf_classifier_forward(c, x + 2 * L, t + 1, 1, L, lg2));
    CHECK(!memcmp(lg2, lg + K, sizeof lg2), "an example's logits do not depend on the batch");

    /* grad_log_prob = backward of log softmax: check one entry against finite differences. */
    int y[B] = {2, 0};
    float gr[B * 2 * L], lp0[B], lpp[B], lpm[B];
    CHECK_OK(nf_classifier_grad_log_prob(c, x, t, y, B, L, gr, lp0));
    int k = 2 * L + 3;
    float keep = x[k];
    x[k] = keep + (float)h;
    CHECK_OK(nf_classifier_grad_log_prob(c, x, t, y, B, L, dx, lpp));
    x[k] = keep - (float)h;
    CHECK_OK(nf_classifier_grad_log_prob(c, x, t, y, B, L, dx, lpm));
    x[k] = keep;
    double fd = (lpp[1] - lpm[1]) / (2 * h);
    CHECK_CLOSE(gr[k], fd, 2e-3, 2e-2, "grad_x log p(y|x,t) matches finite differences");
    CHECK(lp0[0] < 0 && lp0[1] < 0, "log probabilities are negative");

    /* Save and load: the same logits, bit for bit; garbage is refused. */
    char path[] = "/tmp/nf_test_classifierXXXXXX";
    int fd_ = mkstemp(path);
    CHECK(fd_ >= 0, "temp file");
    close(fd_);
    nf_model_desc md;
    nf_model_desc_init(&md);
    md.num_classes = K;
    snprintf(md.class_names[1], sizeof md.class_names[1], "snare");
    CHECK_OK(nf_classifier_save(path, c, &md, "0123456789abcdef", "steps=0"));
    nf_classifier *c2;
    nf_model_desc md2;
    char hash[17];
    CHECK_OK(nf_classifier_load(path, 2, 8, &c2, &md2, hash));
    float lg3[B * K];
    CHECK_OK(nf_classifier_forward(c, x, t, B, L, lg));
    CHECK_OK(nf_classifier_forward(c2, x, t, B, L, lg3));
    CHECK(!memcmp(lg, lg3, sizeof lg3), "saved and loaded classifier gives the same logits");
    CHECK(!strcmp(hash, "0123456789abcdef") && !strcmp(md2.class_names[1], "snare"), "model description kept");
    nf_classifier_free(c2);
    FILE *f = fopen(path, "wb");
    fputs("not a safetensors file", f);
    fclose(f);
    CHECK(nf_classifier_load(path, 2, 8, &c2, NULL, NULL) != NF_OK, "a bad file is refused");
    unlink(path);
    nf_classifier_free(c);
}

/* Two classes of short tones: low (2-4 cycles per clip) and high (9-13 cycles), random
 * phase and amplitude, unit RMS. 200 steps must classify them through the noise
 * of t = 300 (cosine schedule, abar = 0.79, per-sample SNR 3.8) nearly perfectly. */
static void make_tones(float *x, int *y, int N, int L, uint64_t seed)
{
    for (int k = 0; k < N; k++) {
        double u[3] = {nf_rand_uniform1(seed, 1, (uint64_t)k), nf_rand_uniform1(seed, 2, (uint64_t)k),
                       nf_rand_uniform1(seed, 3, (uint64_t)k)};
        y[k] = k % 2;
        double cyc = y[k] ? 9 + 4 * u[0] : 2 + 2 * u[0], ph = 2 * M_PI * u[1], a = sqrt(2.0) * (0.8 + 0.4 * u[2]);
        for (int l = 0; l < L; l++) x[(size_t)k * L + l] = (float)(a * sin(2 * M_PI * cyc * l / L + ph));
    }
}

static double accuracy_at(nf_classifier *c, const nf_schedule *s, const float *x0, const int *y, int N, int L, int t_idx)
{
    enum { MB = 64 };
    int ok = 0;
    float xt[MB * 64], eps[MB * 64], tf[MB], lg[MB * 2];
    int tt[MB];
    for (int b0 = 0; b0 < N; b0 += MB) {
        int nb = N - b0 < MB ? N - b0 : MB;
        for (int b = 0; b < nb; b++) tt[b] = t_idx, tf[b] = (float)t_idx;
        nf_randn(eps, (size_t)nb * L, 999, (uint64_t)b0, 0);
        nf_q_sample(s, tt, x0 + (size_t)b0 * L, eps, nb, (size_t)L, xt);
        CHECK_OK(nf_classifier_forward(c, xt, tf, nb, L, lg));
        int cor = 0;
        nf_classifier_xent(lg, y + b0, nb, 2, NULL, &cor);
        ok += cor;
    }
    return (double)ok / N;
}

static void test_tones(void)
{
    enum { N = 256, NT = 512, L = 64 };
    nf_schedule s;
    CHECK_OK(nf_schedule_init(&s, NF_SCHEDULE_COSINE, 1000));
    float *x = malloc(sizeof(float) * N * L), *xt = malloc(sizeof(float) * NT * L);
    int y[N], yt[NT];
    make_tones(x, y, N, L, 1);
    make_tones(xt, yt, NT, L, 2); /* held-out clips */
    nf_classifier_config cfg;
    nf_classifier_config_default(&cfg);
    cfg.in_ch = 1;
    cfg.base = 8;
    cfg.n_levels = 3;
    cfg.mults[0] = 1, cfg.mults[1] = 2, cfg.mults[2] = 2;
    cfg.groups = 4;
    cfg.num_classes = 2;
    nf_classifier *c;
    CHECK_OK(nf_classifier_create(&cfg, 64, L, &c));
    nf_classifier_init_params(c, 3);
    double a0 = accuracy_at(c, &s, xt, yt, NT, L, 300);
    nf_classifier_train_config tc;
    nf_classifier_train_config_default(&tc);
    tc.steps = 200;
    tc.batch = 16;
    tc.lr = 3e-3f;
    tc.seed = 7;
    double fl;
    CHECK_OK(nf_classifier_train(c, &s, x, y, N, L, &tc, NULL, NULL, &fl));
    double a300 = accuracy_at(c, &s, xt, yt, NT, L, 300), a990 = accuracy_at(c, &s, xt, yt, NT, L, 990);
    fprintf(stderr, "tones: accuracy at t=300 %.3f (untrained %.3f), t=990 %.3f, final loss %.3f\n", a300, a0, a990, fl);
    CHECK(a300 >= 0.95, "trained classifier: held-out accuracy at t = 300 is %.3f (>= 0.95)", a300);
    CHECK(a990 < 0.8, "at t = 990 (abar %.4f) little is left to classify: %.3f < 0.8", s.alpha_bar[990], a990);
    /* Determinism: the same seed trains the same weights. */
    nf_classifier *c2;
    CHECK_OK(nf_classifier_create(&cfg, 64, L, &c2));
    nf_classifier_init_params(c2, 3);
    tc.steps = 20;
    CHECK_OK(nf_classifier_train(c2, &s, x, y, N, L, &tc, NULL, NULL, NULL));
    float *p2 = malloc(sizeof(float) * nf_classifier_num_params(c2));
    memcpy(p2, nf_classifier_params(c2), sizeof(float) * nf_classifier_num_params(c2));
    nf_classifier_init_params(c2, 3);
    CHECK_OK(nf_classifier_train(c2, &s, x, y, N, L, &tc, NULL, NULL, NULL));
    CHECK(!memcmp(p2, nf_classifier_params(c2), sizeof(float) * nf_classifier_num_params(c2)), "training is deterministic");
    free(p2);
    nf_classifier_free(c2);
    nf_classifier_free(c);
    free(x);
    free(xt);
    nf_schedule_free(&s);
}

/* Classifier guidance with the trained network on the exact (unconditional) mixture
 * denoiser: class 1 has half the mass; guiding towards it must raise its share to near
 * what the analytic p(y | x_t) gives. */
static double share_of(const gmm *g, const float *xs, int N, int cls)
{
    gmm_level P;
    gmm_prepare(g, 1.0, &P);
    int n = 0;
    for (int k = 0; k < N; k++) {
        double x[2] = {xs[2 * k], xs[2 * k + 1]};
        n += g->cls[gmm_assign_prepared(g, &P, x)] == cls;
    }
    return (double)n / N;
}

static void test_guidance(void)
{
    enum { ND = 2048, N = 600 };
    gmm g;
    gmm_test_mixture(&g);
    nf_schedule train;
    CHECK_OK(nf_schedule_init(&train, NF_SCHEDULE_LINEAR, 1000));
    /* Training data: exact samples with their component's class. */
    double *xd = malloc(sizeof(double) * ND * 2);
    float *x0 = malloc(sizeof(float) * ND * 2);
    int *lab = malloc(sizeof(int) * ND);
    gmm_level P;
    gmm_prepare(&g, 1.0, &P);
    int half = ND / 2;
    gmm_sample(&g, 0, half, 21, xd);
    gmm_sample(&g, 1, ND - half, 22, xd + 2 * half);
    for (int k = 0; k < ND; k++) {
        x0[2 * k] = (float)xd[2 * k], x0[2 * k + 1] = (float)xd[2 * k + 1];
        lab[k] = k < half ? 0 : 1;
    }
    nf_classifier_config cfg;
    nf_classifier_config_default(&cfg);
    cfg.in_ch = 2;
    cfg.base = 8;
    cfg.n_levels = 1;
    cfg.mults[0] = 2;
    cfg.blocks = 2;
    cfg.groups = 4;
    cfg.num_classes = 2;
    nf_classifier *c;
    CHECK_OK(nf_classifier_create(&cfg, 256, 1, &c));
    nf_classifier_init_params(c, 4);
    nf_classifier_train_config tc;
    nf_classifier_train_config_default(&tc);
    tc.steps = 300;
    tc.batch = 32;
    tc.lr = 3e-3f;
    tc.seed = 8;
    CHECK_OK(nf_classifier_train(c, &train, x0, lab, ND, 1, &tc, NULL, NULL, NULL));

    float *xs = malloc(sizeof(float) * N * 2);
    int *y = malloc(sizeof(int) * N);
    for (int k = 0; k < N; k++) y[k] = 1;
    nf_sampler_config sc;
    nf_sampler_config_default(&sc);
    sc.kind = NF_SAMPLER_DDIM;
    sc.steps = 50;
    sc.pred = NF_PRED_V;
    gmm_model m = {.g = &g, .train = &train, .pred = NF_PRED_V}, ma = m;
    CHECK_OK(nf_sample(&train, &sc, gmm_denoiser_uncond, &m, y, 300, N, 2, 1, xs));
    double base = share_of(&g, xs, N, 1);
    sc.classifier = nf_classifier_guidance_fn;
    sc.classifier_ctx = c;
    sc.classifier_scale = 1.0f;
    CHECK_OK(nf_sample(&train, &sc, gmm_denoiser_uncond, &m, y, 300, N, 2, 1, xs));
    double s1 = share_of(&g, xs, N, 1);
    sc.classifier_scale = 3.0f;
    CHECK_OK(nf_sample(&train, &sc, gmm_denoiser_uncond, &m, y, 300, N, 2, 1, xs));
    double s3 = share_of(&g, xs, N, 1);
    sc.classifier = gmm_classifier;
    sc.classifier_ctx = &ma;
    sc.classifier_scale = 1.0f;
    CHECK_OK(nf_sample(&train, &sc, gmm_denoiser_uncond, &m, y, 300, N, 2, 1, xs));
    double exact = share_of(&g, xs, N, 1);
    fprintf(stderr, "guidance to class 1: share %.3f unguided, %.3f at s=1, %.3f at s=3 (analytic classifier, s=1: %.3f)\n",
            base, s1, s3, exact);
    CHECK(fabs(base - 0.5) < 0.06, "unguided share of class 1 is its mass 0.5 (%.3f)", base);
    CHECK(s1 > 0.85, "trained-classifier guidance at s = 1 raises the share to %.3f (> 0.85)", s1);
    CHECK(s3 >= s1 - 0.01 && s3 > 0.9, "a larger scale does not lower it: %.3f at s = 3", s3);
    CHECK(exact > 0.95, "analytic classifier at s = 1: %.3f", exact);
    nf_classifier_free(c);
    free(xd);
    free(x0);
    free(lab);
    free(xs);
    free(y);
    nf_schedule_free(&train);
}

int main(void)
{
    /* Tiny tensors: one thread avoids OpenMP overhead on a shared machine. */
    nf_set_threads(1);
    double t0 = nf_now();
    test_gradients();
    fprintf(stderr, "gradients %.1f s\n", nf_now() - t0);
    test_tones();
    fprintf(stderr, "tones %.1f s\n", nf_now() - t0);
    test_guidance();
    fprintf(stderr, "guidance %.1f s\n", nf_now() - t0);
    return nf_test_done();
}
