/* The diffusion core: noise schedules, the forward process, training objectives and
 * losses, samplers, guidance and editing.
 *
 * No network lives here: the core sees tensors [B, C, L] (row-major, example-major) and
 * calls a denoiser callback. Notation follows Ho et al. 2020 ("DDPM"), with steps
 * indexed from 0 as in code: step i = 0..T-1 has beta[i], alpha[i] = 1 - beta[i],
 * alpha_bar[i] = prod_{j<=i} alpha[j]; alpha_bar_prev[0] = 1 (clean data). The paper's
 * t = 1..T is our i + 1. All schedule arithmetic is in double precision.
 *
 * Determinism: every random number is drawn with the counter RNG (nf_rng.h). Example k
 * of a batch rendered with seed S draws all its noise from seed S + k, so it equals the
 * same example rendered alone with seed S + k, whatever the batch size or thread count
 * (provided the denoiser treats examples independently). */
#ifndef NF_DIFFUSION_H
#define NF_DIFFUSION_H

#include "nf_common.h"
#include "nf_engine.h" /* nf_sampler_kind */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- schedules --- */

typedef enum {
    NF_SCHEDULE_LINEAR = 0, /* Ho et al.: beta 1e-4 .. 0.02 at T = 1000, scaled by 1000/T */
    NF_SCHEDULE_COSINE      /* Nichol & Dhariwal 2021 eq. 17, s = 0.008, beta <= 0.999 */
} nf_schedule_kind;

/* A schedule owns its arrays (nf_schedule_free). Read the fields directly; do not
 * modify them. A respaced schedule (for fast sampling) keeps the subset of training
 * steps it runs on in `timesteps`, which is what the denoiser is called with. */
typedef struct {
    int T;                   /* steps in this schedule */
    int T_train;             /* steps of the training schedule it was made from */
    int *timesteps;          /* [T] training-scale index of step i (i when not respaced) */
    double *beta;            /* [T] */
    double *alpha;           /* [T] 1 - beta */
    double *alpha_bar;       /* [T] */
    double *alpha_bar_prev;  /* [T] alpha_bar[i - 1]; 1 at i = 0 */
    double *beta_tilde;      /* [T] posterior variance (1-abar_prev) beta / (1-abar); 0 at i = 0 */
    double *log_beta_tilde;  /* [T] log beta_tilde, with i = 0 clipped to beta_tilde[1]
                              * (as Nichol & Dhariwal's code: log 0 is unusable) */
} nf_schedule;

nf_status nf_schedule_init(nf_schedule *s, nf_schedule_kind kind, int T);
/* Keep training steps `timesteps` (strictly increasing, in [0, base->T)) of an
 * unrespaced `base`: beta'_j = 1 - abar[t_j] / abar[t_{j-1}] (Nichol & Dhariwal sec. 4),
 * so that alpha_bar' at each kept step equals the base's. */
nf_status nf_schedule_respace(nf_schedule *out, const nf_schedule *base, const int *timesteps, int n);
/* n steps evenly spread over [0, T-1], both ends included (n = T: a copy). */
nf_status nf_schedule_respace_even(nf_schedule *out, const nf_schedule *base, int n);
/* n steps, both ends included, as close as the integer steps allow to evenly spaced in
 * log-SNR lambda = log(sqrt(abar / (1 - abar))): the spacing Lu et al. 2022 recommend for
 * DPM-Solver at small sizes, and a geometric sequence of noise levels as NCSN uses. */
nf_status nf_schedule_respace_logsnr(nf_schedule *out, const nf_schedule *base, int n);
void nf_schedule_free(nf_schedule *s);

static inline double nf_schedule_alpha_bar(const nf_schedule *s, int i) { return s->alpha_bar[i]; }
/* Signal-to-noise ratio abar / (1 - abar) (Kingma et al. 2021). */
static inline double nf_schedule_snr(const nf_schedule *s, int i)
{
    return s->alpha_bar[i] / (1.0 - s->alpha_bar[i]);
}

/* ---------------------------------------------------- forward process q(.) --- */

/* q(x_t | x_0) (Ho et al. eq. 4): xt = sqrt(abar) x0 + sqrt(1 - abar) eps, per example,
 * step t[b] (index into s). Tensors [B, n]. xt may alias x0 or eps. */
