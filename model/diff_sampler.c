/* Samplers on one interface (init, step, finish), with guidance and editing.
 *
 *   DDPM ancestral     Ho et al. 2020 Algorithm 2 (posterior form, eq. 7)
 *   DDIM               Song, Meng & Ermon 2021 eq. 12
 *   DPM-Solver++(2M)   Lu et al. 2022 ("DPM-Solver++") Algorithm 2, data prediction
 *   Euler ancestral    Karras et al. 2022 / k-diffusion sample_euler_ancestral
 *   annealed Langevin  Song & Ermon 2019 (NCSN) Algorithm 1
 *   classifier-free    Ho & Salimans 2021 eq. 6
 *   classifier         Dhariwal & Nichol 2021 Algorithms 1 (mean shift) and 2 (eps form)
 *   SDEdit             Meng et al. 2022;  RePaint  Lugmayr et al. 2022
 *   SMC inpainting     Trippe et al. 2022 ("SMCDiff") Algorithm 1
 *
 * State: DDPM, DDIM and DPM-Solver++ keep x_t (variance preserving, "VP"). Euler ancestral
 * and Langevin keep x_t / sqrt(abar_t) (the variance-exploding view, "VE": data plus noise
 * of std sigma = sqrt((1 - abar) / abar)), where their updates are written; the model is
 * always called on the VP x_t = sqrt(abar) x_VE.
 *
 * Noise: draw number d of the render uses stream nf_stream_id("sampler-noise", d, 0) and
 * example k uses seed + k, so every example is independent of the batch it is in.
 * SMC inpainting keeps K particles per example as rows b K + j of the state; all of
 * example b's draws (particle j's start noise and proposals, the known region's
 * trajectory, resampling and the final pick) use seed + b too, on the streams named in
 * the SMC section below. */
#include "nf_diffusion.h"
#include "nf_rng.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct nf_sampler {
    nf_sampler_config c;
    nf_schedule rs;       /* the respaced schedule the sampler walks (Langevin: levels) */
    int B, C, L, oc;      /* oc: model output channels (C or 2C) */
    int K;                /* SMC particles per example (1: no SMC) */
    int R;                /* rows of the state and of a model call: B * K */
    size_t n;             /* C * L */
    int ve;               /* state in VE coordinates */
    int use_cfg;
    float *x;             /* [R, n] state */
    float *xin;           /* [2R, n] model input */
    float *tin;           /* [2R] */
    int *yin;             /* [2R] */
    int *y;               /* [R] (row r: example r / K's label) */
    int has_y;
    float *mout;          /* [2R, oc, L] */
    float *eps, *x0, *v;  /* [R, n] guided eps and x0; learned-variance values */
    float *grad;          /* [R, n] classifier gradient */
    float *noise;         /* [R, n] */
    float *x0_old;        /* [R, n] DPM-Solver++ history */
    float *known;         /* [B, n] SMC: the known region's noised trajectory, current level */
    double *logw;         /* [R] SMC log weights (relative, per example) */
    int *anc;             /* [R] SMC: the particle (row) each row's next step starts from */
    nf_denoiser_fn fn;
    void *ctx;
    uint64_t seed;
    uint64_t draw;        /* noise draws so far */
    int i;                /* current step index in rs (-1: done) */
    int sub;              /* Langevin step within the level */
    int denoise_pending;  /* Langevin final denoising */
    int have_old;
    double h_prev;
    int initialised;
};

void nf_sampler_config_default(nf_sampler_config *c)
{
    memset(c, 0, sizeof *c);
    c->kind = NF_SAMPLER_DPMPP;
    c->steps = 0;
    c->pred = NF_PRED_V;
    c->ddpm_var = NF_VAR_BETA_TILDE;
    c->eta = 0.0;
    c->langevin_steps = 5;
    c->langevin_eps = 0.0; /* <= 0: 0.5 sigma_L^2, i.e. a step of 0.5 sigma_i^2 at each level */
    c->langevin_denoise = 1;
    c->clip_value = 1.0f;
    c->cfg_scale = 1.0f;
    c->classifier_scale = 1.0f;
    c->strength = 1.0f;
}

static int default_steps(const nf_sampler_config *c, int T)
{
    if (c->steps > 0) return c->steps < T ? c->steps : T;
    if (c->kind == NF_SAMPLER_DDPM) return T;
    if (c->kind == NF_SAMPLER_LANGEVIN) return T < 100 ? T : 100;
    return T < 25 ? T : 25;
}

void nf_sampler_free(nf_sampler *s)
{
    if (!s) return;
    nf_schedule_free(&s->rs);
    free(s->x);
    free(s->xin);
    free(s->tin);
    free(s->yin);
    free(s->y);
    free(s->mout);
    free(s->eps);
    free(s->x0);
    free(s->v);
    free(s->grad);
    free(s->noise);
    free(s->x0_old);
    free(s->known);
    free(s->logw);
    free(s->anc);
    free(s);
}

