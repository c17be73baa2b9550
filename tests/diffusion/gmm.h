/* Test support for the diffusion core: a Gaussian mixture in d <= 4 dimensions whose
 * exact noise prediction is known in closed form, so that every sampler can be checked
 * against the distribution it must reproduce, with no network involved.
 *
 * Under q(x_t | x_0) = N(sqrt(abar) x0, (1 - abar) I), a mixture sum_k w_k N(mu_k, S_k)
 * becomes sum_k w_k N(sqrt(abar) mu_k, abar S_k + (1 - abar) I), and the ideal denoiser
 * is eps*(x_t) = -sqrt(1 - abar) grad log p_t(x_t) (Ho et al. 2020 sec. 3.2 / Song et al.
 * 2021 eq. 5). Tensors are [B, C = d, L = 1]. Each component has a class label, which
 * gives the class-conditional mixtures used by the guidance tests. */
#ifndef NF_TEST_GMM_H
#define NF_TEST_GMM_H

#include "nf_diffusion.h"
#include "nf_rng.h"
#include "nf_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GMM_MAXK 8
#define GMM_MAXD 4

typedef struct {
    int d, K;
    double w[GMM_MAXK];
    double mu[GMM_MAXK][GMM_MAXD];
    double S[GMM_MAXK][GMM_MAXD][GMM_MAXD];
    int cls[GMM_MAXK];
} gmm;

/* Cholesky of a d x d SPD matrix (lower), returns log det. */
static inline double gmm_chol(int d, double A[GMM_MAXD][GMM_MAXD], double Lo[GMM_MAXD][GMM_MAXD])
{
    double ld = 0;
    memset(Lo, 0, sizeof(double) * GMM_MAXD * GMM_MAXD);
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) {
            double s = A[i][j];
            for (int k = 0; k < j; k++) s -= Lo[i][k] * Lo[j][k];
            if (i == j) {
                Lo[i][i] = sqrt(s);
                ld += 2 * log(Lo[i][i]);
            } else {
                Lo[i][j] = s / Lo[j][j];
            }
        }
    return ld;
}

/* Solve Lo Lo^T z = r. */
static inline void gmm_chol_solve(int d, double Lo[GMM_MAXD][GMM_MAXD], const double *r, double *z)
{
    double y[GMM_MAXD];
    for (int i = 0; i < d; i++) {
        double s = r[i];
        for (int k = 0; k < i; k++) s -= Lo[i][k] * y[k];
        y[i] = s / Lo[i][i];
    }
    for (int i = d - 1; i >= 0; i--) {
        double s = y[i];
        for (int k = i + 1; k < d; k++) s -= Lo[k][i] * z[k];
        z[i] = s / Lo[i][i];
    }
}

/* The noised components at one level abar: inverse covariances and log-determinants. */
typedef struct {
    double ab;
    double inv[GMM_MAXK][GMM_MAXD][GMM_MAXD];
    double ld[GMM_MAXK];
} gmm_level;

static inline void gmm_prepare(const gmm *g, double ab, gmm_level *P)
{
    P->ab = ab;
    for (int k = 0; k < g->K; k++) {
        double A[GMM_MAXD][GMM_MAXD], Lo[GMM_MAXD][GMM_MAXD];
        for (int i = 0; i < g->d; i++)
            for (int j = 0; j < g->d; j++) A[i][j] = ab * g->S[k][i][j] + (i == j ? 1.0 - ab : 0.0);
        P->ld[k] = gmm_chol(g->d, A, Lo);
        for (int j = 0; j < g->d; j++) {
            double e[GMM_MAXD] = {0}, z[GMM_MAXD];
            e[j] = 1;
            gmm_chol_solve(g->d, Lo, e, z);
            for (int i = 0; i < g->d; i++) P->inv[k][i][j] = z[i];
        }
    }
}

/* grad_x log p_t(x) for the mixture restricted to class `cls` (-1: all components),
 * at the prepared level; returns log p_t(x, cls) (log p_t(x) for cls = -1). */
