/* Training objectives: targets, the L_simple / weighted / hybrid losses with their
 * gradients, and deterministic training-batch draws. References: Ho et al. 2020 (DDPM),
 * Nichol & Dhariwal 2021 (improved DDPM, learned variance, L_hybrid), Salimans & Ho 2022
 * (v), Hang et al. 2023 (min-SNR-gamma). */
#include "nf_diffusion.h"
#include "nf_rng.h"

#include <math.h>
#include <string.h>

#define LOG_2PI 1.8378770664093454836

void nf_loss_config_default(nf_loss_config *c)
{
    memset(c, 0, sizeof *c);
    c->pred = NF_PRED_V; /* DESIGN "lessons": eps-prediction stalled on the STFT network */
    c->weighting = NF_WEIGHT_NONE;
    c->min_snr_gamma = 5.0;
    c->vlb_lambda = 0.001;
}

double nf_loss_weight(const nf_loss_config *c, const nf_schedule *s, int i)
{
    if (c->weighting == NF_WEIGHT_NONE) return 1.0;
    double ab = s->alpha_bar[i], snr = ab / (1.0 - ab);
    double w_eps;
    if (c->weighting == NF_WEIGHT_VLB) {
        /* Ho et al. eq. 12 with sigma^2 = beta: beta^2 / (2 beta alpha (1 - abar)). */
        w_eps = s->beta[i] / (2.0 * s->alpha[i] * (1.0 - ab));
    } else {
        double g = c->min_snr_gamma;
        w_eps = (snr < g ? snr : g) / snr; /* Hang et al. 2023 eq. 8 (eps form) */
    }
    /* At fixed x_t: eps err = -sqrt(SNR) x0 err = sqrt(abar) v err (from x_t = sa x0 + sb eps
     * and v = sa eps - sb x0), so the same weight on the parameterisation's error is: */
    switch (c->pred) {
    case NF_PRED_EPS: return w_eps;
    case NF_PRED_X0: return w_eps * snr;
    case NF_PRED_V: return w_eps * ab;
    }
    return w_eps;
}

/* One value of the VLB term and its derivative with respect to the log variance.
 * KL of two Gaussians: 0.5 (-1 + lp - lq + e^(lq-lp) + (mq - mp)^2 e^(-lp)); at i = 0 the
 * Gaussian NLL 0.5 (log 2pi + lp + (x0 - mp)^2 e^(-lp)). */
static double vlb_elem(int i, double lq, double mq, double x0, double mp, double lp, double *d_lp)
{
    double d2 = i > 0 ? (mq - mp) * (mq - mp) : (x0 - mp) * (x0 - mp);
    double ie = exp(-lp);
    if (i > 0) {
        double r = exp(lq - lp);
        *d_lp = 0.5 * (1.0 - r - d2 * ie);
        return 0.5 * (-1.0 + lp - lq + r + d2 * ie);
    }
    *d_lp = 0.5 * (1.0 - d2 * ie);
    return 0.5 * (LOG_2PI + lp + d2 * ie);
}

double nf_vlb_term(const nf_schedule *s, int i, const float *x0, const float *xt,
                   const float *x0_pred, const float *v, size_t n, float *dv)
{
    double cx0, cxt, var;
    nf_q_posterior_coefs(s, i, &cx0, &cxt, &var);
    double logb = log(s->beta[i]), lbt = s->log_beta_tilde[i];
    double lq = i > 0 ? log(var) : 0.0;
    double sum = 0.0;
    for (size_t k = 0; k < n; k++) {
        double lp = nf_learned_log_variance(s, i, v[k], logb);
        double mq = cx0 * x0[k] + cxt * xt[k];
        double mp = cx0 * x0_pred[k] + cxt * xt[k]; /* the model's mean, Ho et al. eq. 11 */
        double d;
        sum += vlb_elem(i, lq, mq, x0[k], mp, lp, &d);
        if (dv) dv[k] = (float)(d * (logb - lbt) / (double)n);
    }
    return sum / (double)n;
}