nf_status nf_sampler_create(const nf_schedule *train, const nf_sampler_config *c, int B, int C,
                            int L, nf_sampler **out)
{
    *out = NULL;
    if (B < 1 || C < 1 || L < 1) return nf_fail(NF_ERR_ARG, "sampler: bad shape [%d, %d, %d]", B, C, L);
    if ((int)c->kind < 0 || c->kind >= NF_SAMPLER_COUNT) return nf_fail(NF_ERR_ARG, "sampler: unknown kind %d", (int)c->kind);
    if (c->pred < NF_PRED_EPS || c->pred > NF_PRED_X0) return nf_fail(NF_ERR_ARG, "sampler: unknown parameterisation %d", (int)c->pred);
    if (c->eta < 0 || c->eta > 1) return nf_fail(NF_ERR_ARG, "sampler: eta = %g outside [0, 1]", c->eta);
    if (c->strength < 0 || c->strength > 1) return nf_fail(NF_ERR_ARG, "sampler: strength = %g outside [0, 1]", c->strength);
    if (c->ddpm_var == NF_VAR_LEARNED && !c->learned_var)
        return nf_fail(NF_ERR_ARG, "sampler: learned variance asked for, but the model has no variance channels");
    if ((c->mask || c->strength < 1) && !c->init)
        return nf_fail(NF_ERR_ARG, "sampler: inpainting or variation needs the given sound (init)");
    if (c->repaint_jumps < 0 || (c->repaint_jumps > 0 && c->kind != NF_SAMPLER_DDPM && c->kind != NF_SAMPLER_DDIM))
        return nf_fail(NF_ERR_ARG, "sampler: RePaint jumps work with the DDPM and DDIM samplers only");
    if (c->kind == NF_SAMPLER_LANGEVIN && c->langevin_steps < 1)
        return nf_fail(NF_ERR_ARG, "sampler: Langevin needs at least one step per level");
    if (train->T != train->T_train) return nf_fail(NF_ERR_ARG, "sampler: needs the training schedule, not a respaced one");
    if (c->particles < 0) return nf_fail(NF_ERR_ARG, "sampler: particles = %d is negative", c->particles);
    if (c->particles > 1) {
        if (!c->mask) return nf_fail(NF_ERR_ARG, "sampler: particles (SMC inpainting) need a mask of the known region");
        if (c->kind != NF_SAMPLER_DDPM && !(c->kind == NF_SAMPLER_DDIM && c->eta > 0))
            return nf_fail(NF_ERR_ARG, "sampler: particles (SMC inpainting) need the DDPM sampler, or DDIM with eta > 0");
        if (c->repaint_jumps > 0) return nf_fail(NF_ERR_ARG, "sampler: particles (SMC inpainting) do not combine with RePaint jumps");
        if (c->strength < 1) return nf_fail(NF_ERR_ARG, "sampler: particles (SMC inpainting) need strength 1 (no variation)");
        if (c->start_noise) return nf_fail(NF_ERR_ARG, "sampler: particles (SMC inpainting) draw their own start noise");
        if ((long long)B * c->particles > INT_MAX / 2)
            return nf_fail(NF_ERR_ARG, "sampler: %d examples x %d particles is too many", B, c->particles);
    }

    nf_sampler *s = calloc(1, sizeof *s);
    if (!s) return nf_fail(NF_ERR_NOMEM, "sampler: out of memory");
    s->c = *c;
    s->B = B;
    s->C = C;
    s->L = L;
    s->K = c->particles > 1 ? c->particles : 1;
    s->R = B * s->K;
    s->n = (size_t)C * L;
    s->oc = c->learned_var ? 2 * C : C;
    s->ve = c->kind == NF_SAMPLER_EULER_A || c->kind == NF_SAMPLER_LANGEVIN;
    int logsnr = c->spacing == NF_SPACING_LOGSNR ||
                 (c->spacing == NF_SPACING_DEFAULT && (c->kind == NF_SAMPLER_DPMPP || c->kind == NF_SAMPLER_LANGEVIN));
    int steps = default_steps(c, train->T);
    nf_status st = logsnr ? nf_schedule_respace_logsnr(&s->rs, train, steps)
                          : nf_schedule_respace_even(&s->rs, train, steps);
    if (st) {
        free(s);
        return st;
    }
    int R = s->R;
    size_t bn = (size_t)R * s->n;
    s->x = malloc(sizeof(float) * bn);
    s->xin = malloc(sizeof(float) * 2 * bn);
    s->tin = malloc(sizeof(float) * 2 * (size_t)R);
    s->yin = malloc(sizeof(int) * 2 * (size_t)R);
    s->y = malloc(sizeof(int) * (size_t)R);
    s->mout = malloc(sizeof(float) * 2 * (size_t)R * s->oc * L);
    s->eps = malloc(sizeof(float) * bn);
    s->x0 = malloc(sizeof(float) * bn);
    s->v = malloc(sizeof(float) * bn);
    s->grad = malloc(sizeof(float) * bn);
    s->noise = malloc(sizeof(float) * bn);
    s->x0_old = malloc(sizeof(float) * bn);
    int smc_ok = 1;
    if (s->K > 1) {
        s->known = malloc(sizeof(float) * (size_t)B * s->n);
        s->logw = malloc(sizeof(double) * (size_t)R);
        s->anc = malloc(sizeof(int) * (size_t)R);
        smc_ok = s->known && s->logw && s->anc;
    }
    if (!s->x || !s->xin || !s->tin || !s->yin || !s->y || !s->mout || !s->eps || !s->x0 || !s->v ||
        !s->grad || !s->noise || !s->x0_old || !smc_ok) {
        nf_sampler_free(s);
        return nf_fail(NF_ERR_NOMEM, "sampler: out of memory for [%d, %d, %d] x %d particles", B, C, L, s->K);
    }
    *out = s;
    return NF_OK;
}

void nf_start_noise(uint64_t seed, int B, size_t n, float *out)
{
    uint64_t stream = nf_stream_id("start-noise", 0, 0);
#pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) nf_randn(out + (size_t)b * n, n, seed + (uint64_t)b, stream, 0);
}

