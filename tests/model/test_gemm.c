/* nf_gemm: accuracy against a double-precision reference for all four transpose cases,
 * edge shapes and alpha/beta; and bit-identity of every element across thread counts,
 * positions inside a wider matrix (the batch position) and kernel paths (AVX2+FMA vs
 * the portable fmaf kernel), and with the operands packed once per call or per tile. */
#include "nf_nn.h"
#include "nf_rng.h"
#include "nf_unet.h"
#include "nf_test.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

/* Testing hook in model/nn_gemm.c: 0 auto, 1 portable, 2 AVX2+FMA, 3 AVX-512 (0 if
 * unavailable). */
int nf_gemm_force_path(int path);
/* The kernel paths this CPU runs (set in main): every check forces each in turn. */
static int g_paths[3], g_npaths;
/* Testing hook in model/nn_gemm.c: 1 = every tile packs its own operands (no shared
 * packing), 0 = automatic. */
void nf_gemm_force_unshared(int off);
/* Testing hook in model/nn_gemm.c: 1 = registered pre-packed weights are ignored. */
void nf_gemm_ignore_prepacked(int off);

static uint32_t lcg = 12345u;
static int rnd(int lo, int hi) /* uniform in [lo, hi] */
{
    lcg = lcg * 1664525u + 1013904223u;
    return lo + (int)((lcg >> 8) % (uint32_t)(hi - lo + 1));
}

static float *randm(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof(float));
    nf_randn(x, n, seed, 7, 0);
    return x;
}

/* op(X)(r, c) for a row-major X with leading dimension ld. */
static float at(const float *X, int ld, int trans, int r, int c)
{
    return trans ? X[(size_t)c * ld + r] : X[(size_t)r * ld + c];
}

typedef struct {
    int ta, tb, M, N, K;
    float alpha, beta;
} shape;

/* Runs one GEMM on fresh copies of C0 and returns the result (caller frees). */
static float *run(shape s, const float *A, int lda, const float *B, int ldb, const float *C0,
                  int ldc)
{
    /* C0 may be a window: its last row ends after N columns. */
    float *C = malloc((size_t)s.M * ldc * sizeof(float));
    memcpy(C, C0, ((size_t)(s.M - 1) * ldc + s.N) * sizeof(float));
    nf_gemm(s.ta, s.tb, s.M, s.N, s.K, s.alpha, A, lda, B, ldb, s.beta, C, ldc);
    return C;
}

static int same_bits(const float *x, const float *y, int M, int N, int ldx, int ldy)
{
    for (int i = 0; i < M; i++)
        if (memcmp(x + (size_t)i * ldx, y + (size_t)i * ldy, (size_t)N * sizeof(float)))
            return 0;
    return 1;
}