nf_status nf_loss(const nf_loss_config *c, const nf_schedule *s, const int *t, const float *x0,
                  const float *xt, const float *eps, const float *out, int B, int C, int L,
                  double *loss, float *dout, double *per_example)
{
    if (B < 1 || C < 1 || L < 1) return nf_fail(NF_ERR_ARG, "diffusion loss: bad shape [%d, %d, %d]", B, C, L);
    size_t n = (size_t)C * L;
    size_t on = c->learned_var ? 2 * n : n;
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        int i = t[b];
        if (i < 0 || i >= s->T) return nf_fail(NF_ERR_ARG, "diffusion loss: step %d outside [0, %d)", i, s->T);
        double ab = s->alpha_bar[i], sa = sqrt(ab), sb = sqrt(1.0 - ab);
        const float *p = out + b * on, *x = x0 + b * n, *e = eps + b * n, *xb = xt + b * n;
        float *d = dout ? dout + b * on : NULL;
        double w = nf_loss_weight(c, s, i);
        double se = 0.0;
        /* L_simple (Ho et al. eq. 14) on the chosen target, optionally weighted. */
        for (size_t k = 0; k < n; k++) {
            double target = c->pred == NF_PRED_EPS ? e[k] : c->pred == NF_PRED_X0 ? x[k]
                                                                                  : sa * e[k] - sb * x[k];
            double r = p[k] - target;
            se += r * r;
            if (d) d[k] = (float)(2.0 * w * r / ((double)n * B));
        }
        double term = w * se / (double)n;
        if (c->learned_var) {
            /* L_vlb with stop-gradient on the mean (Nichol & Dhariwal sec. 3.1): the mean
             * channels get no gradient from it; only the v channels do. */
            double cx0, cxt, var;
            nf_q_posterior_coefs(s, i, &cx0, &cxt, &var);
            double logb = log(s->beta[i]), lbt = s->log_beta_tilde[i];
            double lq = i > 0 ? log(var) : 0.0;
            double scale = c->vlb_lambda / M_LN2; /* nats -> bits */
            double vsum = 0.0;
            for (size_t k = 0; k < n; k++) {
                double pk = p[k], xk = xb[k];
                double x0p = c->pred == NF_PRED_EPS ? (xk - sb * pk) / sa
                           : c->pred == NF_PRED_X0 ? pk : sa * xk - sb * pk;
                double lp = nf_learned_log_variance(s, i, p[n + k], logb);
                double dl;
                vsum += vlb_elem(i, lq, cx0 * x[k] + cxt * xk, x[k], cx0 * x0p + cxt * xk, lp, &dl);
                if (d) d[n + k] = (float)(scale * dl * (logb - lbt) / ((double)n * B));
            }
            term += scale * vsum / (double)n;
        }
        if (per_example) per_example[b] = term;
        total += term;
    }
    if (!isfinite(total)) return nf_fail(NF_ERR_NUMERIC, "diffusion loss: not finite (%g)", total);
    if (loss) *loss = total / B;
    return NF_OK;
}

nf_status nf_train_draw(const nf_train_draw_config *c, const nf_schedule *s, nf_pred_kind pred,
                        uint64_t seed, uint64_t step, const float *x0, int B, int C, int L,
                        int *t, float *eps, float *xt, float *target, int *y)
{
    if (s->T != s->T_train) return nf_fail(NF_ERR_ARG, "diffusion training: needs the training schedule, not a respaced one");
    if (B < 1 || C < 1 || L < 1) return nf_fail(NF_ERR_ARG, "diffusion training: bad shape [%d, %d, %d]", B, C, L);
    size_t n = (size_t)C * L;
    uint64_t st_t = nf_stream_id("train-t", step, 0);
    uint64_t st_y = nf_stream_id("train-label-drop", step, 0);
    for (int b = 0; b < B; b++) {
        int i;
        if (c && c->stratified) {
            /* One draw in each of B equal strata of [0, T): lower-variance loss estimates. */
            double u = nf_rand_uniform1(seed, st_t, (uint64_t)b);
            i = (int)floor(((double)b + u) * s->T / B);
            if (i >= s->T) i = s->T - 1;
        } else {
            i = (int)nf_rand_below((uint64_t)s->T, seed, st_t, (uint64_t)b); /* Algorithm 1 line 3 */
        }
        t[b] = i;
        nf_randn(eps + b * n, n, seed, nf_stream_id("train-eps", step, (uint64_t)b), 0);
        if (y && c && c->p_uncond > 0 && nf_rand_uniform1(seed, st_y, (uint64_t)b) < c->p_uncond)
            y[b] = -1; /* classifier-free guidance: Ho & Salimans 2021 Algorithm 1 */
    }
    nf_q_sample(s, t, x0, eps, B, n, xt);
    if (target) {
        for (int b = 0; b < B; b++)
            nf_pred_from_x0_eps(pred, s->alpha_bar[t[b]], x0 + b * n, eps + b * n, n, target + b * n);
    }
    return NF_OK;
}