/* The next fresh N(0, I) draw for every example. */
static void draw_noise(nf_sampler *s, float *buf)
{
    uint64_t stream = nf_stream_id("sampler-noise", s->draw++, 0);
    int B = s->B;
    size_t n = s->n;
#pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) nf_randn(buf + (size_t)b * n, n, s->seed + (uint64_t)b, stream, 0);
}

/* Inpainting: replace the known region by q(x_i | init) (RePaint eq. 8), in the state's
 * coordinates; i < 0 means the end, where it is the given sound itself. */
static void replace_known(nf_sampler *s, int i)
{
    if (!s->c.mask) return;
    const float *m = s->c.mask, *x0 = s->c.init;
    int B = s->B, C = s->C, L = s->L;
    if (i < 0) {
        for (int b = 0; b < B; b++)
            for (int ch = 0; ch < C; ch++)
                for (int l = 0; l < L; l++) {
                    size_t k = ((size_t)b * C + ch) * L + l;
                    if (m[l] >= 0.5f) s->x[k] = x0[k];
                }
        return;
    }
    draw_noise(s, s->noise);
    double ab = s->rs.alpha_bar[i];
    /* VP: sqrt(abar) x0 + sqrt(1-abar) z;  VE: the same divided by sqrt(abar). */
    double ca = s->ve ? 1.0 : sqrt(ab), cb = s->ve ? sqrt((1.0 - ab) / ab) : sqrt(1.0 - ab);
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < C; ch++)
            for (int l = 0; l < L; l++) {
                size_t k = ((size_t)b * C + ch) * L + l;
                if (m[l] >= 0.5f) s->x[k] = (float)(ca * x0[k] + cb * s->noise[k]);
            }
}

/* ------------------------------------------------- SMC inpainting (SMCDiff) ---
 *
 * Trippe et al. 2022, Algorithm 1, on the respaced schedule. Write y for the known
 * coordinates (mask 1) and u for the unknown ones.
 *
 *  1. One noised trajectory y_{N-1}, ..., y_0 of the known region is drawn per example
 *     from the forward chain q(y_i | y_{i-1}) = N(sqrt(alpha_i) y_{i-1}, (1 - alpha_i) I)
 *     (alpha_i = abar_i / abar_{i-1}, the respaced step), started at y_{-1} = init. We
 *     draw it top-down, y_{N-1} ~ q(y_{N-1} | y_{-1}) and then y_{i-1} ~ q(y_{i-1} | y_i,
 *     y_{-1}) (the posterior of nf_q_posterior_coefs): the same joint law as running the
 *     chain forward, but with one level in memory at a time. It is one trajectory, not a
 *     fresh q(y_i | init) per step as replacement draws: that independence is what keeps
 *     replacement from the true conditional.
 *  2. K particles x^j start from N(0, I) with their known part set to y_{N-1}.
 *  3. At step i (x_i -> x_{i-1}) every particle gets the reverse step's Gaussian
 *     N(mu_j, var I) (DDPM posterior form, or DDIM eq. 12 with sigma > 0). The step's
 *     covariance is diagonal, so it factorises into a known and an unknown part: the
 *     particle's weight is multiplied by the density of the trajectory's next value,
 *     N(y_{i-1}; mu_j[known], var), which does not depend on the unknown part drawn
 *     next ("fully adapted": weight and resample first, then propose).
 *  4. When the effective sample size (sum w)^2 / sum w^2 of an example falls below K/2,
 *     its particles are resampled systematically (one uniform per example and step)
 *     and the weights reset; otherwise each particle continues from itself.
 *  5. Each particle draws its unknown part from N(mu_a[unknown], var) (a: the particle it
 *     continues from) and sets its known part to y_{i-1}.
 *  6. After the last step one particle per example is picked by its final weight (one
 *     uniform per example) and the known region is set to init exactly.
 *
 * The weighted particles target p_model(u_i | y_{i..N-1}) at each level. If the model's
 * reverse chain were the exact time reversal of the forward chain, that would be
 * q(u_i | y_{i..N-1}), and at the end q(u_0 | y_{0..N-1}) = p(u_0 | init), because under
 * q the known region's trajectory depends on the data only through init: so as K grows
 * the result tends to the true conditional, up to the sampler's discretisation (which
 * shrinks with the number of steps; with few steps, e.g. 50, it is large). This holds for
 * DDPM and for DDIM at eta = 1 (the same chain). DDIM with eta < 1 keeps the marginals
 * but its chain is not the time reversal of the forward one, so its particles are
 * weighted against the wrong path law and it stays biased as K and the steps grow
 * (tests/diffusion/test_editing.c measures by how much). Weights are kept as logs per
 * particle, relative within the example (the maximum is subtracted before
 * exponentiating), so thousands of known audio samples do not underflow them.
 *
 * The last step (i = 0) adds no noise (Ho et al. Algorithm 2), and with beta_tilde (or
 * DDIM) its variance is 0, which would make the weight a point mass. There the weight
 * uses sigma^2 = beta_0 (Ho et al.'s other choice, close to the true reverse variance
 * when the data's variance is well above beta_0); the unknown part still takes the mean.
 *
 * Streams (seed + b for example b; j = particle):
 *   start noise of particle j       nf_stream_id("smc-start", j, 0)
 *   the trajectory's level l        nf_stream_id("smc-known", l, 0)
 *   proposal noise at step i        nf_stream_id("smc-proposal", i, j)
 *   resampling at step i            nf_stream_id("smc-resample", i, 0), number 0
 *   the final pick                  nf_stream_id("smc-pick", 0, 0), number 0 */

