/* Losses, weights, the learned-variance VLB term and training-batch draws. */
#include "nf_diffusion.h"
#include "nf_rng.h"
#include "nf_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_learned_variance(const nf_schedule *s)
{
    int steps[4] = {1, 10, 500, 999};
    for (int q = 0; q < 4; q++) {
        int i = steps[q];
        double lb = log(s->beta[i]);
        CHECK(nf_learned_log_variance(s, i, 0.0, lb) == s->log_beta_tilde[i], "v = 0 gives log beta_tilde exactly (step %d)", i);
        CHECK_CLOSE(exp(nf_learned_log_variance(s, i, 0.0, lb)), s->beta_tilde[i], 0, 1e-14, "v = 0: beta_tilde");
        CHECK_CLOSE(exp(nf_learned_log_variance(s, i, 1.0, lb)), s->beta[i], 0, 1e-14, "v = 1: beta");
    }
}

/* The KL term against a Monte Carlo estimate of E_q[log q - log p]. */
static void test_vlb_kl(const nf_schedule *s)
{
    enum { M = 200000 };
    float *z = malloc(sizeof(float) * M);
    int steps[3] = {3, 200, 800};
    for (int q = 0; q < 3; q++) {
        int i = steps[q];
        float x0 = 0.4f, xt = -0.9f, x0p = 0.1f, v = 0.3f;
        double kl = nf_vlb_term(s, i, &x0, &xt, &x0p, &v, 1, NULL);
        double cx0, cxt, var;
        nf_q_posterior_coefs(s, i, &cx0, &cxt, &var);
        double mq = cx0 * x0 + cxt * xt, mp = cx0 * x0p + cxt * xt;
        double lp = v * log(s->beta[i]) + (1 - v) * log(s->beta_tilde[i]);
        nf_randn(z, M, 31, (uint64_t)i, 0);
        double sum = 0, sum2 = 0;
        for (int k = 0; k < M; k++) {
            double x = mq + sqrt(var) * z[k];
            double lq = -0.5 * log(var) - 0.5 * (x - mq) * (x - mq) / var;
            double lpp = -0.5 * lp - 0.5 * (x - mp) * (x - mp) / exp(lp);
            double d = lq - lpp;
            sum += d;
            sum2 += d * d;
        }
        double mean = sum / M, se = sqrt((sum2 / M - mean * mean) / M);
        CHECK(fabs(kl - mean) < 4 * se + 1e-9, "step %d: KL %.6g, Monte Carlo %.6g +- %.1e", i, kl, mean, se);
    }
    /* Step 0: the Gaussian NLL of x0. */
    float x0 = 0.4f, xt = 0.41f, x0p = 0.39f, v = 0.5f;
    double nll = nf_vlb_term(s, 0, &x0, &xt, &x0p, &v, 1, NULL);
    double cx0, cxt;
    nf_q_posterior_coefs(s, 0, &cx0, &cxt, NULL);
    double mp = cx0 * x0p + cxt * xt, lp = 0.5 * log(s->beta[0]) + 0.5 * s->log_beta_tilde[0];
    double want = 0.5 * (log(2 * M_PI) + lp + (x0 - mp) * (x0 - mp) / exp(lp));
    CHECK_CLOSE(nll, want, 1e-12, 1e-12, "step 0: Gaussian NLL");
    free(z);
}

/* Central finite differences of nf_loss with respect to every model output. The mean
 * channels are checked against the L_simple part alone (vlb_lambda = 0): the VLB term
 * must send them nothing (stop-gradient), so the full loss's analytic gradient matches it. */
