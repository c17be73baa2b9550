/* AdamW, gradient clipping, learning-rate schedule and EMA on flat float slabs. */
#include "nf_optim.h"

#include "nf_nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 16384
/* Reductions are summed per block of this many elements, then over blocks in order, so
 * the result is the same for any thread count. */
#define RED_BLOCK 4096
/* The AdamW update is handed to the threads in chunks of this many elements (a multiple of 8). */
#define ADAM_CHUNK 8192

/* The AVX2 paths below give the same bits as the portable C: the same operations in the
 * same order, no FMA contraction (C11 mode leaves a * b + c as two roundings, and the
 * intrinsics spell them out), and IEEE sqrt and division are correctly rounded in both.
 * nf_optim_force_portable(1) lets the tests check that. */
static int g_force_portable;
void nf_optim_force_portable(int on) { g_force_portable = on; }

static int use_avx2(void) { return nf_cpu_avx2_fma() && !g_force_portable; }

typedef struct {
    float b2, one_b1, one_b2, eps, step_size, inv_sqrt_bc2, decay;
    float gscale; /* the clipping factor, applied to each gradient as it is read */
    int scaled;   /* gscale != 1 */
} adam_consts;

static void adam_portable(const adam_consts *k, float *params, const float *grads, float *m, float *v,
                          const uint8_t *mask, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        float g = k->scaled ? grads[i] * k->gscale : grads[i];
        float p = params[i];
        if (!mask || mask[i]) p *= k->decay;
        float mi = m[i] + k->one_b1 * (g - m[i]); /* = b1 m + (1 - b1) g */
        float vi = k->b2 * v[i] + k->one_b2 * g * g;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) * k->inv_sqrt_bc2 + k->eps;
        params[i] = p - k->step_size * (mi / denom);
    }
}

#ifdef HAVE_X86
__attribute__((target("avx2"))) static void adam_avx2(const adam_consts *k, float *params, const float *grads,
                                                      float *m, float *v, const uint8_t *mask, size_t lo,
                                                      size_t hi)
{
    const __m256 one_b1 = _mm256_set1_ps(k->one_b1), b2 = _mm256_set1_ps(k->b2),
                 one_b2 = _mm256_set1_ps(k->one_b2), eps = _mm256_set1_ps(k->eps),
                 step = _mm256_set1_ps(k->step_size), isb = _mm256_set1_ps(k->inv_sqrt_bc2),
                 decay = _mm256_set1_ps(k->decay), gs = _mm256_set1_ps(k->gscale);
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 g = _mm256_loadu_ps(grads + i), p = _mm256_loadu_ps(params + i);
        if (k->scaled) g = _mm256_mul_ps(g, gs);
        __m256 pd = _mm256_mul_ps(p, decay);
        if (mask) {
            __m128i mb = _mm_loadl_epi64((const __m128i *)(mask + i));
            __m256i on = _mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(mb), _mm256_setzero_si256());
            p = _mm256_blendv_ps(pd, p, _mm256_castsi256_ps(on)); /* mask 0: no decay */
        } else {
            p = pd;
        }
        __m256 mo = _mm256_loadu_ps(m + i), vo = _mm256_loadu_ps(v + i);
        __m256 mi = _mm256_add_ps(mo, _mm256_mul_ps(one_b1, _mm256_sub_ps(g, mo)));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, vo), _mm256_mul_ps(_mm256_mul_ps(one_b2, g), g));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 denom = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), isb), eps);
        _mm256_storeu_ps(params + i, _mm256_sub_ps(p, _mm256_mul_ps(step, _mm256_div_ps(mi, denom))));
    }
    adam_portable(k, params, grads, m, v, mask, i, hi);
}
#endif

nf_adamw_config nf_adamw_defaults(void)
{
    nf_adamw_config c = {0.9f, 0.999f, 1e-8f, 0.01f};
    return c;
}