static int is_known(const nf_sampler *s, size_t k) { return s->c.mask[k % (size_t)s->L] >= 0.5f; }

/* Start: the trajectory's top level y_{i0} ~ q(y_{i0} | init), and the particles. */
static void smc_start(nf_sampler *s, int i0)
{
    int B = s->B, K = s->K, R = s->R;
    size_t n = s->n;
    double ab = s->rs.alpha_bar[i0], ca = sqrt(ab), cb = sqrt(1.0 - ab);
    uint64_t ks = nf_stream_id("smc-known", (uint64_t)i0, 0);
#pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) {
        float *y = s->known + (size_t)b * n;
        const float *x0 = s->c.init + (size_t)b * n;
        nf_randn(y, n, s->seed + (uint64_t)b, ks, 0);
        for (size_t k = 0; k < n; k++) y[k] = (float)(ca * x0[k] + cb * y[k]);
    }
#pragma omp parallel for schedule(static) if (R > 1)
    for (int r = 0; r < R; r++) {
        int b = r / K, j = r % K;
        float *x = s->x + (size_t)r * n;
        const float *y = s->known + (size_t)b * n;
        nf_randn(x, n, s->seed + (uint64_t)b, nf_stream_id("smc-start", (uint64_t)j, 0), 0);
        for (size_t k = 0; k < n; k++)
            if (is_known(s, k)) x[k] = y[k];
        s->logw[r] = 0.0;
    }
}

nf_status nf_sampler_init(nf_sampler *s, nf_denoiser_fn fn, void *ctx, const int *y, uint64_t seed)
{
    if (!fn) return nf_fail(NF_ERR_ARG, "sampler: no denoiser");
    s->fn = fn;
    s->ctx = ctx;
    s->seed = seed;
    s->draw = 0;
    s->have_old = 0;
    s->sub = 0;
    s->has_y = y != NULL;
    for (int r = 0; r < s->R; r++) s->y[r] = y ? y[r / s->K] : -1;
    s->use_cfg = s->has_y && s->c.cfg_scale != 1.0f;
    if (s->c.classifier && !s->has_y) return nf_fail(NF_ERR_ARG, "sampler: classifier guidance needs class labels");
    int N = s->rs.T;
    size_t bn = (size_t)s->B * s->n;
    int i0 = N - 1;
    if (s->c.strength < 1.0f) {
        /* SDEdit: run the last round(strength N) steps, from init noised to that level. */
        int k = (int)floor((double)s->c.strength * N + 0.5);
        i0 = k - 1;
    }
    s->denoise_pending = s->c.kind == NF_SAMPLER_LANGEVIN && s->c.langevin_denoise && i0 >= 0;
    if (s->K > 1) { /* strength 1 (checked at create): i0 = N - 1 */
        smc_start(s, i0);
        s->i = i0;
        s->initialised = 1;
        return NF_OK;
    }
    if (i0 < 0) {
        memcpy(s->x, s->c.init, sizeof(float) * bn); /* strength 0: the input itself */
        s->i = -1;
        s->initialised = 1;
        return NF_OK;
    }
    if (s->c.start_noise) memcpy(s->x, s->c.start_noise, sizeof(float) * bn);
    else nf_start_noise(seed, s->B, s->n, s->x);
    if (s->c.strength < 1.0f) {
        int *t = s->yin; /* scratch until the first model call */
        for (int b = 0; b < s->B; b++) t[b] = i0;
        nf_q_sample(&s->rs, t, s->c.init, s->x, s->B, s->n, s->x);
    }
    if (s->ve) {
        float sc = (float)(1.0 / sqrt(s->rs.alpha_bar[i0]));
        for (size_t k = 0; k < bn; k++) s->x[k] *= sc;
    }
    s->i = i0;
    replace_known(s, i0);
    s->initialised = 1;
    return NF_OK;
}

int nf_sampler_steps_left(const nf_sampler *s)
{
    if (!s->initialised || s->i < 0) return s->denoise_pending;
    if (s->c.kind == NF_SAMPLER_LANGEVIN)
        return s->i * s->c.langevin_steps + (s->c.langevin_steps - s->sub) + s->denoise_pending;
    return s->i + 1;
}

/* One guided model evaluation at step i of rs on the VP input xvp [B, n]: fills s->eps,
 * s->x0 (and s->v, s->grad when used). */
