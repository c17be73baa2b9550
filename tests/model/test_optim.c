/* AdamW, clipping, learning-rate schedule and EMA against hand-computed values and an
 * independent double-precision re-implementation of the published update rules. */
#include "nf_nn.h"
#include "nf_optim.h"
#include "nf_rng.h"
#include "nf_test.h"
#include "nf_unet.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* AdamW on one scalar, written straight from Loshchilov & Hutter Algorithm 2 with
 * torch's ordering (decay first), in double. */
static void adamw_ref(double *p, double *m, double *v, double g, double lr, double b1, double b2,
                      double eps, double wd, int t)
{
    *p *= 1.0 - lr * wd;
    *m = b1 * *m + (1 - b1) * g;
    *v = b2 * *v + (1 - b2) * g * g;
    double mhat = *m / (1 - pow(b1, t));
    double vhat = *v / (1 - pow(b2, t));
    *p -= lr * mhat / (sqrt(vhat) + eps);
}

static void test_adamw_first_step(void)
{
    /* First step without decay: m_hat = g, v_hat = g^2, so theta moves by lr * g/(|g|+eps)
     * = lr * sign(g) (up to eps): Adam's well-known first step. */
    nf_adamw_config c = {0.9f, 0.999f, 1e-8f, 0.0f};
    nf_adamw opt;
    CHECK_OK(nf_adamw_init(&opt, 4, &c));
    float p[4] = {1.0f, -2.0f, 0.5f, 0.0f};
    float g[4] = {3.0f, -0.001f, 0.0f, 1e-3f};
    CHECK_OK(nf_adamw_step(&opt, p, g, 0.1f));
    CHECK_CLOSE(p[0], 0.9, 1e-6, 0, "step 1, g > 0");
    CHECK_CLOSE(p[1], -1.9, 1e-5, 0, "step 1, g < 0 small");
    CHECK_CLOSE(p[2], 0.5, 0, 0, "step 1, g = 0 does not move");
    CHECK_CLOSE(p[3], -0.1, 1e-5, 0, "step 1, tiny g");
    CHECK(opt.step == 1, "step count %lld", (long long)opt.step);
    nf_adamw_free(&opt);

    /* Pure decoupled decay: g = 0 everywhere, so theta *= (1 - lr*wd) and nothing else. */
    nf_adamw_config d = {0.9f, 0.999f, 1e-8f, 0.5f};
    CHECK_OK(nf_adamw_init(&opt, 2, &d));
    float q[2] = {2.0f, -4.0f}, z[2] = {0, 0};
    for (int k = 0; k < 3; k++) CHECK_OK(nf_adamw_step(&opt, q, z, 0.1f));
    CHECK_CLOSE(q[0], 2.0 * pow(0.95, 3), 1e-6, 1e-6, "decay only");
    CHECK_CLOSE(q[1], -4.0 * pow(0.95, 3), 1e-6, 1e-6, "decay only");
    /* The mask turns decay off per parameter. */
    uint8_t mask[2] = {1, 0};
    opt.decay_mask = mask;
    CHECK_OK(nf_adamw_step(&opt, q, z, 0.1f));
    CHECK_CLOSE(q[0], 2.0 * pow(0.95, 4), 1e-6, 1e-6, "masked decay on");
    CHECK_CLOSE(q[1], -4.0 * pow(0.95, 3), 1e-6, 1e-6, "masked decay off");
    nf_adamw_free(&opt);

    CHECK(nf_adamw_init(&opt, 3, &(nf_adamw_config){1.0f, 0.999f, 1e-8f, 0}) == NF_ERR_ARG,
          "beta1 = 1 must be refused");
    CHECK(strstr(nf_last_error(), "beta1") != NULL, "message names beta1: %s", nf_last_error());
}

