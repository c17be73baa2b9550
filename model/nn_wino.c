/* Kernel-3 convolutions by Winograd's minimal filtering, F(4, 3) (Lavin & Gray 2016, in
 * one dimension): four outputs of a 3-tap filter from six inputs with six products
 * instead of twelve. Over channels that makes a stride-1, "same"-padded kernel-3 conv
 *
 *   V[x][ci][tile] = (B^T d)[x]        d: the tile's 6 inputs (positions 4j-1 .. 4j+4)
 *   U[x][co][ci]   = (G w[co][ci])[x]
 *   M[x]           = U[x] V[x]          six GEMMs, K = cin (the direct conv: one, K = 3 cin)
 *   y[co][4j + q]  = (A^T M[.][co][tile])[q] + bias (+ residual)
 *
 * half the multiply-adds of the direct conv, for two cheap elementwise passes (the input
 * and output transforms). Where the GEMMs dominate (long sequences: the waveform
 * network's levels, tens of thousands of columns) that is most of a forward pass.
 *
 * The tiles are cut into blocks (block_tiles), handed out to the threads one at a time;
 * a thread transforms its block's inputs, runs the block's six GEMMs and transforms
 * their outputs back, in scratch of its own, with no barrier between the steps (three
 * passes over the whole batch, each shared by the threads, waited for each other and
 * measured 8-10% slower at batch 8).
 *
 * Numerics: the transforms use the points 0, +-1, +-2 and infinity, whose matrices hold
 * small integers and 1/4, 1/6, 1/12, 1/24; the result differs from the direct sum by
 * rounding, not in kind (tests/model/test_wino.c: at most ~10 float epsilons times the
 * sum of the terms' magnitudes, measured). It is deterministic: tiles start at each
 * example's first column (never at a place that depends on the batch), each tile's column
 * of the GEMMs is computed alone (nf_gemm's guarantee), the vector and scalar transforms
 * do the same operations in the same order, and each transformed value comes from one
 * thread; so an example's output does not depend on the batch, its place in it, or the
 * thread count.
 *
 * On CPUs with AVX-512F the transforms take a whole 16-tile panel at a time (the AVX2
 * code takes eight); every path does the scalar formulas' operations in the same order
 * (WINO_IN_VEC, WINO_OUT_VEC), so the bits do not depend on the CPU's vector width.
 *
 * Which convs: nf_wino_applies() (kernel 3, stride 1, same padding, 16-512 input and 16+
 * output channels, examples of 192 or more). The decision depends only on the layer and
 * the example's length, never on the batch. */
#include "nf_nn.h"

#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

/* The scalar transforms must round exactly as the vector ones (separate multiplies and
 * adds): no contraction into FMA, even where the compiler targets FMA (GCC in ISO C mode
 * does not contract; clang needs telling). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define NT nf_nn_threads()
/* Examples shorter than this use the direct conv. Its transformed weights are twice the
 * direct conv's, read from memory once a forward, while it halves the multiplies per
 * output: at batch 1 (same-process A/B) ref-stft's 129 frames measured 7% slower a
 * forward with Winograd, the default model's 251 4% faster (9% at batch 4, its training
 * step 3% at batch 16); an isolated conv with its weights in cache is faster at any
 * length from 129 up. (Measured with the AVX2 kernels; the AVX-512 ones speed up the
 * GEMMs and the transforms alike, and these thresholds were not measured again.) */
#define WINO_MIN_L 192
#define WINO_MIN_CH 16       /* as do layers with fewer input or output channels */
/* The up-conv from this input length (measured, same-process A/B at batch 1: the default
 * model's forward 5-6% faster with its inputs of 126 and 252 (63 no faster), ref-wave's
 * (2048-8192) 4-5% at batches 1 and 8, ref-stft's 33 and 65 no faster). */
#define WINO_UP_MIN_L 96
#define WINO_BLOCK_FLOATS (640 * 1024) /* V and M of a block: at most 2.5 MB (see block_tiles) */

static int g_mode; /* testing hook: 0 auto, 1 never, 2 whenever the shape allows */

/* Testing hook (declared in the tests): see g_mode. Not thread safe. */
void nf_wino_force(int mode);
void nf_wino_force(int mode) { g_mode = mode; }

static int g_tpath; /* testing hook: 0 automatic, else the transforms' path + 1 */

/* Testing hook (declared in the tests): the transforms' path, 0 automatic, 1 scalar, 2 AVX2,
 * 3 AVX-512F; returns 0 if this CPU does not run it. Not thread safe. */
int nf_wino_force_path(int path);
int nf_wino_force_path(int path)
{
    if (path != 0 && !nf_cpu_runs_path(path)) return 0;
    g_tpath = path;
    return 1;
}

/* The transforms' vector path: 0 scalar, 1 AVX2 (8 tiles at once), 2 also AVX-512F (16). */
static int transform_path(void)
{
    if (g_tpath) return g_tpath - 1;
    return nf_cpu_vec_level();
}

