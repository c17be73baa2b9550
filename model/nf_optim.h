/* Training machinery on flat float slabs: AdamW, global-norm gradient clipping, the
 * learning-rate schedule and an exponential moving average (EMA) of the weights.
 *
 * Everything works on one contiguous array of n floats (nf_unet_params() /
 * nf_unet_grads()), is threaded with OpenMP (the thread count set by nf_set_threads()),
 * and is deterministic: results do not depend on the thread count (reductions are done
 * over fixed-size blocks, summed in a fixed order, in double precision).
 *
 * The update rules follow torch.optim.AdamW and torch.nn.utils.clip_grad_norm_ exactly,
 * so that tests/reference/unet_ref.py can check them step by step. */
#ifndef NF_OPTIM_H
#define NF_OPTIM_H

#include "nf_common.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019,
 * Algorithm 2; Adam moments and bias correction from Kingma & Ba 2015, Algorithm 1). */
typedef struct {
    float beta1;        /* first-moment decay (0.9) */
    float beta2;        /* second-moment decay (0.999) */
    float eps;          /* added to sqrt(v_hat) (1e-8) */
    float weight_decay; /* decoupled: theta -= lr * weight_decay * theta (0.01) */
} nf_adamw_config;

/* The optimizer state. The fields are public so that a training-state file can save
 * and restore them exactly (m, v and step are all there is). */
typedef struct {
    nf_adamw_config cfg;
    size_t n;       /* number of parameters */
    float *m;       /* first moments [n] (owned) */
    float *v;       /* second moments [n] (owned) */
    int64_t step;   /* number of steps taken so far */
    /* Optional, caller-owned: decay_mask[i] != 0 applies weight decay to parameter i;
     * NULL decays every parameter (what torch.optim.AdamW does with one param group). */
    const uint8_t *decay_mask;
} nf_adamw;

/* The usual defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01 (torch's). */
nf_adamw_config nf_adamw_defaults(void);
/* Allocate zeroed moments for n parameters; step = 0. */
nf_status nf_adamw_init(nf_adamw *opt, size_t n, const nf_adamw_config *cfg);
void nf_adamw_free(nf_adamw *opt);
/* Zero the moments and the step count. */
void nf_adamw_reset(nf_adamw *opt);

/* One step at learning rate lr (from nf_lr_at()):
 *   t = step + 1
 *   theta *= 1 - lr * wd                     (decoupled decay, before the Adam update)
 *   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2
 *   theta -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * Gradients are read only. Returns NF_ERR_ARG on a bad lr. */
nf_status nf_adamw_step(nf_adamw *opt, float *params, const float *grads, float lr);
/* The same step on the gradients times gscale (each g[i] * gscale rounded to float, as
 * nf_scale would leave it): clipping by nf_clip_factor() without a pass of its own. */
nf_status nf_adamw_step_scaled(nf_adamw *opt, float *params, const float *grads, float gscale, float lr);

/* ---- Gradient clipping and norms. */

/* The global L2 norm of g[n] (accumulated in double in a fixed order: thread-count and
 * instruction-set independent). */
double nf_l2_norm(const float *g, size_t n);
/* nf_l2_norm in pieces, for a caller whose gradients become final a part at a time (the
 * U-Net's backward pass, op by op) and that wants each part summed while it is still in
 * cache: g[n] is cut into nf_norm_blocks(n, &block) blocks of `block` elements (the
 * last may be short; at most NF_NORM_MAX_BLOCKS); nf_norm_partials fills partial[b] for
 * blocks b0 <= b < b1, and nf_norm_total combines all nb of them. Same blocks, same
 * sums, same order as nf_l2_norm: the same bits, whenever each block is summed. */
#define NF_NORM_MAX_BLOCKS 1024
int nf_norm_blocks(size_t n, size_t *block);
void nf_norm_partials(const float *g, size_t n, size_t block, int b0, int b1, double *partial);
double nf_norm_total(const double *partial, int nb);
/* Clip g[n] in place to a global L2 norm of at most max_norm, as
 * torch.nn.utils.clip_grad_norm_ does: g *= max_norm / (norm + 1e-6) when that factor is
 * below 1. max_norm <= 0 only measures. Returns the norm before clipping; a non-finite
 * norm leaves g untouched (the caller should skip the step). */
double nf_clip_grad_norm(float *g, size_t n, double max_norm);
/* The factor nf_clip_grad_norm scales by for a given norm: max_norm / (norm + 1e-6) in
 * float when that is below 1, else 1 (also for a non-finite norm or max_norm <= 0). */
float nf_clip_factor(double norm, double max_norm);
/* For tests: 1 runs the portable C instead of the AVX2 paths of nf_adamw_step and
 * nf_l2_norm (which must give the same bits); 0 (the default) picks by the CPU. */
void nf_optim_force_portable(int on);
/* g[n] *= s (loss scaling, gradient averaging). */
void nf_scale(float *g, size_t n, float s);

/* ---- Learning-rate schedule: linear warm-up, then cosine decay to a floor or constant. */
typedef enum {
    NF_LR_CONSTANT = 0, /* lr after the warm-up */
    NF_LR_COSINE = 1,   /* half a cosine from lr down to min_lr at total_steps (SGDR,
                           Loshchilov & Hutter 2017, eq. 5, without restarts) */
} nf_lr_shape;

typedef struct {
    nf_lr_shape shape;
    float lr;            /* peak learning rate */
    float min_lr;        /* the floor of the cosine (absolute, not a fraction) */
    int64_t warmup_steps;/* linear ramp lr * (step + 1) / warmup_steps for step < warmup */
    int64_t total_steps; /* cosine reaches min_lr here and stays there */
} nf_lr_schedule;

/* NF_ERR_ARG with the bad field named. */
nf_status nf_lr_schedule_check(const nf_lr_schedule *s);
/* The learning rate for 0-based step `step`. */
float nf_lr_at(const nf_lr_schedule *s, int64_t step);

/* ---- EMA of the weights (Polyak averaging; as in Ho et al. 2020, decay 0.9999). */
typedef struct {
    size_t n;
    float *shadow;      /* the averaged weights [n] (owned) */
    float decay;        /* the target decay, e.g. 0.999 or 0.9999 */
    int warmup;         /* 1: decay_k = min(decay, (1 + k) / (10 + k)) for update k
                           (TensorFlow's ExponentialMovingAverage num_updates rule), so
                           that early averages are not dominated by the random init */
    int64_t updates;    /* number of updates so far */
} nf_ema;

/* Allocate the shadow and copy params[n] into it. decay must be in [0, 1). */
nf_status nf_ema_init(nf_ema *ema, const float *params, size_t n, float decay, int warmup);
void nf_ema_free(nf_ema *ema);
/* The decay the next update will use. */
float nf_ema_current_decay(const nf_ema *ema);
/* shadow = d * shadow + (1 - d) * params. */
void nf_ema_update(nf_ema *ema, const float *params);
/* shadow = params (after loading weights, or to restart the average). */
void nf_ema_reset(nf_ema *ema, const float *params);

#ifdef __cplusplus
}
#endif
#endif