static void test_adamw_many_steps(void)
{
    /* 120 steps on 40000 parameters with gradients that change sign and scale, against
     * the double reference; also the result must not depend on the thread count. */
    const size_t n = 40000;
    const int steps = 120;
    nf_adamw_config c = {0.85f, 0.995f, 1e-6f, 0.05f};
    float *p1 = malloc(n * sizeof(float)), *p2 = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    double *rp = malloc(n * sizeof(double)), *rm = calloc(n, sizeof(double)), *rv = calloc(n, sizeof(double));
    nf_randn(p1, n, 7, 1, 0);
    memcpy(p2, p1, n * sizeof(float));
    for (size_t i = 0; i < n; i++) rp[i] = p1[i];
    nf_adamw o1, o2;
    CHECK_OK(nf_adamw_init(&o1, n, &c));
    CHECK_OK(nf_adamw_init(&o2, n, &c));
    int maxth = omp_get_max_threads();
    for (int t = 1; t <= steps; t++) {
        nf_randn(g, n, 7, 2, (uint64_t)t * n);
        float scale = (float)(0.01 * (1 + t % 7));
        for (size_t i = 0; i < n; i++) g[i] *= scale;
        float lr = 1e-3f * (1.0f + 0.5f * sinf((float)t));
        omp_set_num_threads(maxth);
        CHECK_OK(nf_adamw_step(&o1, p1, g, lr));
        omp_set_num_threads(1);
        CHECK_OK(nf_adamw_step(&o2, p2, g, lr));
        for (size_t i = 0; i < n; i++)
            adamw_ref(&rp[i], &rm[i], &rv[i], g[i], lr, c.beta1, c.beta2, c.eps, c.weight_decay, t);
    }
    omp_set_num_threads(maxth);
    double maxerr = 0, maxmove = 0;
    int same = 1;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(p1[i] - rp[i]);
        if (e > maxerr) maxerr = e;
        if (p1[i] != p2[i]) same = 0;
    }
    nf_randn(g, n, 7, 1, 0); /* the start again */
    for (size_t i = 0; i < n; i++) {
        double mv = fabs(rp[i] - g[i]);
        if (mv > maxmove) maxmove = mv;
    }
    printf("adamw: %d steps, max |float - double| = %.3g (largest move %.3g)\n", steps, maxerr, maxmove);
    CHECK(maxmove > 0.05, "parameters moved too little to test anything: %g", maxmove);
    CHECK(maxerr < 2e-5, "adamw differs from the double reference by %g", maxerr);
    CHECK(same, "adamw result depends on the thread count");
    CHECK(o1.step == steps, "step %lld", (long long)o1.step);
    nf_adamw_reset(&o1);
    CHECK(o1.step == 0 && o1.m[123] == 0.0f && o1.v[n - 1] == 0.0f, "reset clears the state");
    nf_adamw_free(&o1);
    nf_adamw_free(&o2);
    free(p1); free(p2); free(g); free(rp); free(rm); free(rv);
}

