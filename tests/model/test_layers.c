/* Finite-difference checks of every layer's backward in nf_nn.h.
 *
 * Each layer runs in float32. The loss is sum(out * w) with a fixed random w (smooth,
 * so the central difference (f(x+e) - f(x-e)) / 2e has O(e^2) truncation error); e = 1e-2
 * balances that against float32 rounding of the loss (summed in double). An analytic
 * gradient g passes when |g - fd| <= TOL * max(max |fd| over the tensor, 1e-3), with
 * TOL = 2e-2: float32 FD noise is about 1e-3 of the largest gradient here, a wrong
 * formula gives errors of order 1. */
#include "nf_nn.h"
#include "nf_rng.h"
#include "nf_unet.h"
#include "nf_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 2e-2
#define EPS 1e-2f

typedef struct layer layer;
struct layer {
    double (*loss)(layer *);
    void (*grad)(layer *); /* zero grads, forward, backward with dout = w */
    /* generic storage */
    float *in, *din, *out, *w, *p[4], *dp[4], *scr, *scr2, *col, *dcol, *st[4];
    nf_seq si, so;
    nf_conv_dims cd;
    int C, G, silu, B, n_in, n_out, heads;
    float drop;
};

static uint64_t g_stream = 1;
/* Every test buffer is remembered and freed at the end (clean under LeakSanitizer). */
static void *g_bufs[4096];
static int g_nbufs;
static float *keep(float *p)
{
    if (g_nbufs < 4096) g_bufs[g_nbufs++] = p;
    return p;
}
static float *rnd(size_t n, float scale)
{
    float *p = keep(calloc(n ? n : 1, sizeof *p));
    nf_randn(p, n, 1234, g_stream++, 0);
    for (size_t i = 0; i < n; i++) p[i] *= scale;
    return p;
}
static float *zeros(size_t n) { return keep(calloc(n ? n : 1, sizeof(float))); }

/* A random sequence buffer: valid columns random, gaps zero. */
static float *rnd_seq(int C, nf_seq s, float scale)
{
    float *p = rnd((size_t)C * nf_seq_ld(s), scale);
    nf_seq_zero_gaps(p, C, s);
    return p;
}

static double seq_dot(const float *a, const float *b, int C, nf_seq s)
{
    double acc = 0.0;
    for (int c = 0; c < C; c++)
        for (int bb = 0; bb < s.B; bb++)
            for (int l = 0; l < s.L; l++) {
                size_t i = (size_t)c * nf_seq_ld(s) + (size_t)bb * s.S + s.off + l;
                acc += (double)a[i] * b[i];
            }
    return acc;
}

/* Checks grad against central differences at up to `max_n` entries of val (indices
 * drawn from `idx` of length n_idx). */
static void fd_check(layer *ly, float *val, const float *grad, const size_t *idx, size_t n_idx,
                     const char *what)
{
    ly->grad(ly);
    size_t n = n_idx < 40 ? n_idx : 40;
    double maxfd = 1e-3, maxerr = 0.0;
    double fd[40], an[40];
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[(k * 7919) % n_idx];
        float v = val[i];
        val[i] = v + EPS;
        double lp = ly->loss(ly);
        val[i] = v - EPS;
        double lm = ly->loss(ly);
        val[i] = v;
        fd[k] = (lp - lm) / (2.0 * EPS);
        an[k] = grad[i];
        if (fabs(fd[k]) > maxfd) maxfd = fabs(fd[k]);
    }
    for (size_t k = 0; k < n; k++) { /* written so that a NaN gradient fails the check */
        double e = fabs(fd[k] - an[k]);
        if (!(e <= maxerr)) maxerr = e;
    }
    CHECK(maxerr <= TOL * maxfd, "%s: max |analytic - fd| = %.3g, max |fd| = %.3g", what, maxerr,
          maxfd);
}

static size_t *all_idx(size_t n)
{
    size_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = i;
    return p;
}
static size_t *seq_idx(int C, nf_seq s, size_t *n)
{
    *n = (size_t)C * s.B * s.L;
    size_t *p = malloc(*n * sizeof *p), k = 0;
    for (int c = 0; c < C; c++)
        for (int b = 0; b < s.B; b++)
            for (int l = 0; l < s.L; l++) p[k++] = (size_t)c * nf_seq_ld(s) + (size_t)b * s.S + s.off + l;
    return p;
}

