/* The whole U-Net: parameter table, finite-difference gradients through the full
 * network, bit-identical results across thread counts and batch positions, odd lengths,
 * and the FLOP count. */
#include "nf_nn.h"
#include "nf_optim.h"
#include "nf_rng.h"
#include "nf_unet.h"
#include "nf_test.h"

void nf_wino_force(int mode); /* testing hook, model/nn_wino.c */

#include <stdlib.h>
#include <string.h>

static nf_unet_config small_cfg(void)
{
    nf_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 2, c.out_ch = 2, c.base = 8, c.n_levels = 2;
    c.mults[0] = 1, c.mults[1] = 2;
    c.blocks = 1;
    c.attn[1] = 1;
    c.mid_attn = 1;
    c.heads = 2, c.groups = 4, c.num_classes = 3;
    return c;
}

/* ---------------------------------------------------------------- table */

static void expect_tensor(nf_unet *net, const char *name, int ndim, int s0, int s1, int s2)
{
    int i = nf_unet_find_tensor(net, name);
    CHECK(i >= 0, "tensor %s missing", name);
    if (i < 0) return;
    const nf_param_info *t = nf_unet_tensor(net, i);
    int ok = t->ndim == ndim && t->shape[0] == s0 && (ndim < 2 || t->shape[1] == s1) &&
             (ndim < 3 || t->shape[2] == s2);
    CHECK(ok, "%s: shape %d [%d %d %d], want %d [%d %d %d]", name, t->ndim, t->shape[0],
          t->shape[1], t->shape[2], ndim, s0, s1, s2);
}