static void test_loss_gradient(const nf_schedule *s)
{
    enum { B = 3, C = 2, L = 4, n = C * L };
    float x0[B * n], eps[B * n], xt[B * n], out[B * 2 * n], dout[B * 2 * n];
    int t[B] = {0, 137, 901};
    nf_randn(x0, B * n, 41, 0, 0);
    nf_randn(eps, B * n, 41, 1, 0);
    nf_q_sample(s, t, x0, eps, B, n, xt);
    for (int pk = 0; pk < 3; pk++)
        for (int wk = 0; wk < 3; wk++)
            for (int lv = 0; lv < 2; lv++) {
                nf_loss_config c;
                nf_loss_config_default(&c);
                c.pred = (nf_pred_kind)pk;
                c.weighting = (nf_loss_weighting)wk;
                c.learned_var = lv;
                c.vlb_lambda = 0.5; /* large, so that a leak into the mean would show */
                int oc = lv ? 2 * C : C;
                nf_randn(out, (size_t)B * oc * L, 42, (uint64_t)(pk * 10 + wk), 0);
                for (int k = 0; k < B * oc * L; k++) out[k] *= 0.5f;
                double loss;
                CHECK_OK(nf_loss(&c, s, t, x0, xt, eps, out, B, C, L, &loss, dout, NULL));
                nf_loss_config c0 = c;
                c0.vlb_lambda = 0;
                double maxerr = 0;
                for (int b = 0; b < B; b++)
                    for (int k = 0; k < oc * L; k++) {
                        int idx = b * oc * L + k;
                        int is_mean = k < n;
                        float keep = out[idx];
                        double h = 1e-3, lpl, lmi;
                        out[idx] = keep + (float)h;
                        nf_loss(is_mean ? &c0 : &c, s, t, x0, xt, eps, out, B, C, L, &lpl, NULL, NULL);
                        out[idx] = keep - (float)h;
                        nf_loss(is_mean ? &c0 : &c, s, t, x0, xt, eps, out, B, C, L, &lmi, NULL, NULL);
                        out[idx] = keep;
                        double hh = ((double)(keep + (float)h) - (double)(keep - (float)h));
                        double fd = (lpl - lmi) / hh;
                        double err = fabs(fd - dout[idx]) / (1e-6 + fabs(fd) + fabs(dout[idx]));
                        if (fabs(fd - dout[idx]) < 1e-7) err = 0;
                        if (err > maxerr) maxerr = err;
                    }
                CHECK(maxerr < 2e-3, "pred %s weighting %d learned %d: gradient vs finite differences, rel err %.2e",
                      nf_pred_name(c.pred), wk, lv, maxerr);
            }
}

/* A weighting means the same thing in every parameterisation: the same prediction
 * (the same implied x0, eps) gives the same loss whether expressed as eps, v or x0. */
static void test_weight_consistency(const nf_schedule *s)
{
    enum { B = 4, n = 6 };
    float x0[B * n], eps[B * n], xt[B * n], ehat[B * n], x0hat[B * n], out[B * n];
    int t[B] = {2, 100, 500, 990};
    nf_randn(x0, B * n, 51, 0, 0);
    nf_randn(eps, B * n, 51, 1, 0);
    nf_randn(ehat, B * n, 51, 2, 0);
    nf_q_sample(s, t, x0, eps, B, n, xt);
    for (int b = 0; b < B; b++)
        nf_pred_to_x0_eps(NF_PRED_EPS, s->alpha_bar[t[b]], xt + b * n, ehat + b * n, n, x0hat + b * n, NULL);
    for (int wk = 1; wk < 3; wk++) {
        double ref = 0;
        for (int pk = 0; pk < 3; pk++) {
            nf_loss_config c;
            nf_loss_config_default(&c);
            c.pred = (nf_pred_kind)pk;
            c.weighting = (nf_loss_weighting)wk;
            for (int b = 0; b < B; b++)
                nf_pred_from_x0_eps(c.pred, s->alpha_bar[t[b]], x0hat + b * n, ehat + b * n, n, out + b * n);
            double loss;
            CHECK_OK(nf_loss(&c, s, t, x0, xt, eps, out, B, 1, n, &loss, NULL, NULL));
            if (pk == 0) ref = loss;
            else CHECK_CLOSE(loss, ref, 0, 1e-4, "weighted loss independent of the parameterisation");
        }
    }
    nf_loss_config c;
    nf_loss_config_default(&c);
    c.pred = NF_PRED_EPS;
    c.weighting = NF_WEIGHT_MIN_SNR;
    for (int i = 0; i < 1000; i += 111) {
        double snr = s->alpha_bar[i] / (1 - s->alpha_bar[i]);
        CHECK_CLOSE(nf_loss_weight(&c, s, i), fmin(snr, 5.0) / snr, 0, 1e-12, "min-SNR-5 weight");
    }
    c.weighting = NF_WEIGHT_VLB;
    CHECK_CLOSE(nf_loss_weight(&c, s, 500), s->beta[500] * s->beta[500] / (2 * s->beta[500] * s->alpha[500] * (1 - s->alpha_bar[500])),
                0, 1e-12, "VLB weight (Ho et al. eq. 12)");
}

