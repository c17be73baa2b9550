/* Determinism (threads, batch vs alone), inpainting against the analytic conditional of
 * a Gaussian, variation at strength 0, interpolation endpoints and DDIM inversion. */
#include "gmm.h"

#include <omp.h>
#include <string.h>

/* Every sampler, with CFG and with inpainting: bit-identical at 1 and 2 threads, and
 * example k of a batch equals example k rendered alone with seed + k. */
static void test_determinism(const nf_schedule *train, const gmm *g)
{
    enum { B = 6 };
    float a[B * 2], b[B * 2], one[2];
    int y[B] = {0, 1, -1, 1, 0, 1};
    nf_sampler_kind kinds[5] = {NF_SAMPLER_DDPM, NF_SAMPLER_DDIM, NF_SAMPLER_DPMPP, NF_SAMPLER_EULER_A, NF_SAMPLER_LANGEVIN};
    gmm_model m = {.g = g, .train = train, .pred = NF_PRED_V};
    for (int q = 0; q < 5; q++) {
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = kinds[q];
        c.steps = 20;
        c.eta = 0.7;
        c.cfg_scale = 2.5f;
        omp_set_num_threads(1);
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, y, 123, B, 2, 1, a));
        omp_set_num_threads(2);
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, y, 123, B, 2, 1, b));
        CHECK(!memcmp(a, b, sizeof a), "sampler %d: 1 and 2 threads bit-identical", q);
        int same = 1;
        for (int k = 0; k < B; k++) {
            CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, y + k, 123 + k, 1, 2, 1, one));
            same &= !memcmp(one, a + 2 * k, sizeof one);
        }
        CHECK(same, "sampler %d: example k alone == example k in the batch", q);
        float a2[B * 2];
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, y, 124, B, 2, 1, a2));
        CHECK(memcmp(a, a2, sizeof a) != 0, "sampler %d: another seed, other samples", q);
    }
}

/* Inpainting a 3-D Gaussian laid out as [B, 1, L = 3]: position 0 known. */
static void test_inpainting(const nf_schedule *train)
{
    enum { N = 1500, L = 3 };
    gmm g;
    memset(&g, 0, sizeof g);
    g.d = 3;
    g.K = 1;
    g.w[0] = 1;
    double mu[3] = {0.5, -0.3, 1.0};
    double S[3][3] = {{0.5, 0.3, -0.2}, {0.3, 0.4, 0.1}, {-0.2, 0.1, 0.6}};
    for (int i = 0; i < 3; i++) {
        g.mu[0][i] = mu[i];
        for (int j = 0; j < 3; j++) g.S[0][i][j] = S[i][j];
    }
    const double known = 1.2;
    /* The analytic conditional given x_0 = known. */
    double cm[2], cc[2][2];
    for (int i = 0; i < 2; i++) {
        cm[i] = mu[i + 1] + S[i + 1][0] / S[0][0] * (known - mu[0]);
        for (int j = 0; j < 2; j++) cc[i][j] = S[i + 1][j + 1] - S[i + 1][0] * S[0][j + 1] / S[0][0];
    }
    float *init = malloc(sizeof(float) * N * L), *xs = malloc(sizeof(float) * N * L);
    for (int k = 0; k < N; k++) {
        init[k * L] = (float)known;
        init[k * L + 1] = 9.0f; /* unknown: must not leak */
        init[k * L + 2] = -9.0f;
    }
    float mask[L] = {1, 0, 0};
    gmm_model m = {.g = &g, .train = train, .pred = NF_PRED_EPS};
    struct { const char *name; nf_sampler_kind kind; int steps, jumps; double tol; } runs[] = {
        /* Replacement (RePaint eq. 8) is an approximation: the unknown part only sees noisy
         * copies of the known value until the end. Measured errors against the analytic
         * conditional are about 0.1 in the mean and 0.05-0.08 in covariance entries, so the
         * tolerance here is 0.15: it catches a broken replacement (a leak of init's unknown
         * values, or no conditioning at all: the unconditional means are -0.3 and 1.0, the
         * variances 0.4 and 0.6) but is not a proof of exactness. */
        {"ddpm", NF_SAMPLER_DDPM, 250, 0, 0.15},
        {"ddpm+repaint", NF_SAMPLER_DDPM, 100, 4, 0.15},
        {"ddim+repaint", NF_SAMPLER_DDIM, 50, 2, 0.15},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = runs[r].kind;
        c.steps = runs[r].steps;
        c.eta = 1.0;
        c.pred = NF_PRED_EPS;
        c.init = init;
        c.mask = mask;
        c.repaint_jumps = runs[r].jumps;
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 77, N, 1, L, xs));
        int exact = 1;
        double sm[2] = {0}, sc[2][2] = {{0}};
        for (int k = 0; k < N; k++) {
            exact &= xs[k * L] == (float)known;
            for (int i = 0; i < 2; i++) sm[i] += xs[k * L + 1 + i] / N;
        }
        for (int k = 0; k < N; k++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) sc[i][j] += (xs[k * L + 1 + i] - sm[i]) * (xs[k * L + 1 + j] - sm[j]) / (N - 1);
        CHECK(exact, "%s: the known region comes out exactly as given", runs[r].name);
        for (int i = 0; i < 2; i++) {
            CHECK(fabs(sm[i] - cm[i]) < 4 * sqrt(cc[i][i] / N) + runs[r].tol, "%s: conditional mean[%d] %.4f, want %.4f", runs[r].name, i, sm[i], cm[i]);
            for (int j = 0; j < 2; j++)
                CHECK(fabs(sc[i][j] - cc[i][j]) < runs[r].tol, "%s: conditional cov[%d][%d] %.4f, want %.4f", runs[r].name, i, j, sc[i][j], cc[i][j]);
        }
        fprintf(stderr, "%s: mean (%.3f %.3f) want (%.3f %.3f); cov %.3f %.3f %.3f want %.3f %.3f %.3f\n", runs[r].name, sm[0], sm[1],
                cm[0], cm[1], sc[0][0], sc[0][1], sc[1][1], cc[0][0], cc[0][1], cc[1][1]);
    }
    free(init);
    free(xs);
}