nf_status nf_adamw_init(nf_adamw *opt, size_t n, const nf_adamw_config *cfg)
{
    memset(opt, 0, sizeof *opt);
    if (!cfg) return nf_fail(NF_ERR_ARG, "adamw: no config");
    if (!(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f))
        return nf_fail(NF_ERR_ARG, "adamw: beta1 %g is not in [0, 1)", (double)cfg->beta1);
    if (!(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f))
        return nf_fail(NF_ERR_ARG, "adamw: beta2 %g is not in [0, 1)", (double)cfg->beta2);
    if (!(cfg->eps > 0.0f && isfinite(cfg->eps)))
        return nf_fail(NF_ERR_ARG, "adamw: eps %g must be positive", (double)cfg->eps);
    if (!(cfg->weight_decay >= 0.0f && isfinite(cfg->weight_decay)))
        return nf_fail(NF_ERR_ARG, "adamw: weight decay %g must be >= 0", (double)cfg->weight_decay);
    if (n == 0) return nf_fail(NF_ERR_ARG, "adamw: no parameters");
    opt->m = calloc(n, sizeof(float));
    opt->v = calloc(n, sizeof(float));
    if (!opt->m || !opt->v) {
        nf_adamw_free(opt);
        return nf_fail(NF_ERR_NOMEM, "adamw: out of memory for %zu moments", n);
    }
    opt->cfg = *cfg;
    opt->n = n;
    return NF_OK;
}

void nf_adamw_free(nf_adamw *opt)
{
    if (!opt) return;
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
    opt->n = 0;
}

void nf_adamw_reset(nf_adamw *opt)
{
    if (opt->m) memset(opt->m, 0, opt->n * sizeof(float));
    if (opt->v) memset(opt->v, 0, opt->n * sizeof(float));
    opt->step = 0;
}

typedef struct {
    adam_consts k;
    float *params, *m, *v;
    const float *grads;
    const uint8_t *mask;
    size_t n;
    int avx2;
} adam_job;

static void adam_range(void *ctx, size_t lo, size_t hi)
{
    const adam_job *J = ctx;
#ifdef HAVE_X86
    if (J->avx2) {
        adam_avx2(&J->k, J->params, J->grads, J->m, J->v, J->mask, lo, hi);
        return;
    }
#endif
    adam_portable(&J->k, J->params, J->grads, J->m, J->v, J->mask, lo, hi);
}

nf_status nf_adamw_step_scaled(nf_adamw *opt, float *params, const float *grads, float gscale, float lr)
{
    if (!(lr >= 0.0f && isfinite(lr))) return nf_fail(NF_ERR_ARG, "adamw: learning rate %g", (double)lr);
    if (!(gscale >= 0.0f && isfinite(gscale)))
        return nf_fail(NF_ERR_ARG, "adamw: gradient scale %g", (double)gscale);
    if (!opt->m || !opt->v) return nf_fail(NF_ERR_ARG, "adamw: optimizer not initialised");
    const int64_t t = opt->step + 1;
    const float b1 = opt->cfg.beta1, b2 = opt->cfg.beta2, eps = opt->cfg.eps;
    /* Bias corrections (Kingma & Ba, Algorithm 1) in double, as torch computes them. */
    const double bc1 = 1.0 - pow((double)b1, (double)t);
    const double bc2 = 1.0 - pow((double)b2, (double)t);
    const float step_size = (float)((double)lr / bc1);
    const float inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    /* Decoupled decay (Loshchilov & Hutter, Algorithm 2 line 12), applied first as torch does. */
    const float decay = (float)(1.0 - (double)lr * (double)opt->cfg.weight_decay);
    adam_job J = {{b2, 1.0f - b1, 1.0f - b2, eps, step_size, inv_sqrt_bc2, decay, gscale, gscale != 1.0f},
                  params, opt->m, opt->v, grads, opt->decay_mask, opt->n, use_avx2()};
    /* On the GEMM's pool: its workers are still spinning from the backward pass. */
    nf_par_range(opt->n > PAR_MIN ? nf_nn_threads() : 1, opt->n, ADAM_CHUNK, opt->n, adam_range, &J);
    opt->step = t;
    return NF_OK;
}

nf_status nf_adamw_step(nf_adamw *opt, float *params, const float *grads, float lr)
{
    return nf_adamw_step_scaled(opt, params, grads, 1.0f, lr);
}

/* Sum of squares of g[lo, hi) in double, in 8 lanes: element lo + j goes to lane j % 8,
 * and the lanes are combined as ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)). Eight
 * independent chains let the adds overlap (one chain is bound by the add's latency);
 * the order is fixed, so both paths give the same bits. Squares of floats are exact in
 * double. */