static void test_clip(void)
{
    /* 3-4-5 triangle spread over a long vector with zeros between (crossing blocks). */
    const size_t n = 100003;
    float *g = calloc(n, sizeof(float));
    g[5] = 3.0f;
    g[n - 1] = 4.0f;
    CHECK_CLOSE(nf_l2_norm(g, n), 5.0, 0, 1e-12, "norm 3-4-5");
    double nrm = nf_clip_grad_norm(g, n, 10.0);
    CHECK_CLOSE(nrm, 5.0, 0, 1e-12, "clip returns the norm");
    CHECK(g[5] == 3.0f && g[n - 1] == 4.0f, "no clipping below max_norm");
    nrm = nf_clip_grad_norm(g, n, 1.0);
    CHECK_CLOSE(nrm, 5.0, 0, 1e-12, "clip returns the norm before clipping");
    /* torch: coef = 1 / (5 + 1e-6). */
    CHECK_CLOSE(g[5], 3.0 / (5.0 + 1e-6), 0, 1e-6, "clipped 3");
    CHECK_CLOSE(g[n - 1], 4.0 / (5.0 + 1e-6), 0, 1e-6, "clipped 4");
    CHECK_CLOSE(nf_l2_norm(g, n), 1.0, 0, 1e-6, "norm after clip");
    /* Only measure. */
    nrm = nf_clip_grad_norm(g, n, 0.0);
    CHECK_CLOSE(nrm, 1.0, 0, 1e-6, "max_norm 0 measures");
    /* Non-finite: reported, nothing scaled. */
    g[77] = INFINITY;
    nrm = nf_clip_grad_norm(g, n, 1.0);
    CHECK(!isfinite(nrm), "inf norm reported: %g", nrm);
    CHECK_CLOSE(g[5], 3.0 / (5.0 + 1e-6), 0, 1e-6, "inf gradient leaves g alone");
    g[77] = 0.0f;
    /* A random vector: against a plain double sum, and thread-count independent. */
    nf_randn(g, n, 3, 3, 0);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    nf_set_threads(2);
    double a = nf_l2_norm(g, n);
    nf_set_threads(1);
    double b = nf_l2_norm(g, n);
    nf_set_threads(2);
    CHECK_CLOSE(a, sqrt(s), 0, 1e-12, "random norm");
    CHECK(a == b, "norm depends on the thread count: %.17g vs %.17g", a, b);
    CHECK(nf_l2_norm(g, 0) == 0.0, "empty norm");
    /* Past 1024 blocks of 4096 the blocks grow (8M-parameter networks take that path). */
    const size_t big = 5000011;
    float *h = malloc(big * sizeof(float));
    nf_randn(h, big, 3, 4, 0);
    double hs = 0;
    for (size_t i = 0; i < big; i++) hs += (double)h[i] * h[i];
    double ha = nf_l2_norm(h, big);
    nf_set_threads(1);
    double hb = nf_l2_norm(h, big);
    nf_set_threads(2);
    CHECK_CLOSE(ha, sqrt(hs), 0, 1e-12, "large norm");
    CHECK(ha == hb, "large norm depends on the thread count");
    /* In pieces (nf_norm_partials), from the top down in uneven ranges as the U-Net's
     * backward pass sums them: the same bits as one nf_l2_norm, on both thread counts. */
    const size_t sizes[3] = {big, n, 4096 * 3 + 5};
    for (int si = 0; si < 3; si++) {
        size_t bs, len = sizes[si];
        int nb = nf_norm_blocks(len, &bs);
        CHECK(nb >= 1 && nb <= NF_NORM_MAX_BLOCKS && (size_t)nb * bs >= len && (size_t)(nb - 1) * bs < len,
              "%d blocks of %zu for %zu", nb, bs, len);
        double *part = malloc(sizeof(double) * NF_NORM_MAX_BLOCKS);
        for (int th = 1; th <= 2; th++) {
            nf_set_threads(th);
            for (int b = 0; b < nb; b++) part[b] = NAN;
            for (int hi = nb, step = 1; hi > 0; step = step * 3 % 17 + 1) {
                int lo = hi - step > 0 ? hi - step : 0;
                nf_norm_partials(h, len, bs, lo, hi, part);
                hi = lo;
            }
            double whole = nf_l2_norm(h, len), pieces = nf_norm_total(part, nb);
            CHECK(pieces == whole, "norm in pieces %.17g vs whole %.17g (%zu floats, %d threads)", pieces,
                  whole, len, th);
        }
        free(part);
    }
    nf_set_threads(2);
    free(h);
    nf_scale(g, 3, 2.0f);
    free(g);
}

/* Clipping folded into AdamW (nf_adamw_step_scaled with nf_clip_factor) gives the bits of
 * clipping in place then stepping, on 1 and 2 threads, on both paths, with a decay mask. */
