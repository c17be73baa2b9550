/* Noise schedules, the forward process, the posterior and the conversions between
 * parameterisations. References: Ho et al. 2020 (DDPM), Nichol & Dhariwal 2021
 * (improved DDPM), Salimans & Ho 2022 (v). */
#include "nf_diffusion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static nf_status schedule_alloc(nf_schedule *s, int T)
{
    memset(s, 0, sizeof *s);
    s->T = T;
    s->timesteps = malloc(sizeof(int) * (size_t)T);
    double *d = malloc(sizeof(double) * 7 * (size_t)T);
    if (!s->timesteps || !d) {
        free(s->timesteps);
        free(d);
        s->timesteps = NULL;
        return nf_fail(NF_ERR_NOMEM, "diffusion schedule: out of memory for %d steps", T);
    }
    s->beta = d;
    s->alpha = d + T;
    s->alpha_bar = d + 2 * T;
    s->alpha_bar_prev = d + 3 * T;
    s->beta_tilde = d + 4 * T;
    s->log_beta_tilde = d + 5 * T;
    return NF_OK;
}

/* Everything else follows from beta (Ho et al. sec. 2 and eq. 7). */
static void schedule_derive(nf_schedule *s)
{
    double ab = 1.0;
    for (int i = 0; i < s->T; i++) {
        s->alpha[i] = 1.0 - s->beta[i];
        s->alpha_bar_prev[i] = ab;
        ab *= s->alpha[i];
        s->alpha_bar[i] = ab;
        s->beta_tilde[i] = (1.0 - s->alpha_bar_prev[i]) * s->beta[i] / (1.0 - s->alpha_bar[i]);
    }
    for (int i = 0; i < s->T; i++) {
        /* beta_tilde[0] = 0: clip to the next step's value as improved-diffusion does; a
         * one-step schedule falls back to beta. */
        double bt = s->beta_tilde[i];
        if (i == 0) bt = s->T > 1 ? s->beta_tilde[1] : s->beta[0];
        s->log_beta_tilde[i] = log(bt);
    }
}

static double cosine_alpha_bar(double u)
{
    /* Nichol & Dhariwal eq. 17: f(t) = cos^2(((t/T + s) / (1 + s)) pi/2), s = 0.008. */
    const double s = 0.008;
    double c = cos((u + s) / (1.0 + s) * 1.5707963267948966192);
    return c * c;
}

nf_status nf_schedule_init(nf_schedule *s, nf_schedule_kind kind, int T)
{
    if (T < 1 || T > 100000) return nf_fail(NF_ERR_ARG, "diffusion schedule: T = %d out of range [1, 100000]", T);
    if (kind != NF_SCHEDULE_LINEAR && kind != NF_SCHEDULE_COSINE)
        return nf_fail(NF_ERR_ARG, "diffusion schedule: unknown kind %d", (int)kind);
    nf_status st = schedule_alloc(s, T);
    if (st) return st;
    s->T_train = T;
    for (int i = 0; i < T; i++) s->timesteps[i] = i;
    if (kind == NF_SCHEDULE_LINEAR) {
        /* Ho et al.'s 1e-4 .. 0.02 at T = 1000, scaled by 1000/T so that other T keep the
         * same total noise (get_named_beta_schedule in improved-diffusion). */
        double scale = 1000.0 / T;
        double b0 = scale * 1e-4, b1 = scale * 0.02;
        for (int i = 0; i < T; i++) {
            double b = T > 1 ? b0 + (b1 - b0) * i / (T - 1) : b1;
            s->beta[i] = b < 0.999 ? b : 0.999;
        }
    } else {
        for (int i = 0; i < T; i++) {
            double b = 1.0 - cosine_alpha_bar((double)(i + 1) / T) / cosine_alpha_bar((double)i / T);
            s->beta[i] = b < 0.999 ? b : 0.999; /* clip: the last steps' beta -> 1 */
        }
    }
    schedule_derive(s);
    return NF_OK;
}