static double sumsq_portable(const float *g, size_t lo, size_t hi, double lane[8])
{
    for (size_t i = lo; i < hi; i++) lane[(i - lo) & 7] += (double)g[i] * g[i];
    double t0 = lane[0] + lane[4], t1 = lane[1] + lane[5], t2 = lane[2] + lane[6], t3 = lane[3] + lane[7];
    return (t0 + t1) + (t2 + t3);
}

#ifdef HAVE_X86
__attribute__((target("avx2"))) static double sumsq_avx2(const float *g, size_t lo, size_t hi)
{
    __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
        a = _mm256_add_pd(a, _mm256_mul_pd(x0, x0));
        b = _mm256_add_pd(b, _mm256_mul_pd(x1, x1));
    }
    double lane[8];
    _mm256_storeu_pd(lane, a);
    _mm256_storeu_pd(lane + 4, b);
    return sumsq_portable(g, i, hi, lane); /* the tail: (j - i) & 7 == (j - lo) & 7 */
}
#endif

typedef struct {
    const float *g;
    size_t n, bs;
    double *partial;
    int avx2;
} norm_job;

static void norm_blocks(void *ctx, int b0, int b1)
{
    const norm_job *J = ctx;
    for (int b = b0; b < b1; b++) {
        size_t lo = (size_t)b * J->bs, hi = lo + J->bs < J->n ? lo + J->bs : J->n;
#ifdef HAVE_X86
        if (J->avx2) {
            J->partial[b] = sumsq_avx2(J->g, lo, hi);
            continue;
        }
#endif
        double lane[8] = {0};
        J->partial[b] = sumsq_portable(J->g, lo, hi, lane);
    }
}

/* Threads for a pass over n elements: the pool's (nn_pool.c), whose workers are still
 * spinning from the backward pass, or one for short slabs. */
static int pass_threads(size_t n) { return n > PAR_MIN ? nf_nn_threads() : 1; }

int nf_norm_blocks(size_t n, size_t *block)
{
    /* At most NF_NORM_MAX_BLOCKS partial sums (nf_l2_norm keeps them on the stack: no
     * allocation per step): blocks grow past RED_BLOCK for very large n. Block bounds
     * depend on n only. */
    size_t bs = RED_BLOCK;
    if ((n + bs - 1) / bs > NF_NORM_MAX_BLOCKS) bs = (n + NF_NORM_MAX_BLOCKS - 1) / NF_NORM_MAX_BLOCKS;
    *block = bs;
    return (int)((n + bs - 1) / bs);
}

void nf_norm_partials(const float *g, size_t n, size_t block, int b0, int b1, double *partial)
{
    if (b1 <= b0) return;
    norm_job J = {g + (size_t)b0 * block, n - (size_t)b0 * block, block, partial + b0, use_avx2()};
    size_t span = (size_t)(b1 - b0) * block;
    nf_par_for(pass_threads(span), b1 - b0, span, norm_blocks, &J);
}

double nf_norm_total(const double *partial, int nb)
{
    double s = 0.0;
    for (int b = 0; b < nb; b++) s += partial[b];
    return sqrt(s);
}

double nf_l2_norm(const float *g, size_t n)
{
    size_t bs;
    int nb = nf_norm_blocks(n, &bs);
    double partial[NF_NORM_MAX_BLOCKS];
    nf_norm_partials(g, n, bs, 0, nb, partial);
    return nf_norm_total(partial, nb);
}

/* Elementwise passes over a slab, on the pool in blocks of PASS_BLOCK elements. */
#define PASS_BLOCK 16384
typedef struct {
    float *x;
    const float *y;
    float s;
} pass_job;

static void scale_range(void *ctx, size_t lo, size_t hi)
{
    const pass_job *J = ctx;
    for (size_t i = lo; i < hi; i++) J->x[i] *= J->s;
}

void nf_scale(float *g, size_t n, float s)
{
    pass_job J = {g, NULL, s};
    nf_par_range(pass_threads(n), n, PASS_BLOCK, n, scale_range, &J);
}

float nf_clip_factor(double norm, double max_norm)
{
    if (!isfinite(norm) || max_norm <= 0.0) return 1.0f;
    /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1. */
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}

