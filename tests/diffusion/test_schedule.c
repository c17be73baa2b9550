/* Schedules, the forward process, the posterior (with the lecture's errata shown to be
 * rejected) and the conversions between parameterisations. */
#include "nf_diffusion.h"
#include "nf_rng.h"
#include "nf_test.h"

#include <math.h>
#include <stdlib.h>

static void test_schedules(void)
{
    nf_schedule s;
    CHECK_OK(nf_schedule_init(&s, NF_SCHEDULE_LINEAR, 1000));
    CHECK_CLOSE(s.beta[0], 1e-4, 1e-15, 0, "linear beta_1");
    CHECK_CLOSE(s.beta[999], 0.02, 1e-15, 0, "linear beta_T");
    double ab = 1;
    for (int i = 0; i < 1000; i++) ab *= 1 - s.beta[i];
    CHECK_CLOSE(s.alpha_bar[999], ab, 0, 1e-12, "alpha_bar is the product");
    CHECK(s.beta_tilde[0] == 0 && s.alpha_bar_prev[0] == 1, "step 0 posterior is exact");
    nf_schedule s250;
    CHECK_OK(nf_schedule_init(&s250, NF_SCHEDULE_LINEAR, 250));
    CHECK_CLOSE(s250.beta[0], 4e-4, 1e-15, 0, "linear T=250 scaled beta_1");
    CHECK_CLOSE(s250.beta[249], 0.08, 1e-15, 0, "linear T=250 scaled beta_T");
    /* Same total noise whatever T (the point of the 1000/T scaling). */
    CHECK_CLOSE(log(s250.alpha_bar[249]), log(s.alpha_bar[999]), 0, 0.05, "T=250 ends near where T=1000 does");
    nf_schedule_free(&s250);

    nf_schedule c;
    CHECK_OK(nf_schedule_init(&c, NF_SCHEDULE_COSINE, 1000));
    double f0 = cos(0.008 / 1.008 * M_PI / 2);
    f0 *= f0;
    double fm = cos((0.5 + 0.008) / 1.008 * M_PI / 2);
    fm *= fm;
    CHECK_CLOSE(c.alpha_bar[499], fm / f0, 0, 1e-9, "cosine abar(t = T/2) = f(T/2)/f(0)");
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= c.beta[i] > 0 && c.beta[i] <= 0.999;
    CHECK(ok, "cosine betas in (0, 0.999]");
    CHECK(c.beta[999] == 0.999, "cosine last beta clipped at 0.999 (got %g)", c.beta[999]);
    nf_schedule_free(&c);

    /* Respacing: abar kept exactly, betas from the abar ratios. */
    int ts[5] = {0, 10, 200, 640, 999};
    nf_schedule r;
    CHECK_OK(nf_schedule_respace(&r, &s, ts, 5));
    for (int j = 0; j < 5; j++) {
        CHECK(r.alpha_bar[j] == s.alpha_bar[ts[j]], "respaced abar[%d] kept", j);
        double want = 1 - s.alpha_bar[ts[j]] / (j ? s.alpha_bar[ts[j - 1]] : 1.0);
        CHECK_CLOSE(r.beta[j], want, 1e-15, 1e-12, "respaced beta");
        CHECK(r.timesteps[j] == ts[j], "respaced timesteps");
    }
    nf_schedule_free(&r);
    CHECK_OK(nf_schedule_respace_even(&r, &s, 1000));
    double md = 0;
    for (int i = 0; i < 1000; i++) md = fmax(md, fabs(r.beta[i] - s.beta[i]));
    CHECK(md < 1e-14, "respacing to every step gives the betas back (max diff %g)", md);
    nf_schedule_free(&r);
    CHECK_OK(nf_schedule_respace_even(&r, &s, 50));
    CHECK(r.timesteps[0] == 0 && r.timesteps[49] == 999, "even respacing spans [0, T-1]");
    nf_schedule_free(&r);
    for (int n = 2; n <= 1000; n += 997 / 7) {
        CHECK_OK(nf_schedule_respace_logsnr(&r, &s, n));
        ok = r.timesteps[0] == 0 && r.timesteps[n - 1] == 999;
        for (int j = 1; j < n; j++) ok &= r.timesteps[j] > r.timesteps[j - 1];
        CHECK(ok, "log-SNR respacing to %d steps is increasing over [0, T-1]", n);
        nf_schedule_free(&r);
    }
    int bad[3] = {0, 5, 5};
    CHECK(nf_schedule_respace(&r, &s, bad, 3) == NF_ERR_ARG, "non-increasing steps rejected");
    CHECK(nf_schedule_init(&r, NF_SCHEDULE_LINEAR, 0) == NF_ERR_ARG, "T = 0 rejected");
    nf_schedule_free(&s);
}