static void test_train_draw(const nf_schedule *s)
{
    enum { B = 2000, C = 1, L = 3, n = C * L };
    float *x0 = malloc(sizeof(float) * B * n), *eps = malloc(sizeof(float) * B * n), *xt = malloc(sizeof(float) * B * n);
    float *tg = malloc(sizeof(float) * B * n), *eps2 = malloc(sizeof(float) * B * n);
    int *t = malloc(sizeof(int) * B), *t2 = malloc(sizeof(int) * B), *y = malloc(sizeof(int) * B), *y2 = malloc(sizeof(int) * B);
    nf_randn(x0, B * n, 61, 0, 0);
    nf_train_draw_config c = {.stratified = 0, .p_uncond = 0.2f};
    for (int b = 0; b < B; b++) y[b] = y2[b] = b % 3;
    CHECK_OK(nf_train_draw(&c, s, NF_PRED_V, 7, 3, x0, B, C, L, t, eps, xt, tg, y));
    CHECK_OK(nf_train_draw(&c, s, NF_PRED_V, 7, 3, x0, B, C, L, t2, eps2, xt, tg, y2));
    CHECK(!memcmp(t, t2, sizeof(int) * B) && !memcmp(eps, eps2, sizeof(float) * B * n) && !memcmp(y, y2, sizeof(int) * B),
          "same seed and step: same draws");
    int dropped = 0, tmin = 1000, tmax = -1;
    double err = 0, mt = 0;
    for (int b = 0; b < B; b++) {
        dropped += y[b] == -1;
        CHECK(y[b] == -1 || y[b] == b % 3, "labels kept or dropped");
        tmin = t[b] < tmin ? t[b] : tmin;
        tmax = t[b] > tmax ? t[b] : tmax;
        mt += t[b] / (double)B;
        double ab = s->alpha_bar[t[b]];
        for (int k = 0; k < n; k++) {
            int q = b * n + k;
            err = fmax(err, fabs(xt[q] - (sqrt(ab) * x0[q] + sqrt(1 - ab) * eps[q])));
            err = fmax(err, fabs(tg[q] - (sqrt(ab) * eps[q] - sqrt(1 - ab) * x0[q])));
        }
    }
    CHECK(err < 1e-5, "x_t and the v target follow from x0, eps, t (max err %g)", err);
    double se = sqrt(0.2 * 0.8 / B);
    CHECK(fabs(dropped / (double)B - 0.2) < 4 * se, "label dropout rate %.3f, want 0.2", dropped / (double)B);
    CHECK(tmin >= 0 && tmax <= 999 && fabs(mt - 499.5) < 4 * 288.7 / sqrt(B), "t uniform on [0, 999]: mean %.1f", mt);
    CHECK_OK(nf_train_draw(&c, s, NF_PRED_V, 7, 4, x0, B, C, L, t2, eps2, xt, tg, NULL));
    CHECK(memcmp(eps, eps2, sizeof(float) * B * n) != 0, "another step: other noise");
    /* Stratified: one t in each of B equal strata. */
    c.stratified = 1;
    CHECK_OK(nf_train_draw(&c, s, NF_PRED_EPS, 7, 3, x0, 10, C, L, t, eps, xt, tg, NULL));
    int ok = 1;
    for (int b = 0; b < 10; b++) ok &= t[b] >= b * 100 && t[b] < (b + 1) * 100;
    CHECK(ok, "stratified draws: one per stratum");
    free(x0); free(eps); free(xt); free(tg); free(eps2); free(t); free(t2); free(y); free(y2);
}

int main(void)
{
    nf_schedule s;
    CHECK_OK(nf_schedule_init(&s, NF_SCHEDULE_LINEAR, 1000));
    test_learned_variance(&s);
    test_vlb_kl(&s);
    test_loss_gradient(&s);
    test_weight_consistency(&s);
    test_train_draw(&s);
    nf_schedule_free(&s);
    nf_schedule c;
    CHECK_OK(nf_schedule_init(&c, NF_SCHEDULE_COSINE, 1000));
    test_loss_gradient(&c);
    nf_schedule_free(&c);
    return nf_test_done();
}
