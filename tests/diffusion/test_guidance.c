/* Classifier-free and classifier guidance with exact conditional scores and the analytic
 * classifier p(y | x_t) of a two-class Gaussian mixture (class 0: component 0, class 1:
 * components 1 and 2). */
#include "gmm.h"

#define N 2000

static double mean_class_prob(const gmm *g, const float *xs, int cls)
{
    double s = 0;
    for (int k = 0; k < N; k++) {
        double x[2] = {xs[2 * k], xs[2 * k + 1]};
        s += gmm_class_prob(g, 1.0, x, cls);
    }
    return s / N;
}

int main(void)
{
    gmm g;
    gmm_test_mixture(&g);
    nf_schedule train;
    CHECK_OK(nf_schedule_init(&train, NF_SCHEDULE_LINEAR, 1000));
    float *xs = malloc(sizeof(float) * N * 2);
    int *y = malloc(sizeof(int) * N);
    for (int k = 0; k < N; k++) y[k] = 1;
    nf_sampler_config c;
    nf_sampler_config_default(&c);
    c.kind = NF_SAMPLER_DDIM;
    c.steps = 50;
    c.pred = NF_PRED_V;
    gmm_model m = {.g = &g, .train = &train, .pred = NF_PRED_V};

    /* Classifier-free. Scale 1: the class-conditional model itself. */
    CHECK_OK(nf_sample(&train, &c, gmm_denoiser, &m, y, 5000, N, 2, 1, xs));
    gmm_check_samples("cfg s=1", &g, 1, xs, N, 0.02, 0.03, 0.04);
    double p_prev = mean_class_prob(&g, xs, 1);
    float scales[3] = {1.5f, 3.0f, 6.0f};
    for (int q = 0; q < 3; q++) {
        c.cfg_scale = scales[q];
        m.calls = m.evals = 0;
        CHECK_OK(nf_sample(&train, &c, gmm_denoiser, &m, y, 5000, N, 2, 1, xs));
        CHECK(m.calls == 50 && m.evals == 2L * N * 50, "cfg: both branches in one batched call per step (%ld calls, %ld evals)", m.calls, m.evals);
        double p = mean_class_prob(&g, xs, 1);
        CHECK(p > p_prev, "cfg scale %.1f raises p(y|x): %.5f > %.5f", scales[q], p, p_prev);
        p_prev = p;
    }
    /* Scale slightly off 1 takes the two-branch path and must land next to scale 1. */
    c.cfg_scale = 1.0f + 1e-6f;
    CHECK_OK(nf_sample(&train, &c, gmm_denoiser, &m, y, 5000, N, 2, 1, xs));
    gmm_check_samples("cfg s=1 (two branches)", &g, 1, xs, N, 0.02, 0.03, 0.04);
    c.cfg_scale = 1.0f;

    /* Classifier guidance on the unconditional model: scale 1 gives p(x | y) exactly in
     * eps form (grad log p_t(x) + grad log p(y | x_t) = grad log p_t(x | y)). */
    gmm_model cls = m;
    c.classifier = gmm_classifier;
    c.classifier_ctx = &cls;
    c.classifier_scale = 1.0f;
    m.calls = 0;
    /* Unconditional denoiser: a wrapper that ignores y. */
    CHECK_OK(nf_sample(&train, &c, gmm_denoiser_uncond, &m, y, 6000, N, 2, 1, xs));
    gmm_check_samples("classifier s=1 (DDIM)", &g, 1, xs, N, 0.02, 0.03, 0.04);
    p_prev = mean_class_prob(&g, xs, 1);
    for (int q = 0; q < 3; q++) {
        c.classifier_scale = scales[q];
        CHECK_OK(nf_sample(&train, &c, gmm_denoiser_uncond, &m, y, 6000, N, 2, 1, xs));
        double p = mean_class_prob(&g, xs, 1);
        CHECK(p > p_prev, "classifier scale %.1f raises p(y|x): %.5f > %.5f", scales[q], p, p_prev);
        p_prev = p;
    }
    /* DDPM's mean shift mu + s Sigma grad (Dhariwal & Nichol Algorithm 1) at scale 1 on 100
     * steps: close to the class-conditional distribution (the shift is a first-order
     * approximation, so looser tolerances), and more class-1 than unguided. */
    c.kind = NF_SAMPLER_DDPM;
    c.steps = 100;
    c.classifier_scale = 1.0f;
    CHECK_OK(nf_sample(&train, &c, gmm_denoiser_uncond, &m, y, 7000, N, 2, 1, xs));
    gmm_check_samples("classifier s=1 (DDPM)", &g, 1, xs, N, 0.03, 0.05, 0.06);
    double p_guided = mean_class_prob(&g, xs, 1);
    c.classifier = NULL;
    CHECK_OK(nf_sample(&train, &c, gmm_denoiser_uncond, &m, NULL, 7000, N, 2, 1, xs));
    double p_plain = mean_class_prob(&g, xs, 1);
    CHECK(p_guided > p_plain + 0.2, "DDPM classifier guidance: p(y|x) %.4f vs unguided %.4f", p_guided, p_plain);
    free(xs);
    free(y);
    nf_schedule_free(&train);
    return nf_test_done();
}