static void test_scaled_step(void)
{
    CHECK(nf_clip_factor(5.0, 10.0) == 1.0f, "no clipping below max_norm");
    CHECK(nf_clip_factor(5.0, 1.0) == (float)(1.0 / (5.0 + 1e-6)), "clip factor 1 / (5 + 1e-6)");
    CHECK(nf_clip_factor(5.0, 0.0) == 1.0f && nf_clip_factor(INFINITY, 1.0) == 1.0f &&
              nf_clip_factor(NAN, 1.0) == 1.0f, "clip factor 1 when off or non-finite");
    const size_t n = 300007; /* past the pool's threshold, a partial last chunk */
    float *g = malloc(n * sizeof(float)), *gc = malloc(n * sizeof(float)), *pa = malloc(n * sizeof(float)),
          *pb = malloc(n * sizeof(float));
    uint8_t *mask = malloc(n);
    for (size_t i = 0; i < n; i++) mask[i] = (uint8_t)(i % 5 != 0);
    nf_randn(pa, n, 12, 2, 0);
    memcpy(pb, pa, n * sizeof(float));
    nf_adamw_config c = {0.9f, 0.999f, 1e-8f, 0.05f};
    nf_adamw oa, ob;
    CHECK_OK(nf_adamw_init(&oa, n, &c));
    CHECK_OK(nf_adamw_init(&ob, n, &c));
    oa.decay_mask = ob.decay_mask = mask;
    int same = 1, clipped = 0;
    for (int step = 0; step < 8; step++) {
        nf_set_threads(step % 2 ? 1 : 2);
        nf_optim_force_portable(step >= 4);
        nf_randn(g, n, 12, 3, (uint64_t)step * n);
        /* Norms around 550: clipped at 100 on even steps, not at 1000 on odd ones. */
        double max_norm = step % 2 ? 1000.0 : 100.0;
        memcpy(gc, g, n * sizeof(float));
        double norm = nf_clip_grad_norm(gc, n, max_norm);
        CHECK_OK(nf_adamw_step(&oa, pa, gc, 1e-2f));
        float f = nf_clip_factor(nf_l2_norm(g, n), max_norm);
        clipped += f < 1.0f;
        CHECK(nf_l2_norm(g, n) == norm, "the norm before clipping");
        CHECK_OK(nf_adamw_step_scaled(&ob, pb, g, f, 1e-2f));
        same &= !memcmp(pa, pb, n * sizeof(float)) && !memcmp(oa.m, ob.m, n * sizeof(float)) &&
                !memcmp(oa.v, ob.v, n * sizeof(float));
    }
    nf_optim_force_portable(0);
    nf_set_threads(2);
    CHECK(clipped == 4, "%d of 8 steps clipped (4 expected)", clipped);
    CHECK(same, "scaled AdamW differs from clipping in place then stepping");
    CHECK(nf_adamw_step_scaled(&ob, pb, g, -1.0f, 1e-2f) == NF_ERR_ARG, "negative scale refused");
    CHECK(nf_adamw_step_scaled(&ob, pb, g, NAN, 1e-2f) == NF_ERR_ARG, "NaN scale refused");
    /* nf_par_zero and nf_scale over a slab the pool splits. */
    memcpy(gc, g, n * sizeof(float));
    nf_scale(g, n, 0.5f);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += g[i] != gc[i] * 0.5f;
    CHECK(bad == 0, "nf_scale: %zu values wrong", bad);
    nf_par_zero(g, n);
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) nz += g[i] != 0.0f;
    CHECK(nz == 0, "nf_par_zero left %zu values", nz);
    nf_adamw_free(&oa);
    nf_adamw_free(&ob);
    free(g); free(gc); free(pa); free(pb); free(mask);
}

