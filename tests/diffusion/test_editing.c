/* Determinism (threads, batch vs alone), inpainting against the analytic conditional of
 * a Gaussian (replacement: its own exact moments; SMC: its exact K -> infinity limit and
 * the true conditional), variation at strength 0, interpolation endpoints and DDIM
 * inversion. */
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

/* One reverse step for the exact denoiser of a Gaussian N(mu, S) in 3-D, which is affine:
 * x0_pred = G x + c with G = sqrt(abar) S (abar S + (1-abar) I)^-1, so a DDPM/DDIM step is
 * x_{i-1} = A x_i + b + N(0, var I) (var = 0 at i = 0, where the samplers add no noise). */
static void step_affine(const nf_schedule *rs, double S[3][3], const double *mu, nf_sampler_kind kind, int i,
                        double eta, double A[3][3], double bvec[3], double *var)
{
    double ab = rs->alpha_bar[i], abp = rs->alpha_bar_prev[i], sa = sqrt(ab), sb = sqrt(1 - ab);
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
    if (kind == NF_SAMPLER_DDPM) {
        double cx0, cxt;
        nf_q_posterior_coefs(rs, i, &cx0, &cxt, var);
        for (int r = 0; r < 3; r++) {
            for (int q = 0; q < 3; q++) A[r][q] = cx0 * G[r][q] + (r == q ? cxt : 0);
            bvec[r] = cx0 * c[r];
        }
        if (i == 0) *var = 0;
    } else { /* DDIM eq. 12 with eps = (x - sa x0_pred) / sb */
        double sig = eta * sqrt((1 - abp) / (1 - ab)) * sqrt(1 - ab / abp), d = 1 - abp - sig * sig;
        d = d > 0 ? sqrt(d) : 0;
        for (int r = 0; r < 3; r++) {
            for (int q = 0; q < 3; q++) A[r][q] = sqrt(abp) * G[r][q] + d * ((r == q) - sa * G[r][q]) / sb;
            bvec[r] = sqrt(abp) * c[r] - d * sa * c[r] / sb;
        }
        *var = sig * sig;
    }
}

/* The exact output moments of replacement inpainting (with RePaint jumps) for a Gaussian
 * N(mu, S) and its exact denoiser. Everything is linear-Gaussian: a DDPM/DDIM step maps
 * (m, P) to (A m + b, A P A^T + var I), replacement sets coordinate 0 to sqrt(abar) known
 * + fresh noise (uncorrelated with the rest) and a jump is x <- sqrt(alpha) x + sqrt(beta) z.
 * This is the algorithm computed without Monte Carlo: the sampler must agree with it to
 * within sampling error (a test of the code), and it tells how far the ALGORITHM is from
 * the true conditional (a property of the method, not of the code). */
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
        double A[3][3], bvec[3], var;
        step_affine(&rs, S, mu, kind, i, eta, A, bvec, &var);
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

/* The K -> infinity limit of SMC inpainting (position 0 known) for the same Gaussian,
 * without Monte Carlo. For a given trajectory y_{N-1..0} of the known coordinate the
 * particles target the model chain's law of the unknown part u given x[0] = y at every
 * level, which for this linear-Gaussian chain is a Kalman filter with exact
 * observations: u_i | y_{i..} ~ N(f_i, P_i), P_i independent of y. A step predicts
 * x_{i-1} ~ N(A (y_i, f_i) + b, A_u P_i A_u^T + Q) (Q = var I, but the known coordinate
 * weighted with beta_0 at i = 0 as the sampler does) and conditions on x_{i-1}[0] =
 * y_{i-1}. The trajectory is random (y_{i-1} = c_x0 known + c_xt y_i + sd z, as the
 * sampler draws it), and (f_i, y_i) is affine in it, so we carry its mean and covariance.
 * The result's law is N(E f_0, Cov f_0 + P_0). Against the truth this is the method's
 * error (the discretisation: the model chain is not the exact reversal of q); against
 * the sampler, the difference is finite-K bias plus Monte Carlo error. */
