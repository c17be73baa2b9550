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

/* The exact output moments of replacement inpainting (with RePaint jumps) for a Gaussian
 * N(mu, S) and its exact denoiser. Everything is linear-Gaussian: x0_pred = G x + c with
 * G = sqrt(abar) S (abar S + (1-abar) I)^-1, a DDPM/DDIM step maps (m, P) to
 * (A m + b, A P A^T + var I), replacement sets coordinate 0 to sqrt(abar) known + fresh
 * noise (uncorrelated with the rest) and a jump is x <- sqrt(alpha) x + sqrt(beta) z.
 * This is the algorithm computed without Monte Carlo: the sampler must agree with it to
 * within sampling error (a test of the code), and it tells how far the ALGORITHM is from
 * the true conditional (a property of the method, not of the code). */
static void mat3_mul(double A[3][3], double B[3][3], double C[3][3])
{
    double T[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            T[i][j] = 0;
            for (int k = 0; k < 3; k++) T[i][j] += A[i][k] * B[k][j];
        }
    memcpy(C, T, sizeof T);
}

static void inpaint_moments(const nf_schedule *train, double S[3][3], const double *mu, double known,
                            nf_sampler_kind kind, int steps, int jumps, double eta, double m[3], double P[3][3])
{
    nf_schedule rs;
    CHECK_OK(nf_schedule_respace_even(&rs, train, steps));
    memset(P, 0, sizeof(double) * 9);
    for (int i = 0; i < 3; i++) m[i] = 0, P[i][i] = 1;
    /* Start: x_T ~ N(0, I) with the known coordinate replaced at level T-1. */
    m[0] = sqrt(rs.alpha_bar[rs.T - 1]) * known;
    P[0][0] = 1 - rs.alpha_bar[rs.T - 1];
    for (int i = rs.T - 1; i >= 0; i--) {
        double ab = rs.alpha_bar[i], abp = rs.alpha_bar_prev[i], sa = sqrt(ab), sb = sqrt(1 - ab);
        double Lo[GMM_MAXD][GMM_MAXD], A4[GMM_MAXD][GMM_MAXD], G[3][3], c[3];
        for (int r = 0; r < 3; r++)
            for (int q = 0; q < 3; q++) A4[r][q] = ab * S[r][q] + (r == q ? 1 - ab : 0);
        gmm_chol(3, A4, Lo);
        double inv[3][3];
        for (int q = 0; q < 3; q++) {
            double e[GMM_MAXD] = {0}, z[GMM_MAXD];
            e[q] = 1;
            gmm_chol_solve(3, Lo, e, z);
            for (int r = 0; r < 3; r++) inv[r][q] = z[r];
        }
        mat3_mul(S, inv, G);
        for (int r = 0; r < 3; r++)
            for (int q = 0; q < 3; q++) G[r][q] *= sa;
        for (int r = 0; r < 3; r++) {
            c[r] = mu[r];
            for (int q = 0; q < 3; q++) c[r] -= G[r][q] * sa * mu[q];
        }
        double A[3][3], bvec[3], var;
        if (kind == NF_SAMPLER_DDPM) {
            double cx0, cxt;
            nf_q_posterior_coefs(&rs, i, &cx0, &cxt, &var);
            for (int r = 0; r < 3; r++) {
                for (int q = 0; q < 3; q++) A[r][q] = cx0 * G[r][q] + (r == q ? cxt : 0);
                bvec[r] = cx0 * c[r];
            }
            if (i == 0) var = 0;
        } else { /* DDIM eq. 12 with eps = (x - sa x0_pred) / sb */
            double sig = eta * sqrt((1 - abp) / (1 - ab)) * sqrt(1 - ab / abp), d = 1 - abp - sig * sig;
            d = d > 0 ? sqrt(d) : 0;
            for (int r = 0; r < 3; r++) {
                for (int q = 0; q < 3; q++) A[r][q] = sqrt(abp) * G[r][q] + d * ((r == q) - sa * G[r][q]) / sb;
                bvec[r] = sqrt(abp) * c[r] - d * sa * c[r] / sb;
            }
            var = sig * sig;
        }
        for (int j = 0; j <= (i > 0 ? jumps : 0); j++) {
            if (j > 0) { /* RePaint jump back to level i: q(x_i | x_{i-1}) */
                double al = rs.alpha[i];
                for (int r = 0; r < 3; r++) {
                    m[r] *= sqrt(al);
                    for (int q = 0; q < 3; q++) P[r][q] = al * P[r][q] + (r == q ? 1 - al : 0);
                }
            }
            double nm[3], AP[3][3], At[3][3];
            for (int r = 0; r < 3; r++) {
                nm[r] = bvec[r];
                for (int q = 0; q < 3; q++) nm[r] += A[r][q] * m[q], At[q][r] = A[r][q];
            }
            mat3_mul(A, P, AP);
            mat3_mul(AP, At, P);
            for (int r = 0; r < 3; r++) m[r] = nm[r], P[r][r] += var;
            double abn = i > 0 ? rs.alpha_bar[i - 1] : 1.0;
            m[0] = sqrt(abn) * known;
            for (int k = 0; k < 3; k++) P[0][k] = P[k][0] = 0;
            P[0][0] = 1 - abn;
        }
    }
    nf_schedule_free(&rs);
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
    /* Replacement (RePaint eq. 8) is an approximation, and the exact moment propagation
     * above shows by how much (the sampler agrees with it to Monte Carlo error, so this is
     * the method, not a bug): the known coordinate is re-noised independently of the
     * unknown ones, so x_t never has the joint law p(x_t | x0_known), and resampling does not
     * cure it, because the chain's fixed point is not the true conditional. Against the
     * truth (mean 0.12 0.72, cov 0.22 0.22 0.52):
     *   DDPM 250 steps, no jumps:   mean error 0.12, covariance error 0.026
     *   DDPM 100 steps, U = 4 / 10 / 20: mean 0.024 / 0.012 / 0.007, cov 0.084 / 0.11 / 0.14
     *   DDPM 250 steps, U = 10:      mean 0.011, covariance 0.056 (under-dispersed)
     *   DDIM 50 steps (eta 1), U = 2: mean 0.044, covariance 0.12
     * Jumps (one step each, Lugmayr et al. Algorithm 1) fix the mean but shrink the
     * variance, more so the more jumps per step and the fewer the steps.
     * So each run is checked (1) against the algorithm's exact moments, to 4.5 standard
     * errors (catches any error in the step, the replacement noise level or the jump
     * loop), and (2) against the true conditional with a tolerance of its measured
     * method error plus 0.02 (for the best method, DDPM 250 steps with U = 10: 0.03 in
     * the mean and 0.075 in the covariance). */
    struct { const char *name; nf_sampler_kind kind; int steps, jumps; double tol_mean, tol_cov; } runs[] = {
        {"ddpm", NF_SAMPLER_DDPM, 250, 0, 0.14, 0.05},
        {"ddpm+repaint", NF_SAMPLER_DDPM, 100, 4, 0.045, 0.105},
        {"ddpm250+repaint10", NF_SAMPLER_DDPM, 250, 10, 0.03, 0.075},
        {"ddim+repaint", NF_SAMPLER_DDIM, 50, 2, 0.065, 0.14},
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
        double am[3], aP[3][3];
        inpaint_moments(train, S, mu, known, runs[r].kind, runs[r].steps, runs[r].jumps, 1.0, am, aP);
        for (int i = 0; i < 2; i++) {
            double se = sqrt(aP[i + 1][i + 1] / N);
            CHECK(fabs(sm[i] - am[i + 1]) < 4.5 * se, "%s: mean[%d] %.4f = the algorithm's exact %.4f", runs[r].name, i, sm[i], am[i + 1]);
            CHECK(fabs(sm[i] - cm[i]) < 4 * sqrt(cc[i][i] / N) + runs[r].tol_mean, "%s: conditional mean[%d] %.4f, want %.4f", runs[r].name, i, sm[i], cm[i]);
            for (int j = 0; j < 2; j++) {
                double sec = sqrt((aP[i + 1][i + 1] * aP[j + 1][j + 1] + aP[i + 1][j + 1] * aP[i + 1][j + 1]) / N);
                CHECK(fabs(sc[i][j] - aP[i + 1][j + 1]) < 4.5 * sec, "%s: cov[%d][%d] %.4f = the algorithm's exact %.4f", runs[r].name, i, j, sc[i][j], aP[i + 1][j + 1]);
                CHECK(fabs(sc[i][j] - cc[i][j]) < runs[r].tol_cov + 4.5 * sec, "%s: conditional cov[%d][%d] %.4f, want %.4f", runs[r].name, i, j, sc[i][j], cc[i][j]);
            }
        }
        fprintf(stderr, "%s: mean (%.3f %.3f) algorithm (%.3f %.3f) want (%.3f %.3f); cov %.3f %.3f %.3f algorithm %.3f %.3f %.3f want %.3f %.3f %.3f\n",
                runs[r].name, sm[0], sm[1], am[1], am[2], cm[0], cm[1], sc[0][0], sc[0][1], sc[1][1], aP[1][1], aP[1][2], aP[2][2],
                cc[0][0], cc[0][1], cc[1][1]);
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