static void test_schedule(void)
{
    nf_lr_schedule s = {NF_LR_COSINE, 1e-3f, 1e-5f, 10, 110};
    CHECK_OK(nf_lr_schedule_check(&s));
    CHECK_CLOSE(nf_lr_at(&s, 0), 1e-4, 0, 1e-6, "warm-up step 0 = lr/10");
    CHECK_CLOSE(nf_lr_at(&s, 4), 5e-4, 0, 1e-6, "warm-up step 4 = lr/2");
    CHECK_CLOSE(nf_lr_at(&s, 9), 1e-3, 0, 1e-6, "warm-up ends at lr");
    CHECK_CLOSE(nf_lr_at(&s, 10), 1e-3, 0, 1e-6, "cosine starts at lr");
    /* Halfway: cos(pi/2) = 0, so (lr + min)/2. */
    CHECK_CLOSE(nf_lr_at(&s, 60), (1e-3 + 1e-5) / 2, 0, 1e-6, "cosine halfway");
    /* A quarter: min + (lr-min)(1 + cos(pi/4))/2. */
    CHECK_CLOSE(nf_lr_at(&s, 35), 1e-5 + (1e-3 - 1e-5) * (1 + sqrt(0.5)) / 2, 0, 1e-6, "cosine quarter");
    CHECK_CLOSE(nf_lr_at(&s, 110), 1e-5, 0, 1e-6, "cosine floor");
    CHECK_CLOSE(nf_lr_at(&s, 100000), 1e-5, 0, 1e-6, "stays at the floor");
    float prev = 1.0f;
    int mono = 1;
    for (int k = 10; k <= 120; k++) {
        float lr = nf_lr_at(&s, k);
        if (lr > prev) mono = 0;
        prev = lr;
    }
    CHECK(mono, "cosine is non-increasing after the warm-up");

    nf_lr_schedule c = {NF_LR_CONSTANT, 2e-4f, 0, 0, 0};
    CHECK_OK(nf_lr_schedule_check(&c));
    CHECK_CLOSE(nf_lr_at(&c, 0), 2e-4, 0, 1e-7, "constant, no warm-up");
    CHECK_CLOSE(nf_lr_at(&c, 123456), 2e-4, 0, 1e-7, "constant later");
    c.warmup_steps = 4;
    CHECK_CLOSE(nf_lr_at(&c, 1), 1e-4, 0, 1e-6, "constant with warm-up");

    nf_lr_schedule bad = {NF_LR_COSINE, 1e-3f, 0, 100, 50};
    CHECK(nf_lr_schedule_check(&bad) == NF_ERR_ARG, "total < warmup refused");
    CHECK(strstr(nf_last_error(), "total_steps") != NULL, "message: %s", nf_last_error());
    bad = (nf_lr_schedule){NF_LR_CONSTANT, -1.0f, 0, 0, 0};
    CHECK(nf_lr_schedule_check(&bad) == NF_ERR_ARG, "negative lr refused");
}