static void test_table(void)
{
    nf_unet_config c = small_cfg(); /* C0 = 8, E = 32, C1 = 16, in 2, out 2, 3 classes */
    c.blocks = 2;
    nf_unet *net = NULL;
    CHECK_OK(nf_unet_create(&c, 1, 16, &net));
    if (!net) return;
    expect_tensor(net, "time.lin1.weight", 2, 32, 8, 0);
    expect_tensor(net, "time.lin1.bias", 1, 32, 0, 0);
    expect_tensor(net, "time.lin2.weight", 2, 32, 32, 0);
    expect_tensor(net, "class_emb.weight", 2, 4, 32, 0);
    expect_tensor(net, "in_conv.weight", 3, 8, 2, 3);
    expect_tensor(net, "down.0.res.0.norm1.weight", 1, 8, 0, 0);
    expect_tensor(net, "down.0.res.0.conv1.weight", 3, 8, 8, 3);
    expect_tensor(net, "down.0.res.1.emb.weight", 2, 8, 32, 0);
    expect_tensor(net, "down.0.downsample.weight", 3, 8, 8, 3);
    expect_tensor(net, "down.1.res.0.conv1.weight", 3, 16, 8, 3);
    expect_tensor(net, "down.1.res.0.skip.weight", 3, 16, 8, 1);
    expect_tensor(net, "down.1.res.0.skip.bias", 1, 16, 0, 0);
    expect_tensor(net, "down.1.attn.1.qkv.weight", 3, 48, 16, 1);
    expect_tensor(net, "down.1.attn.0.proj.weight", 3, 16, 16, 1);
    expect_tensor(net, "down.1.attn.0.norm.bias", 1, 16, 0, 0);
    expect_tensor(net, "mid.res.0.conv2.weight", 3, 16, 16, 3);
    expect_tensor(net, "mid.attn.qkv.bias", 1, 48, 0, 0);
    expect_tensor(net, "mid.res.1.norm2.weight", 1, 16, 0, 0);
    expect_tensor(net, "up.1.res.0.norm1.weight", 1, 32, 0, 0);
    expect_tensor(net, "up.1.res.0.conv1.weight", 3, 16, 32, 3);
    expect_tensor(net, "up.1.res.0.skip.weight", 3, 16, 32, 1);
    expect_tensor(net, "up.1.attn.0.qkv.weight", 3, 48, 16, 1);
    expect_tensor(net, "up.1.attn.1.qkv.weight", 3, 48, 16, 1);
    expect_tensor(net, "up.1.upsample.weight", 3, 16, 16, 3);
    expect_tensor(net, "up.0.res.0.conv1.weight", 3, 8, 24, 3);
    expect_tensor(net, "up.0.res.0.skip.weight", 3, 8, 24, 1);
    expect_tensor(net, "up.0.res.1.conv1.weight", 3, 8, 8, 3);
    expect_tensor(net, "out_norm.weight", 1, 8, 0, 0);
    expect_tensor(net, "out_conv.weight", 3, 2, 8, 3);
    expect_tensor(net, "out_conv.bias", 1, 2, 0, 0);
    CHECK(nf_unet_find_tensor(net, "down.0.res.0.skip.weight") < 0, "no skip where cin == cout");
    CHECK(nf_unet_find_tensor(net, "down.1.downsample.weight") < 0, "no downsample at the last level");
    CHECK(nf_unet_find_tensor(net, "up.0.upsample.weight") < 0, "no upsample at level 0");
    CHECK(nf_unet_find_tensor(net, "down.0.attn.0.qkv.weight") < 0, "no attention at level 0");

    /* Count derived by hand. conv(co,ci,k) = co*ci*k + co, lin(o,i) = o*i + o, gn(c) = 2c. */
#define CV(co, ci, k) ((co) * (ci) * (k) + (co))
#define GN(c) (2 * (c))
#define RES(ci, co) (GN(ci) + CV(co, ci, 3) + CV(co, 32, 1) + GN(co) + CV(co, co, 3) + ((ci) != (co) ? CV(co, ci, 1) : 0))
#define ATT(c) (GN(c) + CV(3 * (c), c, 1) + CV(c, c, 1))
    size_t want = CV(32, 8, 1) + CV(32, 32, 1) + 4 * 32 + CV(8, 2, 3)
                + RES(8, 8) + RES(8, 8) + CV(8, 8, 3)                 /* down.0 */
                + RES(8, 16) + ATT(16) + RES(16, 16) + ATT(16)        /* down.1 */
                + RES(16, 16) + ATT(16) + RES(16, 16)                 /* mid */
                + RES(32, 16) + ATT(16) + RES(16, 16) + ATT(16) + CV(16, 16, 3) /* up.1 */
                + RES(24, 8) + RES(8, 8)                              /* up.0 */
                + GN(8) + CV(2, 8, 3);
    CHECK(nf_unet_num_params(net) == want, "num_params %zu, want %zu", nf_unet_num_params(net), want);
    size_t sum = 0;
    int contiguous = 1;
    for (int i = 0; i < nf_unet_num_tensors(net); i++) {
        const nf_param_info *t = nf_unet_tensor(net, i);
        if (t->offset != sum) contiguous = 0;
        sum += t->size;
    }
    CHECK(contiguous && sum == want, "tensors tile the slab (%zu floats)", sum);
    /* Init: norms 1/0, conv weights inside +-1/sqrt(fan_in), same seed same weights. */
    nf_unet_init_params(net, 5);
    float *p = nf_unet_params(net);
    const nf_param_info *t = nf_unet_tensor(net, nf_unet_find_tensor(net, "up.0.res.0.conv1.weight"));
    float mx = 0;
    for (size_t k = 0; k < t->size; k++) mx = fmaxf(mx, fabsf(p[t->offset + k]));
    CHECK(mx <= 1.0f / sqrtf(72.0f) && mx > 0.8f / sqrtf(72.0f), "kaiming-uniform bound: max %g", mx);
    t = nf_unet_tensor(net, nf_unet_find_tensor(net, "mid.res.1.norm2.weight"));
    CHECK(p[t->offset] == 1.0f && p[t->offset + 15] == 1.0f, "GroupNorm weight 1");
    nf_unet_free(net);
#undef CV
#undef GN
#undef RES
#undef ATT
}