/* Iterating q(x_t | x_{t-1}) = N(sqrt(alpha) x, beta) matches q(x_t | x_0) = N(sqrt(abar) x0,
 * (1 - abar)) in mean and variance; the lecture's "variance sqrt(1 - abar)" is rejected. */
static void test_forward(const nf_schedule *s)
{
    enum { M = 40000 };
    const double x0 = 0.7;
    double *x = malloc(sizeof(double) * M);
    float *z = malloc(sizeof(float) * M);
    for (int k = 0; k < M; k++) x[k] = x0;
    int checkpoints[3] = {20, 120, 300}, c = 0;
    for (int i = 0; i <= 300; i++) {
        nf_randn(z, M, 11, (uint64_t)i, 0);
        double sa = sqrt(s->alpha[i]), sb = sqrt(s->beta[i]);
        for (int k = 0; k < M; k++) x[k] = sa * x[k] + sb * z[k]; /* Ho et al. eq. 2 */
        if (i != checkpoints[c]) continue;
        c++;
        double m = 0, v = 0;
        for (int k = 0; k < M; k++) m += x[k] / M;
        for (int k = 0; k < M; k++) v += (x[k] - m) * (x[k] - m) / (M - 1);
        double ab = s->alpha_bar[i], wm = sqrt(ab) * x0, wv = 1 - ab;
        double sem = sqrt(wv / M), sev = wv * sqrt(2.0 / M);
        CHECK(fabs(m - wm) < 4 * sem, "step %d: mean %.5f, closed form %.5f", i, m, wm);
        CHECK(fabs(v - wv) < 4 * sev, "step %d: variance %.5f, closed form %.5f", i, v, wv);
        double wrong = sqrt(1 - ab); /* the lecture's slide: std written as the variance */
        CHECK(fabs(v - wrong) > 4 * sev, "step %d: the erratum's variance %.5f must be rejected", i, wrong);
        /* nf_q_sample draws from the same distribution. */
        float *e = malloc(sizeof(float) * M), *x0s = malloc(sizeof(float) * M), *xt = malloc(sizeof(float) * M);
        nf_randn(e, M, 12, (uint64_t)i, 0);
        for (int k = 0; k < M; k++) x0s[k] = (float)x0;
        int t = i;
        nf_q_sample(s, &t, x0s, e, 1, M, xt);
        double m2 = 0, v2 = 0;
        for (int k = 0; k < M; k++) m2 += xt[k] / (double)M;
        for (int k = 0; k < M; k++) v2 += (xt[k] - m2) * (xt[k] - m2) / (M - 1);
        CHECK(fabs(m2 - m) < 6 * sem && fabs(v2 - v) < 6 * sev, "step %d: nf_q_sample (%.4f, %.4f) vs the chain (%.4f, %.4f)", i, m2, v2, m, v);
        free(e);
        free(x0s);
        free(xt);
    }
    free(x);
    free(z);
}

/* The posterior q(x_{i-1} | x_i, x0): draw x_{i-1} ~ q(x_{i-1} | x0), x_i ~ q(x_i | x_{i-1});
 * regress x_{i-1} on x_i. Slope = c_xt, intercept = c_x0 x0, residual variance = beta_tilde.
 * The lecture's abar in the x_t coefficient, and its std-for-variance, are rejected. */