void nf_q_sample(const nf_schedule *s, const int *t, const float *x0, const float *eps,
                 int B, size_t n, float *xt);
/* Coefficients of the posterior q(x_{i-1} | x_i, x_0) = N(c_x0 x0 + c_xt xt, var I)
 * (Ho et al. eqs. 6-7): c_x0 = sqrt(abar_prev) beta / (1 - abar),
 * c_xt = sqrt(alpha) (1 - abar_prev) / (1 - abar), var = beta_tilde. */
void nf_q_posterior_coefs(const nf_schedule *s, int i, double *c_x0, double *c_xt, double *var);
/* The posterior mean for one example of n values; returns the variance (not std). */
double nf_q_posterior_mean(const nf_schedule *s, int i, const float *x0, const float *xt,
                           size_t n, float *mean);

/* ------------------------------------------------------ parameterisations --- */

typedef enum {
    NF_PRED_EPS = 0, /* the noise (Ho et al.) */
    NF_PRED_V,       /* v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022) */
    NF_PRED_X0       /* the clean data */
} nf_pred_kind;

const char *nf_pred_name(nf_pred_kind k);
int nf_pred_from_name(const char *name); /* -1 if unknown */

/* From a prediction `pred` at x_t with alpha_bar `abar`, the implied x0 and eps
 * (either output may be NULL; outputs must not alias the inputs). n values. */
void nf_pred_to_x0_eps(nf_pred_kind k, double abar, const float *xt, const float *pred,
                       size_t n, float *x0, float *eps);
/* The prediction (training target) for known x0 and eps. */
void nf_pred_from_x0_eps(nf_pred_kind k, double abar, const float *x0, const float *eps,
                         size_t n, float *pred);

/* --------------------------------------------------------- losses --- */

typedef enum {
    NF_WEIGHT_NONE = 0, /* L_simple (Ho et al. eq. 14) in the model's parameterisation */
    NF_WEIGHT_VLB,      /* the VLB weight lambda_t = beta^2 / (2 sigma^2 alpha (1-abar)) of
                         * Ho et al. eq. 12 on the eps error, with sigma^2 = beta */
    NF_WEIGHT_MIN_SNR   /* min(SNR, gamma) / SNR on the eps error (Hang et al. 2023) */
} nf_loss_weighting;

typedef struct {
    nf_pred_kind pred;          /* the model's parameterisation */
    int learned_var;            /* model outputs 2C channels: mean param, then v */
    nf_loss_weighting weighting;
    double min_snr_gamma;       /* 5 */
    double vlb_lambda;          /* weight of L_vlb in L_hybrid (0.001, Nichol & Dhariwal) */
} nf_loss_config;

void nf_loss_config_default(nf_loss_config *c); /* v, no learned variance, unweighted */

/* The weight on the mean-square error of the parameterisation at step i (training
 * schedule): the weighting's eps-error weight w times ||eps err||^2 / ||pred err||^2,
 * which is 1 for eps, SNR for x0 and abar for v (at fixed x_t). */
double nf_loss_weight(const nf_loss_config *c, const nf_schedule *s, int i);

/* Learned variance (Nichol & Dhariwal eq. 15): log Sigma = v log beta + (1-v) log beta_tilde
 * (v used as is: v = 0 gives beta_tilde, v = 1 gives beta). */
static inline double nf_learned_log_variance(const nf_schedule *s, int i, double v, double log_beta)
{
    return v * log_beta + (1.0 - v) * s->log_beta_tilde[i];
}

/* One example's variational-bound term for learned-variance training (Nichol & Dhariwal
 * sec. 3.1), with the mean held fixed (stop-gradient): for i > 0 the KL
 * KL(q(x_{i-1}|x_i,x_0) || N(mu(x0_pred, x_i), Sigma(v))), for i = 0 the Gaussian negative
 * log-likelihood -log N(x0; mu, Sigma) (audio is continuous; we do not use the 8-bit
 * discretised decoder of the image papers). Averaged over the n values, in nats.
 * dv (may be NULL) receives d(term)/d v for each value. */