static void check_shape(shape s)
{
    /* Embed op(A) and op(B) in wider matrices so that the problem can also be run as
     * a window: rows [r0, r0+M) of a taller problem, columns [j0, j0+N) of a wider one. */
    int r0 = rnd(0, 7), j0 = rnd(0, 21);
    int Mw = s.M + r0 + rnd(0, 5), Nw = s.N + j0 + rnd(0, 19);
    int lda = s.ta ? Mw + 3 : s.K + 2, ldb = s.tb ? s.K + 1 : Nw + 5, ldc = Nw + 2;
    size_t asz = s.ta ? (size_t)s.K * lda : (size_t)Mw * lda;
    size_t bsz = s.tb ? (size_t)Nw * ldb : (size_t)s.K * ldb;
    float *A = randm(asz, 1 + lcg), *B = randm(bsz, 2 + lcg), *C0 = randm((size_t)Mw * ldc, 3 + lcg);
    if (s.beta == 0.0f)
        for (size_t i = 0; i < (size_t)Mw * ldc; i++) C0[i] = NAN; /* must not be read */
    /* The window's operands. */
    const float *Aw = s.ta ? A + r0 : A + (size_t)r0 * lda;
    const float *Bw = s.tb ? B + (size_t)j0 * ldb : B + j0;
    const float *Cw0 = C0 + (size_t)r0 * ldc + j0;

    nf_set_threads(1);
    float *c1 = run(s, Aw, lda, Bw, ldb, Cw0, ldc);

    /* Accuracy: the fixed order is a chain of <= 512 FMAs per chunk plus one addition
     * per chunk, so |err| <= gamma_n (|alpha| sum |a b| + |beta c|) with
     * n = min(K, 512) + K/512 + 3 (Higham, Accuracy and Stability, sec. 3.1). */
    double n = (s.K < 512 ? s.K : 512) + s.K / 512 + 3;
    double gam = n * FLT_EPSILON / 2 / (1 - n * FLT_EPSILON / 2);
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < s.M; i++)
        for (int j = 0; j < s.N; j++) {
            double acc = 0, mag = 0;
            for (int k = 0; k < s.K; k++) {
                double p = (double)at(Aw, lda, s.ta, i, k) * at(Bw, ldb, s.tb, k, j);
                acc += p;
                mag += fabs(p);
            }
            double c0 = s.beta == 0.0f ? 0.0 : Cw0[(size_t)i * ldc + j];
            double want = s.alpha * acc + s.beta * c0;
            double tol = gam * (fabs(s.alpha) * mag + fabs(s.beta * c0)) + 1e-30;
            double err = fabs(c1[(size_t)i * ldc + j] - want);
            if (!(err <= tol)) bad++;
            if (err / tol > worst) worst = err / tol;
        }
    CHECK(bad == 0, "ta=%d tb=%d M=%d N=%d K=%d alpha=%g beta=%g: %d elements off (worst %.3g x bound)",
          s.ta, s.tb, s.M, s.N, s.K, s.alpha, s.beta, bad, worst);

    /* Thread count. */
    nf_set_threads(2);
    float *c2 = run(s, Aw, lda, Bw, ldb, Cw0, ldc);
    CHECK(same_bits(c1, c2, s.M, s.N, ldc, ldc), "1 vs 2 threads differ: ta=%d tb=%d M=%d N=%d K=%d",
          s.ta, s.tb, s.M, s.N, s.K);

    /* Shared packing (operands packed once per call) vs per-tile packing. */
    nf_gemm_force_unshared(1);
    float *cu = run(s, Aw, lda, Bw, ldb, Cw0, ldc);
    nf_set_threads(1);
    float *cu1 = run(s, Aw, lda, Bw, ldb, Cw0, ldc);
    nf_set_threads(2);
    nf_gemm_force_unshared(0);
    CHECK(same_bits(c1, cu, s.M, s.N, ldc, ldc) && same_bits(c1, cu1, s.M, s.N, ldc, ldc),
          "per-tile packing differs from shared packing: ta=%d tb=%d M=%d N=%d K=%d", s.ta, s.tb,
          s.M, s.N, s.K);
    free(cu), free(cu1);

    /* Position: the whole wider problem, then compare the window. */
    shape w = s;
    w.M = Mw, w.N = Nw;
    float *cw = run(w, A, lda, B, ldb, C0, ldc);
    CHECK(same_bits(c1, cw + (size_t)r0 * ldc + j0, s.M, s.N, ldc, ldc),
          "window at (%d,%d) of %dx%d differs from the standalone GEMM: ta=%d tb=%d M=%d N=%d K=%d",
          r0, j0, Mw, Nw, s.ta, s.tb, s.M, s.N, s.K);

    /* Kernel paths: each against the automatic one. */
    static const char *names[] = {"", "portable", "AVX2", "AVX-512"};
    for (int q = 0; q < g_npaths; q++) {
        CHECK(nf_gemm_force_path(g_paths[q]), "%s path refused", names[g_paths[q]]);
        float *cv = run(s, Aw, lda, Bw, ldb, Cw0, ldc);
        CHECK(same_bits(c1, cv, s.M, s.N, ldc, ldc), "%s path differs: ta=%d tb=%d M=%d N=%d K=%d",
              names[g_paths[q]], s.ta, s.tb, s.M, s.N, s.K);
        free(cv);
    }
    nf_gemm_force_path(0);
    free(A), free(B), free(C0), free(c1), free(c2), free(cw);
}