/* ---------------------------------------------------------------- gradients */

static double loss_of(nf_unet *net, const float *x, const float *t, const int *y, int B, int L,
                      const float *w, float *out)
{
    nf_unet_forward(net, x, t, y, B, L, out, 1, 77);
    const nf_unet_config *c = nf_unet_get_config(net);
    double s = 0.0;
    for (size_t i = 0; i < (size_t)B * c->out_ch * L; i++) s += (double)out[i] * w[i];
    return s;
}

/* FD check of the whole network in float32: eps 1e-2 on weights of scale ~0.2-1,
 * loss summed in double. For each tensor: sampled entries must satisfy
 * |g - fd| <= 3e-2 |fd| + 2e-3 * G, G the largest |fd| seen over the whole network
 * (float32 rounding through ~20 layers makes tiny gradients noisy in absolute terms). */
static void test_gradients(void)
{
    nf_unet_config c = small_cfg();
    int B = 2, L = 37;
    nf_unet *net = NULL;
    CHECK_OK(nf_unet_create(&c, B, L, &net));
    if (!net) return;
    nf_unet_init_params(net, 11);
    /* Random, non-trivial norms so that their gradients are not special. */
    float *p = nf_unet_params(net), *g = nf_unet_grads(net);
    size_t nx = (size_t)B * c.in_ch * L, ny = (size_t)B * c.out_ch * L;
    float *x = malloc(nx * sizeof *x), *w = malloc(ny * sizeof *w), *out = malloc(ny * sizeof *out),
          *dx = malloc(nx * sizeof *dx);
    nf_randn(x, nx, 3, 1, 0);
    nf_randn(w, ny, 3, 2, 0);
    float t[2] = {3.0f, 500.0f};
    int y[2] = {2, -1};
    /* Every gradient is written by the backward pass (the conv and linear weights' by their
     * layers, the rest zeroed first and accumulated): stale NaNs must not survive. */
    size_t np = nf_unet_num_params(net), stale = 0;
    for (size_t i = 0; i < np; i++) g[i] = NAN;
    loss_of(net, x, t, y, B, L, w, out);
    CHECK_OK(nf_unet_backward(net, w, dx));
    for (size_t i = 0; i < np; i++) stale += !isfinite(g[i]);
    CHECK(stale == 0, "%zu of %zu gradients not written by the backward pass", stale, np);

    int nt = nf_unet_num_tensors(net);
    double *an = malloc(sizeof(double) * (size_t)(nt * 4 + 40)), *fd = malloc(sizeof(double) * (size_t)(nt * 4 + 40));
    int *tid = malloc(sizeof(int) * (size_t)(nt * 4 + 40));
    int k = 0;
    const float eps = 1e-2f;
    for (int i = 0; i < nt; i++) {
        const nf_param_info *ti = nf_unet_tensor(net, i);
        for (int r = 0; r < 4; r++) {
            size_t e = ti->offset + nf_rand_below(ti->size, 9, (uint64_t)i, (uint64_t)r);
            float v = p[e];
            p[e] = v + eps;
            double lp = loss_of(net, x, t, y, B, L, w, out);
            p[e] = v - eps;
            double lm = loss_of(net, x, t, y, B, L, w, out);
            p[e] = v;
            fd[k] = (lp - lm) / (2.0 * eps);
            an[k] = g[e];
            tid[k++] = i;
        }
    }
    int kx0 = k;
    for (int r = 0; r < 40; r++) {
        size_t e = nf_rand_below(nx, 9, 1000, (uint64_t)r);
        float v = x[e];
        x[e] = v + eps;
        double lp = loss_of(net, x, t, y, B, L, w, out);
        x[e] = v - eps;
        double lm = loss_of(net, x, t, y, B, L, w, out);
        x[e] = v;
        fd[k] = (lp - lm) / (2.0 * eps);
        an[k] = dx[e];
        tid[k++] = -1;
    }
    double G = 0.0;
    for (int j = 0; j < k; j++) G = fmax(G, fabs(fd[j]));
    int bad = 0;
    double worst = 0.0;
    for (int j = 0; j < k; j++) {
        double err = fabs(an[j] - fd[j]), lim = 3e-2 * fabs(fd[j]) + 2e-3 * G;
        worst = fmax(worst, err / lim);
        if (err > lim) {
            bad++;
            fprintf(stderr, "  %s: analytic %.6g fd %.6g\n",
                    tid[j] < 0 ? "input x" : nf_unet_tensor(net, tid[j])->name, an[j], fd[j]);
        }
    }
    CHECK(bad == 0, "%d of %d sampled gradients off (largest fd %.3g, worst err/limit %.3g)", bad, k,
          G, worst);
    printf("unet FD: %d param samples, %d input samples, worst err/limit %.3f\n", kx0, k - kx0, worst);
    free(an), free(fd), free(tid), free(x), free(w), free(out), free(dx);
    nf_unet_free(net);
}