static void smc_limit(const nf_schedule *train, double S[3][3], const double *mu, double known, nf_sampler_kind kind,
                      int steps, double eta, double mo[2], double Po[2][2])
{
    nf_schedule rs;
    CHECK_OK(nf_schedule_respace_even(&rs, train, steps));
    int N = rs.T;
    /* Z = (f[0], f[1], y): mean mz and covariance SZ over the trajectory. */
    double mz[3] = {0, 0, sqrt(rs.alpha_bar[N - 1]) * known}, SZ[3][3] = {{0}}, P[2][2] = {{1, 0}, {0, 1}};
    SZ[2][2] = 1 - rs.alpha_bar[N - 1];
    for (int i = N - 1; i >= 0; i--) {
        double A[3][3], b[3], var, c0 = 1, c1 = 0, tv = 0;
        step_affine(&rs, S, mu, kind, i, eta, A, b, &var);
        if (i > 0) nf_q_posterior_coefs(&rs, i, &c0, &c1, &tv);
        double q0 = var > 0 ? var : rs.beta[0], sd = sqrt(tv), C[3][3];
        for (int r = 0; r < 3; r++)
            for (int q = 0; q < 3; q++) {
                double v = 0;
                for (int a = 0; a < 2; a++)
                    for (int bb = 0; bb < 2; bb++) v += A[r][1 + a] * P[a][bb] * A[q][1 + bb];
                C[r][q] = v + (r == q ? (r == 0 ? q0 : var) : 0);
            }
        double Kg[2] = {C[1][0] / C[0][0], C[2][0] / C[0][0]}, M[3][3], d[3], e[3];
        for (int a = 0; a < 2; a++)
            for (int bb = 0; bb < 2; bb++) P[a][bb] = C[1 + a][1 + bb] - Kg[a] * C[0][1 + bb];
        /* f_{i-1} = mean_u + Kg (y_{i-1} - mean_0), y_{i-1} = c0 known + c1 y_i + sd z. */
        for (int a = 0; a < 2; a++) {
            M[a][0] = A[1 + a][1] - Kg[a] * A[0][1];
            M[a][1] = A[1 + a][2] - Kg[a] * A[0][2];
            M[a][2] = A[1 + a][0] - Kg[a] * A[0][0] + Kg[a] * c1;
            d[a] = b[1 + a] - Kg[a] * b[0] + Kg[a] * c0 * known;
            e[a] = Kg[a] * sd;
        }
        M[2][0] = 0, M[2][1] = 0, M[2][2] = c1, d[2] = c0 * known, e[2] = sd;
        double nm[3], NS[3][3];
        for (int r = 0; r < 3; r++) {
            nm[r] = d[r];
            for (int q = 0; q < 3; q++) nm[r] += M[r][q] * mz[q];
            for (int q = 0; q < 3; q++) {
                NS[r][q] = e[r] * e[q];
                for (int a = 0; a < 3; a++)
                    for (int bb = 0; bb < 3; bb++) NS[r][q] += M[r][a] * SZ[a][bb] * M[q][bb];
            }
        }
        memcpy(mz, nm, sizeof mz);
        memcpy(SZ, NS, sizeof SZ);
    }
    for (int a = 0; a < 2; a++) {
        mo[a] = mz[a];
        for (int bb = 0; bb < 2; bb++) Po[a][bb] = SZ[a][bb] + P[a][bb];
    }
    nf_schedule_free(&rs);
}

/* The inpainting problem: a 3-D Gaussian laid out as [B, 1, L = 3], position 0 known
 * (= 1.2), and the analytic conditional of positions 1 and 2 given it. */
typedef struct {
    gmm g;
    double mu[3], S[3][3], known;
    double cm[2], cc[2][2];
} inpaint_problem;