/* nf_gemm_taps against nf_gemm on the im2col matrix written out: the same summation
 * order, so the same bits (both transpose cases of B, positive and negative tap steps,
 * a K of several super-chunks for the weight-gradient shape). */
static void check_taps(int tb, int M, int rows, int taps, int step, int Nk, float beta)
{
    int pad = (taps - 1) * (step < 0 ? -step : step);
    int ld = Nk + 2 * pad + 3;
    float *X = randm((size_t)rows * ld, 11);
    const float *base = X + pad; /* views base + t*step stay inside X */
    int KN = rows * taps; /* the tapped dimension */
    /* tb == 0: op(B) is KN x Nk; tb == 1: op(B) is Nk x KN (K = Nk). */
    float *Bx = malloc((size_t)KN * Nk * sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < taps; t++)
            for (int j = 0; j < Nk; j++)
                Bx[(size_t)(r * taps + t) * Nk + j] = base[(size_t)r * ld + t * step + j];
    int K = tb ? Nk : KN, N = tb ? KN : Nk;
    float *A = randm((size_t)M * K, 12);
    float *C1 = randm((size_t)M * N, 13), *C2 = malloc((size_t)M * N * sizeof(float));
    memcpy(C2, C1, (size_t)M * N * sizeof(float));
    nf_gemm_taps(0, tb, M, N, K, 1.0f, A, K, base, ld, taps, step, beta, C1, N);
    /* Bx holds op(B) for tb == 0 and op(B)^T for tb == 1 (rows = the tapped index). */
    nf_gemm(0, tb, M, N, K, 1.0f, A, K, Bx, Nk, beta, C2, N);
    CHECK(same_bits(C1, C2, M, N, N, N),
          "nf_gemm_taps tb %d M %d rows %d taps %d step %d K/N %d differs from nf_gemm on im2col",
          tb, M, rows, taps, step, Nk);
    free(X), free(Bx), free(A), free(C1), free(C2);
}

/* nf_gemm_convt (a conv weight read in place as its transpose) against nf_gemm_taps on
 * the transposed weights written out: the same bits, at 1 and 2 threads, packed per tile
 * or shared, on every kernel path too (the input gradient of a stride-1 conv). */
static void check_convt(int cin, int cout, int k, int N, int step, float beta)
{
    int K = cout * k, pad = (k - 1) * (step < 0 ? -step : step), ld = N + 2 * pad + 1;
    float *w = randm((size_t)cout * cin * k, 31), *wt = malloc((size_t)cin * K * sizeof(float));
    for (int co = 0; co < cout; co++)
        for (int ci = 0; ci < cin; ci++)
            for (int j = 0; j < k; j++) wt[(size_t)ci * K + co * k + j] = w[((size_t)co * cin + ci) * k + j];
    float *X = randm((size_t)cout * ld, 32), *C0 = randm((size_t)cin * N, 33);
    float *C1 = malloc((size_t)cin * N * sizeof(float)), *C2 = malloc((size_t)cin * N * sizeof(float));
    const float *base = X + pad;
    for (int v = 0; v < 4; v++) {
        nf_set_threads(v & 1 ? 2 : 1);
        nf_gemm_force_unshared(v >= 2);
        memcpy(C1, C0, (size_t)cin * N * sizeof(float));
        memcpy(C2, C0, (size_t)cin * N * sizeof(float));
        nf_gemm_taps(0, 0, cin, N, K, 1.0f, wt, K, base, ld, k, step, beta, C1, N);
        nf_gemm_convt(cin, N, K, k, 1.0f, w, base, ld, k, step, beta, C2, N);
        CHECK(same_bits(C1, C2, cin, N, N, N), "nf_gemm_convt cin %d cout %d k %d N %d (variant %d) differs", cin, cout,
              k, N, v);
    }
    nf_gemm_force_unshared(0);
    for (int q = 0; q < g_npaths; q++) {
        CHECK(nf_gemm_force_path(g_paths[q]), "path %d refused", g_paths[q]);
        memcpy(C2, C0, (size_t)cin * N * sizeof(float));
        nf_gemm_convt(cin, N, K, k, 1.0f, w, base, ld, k, step, beta, C2, N);
        nf_gemm_force_path(0);
        CHECK(same_bits(C1, C2, cin, N, N, N), "nf_gemm_convt kernel path %d differs: cin %d cout %d k %d",
              g_paths[q], cin, cout, k);
    }
    nf_set_threads(1);
    free(w), free(wt), free(X), free(C0), free(C1), free(C2);
}