/* ---------------------------------------------------------------- determinism */

static void run_train_step(nf_unet *net, int threads, const float *x, const float *t, const int *y,
                           int B, int L, const float *w, float *out, float *dx)
{
    nf_set_threads(threads);
    nf_unet_zero_grad(net);
    nf_unet_forward(net, x, t, y, B, L, out, 1, 1234);
    nf_unet_backward(net, w, dx);
}

static void test_determinism(void)
{
    nf_unet_config c = small_cfg();
    c.dropout = 0.1f;
    int B = 3, L = 301;
    nf_unet *net = NULL;
    CHECK_OK(nf_unet_create(&c, B, L, &net));
    if (!net) return;
    nf_unet_init_params(net, 21);
    size_t nx = (size_t)B * c.in_ch * L, ny = (size_t)B * c.out_ch * L, np = nf_unet_num_params(net);
    float *x = malloc(nx * 4), *w = malloc(ny * 4), *o1 = malloc(ny * 4), *o2 = malloc(ny * 4),
          *dx1 = malloc(nx * 4), *dx2 = malloc(nx * 4), *g1 = malloc(np * 4);
    nf_randn(x, nx, 4, 1, 0);
    nf_randn(w, ny, 4, 2, 0);
    float t[3] = {10.0f, 999.0f, 250.0f};
    int y[3] = {0, 2, -1};
    run_train_step(net, 1, x, t, y, B, L, w, o1, dx1);
    memcpy(g1, nf_unet_grads(net), np * 4);
    /* The norm summed op by op during the backward pass is nf_l2_norm's, bit for bit. */
    double gn1 = nf_unet_grad_norm(net);
    CHECK(isfinite(gn1) && gn1 > 0 && gn1 == nf_l2_norm(nf_unet_grads(net), np),
          "gradient norm from the backward pass %.17g vs nf_l2_norm %.17g", gn1, nf_l2_norm(nf_unet_grads(net), np));
    run_train_step(net, 2, x, t, y, B, L, w, o2, dx2);
    CHECK(nf_unet_grad_norm(net) == gn1, "gradient norm differs between 1 and 2 threads");
    CHECK(!memcmp(o1, o2, ny * 4), "forward output differs between 1 and 2 threads");
    CHECK(!memcmp(dx1, dx2, nx * 4), "input gradient differs between 1 and 2 threads");
    CHECK(!memcmp(g1, nf_unet_grads(net), np * 4), "parameter gradients differ between 1 and 2 threads");

    /* Example 1 alone vs inside the batch of 3 (inference; both thread counts). */
    for (int th = 1; th <= 2; th++) {
        nf_set_threads(th);
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o1, 0, 0));
        CHECK(isnan(nf_unet_grad_norm(net)), "a gradient norm reported after a forward");
        CHECK_OK(nf_unet_forward(net, x + (size_t)c.in_ch * L, t + 1, y + 1, 1, L, o2, 0, 0));
        CHECK(!memcmp(o1 + (size_t)c.out_ch * L, o2, (size_t)c.out_ch * L * 4),
              "example alone differs from the same example in a batch (%d threads)", th);
    }
    /* Inference with the weights packed once (nf_unet_prepack): the same bits, alone and
     * in the batch; and nf_unet_params() drops the packed copy, so a weight changed
     * through it is seen by the next forward (no stale panels). Also with every kernel-3
     * conv and Up conv by Winograd (forced; this network's 8-16 channels are too few for it
     * otherwise; its Ups go to odd lengths), whose transformed weights the prepack makes
     * once. */
    for (int wm = 0; wm <= 2; wm += 2) {
    nf_wino_force(wm);
    for (int th = 1; th <= 2; th++) {
        nf_set_threads(th);
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o1, 0, 0));
        CHECK_OK(nf_unet_prepack(net));
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o2, 0, 0));
        CHECK(!memcmp(o1, o2, ny * 4), "forward with packed weights differs (%d threads)", th);
        CHECK_OK(nf_unet_forward(net, x + (size_t)c.in_ch * L, t + 1, y + 1, 1, L, o2, 0, 0));
        CHECK(!memcmp(o1 + (size_t)c.out_ch * L, o2, (size_t)c.out_ch * L * 4),
              "packed weights: example alone differs from the batch (%d threads)", th);
    }
    /* The input conv, a residual block's first conv and an Up conv (Winograd when
     * forced). */
    for (int which = 0; which < 3; which++) {
        const nf_param_info *ti = NULL;
        for (int i = 0; i < nf_unet_num_tensors(net) && !ti; i++) {
            const nf_param_info *q = nf_unet_tensor(net, i);
            if (q->ndim == 3 && (which == 0 || strstr(q->name, which == 1 ? "conv1" : "upsample"))) ti = q;
        }
        CHECK(ti != NULL, "no conv weight %d", which);
        if (!ti) continue;
        float *p = nf_unet_params(net), saved = p[ti->offset];
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o1, 0, 0));
        CHECK_OK(nf_unet_prepack(net));
        p = nf_unet_params(net);
        p[ti->offset] += 0.5f;
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o2, 0, 0));
        CHECK(memcmp(o1, o2, ny * 4) != 0, "a weight of %s changed after nf_unet_params() was not seen (wino %d)",
              ti->name, wm);
        nf_unet_params(net)[ti->offset] = saved;
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o2, 0, 0));
        CHECK(!memcmp(o1, o2, ny * 4), "%s", "restoring the weight did not restore the output");
    }
    }
    nf_wino_force(0);
    /* And a training step without dropout: example 0 alone vs first in the batch. */
    c.dropout = 0.0f;
    nf_unet_free(net);
    net = NULL;
    CHECK_OK(nf_unet_create(&c, B, L, &net));
    if (net) {
        nf_unet_init_params(net, 21);
        run_train_step(net, 2, x, t, y, B, L, w, o1, dx1);
        run_train_step(net, 2, x, t, y, 1, L, w, o2, dx2);
        CHECK(!memcmp(o1, o2, (size_t)c.out_ch * L * 4), "training forward: alone vs batch");
        CHECK(!memcmp(dx1, dx2, (size_t)c.in_ch * L * 4), "input gradient: alone vs batch");
    }
    nf_set_threads(0);
    free(x), free(w), free(o1), free(o2), free(dx1), free(dx2), free(g1);
    nf_unet_free(net);
}