static void test_posterior(const nf_schedule *s)
{
    enum { M = 200000 };
    const double x0 = 0.7;
    float *z1 = malloc(sizeof(float) * M), *z2 = malloc(sizeof(float) * M);
    int steps[3] = {50, 300, 700};
    for (int q = 0; q < 3; q++) {
        int i = steps[q];
        nf_randn(z1, M, 21, (uint64_t)i, 0);
        nf_randn(z2, M, 22, (uint64_t)i, 0);
        double abp = s->alpha_bar_prev[i];
        double sxy = 0, sxx = 0, mx = 0, my = 0;
        double *a = malloc(sizeof(double) * M), *b = malloc(sizeof(double) * M);
        for (int k = 0; k < M; k++) {
            a[k] = sqrt(abp) * x0 + sqrt(1 - abp) * z1[k];               /* x_{i-1} */
            b[k] = sqrt(s->alpha[i]) * a[k] + sqrt(s->beta[i]) * z2[k]; /* x_i */
            mx += b[k] / M;
            my += a[k] / M;
        }
        for (int k = 0; k < M; k++) {
            sxy += (b[k] - mx) * (a[k] - my);
            sxx += (b[k] - mx) * (b[k] - mx);
        }
        double slope = sxy / sxx, icpt = my - slope * mx, rv = 0;
        for (int k = 0; k < M; k++) {
            double r = a[k] - icpt - slope * b[k];
            rv += r * r / (M - 2);
        }
        double c_x0, c_xt, var;
        nf_q_posterior_coefs(s, i, &c_x0, &c_xt, &var);
        double se_slope = sqrt(rv / sxx), se_icpt = sqrt(rv * (1.0 / M + mx * mx / sxx)), se_var = rv * sqrt(2.0 / M);
        CHECK(fabs(slope - c_xt) < 4 * se_slope, "step %d: x_t coefficient %.6f, regression %.6f +- %.1e", i, c_xt, slope, se_slope);
        CHECK(fabs(icpt - c_x0 * x0) < 4 * se_icpt, "step %d: x0 term %.6f, regression %.6f", i, c_x0 * x0, icpt);
        CHECK(fabs(rv - var) < 4 * se_var, "step %d: variance %.3e, regression %.3e", i, var, rv);
        double wrong_cxt = sqrt(s->alpha_bar[i]) * (1 - abp) / (1 - s->alpha_bar[i]);
        CHECK(fabs(slope - wrong_cxt) > 4 * se_slope, "step %d: the erratum's x_t coefficient %.6f must be rejected", i, wrong_cxt);
        CHECK(fabs(rv - sqrt(var)) > 4 * se_var, "step %d: std-as-variance %.3e must be rejected", i, sqrt(var));
        /* nf_q_posterior_mean agrees with the coefficients. */
        float fx0 = (float)x0, fxt = 0.3f, mean;
        double v2 = nf_q_posterior_mean(s, i, &fx0, &fxt, 1, &mean);
        CHECK_CLOSE(mean, c_x0 * x0 + c_xt * 0.3, 1e-6, 0, "posterior mean");
        CHECK(v2 == var, "posterior variance returned");
        free(a);
        free(b);
    }
    free(z1);
    free(z2);
}

static void test_conversions(void)
{
    enum { n = 1000 };
    float xt[n], pred[n], x0[n], eps[n], back[n];
    nf_randn(xt, n, 5, 0, 0);
    nf_randn(pred, n, 5, 1, 0);
    double abars[4] = {0.9999, 0.5, 0.01, 4e-5};
    for (int a = 0; a < 4; a++)
        for (int k = 0; k < 3; k++) {
            nf_pred_to_x0_eps((nf_pred_kind)k, abars[a], xt, pred, n, x0, eps);
            /* x_t is rebuilt from the implied x0 and eps. */
            double md = 0, mr = 0;
            for (int i = 0; i < n; i++) {
                double r = sqrt(abars[a]) * x0[i] + sqrt(1 - abars[a]) * eps[i];
                md = fmax(md, fabs(r - xt[i]) / (fabs(x0[i]) * sqrt(abars[a]) + fabs(eps[i]) + 1));
            }
            nf_pred_from_x0_eps((nf_pred_kind)k, abars[a], x0, eps, n, back);
            for (int i = 0; i < n; i++) mr = fmax(mr, fabs(back[i] - pred[i]) / (fabs(x0[i]) + fabs(eps[i]) + 1));
            CHECK(md < 4e-7 && mr < 4e-7, "%s at abar %g: x_t rebuilt to %.2e, round trip to %.2e (float precision)",
                  nf_pred_name((nf_pred_kind)k), abars[a], md, mr);
            /* eps <-> v <-> x0: converting the implied pair to another parameterisation and
             * back gives the same pair. */
            for (int k2 = 0; k2 < 3; k2++) {
                float p2[n], x02[n], e2[n];
                nf_pred_from_x0_eps((nf_pred_kind)k2, abars[a], x0, eps, n, p2);
                nf_pred_to_x0_eps((nf_pred_kind)k2, abars[a], xt, p2, n, x02, e2);
                double d = 0;
                for (int i = 0; i < n; i++) {
                    double sc = (fabs(x0[i]) + fabs(eps[i]) + 1) / (k2 == NF_PRED_EPS ? sqrt(abars[a]) : k2 == NF_PRED_X0 ? sqrt(1 - abars[a]) : 1);
                    d = fmax(d, fmax(fabs(x02[i] - x0[i]), fabs(e2[i] - eps[i])) / sc);
                }
                CHECK(d < 1e-6, "%s -> %s -> (x0, eps) at abar %g: %.2e", nf_pred_name((nf_pred_kind)k),
                      nf_pred_name((nf_pred_kind)k2), abars[a], d);
            }
        }
    CHECK(nf_pred_from_name("V") == NF_PRED_V && nf_pred_from_name("nope") == -1, "names");
}

int main(void)
{
    test_schedules();
    nf_schedule s;
    CHECK_OK(nf_schedule_init(&s, NF_SCHEDULE_LINEAR, 1000));
    test_forward(&s);
    test_posterior(&s);
    nf_schedule_free(&s);
    test_conversions();
    return nf_test_done();
}