/* Weights packed once and registered (nf_gemm_pack_a / nf_gemm_register_packed): the
 * same bits as packing per call, for plain and tapped GEMMs, 1 and 2 threads, over one
 * and several chunks of K; the registered panels really are what is read (scaling them
 * doubles the result); unregistering goes back to packing. */
static void check_prepacked(int M, int N, int K, int taps)
{
    CHECK(K % taps == 0, "check_prepacked: K %d is not rows x %d taps", K, taps); /* else B reads past X */
    int rows = K / taps, ld = N + 2 * taps + 1;
    float *A = randm((size_t)M * K, 21), *X = randm((size_t)rows * ld, 22);
    float *C0 = randm((size_t)M * N, 23), *C1 = malloc((size_t)M * N * sizeof(float));
    float *C2 = malloc((size_t)M * N * sizeof(float));
    size_t np = nf_gemm_packed_a_floats(M, K);
    float *P = aligned_alloc(64, (np * sizeof(float) + 63) / 64 * 64);
    nf_gemm_pack_a(M, K, A, P);
    for (int nt = 1; nt <= 2; nt++) {
        nf_set_threads(nt);
        memcpy(C1, C0, (size_t)M * N * sizeof(float));
        nf_gemm_taps(0, 0, M, N, K, 1.0f, A, K, X + taps, ld, taps, 1, 1.0f, C1, N);
        CHECK(nf_gemm_register_packed(A, M, K, P), "%s", "register");
        memcpy(C2, C0, (size_t)M * N * sizeof(float));
        nf_gemm_taps(0, 0, M, N, K, 1.0f, A, K, X + taps, ld, taps, 1, 1.0f, C2, N);
        CHECK(same_bits(C1, C2, M, N, N, N), "pre-packed A differs: M %d N %d K %d taps %d, %d threads", M, N, K,
              taps, nt);
        for (size_t i = 0; i < np; i++) P[i] *= 2.0f; /* exact: the sums double */
        memcpy(C2, C0, (size_t)M * N * sizeof(float));
        nf_gemm_taps(0, 0, M, N, K, 1.0f, A, K, X + taps, ld, taps, 1, 0.0f, C2, N);
        memcpy(C1, C0, (size_t)M * N * sizeof(float));
        nf_gemm_ignore_prepacked(1); /* 2 A X the usual way */
        nf_gemm_taps(0, 0, M, N, K, 2.0f, A, K, X + taps, ld, taps, 1, 0.0f, C1, N);
        nf_gemm_ignore_prepacked(0);
        CHECK(same_bits(C1, C2, M, N, N, N), "registered panels not used: M %d N %d K %d", M, N, K);
        for (size_t i = 0; i < np; i++) P[i] *= 0.5f;
        nf_gemm_unregister_packed(P, np);
        for (size_t i = 0; i < np; i++) P[i] = NAN; /* unregistered: must not be read */
        memcpy(C2, C0, (size_t)M * N * sizeof(float));
        nf_gemm_taps(0, 0, M, N, K, 1.0f, A, K, X + taps, ld, taps, 1, 1.0f, C2, N);
        memcpy(C1, C0, (size_t)M * N * sizeof(float));
        nf_gemm_taps(0, 0, M, N, K, 1.0f, A, K, X + taps, ld, taps, 1, 1.0f, C1, N);
        CHECK(same_bits(C1, C2, M, N, N, N) && isfinite(C2[0]), "after unregistering: M %d N %d K %d", M, N, K);
        nf_gemm_pack_a(M, K, A, P);
    }
    free(A), free(X), free(C0), free(C1), free(C2), free(P);
}