nf_status nf_schedule_respace(nf_schedule *out, const nf_schedule *base, const int *timesteps, int n)
{
    if (base->T != base->T_train)
        return nf_fail(NF_ERR_ARG, "diffusion schedule: respace needs an unrespaced base schedule");
    if (n < 1 || n > base->T)
        return nf_fail(NF_ERR_ARG, "diffusion schedule: %d respaced steps (training has %d)", n, base->T);
    for (int j = 0; j < n; j++) {
        if (timesteps[j] < 0 || timesteps[j] >= base->T || (j > 0 && timesteps[j] <= timesteps[j - 1]))
            return nf_fail(NF_ERR_ARG, "diffusion schedule: respaced steps must be increasing in [0, %d)", base->T);
    }
    nf_status st = schedule_alloc(out, n);
    if (st) return st;
    out->T_train = base->T;
    double prev = 1.0;
    for (int j = 0; j < n; j++) {
        double ab = base->alpha_bar[timesteps[j]];
        out->timesteps[j] = timesteps[j];
        out->beta[j] = 1.0 - ab / prev; /* Nichol & Dhariwal sec. 4 */
        prev = ab;
    }
    schedule_derive(out);
    /* Keep the base's alpha_bar exactly (the product could drift in the last bits). */
    for (int j = 0; j < n; j++) {
        out->alpha_bar[j] = base->alpha_bar[timesteps[j]];
        out->alpha_bar_prev[j] = j ? base->alpha_bar[timesteps[j - 1]] : 1.0;
    }
    return NF_OK;
}

nf_status nf_schedule_respace_even(nf_schedule *out, const nf_schedule *base, int n)
{
    if (n < 1 || n > base->T)
        return nf_fail(NF_ERR_ARG, "diffusion schedule: %d respaced steps (training has %d)", n, base->T);
    int *ts = malloc(sizeof(int) * (size_t)n);
    if (!ts) return nf_fail(NF_ERR_NOMEM, "diffusion schedule: out of memory");
    for (int j = 0; j < n; j++)
        ts[j] = n > 1 ? (int)floor((double)j * (base->T - 1) / (n - 1) + 0.5) : base->T - 1;
    nf_status st = nf_schedule_respace(out, base, ts, n);
    free(ts);
    return st;
}

nf_status nf_schedule_respace_logsnr(nf_schedule *out, const nf_schedule *base, int n)
{
    int T = base->T;
    if (n < 1 || n > T) return nf_fail(NF_ERR_ARG, "diffusion schedule: %d respaced steps (training has %d)", n, T);
    int *ts = malloc(sizeof(int) * (size_t)n);
    if (!ts) return nf_fail(NF_ERR_NOMEM, "diffusion schedule: out of memory");
    /* lambda decreases with the step index; 2 lambda = log SNR. */
    double l0 = 0.5 * log(nf_schedule_snr(base, 0)), l1 = 0.5 * log(nf_schedule_snr(base, T - 1));
    int t = 0;
    for (int j = 0; j < n; j++) {
        double target = n > 1 ? l0 + (l1 - l0) * j / (n - 1) : l1;
        /* The first step at or past the target, or the previous one if that is closer. */
        while (t < T - 1 && 0.5 * log(nf_schedule_snr(base, t)) > target) t++;
        int best = t;
        if (t > 0 && fabs(0.5 * log(nf_schedule_snr(base, t - 1)) - target) <
                         fabs(0.5 * log(nf_schedule_snr(base, t)) - target))
            best = t - 1;
        int lo = j ? ts[j - 1] + 1 : 0, hi = T - n + j; /* keep room for the rest */
        ts[j] = best < lo ? lo : best > hi ? hi : best;
        if (j == n - 1 && n > 1) ts[j] = T - 1;
        t = ts[j];
    }
    nf_status st = nf_schedule_respace(out, base, ts, n);
    free(ts);
    return st;
}

void nf_schedule_free(nf_schedule *s)
{
    if (!s) return;
    free(s->timesteps);
    free(s->beta);
    memset(s, 0, sizeof *s);
}