/* ---------------------------------------------------------------- conv */

static void fill_nan(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}

static double conv_loss(layer *ly)
{
    nf_conv1d_forward(ly->out, ly->so, ly->col, ly->scr, ly->in, ly->si, ly->p[0], ly->p[1], NULL,
                      ly->cd);
    return seq_dot(ly->out, ly->w, ly->cd.cout, ly->so);
}
static void conv_grad(layer *ly)
{
    size_t ldi = nf_seq_ld(ly->si), ldo = nf_seq_ld(ly->so);
    memset(ly->din, 0, (size_t)ly->cd.cin * ldi * sizeof(float));
    /* The weight gradient is overwritten (a NaN left over would show); the rest accumulate. */
    fill_nan(ly->dp[0], (size_t)ly->cd.cout * ly->cd.cin * ly->cd.k);
    memset(ly->dp[1], 0, (size_t)ly->cd.cout * sizeof(float));
    conv_loss(ly);
    memcpy(ly->scr2, ly->w, (size_t)ly->cd.cout * ldo * sizeof(float));
    nf_conv1d_backward(ly->din, ly->dp[0], ly->dp[1], ly->scr2, ly->so, ly->col, ly->dcol, ly->scr,
                       ly->in, ly->si, ly->p[0], ly->cd);
}

/* Direct O(n k) convolution for the forward check. */
static void conv_direct(float *out, const float *in, const float *w, const float *bias, int B,
                        int L, int Lo, nf_conv_dims d)
{
    for (int b = 0; b < B; b++)
        for (int co = 0; co < d.cout; co++)
            for (int l = 0; l < Lo; l++) {
                double acc = bias[co];
                for (int ci = 0; ci < d.cin; ci++)
                    for (int j = 0; j < d.k; j++) {
                        int p = l * d.stride + j * d.dil - d.pad;
                        if (p >= 0 && p < L)
                            acc += (double)w[(co * d.cin + ci) * d.k + j] * in[((size_t)b * d.cin + ci) * L + p];
                    }
                out[((size_t)b * d.cout + co) * Lo + l] = (float)acc;
            }
}

static void test_conv(nf_conv_dims d, int B, int L, int pad_cols)
{
    layer ly;
    memset(&ly, 0, sizeof ly);
    ly.cd = d;
    int Lo = nf_conv_out_len(d, L);
    ly.si = (nf_seq){B, L, L + 2 * pad_cols + 1, pad_cols};
    if (d.stride == 1) {
        ly.so = (nf_seq){B, Lo, ly.si.S, pad_cols};
    } else {
        ly.so = nf_seq_make(B, Lo);
    }
    size_t ldo = nf_seq_ld(ly.so);
    ly.in = rnd_seq(d.cin, ly.si, 1.0f);
    ly.din = zeros((size_t)d.cin * nf_seq_ld(ly.si));
    ly.out = zeros((size_t)d.cout * ldo);
    ly.w = rnd_seq(d.cout, ly.so, 1.0f);
    ly.p[0] = rnd((size_t)d.cout * d.cin * d.k, 0.5f);
    ly.p[1] = rnd((size_t)d.cout, 0.5f);
    ly.dp[0] = zeros((size_t)d.cout * d.cin * d.k);
    ly.dp[1] = zeros((size_t)d.cout);
    ly.scr = zeros((size_t)d.cout * d.cin * d.k);
    ly.scr2 = zeros((size_t)d.cout * ldo);
    ly.col = zeros((size_t)d.cin * d.k * ldo);
    ly.dcol = zeros((size_t)d.cin * d.k * ldo);
    ly.loss = conv_loss;
    ly.grad = conv_grad;
    char what[128];

    /* Forward against the direct sum. */
    conv_loss(&ly);
    float *x = zeros((size_t)B * d.cin * L), *ref = zeros((size_t)B * d.cout * Lo),
          *got = zeros((size_t)B * d.cout * Lo);
    nf_seq_unpack(x, ly.in, d.cin, ly.si);
    conv_direct(ref, x, ly.p[0], ly.p[1], B, L, Lo, d);
    nf_seq_unpack(got, ly.out, d.cout, ly.so);
    double err = 0.0;
    for (size_t i = 0; i < (size_t)B * d.cout * Lo; i++)
        err = fmax(err, fabs(got[i] - ref[i]) / (1.0 + fabs(ref[i])));
    snprintf(what, sizeof what, "conv k%d s%d d%d p%d forward", d.k, d.stride, d.dil, d.pad);
    CHECK(err < 1e-5, "%s: max rel err %.3g", what, err);
    /* Gaps of the output stay zero. */
    int gaps_ok = 1;
    for (int c = 0; c < d.cout; c++)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < ly.so.S; i++)
                if ((i < ly.so.off || i >= ly.so.off + Lo) && ly.out[c * ldo + (size_t)b * ly.so.S + i] != 0.0f)
                    gaps_ok = 0;
    CHECK(gaps_ok, "%s: gaps not zero", what);

    size_t n_idx;
    size_t *idx = seq_idx(d.cin, ly.si, &n_idx);
    snprintf(what, sizeof what, "conv k%d s%d d%d p%d dinput", d.k, d.stride, d.dil, d.pad);
    fd_check(&ly, ly.in, ly.din, idx, n_idx, what);
    free(idx);
    idx = all_idx((size_t)d.cout * d.cin * d.k);
    snprintf(what, sizeof what, "conv k%d s%d d%d p%d dweight", d.k, d.stride, d.dil, d.pad);
    fd_check(&ly, ly.p[0], ly.dp[0], idx, (size_t)d.cout * d.cin * d.k, what);
    snprintf(what, sizeof what, "conv k%d s%d d%d p%d dbias", d.k, d.stride, d.dil, d.pad);
    fd_check(&ly, ly.p[1], ly.dp[1], idx, (size_t)d.cout, what);
    free(idx);
}