static inline double gmm_grad_log_prepared(const gmm *g, const gmm_level *P, const double *x, int cls,
                                           double *grad)
{
    double lk[GMM_MAXK], gk[GMM_MAXK][GMM_MAXD], mx = -INFINITY, sa = sqrt(P->ab);
    for (int k = 0; k < g->K; k++) {
        lk[k] = -INFINITY;
        if (cls >= 0 && g->cls[k] != cls) continue;
        double r[GMM_MAXD], q = 0;
        for (int i = 0; i < g->d; i++) r[i] = x[i] - sa * g->mu[k][i];
        for (int i = 0; i < g->d; i++) {
            double z = 0;
            for (int j = 0; j < g->d; j++) z += P->inv[k][i][j] * r[j];
            q += r[i] * z;
            gk[k][i] = -z;
        }
        lk[k] = log(g->w[k]) - 0.5 * P->ld[k] - 0.5 * q - 0.5 * g->d * 1.8378770664093454836;
        if (lk[k] > mx) mx = lk[k];
    }
    double tot = 0;
    for (int k = 0; k < g->K; k++) tot += lk[k] > -INFINITY ? exp(lk[k] - mx) : 0.0;
    for (int i = 0; i < g->d; i++) grad[i] = 0;
    for (int k = 0; k < g->K; k++) {
        if (lk[k] == -INFINITY) continue;
        double r = exp(lk[k] - mx) / tot;
        for (int i = 0; i < g->d; i++) grad[i] += r * gk[k][i];
    }
    return mx + log(tot);
}

static inline double gmm_grad_log_pt(const gmm *g, double ab, const double *x, int cls, double *grad)
{
    gmm_level P;
    gmm_prepare(g, ab, &P);
    return gmm_grad_log_prepared(g, &P, x, cls, grad);
}

/* The component with the highest w_k N(x; mu_k, S_k) (P prepared at abar = 1). */
static inline int gmm_assign_prepared(const gmm *g, const gmm_level *P, const double *x)
{
    int best = 0;
    double bl = -INFINITY;
    for (int k = 0; k < g->K; k++) {
        double r[GMM_MAXD], q = 0;
        for (int i = 0; i < g->d; i++) r[i] = x[i] - g->mu[k][i];
        for (int i = 0; i < g->d; i++)
            for (int j = 0; j < g->d; j++) q += r[i] * P->inv[k][i][j] * r[j];
        double l = log(g->w[k]) - 0.5 * P->ld[k] - 0.5 * q;
        if (l > bl) {
            bl = l;
            best = k;
        }
    }
    return best;
}

/* p(y = cls | x) at abar (the analytic noise-aware classifier). */
static inline double gmm_class_prob(const gmm *g, double ab, const double *x, int cls)
{
    double gr[GMM_MAXD];
    double la = gmm_grad_log_pt(g, ab, x, -1, gr);
    double lc = gmm_grad_log_pt(g, ab, x, cls, gr);
    return exp(lc - la);
}

/* Exact samples from the mixture (restricted to class cls, or -1). */
static inline void gmm_sample(const gmm *g, int cls, int N, uint64_t seed, double *out)
{
    double tw = 0;
    for (int k = 0; k < g->K; k++)
        if (cls < 0 || g->cls[k] == cls) tw += g->w[k];
    for (int s = 0; s < N; s++) {
        double u = nf_rand_uniform1(seed, 77, (uint64_t)s) * tw;
        int k, last = 0;
        for (k = 0; k < g->K; k++) {
            if (cls >= 0 && g->cls[k] != cls) continue;
            last = k;
            if (u < g->w[k]) break;
            u -= g->w[k];
        }
        if (k == g->K) k = last;
        double A[GMM_MAXD][GMM_MAXD], Lo[GMM_MAXD][GMM_MAXD];
        memcpy(A, g->S[k], sizeof A);
        gmm_chol(g->d, A, Lo);
        float z[GMM_MAXD];
        nf_randn(z, (size_t)g->d, seed, 78, (uint64_t)s * GMM_MAXD);
        for (int i = 0; i < g->d; i++) {
            double v = g->mu[k][i];
            for (int j = 0; j <= i; j++) v += Lo[i][j] * z[j];
            out[s * g->d + i] = v;
        }
    }
}

/* The denoiser context: the exact model in any parameterisation. */
typedef struct {
    const gmm *g;
    const nf_schedule *train;
    nf_pred_kind pred;
    int learned_var;      /* also output v channels (constant value vval) */
    float vval;
    long calls, evals;
    gmm_level level; /* cache: the last level used */
} gmm_model;