static void inpaint_problem_init(inpaint_problem *pb)
{
    memset(pb, 0, sizeof *pb);
    const double mu[3] = {0.5, -0.3, 1.0};
    const double S[3][3] = {{0.5, 0.3, -0.2}, {0.3, 0.4, 0.1}, {-0.2, 0.1, 0.6}};
    pb->g.d = 3;
    pb->g.K = 1;
    pb->g.w[0] = 1;
    pb->known = 1.2;
    for (int i = 0; i < 3; i++) {
        pb->mu[i] = pb->g.mu[0][i] = mu[i];
        for (int j = 0; j < 3; j++) pb->S[i][j] = pb->g.S[0][i][j] = S[i][j];
    }
    for (int i = 0; i < 2; i++) {
        pb->cm[i] = mu[i + 1] + S[i + 1][0] / S[0][0] * (pb->known - mu[0]);
        for (int j = 0; j < 2; j++) pb->cc[i][j] = S[i + 1][j + 1] - S[i + 1][0] * S[0][j + 1] / S[0][0];
    }
}

/* N inpainted examples [N, 1, 3] with c (init and mask are filled in here; the unknown
 * part of init is a loud 9 / -9 that must not leak), their sample moments of positions 1
 * and 2 and whether position 0 came out exactly as given. */
static void inpaint_run(const nf_schedule *train, const inpaint_problem *pb, nf_sampler_config c, int N, uint64_t seed,
                        float *xs, double sm[2], double sc[2][2], int *exact, gmm_model *stats)
{
    enum { L = 3 };
    float *init = malloc(sizeof(float) * N * L);
    for (int k = 0; k < N; k++) {
        init[k * L] = (float)pb->known;
        init[k * L + 1] = 9.0f;
        init[k * L + 2] = -9.0f;
    }
    static const float mask[L] = {1, 0, 0};
    gmm_model m = {.g = &pb->g, .train = train, .pred = c.pred};
    c.init = init;
    c.mask = mask;
    CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, NULL, seed, N, 1, L, xs));
    *exact = 1;
    memset(sm, 0, sizeof(double) * 2);
    memset(sc, 0, sizeof(double) * 4);
    for (int k = 0; k < N; k++) {
        *exact &= xs[k * L] == (float)pb->known;
        for (int i = 0; i < 2; i++) sm[i] += xs[k * L + 1 + i] / N;
    }
    for (int k = 0; k < N; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) sc[i][j] += (xs[k * L + 1 + i] - sm[i]) * (xs[k * L + 1 + j] - sm[j]) / (N - 1);
    if (stats) *stats = m;
    free(init);
}

/* Replacement inpainting (particles 0) against its exact moments and the truth. */
static void test_inpainting(const nf_schedule *train)
{
    enum { N = 1500, L = 3 };
    inpaint_problem pb;
    inpaint_problem_init(&pb);
    const double *cm = pb.cm;
    double(*cc)[2] = pb.cc;
    float *xs = malloc(sizeof(float) * N * L);
    /* One thread: the steps are tiny, and thread counts are tested elsewhere. */
    omp_set_num_threads(1);
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
     * variance, more so the more jumps per step and the fewer the steps. The method that
     * does converge to the truth is SMC (particles > 1, test_smc_inpainting below).
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
        c.repaint_jumps = runs[r].jumps;
        int exact;
        double sm[2], sc[2][2];
        inpaint_run(train, &pb, c, N, 77, xs, sm, sc, &exact, NULL);
        CHECK(exact, "%s: the known region comes out exactly as given", runs[r].name);
        double am[3], aP[3][3];
        inpaint_moments(train, pb.S, pb.mu, pb.known, runs[r].kind, runs[r].steps, runs[r].jumps, 1.0, am, aP);
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
    free(xs);
}

/* N (sm - cm)^T cc^-1 (sm - cm): the sample mean's error in the metric of its standard
 * error (a chi-square with 2 degrees of freedom when the mean is right). */
static double mean_chi2(const inpaint_problem *pb, const double sm[2], int N)
{
    double d0 = sm[0] - pb->cm[0], d1 = sm[1] - pb->cm[1];
    double a = pb->cc[0][0], b = pb->cc[0][1], c = pb->cc[1][1], det = a * c - b * b;
    return N * (c * d0 * d0 - 2 * b * d0 * d1 + a * d1 * d1) / det;
}