/* ---------------------------------------------------------------- linear */

static double lin_loss(layer *ly)
{
    nf_linear_forward(ly->out, ly->in, ly->p[0], ly->p[1], ly->B, ly->n_in, ly->n_out);
    double s = 0.0;
    for (int i = 0; i < ly->B * ly->n_out; i++) s += (double)ly->out[i] * ly->w[i];
    return s;
}
static void lin_grad(layer *ly)
{
    memset(ly->din, 0, (size_t)ly->B * ly->n_in * sizeof(float));
    fill_nan(ly->dp[0], (size_t)ly->n_out * ly->n_in); /* overwritten, as in conv_grad */
    memset(ly->dp[1], 0, (size_t)ly->n_out * sizeof(float));
    lin_loss(ly);
    nf_linear_backward(ly->din, ly->dp[0], ly->dp[1], ly->w, ly->in, ly->p[0], ly->B, ly->n_in,
                       ly->n_out);
}
static void test_linear(void)
{
    layer ly;
    memset(&ly, 0, sizeof ly);
    ly.B = 3, ly.n_in = 21, ly.n_out = 13;
    ly.in = rnd(3 * 21, 1), ly.din = zeros(3 * 21), ly.out = zeros(3 * 13), ly.w = rnd(3 * 13, 1);
    ly.p[0] = rnd(13 * 21, 0.3f), ly.p[1] = rnd(13, 0.3f), ly.dp[0] = zeros(13 * 21), ly.dp[1] = zeros(13);
    ly.loss = lin_loss, ly.grad = lin_grad;
    size_t *idx = all_idx(13 * 21);
    fd_check(&ly, ly.in, ly.din, idx, 3 * 21, "linear dinput");
    fd_check(&ly, ly.p[0], ly.dp[0], idx, 13 * 21, "linear dweight");
    fd_check(&ly, ly.p[1], ly.dp[1], idx, 13, "linear dbias");
    free(idx);
}

/* ---------------------------------------------------------------- GroupNorm */

static double gn_loss(layer *ly)
{
    nf_groupnorm_forward(ly->out, ly->st[0], ly->st[1], ly->in, ly->p[0], ly->p[1], ly->C, ly->G,
                         1e-5f, ly->silu, ly->si);
    return seq_dot(ly->out, ly->w, ly->C, ly->si);
}
static void gn_grad(layer *ly)
{
    size_t ld = nf_seq_ld(ly->si);
    memset(ly->din, 0, (size_t)ly->C * ld * sizeof(float));
    memset(ly->dp[0], 0, (size_t)ly->C * sizeof(float));
    memset(ly->dp[1], 0, (size_t)ly->C * sizeof(float));
    gn_loss(ly);
    memcpy(ly->scr2, ly->w, (size_t)ly->C * ld * sizeof(float));
    nf_groupnorm_backward(ly->din, ly->dp[0], ly->dp[1], ly->scr2, ly->in, ly->st[0], ly->st[1],
                          ly->p[0], ly->p[1], ly->scr, ly->C, ly->G, ly->silu, ly->si);
}
/* Testing hook in model/nn_layers.c: 0 automatic, 1 portable, 2 AVX2, 3 AVX-512 (0 if this
 * CPU does not run it). */