double nf_vlb_term(const nf_schedule *s, int i, const float *x0, const float *xt,
                   const float *x0_pred, const float *v, size_t n, float *dv);

/* The training loss for a batch and its gradient with respect to the model output.
 *   t: [B] step indices (training schedule); x0, xt, eps: [B, C, L] as drawn;
 *   out: [B, C or 2C, L] the model output; dout (may be NULL): d loss / d out, same shape.
 * loss = mean_b [ w(t_b) mean_(c,l) (pred - target)^2 ]
 *      + vlb_lambda mean_b [ L_vlb_b / ln 2 ]          (learned_var only; bits per value,
 * the unit in which Nichol & Dhariwal's lambda = 0.001 was chosen). The L_vlb term sends
 * gradient only into the variance channels. per_example (may be NULL): [B] the summand. */
nf_status nf_loss(const nf_loss_config *c, const nf_schedule *s, const int *t, const float *x0,
                  const float *xt, const float *eps, const float *out, int B, int C, int L,
                  double *loss, float *dout, double *per_example);

/* --------------------------------------------------- training batches --- */

typedef struct {
    int stratified;  /* 1: t_b = floor((b + u_b) T / B), a stratified draw over the batch */
    float p_uncond;  /* classifier-free guidance: replace y[b] by -1 with this probability */
} nf_train_draw_config;

/* Draw one training batch deterministically from (seed, step): t [B] (uniform or
 * stratified over the schedule s, which must be the training schedule), eps [B,C,L],
 * xt = q(x_t|x_0) and target (the parameterisation `pred`'s value), and, if y is not
 * NULL, apply the label dropout to y in place. Example b's draws depend only on
 * (seed, step, b) (and B for stratified t). */
nf_status nf_train_draw(const nf_train_draw_config *c, const nf_schedule *s, nf_pred_kind pred,
                        uint64_t seed, uint64_t step, const float *x0, int B, int C, int L,
                        int *t, float *eps, float *xt, float *target, int *y);

/* ------------------------------------------------------------ samplers --- */

/* The denoiser: out[B, C or 2C, L] = model(x[B, C, L], t[B], y[B]) in the model's
 * parameterisation. t is the training-scale step index as a float; y[b] = -1 is "no
 * class" and y may be NULL (unconditional). Returns NF_OK or a failure status. */
typedef nf_status (*nf_denoiser_fn)(void *ctx, const float *x, const float *t, const int *y,
                                    int B, int C, int L, float *out);
/* Classifier guidance: grad[B, C, L] = grad_x log p(y | x_t, t) (Dhariwal & Nichol 2021). */
typedef nf_status (*nf_classifier_grad_fn)(void *ctx, const float *x, const float *t,
                                           const int *y, int B, int C, int L, float *grad);

typedef enum {
    NF_VAR_BETA_TILDE = 0, /* sigma^2 = beta_tilde (the posterior's; Ho et al. sec. 3.2) */
    NF_VAR_BETA,           /* sigma^2 = beta */
    NF_VAR_LEARNED         /* from the model's v channels (needs learned_var) */
} nf_var_kind;

typedef enum {
    NF_SPACING_DEFAULT = 0, /* log-SNR for DPM-Solver++ and Langevin, even for the others */
    NF_SPACING_EVEN,
    NF_SPACING_LOGSNR
} nf_spacing;