/* Inference runs the UP op of a long input (>= 512 samples) as two polyphase GEMMs
 * (nf_upconv3_forward); training keeps upsample + conv. Both within float rounding of
 * each other, for an even and an odd (2 Lin - 1) upsampled length; inference alone vs in
 * the batch and packed vs not the same bits; a changed upsampling weight is seen. */
static void test_upconv_net(int L)
{
    nf_unet_config c = small_cfg();
    c.attn[1] = 0, c.mid_attn = 0;
    int B = 2;
    nf_unet *net = NULL;
    CHECK_OK(nf_unet_create(&c, B, L, &net));
    if (!net) return;
    nf_unet_init_params(net, 17);
    size_t nx = (size_t)B * c.in_ch * L, ny = (size_t)B * c.out_ch * L, n1 = (size_t)c.out_ch * L;
    float *x = malloc(nx * 4), *ot = malloc(ny * 4), *oi = malloc(ny * 4), *o2 = malloc(ny * 4);
    nf_randn(x, nx, 8, 1, 0);
    float t[2] = {40.0f, 700.0f};
    int y[2] = {0, 2};
    CHECK_OK(nf_unet_forward(net, x, t, y, B, L, ot, 1, 0));
    CHECK_OK(nf_unet_forward(net, x, t, y, B, L, oi, 0, 0));
    double dmax = 0, omax = 0;
    for (size_t i = 0; i < ny; i++) dmax = fmax(dmax, fabs(ot[i] - oi[i])), omax = fmax(omax, fabs(ot[i]));
    CHECK(dmax <= 1e-5 * omax && omax > 0, "L %d: inference (polyphase) vs training forward differ by %.3g (max %.3g)", L,
          dmax, omax);
    CHECK(memcmp(ot, oi, ny * 4) != 0, "L %d: inference took the training path (no polyphase)", L);
    CHECK_OK(nf_unet_forward(net, x + (size_t)c.in_ch * L, t + 1, y + 1, 1, L, o2, 0, 0));
    CHECK(!memcmp(oi + n1, o2, n1 * 4), "L %d: polyphase inference alone differs from the batch", L);
    CHECK_OK(nf_unet_prepack(net));
    CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o2, 0, 0));
    CHECK(!memcmp(oi, o2, ny * 4), "L %d: polyphase inference with packed weights differs", L);
    const nf_param_info *up = NULL;
    for (int i = 0; i < nf_unet_num_tensors(net) && !up; i++)
        if (strstr(nf_unet_tensor(net, i)->name, "upsample.weight")) up = nf_unet_tensor(net, i);
    CHECK(up != NULL, "%s", "no upsampling conv");
    if (up) {
        float *p = nf_unet_params(net), saved = p[up->offset + 2]; /* a w2 tap */
        p[up->offset + 2] += 0.5f;
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o2, 0, 0));
        CHECK(memcmp(oi, o2, ny * 4) != 0, "L %d: a changed upsampling weight was not seen", L);
        CHECK_OK(nf_unet_prepack(net));
        nf_unet_params(net)[up->offset + 2] = saved;
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, o2, 0, 0));
        CHECK(!memcmp(oi, o2, ny * 4), "L %d: restoring the weight did not restore the output", L);
    }
    free(x), free(ot), free(oi), free(o2);
    nf_unet_free(net);
}