/* nf_gemm_packed (both operands in panels written by the caller) against nf_gemm on the
 * same matrices: the same bits, on 1 and 2 threads and on every kernel path (also
 * serially); last panels of 1 (riding on the one before), 2-4 (the column kernel) and
 * 5-15 columns. */
static void check_packed(int M, int N, int K)
{
    float *A = randm((size_t)M * K, 31), *B = randm((size_t)K * N, 32);
    float *Ap = aligned_alloc(64, nf_gemm_packed_a_floats(M, K) * sizeof(float));
    float *Bp = aligned_alloc(64, (nf_gemm_packed_b_floats(K, N) * sizeof(float) + 63) / 64 * 64);
    nf_gemm_pack_a(M, K, A, Ap);
    for (int j = 0; j < (N + 15) / 16 * 16; j++)
        for (int k = 0; k < K; k++)
            Bp[(size_t)(j / 16) * K * 16 + (size_t)k * 16 + j % 16] = j < N ? B[(size_t)k * N + j] : 0.0f;
    float *C1 = malloc((size_t)M * N * sizeof(float)), *C2 = malloc((size_t)M * N * sizeof(float));
    nf_gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N);
    for (int v = 0; v < 2 + g_npaths; v++) {
        nf_set_threads(v == 1 ? 2 : 1);
        if (v >= 2) CHECK(nf_gemm_force_path(g_paths[v - 2]), "path %d refused", g_paths[v - 2]);
        for (size_t i = 0; i < (size_t)M * N; i++) C2[i] = NAN;
        nf_gemm_packed(1, M, N, K, Ap, 0, Bp, 0, C2, 0, N);
        /* Serial too: the Winograd convs' call. */
        float *S = malloc((size_t)M * N * sizeof(float));
        for (size_t i = 0; i < (size_t)M * N; i++) S[i] = NAN;
        nf_gemm_packed_serial(1, M, N, K, Ap, 0, Bp, 0, S, 0, N);
        nf_gemm_force_path(0);
        CHECK(same_bits(C1, S, M, N, N, N), "nf_gemm_packed_serial M %d N %d K %d variant %d differs", M, N, K, v);
        free(S);
        CHECK(same_bits(C1, C2, M, N, N, N), "nf_gemm_packed M %d N %d K %d variant %d differs from nf_gemm", M, N,
              K, v);
    }
    /* Three problems in one call (the second and third: A scaled, B negated): each the
     * same as its own nf_gemm. */
    size_t pa = nf_gemm_packed_a_floats(M, K), pb = nf_gemm_packed_b_floats(K, N);
    float *A3 = aligned_alloc(64, 3 * pa * sizeof(float)), *B3 = aligned_alloc(64, 3 * pb * sizeof(float));
    float *C3 = malloc(3 * (size_t)M * N * sizeof(float)), *Cq = malloc((size_t)M * N * sizeof(float));
    float *Aq = malloc((size_t)M * K * sizeof(float)), *Bq = malloc((size_t)K * N * sizeof(float));
    for (int q = 0; q < 3; q++) {
        for (size_t i = 0; i < (size_t)M * K; i++) Aq[i] = A[i] * (float)(q + 1);
        nf_gemm_pack_a(M, K, Aq, A3 + q * pa);
        for (size_t i = 0; i < pb; i++) B3[q * pb + i] = q == 2 ? -Bp[i] : Bp[i];
    }
    nf_set_threads(2);
    nf_gemm_packed(3, M, N, K, A3, pa, B3, pb, C3, (size_t)M * N, N);
    for (int q = 0; q < 3; q++) {
        for (size_t i = 0; i < (size_t)M * K; i++) Aq[i] = A[i] * (float)(q + 1);
        for (size_t i = 0; i < (size_t)K * N; i++) Bq[i] = q == 2 ? -B[i] : B[i];
        nf_gemm(0, 0, M, N, K, 1.0f, Aq, K, Bq, N, 0.0f, Cq, N);
        CHECK(same_bits(Cq, C3 + (size_t)q * M * N, M, N, N, N), "nf_gemm_packed M %d N %d K %d: problem %d of 3 differs",
              M, N, K, q);
    }
    /* The same three on the calling thread alone (nf_gemm_packed_serial): the same bits. */
    float *S3 = malloc(3 * (size_t)M * N * sizeof(float));
    for (size_t i = 0; i < 3 * (size_t)M * N; i++) S3[i] = NAN;
    nf_gemm_packed_serial(3, M, N, K, A3, pa, B3, pb, S3, (size_t)M * N, N);
    CHECK(same_bits(C3, S3, 3 * M, N, N, N), "nf_gemm_packed_serial M %d N %d K %d differs from nf_gemm_packed", M, N, K);
    free(S3);
    nf_set_threads(1);
    free(A3), free(B3), free(C3), free(Cq), free(Aq), free(Bq);
    free(A), free(B), free(Ap), free(Bp), free(C1), free(C2);
}