typedef struct {
    nf_sampler_kind kind;
    nf_spacing spacing;    /* how the steps are chosen among the training steps */
    int steps;             /* sampler steps on a respaced schedule (0: 1000-step DDPM uses
                            * every step, others 25); Langevin: noise levels */
    nf_pred_kind pred;     /* the model's parameterisation */
    int learned_var;       /* the model outputs 2C channels */
    nf_var_kind ddpm_var;  /* DDPM step variance */
    double eta;            /* DDIM: 0 deterministic, 1 DDPM-like */
    int langevin_steps;    /* Langevin steps per noise level (NCSN's T) */
    double langevin_eps;   /* NCSN's epsilon: step = eps * sigma_i^2 / sigma_L^2 (<= 0: 0.5 sigma_L^2) */
    int langevin_denoise;  /* a final Tweedie denoising step (Jolicoeur-Martineau et al.) */
    int clip_x0;           /* clip predicted x0 to [-clip_value, clip_value] (off for audio) */
    float clip_value;
    /* Guidance. */
    float cfg_scale;       /* classifier-free: eps_u + s (eps_c - eps_u); 1 = plain */
    nf_classifier_grad_fn classifier;
    void *classifier_ctx;
    float classifier_scale;
    /* Editing. Pointers are borrowed and must outlive the sampler. */
    const float *init;     /* [B, C, L] the given sound(s), for variation and inpainting */
    float strength;        /* variation (SDEdit): start at this fraction of the steps;
                            * 1 = a new sound (init ignored unless masked), 0 = init itself */
    const float *mask;     /* [L] 1 where init is known (inpainting/continuation), or NULL */
    int repaint_jumps;     /* RePaint resampling per step (DDPM and DDIM only) */
    const float *start_noise; /* [B, C, L] x_T to use instead of the seeds' (interpolation) */
    /* Inpainting by sequential Monte Carlo ("SMCDiff", Trippe et al. 2022) with this many
     * particles per example. 0 or 1: replacement (RePaint eq. 8), an approximation whose
     * unknown region does not follow p(unknown | known) even with an exact model. K > 1:
     * the unknown region's distribution converges to that conditional as K grows (and as
     * the model and its steps approach the exact reverse process); the known region is
     * init exactly. Needs a mask, strength 1, no start_noise, no RePaint jumps, and DDPM
     * or DDIM with eta > 0 (a Gaussian step to weight particles by; only eta = 1, which
     * is DDPM, is asymptotically exact). Costs K times the network calls: the denoiser
     * gets B * K rows per call (2 B K with classifier-free guidance). */
    int particles;
} nf_sampler_config;

/* DPM-Solver++(2M), 25 steps, v-prediction, everything else off. */
void nf_sampler_config_default(nf_sampler_config *c);

typedef struct nf_sampler nf_sampler;

/* train: the training schedule (unrespaced). Allocates all scratch for B x [C, L] (B K
 * rows with K particles). */
nf_status nf_sampler_create(const nf_schedule *train, const nf_sampler_config *c, int B, int C,
                            int L, nf_sampler **out);
/* Start a render: y [B] (copied; NULL = unconditional), example k from seed + k. */
nf_status nf_sampler_init(nf_sampler *s, nf_denoiser_fn fn, void *ctx, const int *y, uint64_t seed);
/* Steps left (0: done). A step is one batched denoiser call, or two or more with CFG off
 * and RePaint jumps on (then one per resampling). With particles, one call of B * K rows. */
int nf_sampler_steps_left(const nf_sampler *s);
nf_status nf_sampler_step(nf_sampler *s);
/* Copy the result [B, C, L] (x_0) out. Fails if steps are left. */
nf_status nf_sampler_finish(nf_sampler *s, float *out);
void nf_sampler_free(nf_sampler *s);

/* create + init + steps + finish + free in one call. */
nf_status nf_sample(const nf_schedule *train, const nf_sampler_config *c, nf_denoiser_fn fn,
                    void *ctx, const int *y, uint64_t seed, int B, int C, int L, float *out);

/* ------------------------------------------------------------- editing --- */

/* The start noise x_T of seeds seed .. seed + B - 1 ([B, n]), as the samplers draw it. */
void nf_start_noise(uint64_t seed, int B, size_t n, float *out);
/* Spherical interpolation (Shoemake 1985) of two noise tensors of n values; alpha = 0
 * gives a exactly, alpha = 1 gives b exactly. Falls back to lerp when they are parallel. */
void nf_slerp(const float *a, const float *b, size_t n, double alpha, float *out);
/* Deterministic DDIM inversion (Song et al. 2021 sec. 4.3, eta = 0 run backwards) of the
 * sounds x0 [B, C, L] to x_T [B, C, L], on c->steps respaced steps, with c's pred,
 * learned_var and cfg_scale. Decode with DDIM eta = 0 and start_noise = the result. */
nf_status nf_ddim_invert(const nf_schedule *train, const nf_sampler_config *c, nf_denoiser_fn fn,
                         void *ctx, const int *y, const float *x0, int B, int C, int L, float *xT);

#ifdef __cplusplus
}
#endif
#endif