void nf_q_sample(const nf_schedule *s, const int *t, const float *x0, const float *eps,
                 int B, size_t n, float *xt)
{
    for (int b = 0; b < B; b++) {
        /* Ho et al. eq. 4: variance (1 - abar), so the noise is scaled by its square root. */
        double ab = s->alpha_bar[t[b]];
        float ca = (float)sqrt(ab), cb = (float)sqrt(1.0 - ab);
        const float *x = x0 + (size_t)b * n, *e = eps + (size_t)b * n;
        float *o = xt + (size_t)b * n;
        for (size_t k = 0; k < n; k++) o[k] = ca * x[k] + cb * e[k];
    }
}

void nf_q_posterior_coefs(const nf_schedule *s, int i, double *c_x0, double *c_xt, double *var)
{
    double ab = s->alpha_bar[i], abp = s->alpha_bar_prev[i];
    /* Ho et al. eq. 7; the x_t coefficient has alpha_t (not abar_t): DESIGN erratum. */
    if (c_x0) *c_x0 = sqrt(abp) * s->beta[i] / (1.0 - ab);
    if (c_xt) *c_xt = sqrt(s->alpha[i]) * (1.0 - abp) / (1.0 - ab);
    if (var) *var = s->beta_tilde[i];
}

double nf_q_posterior_mean(const nf_schedule *s, int i, const float *x0, const float *xt,
                           size_t n, float *mean)
{
    double a, b, v;
    nf_q_posterior_coefs(s, i, &a, &b, &v);
    for (size_t k = 0; k < n; k++) mean[k] = (float)(a * x0[k] + b * xt[k]);
    return v;
}

const char *nf_pred_name(nf_pred_kind k)
{
    switch (k) {
    case NF_PRED_EPS: return "eps";
    case NF_PRED_V: return "v";
    case NF_PRED_X0: return "x0";
    }
    return "?";
}

int nf_pred_from_name(const char *name)
{
    if (!name) return -1;
    for (int k = 0; k < 3; k++)
        if (!strcasecmp(name, nf_pred_name((nf_pred_kind)k))) return k;
    return -1;
}

void nf_pred_to_x0_eps(nf_pred_kind k, double abar, const float *xt, const float *pred,
                       size_t n, float *x0, float *eps)
{
    double sa = sqrt(abar), sb = sqrt(1.0 - abar);
    switch (k) {
    case NF_PRED_EPS: /* x_t = sa x0 + sb eps (Ho et al. eq. 4) solved for x0 */
        for (size_t i = 0; i < n; i++) {
            if (eps) eps[i] = pred[i];
            if (x0) x0[i] = (float)((xt[i] - sb * pred[i]) / sa);
        }
        break;
    case NF_PRED_X0:
        for (size_t i = 0; i < n; i++) {
            if (x0) x0[i] = pred[i];
            if (eps) eps[i] = (float)((xt[i] - sa * pred[i]) / sb);
        }
        break;
    case NF_PRED_V: /* Salimans & Ho 2022 sec. 4: x0 = sa x_t - sb v, eps = sb x_t + sa v */
        for (size_t i = 0; i < n; i++) {
            double x = xt[i], v = pred[i];
            if (x0) x0[i] = (float)(sa * x - sb * v);
            if (eps) eps[i] = (float)(sb * x + sa * v);
        }
        break;
    }
}

void nf_pred_from_x0_eps(nf_pred_kind k, double abar, const float *x0, const float *eps,
                         size_t n, float *pred)
{
    double sa = sqrt(abar), sb = sqrt(1.0 - abar);
    for (size_t i = 0; i < n; i++) {
        switch (k) {
        case NF_PRED_EPS: pred[i] = eps[i]; break;
        case NF_PRED_X0: pred[i] = x0[i]; break;
        case NF_PRED_V: pred[i] = (float)(sa * eps[i] - sb * x0[i]); break;
        }
    }
}