/* ---------------------------------------------------------------- lengths */

static void test_lengths(void)
{
    nf_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 1, c.out_ch = 2, c.base = 8, c.n_levels = 4;
    c.mults[0] = 1, c.mults[1] = 1, c.mults[2] = 2, c.mults[3] = 2;
    c.blocks = 1, c.mid_attn = 1, c.attn[3] = 1, c.heads = 2, c.groups = 4;
    int lens[5] = {1, 2, 37, 1000, 16383};
    nf_unet *net = NULL;
    CHECK_OK(nf_unet_create(&c, 2, 16383, &net));
    if (!net) return;
    nf_unet_init_params(net, 1);
    float *x = malloc(2 * 16383 * 4), *out = malloc(2 * 2 * 16384 * 4);
    float t[2] = {1, 700};
    for (int i = 0; i < 5; i++) {
        int L = lens[i], B = L > 1000 ? 1 : 2;
        nf_randn(x, (size_t)B * L, 8, (uint64_t)L, 0);
        for (int j = 0; j < 2 * 2 * 16384; j++) out[j] = NAN;
        CHECK_OK(nf_unet_forward(net, x, t, NULL, B, L, out, 0, 0));
        int finite = 1;
        for (size_t j = 0; j < (size_t)B * 2 * L; j++) finite &= isfinite(out[j]);
        int untouched = isnan(out[(size_t)B * 2 * L]);
        CHECK(finite && untouched, "length %d: output finite over exactly [B, out_ch, L]", L);
    }
    CHECK(nf_unet_forward(net, x, t, NULL, 3, 10, out, 0, 0) == NF_ERR_ARG, "batch over max rejected");
    CHECK(nf_unet_forward(net, x, t, NULL, 1, 16384, out, 0, 0) == NF_ERR_ARG, "length over max rejected");
    CHECK(nf_unet_backward(net, out, NULL) == NF_ERR_ARG, "backward after an inference forward rejected");
    free(x), free(out);
    nf_unet_free(net);
}