static nf_status model_eval(nf_sampler *s, const float *xvp, int i, int mean_shift_guidance)
{
    int B = s->R, B2 = s->use_cfg ? 2 * B : B;
    size_t n = s->n, on = (size_t)s->oc * s->L;
    double ab = s->rs.alpha_bar[i], sa = sqrt(ab), sb = sqrt(1.0 - ab);
    float t = (float)s->rs.timesteps[i];
    memcpy(s->xin, xvp, sizeof(float) * B * n);
    if (s->use_cfg) memcpy(s->xin + B * n, xvp, sizeof(float) * B * n);
    for (int b = 0; b < B2; b++) {
        s->tin[b] = t;
        s->yin[b] = b < B ? s->y[b] : -1; /* second half: the "no class" branch */
    }
    /* Both CFG branches in one batched call (Ho & Salimans 2021). */
    nf_status st = s->fn(s->ctx, s->xin, s->tin, s->has_y ? s->yin : NULL, B2, s->C, s->L, s->mout);
    if (st) return st;
    if (s->c.classifier) {
        st = s->c.classifier(s->c.classifier_ctx, xvp, s->tin, s->y, B, s->C, s->L, s->grad);
        if (st) return st;
    }
    double g = s->c.cfg_scale, cs = s->c.classifier_scale;
    int use_cfg = s->use_cfg;
#pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) {
        const float *xb = xvp + b * n;
        float *e = s->eps + b * n, *x0 = s->x0 + b * n;
        nf_pred_to_x0_eps(s->c.pred, ab, xb, s->mout + b * on, n, x0, e);
        if (s->c.learned_var) memcpy(s->v + b * n, s->mout + b * on + n, sizeof(float) * n);
        if (use_cfg) {
            /* eps~ = eps_u + s (eps_c - eps_u); x0 combines the same way, as both are
             * affine in the prediction with the same coefficients. */
            const float *pu = s->mout + (B + b) * on;
            for (size_t k = 0; k < n; k++) {
                float x0u, eu;
                nf_pred_to_x0_eps(s->c.pred, ab, xb + k, pu + k, 1, &x0u, &eu);
                e[k] = (float)(eu + g * (e[k] - eu));
                x0[k] = (float)(x0u + g * (x0[k] - x0u));
            }
        }
        if (s->c.classifier && !mean_shift_guidance) {
            /* Dhariwal & Nichol Algorithm 2 (eps form, used for DDIM and the ODE/VE
             * samplers): eps^ = eps - s sqrt(1 - abar) grad, x0 recomputed from it. */
            const float *gr = s->grad + b * n;
            for (size_t k = 0; k < n; k++) {
                e[k] = (float)(e[k] - cs * sb * gr[k]);
                x0[k] = (float)((xb[k] - sb * e[k]) / sa);
            }
        }
        if (s->c.clip_x0) {
            float cv = s->c.clip_value;
            for (size_t k = 0; k < n; k++) {
                float c = x0[k] < -cv ? -cv : x0[k] > cv ? cv : x0[k];
                if (c != x0[k]) {
                    x0[k] = c;
                    e[k] = (float)((xb[k] - sa * c) / sb);
                }
            }
        }
    }
    return NF_OK;
}

static nf_status ddpm_step(nf_sampler *s, int i)
{
    nf_status st = model_eval(s, s->x, i, 1);
    if (st) return st;
    int B = s->B;
    size_t n = s->n;
    double cx0, cxt, var;
    nf_q_posterior_coefs(&s->rs, i, &cx0, &cxt, &var);
    if (s->c.ddpm_var == NF_VAR_BETA) var = s->rs.beta[i];
    double logb = log(s->rs.beta[i]);
    if (i > 0) draw_noise(s, s->noise);
    double cs = s->c.classifier_scale;
    int learned = s->c.ddpm_var == NF_VAR_LEARNED, cls = s->c.classifier != NULL;
#pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) {
        for (size_t k = b * n; k < (b + 1) * n; k++) {
            double vk = learned ? exp(nf_learned_log_variance(&s->rs, i, s->v[k], logb)) : var;
            /* Posterior mean at the predicted x0 (Ho et al. eq. 7, 11). */
            double mean = cx0 * s->x0[k] + cxt * s->x[k];
            if (cls) mean += cs * vk * s->grad[k]; /* Dhariwal & Nichol Alg. 1: mu + s Sigma grad */
            /* No noise on the last step (Algorithm 2 line 3). */
            s->x[k] = (float)(i > 0 ? mean + sqrt(vk) * s->noise[k] : mean);
        }
    }
    return NF_OK;
}

static nf_status ddim_step(nf_sampler *s, int i)
{
    nf_status st = model_eval(s, s->x, i, 0);
    if (st) return st;
    double ab = s->rs.alpha_bar[i], abp = s->rs.alpha_bar_prev[i];
    /* Song et al. eq. 16: sigma = eta sqrt((1-abar_prev)/(1-abar)) sqrt(1 - abar/abar_prev). */
    double sig = s->c.eta * sqrt((1.0 - abp) / (1.0 - ab)) * sqrt(1.0 - ab / abp);
    double dir = 1.0 - abp - sig * sig;
    dir = dir > 0 ? sqrt(dir) : 0.0;
    double sap = sqrt(abp);
    if (sig > 0) draw_noise(s, s->noise);
    size_t bn = (size_t)s->B * s->n;
    for (size_t k = 0; k < bn; k++) /* eq. 12 */
        s->x[k] = (float)(sap * s->x0[k] + dir * s->eps[k] + (sig > 0 ? sig * s->noise[k] : 0.0));
    return NF_OK;
}

static nf_status dpmpp_step(nf_sampler *s, int i)
{
    nf_status st = model_eval(s, s->x, i, 0);
    if (st) return st;
    size_t bn = (size_t)s->B * s->n;
    double ab = s->rs.alpha_bar[i], abp = s->rs.alpha_bar_prev[i];
    if (i == 0 || abp >= 1.0) {
        /* Last step to sigma = 0 (lambda = inf): the first-order update is x0 itself. */
        memcpy(s->x, s->x0, sizeof(float) * bn);
        return NF_OK;
    }
    double a_s = sqrt(ab), s_s = sqrt(1.0 - ab), a_t = sqrt(abp), s_t = sqrt(1.0 - abp);
    double h = log(a_t / s_t) - log(a_s / s_s); /* lambda = log(alpha / sigma) */
    double c_x = s_t / s_s, c_d = -a_t * expm1(-h);
    if (s->have_old) {
        /* Lu et al. 2022 Algorithm 2: D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_prev/h. */
        double r = s->h_prev / h, c1 = 1.0 + 0.5 / r, c0 = -0.5 / r;
        for (size_t k = 0; k < bn; k++) {
            double D = c1 * s->x0[k] + c0 * s->x0_old[k];
            s->x[k] = (float)(c_x * s->x[k] + c_d * D);
        }
    } else {
        for (size_t k = 0; k < bn; k++) s->x[k] = (float)(c_x * s->x[k] + c_d * s->x0[k]);
    }
    memcpy(s->x0_old, s->x0, sizeof(float) * bn);
    s->h_prev = h;
    s->have_old = 1;
    return NF_OK;
}