int nf_wino_applies(nf_conv_dims d, nf_seq si, nf_seq so)
{
    if (g_mode == 1) return 0;
    if (d.k != 3 || d.stride != 1 || d.dil != 1 || d.pad != 1) return 0;
    if (si.B != so.B || si.L != so.L || si.S != so.S || si.off != so.off) return 0;
    /* Position -1 and L of each example are read as the zero padding: one zero column
     * is needed either side. */
    if (si.off < 1 || si.S - si.off - si.L < 1) return 0;
    if (d.cin > NF_GEMM_PACKED_KMAX) return 0; /* the transformed input as one chunk of K */
    if (g_mode == 2) return 1;
    return si.L >= WINO_MIN_L && d.cin >= WINO_MIN_CH && d.cout >= WINO_MIN_CH;
}

/* ---- scratch (per calling thread, grows, never freed: like the GEMM's) ---- */
static _Thread_local float *tl_buf;
static _Thread_local size_t tl_cap;

static float *scratch(size_t n)
{
    if (n > tl_cap) {
        free(tl_buf);
        tl_buf = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        tl_cap = tl_buf ? n : 0;
    }
    return tl_buf;
}

/* ---- the transforms ---- */
/* U[x][co][ci] = G w[co][ci][0..2]. */
static void weights(float *U, const float *w, int cout, int cin)
{
    size_t n = (size_t)cout * cin;
    for (size_t i = 0; i < n; i++) {
        float w0 = w[3 * i], w1 = w[3 * i + 1], w2 = w[3 * i + 2];
        U[i] = 0.25f * w0;
        U[n + i] = -(w0 + w1 + w2) / 6.0f;
        U[2 * n + i] = -(w0 - w1 + w2) / 6.0f;
        U[3 * n + i] = w0 / 24.0f + w1 / 12.0f + w2 / 6.0f;
        U[4 * n + i] = w0 / 24.0f - w1 / 12.0f + w2 / 6.0f;
        U[5 * n + i] = w2;
    }
}

/* ---- transformed weights packed once (an inference network's, at model load) ---- */
size_t nf_wino_packed_floats(int cout, int cin) { return 6 * nf_gemm_packed_a_floats(cout, cin); }

/* The six transformed weights U (scratch of 6 cout cin floats) packed at dst. */
static void transform_pack(float *U, const float *w, int cout, int cin, float *dst)
{
    size_t n = (size_t)cout * cin, pa = nf_gemm_packed_a_floats(cout, cin);
    weights(U, w, cout, cin);
    for (int x = 0; x < 6; x++) nf_gemm_pack_a(cout, cin, U + x * n, dst + x * pa);
}

int nf_wino_pack(const float *w, int cout, int cin, float *dst)
{
    float *U = malloc((size_t)6 * cout * cin * sizeof(float));
    if (!U) return -1;
    transform_pack(U, w, cout, cin, dst);
    free(U);
    return 0;
}

/* B^T d for one tile, d[s] at positions 4j - 1 + s. */
static inline void in_tile(float v[6], const float d[6])
{
    v[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    v[1] = -4.0f * d[1] - 4.0f * d[2] + d[3] + d[4];
    v[2] = 4.0f * d[1] - 4.0f * d[2] - d[3] + d[4];
    v[3] = -2.0f * d[1] - d[2] + 2.0f * d[3] + d[4];
    v[4] = 2.0f * d[1] - d[2] - 2.0f * d[3] + d[4];
    v[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

/* A^T m for one tile. */
static inline void out_tile(float y[4], const float m[6])
{
    y[0] = m[0] + m[1] + m[2] + m[3] + m[4];
    y[1] = m[1] - m[2] + 2.0f * m[3] - 2.0f * m[4];
    y[2] = m[1] + m[2] + 4.0f * m[3] + 4.0f * m[4];
    y[3] = m[1] - m[2] + 8.0f * m[3] - 8.0f * m[4] + m[5];
}

typedef struct {
    const float *in, *bias, *res;
    const float *w;       /* up: the conv weights (an odd output length's last sample) */
    const float *radd;    /* [B][cout]: added to the output rows (NULL: nothing) */
    float *out, *V, *M;
    nf_seq s;        /* the input's layout (and the output's, unless up) */
    int up;          /* nf_wino_upconv3: M has 2 cout rows (even, odd phase), output in so */
    nf_seq so;
    int TB;          /* tiles per example */
    long g0, nt;     /* this block's tiles: global tiles [g0, g0 + nt) */
    int cin, cout;
} wino_job;

#ifdef HAVE_X86
/* in_tile and out_tile on the lanes of W-bit vectors (one tile a lane), for the AVX2 (8
 * tiles) and AVX-512 (16) blocks: the same operations in the same order as the scalar
 * formulas, so every path gives the same bits. */
#define WINO_IN_VEC(W, d, v)                                                                                         \
    do {                                                                                                             \
        const __m##W c2 = _mm##W##_set1_ps(2.0f), c4 = _mm##W##_set1_ps(4.0f), c5 = _mm##W##_set1_ps(5.0f);          \
        v[0] = _mm##W##_add_ps(_mm##W##_sub_ps(_mm##W##_mul_ps(c4, d[0]), _mm##W##_mul_ps(c5, d[2])), d[4]);        \
        v[1] = _mm##W##_add_ps(_mm##W##_add_ps(_mm##W##_sub_ps(_mm##W##_mul_ps(_mm##W##_set1_ps(-4.0f), d[1]),      \
                                                               _mm##W##_mul_ps(c4, d[2])),                          \
                                               d[3]),                                                               \
                               d[4]);                                                                               \
        v[2] = _mm##W##_add_ps(                                                                                      \
            _mm##W##_sub_ps(_mm##W##_sub_ps(_mm##W##_mul_ps(c4, d[1]), _mm##W##_mul_ps(c4, d[2])), d[3]), d[4]);     \
        v[3] = _mm##W##_add_ps(_mm##W##_add_ps(_mm##W##_sub_ps(_mm##W##_mul_ps(_mm##W##_set1_ps(-2.0f), d[1]), d[2]), \
                                               _mm##W##_mul_ps(c2, d[3])),                                          \
                               d[4]);                                                                               \
        v[4] = _mm##W##_add_ps(                                                                                      \
            _mm##W##_sub_ps(_mm##W##_sub_ps(_mm##W##_mul_ps(c2, d[1]), d[2]), _mm##W##_mul_ps(c2, d[3])), d[4]);     \
        v[5] = _mm##W##_add_ps(_mm##W##_sub_ps(_mm##W##_mul_ps(c4, d[1]), _mm##W##_mul_ps(c5, d[3])), d[5]);        \
    } while (0)