int nf_gn_force_path(int path);

/* The GroupNorm (+ SiLU) forward row kernels give the same bits on every path this CPU
 * runs: rows of 1-40 columns (the vector bodies and their scalar tails), 1 and 2 threads,
 * values reaching the exp's clamps. */
static void test_groupnorm_paths(void)
{
    int C = 16, G = 4, tested = 0;
    for (int L = 1; L <= 40; L += 3) {
        nf_seq s = nf_seq_make(3, L);
        size_t ld = nf_seq_ld(s);
        float *x = rnd_seq(C, s, 30.0f), *ga = rnd(C, 4.0f), *be = rnd(C, 2.0f);
        float *ref = zeros(C * ld), *out = zeros(C * ld), *m = zeros(3 * G), *r = zeros(3 * G);
        for (int silu = 0; silu <= 1; silu++) {
            nf_gn_force_path(1);
            nf_groupnorm_forward(ref, m, r, x, ga, be, C, G, 1e-5f, silu, s);
            for (int path = 2; path <= 3; path++)
                for (int nt = 1; nt <= 2; nt++) {
                    if (!nf_gn_force_path(path)) continue;
                    nf_set_threads(nt);
                    nf_groupnorm_forward(out, m, r, x, ga, be, C, G, 1e-5f, silu, s);
                    CHECK(!memcmp(ref, out, C * ld * sizeof(float)),
                          "groupnorm%s path %d, %d threads, L %d: not the portable path's bits",
                          silu ? "+silu" : "", path, nt, L);
                    tested++;
                }
        }
        nf_gn_force_path(0);
        nf_set_threads(1);
    }
    printf("groupnorm paths: %d comparisons with the portable path\n", tested);
}

static void test_groupnorm(int silu)
{
    layer ly;
    memset(&ly, 0, sizeof ly);
    ly.C = 6, ly.G = 3, ly.silu = silu, ly.si = nf_seq_make(2, 11);
    size_t ld = nf_seq_ld(ly.si);
    ly.in = rnd_seq(ly.C, ly.si, 2.0f);
    for (size_t i = 0; i < ly.C * ld; i++) ly.in[i] += ly.in[i] != 0.0f ? 0.7f : 0.0f; /* non-zero mean */
    ly.din = zeros(ly.C * ld), ly.out = zeros(ly.C * ld), ly.w = rnd_seq(ly.C, ly.si, 1.0f);
    ly.scr2 = zeros(ly.C * ld), ly.scr = zeros(2 * ly.C * 2);
    ly.p[0] = rnd(ly.C, 0.5f), ly.p[1] = rnd(ly.C, 0.5f), ly.dp[0] = zeros(ly.C), ly.dp[1] = zeros(ly.C);
    for (int c = 0; c < ly.C; c++) ly.p[0][c] += 1.0f;
    ly.st[0] = zeros(2 * ly.G), ly.st[1] = zeros(2 * ly.G);
    ly.loss = gn_loss, ly.grad = gn_grad;

    /* Forward against a direct double-precision GroupNorm (+SiLU). */
    gn_loss(&ly);
    double err = 0.0;
    int cpg = ly.C / ly.G;
    for (int b = 0; b < 2; b++)
        for (int g = 0; g < ly.G; g++) {
            double m = 0, v = 0, n = cpg * 11.0;
            for (int c = g * cpg; c < (g + 1) * cpg; c++)
                for (int l = 0; l < 11; l++) m += ly.in[c * ld + b * 13 + 1 + l];
            m /= n;
            for (int c = g * cpg; c < (g + 1) * cpg; c++)
                for (int l = 0; l < 11; l++) v += pow(ly.in[c * ld + b * 13 + 1 + l] - m, 2);
            v /= n;
            for (int c = g * cpg; c < (g + 1) * cpg; c++)
                for (int l = 0; l < 11; l++) {
                    double y = (ly.in[c * ld + b * 13 + 1 + l] - m) / sqrt(v + 1e-5) * ly.p[0][c] + ly.p[1][c];
                    if (silu) y = y / (1 + exp(-y));
                    err = fmax(err, fabs(y - ly.out[c * ld + b * 13 + 1 + l]));
                }
        }
    CHECK(err < 1e-5, "groupnorm%s forward: max err %.3g", silu ? "+silu" : "", err);
    size_t n_idx;
    size_t *idx = seq_idx(ly.C, ly.si, &n_idx);
    fd_check(&ly, ly.in, ly.din, idx, n_idx, silu ? "groupnorm+silu dinput" : "groupnorm dinput");
    free(idx);
    idx = all_idx(ly.C);
    fd_check(&ly, ly.p[0], ly.dp[0], idx, ly.C, "groupnorm dgamma");
    fd_check(&ly, ly.p[1], ly.dp[1], idx, ly.C, "groupnorm dbeta");
    free(idx);
}