/* nf_gemm_taps_bias (bias and residual added in the epilogue, C not read) against storing
 * them into C and accumulating with nf_gemm_taps: the same bits, on 1 and 2 threads,
 * shared and per-tile packing, every kernel path, pre-packed weights, and with the
 * residual being C itself. which: 0 neither (C = the product), 1 bias, 2 residual, 3 both,
 * 4 both with res == C.
 * Columns past N are never written. */
static void check_bias(int M, int N, int K, int taps, int which)
{
    int rows = K / taps, ld = N + 2 * taps + 1, ldc = N + 5;
    float *A = randm((size_t)M * K, 41), *X = randm((size_t)rows * ld, 42), *bias = randm((size_t)M, 43);
    float *R = randm((size_t)M * ldc, 44), *Cref = malloc((size_t)M * ldc * sizeof(float)),
          *C = malloc((size_t)M * ldc * sizeof(float));
    const float *bb = which & 1 ? bias : NULL;
    int with_res = which >= 2;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            float bv = bb ? bb[i] : 0.0f;
            Cref[(size_t)i * ldc + j] = with_res ? bv + R[(size_t)i * ldc + j] : bv;
        }
    nf_set_threads(1);
    nf_gemm_taps(0, 0, M, N, K, 1.0f, A, K, X + taps, ld, taps, 1, 1.0f, Cref, ldc);
    size_t np = nf_gemm_packed_a_floats(M, K);
    float *P = aligned_alloc(64, (np * sizeof(float) + 63) / 64 * 64);
    nf_gemm_pack_a(M, K, A, P);
    /* Variants: threads x packing (v & 3) on the automatic path, then on each forced
     * path, then pre-packed weights. */
    int nv = 4 + 4 * g_npaths + 2;
    for (int v = 0; v < nv; v++) {
        nf_set_threads(v & 1 ? 2 : 1);
        nf_gemm_force_unshared((v >> 1) & 1);
        int forced = v >= 4 && v < nv - 2, pre = v >= nv - 2;
        if (forced) CHECK(nf_gemm_force_path(g_paths[(v - 4) / 4]), "path %d refused", g_paths[(v - 4) / 4]);
        if (pre) CHECK(nf_gemm_register_packed(A, M, K, P), "%s", "register");
        if (which == 4) {
            memcpy(C, R, (size_t)M * ldc * sizeof(float));
        } else {
            for (size_t i = 0; i < (size_t)M * ldc; i++) C[i] = NAN;
        }
        nf_gemm_taps_bias(M, N, K, 1.0f, A, K, X + taps, ld, taps, 1, bb, which == 4 ? C : with_res ? R : NULL, C,
                          ldc);
        if (pre) nf_gemm_unregister_packed(P, np);
        nf_gemm_force_path(0);
        CHECK(same_bits(C, Cref, M, N, ldc, ldc), "nf_gemm_taps_bias M %d N %d K %d taps %d which %d variant %d differs",
              M, N, K, taps, which, v);
        int outside = 0;
        for (int i = 0; i < M; i++)
            for (int j = N; j < ldc; j++)
                outside += which == 4 ? memcmp(&C[(size_t)i * ldc + j], &R[(size_t)i * ldc + j], sizeof(float)) != 0
                                      : !isnan(C[(size_t)i * ldc + j]);
        CHECK(outside == 0, "nf_gemm_taps_bias wrote %d values past column %d", outside, N);
    }
    nf_gemm_force_unshared(0);
    nf_set_threads(1);
    free(A), free(X), free(bias), free(R), free(Cref), free(C), free(P);
}