/* ---------------------------------------------------------------- flops, config */

static void test_flops(void)
{
    /* 2 levels, base 4 (E = 16), mults {1, 2}, blocks 1, attention at level 1 only,
     * no mid attention, in 1, out 1, L = 10 (level 1 length 5). Per op, 2 flops per MAC:
     *   time MLP: 4*16 + 16*16 = 320 MACs
     *   in_conv: 4*1*3*10 = 120
     *   down.0.res.0 (4->4, L 10): conv1 4*4*3*10 = 480, emb 16*4 = 64, conv2 480 -> 1024
     *   down.0.downsample (L out 5): 4*4*3*5 = 240
     *   down.1.res.0 (4->8, L 5): conv1 8*4*3*5 = 480, emb 128, conv2 8*8*3*5 = 960,
     *       skip 8*4*5 = 160 -> 1728
     *   down.1.attn.0 (C 8, L 5): qkv 24*8*5 = 960, QK^T + PV 2*5*5*8 = 400,
     *       proj 8*8*5 = 320 -> 1680
     *   mid.res.0, mid.res.1 (8->8, L 5): 960 + 128 + 960 = 2048 each
     *   up.1.res.0 (16->8, L 5): 8*16*3*5 = 1920, 128, 960, skip 8*16*5 = 640 -> 3648
     *   up.1.attn.0: 1680;  up.1.upsample (L out 10): 8*8*3*10 = 1920
     *   up.0.res.0 (12->4, L 10): 4*12*3*10 = 1440, 64, 480, skip 4*12*10 = 480 -> 2464
     *   out_conv: 1*4*3*10 = 120 */
    double macs = 320 + 120 + 1024 + 240 + 1728 + 1680 + 2 * 2048 + 3648 + 1680 + 1920 + 2464 + 120;
    nf_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = 1, c.out_ch = 1, c.base = 4, c.n_levels = 2, c.mults[0] = 1, c.mults[1] = 2;
    c.blocks = 1, c.attn[1] = 1, c.heads = 2, c.groups = 2;
    CHECK_CLOSE(nf_unet_flops(&c, 10), 2.0 * macs, 0, 1e-12, "flops of the tiny config");

    nf_unet_config bad = small_cfg();
    bad.groups = 3;
    CHECK(nf_unet_config_check(&bad) == NF_ERR_ARG, "groups not dividing widths rejected");
    bad = small_cfg();
    bad.heads = 5;
    CHECK(nf_unet_config_check(&bad) == NF_ERR_ARG, "heads not dividing attention width rejected");
    bad = small_cfg();
    bad.base = 7;
    CHECK(nf_unet_config_check(&bad) == NF_ERR_ARG, "odd base rejected");
    bad = small_cfg();
    bad.n_levels = 0;
    CHECK(nf_unet_config_check(&bad) == NF_ERR_ARG, "zero levels rejected");
    bad = small_cfg();
    CHECK(nf_unet_config_check(&bad) == NF_OK, "small config accepted");
}

int main(void)
{
    test_table();
    test_flops();
    test_gradients();
    test_determinism();
    test_upconv_net(2100);
    test_upconv_net(2099);
    test_lengths();
    return nf_test_done();
}