/* ---------------------------------------------------------------- SiLU, exp */

static void test_silu_exp(void)
{
    double maxrel = 0.0;
    for (int i = -86990; i <= 87990; i += 7) { /* inside the clamp range */
        float x = i * 1e-3f;
        double want = exp((double)x);
        maxrel = fmax(maxrel, fabs(nf_fast_expf(x) - want) / want);
    }
    CHECK(maxrel < 1e-6, "fast exp max relative error %.3g", maxrel);
    float x[9] = {-30, -5, -1, -0.1f, 0, 0.1f, 1, 5, 30}, y[9], dx[9] = {0}, dy[9];
    nf_silu_forward(y, x, 9);
    for (int i = 0; i < 9; i++) dy[i] = 1.0f;
    nf_silu_backward(dx, dy, x, 9);
    for (int i = 0; i < 9; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x[i]));
        CHECK_CLOSE(y[i], x[i] * s, 1e-7, 1e-6, "silu");
        CHECK_CLOSE(dx[i], s * (1 + x[i] * (1 - s)), 1e-7, 1e-6, "silu'");
    }
}

/* ---------------------------------------------------------------- upsample */

static double up_loss(layer *ly)
{
    nf_upsample_forward(ly->out, ly->so, ly->in, ly->si, ly->C);
    return seq_dot(ly->out, ly->w, ly->C, ly->so);
}
static void up_grad(layer *ly)
{
    memset(ly->din, 0, ly->C * nf_seq_ld(ly->si) * sizeof(float));
    up_loss(ly);
    nf_upsample_backward(ly->din, ly->si, ly->w, ly->so, ly->C);
}
static void test_upsample(int Lin, int Lout)
{
    layer ly;
    memset(&ly, 0, sizeof ly);
    ly.C = 3, ly.si = nf_seq_make(2, Lin), ly.so = nf_seq_make(2, Lout);
    ly.in = rnd_seq(3, ly.si, 1), ly.din = zeros(3 * nf_seq_ld(ly.si));
    ly.out = zeros(3 * nf_seq_ld(ly.so)), ly.w = rnd_seq(3, ly.so, 1);
    ly.loss = up_loss, ly.grad = up_grad;
    size_t n_idx;
    size_t *idx = seq_idx(3, ly.si, &n_idx);
    fd_check(&ly, ly.in, ly.din, idx, n_idx, "upsample dinput");
    free(idx);
    /* Index rule: PyTorch nearest maps out l to floor(l * Lin / Lout) (float scale). */
    int ok = 1;
    for (int l = 0; l < Lout; l++) {
        int want = (int)floorf((float)l * ((float)Lin / (float)Lout));
        if (want > Lin - 1) want = Lin - 1;
        if (nf_nearest_src(l, Lin, Lout) != want) ok = 0;
    }
    CHECK(ok, "nearest index rule %d -> %d", Lin, Lout);
}

/* Nearest x2 upsampling + conv3 by polyphase (nf_upconv3_forward) against the same conv of
 * the resized signal summed in double: within float rounding of the terms' magnitudes,
 * for even and odd output lengths (the odd one's last sample has its own formula), a
 * batch (each example apart), and the gaps left zero. Not a backward pass (inference
 * only), so no finite differences. */