int main(void)
{
    /* Forcing the AVX2 path must succeed exactly when the CPU has AVX2 and FMA. */
    int have_avx2 = nf_gemm_force_path(2);
    nf_gemm_force_path(0);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    CHECK(have_avx2 == (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")),
          "AVX2 path availability %d disagrees with the CPU flags", have_avx2);
#endif
    printf("AVX2+FMA path %s\n", have_avx2 ? "tested" : "unavailable on this CPU (portable path only)");
    /* The same for AVX-512F (the default path where it exists). */
    int have_avx512 = nf_gemm_force_path(3);
    nf_gemm_force_path(0);
#if defined(__x86_64__) && defined(__GNUC__)
    CHECK(have_avx512 == (have_avx2 && __builtin_cpu_supports("avx512f")),
          "AVX-512 path availability %d disagrees with the CPU flags", have_avx512);
#endif
    printf("AVX-512 path %s\n", have_avx512 ? "tested" : "unavailable on this CPU (not tested here)");
    g_paths[g_npaths++] = 1;
    if (have_avx2) g_paths[g_npaths++] = 2;
    if (have_avx512) g_paths[g_npaths++] = 3;

    /* Fixed edge cases: K = 1, tiles +- 1, K around the chunk (512) and super-chunk
     * (8192) boundaries, and the weight-gradient shape with a huge K. */
    static const shape fixed[] = {
        {0, 0, 1, 1, 1, 1.0f, 0.0f},      {0, 0, 6, 16, 1, 1.0f, 1.0f},
        {0, 0, 7, 17, 5, 2.0f, -0.5f},    {1, 0, 5, 15, 3, 1.0f, 0.0f},
        {0, 1, 13, 33, 511, 1.0f, 1.0f},  {1, 1, 12, 31, 512, -1.0f, 0.5f},
        {0, 0, 19, 47, 513, 0.5f, 0.0f},  {1, 0, 97, 257, 40, 1.0f, 1.0f},
        {0, 1, 4, 3, 8192, 1.0f, 0.0f},   {0, 1, 3, 5, 8193, 1.0f, 1.0f},
        {0, 1, 9, 18, 40000, 1.0f, 0.0f}, {0, 1, 32, 32, 20000, 1.0f, 1.0f},
        {1, 1, 2, 2, 17000, 0.25f, 2.0f}, {0, 0, 100, 300, 130, 1.0f, 1.0f},
        /* items of several packed A blocks sharing one B block, over several chunks */
        {0, 0, 200, 70, 1100, 1.0f, 1.0f}, {1, 0, 400, 40, 600, 0.5f, 0.0f},
        {0, 1, 250, 100, 9000, 1.0f, 1.0f},
        /* a narrow last panel (1-4 columns: the column kernel) over several chunks and
         * A blocks, in each mode */
        {0, 0, 130, 65, 1030, 0.5f, 1.0f}, {1, 0, 61, 34, 1100, 1.0f, 0.0f},
        {0, 1, 50, 19, 20000, 1.0f, 1.0f}, {0, 0, 97, 4, 700, -1.0f, 0.5f},
        /* the AVX-512 path's panel pairs: an odd count (one alone, then pairs), the extra
         * column on a pair and on a lone panel, a partial second panel of a pair */
        {0, 0, 13, 49, 600, 1.0f, 1.0f}, {1, 0, 8, 17, 1030, 0.5f, 0.0f},
        {0, 1, 25, 81, 70, -1.0f, 0.5f}, {0, 0, 31, 60, 9000, 1.0f, 1.0f},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) check_shape(fixed[i]);

    check_prepacked(128, 129, 384, 3);  /* a batch-1 conv: one chunk */
    check_prepacked(61, 40, 1539, 3);   /* several chunks, partial panels */
    check_prepacked(256, 33, 256, 1);   /* 1x1 */
    check_prepacked(96, 600, 1101, 3);  /* a batch-8-like width: tiles across columns too */
    check_packed(128, 1024, 128); /* a Winograd GEMM of the waveform network */
    check_packed(32, 129, 96);    /* a 1-column last panel */
    check_packed(61, 35, 512);    /* a 3-column last panel, the largest K */
    check_packed(7, 9, 1);        /* one partial panel */
    check_packed(100, 300, 17);   /* a 12-column last panel */
    check_taps(0, 13, 5, 3, 1, 70, 1.0f);
    check_taps(0, 40, 200, 3, -2, 300, 0.0f);
    check_taps(1, 9, 7, 3, 1, 20000, 1.0f);
    check_taps(1, 32, 4, 5, -1, 700, 0.5f);
    check_convt(128, 128, 3, 129, -1, 1.0f); /* batch 1: one chunk, a 1-column tail */
    check_convt(61, 256, 3, 65, -1, 0.0f);   /* K = 768: two chunks */
    check_convt(7, 300, 5, 40, -2, 0.5f);    /* 5 taps, dilation 2, three chunks */
    check_convt(33, 20, 1, 50, 0, 1.0f);     /* a 1x1 kernel */
    for (int which = 0; which <= 4; which++) {
        check_bias(128, 129, 384, 3, which); /* batch 1: one chunk, a 1-column tail */
        check_bias(61, 34, 1539, 3, which);  /* several chunks, a 2-column tail, partial panels */
        check_bias(97, 36, 700, 1, which);   /* a 4-column tail on the column kernel */
        check_bias(19, 70, 9000, 1, which);  /* several super-chunks: the slab sum's epilogue */
        check_bias(7, 5, 12, 3, which);      /* one tile, narrower than a panel */
    }

    /* Random shapes, all four transpose cases. */
    for (int t = 0; t < 40; t++) {
        shape s;
        s.ta = t & 1;
        s.tb = (t >> 1) & 1;
        s.M = rnd(1, 70);
        s.N = rnd(1, 90);
        s.K = rnd(0, 3) == 0 ? rnd(500, 1600) : rnd(1, 140);
        float alphas[] = {1.0f, -1.0f, 0.75f, 3.0f};
        float betas[] = {0.0f, 1.0f, 0.5f, -2.0f};
        s.alpha = alphas[rnd(0, 3)];
        s.beta = betas[rnd(0, 3)];
        check_shape(s);
    }
    return nf_test_done();
}