#define WINO_OUT_VEC(W, m, y)                                                                                        \
    do {                                                                                                             \
        const __m##W c2 = _mm##W##_set1_ps(2.0f), c4 = _mm##W##_set1_ps(4.0f), c8 = _mm##W##_set1_ps(8.0f);          \
        y[0] = _mm##W##_add_ps(_mm##W##_add_ps(_mm##W##_add_ps(_mm##W##_add_ps(m[0], m[1]), m[2]), m[3]), m[4]);     \
        y[1] = _mm##W##_sub_ps(_mm##W##_add_ps(_mm##W##_sub_ps(m[1], m[2]), _mm##W##_mul_ps(c2, m[3])),              \
                               _mm##W##_mul_ps(c2, m[4]));                                                          \
        y[2] = _mm##W##_add_ps(_mm##W##_add_ps(_mm##W##_add_ps(m[1], m[2]), _mm##W##_mul_ps(c4, m[3])),              \
                               _mm##W##_mul_ps(c4, m[4]));                                                          \
        y[3] = _mm##W##_add_ps(                                                                                      \
            _mm##W##_sub_ps(_mm##W##_add_ps(_mm##W##_sub_ps(m[1], m[2]), _mm##W##_mul_ps(c8, m[3])),                 \
                            _mm##W##_mul_ps(c8, m[4])),                                                              \
            m[5]);                                                                                                   \
    } while (0)
/* Then per 128-bit block k of the tiles' outputs y[q] (tile i's output q in lane i), v[r]
 * holds tile 4 k + r's four outputs in order. */
#define WINO_OUT_INTERLEAVE(W, y, v)                                                                                 \
    do {                                                                                                             \
        __m##W l01 = _mm##W##_unpacklo_ps(y[0], y[1]), h01 = _mm##W##_unpackhi_ps(y[0], y[1]);                       \
        __m##W l23 = _mm##W##_unpacklo_ps(y[2], y[3]), h23 = _mm##W##_unpackhi_ps(y[2], y[3]);                       \
        v[0] = _mm##W##_shuffle_ps(l01, l23, 0x44), v[1] = _mm##W##_shuffle_ps(l01, l23, 0xEE);                      \
        v[2] = _mm##W##_shuffle_ps(h01, h23, 0x44), v[3] = _mm##W##_shuffle_ps(h01, h23, 0xEE);                      \
    } while (0)

/* Eight tiles from x (tile 0's position -1): e[q][i] = x[4 i + q], q < 6. */
__attribute__((target("avx2,fma"))) static void in_block_avx2(const float *x, float *v, size_t vs)
{
    __m256 a0 = _mm256_loadu_ps(x), a1 = _mm256_loadu_ps(x + 8), a2 = _mm256_loadu_ps(x + 16),
           a3 = _mm256_loadu_ps(x + 24);
    __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
    __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
    /* Tiles in the order 0 2 4 6 1 3 5 7, then put back in order. */
    const __m256i nat = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256 d0 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0x44), nat);
    __m256 d1 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0xEE), nat);
    __m256 d2 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0x44), nat);
    __m256 d3 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0xEE), nat);
    /* d4, d5: the next tile's d0, d1 (tile 8's from x[32], x[33]). */
    const __m256i up = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
    __m256 d[6] = {d0, d1, d2, d3,
                   _mm256_blend_ps(_mm256_permutevar8x32_ps(d0, up), _mm256_broadcast_ss(x + 32), 0x80),
                   _mm256_blend_ps(_mm256_permutevar8x32_ps(d1, up), _mm256_broadcast_ss(x + 33), 0x80)};
    __m256 t[6];
    WINO_IN_VEC(256, d, t);
    for (int q = 0; q < 6; q++) _mm256_storeu_ps(v + q * vs, t[q]);
}