/* SMC inpainting (particles > 1; Trippe et al. 2022, model/diff_sampler.c) on the same
 * problem. Unlike replacement, it converges to the true conditional: its K -> infinity
 * limit (smc_limit above, exact) differs from the truth only by the discretisation of the
 * sampler, which vanishes as the steps grow. Measured (the limit against the truth;
 * mean / covariance, largest entry):
 *   DDPM 1000 steps: 0.0012 / 0.0059      DDPM 250 steps: 0.0069 / 0.020 (under-dispersed)
 *   DDPM 50 steps:   0.098 / 0.60 (SMC needs fine steps: the model chain must be close
 *                    to the time reversal of q, or the weights favour the wrong particles)
 *   DDIM 250 steps, eta 0.8: 0.013 / 0.013;  eta 0.5: 0.059 / 0.057 (DDIM at eta < 1 is
 *                    not the reversal of q even with fine steps: 1000 steps, eta 0.5: 0.049)
 * and with K particles, against the truth (N = 20000 examples, Monte Carlo standard error
 * 0.0033 in the mean; DDPM 250 steps / 1000 steps):
 *   K =  1 (replacement): mean 0.11 / 0.13, covariance 0.027 / 0.028
 *   K =  2: mean 0.061 / 0.057,  covariance 0.014 / 0.011
 *   K =  4: mean 0.024 / 0.028,  covariance 0.014 / 0.004
 *   K =  8: mean 0.007 / 0.010,  covariance 0.009 / 0.002
 *   K = 16: mean 0.006 / 0.007,  covariance 0.017 / 0.006
 *   K = 32: mean 0.004 / 0.004,  covariance 0.009 / 0.004
 * The finite-K bias (the sampler against the limit, N = 50000 .. 100000) at K = 16:
 * 0.006 (1000 steps), 0.011 (250 steps), 0.015 (DDIM eta 0.8, 250 steps) in the mean and
 * at most 0.007 in the covariance. So each run is checked against the limit (4.5 standard
 * errors + 0.02 in the mean and 0.01 in the covariance: the finite-K bias with a margin;
 * catches errors in the weights, the trajectory or the resampling) and against the truth
 * (4.5 standard errors + the limit's measured error + the same allowance). The 1000-step
 * run also passes a KS test of a projection against the analytic conditional normal; at
 * 250 steps the KS sees the discretisation now and then (p-values of 0.010 .. 0.03 in 5
 * of 24 runs over 12 independent seeds, none under 0.09 at 1000 steps), so there it is
 * only printed. */