/* The VP input sqrt(abar_i) x_VE into s->xin's second half area (free until model_eval
 * copies it), returned. */
static const float *vp_input(nf_sampler *s, int i)
{
    size_t bn = (size_t)s->B * s->n;
    float *xvp = s->noise; /* free until the update draws noise */
    float sa = (float)sqrt(s->rs.alpha_bar[i]);
    for (size_t k = 0; k < bn; k++) xvp[k] = sa * s->x[k];
    return xvp;
}

static nf_status euler_a_step(nf_sampler *s, int i)
{
    const float *xvp = vp_input(s, i);
    nf_status st = model_eval(s, xvp, i, 0);
    if (st) return st;
    size_t bn = (size_t)s->B * s->n;
    double ab = s->rs.alpha_bar[i], abp = s->rs.alpha_bar_prev[i];
    double sig = sqrt((1.0 - ab) / ab), sn = i > 0 ? sqrt((1.0 - abp) / abp) : 0.0;
    /* k-diffusion get_ancestral_step with eta = 1. */
    double up = sqrt(sn * sn * (sig * sig - sn * sn) / (sig * sig));
    if (up > sn) up = sn;
    double down = sqrt(sn * sn - up * up);
    if (up > 0) draw_noise(s, s->noise);
    for (size_t k = 0; k < bn; k++) {
        double d = (s->x[k] - s->x0[k]) / sig; /* dx/dsigma of the probability-flow ODE */
        s->x[k] = (float)(s->x[k] + d * (down - sig) + (up > 0 ? up * s->noise[k] : 0.0));
    }
    return NF_OK;
}

static nf_status langevin_step(nf_sampler *s)
{
    size_t bn = (size_t)s->B * s->n;
    if (s->i < 0) {
        /* Final denoising: E[x0 | x] at the smallest level (Tweedie's formula). */
        nf_status st = model_eval(s, vp_input(s, 0), 0, 0);
        if (st) return st;
        memcpy(s->x, s->x0, sizeof(float) * bn);
        s->denoise_pending = 0;
        replace_known(s, -1);
        return NF_OK;
    }
    int i = s->i;
    nf_status st = model_eval(s, vp_input(s, i), i, 0);
    if (st) return st;
    double ab = s->rs.alpha_bar[i], ab0 = s->rs.alpha_bar[0];
    double sig2 = (1.0 - ab) / ab, sigL2 = (1.0 - ab0) / ab0, sig = sqrt(sig2);
    double eps_n = s->c.langevin_eps > 0 ? s->c.langevin_eps : 0.5 * sigL2;
    double a = eps_n * sig2 / sigL2; /* NCSN Algorithm 1: alpha_i = eps sigma_i^2 / sigma_L^2 */
    double sq = sqrt(a);
    draw_noise(s, s->noise);
    for (size_t k = 0; k < bn; k++) {
        /* VE score of x: -eps / sigma (the VP score -eps/sqrt(1-abar) times sqrt(abar)). */
        double score = -s->eps[k] / sig;
        s->x[k] = (float)(s->x[k] + 0.5 * a * score + sq * s->noise[k]);
    }
    replace_known(s, i);
    if (++s->sub == s->c.langevin_steps) {
        s->sub = 0;
        s->i--;
        if (s->i < 0 && !s->denoise_pending) replace_known(s, -1);
    }
    return NF_OK;
}