/* A^T m of eight tiles from m[x][i] (stride ms), interleaved: o[k] = outputs 8k .. 8k+7. */
__attribute__((target("avx2,fma"))) static inline void out_core(const float *m, size_t ms, __m256 o[4])
{
    __m256 mv[6], y[4];
    for (int x = 0; x < 6; x++) mv[x] = _mm256_loadu_ps(m + x * ms);
    WINO_OUT_VEC(256, mv, y);
    /* Interleave: output 4 i + q = y[q][i]. */
    __m256 v[4];
    WINO_OUT_INTERLEAVE(256, y, v);
    o[0] = _mm256_permute2f128_ps(v[0], v[1], 0x20);
    o[1] = _mm256_permute2f128_ps(v[2], v[3], 0x20);
    o[2] = _mm256_permute2f128_ps(v[0], v[1], 0x31);
    o[3] = _mm256_permute2f128_ps(v[2], v[3], 0x31);
}

/* Outputs of N tiles (N = W / 32) from m[x][i] (stride ms) by CORE, plus bias, residual
 * and (radd) e, to y[0 .. 4 N). */
#define DEF_OUT_BLOCK(NAME, W, N, ATTR, CORE)                                                                        \
    ATTR static void NAME(const float *m, size_t ms, float bias, const float *res, int radd, float e, float *y)       \
    {                                                                                                                \
        __m##W o[4];                                                                                                 \
        CORE(m, ms, o);                                                                                              \
        __m##W b = _mm##W##_set1_ps(bias);                                                                           \
        for (int k = 0; k < 4; k++) {                                                                                \
            __m##W x = _mm##W##_add_ps(o[k], b);                                                                     \
            if (res) x = _mm##W##_add_ps(x, _mm##W##_loadu_ps(res + N * k));                                        \
            if (radd) x = _mm##W##_add_ps(x, _mm##W##_set1_ps(e));                                                   \
            _mm##W##_storeu_ps(y + N * k, x);                                                                        \
        }                                                                                                            \
    }
DEF_OUT_BLOCK(out_block_avx2, 256, 8, __attribute__((target("avx2,fma"))), out_core)

/* The up-conv's (nf_wino_upconv3) N tiles: the even phase from me, the odd from mo, each
 * plus bias, to y[2 p] and y[2 p + 1] for input positions p (8 N outputs). STORE2(y, lo,
 * hi) writes 2 N outputs whose pairs are in lo and hi as unpacklo/unpackhi leave them. */