static void test_variation_interpolation(const nf_schedule *train, const gmm *g)
{
    enum { B = 4 };
    float init[B * 2] = {0.1f, -0.2f, 1.5f, 1.0f, -1.4f, 0.6f, 0.4f, -1.4f}, out[B * 2];
    gmm_model m = {.g = g, .train = train, .pred = NF_PRED_V};
    for (int q = 0; q < 5; q++) {
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = (nf_sampler_kind)q;
        c.init = init;
        c.strength = 0.0f;
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 9, B, 2, 1, out));
        CHECK(!memcmp(out, init, sizeof out), "sampler %d: variation at strength 0 returns the input", q);
        c.strength = 0.3f;
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 9, B, 2, 1, out));
        double d = 0;
        for (int k = 0; k < B * 2; k++) d += fabs(out[k] - init[k]) / (B * 2);
        CHECK(d > 0.01 && d < 1.0, "sampler %d: variation at strength 0.3 changes the input a little (%.3f)", q, d);
    }
    /* Interpolation between two seeds: the endpoints are the seeds' own samples. */
    float na[2], nb[2], x[2], sa[2], sb[2], mid[2];
    nf_start_noise(31, 1, 2, na);
    nf_start_noise(32, 1, 2, nb);
    for (int q = 0; q < 5; q++) {
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = (nf_sampler_kind)q;
        c.steps = 20;
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 31, 1, 2, 1, sa));
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 32, 1, 2, 1, sb));
        c.start_noise = x;
        nf_slerp(na, nb, 2, 0.0, x);
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 31, 1, 2, 1, out));
        CHECK(!memcmp(out, sa, sizeof sa), "sampler %d: interpolation at 0 = seed A's sample", q);
        nf_slerp(na, nb, 2, 1.0, x);
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 32, 1, 2, 1, out));
        CHECK(!memcmp(out, sb, sizeof sb), "sampler %d: interpolation at 1 = seed B's sample", q);
        nf_slerp(na, nb, 2, 0.5, x);
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 31, 1, 2, 1, mid));
        CHECK(memcmp(mid, sa, sizeof sa) && memcmp(mid, sb, sizeof sb), "sampler %d: the midpoint is a third sample", q);
    }
    /* slerp keeps the norm of equal-norm inputs. */
    float u[64], v[64], w[64];
    nf_randn(u, 64, 3, 0, 0);
    nf_randn(v, 64, 3, 1, 0);
    double nu = 0, nv = 0, nw = 0;
    for (int k = 0; k < 64; k++) { nu += u[k] * u[k]; nv += v[k] * v[k]; }
    for (int k = 0; k < 64; k++) v[k] *= (float)sqrt(nu / nv);
    nf_slerp(u, v, 64, 0.37, w);
    for (int k = 0; k < 64; k++) nw += w[k] * w[k];
    CHECK_CLOSE(nw, nu, 0, 1e-5, "slerp keeps the norm");
    /* Interpolation between two sounds: DDIM inversion, then DDIM eta = 0 decodes back. */
    nf_sampler_config c;
    nf_sampler_config_default(&c);
    c.kind = NF_SAMPLER_DDIM;
    c.steps = 200;
    float xT[B * 2], rec[B * 2];
    /* Points near the modes: between modes the ODE is ill-conditioned (it splits mass). */
    float near[B * 2] = {-1.4f, 0.6f, 1.6f, 1.1f, 0.4f, -1.4f, -1.7f, 0.3f};
    memcpy(init, near, sizeof near);
    CHECK_OK(nf_ddim_invert(train, &c, gmm_denoiser, &m, NULL, init, B, 2, 1, xT));
    c.start_noise = xT;
    CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, 0, B, 2, 1, rec));
    double e = 0;
    for (int k = 0; k < B * 2; k++) e = fmax(e, fabs(rec[k] - init[k]));
    fprintf(stderr, "inversion max err %.4f\n", e);
    CHECK(e < 0.05, "DDIM inversion then decoding reconstructs the sounds (max err %.4f)", e);
}

int main(void)
{
    gmm g;
    gmm_test_mixture(&g);
    nf_schedule train;
    CHECK_OK(nf_schedule_init(&train, NF_SCHEDULE_LINEAR, 1000));
    test_determinism(&train, &g);
    test_variation_interpolation(&train, &g);
    test_inpainting(&train);
    nf_schedule_free(&train);
    return nf_test_done();
}