/* One SMC step x_i -> x_{i-1} for all particles (see the SMC section above). */
static nf_status smc_step(nf_sampler *s, int i)
{
    int kind = s->c.kind;
    nf_status st = model_eval(s, s->x, i, kind == NF_SAMPLER_DDPM);
    if (st) return st;
    int B = s->B, K = s->K, R = s->R;
    size_t n = s->n;

    /* The trajectory's next level y_{i-1} ~ q(y_{i-1} | y_i, init); y_{-1} = init. */
    if (i > 0) {
        double cx0, cxt, var;
        nf_q_posterior_coefs(&s->rs, i, &cx0, &cxt, &var);
        double sd = sqrt(var);
        uint64_t ks = nf_stream_id("smc-known", (uint64_t)(i - 1), 0);
#pragma omp parallel for schedule(static) if (B > 1)
        for (int b = 0; b < B; b++) {
            float *y = s->known + (size_t)b * n, *z = s->noise + (size_t)b * n;
            const float *x0 = s->c.init + (size_t)b * n;
            nf_randn(z, n, s->seed + (uint64_t)b, ks, 0);
            for (size_t k = 0; k < n; k++) y[k] = (float)(cx0 * x0[k] + cxt * y[k] + sd * z[k]);
        }
    } else {
        memcpy(s->known, s->c.init, sizeof(float) * (size_t)B * n);
    }

    /* The reverse step's mean (into x0, in place) and variance: var for all values, or
     * per value into v (in place) with a learned variance. */
    double var = 0.0;
    int learned = kind == NF_SAMPLER_DDPM && s->c.ddpm_var == NF_VAR_LEARNED;
    double cs = s->c.classifier_scale, logb = log(s->rs.beta[i]);
    int cls = s->c.classifier != NULL && kind == NF_SAMPLER_DDPM;
    double cx0 = 0, cxt = 0, sap = 0, dir = 0;
    if (kind == NF_SAMPLER_DDPM) {
        nf_q_posterior_coefs(&s->rs, i, &cx0, &cxt, &var);
        if (s->c.ddpm_var == NF_VAR_BETA) var = s->rs.beta[i];
    } else { /* DDIM, as ddim_step */
        double ab = s->rs.alpha_bar[i], abp = s->rs.alpha_bar_prev[i];
        double sig = s->c.eta * sqrt((1.0 - abp) / (1.0 - ab)) * sqrt(1.0 - ab / abp);
        dir = 1.0 - abp - sig * sig;
        dir = dir > 0 ? sqrt(dir) : 0.0;
        sap = sqrt(abp);
        var = sig * sig;
    }
    /* The weight's variance (see above for i = 0). */
    double wvar = var > 0 ? var : s->rs.beta[0];
#pragma omp parallel for schedule(static) if (R > 1)
    for (int r = 0; r < R; r++) {
        const float *y = s->known + (size_t)(r / K) * n;
        double ll = 0.0;
        for (size_t k = (size_t)r * n; k < (size_t)(r + 1) * n; k++) {
            double vk = learned ? exp(nf_learned_log_variance(&s->rs, i, s->v[k], logb)) : var;
            double mean = kind == NF_SAMPLER_DDPM ? cx0 * s->x0[k] + cxt * s->x[k] : sap * s->x0[k] + dir * s->eps[k];
            if (cls) mean += cs * vk * s->grad[k];
            s->x0[k] = (float)mean;
            if (learned) s->v[k] = (float)vk;
            if (is_known(s, k)) {
                double wv = vk > 0 ? vk : wvar, d = y[k - (size_t)r * n] - mean;
                ll -= 0.5 * (d * d / wv + log(wv));
            }
        }
        s->logw[r] += ll;
    }

    /* Per example: the effective sample size, and systematic resampling below K/2. At
     * the last step the final pick below plays that part. */
    for (int b = 0; b < B; b++) {
        double *lw = s->logw + (size_t)b * K, mx = -INFINITY;
        int *anc = s->anc + (size_t)b * K;
        int nan = 0;
        for (int j = 0; j < K; j++) {
            anc[j] = b * K + j;
            nan |= isnan(lw[j]);
            if (lw[j] > mx) mx = lw[j];
        }
        if (nan || !isfinite(mx))
            return nf_fail(NF_ERR_NUMERIC, "sampler: SMC particle weights became non-finite at step %d", i);
        double sw = 0, sw2 = 0;
        for (int j = 0; j < K; j++) {
            lw[j] -= mx; /* the best particle at log weight 0 */
            double w = exp(lw[j]);
            sw += w;
            sw2 += w * w;
        }
        if (i == 0 || sw * sw >= 0.5 * K * sw2) continue;
        double u = nf_rand_uniform1(s->seed + (uint64_t)b, nf_stream_id("smc-resample", (uint64_t)i, 0), 0);
        double cum = exp(lw[0]) / sw;
        int a = 0;
        for (int j = 0; j < K; j++) {
            double target = (j + u) / K;
            while (cum < target && a < K - 1) cum += exp(lw[++a]) / sw;
            anc[j] = b * K + a;
        }
        for (int j = 0; j < K; j++) lw[j] = 0.0;
    }

    /* Propose: the unknown part from the step's Gaussian at the ancestor, the known part
     * from the trajectory. No noise on the last step. */
#pragma omp parallel for schedule(static) if (R > 1)
    for (int r = 0; r < R; r++) {
        int b = r / K, j = r % K;
        float *x = s->x + (size_t)r * n, *z = s->noise + (size_t)r * n;
        const float *mean = s->x0 + (size_t)s->anc[r] * n, *vv = s->v + (size_t)s->anc[r] * n;
        const float *y = s->known + (size_t)b * n;
        if (i > 0) nf_randn(z, n, s->seed + (uint64_t)b, nf_stream_id("smc-proposal", (uint64_t)i, (uint64_t)j), 0);
        for (size_t k = 0; k < n; k++) {
            if (is_known(s, k)) x[k] = y[k];
            else x[k] = i > 0 ? (float)(mean[k] + sqrt(learned ? (double)vv[k] : var) * z[k]) : mean[k];
        }
    }
    if (i > 0) return NF_OK;

    /* The end: one particle per example by its final weight, into row b (rows b K + j >= b
     * of later examples are not yet overwritten), and init's known region exactly. */
    for (int b = 0; b < B; b++) {
        const double *lw = s->logw + (size_t)b * K;
        double sw = 0;
        for (int j = 0; j < K; j++) sw += exp(lw[j]);
        double u = nf_rand_uniform1(s->seed + (uint64_t)b, nf_stream_id("smc-pick", 0, 0), 0) * sw, cum = 0;
        int pick = K - 1;
        for (int j = 0; j < K; j++) {
            cum += exp(lw[j]);
            if (u < cum) {
                pick = j;
                break;
            }
        }
        memmove(s->x + (size_t)b * n, s->x + ((size_t)b * K + pick) * n, sizeof(float) * n);
    }
    replace_known(s, -1);
    return NF_OK;
}