#define DEF_OUT_UP_BLOCK(NAME, W, N, ATTR, CORE, STORE2)                                                             \
    ATTR static void NAME(const float *me, const float *mo, size_t ms, float bias, float *y)                         \
    {                                                                                                                \
        __m##W e[4], o[4], b = _mm##W##_set1_ps(bias);                                                               \
        CORE(me, ms, e);                                                                                             \
        CORE(mo, ms, o);                                                                                             \
        for (int k = 0; k < 4; k++) {                                                                                \
            __m##W xe = _mm##W##_add_ps(e[k], b), xo = _mm##W##_add_ps(o[k], b);                                     \
            STORE2(y + 2 * N * k, _mm##W##_unpacklo_ps(xe, xo), _mm##W##_unpackhi_ps(xe, xo));                       \
        }                                                                                                            \
    }
#define STORE2_256(y, lo, hi)                                                                                        \
    do {                                                                                                             \
        __m256 lo_ = (lo), hi_ = (hi);                                                                               \
        _mm256_storeu_ps(y, _mm256_permute2f128_ps(lo_, hi_, 0x20));                                                 \
        _mm256_storeu_ps(y + 8, _mm256_permute2f128_ps(lo_, hi_, 0x31));                                             \
    } while (0)
DEF_OUT_UP_BLOCK(out_up_block_avx2, 256, 8, __attribute__((target("avx2,fma"))), out_core, STORE2_256)

/* The same three on 16 tiles (one whole B panel) where the CPU has AVX-512F: the same
 * operations per lane, so the same bits. */
#define AVX512 __attribute__((target("avx512f,avx2,fma")))

/* Sixteen tiles from x (tile 0's position -1). */
AVX512 static void in_block_avx512(const float *x, float *v, size_t vs)
{
    __m512 a0 = _mm512_loadu_ps(x), a1 = _mm512_loadu_ps(x + 16), a2 = _mm512_loadu_ps(x + 32),
           a3 = _mm512_loadu_ps(x + 48);
    /* [e_q of tiles 0-7 | e_q+1 of tiles 0-7] from 32 inputs, q = 0 and 2. */
    const __m512i i01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i i23 = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
    __m512 lo01 = _mm512_permutex2var_ps(a0, i01, a1), hi01 = _mm512_permutex2var_ps(a2, i01, a3);
    __m512 lo23 = _mm512_permutex2var_ps(a0, i23, a1), hi23 = _mm512_permutex2var_ps(a2, i23, a3);
    __m512 d0 = _mm512_shuffle_f32x4(lo01, hi01, 0x44), d1 = _mm512_shuffle_f32x4(lo01, hi01, 0xEE);
    __m512 d2 = _mm512_shuffle_f32x4(lo23, hi23, 0x44), d3 = _mm512_shuffle_f32x4(lo23, hi23, 0xEE);
    /* d4, d5: d0, d1 one tile on (tile 16's from x[64], x[65]); then in_tile's operations. */
    const __m512i nx = _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    __m512 d[6] = {d0, d1, d2, d3, _mm512_permutex2var_ps(d0, nx, _mm512_set1_ps(x[64])),
                   _mm512_permutex2var_ps(d1, nx, _mm512_set1_ps(x[65]))};
    __m512 t[6];
    WINO_IN_VEC(512, d, t);
    for (int q = 0; q < 6; q++) _mm512_storeu_ps(v + q * vs, t[q]);
}

/* A^T m of sixteen tiles, interleaved: o[k] = outputs 16k .. 16k+15. */
AVX512 static inline void out_core512(const float *m, size_t ms, __m512 o[4])
{
    __m512 mv[6], y[4];
    for (int x = 0; x < 6; x++) mv[x] = _mm512_loadu_ps(m + x * ms);
    WINO_OUT_VEC(512, mv, y);
    __m512 v[4];
    WINO_OUT_INTERLEAVE(512, y, v);
    /* Transpose the 4 x 4 blocks: o[k] = blocks k of v[0 .. 3]. */
    __m512 t0 = _mm512_shuffle_f32x4(v[0], v[1], 0x44), t1 = _mm512_shuffle_f32x4(v[2], v[3], 0x44);
    __m512 t2 = _mm512_shuffle_f32x4(v[0], v[1], 0xEE), t3 = _mm512_shuffle_f32x4(v[2], v[3], 0xEE);
    o[0] = _mm512_shuffle_f32x4(t0, t1, 0x88);
    o[1] = _mm512_shuffle_f32x4(t0, t1, 0xDD);
    o[2] = _mm512_shuffle_f32x4(t2, t3, 0x88);
    o[3] = _mm512_shuffle_f32x4(t2, t3, 0xDD);
}

DEF_OUT_BLOCK(out_block_avx512, 512, 16, AVX512, out_core512)

#define STORE2_512(y, lo, hi)                                                                                        \
    do {                                                                                                             \
        __m512 lo_ = (lo), hi_ = (hi);                                                                               \
        __m512 t0 = _mm512_shuffle_f32x4(lo_, hi_, 0x44), t1 = _mm512_shuffle_f32x4(lo_, hi_, 0xEE);                 \
        _mm512_storeu_ps(y, _mm512_shuffle_f32x4(t0, t0, 0xD8));                                                     \
        _mm512_storeu_ps(y + 16, _mm512_shuffle_f32x4(t1, t1, 0xD8));                                                \
    } while (0)
DEF_OUT_UP_BLOCK(out_up_block_avx512, 512, 16, AVX512, out_core512, STORE2_512)
#endif

/* Where tile column c of row ci of V[x] goes: the GEMM's B panels (nf_gemm_packed), so
 * that the GEMMs read the transformed input as it is written, with no packing pass. */
static inline size_t vpos(int cin, int ci, long c)
{
    return (size_t)(c / NF_GEMM_PANEL_N) * cin * NF_GEMM_PANEL_N + (size_t)ci * NF_GEMM_PANEL_N
           + (size_t)(c % NF_GEMM_PANEL_N);
}

/* One tile column c (global tile g) of input row ci, by the formulas. */
static inline void in_one(const wino_job *J, int ci, long c, long g, size_t vs)
{
    const nf_seq s = J->s;
    int b = (int)(g / J->TB), j = (int)(g % J->TB);
    const float *x = J->in + (size_t)ci * nf_seq_ld(s) + (size_t)b * s.S + s.off; /* position 0 */
    float d[6], t[6];
    for (int q = 0; q < 6; q++) {
        int p = 4 * j - 1 + q;
        d[q] = p <= s.L ? x[p] : 0.0f; /* p = -1 and L: the zero columns */
    }
    in_tile(t, d);
    float *v = J->V + vpos(J->cin, ci, c);
    for (int q = 0; q < 6; q++) v[q * vs] = t[q];
}

/* Panels of V[x] (at V + x vs) go out in groups of WINO_GROUP: per input row, the group's
 * 64 G tiles read 256 G + 2 consecutive inputs (panel by panel over every row, the reads
 * jumped between rows a whole row apart every 34 floats, which the prefetchers do not
 * follow: 13% of a batch-8 forward), and each panel's row is written whole, so the
 * panels fill front to back. Tiles past the block are zero. */
#define WINO_GROUP 4

static void in_groups(void *ctx, int q0, int q1)
{
    const wino_job *J = ctx;
    const nf_seq s = J->s;
    const size_t ld = nf_seq_ld(s), vs = nf_gemm_packed_b_floats(J->cin, (int)J->nt);
    const int cin = J->cin;
#ifdef HAVE_X86
    const int vec = transform_path();
#endif
    const long halves = (J->nt + NF_GEMM_PANEL_N - 1) / NF_GEMM_PANEL_N * 2; /* half panels of this block */
    for (int q = q0; q < q1; q++) {
        long h0 = (long)q * WINO_GROUP * 2, h1 = h0 + WINO_GROUP * 2 < halves ? h0 + WINO_GROUP * 2 : halves;
        for (int ci = 0; ci < cin; ci++) {
            const float *row = J->in + (size_t)ci * ld;
            for (long h = h0; h < h1; h++) {
                long c0 = 8 * h, g0 = J->g0 + c0;
                int n = J->nt - c0 < 8 ? (int)(J->nt - c0) : 8; /* tiles of this half panel, */
                if (n < 0) n = 0;                                  /* none in the last's padding */
                int b = (int)(g0 / J->TB), j = (int)(g0 % J->TB);
#ifdef HAVE_X86
                /* A whole panel: sixteen tiles of one example whose 66 inputs (to position
                 * 4 j + 64) are inside. */
                if (vec == 2 && !(h & 1) && h + 1 < h1 && J->nt - c0 >= 16 && j + 16 <= J->TB && 4 * j + 64 <= s.L) {
                    const float *x = row + (size_t)b * s.S + s.off + 4 * j - 1;
                    if (h == h0 && ci + 1 < cin)
                        for (int k = 0; k < 64 * WINO_GROUP + 2; k += 16) __builtin_prefetch(x + ld + k, 0, 3);
                    in_block_avx512(x, J->V + vpos(cin, ci, c0), vs);
                    h++;
                    continue;
                }
                /* Eight tiles of one example whose 34 inputs (to position 4 j + 32) are inside. */
                if (vec && n == 8 && j + 8 <= J->TB && 4 * j + 32 <= s.L) {
                    const float *x = row + (size_t)b * s.S + s.off + 4 * j - 1;
                    if (h == h0 && ci + 1 < cin) /* the next row's inputs of this group */
                        for (int k = 0; k < 64 * WINO_GROUP + 2; k += 16) __builtin_prefetch(x + ld + k, 0, 3);
                    in_block_avx2(x, J->V + vpos(cin, ci, c0), vs);
                    continue;
                }
#endif
                for (int i = 0; i < n; i++) in_one(J, ci, c0 + i, g0 + i, vs);
                for (int i = n; i < 8; i++)
                    for (int x = 0; x < 6; x++) J->V[x * vs + vpos(cin, ci, c0 + i)] = 0.0f;
            }
        }
    }
}

/* Output rows [r0, r1): the tiles' outputs, plus bias and residual, written where valid. */
static void out_up_rows(const wino_job *J, int r0, int r1);

static void out_rows(void *ctx, int r0, int r1)
{
    const wino_job *J = ctx;
    if (J->up) {
        out_up_rows(J, r0, r1);
        return;
    }
    const nf_seq s = J->s;
    const size_t ld = nf_seq_ld(s), ms = (size_t)J->cout * J->nt;
#ifdef HAVE_X86
    const int vec = transform_path();
#endif
    for (int co = r0; co < r1; co++) {
        const float *m = J->M + (size_t)co * J->nt;
        const float bias = J->bias ? J->bias[co] : 0.0f;
        for (long g = J->g0, end = J->g0 + J->nt; g < end;) {
            int b = (int)(g / J->TB), j = (int)(g % J->TB);
            int jend = J->TB - j < end - g ? J->TB : j + (int)(end - g);
            size_t o0 = (size_t)co * ld + (size_t)b * s.S + s.off; /* position 0 */
            float *y = J->out + o0;
            const float *r = J->res ? J->res + o0 : NULL;
            const float e = J->radd ? J->radd[(size_t)b * J->cout + co] : 0.0f;
            for (; j < jend; j++, g++, m++) {
#ifdef HAVE_X86
                if (vec == 2 && j + 16 <= jend && 4 * j + 64 <= s.L) {
                    out_block_avx512(m, ms, bias, r ? r + 4 * j : NULL, J->radd != NULL, e, y + 4 * j);
                    j += 15, g += 15, m += 15;
                    continue;
                }
                if (vec && j + 8 <= jend && 4 * j + 32 <= s.L) {
                    out_block_avx2(m, ms, bias, r ? r + 4 * j : NULL, J->radd != NULL, e, y + 4 * j);
                    j += 7, g += 7, m += 7;
                    continue;
                }
#endif
                float mm[6], t[4];
                for (int x = 0; x < 6; x++) mm[x] = m[x * ms];
                out_tile(t, mm);
                for (int q = 0; q < 4 && 4 * j + q < s.L; q++) {
                    float val = t[q] + bias;
                    if (r) val = val + r[4 * j + q];
                    y[4 * j + q] = J->radd ? val + e : val;
                }
            }
        }
    }
}

/* The up-conv's output rows [r0, r1): row co from M rows co (even phase) and cout + co
 * (odd), input position p to output positions 2 p and 2 p + 1 of layout so. */
static void out_up_rows(const wino_job *J, int r0, int r1)
{
    const nf_seq s = J->s, so = J->so;
    const size_t ldo = nf_seq_ld(so), ms = (size_t)2 * J->cout * J->nt;
#ifdef HAVE_X86
    const int vec = transform_path();
#endif
    for (int co = r0; co < r1; co++) {
        const float *me = J->M + (size_t)co * J->nt, *mo = J->M + (size_t)(J->cout + co) * J->nt;
        const float bias = J->bias ? J->bias[co] : 0.0f;
        for (long g = J->g0, end = J->g0 + J->nt; g < end;) {
            int b = (int)(g / J->TB), j = (int)(g % J->TB);
            int jend = J->TB - j < end - g ? J->TB : j + (int)(end - g);
            float *y = J->out + (size_t)co * ldo + (size_t)b * so.S + so.off; /* position 0 */
            for (; j < jend; j++, g++, me++, mo++) {
#ifdef HAVE_X86
                if (vec == 2 && j + 16 <= jend && 4 * j + 64 <= s.L) {
                    out_up_block_avx512(me, mo, ms, bias, y + 8 * j);
                    j += 15, g += 15, me += 15, mo += 15;
                    continue;
                }
                if (vec && j + 8 <= jend && 4 * j + 32 <= s.L) {
                    out_up_block_avx2(me, mo, ms, bias, y + 8 * j);
                    j += 7, g += 7, me += 7, mo += 7;
                    continue;
                }
#endif
                float mm[6], te[4], to[4];
                for (int x = 0; x < 6; x++) mm[x] = me[x * ms];
                out_tile(te, mm);
                for (int x = 0; x < 6; x++) mm[x] = mo[x * ms];
                out_tile(to, mm);
                for (int q = 0; q < 4 && 4 * j + q < s.L; q++) {
                    y[2 * (4 * j + q)] = te[q] + bias;
                    y[2 * (4 * j + q) + 1] = to[q] + bias; /* Lout odd: the gap column */
                }
            }
            /* Lout = 2 Lin - 1: the last output has no right neighbour (no w2 term). */
            if (jend == J->TB && (so.L & 1)) y[so.L - 1] = nf_upconv3_last(J->in, s, b, J->w, J->bias, co, J->cin);
        }
    }
}

/* Tiles per block: the block's V (6 cin rows of tiles) and M (6 cout) within
 * WINO_BLOCK_FLOATS, and at least six blocks per thread. The size changes who computes
 * what, never the bits. Measured on the ref-wave forward (one process, alternating):
 * blocks of 320 KB (to stay in L2) about as fast as the whole-batch passes they replace,
 * 640 KB 2-3% faster, 2.5 MB another 7% at batch 8 (longer GEMMs, fewer sweeps over the
 * weights), 5 and 10 MB no faster. */
static long block_tiles(int cin, int cout, long T, int nt)
{
    long nb = WINO_BLOCK_FLOATS / (6L * (cin + cout));
    if (nb > T / (6L * nt)) nb = T / (6L * nt); /* at least 6 blocks per thread, to balance */
    nb = nb / NF_GEMM_PANEL_N * NF_GEMM_PANEL_N;
    return nb < NF_GEMM_PANEL_N ? NF_GEMM_PANEL_N : nb;
}

typedef struct {
    const wino_job *J; /* the whole conv (g0 = 0, nt = all tiles) */
    const float *Up;   /* the transformed weights, packed */
    long nb, blocks;   /* tiles per block, blocks */
    float *buf;        /* scratch of `per` floats for each participant */
    size_t per;
    atomic_long next;
} blocks_job;

/* Blocks handed out one at a time: each one's input transform, its six GEMMs and its
 * output transform, on one thread, in that thread's part of the scratch. */
static void run_blocks(void *ctx, int who)
{
    blocks_job *K = ctx;
    const wino_job *J = K->J;
    const int rows = J->up ? 2 * J->cout : J->cout; /* of M */
    const size_t pa = nf_gemm_packed_a_floats(rows, J->cin);
    float *buf = K->buf + (size_t)who * K->per;
    long q;
    while ((q = atomic_fetch_add_explicit(&K->next, 1, memory_order_relaxed)) < K->blocks) {
        wino_job b = *J;
        b.g0 = q * K->nb;
        b.nt = J->nt - b.g0 < K->nb ? J->nt - b.g0 : K->nb;
        int nt = (int)b.nt;
        size_t vs = nf_gemm_packed_b_floats(J->cin, nt);
        b.V = buf;
        b.M = buf + 6 * vs;
        const int group = WINO_GROUP * NF_GEMM_PANEL_N;
        in_groups(&b, 0, (nt + group - 1) / group);
        nf_gemm_packed_serial(6, rows, nt, J->cin, K->Up, pa, b.V, vs, b.M, (size_t)rows * nt, nt);
        out_rows(&b, 0, J->cout);
    }
}

/* The up-conv's weights as a 2 cout x cin x 3 conv: rows co (w0, w1 + w2, 0), the even
 * phase, and cout + co (0, w0 + w1, w2), the odd (see nf_wino_upconv3). */
static void up_weights(float *wp, const float *w, int cout, int cin)
{
    size_t n = (size_t)cout * cin;
    for (size_t i = 0; i < n; i++) {
        const float *k = w + 3 * i;
        float *e = wp + 3 * i, *o = wp + 3 * (n + i);
        e[0] = k[0], e[1] = k[1] + k[2], e[2] = 0.0f;
        o[0] = 0.0f, o[1] = k[0] + k[1], o[2] = k[2];
    }
}

size_t nf_wino_up_packed_floats(int cout, int cin) { return nf_wino_packed_floats(2 * cout, cin); }

int nf_wino_up_pack(const float *w, int cout, int cin, float *dst)
{
    float *wp = malloc((size_t)6 * cout * cin * sizeof(float));
    if (!wp) return -1;
    up_weights(wp, w, cout, cin);
    int rc = nf_wino_pack(wp, 2 * cout, cin, dst);
    free(wp);
    return rc;
}

int nf_wino_upconv3_applies(int cin, int cout, nf_seq si, nf_seq so)
{
    if (g_mode == 1) return 0;
    if ((so.L != 2 * si.L && so.L != 2 * si.L - 1) || si.L < 2 || so.B != si.B || cin > NF_GEMM_PACKED_KMAX) return 0;
    if (si.off < 1 || si.S - si.off - si.L < 1) return 0; /* the zero columns at -1 and L */
    if (so.off < 1 || so.S - so.off - so.L < 1) return 0; /* an odd Lout's last odd output lands at L */
    if (g_mode == 2) return 1;
    return si.L >= WINO_UP_MIN_L && cin >= WINO_MIN_CH && cout >= WINO_MIN_CH;
}

/* The work of both entry points: rows = cout (a conv) or 2 cout (the up-conv, whose
 * weights w are then the plain 3-tap ones, made into the phases here unless packed at
 * model load under NF_PACKED_WINO_UP). */
static int run(wino_job *J, const float *w, int rows)
{
    const int cin = J->cin, cout = J->cout;
    const long T = J->nt;
    const long nb = block_tiles(cin, rows, T, NT), blocks = (T + nb - 1) / nb;
    int nt = NT < blocks ? NT : (int)blocks;
    if ((size_t)T * (cin + rows) * 6 < NF_PAR_MIN_WORK) nt = 1;
    /* Scratch of the calling thread: the phase weights (up-conv), the transformed weights
     * U and their GEMM panels (unless packed at model load), then each participant's V and
     * M; every part a multiple of 16 floats, so the panels stay 64-byte aligned. */
    const float *pre = nf_packed_find(J->up ? NF_PACKED_WINO_UP : NF_PACKED_WINO, w, cout, cin);
    const size_t nw = pre || !J->up ? 0 : ((size_t)3 * rows * cin + 15) / 16 * 16;
    const size_t nu = pre ? 0 : ((size_t)6 * rows * cin + 15) / 16 * 16, pa = nf_gemm_packed_a_floats(rows, cin);
    const size_t pu = pre ? 0 : 6 * pa;
    const size_t per = (6 * nf_gemm_packed_b_floats(cin, (int)nb) + (size_t)6 * rows * nb + 15) / 16 * 16;
    float *W = scratch(nw + nu + pu + (size_t)nt * per);
    if (!W) return -1;
    float *U = W + nw;
    const float *Up = pre;
    if (!pre) {
        if (J->up) {
            up_weights(W, w, cout, cin);
            w = W;
        }
        transform_pack(U, w, rows, cin, U + nu);
        Up = U + nu;
    }
    blocks_job K = {J, Up, nb, blocks, U + nu + pu, per, 0};
    atomic_init(&K.next, 0);
    nf_pool_run(nt, run_blocks, &K);
    return 0;
}

int nf_wino_conv3(float *out, const float *in, nf_seq s, const float *w, const float *bias, const float *res,
                  const float *row_add, int cin, int cout)
{
    const int TB = (s.L + 3) / 4;
    wino_job J = {in, bias, res, NULL, row_add, out, NULL, NULL, s, 0, s, TB, 0, (long)s.B * TB, cin, cout};
    return run(&J, w, cout);
}

int nf_wino_upconv3(float *out, nf_seq so, const float *in, nf_seq si, const float *w, const float *bias, int cin,
                    int cout)
{
    const int TB = (si.L + 3) / 4;
    wino_job J = {in, bias, NULL, w, NULL, out, NULL, NULL, si, 1, so, TB, 0, (long)si.B * TB, cin, cout};
    return run(&J, w, 2 * cout);
}