static void test_smc_inpainting(const nf_schedule *train)
{
    enum { N = 1500, L = 3, K = 16 };
    inpaint_problem pb;
    inpaint_problem_init(&pb);
    const double *cm = pb.cm;
    double(*cc)[2] = pb.cc;
    float *xs = malloc(sizeof(float) * N * L);
    double *proj = malloc(sizeof(double) * N * 2);
    /* The conditional as a one-component "mixture" in 2-D, for gmm_ks_pvalue. */
    gmm cond;
    memset(&cond, 0, sizeof cond);
    cond.d = 2;
    cond.K = 1;
    cond.w[0] = 1;
    for (int i = 0; i < 2; i++) {
        cond.mu[0][i] = cm[i];
        for (int j = 0; j < 2; j++) cond.S[0][i][j] = cc[i][j];
    }
    const double u[2] = {0.6, 0.8};
    omp_set_num_threads(1); /* as in test_inpainting */
    struct { const char *name; nf_sampler_kind kind; int steps; double eta, tol_mean, tol_cov; int ks; } runs[] = {
        {"smc ddpm1000", NF_SAMPLER_DDPM, 1000, 1.0, 0.002 + 0.02, 0.006 + 0.01, 1},
        {"smc ddpm250", NF_SAMPLER_DDPM, 250, 1.0, 0.007 + 0.02, 0.02 + 0.01, 0},
        {"smc ddim250 eta 0.8", NF_SAMPLER_DDIM, 250, 0.8, 0.013 + 0.02, 0.013 + 0.01, 0},
    };
    double chi_k16 = 0;
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = runs[r].kind;
        c.steps = runs[r].steps;
        c.eta = runs[r].eta;
        c.pred = NF_PRED_EPS;
        c.particles = K;
        int exact;
        double sm[2], sc[2][2], lm[2], lP[2][2];
        gmm_model st;
        inpaint_run(train, &pb, c, N, 77, xs, sm, sc, &exact, &st);
        CHECK(exact, "%s: the known region comes out exactly as given", runs[r].name);
        CHECK(st.calls == runs[r].steps && st.evals == (long)runs[r].steps * N * K,
              "%s: one denoiser call of B K rows per step (%ld calls, %ld rows)", runs[r].name, st.calls, st.evals);
        smc_limit(train, pb.S, pb.mu, pb.known, runs[r].kind, runs[r].steps, runs[r].eta, lm, lP);
        for (int i = 0; i < 2; i++) {
            double se = sqrt(cc[i][i] / N);
            CHECK(fabs(sm[i] - lm[i]) < 4.5 * se + 0.02, "%s: mean[%d] %.4f, the algorithm's limit %.4f", runs[r].name, i, sm[i], lm[i]);
            CHECK(fabs(sm[i] - cm[i]) < 4.5 * se + runs[r].tol_mean, "%s: conditional mean[%d] %.4f, want %.4f", runs[r].name, i, sm[i], cm[i]);
            for (int j = 0; j < 2; j++) {
                double sec = sqrt((cc[i][i] * cc[j][j] + cc[i][j] * cc[i][j]) / N);
                CHECK(fabs(sc[i][j] - lP[i][j]) < 4.5 * sec + 0.01, "%s: cov[%d][%d] %.4f, the algorithm's limit %.4f", runs[r].name, i, j, sc[i][j], lP[i][j]);
                CHECK(fabs(sc[i][j] - cc[i][j]) < 4.5 * sec + runs[r].tol_cov, "%s: conditional cov[%d][%d] %.4f, want %.4f", runs[r].name, i, j, sc[i][j], cc[i][j]);
            }
        }
        for (int k = 0; k < N; k++)
            for (int i = 0; i < 2; i++) proj[k * 2 + i] = xs[k * L + 1 + i];
        double p = gmm_ks_pvalue(&cond, -1, proj, N, u);
        if (runs[r].ks) CHECK(p > 0.01, "%s: KS p-value %.4g of 0.6 x1 + 0.8 x2 against the conditional normal", runs[r].name, p);
        if (runs[r].kind == NF_SAMPLER_DDPM && runs[r].steps == 250) chi_k16 = mean_chi2(&pb, sm, N);
        fprintf(stderr, "%s, K = %d: mean (%.3f %.3f) limit (%.3f %.3f) want (%.3f %.3f); cov %.3f %.3f %.3f limit %.3f %.3f %.3f want %.3f %.3f %.3f; KS p %.3f\n",
                runs[r].name, K, sm[0], sm[1], lm[0], lm[1], cm[0], cm[1], sc[0][0], sc[0][1], sc[1][1], lP[0][0], lP[0][1], lP[1][1],
                cc[0][0], cc[0][1], cc[1][1], p);
    }
    /* K = 1 is replacement, bit for bit, and its mean is many standard errors further from
     * the truth than K = 16's (the squared Mahalanobis distance: about 300 against a
     * chi-square with 2 degrees of freedom, plus a little bias, for K = 16). */
    {
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = NF_SAMPLER_DDPM;
        c.steps = 250;
        c.pred = NF_PRED_EPS;
        c.particles = 1;
        float *xr = malloc(sizeof(float) * N * L);
        int exact;
        double sm[2], sc[2][2], sm0[2], sc0[2][2];
        inpaint_run(train, &pb, c, N, 77, xs, sm, sc, &exact, NULL);
        c.particles = 0;
        inpaint_run(train, &pb, c, N, 77, xr, sm0, sc0, &exact, NULL);
        CHECK(!memcmp(xs, xr, sizeof(float) * N * L), "particles = 1 is the replacement method, bit for bit");
        double chi_k1 = mean_chi2(&pb, sm, N);
        CHECK(chi_k16 < 20 && chi_k16 < 0.25 * chi_k1, "DDPM 250: mean error (squared, in standard errors) %.1f with K = 16, %.1f with K = 1 (replacement)",
              chi_k16, chi_k1);
        fprintf(stderr, "ddpm250 mean error (squared, in standard errors): K = 1 %.1f, K = 16 %.1f\n", chi_k1, chi_k16);
        free(xr);
    }
    free(xs);
    free(proj);
}