static void test_ema(void)
{
    float p[3] = {1.0f, 2.0f, -3.0f};
    nf_ema e;
    CHECK_OK(nf_ema_init(&e, p, 3, 0.9f, 0));
    CHECK(e.shadow[2] == -3.0f, "shadow starts at the params");
    /* Move params to 0 and update k times: shadow = p0 * 0.9^k. */
    float z[3] = {0, 0, 0};
    for (int k = 0; k < 5; k++) nf_ema_update(&e, z);
    CHECK_CLOSE(e.shadow[0], pow(0.9, 5), 0, 1e-6, "ema geometric decay");
    CHECK_CLOSE(e.shadow[2], -3.0 * pow(0.9, 5), 0, 1e-6, "ema geometric decay");
    /* Constant target 1: shadow -> 1 - (1 - s0) 0.9^k. */
    float one[3] = {1, 1, 1};
    nf_ema_reset(&e, z);
    for (int k = 0; k < 10; k++) nf_ema_update(&e, one);
    CHECK_CLOSE(e.shadow[1], 1.0 - pow(0.9, 10), 0, 1e-6, "ema approach");
    CHECK(e.updates == 15, "update count %lld", (long long)e.updates);
    nf_ema_free(&e);

    /* Warm-up: decays 1/10, 2/11, 3/12, ... capped at 0.5. */
    CHECK_OK(nf_ema_init(&e, z, 3, 0.5f, 1));
    CHECK_CLOSE(nf_ema_current_decay(&e), 0.1, 0, 1e-6, "warm-up decay 0");
    double s = 0, want[4];
    double d[4] = {1.0 / 10, 2.0 / 11, 3.0 / 12, 4.0 / 13}; /* all below the cap 0.5 */
    float x[4] = {1.0f, 2.0f, 4.0f, 8.0f};
    for (int k = 0; k < 4; k++) {
        float v[3] = {x[k], x[k], x[k]};
        nf_ema_update(&e, v);
        s = d[k] * s + (1 - d[k]) * x[k];
        want[k] = s;
    }
    CHECK_CLOSE(e.shadow[0], want[3], 0, 1e-6, "ema with warm-up");
    /* After enough updates the cap holds. */
    for (int k = 0; k < 20; k++) nf_ema_update(&e, z);
    CHECK_CLOSE(nf_ema_current_decay(&e), 0.5, 0, 0, "warm-up capped at decay");
    nf_ema_free(&e);

    CHECK(nf_ema_init(&e, z, 3, 1.0f, 0) == NF_ERR_ARG, "decay 1 refused");
}

/* The AVX2 paths give the portable C's bits: AdamW with and without a decay mask over a
 * length with a ragged tail (several chunks and a partial vector), and the norm over
 * blocks of both sizes. */
static void test_paths_agree(void)
{
    const size_t n = 3 * 8192 + 1237;
    float *g = malloc(n * sizeof(float)), *pa = malloc(n * sizeof(float)), *pb = malloc(n * sizeof(float));
    uint8_t *mask = malloc(n);
    nf_randn(g, n, 11, 1, 0);
    nf_randn(pa, n, 11, 2, 0);
    memcpy(pb, pa, n * sizeof(float));
    for (size_t i = 0; i < n; i++) mask[i] = (uint8_t)((i * 2654435761u >> 7) % 3 != 0);
    nf_adamw_config c = {0.9f, 0.999f, 1e-8f, 0.1f};
    nf_adamw oa, ob;
    CHECK_OK(nf_adamw_init(&oa, n, &c));
    CHECK_OK(nf_adamw_init(&ob, n, &c));
    int same = 1;
    for (int step = 0; step < 6; step++) {
        oa.decay_mask = ob.decay_mask = step < 3 ? mask : NULL;
        for (size_t i = 0; i < n; i++) g[i] *= -0.7f; /* a gradient that changes sign */
        nf_optim_force_portable(0);
        CHECK_OK(nf_adamw_step(&oa, pa, g, 3e-3f));
        nf_optim_force_portable(1);
        CHECK_OK(nf_adamw_step(&ob, pb, g, 3e-3f));
        same &= !memcmp(pa, pb, n * sizeof(float)) && !memcmp(oa.m, ob.m, n * sizeof(float)) &&
                !memcmp(oa.v, ob.v, n * sizeof(float));
    }
    CHECK(same, "AdamW: the AVX2 path and the portable C differ");
    for (size_t len = 1; len < n; len = len * 3 + 5) {
        nf_optim_force_portable(0);
        double a = nf_l2_norm(g, len);
        nf_optim_force_portable(1);
        double b = nf_l2_norm(g, len);
        CHECK(a == b, "norm of %zu values: AVX2 %.17g, portable %.17g", len, a, b);
    }
    nf_optim_force_portable(0);
    nf_adamw_free(&oa);
    nf_adamw_free(&ob);
    free(g); free(pa); free(pb); free(mask);
}

int main(void)
{
    test_paths_agree();
    test_adamw_first_step();
    test_adamw_many_steps();
    test_clip();
    test_scaled_step();
    test_schedule();
    test_ema();
    return nf_test_done();
}