static void test_upconv(int B, int Lin, int Lout, int cin, int cout)
{
    nf_seq si = nf_seq_make(B, Lin), so = nf_seq_make(B, Lout);
    size_t ldi = nf_seq_ld(si), ldo = nf_seq_ld(so);
    float *in = rnd_seq(cin, si, 1), *w = rnd((size_t)cout * cin * 3, 0.3f), *bias = rnd((size_t)cout, 1);
    float *we = zeros((size_t)2 * cin * cout), *wo = zeros((size_t)2 * cin * cout);
    float *out = rnd((size_t)cout * ldo, 1), *scr = zeros((size_t)2 * cout * ldi);
    CHECK(nf_upconv3_applies(Lin, Lout), "upconv applies %d -> %d", Lin, Lout);
    nf_upconv3_weights(we, wo, w, cin, cout);
    nf_upconv3_forward(out, so, scr, in, si, we, wo, w, bias, cin, cout);
    int bad = 0, gaps = 0;
    double worst = 0;
    for (int c = 0; c < cout; c++)
        for (int b = 0; b < B; b++) {
            const float *seg = out + (size_t)c * ldo + (size_t)b * so.S;
            for (int n = 0; n < so.S; n++) {
                int l = n - so.off;
                if (l < 0 || l >= Lout) {
                    gaps += seg[n] != 0.0f;
                    continue;
                }
                double ref = bias[c], mag = fabs(bias[c]);
                for (int ci = 0; ci < cin; ci++)
                    for (int j = 0; j < 3; j++) {
                        int u = l + j - 1;
                        if (u < 0 || u >= Lout) continue;
                        double t = (double)w[((size_t)c * cin + ci) * 3 + j] *
                                   in[(size_t)ci * ldi + (size_t)b * si.S + si.off + nf_nearest_src(u, Lin, Lout)];
                        ref += t, mag += fabs(t);
                    }
                double err = fabs(seg[n] - ref) / (mag * 1e-6 + 1e-30);
                if (err > worst) worst = err;
                bad += err > 4.0 * (cin * 3 + 1); /* a few ulp of the magnitude per term */
            }
        }
    CHECK(bad == 0 && gaps == 0, "upconv B %d %d -> %d (%d -> %d ch): %d samples off (worst %.3g), %d gap values", B,
          Lin, Lout, cin, cout, bad, worst, gaps);
}

/* ---------------------------------------------------------------- dropout */

static double drop_loss(layer *ly)
{
    memcpy(ly->out, ly->in, ly->C * nf_seq_ld(ly->si) * sizeof(float));
    nf_dropout_forward(ly->out, ly->C, ly->si, ly->drop, 99, 3);
    return seq_dot(ly->out, ly->w, ly->C, ly->si);
}
static void drop_grad(layer *ly)
{
    memcpy(ly->din, ly->w, ly->C * nf_seq_ld(ly->si) * sizeof(float));
    drop_loss(ly);
    nf_dropout_backward(ly->din, ly->C, ly->si, ly->drop, 99, 3);
}
static void test_dropout(void)
{
    layer ly;
    memset(&ly, 0, sizeof ly);
    ly.C = 4, ly.si = nf_seq_make(3, 300), ly.drop = 0.25f;
    size_t ld = nf_seq_ld(ly.si);
    ly.in = rnd_seq(4, ly.si, 1), ly.din = zeros(4 * ld), ly.out = zeros(4 * ld);
    ly.w = rnd_seq(4, ly.si, 1);
    ly.loss = drop_loss, ly.grad = drop_grad;
    drop_loss(&ly);
    size_t zero = 0, n = 0;
    int scaled_ok = 1;
    for (int c = 0; c < 4; c++)
        for (int b = 0; b < 3; b++)
            for (int l = 0; l < 300; l++) {
                size_t i = c * ld + b * 302 + 1 + l;
                n++;
                if (ly.out[i] == 0.0f) zero++;
                else if (fabsf(ly.out[i] - ly.in[i] / 0.75f) > 1e-6f * (1 + fabsf(ly.in[i]))) scaled_ok = 0;
            }
    CHECK(scaled_ok, "dropout keeps and scales by 1/(1-p)");
    CHECK(fabs((double)zero / n - 0.25) < 0.03, "dropout rate %.3f", (double)zero / n);
    /* Example 2's mask does not depend on the batch: run example 2 alone as example... the
     * stream is keyed by the example index, so a batch of 1 reproduces example 0. */
    nf_seq one = nf_seq_make(1, 300);
    float *x1 = zeros(4 * 302);
    for (int c = 0; c < 4; c++) memcpy(x1 + c * 302, ly.in + c * ld, 302 * sizeof(float));
    nf_dropout_forward(x1, 4, one, 0.25f, 99, 3);
    int same = 1;
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 300; l++)
            if (x1[c * 302 + 1 + l] != ly.out[c * ld + 1 + l]) same = 0;
    CHECK(same, "dropout mask of example 0 is the same in a batch of 1 and of 3");
    size_t n_idx;
    size_t *idx = seq_idx(4, ly.si, &n_idx);
    fd_check(&ly, ly.in, ly.din, idx, n_idx, "dropout dinput");
    free(idx);
}