static inline nf_status gmm_denoiser(void *ctx, const float *x, const float *t, const int *y, int B, int C,
                              int L, float *out)
{
    gmm_model *m = ctx;
    int d = m->g->d;
    int oc = m->learned_var ? 2 * C : C;
    m->calls++;
    m->evals += B;
    if (C * L != d) return nf_fail(NF_ERR_ARG, "gmm denoiser: %d values, mixture has %d", C * L, d);
    for (int b = 0; b < B; b++) {
        int ti = (int)t[b];
        double ab = m->train->alpha_bar[ti], sa = sqrt(ab), sb = sqrt(1.0 - ab);
        double xb[GMM_MAXD], gr[GMM_MAXD];
        for (int i = 0; i < d; i++) xb[i] = x[b * d + i];
        if (m->level.ab != ab) gmm_prepare(m->g, ab, &m->level);
        gmm_grad_log_prepared(m->g, &m->level, xb, y ? y[b] : -1, gr);
        for (int i = 0; i < d; i++) {
            double eps = -sb * gr[i];
            double x0 = (xb[i] - sb * eps) / sa;
            double p = m->pred == NF_PRED_EPS ? eps : m->pred == NF_PRED_X0 ? x0 : sa * eps - sb * x0;
            out[(size_t)b * oc * L + i] = (float)p;
            if (m->learned_var) out[(size_t)b * oc * L + d + i] = m->vval;
        }
    }
    return NF_OK;
}

/* The same model, unconditional whatever y says (for classifier guidance). */
static inline nf_status gmm_denoiser_uncond(void *ctx, const float *x, const float *t, const int *y, int B,
                                            int C, int L, float *out)
{
    (void)y;
    return gmm_denoiser(ctx, x, t, NULL, B, C, L, out);
}

/* The analytic classifier's gradient grad log p(y | x_t) = grad log p_t(x|y) - grad log p_t(x). */
static inline nf_status gmm_classifier(void *ctx, const float *x, const float *t, const int *y, int B,
                                int C, int L, float *grad)
{
    gmm_model *m = ctx;
    int d = m->g->d;
    (void)C;
    (void)L;
    for (int b = 0; b < B; b++) {
        double ab = m->train->alpha_bar[(int)t[b]];
        double xb[GMM_MAXD], ga[GMM_MAXD], gc[GMM_MAXD];
        for (int i = 0; i < d; i++) xb[i] = x[b * d + i];
        if (m->level.ab != ab) gmm_prepare(m->g, ab, &m->level);
        gmm_grad_log_prepared(m->g, &m->level, xb, -1, ga);
        gmm_grad_log_prepared(m->g, &m->level, xb, y[b], gc);
        for (int i = 0; i < d; i++) grad[b * d + i] = (float)(gc[i] - ga[i]);
    }
    return NF_OK;
}

/* The 2-D mixture used by the sampler tests: three components of two classes. */
static inline void gmm_test_mixture(gmm *g)
{
    memset(g, 0, sizeof *g);
    g->d = 2;
    g->K = 3;
    double w[3] = {0.5, 0.3, 0.2};
    double mu[3][2] = {{-1.5, 0.5}, {1.5, 1.0}, {0.5, -1.5}};
    double S[3][2][2] = {{{0.20, 0.08}, {0.08, 0.15}}, {{0.10, 0.0}, {0.0, 0.30}}, {{0.25, -0.10}, {-0.10, 0.12}}};
    int cls[3] = {0, 1, 1};
    for (int k = 0; k < 3; k++) {
        g->w[k] = w[k];
        g->cls[k] = cls[k];
        for (int i = 0; i < 2; i++) {
            g->mu[k][i] = mu[k][i];
            for (int j = 0; j < 2; j++) g->S[k][i][j] = S[k][i][j];
        }
    }
}

/* ---------------------------------------------------------------- statistics --- */

static inline double std_normal_cdf(double z) { return 0.5 * erfc(-z / 1.4142135623730951); }