nf_status nf_sampler_step(nf_sampler *s)
{
    if (!s->initialised) return nf_fail(NF_ERR_ARG, "sampler: step before init");
    if (nf_sampler_steps_left(s) == 0) return NF_OK;
    if (s->c.kind == NF_SAMPLER_LANGEVIN) return langevin_step(s);
    int i = s->i;
    nf_status st = NF_OK;
    if (s->K > 1) {
        if ((st = smc_step(s, i))) return st;
        s->i = i - 1;
        return NF_OK;
    }
    for (int j = 0; j <= (i > 0 ? s->c.repaint_jumps : 0); j++) {
        if (j > 0) {
            /* RePaint resampling: back to step i by one forward step q(x_i | x_{i-1})
             * (respaced alpha_i = abar_i / abar_{i-1}), then denoise again. */
            draw_noise(s, s->noise);
            double a = s->rs.alpha[i], ca = sqrt(a), cb = sqrt(1.0 - a);
            size_t bn = (size_t)s->B * s->n;
            for (size_t k = 0; k < bn; k++) s->x[k] = (float)(ca * s->x[k] + cb * s->noise[k]);
        }
        switch (s->c.kind) {
        case NF_SAMPLER_DDPM: st = ddpm_step(s, i); break;
        case NF_SAMPLER_DDIM: st = ddim_step(s, i); break;
        case NF_SAMPLER_DPMPP: st = dpmpp_step(s, i); break;
        case NF_SAMPLER_EULER_A: st = euler_a_step(s, i); break;
        default: return nf_fail(NF_ERR_INTERNAL, "sampler: kind %d", (int)s->c.kind);
        }
        if (st) return st;
        replace_known(s, i - 1);
    }
    s->i = i - 1;
    return NF_OK;
}

nf_status nf_sampler_finish(nf_sampler *s, float *out)
{
    if (!s->initialised || nf_sampler_steps_left(s) > 0)
        return nf_fail(NF_ERR_ARG, "sampler: finish with %d steps left", s->initialised ? nf_sampler_steps_left(s) : -1);
    size_t bn = (size_t)s->B * s->n;
    for (size_t k = 0; k < bn; k++)
        if (!isfinite(s->x[k])) return nf_fail(NF_ERR_NUMERIC, "sampler: the result is not finite (value %zu)", k);
    memcpy(out, s->x, sizeof(float) * bn);
    return NF_OK;
}

nf_status nf_sample(const nf_schedule *train, const nf_sampler_config *c, nf_denoiser_fn fn,
                    void *ctx, const int *y, uint64_t seed, int B, int C, int L, float *out)
{
    nf_sampler *s;
    nf_status st = nf_sampler_create(train, c, B, C, L, &s);
    if (st) return st;
    st = nf_sampler_init(s, fn, ctx, y, seed);
    while (!st && nf_sampler_steps_left(s) > 0) st = nf_sampler_step(s);
    if (!st) st = nf_sampler_finish(s, out);
    nf_sampler_free(s);
    return st;
}

void nf_slerp(const float *a, const float *b, size_t n, double alpha, float *out)
{
    if (alpha == 0.0) {
        memmove(out, a, sizeof(float) * n);
        return;
    }
    if (alpha == 1.0) {
        memmove(out, b, sizeof(float) * n);
        return;
    }
    double ab = 0, aa = 0, bb = 0;
    for (size_t k = 0; k < n; k++) {
        ab += (double)a[k] * b[k];
        aa += (double)a[k] * a[k];
        bb += (double)b[k] * b[k];
    }
    double cosv = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 1.0;
    if (cosv > 1) cosv = 1;
    if (cosv < -1) cosv = -1;
    double th = acos(cosv), st = sin(th);
    double ca, cb;
    if (st < 1e-6) { /* (nearly) parallel: lerp is the limit */
        ca = 1.0 - alpha;
        cb = alpha;
    } else { /* Shoemake 1985 */
        ca = sin((1.0 - alpha) * th) / st;
        cb = sin(alpha * th) / st;
    }
    for (size_t k = 0; k < n; k++) out[k] = (float)(ca * a[k] + cb * b[k]);
}

nf_status nf_ddim_invert(const nf_schedule *train, const nf_sampler_config *c, nf_denoiser_fn fn,
                         void *ctx, const int *y, const float *x0, int B, int C, int L, float *xT)
{
    nf_sampler_config cc = *c;
    cc.kind = NF_SAMPLER_DDIM;
    cc.eta = 0;
    cc.classifier = NULL;
    cc.mask = NULL;
    cc.init = NULL;
    cc.strength = 1.0f;
    cc.start_noise = NULL;
    cc.repaint_jumps = 0;
    nf_sampler *s;
    nf_status st = nf_sampler_create(train, &cc, B, C, L, &s);
    if (st) return st;
    st = nf_sampler_init(s, fn, ctx, y, 0);
    size_t bn = (size_t)B * s->n;
    if (!st) memcpy(s->x, x0, sizeof(float) * bn);
    /* DDIM eq. 12 with eta = 0 run from step i-1 to i: the model is evaluated where the
     * state is (step 0 for the clean input, an approximation as in Song et al. sec. 4.3). */
    for (int i = 0; !st && i < s->rs.T; i++) {
        int ie = i > 0 ? i - 1 : 0;
        st = model_eval(s, s->x, ie, 0);
        if (st) break;
        double ab = s->rs.alpha_bar[i], sa = sqrt(ab), sb = sqrt(1.0 - ab);
        for (size_t k = 0; k < bn; k++) s->x[k] = (float)(sa * s->x0[k] + sb * s->eps[k]);
    }
    if (!st) memcpy(xT, s->x, sizeof(float) * bn);
    nf_sampler_free(s);
    return st;
}