double nf_clip_grad_norm(float *g, size_t n, double max_norm)
{
    double norm = nf_l2_norm(g, n);
    float coef = nf_clip_factor(norm, max_norm);
    if (coef != 1.0f) nf_scale(g, n, coef);
    return norm;
}

nf_status nf_lr_schedule_check(const nf_lr_schedule *s)
{
    if (s->shape != NF_LR_CONSTANT && s->shape != NF_LR_COSINE)
        return nf_fail(NF_ERR_ARG, "lr schedule: unknown shape %d", (int)s->shape);
    if (!(s->lr > 0.0f && isfinite(s->lr)))
        return nf_fail(NF_ERR_ARG, "lr schedule: lr %g must be positive", (double)s->lr);
    if (!(s->min_lr >= 0.0f && s->min_lr <= s->lr))
        return nf_fail(NF_ERR_ARG, "lr schedule: min_lr %g must be in [0, lr]", (double)s->min_lr);
    if (s->warmup_steps < 0)
        return nf_fail(NF_ERR_ARG, "lr schedule: warmup_steps %lld is negative", (long long)s->warmup_steps);
    if (s->shape == NF_LR_COSINE && s->total_steps <= s->warmup_steps)
        return nf_fail(NF_ERR_ARG, "lr schedule: total_steps %lld must exceed warmup_steps %lld",
                       (long long)s->total_steps, (long long)s->warmup_steps);
    return NF_OK;
}

float nf_lr_at(const nf_lr_schedule *s, int64_t step)
{
    if (step < 0) step = 0;
    if (step < s->warmup_steps) return (float)((double)s->lr * (double)(step + 1) / (double)s->warmup_steps);
    if (s->shape == NF_LR_CONSTANT) return s->lr;
    /* Cosine annealing (Loshchilov & Hutter 2017, eq. 5):
     * lr = min + (max - min) * (1 + cos(pi * p)) / 2, p = progress after the warm-up. */
    double span = (double)(s->total_steps - s->warmup_steps);
    double p = span > 0 ? (double)(step - s->warmup_steps) / span : 1.0;
    if (p > 1.0) p = 1.0;
    return (float)(s->min_lr + ((double)s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * p)));
}

nf_status nf_ema_init(nf_ema *ema, const float *params, size_t n, float decay, int warmup)
{
    memset(ema, 0, sizeof *ema);
    if (!(decay >= 0.0f && decay < 1.0f))
        return nf_fail(NF_ERR_ARG, "ema: decay %g is not in [0, 1)", (double)decay);
    if (n == 0) return nf_fail(NF_ERR_ARG, "ema: no parameters");
    ema->shadow = malloc(n * sizeof(float));
    if (!ema->shadow) return nf_fail(NF_ERR_NOMEM, "ema: out of memory for %zu weights", n);
    memcpy(ema->shadow, params, n * sizeof(float));
    ema->n = n;
    ema->decay = decay;
    ema->warmup = warmup;
    return NF_OK;
}

void nf_ema_free(nf_ema *ema)
{
    if (!ema) return;
    free(ema->shadow);
    ema->shadow = NULL;
    ema->n = 0;
}

float nf_ema_current_decay(const nf_ema *ema)
{
    if (!ema->warmup) return ema->decay;
    double k = (double)ema->updates;
    double d = (1.0 + k) / (10.0 + k);
    return d < ema->decay ? (float)d : ema->decay;
}

static void ema_range(void *ctx, size_t lo, size_t hi)
{
    const pass_job *J = ctx;
    for (size_t i = lo; i < hi; i++) J->x[i] += J->s * (J->y[i] - J->x[i]);
}

void nf_ema_update(nf_ema *ema, const float *params)
{
    const float d = nf_ema_current_decay(ema);
    /* shadow += (1 - d)(params - shadow): the same as d*shadow + (1-d)*params, and exact
     * when params == shadow. */
    pass_job J = {ema->shadow, params, 1.0f - d};
    nf_par_range(pass_threads(ema->n), ema->n, PASS_BLOCK, ema->n, ema_range, &J);
    ema->updates++;
}

void nf_ema_reset(nf_ema *ema, const float *params)
{
    memcpy(ema->shadow, params, ema->n * sizeof(float));
}