/* Kolmogorov distribution tail Q_KS(lambda) = 2 sum (-1)^(j-1) exp(-2 j^2 lambda^2). */
static inline double ks_q(double lambda)
{
    if (lambda < 0.2) return 1.0;
    double s = 0, sign = 1;
    for (int j = 1; j <= 100; j++) {
        double term = sign * exp(-2.0 * j * j * lambda * lambda);
        s += term;
        if (fabs(term) < 1e-12) break;
        sign = -sign;
    }
    s *= 2;
    return s < 0 ? 0 : s > 1 ? 1 : s;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One-sample KS p-value of the samples' projection on u against the mixture's projected
 * CDF (a 1-D mixture), with Stephens' small-sample correction (Numerical Recipes 14.3). */
static inline double gmm_ks_pvalue(const gmm *g, int cls, const double *xs, int N, const double *u)
{
    double *p = malloc(sizeof(double) * N);
    for (int s = 0; s < N; s++) {
        p[s] = 0;
        for (int i = 0; i < g->d; i++) p[s] += u[i] * xs[s * g->d + i];
    }
    qsort(p, (size_t)N, sizeof(double), cmp_double);
    double tw = 0;
    for (int k = 0; k < g->K; k++)
        if (cls < 0 || g->cls[k] == cls) tw += g->w[k];
    double D = 0;
    for (int s = 0; s < N; s++) {
        double F = 0;
        for (int k = 0; k < g->K; k++) {
            if (cls >= 0 && g->cls[k] != cls) continue;
            double m = 0, v = 0;
            for (int i = 0; i < g->d; i++) {
                m += u[i] * g->mu[k][i];
                for (int j = 0; j < g->d; j++) v += u[i] * g->S[k][i][j] * u[j];
            }
            F += g->w[k] / tw * std_normal_cdf((p[s] - m) / sqrt(v));
        }
        double d1 = fabs((double)(s + 1) / N - F), d2 = fabs(F - (double)s / N);
        if (d1 > D) D = d1;
        if (d2 > D) D = d2;
    }
    free(p);
    double en = sqrt((double)N);
    return ks_q((en + 0.12 + 0.11 / en) * D);
}


/* Compare samples xs [N, d] with the mixture (restricted to class cls, or -1):
 *  - the fraction assigned to each component (gmm_assign) within 3 standard errors of
 *    the fraction among M exact samples (sqrt(p(1-p)(1/N + 1/M)));
 *  - the overall mean within 4 standard errors + mean_tol, each covariance entry within
 *    4 standard errors + cov_tol, against the mixture's closed-form moments;
 *  - per-component mean and covariance (of the assigned samples, against the exact
 *    samples' assigned ones) within 4 standard errors + comp_tol;
 *  - a KS test of a random projection with p > 0.01. */
static inline void gmm_check_samples(const char *name, const gmm *g, int cls, const float *xs_f, int N,
                              double mean_tol, double cov_tol, double comp_tol)
{
    int d = g->d, M = 50000;
    double *xs = malloc(sizeof(double) * N * d), *ref = malloc(sizeof(double) * M * d);
    for (int s = 0; s < N * d; s++) xs[s] = xs_f[s];
    int finite = 1;
    for (int s = 0; s < N * d; s++) finite &= isfinite(xs[s]);
    CHECK(finite, "%s: samples are finite", name);
    gmm_sample(g, cls, M, 4242, ref);
    /* Closed-form moments of the (class) mixture. */
    double tw = 0, m[GMM_MAXD] = {0}, S[GMM_MAXD][GMM_MAXD] = {{0}};
    for (int k = 0; k < g->K; k++)
        if (cls < 0 || g->cls[k] == cls) tw += g->w[k];
    for (int k = 0; k < g->K; k++) {
        if (cls >= 0 && g->cls[k] != cls) continue;
        for (int i = 0; i < d; i++) m[i] += g->w[k] / tw * g->mu[k][i];
    }
    for (int k = 0; k < g->K; k++) {
        if (cls >= 0 && g->cls[k] != cls) continue;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                S[i][j] += g->w[k] / tw * (g->S[k][i][j] + (g->mu[k][i] - m[i]) * (g->mu[k][j] - m[j]));
    }
    double sm[GMM_MAXD] = {0}, sS[GMM_MAXD][GMM_MAXD] = {{0}};
    for (int s = 0; s < N; s++)
        for (int i = 0; i < d; i++) sm[i] += xs[s * d + i] / N;
    for (int s = 0; s < N; s++)
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) sS[i][j] += (xs[s * d + i] - sm[i]) * (xs[s * d + j] - sm[j]) / (N - 1);
    for (int i = 0; i < d; i++) {
        double se = sqrt(S[i][i] / N);
        CHECK(fabs(sm[i] - m[i]) <= 4 * se + mean_tol, "%s: mean[%d] %.4f, want %.4f (tol %.4f)", name, i, sm[i], m[i], 4 * se + mean_tol);
        for (int j = 0; j < d; j++) {
            double sec = sqrt((S[i][i] * S[j][j] + S[i][j] * S[i][j]) / N);
            CHECK(fabs(sS[i][j] - S[i][j]) <= 4 * sec + cov_tol, "%s: cov[%d][%d] %.4f, want %.4f (tol %.4f)", name, i, j, sS[i][j], S[i][j], 4 * sec + cov_tol);
        }
    }
    /* Component assignment fractions and per-component moments. */
    gmm_level P1;
    gmm_prepare(g, 1.0, &P1);
    for (int k = 0; k < g->K; k++) {
        if (cls >= 0 && g->cls[k] != cls) continue;
        double cn = 0, rn = 0, cm[GMM_MAXD] = {0}, rm[GMM_MAXD] = {0};
        double cc[GMM_MAXD][GMM_MAXD] = {{0}}, rc[GMM_MAXD][GMM_MAXD] = {{0}};
        for (int pass = 0; pass < 2; pass++) {
            const double *X = pass ? ref : xs;
            int n = pass ? M : N;
            double *cnt = pass ? &rn : &cn, *mm = pass ? rm : cm;
            double (*cv)[GMM_MAXD] = pass ? rc : cc;
            for (int s = 0; s < n; s++) {
                if (gmm_assign_prepared(g, &P1, X + s * d) != k) continue;
                (*cnt)++;
                for (int i = 0; i < d; i++) mm[i] += X[s * d + i];
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < d; j++) cv[i][j] += X[s * d + i] * X[s * d + j];
            }
            for (int i = 0; i < d; i++) mm[i] /= *cnt > 0 ? *cnt : 1;
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) cv[i][j] = cv[i][j] / (*cnt > 0 ? *cnt : 1) - mm[i] * mm[j];
        }
        double pf = rn / M, f = cn / N, se = sqrt(pf * (1 - pf) * (1.0 / N + 1.0 / M));
        CHECK(fabs(f - pf) <= 3 * se, "%s: component %d fraction %.4f, want %.4f (3 SE = %.4f)", name, k, f, pf, 3 * se);
        for (int i = 0; i < d; i++) {
            /* 4 standard errors of the difference of the two sample moments, + comp_tol. */
            double sem = sqrt(rc[i][i] * (1.0 / (cn > 1 ? cn : 1) + 1.0 / (rn > 1 ? rn : 1)));
            CHECK(fabs(cm[i] - rm[i]) <= comp_tol + 4 * sem, "%s: component %d mean[%d] %.4f, want %.4f", name, k, i, cm[i], rm[i]);
            for (int j = 0; j < d; j++) {
                double sec = sqrt((rc[i][i] * rc[j][j] + rc[i][j] * rc[i][j]) * (1.0 / (cn > 1 ? cn : 1) + 1.0 / (rn > 1 ? rn : 1)));
                CHECK(fabs(cc[i][j] - rc[i][j]) <= comp_tol + 4 * sec, "%s: component %d cov[%d][%d] %.4f, want %.4f", name, k, i, j, cc[i][j], rc[i][j]);
            }
        }
    }
    double u[GMM_MAXD], un = 0;
    float z[GMM_MAXD];
    nf_randn(z, (size_t)d, 99, 1, 0);
    for (int i = 0; i < d; i++) un += (double)z[i] * z[i];
    for (int i = 0; i < d; i++) u[i] = z[i] / sqrt(un);
    double p = gmm_ks_pvalue(g, cls, xs, N, u);
    CHECK(p > 0.01, "%s: KS p-value %.4g on a random projection", name, p);
    fprintf(stderr, "%s: mean (%.3f, %.3f) want (%.3f, %.3f); cov00 %.3f/%.3f cov01 %.3f/%.3f cov11 %.3f/%.3f; KS p %.3f\n",
            name, sm[0], sm[1], m[0], m[1], sS[0][0], S[0][0], sS[0][1], S[0][1], sS[1][1], S[1][1], p);
    free(xs);
    free(ref);
}

#endif