/* ---------------------------------------------------------------- attention */

static double att_loss(layer *ly)
{
    nf_attention_forward(ly->out, ly->st[0], ly->in, ly->scr, ly->C, ly->heads, ly->si);
    return seq_dot(ly->out, ly->w, ly->C, ly->si);
}
static void att_grad(layer *ly)
{
    memset(ly->din, 0, 3 * ly->C * nf_seq_ld(ly->si) * sizeof(float));
    att_loss(ly);
    nf_attention_backward(ly->din, ly->w, ly->in, ly->st[0], ly->scr, ly->C, ly->heads, ly->si);
}
static void test_attention(void)
{
    layer ly;
    memset(&ly, 0, sizeof ly);
    ly.C = 6, ly.heads = 2, ly.si = nf_seq_make(2, 9);
    size_t ld = nf_seq_ld(ly.si);
    ly.in = rnd_seq(18, ly.si, 1), ly.din = zeros(18 * ld), ly.out = zeros(6 * ld);
    ly.w = rnd_seq(6, ly.si, 1), ly.scr = zeros(2 * 81), ly.st[0] = zeros(2 * 2 * 9);
    ly.loss = att_loss, ly.grad = att_grad;
    /* Forward against a direct double-precision attention. */
    att_loss(&ly);
    double err = 0.0;
    int d = 3;
    for (int b = 0; b < 2; b++)
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 9; i++) {
                double sc[9], mx = -1e30, sum = 0;
                for (int j = 0; j < 9; j++) {
                    double s = 0;
                    for (int c = 0; c < d; c++)
                        s += (double)ly.in[(h * d + c) * ld + b * 11 + 1 + i] *
                             ly.in[(6 + h * d + c) * ld + b * 11 + 1 + j];
                    sc[j] = s / sqrt(d);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j < 9; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int c = 0; c < d; c++) {
                    double o = 0;
                    for (int j = 0; j < 9; j++) o += sc[j] / sum * ly.in[(12 + h * d + c) * ld + b * 11 + 1 + j];
                    err = fmax(err, fabs(o - ly.out[(h * d + c) * ld + b * 11 + 1 + i]));
                }
            }
    CHECK(err < 1e-5, "attention forward max err %.3g", err);
    size_t n_idx;
    size_t *idx = seq_idx(18, ly.si, &n_idx);
    fd_check(&ly, ly.in, ly.din, idx, n_idx, "attention dqkv");
    /* q, k and v rows separately (the sample above might favour one). */
    fd_check(&ly, ly.in, ly.din, idx, n_idx / 3, "attention dq");
    fd_check(&ly, ly.in, ly.din, idx + n_idx / 3, n_idx / 3, "attention dk");
    fd_check(&ly, ly.in, ly.din, idx + 2 * n_idx / 3, n_idx / 3, "attention dv");
    free(idx);
}

/* ---------------------------------------------------------------- embeddings */

static void test_embeddings(void)
{
    float t[2] = {0.0f, 537.0f}, emb[2 * 8];
    nf_timestep_embedding(emb, t, 2, 8);
    for (int i = 0; i < 4; i++) {
        double f = pow(10000.0, -i / 4.0);
        CHECK_CLOSE(emb[i], 0.0, 1e-7, 0, "sin(0)");
        CHECK_CLOSE(emb[4 + i], 1.0, 1e-7, 0, "cos(0)");
        CHECK_CLOSE(emb[8 + i], sin(537.0 * f), 1e-6, 0, "sin(t f)");
        CHECK_CLOSE(emb[12 + i], cos(537.0 * f), 1e-6, 0, "cos(t f)");
    }
    /* Class embedding: y = -1 and y out of range use the "no class" row. */
    float table[4 * 3], out[3 * 3] = {0}, dt[4 * 3] = {0}, g[3 * 3];
    for (int i = 0; i < 12; i++) table[i] = (float)i;
    for (int i = 0; i < 9; i++) g[i] = (float)(i + 1);
    int y[3] = {1, -1, 2};
    nf_class_embed_forward(out, y, table, 3, 3, 3);
    CHECK(out[0] == 3 && out[3] == 9 && out[6] == 6, "class rows %g %g %g", out[0], out[3], out[6]);
    nf_class_embed_backward(dt, g, y, 3, 3, 3);
    CHECK(dt[3] == 1 && dt[9] == 4 && dt[6] == 7 && dt[0] == 0, "class embedding gradient rows");
}