/* The exact eps denoiser of N(0, s2 I) in any dimension: x0_pred = sqrt(abar) s2 x /
 * (abar s2 + 1 - abar). ctx: the training schedule; s2 = 0.25. */
static nf_status iso_denoiser(void *ctx, const float *x, const float *t, const int *y, int B, int C, int L, float *out)
{
    const nf_schedule *train = ctx;
    (void)y;
    size_t n = (size_t)C * L;
    for (int b = 0; b < B; b++) {
        double ab = train->alpha_bar[(int)t[b]], sa = sqrt(ab), sb = sqrt(1 - ab), s2 = 0.25;
        for (size_t k = 0; k < n; k++) {
            double xv = x[b * n + k], x0 = sa * s2 * xv / (ab * s2 + 1 - ab);
            out[b * n + k] = (float)((xv - sa * x0) / sb);
        }
    }
    return NF_OK;
}

/* SMC: bit-identical at 1 and 2 threads, example k alone == example k of the batch (seed
 * + k), with classifier-free guidance and a learned variance too; and the configurations
 * it cannot run are refused with NF_ERR_ARG and one line. */
static void test_smc_determinism_errors(const nf_schedule *train)
{
    enum { B = 5, L = 3 };
    inpaint_problem pb;
    inpaint_problem_init(&pb);
    float init[B * L], a[B * L], b[B * L], one[L];
    const float mask[L] = {1, 0, 0};
    const float kv[B] = {1.2f, -0.3f, 0.7f, 2.0f, 0.1f};
    for (int k = 0; k < B; k++) init[k * L] = kv[k], init[k * L + 1] = 9.0f, init[k * L + 2] = -9.0f;
    int y[B] = {0, -1, 0, 0, -1};
    struct { const char *name; nf_sampler_kind kind; int steps, K; double eta; nf_pred_kind pred; float cfg; int learned; } runs[] = {
        {"smc ddpm", NF_SAMPLER_DDPM, 40, 8, 1.0, NF_PRED_EPS, 1.0f, 0},
        {"smc ddim eta 0.7 + cfg", NF_SAMPLER_DDIM, 30, 6, 0.7, NF_PRED_V, 2.5f, 0},
        {"smc ddpm learned variance", NF_SAMPLER_DDPM, 30, 4, 1.0, NF_PRED_X0, 1.0f, 1},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        gmm_model m = {.g = &pb.g, .train = train, .pred = runs[r].pred, .learned_var = runs[r].learned, .vval = 0.3f};
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = runs[r].kind;
        c.steps = runs[r].steps;
        c.eta = runs[r].eta;
        c.pred = runs[r].pred;
        c.cfg_scale = runs[r].cfg;
        c.learned_var = runs[r].learned;
        c.ddpm_var = runs[r].learned ? NF_VAR_LEARNED : NF_VAR_BETA_TILDE;
        c.init = init;
        c.mask = mask;
        c.particles = runs[r].K;
        omp_set_num_threads(1);
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, y, 123, B, 1, L, a));
        omp_set_num_threads(2);
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, y, 123, B, 1, L, b));
        CHECK(!memcmp(a, b, sizeof a), "%s: 1 and 2 threads bit-identical", runs[r].name);
        int same = 1, exact = 1;
        for (int k = 0; k < B; k++) {
            c.init = init + k * L;
            CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, y + k, 123 + k, 1, 1, L, one));
            same &= !memcmp(one, a + k * L, sizeof one);
            exact &= a[k * L] == kv[k];
        }
        c.init = init;
        CHECK(same, "%s: example k alone == example k in the batch", runs[r].name);
        CHECK(exact, "%s: the known region comes out exactly as given", runs[r].name);
        CHECK_OK(nf_sample(train, &c, gmm_denoiser, &m, y, 124, B, 1, L, b));
        CHECK(memcmp(a, b, sizeof a) != 0, "%s: another seed, other samples", runs[r].name);
    }

    /* A long signal: 3000 known values add up to log weights in the tens of thousands,
     * which must not overflow (the weights are relative within the example). */
    {
        enum { LL = 4096, BB = 2 };
        float *in = malloc(sizeof(float) * BB * LL), *out = malloc(sizeof(float) * BB * LL), *mk = malloc(sizeof(float) * LL);
        nf_randn(in, (size_t)BB * LL, 5, 0, 0);
        for (int k = 0; k < BB * LL; k++) in[k] *= 0.5f;
        for (int l = 0; l < LL; l++) mk[l] = l < 1500 || l >= 2596 ? 1.0f : 0.0f;
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = NF_SAMPLER_DDPM;
        c.steps = 250; /* at 50 even plain DDPM gives this Gaussian a variance of 0.2 */
        c.pred = NF_PRED_EPS;
        c.init = in;
        c.mask = mk;
        c.particles = 4;
        CHECK_OK(nf_sample(train, &c, iso_denoiser, (void *)train, NULL, 9, BB, 1, LL, out));
        int kept = 1, finite = 1;
        double v = 0;
        for (int k = 0; k < BB * LL; k++) {
            finite &= isfinite(out[k]);
            if (mk[k % LL] > 0.5f) kept &= out[k] == in[k];
            else v += (double)out[k] * out[k] / (BB * 1096);
        }
        CHECK(finite && kept, "smc, 3000 known values: finite, and the known region exact");
        CHECK(fabs(v - 0.25) < 0.05, "smc, 3000 known values: the unknown part has the variance 0.25 (%.3f)", v);
        free(in);
        free(out);
        free(mk);
    }

    /* What SMC cannot do. */
    float start[B * L] = {0};
    for (int e = 0; e < 9; e++) {
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = NF_SAMPLER_DDPM;
        c.steps = 10;
        c.init = init;
        c.mask = mask;
        c.particles = 4;
        const char *what = "";
        switch (e) {
        case 0: c.mask = NULL, what = "no mask"; break;
        case 1: c.kind = NF_SAMPLER_DPMPP, what = "DPM-Solver++"; break;
        case 2: c.kind = NF_SAMPLER_DDIM, c.eta = 0.0, what = "DDIM eta 0"; break;
        case 3: c.kind = NF_SAMPLER_EULER_A, what = "Euler ancestral"; break;
        case 4: c.kind = NF_SAMPLER_LANGEVIN, what = "Langevin"; break;
        case 5: c.repaint_jumps = 2, what = "RePaint jumps"; break;
        case 6: c.strength = 0.5f, what = "strength 0.5"; break;
        case 7: c.start_noise = start, what = "start noise"; break;
        case 8: c.particles = -1, what = "particles -1"; break;
        }
        nf_sampler *s = NULL;
        nf_status st = nf_sampler_create(train, &c, B, 1, L, &s);
        const char *msg = nf_last_error();
        CHECK(st == NF_ERR_ARG && !s, "particles with %s: status %d, want NF_ERR_ARG", what, (int)st);
        CHECK(strstr(msg, "particles") && !strchr(msg, '\n'), "particles with %s: one line naming particles: '%s'", what, msg);
        nf_sampler_free(s);
    }
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
    test_smc_inpainting(&train);
    test_smc_determinism_errors(&train);
    nf_schedule_free(&train);
    return nf_test_done();
}