/* nf_gemm against a double reference for every transpose case and ragged sizes, and
 * column-position / thread-count independence. */
static void test_gemm(void)
{
    int M = 7, N = 37, K = 19;
    float *A = rnd((size_t)M * K, 1), *B = rnd((size_t)K * N, 1), *C = rnd((size_t)M * N, 1);
    float *C0 = malloc((size_t)M * N * 4);
    memcpy(C0, C, (size_t)M * N * 4);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            memcpy(C, C0, (size_t)M * N * 4);
            nf_gemm(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 2.0f, C, N);
            double err = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
                    err = fmax(err, fabs(2.0 * C0[i * N + j] + 0.5 * s - C[i * N + j]));
                }
            CHECK(err < 1e-5, "gemm ta %d tb %d: max err %.3g", ta, tb, err);
        }
    /* A column gives the same bits at any offset and thread count. */
    int W = 300;
    float *Bw = rnd((size_t)K * W, 1), *c1 = zeros((size_t)M * W), *c2 = zeros((size_t)M * W);
    nf_set_threads(1);
    nf_gemm(0, 0, M, W, K, 1, A, K, Bw, W, 0, c1, W);
    nf_set_threads(2);
    nf_gemm(0, 0, M, W - 5, K, 1, A, K, Bw + 5, W, 0, c2, W);
    int same = 1;
    for (int i = 0; i < M; i++)
        if (memcmp(c1 + i * W + 5, c2 + i * W, (size_t)(W - 5) * 4)) same = 0;
    CHECK(same, "gemm column bits independent of offset and threads");
    nf_set_threads(0);
    free(C0);
}

int main(void)
{
    test_silu_exp();
    test_gemm();
    /* kernel 3 pad 1 (the U-Net's conv), kernel 1, a dilated kernel 5, stride 2. */
    test_conv((nf_conv_dims){3, 4, 3, 1, 1, 1}, 3, 10, 1);
    test_conv((nf_conv_dims){5, 2, 1, 1, 1, 0}, 2, 7, 1);
    test_conv((nf_conv_dims){2, 3, 5, 1, 2, 4}, 2, 13, 4);
    /* "valid" padding: the input gradient takes the per-tap path (nf_conv1d_backward). */
    test_conv((nf_conv_dims){3, 2, 3, 1, 1, 0}, 2, 9, 1);
    test_conv((nf_conv_dims){2, 3, 3, 1, 2, 0}, 3, 12, 1);
    test_conv((nf_conv_dims){3, 3, 3, 2, 1, 1}, 3, 11, 1);
    test_conv((nf_conv_dims){3, 2, 3, 2, 1, 1}, 2, 10, 1);
    test_linear();
    test_groupnorm(0);
    test_groupnorm(1);
    test_groupnorm_paths();
    test_upsample(5, 10);
    test_upsample(5, 9);
    test_upsample(7, 19);
    test_upconv(1, 33, 65, 16, 16);  /* odd: the last sample apart */
    test_upconv(3, 40, 80, 5, 7);    /* even, a batch, cin != cout */
    test_upconv(2, 2, 3, 3, 2);      /* the shortest input */
    test_upconv(1, 1024, 2047, 8, 4);
    CHECK(!nf_upconv3_applies(7, 19) && !nf_upconv3_applies(1, 2) && !nf_upconv3_applies(5, 11) &&
              !nf_upconv3_applies(6, 6),
          "%s", "upconv applies only to x2 (or 2 Lin - 1) nearest resizing");
    test_dropout();
    test_attention();
    test_embeddings();
    CHECK(g_nbufs < 4096, "%d test buffers: raise g_bufs' size so that all are freed", g_nbufs);
    for (int i = 0; i < g_nbufs; i++) free(g_bufs[i]);
    return nf_test_done();
}
