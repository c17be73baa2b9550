/* A deterministic, packed, register-blocked single-precision GEMM for the layers.
 *
 * Why not OpenBLAS: 0.3.21's sgemm (Haswell/Zen kernels) rounds an element differently
 * depending on where it falls in the kernel's tiles and on how the threads split the
 * matrix, so a column's value changes with the batch size and the thread count
 * (measured: 24 of 25 conv-like shapes differ between 1 and 2 threads). The network
 * promises bit-identical results across both, so its GEMMs come here.
 *
 * The summation order of C[i][j] = beta C + alpha sum_k op(A)(i,k) op(B)(k,j) depends
 * only on K (and the constants KCH, CPS below), never on M, N, the element's position,
 * the tile it falls in, the thread count or the instruction set:
 *
 *   chunk c  = k in [c KCH, min(K, (c+1) KCH))
 *   p_c      = fma(a_k, b_k, ... fma(a_k0+1, b_k0+1, fma(a_k0, b_k0, 0)))   (k ascending)
 *   super s  = chunks [s CPS, (s+1) CPS);    q_s = (((p_a + p_a+1) + p_a+2) + ...)
 *   total    = (((q_0 + q_1) + q_2) + ...)
 *   C        = alpha total                   if beta == 0 (C is not read)
 *              fma(alpha, total, beta C)     otherwise
 *
 * A per-element FMA chain is the same in every SIMD width and in scalar fmaf, so the
 * AVX2 kernel and the portable kernel give identical bits (the portable one is slow on
 * CPUs without FMA because fmaf is then emulated by libm, but it is exact there too).
 * Edge tiles run the same full kernel on zero-padded panels; only the epilogue is
 * masked to the valid corner, except a last panel of at most NARROW_MAX columns (batch
 * 1's 2^k + 1 frames) on the AVX2 path: one column rides on the panel before it
 * (ukr17_avx2), 2-4 go to a column kernel (ucol_avx2); the same chains either way.
 * On CPUs with AVX-512F the same panels go to 16-float kernels (ukr2_avx512: one A panel
 * against two B panels), again the same chains and so the same bits; the tests force
 * every path this CPU has and compare them bit for bit.
 *
 * Parallelism (the worker pool of nn_pool.c, nf_nn_threads() threads): work items are
 * (super-chunk, macro tile) pairs. For K <= KCH*CPS there is one super-chunk and the
 * threads split M and N only. For the weight-gradient shape (small M x N, K = B*(L+2) ~
 * 131072) the super-chunks (a fixed size, independent of the thread count) give the
 * parallelism: each item writes its q_s into a scratch slab and the slabs are summed in
 * s order afterwards.
 *
 * Packing (Goto & van de Geijn 2008): for each chunk, an MC x kc block of op(A) is
 * packed into MR-row micro-panels and a kc x NC block of op(B) into NR-column
 * micro-panels, both k-major, so the micro-kernel reads two contiguous streams; the
 * transposes are absorbed by the packing, so all four (ta, tb) cases share one kernel.
 * Scratch is per thread (thread-local), 64-byte aligned, allocated on first use and
 * never freed (the pool's worker threads live as long as the process); the super-chunk
 * slabs belong to the calling thread and only grow. If an allocation fails, the same
 * order is computed element by element without scratch (slow, same bits).
 *
 * A work item covers up to MIMAX rows: its B block is packed once per chunk and reused
 * by every MCMAX-row A block of the item (convolution outputs of 128-256 channels would
 * otherwise pack the same wide B block two or three times).
 *
 * Implicit im2col (nf_gemm_taps): op(B) may be described as k shifted views of one
 * matrix; the packing reads each k-row (or, transposed, each column) from its view, so a
 * stride-1 convolution, its weight gradient and its input gradient are each one GEMM
 * with K (or N) = channels * k and no copy. Only the packing knows; the order of the
 * sums is that of nf_gemm with the same K.
 *
 * This code never calls BLAS, so no OpenMP region here overlaps an OpenBLAS call. */
#include "nf_nn.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#define MR 6      /* micro-tile rows */
#define NR 16     /* micro-tile columns (two 8-float vectors) */
#define KCH 512   /* chunk length over k: FIXED, part of the summation order */
#define CPS 16    /* chunks per super-chunk: FIXED, part of the summation order */
#define MCMAX 96  /* rows of a packed A block (multiple of MR) */
#define MIMAX 384 /* rows of a work item (multiple of MCMAX): its B block is packed once
                   * and reused by up to MIMAX / MCMAX A blocks */
#define NCMAX 256 /* macro tile columns (multiple of NR) */
#define NARROW_MAX 4 /* a last panel this narrow goes to the narrow kernels (AVX2) */

/* What a micro-kernel does with its MR x NR accumulator `acc` (the chain over its kc):
 *   STORE:     t = acc                 (raw, into a padded buffer)
 *   ADD:       t = t + acc
 *   FINAL:     c = epi(acc)
 *   ADD_FINAL: c = epi(t + acc)
 * epi(x) = alpha x if beta == 0, else fma(alpha, x, beta c), where c is C's old value or,
 * for a layer's output with a bias and/or a residual (nf_gemm_taps_bias), c = bias[i]
 * (+ res[i][j]) computed here instead of being stored in C first. */
enum { M_STORE, M_ADD, M_FINAL, M_ADD_FINAL };

typedef struct {
    float alpha, beta;
    /* Instead of C's old value (both NULL: C): bias[r] and/or res[r ldr + j], relative to
     * the tile's corner (see epi_at). */
    const float *bias, *res;
    ptrdiff_t ldr;
} epi_t;

/* The epilogue of the tile whose corner is (r, j) of e's. */
static inline epi_t epi_at(const epi_t *e0, ptrdiff_t r, ptrdiff_t j)
{
    epi_t e = *e0;
    if (e.bias) e.bias += r;
    if (e.res) e.res += r * e.ldr + j;
    return e;
}

/* What the epilogue adds to alpha x at (r, j): C's old value, or bias (+ residual) as
 * the layers used to store it into C first (bv + res, or bv alone). */
static inline float epi_in(const float *c, const epi_t *e, int r, int j)
{
    if (!e->bias && !e->res) return *c;
    float bv = e->bias ? e->bias[r] : 0.0f;
    return e->res ? bv + e->res[r * e->ldr + j] : bv;
}

typedef void (*ukr_fn)(int kc, const float *a, const float *b, int mode, float *t,
                       ptrdiff_t ldt, float *c, ptrdiff_t ldc, const epi_t *e, int mr, int nr);

static inline float epi_one(float x, const float *c, const epi_t *e, int r, int j)
{
    return e->beta == 0.0f ? e->alpha * x : fmaf(e->alpha, x, e->beta * epi_in(c, e, r, j));
}

/* Micro-kernels: the MR x NR chain over kc packed k-steps, then `mode` on the valid
 * mr x nr corner (t and the slabs are padded, so STORE/ADD always get full tiles). */

/* ---- portable micro-kernel: fmaf chains, the reference for every other kernel ---- */
static void ukr_scalar(int kc, const float *a, const float *b, int mode, float *t,
                       ptrdiff_t ldt, float *c, ptrdiff_t ldc, const epi_t *e, int mr, int nr)
{
    float acc[MR][NR];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = 0.0f;
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++)
                acc[r][j] = fmaf(a[k * MR + r], b[k * NR + j], acc[r][j]);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float x = acc[r][j];
            switch (mode) {
            case M_STORE: t[r * ldt + j] = x; break;
            case M_ADD: t[r * ldt + j] = t[r * ldt + j] + x; break;
            case M_ADD_FINAL: x = t[r * ldt + j] + x; /* fall through */
            default: c[r * ldc + j] = epi_one(x, &c[r * ldc + j], e, r, j); break;
            }
        }
}

#ifdef HAVE_X86
/* The epilogue of one column of rows [0, mr) whose chains ended in x8[r]: `mode` on
 * t[r ldt] / c[r ldc], exactly as ukr_scalar does it. */
static inline void col_epilogue(const float *x8, int mr, int mode, float *t, ptrdiff_t ldt, float *c, ptrdiff_t ldc,
                                const epi_t *e)
{
    for (int r = 0; r < mr; r++) {
        float x = x8[r], *tp = t + r * ldt, *cp = c + r * ldc;
        switch (mode) {
        case M_STORE: *tp = x; break;
        case M_ADD: *tp = *tp + x; break;
        case M_ADD_FINAL: x = *tp + x; /* fall through */
        default: *cp = epi_one(x, cp, e, r, 0); break;
        }
    }
}

/* ---- AVX2 + FMA micro-kernel, 6 x 16: 12 accumulators, 2 B loads, 1 broadcast ----
 * The epilogue does per lane exactly what ukr_scalar does (add, mul, fma).
 * With `extra` (a constant after inlining) it also chains a 17th column, b17[k] (a
 * compact copy: read from its padded panel, one 64-byte line per k-step, it crowded the
 * other panels out of L1): lane r of one more accumulator is row r, fed by an 8-float
 * load of the k-step's 6 A values (lanes 6 and 7 are junk; the last k-step's load is
 * masked so that it stays inside the panel). At batch 1 a layer's N is 2^k + 1 (129,
 * 65, 33 STFT frames), so that column would otherwise cost a whole padded panel: one
 * FMA more per k-step instead of twelve. All 16 vector registers are in use. */
/* Row r of the tile: broadcast a[r] against the two B vectors. */
#define UKR_ROW(r, lo, hi)                                                                                             \
    x = _mm256_broadcast_ss(a + (r));                                                                                  \
    lo = _mm256_fmadd_ps(x, b0, lo);                                                                                   \
    hi = _mm256_fmadd_ps(x, b1, hi)
#define UKR_STEP(LOAD_A)                                                                                               \
    do {                                                                                                               \
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), x;                                                \
        UKR_ROW(0, c00, c01);                                                                                          \
        UKR_ROW(1, c10, c11);                                                                                          \
        UKR_ROW(2, c20, c21);                                                                                          \
        UKR_ROW(3, c30, c31);                                                                                          \
        UKR_ROW(4, c40, c41);                                                                                          \
        UKR_ROW(5, c50, c51);                                                                                          \
        if (extra) {                                                                                                   \
            x = _mm256_broadcast_ss(b17);                                                                              \
            cx = _mm256_fmadd_ps(LOAD_A, x, cx);                                                                       \
            b17++;                                                                                                     \
        }                                                                                                              \
        a += MR;                                                                                                       \
        b += NR;                                                                                                       \
    } while (0)

/* epi_in for the 8 lanes of row r, columns 8h..8h+7 at cp (LOAD: full or masked). */
#define MASKLOAD(p) _mm256_maskload_ps(p, m)
#define EPI_IN(LOAD)                                                                                                   \
    (!e->bias && !e->res ? LOAD(cp)                                                                                    \
     : e->res ? _mm256_add_ps(_mm256_set1_ps(e->bias ? e->bias[r] : 0.0f), LOAD(e->res + r * e->ldr + 8 * h))          \
              : _mm256_set1_ps(e->bias[r]))
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
ukr_avx2_body(int extra, int kc, const float *a, const float *b, const float *b17, int mode, float *t, ptrdiff_t ldt,
              float *c, ptrdiff_t ldc, const epi_t *e, int mr, int nr)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, cx = c00;
    int kend = extra ? kc - 1 : kc;
#pragma GCC unroll 4
    for (int k = 0; k < kend; k++) UKR_STEP(_mm256_loadu_ps(a));
    if (extra) UKR_STEP(_mm256_maskload_ps(a, _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0)));
    if (extra) {
        float x8[8];
        _mm256_storeu_ps(x8, cx);
        epi_t e17 = epi_at(e, 0, NR);
        col_epilogue(x8, mr, mode, t + NR, ldt, c + NR, ldc, &e17);
    }
    __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                         {c30, c31}, {c40, c41}, {c50, c51}};
    __m256 va = _mm256_set1_ps(e->alpha), vb = _mm256_set1_ps(e->beta);
    if (mode <= M_ADD) {
        for (int r = 0; r < MR; r++)
            for (int h = 0; h < 2; h++) {
                float *tp = t + r * ldt + 8 * h;
                __m256 x = acc[r][h];
                if (mode == M_ADD) x = _mm256_add_ps(_mm256_load_ps(tp), x);
                _mm256_store_ps(tp, x);
            }
        return;
    }
    /* Lane masks for a partial last column group. */
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
    for (int r = 0; r < mr; r++)
        for (int h = 0; h < 2; h++) {
            __m256 x = acc[r][h];
            float *cp = c + r * ldc + 8 * h;
            if (mode == M_ADD_FINAL) x = _mm256_add_ps(_mm256_load_ps(t + r * ldt + 8 * h), x);
            if (nr == NR) {
                if (e->beta == 0.0f)
                    x = _mm256_mul_ps(va, x);
                else
                    x = _mm256_fmadd_ps(va, x, _mm256_mul_ps(vb, EPI_IN(_mm256_loadu_ps)));
                _mm256_storeu_ps(cp, x);
            } else {
                __m256i m = h ? m1 : m0;
                if (h * 8 >= nr) continue;
                if (e->beta == 0.0f)
                    x = _mm256_mul_ps(va, x);
                else
                    x = _mm256_fmadd_ps(va, x, _mm256_mul_ps(vb, EPI_IN(MASKLOAD)));
                _mm256_maskstore_ps(cp, m, x);
            }
        }
}

__attribute__((target("avx2,fma"))) static void
ukr_avx2(int kc, const float *a, const float *b, int mode, float *t, ptrdiff_t ldt, float *c,
         ptrdiff_t ldc, const epi_t *e, int mr, int nr)
{
    ukr_avx2_body(0, kc, a, b, NULL, mode, t, ldt, c, ldc, e, mr, nr);
}

/* A full 16-column tile and the one column after it, b17[0 .. kc). */
__attribute__((target("avx2,fma"))) static void
ukr17_avx2(int kc, const float *a, const float *b, const float *b17, int mode, float *t, ptrdiff_t ldt, float *c,
           ptrdiff_t ldc, const epi_t *e, int mr)
{
    ukr_avx2_body(1, kc, a, b, b17, mode, t, ldt, c, ldc, e, mr, NR);
}

/* ---- AVX2 + FMA narrow-column kernel ----
 * For a last panel of 2-4 columns (or 1 with no full panel before it to ride on, see
 * ukr17_avx2): the nr columns one at a time, G row panels at once: lane r of
 * accumulator i is row r of panel i (lanes 6 and 7 are junk), each chained over k
 * ascending with the same fma(a, b, acc) as every other kernel, so the bits are those
 * of ukr_scalar. The A panels are read with 8-float loads, 2 floats past the 6 of a
 * k-step, which stay inside the panel except at its last k-step (masked there). It
 * costs about half a padded 16-column panel (8 streams through L2), so a single column
 * goes with ukr17_avx2 when it can. */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
col_group(int G, int kc, const float *pa, int p0, int ms, const float *b, int q, int mode, float *t,
          ptrdiff_t ldt, float *c, ptrdiff_t ldc, const epi_t *e)
{
    __m256 acc[8];
    const float *a[8];
    for (int i = 0; i < G; i++) {
        acc[i] = _mm256_setzero_ps();
        a[i] = pa + (size_t)(p0 + i) * kc * MR;
    }
    int k = 0;
    for (; k < kc - 1; k++) {
        __m256 bk = _mm256_broadcast_ss(b + (size_t)k * NR + q);
        for (int i = 0; i < G; i++) acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(a[i] + k * MR), bk, acc[i]);
    }
    const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    __m256 bk = _mm256_broadcast_ss(b + (size_t)k * NR + q);
    for (int i = 0; i < G; i++) acc[i] = _mm256_fmadd_ps(_mm256_maskload_ps(a[i] + k * MR, six), bk, acc[i]);
    for (int i = 0; i < G; i++) {
        float x8[8];
        _mm256_storeu_ps(x8, acc[i]);
        int row = (p0 + i) * MR, mr = ms - row < MR ? ms - row : MR;
        epi_t ei = epi_at(e, row, q);
        col_epilogue(x8, mr, mode, t + (ptrdiff_t)row * ldt + q, ldt, c + (ptrdiff_t)row * ldc + q, ldc, &ei);
    }
}

/* Columns [0, nr) of the B panel b against the ms rows whose A panels start at pa; t and
 * c point at row 0 of those columns. */
__attribute__((target("avx2,fma"))) static void
ucol_avx2(int kc, const float *pa, int ms, const float *b, int nr, int mode, float *t, ptrdiff_t ldt, float *c,
          ptrdiff_t ldc, const epi_t *e)
{
    int np = (ms + MR - 1) / MR;
    for (int q = 0; q < nr; q++)
        for (int p0 = 0; p0 < np;) {
            int left = np - p0;
            if (left >= 8) {
                col_group(8, kc, pa, p0, ms, b, q, mode, t, ldt, c, ldc, e);
                p0 += 8;
            } else if (left >= 4) {
                col_group(4, kc, pa, p0, ms, b, q, mode, t, ldt, c, ldc, e);
                p0 += 4;
            } else if (left >= 2) {
                col_group(2, kc, pa, p0, ms, b, q, mode, t, ldt, c, ldc, e);
                p0 += 2;
            } else {
                col_group(1, kc, pa, p0, ms, b, q, mode, t, ldt, c, ldc, e);
                p0 += 1;
            }
        }
}

/* ---- AVX-512 micro-kernels: the same panels, 16-float vectors ----
 * On a CPU with 512-bit FMA units (AMD Zen 5, Intel server cores) a 16-column B panel is
 * one vector. One A panel (6 rows) runs against one or two B panels: 6 or 12
 * accumulators, the pair's 12 enough independent chains to keep both FMA pipes busy
 * (measured on Zen 5: 228 GFLOP/s on one core against the AVX2 kernel's 114). With
 * `extra` the one column after the last panel rides along as in ukr17_avx2 (a 256-bit
 * accumulator, lane r = row r). Per lane the fma chain and the epilogue are those of
 * ukr_scalar, so the bits are the same as on every other path.
 * The A panels (the weights: at batch 1 each read once a forward, from memory) are
 * fetched PF_A floats ahead: the hardware prefetchers stop at each 4 KB page, and every
 * restart cost a wait for memory. ref-stft's batch-1 forward measured 14-17% faster with
 * it, its batch-8 forward 4%, its batch-1 training step 4%. */
#define PF_A 768 /* 128 k-steps: the rest of this panel, then the next one's start */
#define UKR5_ROW(r)                                                                                                    \
    x = _mm512_set1_ps(a[r]);                                                                                          \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0);                                                                         \
    if (two) c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1)
#define UKR5_STEP(LOAD_A)                                                                                              \
    do {                                                                                                               \
        __m512 b0 = _mm512_load_ps(b), b1 = two ? _mm512_load_ps(bn) : b0, x;                                          \
        UKR5_ROW(0);                                                                                                   \
        UKR5_ROW(1);                                                                                                   \
        UKR5_ROW(2);                                                                                                   \
        UKR5_ROW(3);                                                                                                   \
        UKR5_ROW(4);                                                                                                   \
        UKR5_ROW(5);                                                                                                   \
        if (extra) {                                                                                                   \
            cx = _mm256_fmadd_ps(LOAD_A, _mm256_broadcast_ss(b17), cx);                                                \
            b17++;                                                                                                     \
        }                                                                                                              \
        a += MR;                                                                                                       \
        b += NR;                                                                                                       \
        if (two) bn += NR;                                                                                             \
    } while (0)

/* epi_in for the 16 lanes of row r, columns 16h.. at cp, lanes outside m not read. */
__attribute__((target("avx512f,avx2,fma"))) static inline __attribute__((always_inline)) __m512
epi_in16(const float *cp, const epi_t *e, int r, int h, __mmask16 m)
{
    if (!e->bias && !e->res) return _mm512_maskz_loadu_ps(m, cp);
    if (!e->res) return _mm512_set1_ps(e->bias[r]);
    return _mm512_add_ps(_mm512_set1_ps(e->bias ? e->bias[r] : 0.0f),
                         _mm512_maskz_loadu_ps(m, e->res + r * e->ldr + 16 * h));
}

/* b: the first B panel, bn: the second (two), b17: the extra column's compact copy;
 * nr: the valid columns of the 16 or 32 (extra: the full panels, the column after them
 * is always valid). */
__attribute__((target("avx512f,avx2,fma"))) static inline __attribute__((always_inline)) void
ukr_avx512_body(int two, int extra, int kc, const float *a, const float *b, const float *bn, const float *b17,
                int mode, float *t, ptrdiff_t ldt, float *c, ptrdiff_t ldc, const epi_t *e, int mr, int nr)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m256 cx = _mm256_setzero_ps();
    int kend = extra ? kc - 1 : kc;
#pragma GCC unroll 4
    for (int k = 0; k < kend; k++) {
        _mm_prefetch((const char *)(a + PF_A), _MM_HINT_T0);
        UKR5_STEP(_mm256_loadu_ps(a));
    }
    if (extra) UKR5_STEP(_mm256_maskload_ps(a, _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0)));
    const int H = two ? 2 : 1;
    if (extra) {
        float x8[8];
        _mm256_storeu_ps(x8, cx);
        epi_t ex = epi_at(e, 0, H * NR);
        col_epilogue(x8, mr, mode, t + H * NR, ldt, c + H * NR, ldc, &ex);
    }
    __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (mode <= M_ADD) { /* t is padded: whole panels, all MR rows */
        for (int r = 0; r < MR; r++)
            for (int h = 0; h < H; h++) {
                float *tp = t + r * ldt + 16 * h;
                __m512 x = acc[r][h];
                if (mode == M_ADD) x = _mm512_add_ps(_mm512_loadu_ps(tp), x);
                _mm512_storeu_ps(tp, x);
            }
        return;
    }
    __m512 va = _mm512_set1_ps(e->alpha), vb = _mm512_set1_ps(e->beta);
    for (int r = 0; r < mr; r++)
        for (int h = 0; h < H; h++) {
            int n = nr - 16 * h;
            if (n <= 0) continue;
            __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
            __m512 x = acc[r][h];
            float *cp = c + r * ldc + 16 * h;
            if (mode == M_ADD_FINAL) x = _mm512_add_ps(_mm512_loadu_ps(t + r * ldt + 16 * h), x);
            if (e->beta == 0.0f)
                x = _mm512_mul_ps(va, x);
            else
                x = _mm512_fmadd_ps(va, x, _mm512_mul_ps(vb, epi_in16(cp, e, r, h, m)));
            _mm512_mask_storeu_ps(cp, m, x);
        }
}

/* One panel: the kernel pick_kernel returns on this path (run_block pairs the panels). */
__attribute__((target("avx512f,avx2,fma"))) static void
ukr_avx512(int kc, const float *a, const float *b, int mode, float *t, ptrdiff_t ldt, float *c, ptrdiff_t ldc,
           const epi_t *e, int mr, int nr)
{
    ukr_avx512_body(0, 0, kc, a, b, NULL, NULL, mode, t, ldt, c, ldc, e, mr, nr);
}

/* Two panels, b and bn; b17: the column after them, or NULL. */
__attribute__((target("avx512f,avx2,fma"))) static void
ukr2_avx512(int kc, const float *a, const float *b, const float *bn, const float *b17, int mode, float *t,
            ptrdiff_t ldt, float *c, ptrdiff_t ldc, const epi_t *e, int mr, int nr)
{
    if (b17)
        ukr_avx512_body(1, 1, kc, a, b, bn, b17, mode, t, ldt, c, ldc, e, mr, nr);
    else
        ukr_avx512_body(1, 0, kc, a, b, bn, NULL, mode, t, ldt, c, ldc, e, mr, nr);
}

/* One full panel and the column after it. */
__attribute__((target("avx512f,avx2,fma"))) static void
ukr17_avx512(int kc, const float *a, const float *b, const float *b17, int mode, float *t, ptrdiff_t ldt, float *c,
             ptrdiff_t ldc, const epi_t *e, int mr)
{
    ukr_avx512_body(0, 1, kc, a, b, NULL, b17, mode, t, ldt, c, ldc, e, mr, NR);
}
#endif

/* ---- path selection (run time; tests can force a path) ---- */
enum { PATH_AUTO = 0, PATH_SCALAR = 1, PATH_AVX2 = 2, PATH_AVX512 = 3 };
static int g_force_path = PATH_AUTO;
static int g_no_shared; /* testing hook: 1 = every tile packs its own operands */
static int g_no_prepacked; /* testing hook: 1 = registered panels are ignored */

/* Testing hook (declared in the tests, not in a public header): 0 auto, 1 portable,
 * 2 AVX2+FMA, 3 AVX-512. Returns 0 if the path is unavailable on this CPU. Not thread
 * safe. */
int nf_gemm_force_path(int path);
int nf_gemm_force_path(int path)
{
    if (path != PATH_AUTO && !nf_cpu_runs_path(path)) return 0;
    g_force_path = path;
    return 1;
}

/* Testing hook: 1 turns the shared packing (run_shared) off, 0 back on. */
void nf_gemm_force_unshared(int off);
void nf_gemm_force_unshared(int off) { g_no_shared = off != 0; }
/* Testing hook: 1 ignores registered pre-packed weights, 0 uses them. */
void nf_gemm_ignore_prepacked(int off);
void nf_gemm_ignore_prepacked(int off) { g_no_prepacked = off != 0; }

static ukr_fn pick_kernel(void)
{
    if (g_force_path == PATH_SCALAR) return ukr_scalar;
#ifdef HAVE_X86
    if (g_force_path == PATH_AVX512 || (g_force_path == PATH_AUTO && nf_cpu_avx512())) return ukr_avx512;
    if (g_force_path == PATH_AVX2 || nf_cpu_avx2_fma()) return ukr_avx2;
#endif
    return ukr_scalar;
}

/* ---- per-thread scratch ---- */
#define PA_FLOATS ((size_t)MCMAX * KCH)
#define PB_FLOATS ((size_t)KCH * NCMAX)
#define T_FLOATS ((size_t)MIMAX * NCMAX)
#define SCRATCH_FLOATS (PA_FLOATS + PB_FLOATS + T_FLOATS)

static _Thread_local float *tl_scratch;
static _Thread_local float *tl_slab;
static _Thread_local size_t tl_slab_cap;
static _Thread_local float *tl_shared; /* whole packed operands (see run_shared) */
static _Thread_local size_t tl_shared_cap;

static float *thread_scratch(void)
{
    if (!tl_scratch) tl_scratch = aligned_alloc(64, SCRATCH_FLOATS * sizeof(float));
    return tl_scratch;
}

/* ---- packing: zero-padded, k-major micro-panels ---- */
typedef struct {
    const float *p;
    ptrdiff_t rs, cs; /* element (r, c) at p[r*rs + c*cs] ... */
    /* ... unless taps > 1 (an implicit im2col, see nf_gemm_taps): then the index on the
     * tap side (tside 0: r, 1: c) is split as x = taps*q + t and contributes
     * q*stride + t*tstep instead of x*stride. */
    int taps, tside;
    ptrdiff_t tstep;
} mat_t;

static inline ptrdiff_t row_off(const mat_t *m, int r)
{
    if (m->taps > 1 && m->tside == 0)
        return (ptrdiff_t)(r / m->taps) * m->rs + (ptrdiff_t)(r % m->taps) * m->tstep;
    return (ptrdiff_t)r * m->rs;
}

static inline ptrdiff_t col_off(const mat_t *m, int c)
{
    if (m->taps > 1 && m->tside == 1)
        return (ptrdiff_t)(c / m->taps) * m->cs + (ptrdiff_t)(c % m->taps) * m->tstep;
    return (ptrdiff_t)c * m->cs;
}

/* Whether the rows of m are contiguous runs (element (r, c + 1) right after (r, c)). */
static inline int rows_contig(const mat_t *m) { return m->cs == 1 && !(m->taps > 1 && m->tside == 1); }

#ifdef HAVE_X86
/* 8 x 8 transpose: r[q] (8 floats of row q) -> r[q] = column q. */
__attribute__((target("avx2,fma"))) static inline void tr8(__m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Transposing packs (the weight-gradient operands, rows contiguous along k): rows
 * src[q], q < nrow (<= 8, missing rows are zero), k in [0, kc8) (a multiple of 8);
 * writes dst[k*dstride + q] for q < width. */
__attribute__((target("avx2,fma"))) static void
pack_tr_avx2(float *dst, int dstride, int width, const float *const *src, int nrow, int kc8)
{
    for (int k = 0; k < kc8; k += 8) {
        __m256 r[8];
        for (int q = 0; q < 8; q++)
            r[q] = q < nrow ? _mm256_loadu_ps(src[q] + k) : _mm256_setzero_ps();
        tr8(r);
        for (int q = 0; q < 8; q++) {
            float *d = dst + (size_t)(k + q) * dstride;
            if (width == 8) {
                _mm256_store_ps(d, r[q]);
            } else { /* 6 floats; vmaskmovps stores are microcoded and slow on AMD */
                _mm_storeu_ps(d, _mm256_castps256_ps128(r[q]));
                _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(r[q], 1));
            }
        }
    }
}

/* d[6 u + r] = s[3 r + u] for r < 6, u < 3: a conv weight's 6 rows x 3 taps (18 floats
 * in a row) as 3 k-steps of a 6-row A panel, in three loads, five permutes, three blends
 * and three stores. Reads and writes exactly 18 floats. */
__attribute__((target("avx2,fma"))) static inline void tr6x3_avx2(float *d, const float *s)
{
    __m256 a = _mm256_loadu_ps(s), b = _mm256_loadu_ps(s + 8), c = _mm256_loadu_ps(s + 10);
    /* d[0..7] = s0 s3 s6 s9 s12 s15 s1 s4 */
    __m256 d0 = _mm256_blend_ps(_mm256_permutevar8x32_ps(a, _mm256_setr_epi32(0, 3, 6, 0, 0, 0, 1, 4)),
                                _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(0, 0, 0, 1, 4, 7, 0, 0)), 0x38);
    /* d[8..15] = s7 s10 s13 s16 s2 s5 s8 s11 (s16 from c = s10..s17) */
    __m256 d1 = _mm256_blend_ps(_mm256_permutevar8x32_ps(a, _mm256_setr_epi32(7, 0, 0, 0, 2, 5, 0, 0)),
                                _mm256_permutevar8x32_ps(b, _mm256_setr_epi32(0, 2, 5, 0, 0, 0, 0, 3)), 0xC6);
    d1 = _mm256_blend_ps(d1, _mm256_permutevar8x32_ps(c, _mm256_set1_epi32(6)), 0x08);
    /* d[16..17] = s14 s17 */
    __m256 d2 = _mm256_permutevar8x32_ps(c, _mm256_setr_epi32(4, 7, 0, 0, 0, 0, 0, 0));
    _mm256_storeu_ps(d, d0);
    _mm256_storeu_ps(d + 8, d1);
    _mm_storel_pi((__m64 *)(d + 16), _mm256_castps256_ps128(d2));
}
#endif

/* Transposed conv weights (pack_a, taps > 1): the rows PF_CONVT output channels ahead are
 * fetched while this one is transposed (the hardware prefetcher does not follow the jumps
 * between them): the pack went from ~9% to ~7% of a one-thread batch-1 training step; 2,
 * 8 and 16 measured alike. */
#define PF_CONVT 4

/* op(A) rows [i0, i0+mc), k in [k0, k0+kc) -> ceil(mc/MR) panels of kc*MR floats. */
__attribute__((target_clones("avx2", "default"))) static void pack_a(float *dst, mat_t A, int i0, int mc, int k0, int kc)
{
    if (A.taps > 1) {
        /* Columns split into taps (a conv weight read as its transpose, see nf_gemm_convt):
         * op(A)(i, q T + t) at p[i T + q cs + t], so for each q the block's mc rows x T taps
         * are one contiguous run (w[q][i0 .. i0 + mc)[0 .. T)), read here in order and
         * transposed into the panels. Block by block rather than panel by panel: the
         * weight is usually out of cache, and runs of 6 rows (72 bytes a few KB apart)
         * measured as a tenth of a batch-1 training step. */
        const int T = A.taps, np = (mc + MR - 1) / MR;
#ifdef HAVE_X86
        const int vec = T == 3 && nf_cpu_avx2_fma();
#endif
        const float *rows = A.p + (ptrdiff_t)i0 * A.rs;
        for (int k = 0; k < kc;) {
            int kk = k0 + k, q = kk / T, t = kk % T, n = T - t < kc - k ? T - t : kc - k;
            const float *s = rows + (ptrdiff_t)q * A.cs + t;
            for (int p = 0; p < np; p++) {
                int mr = mc - p * MR < MR ? mc - p * MR : MR;
                float *d = dst + (size_t)p * kc * MR + (size_t)k * MR;
                const float *sp = s + (ptrdiff_t)p * MR * T;
                if (k + PF_CONVT * T < kc) __builtin_prefetch(sp + PF_CONVT * A.cs, 0, 0);
                if (T == 3 && t == 0 && n == 3 && mr == MR) {
                    /* The common case, a whole 3-tap block of a full panel: a fixed
                     * 6 x 3 -> 3 x 6 shuffle, in vector permutes where AVX2 is there
                     * (as 36 scalar moves it is bound by one store a cycle). */
#ifdef HAVE_X86
                    if (vec) {
                        tr6x3_avx2(d, sp);
                        continue;
                    }
#endif
                    for (int u = 0; u < 3; u++)
                        for (int r = 0; r < MR; r++) d[u * MR + r] = sp[r * 3 + u];
                } else {
                    for (int u = 0; u < n; u++) {
                        for (int r = 0; r < mr; r++) d[u * MR + r] = sp[r * T + u];
                        for (int r = mr; r < MR; r++) d[u * MR + r] = 0.0f;
                    }
                }
            }
            k += n;
        }
        return;
    }
    for (int ir = 0; ir < mc; ir += MR, dst += (size_t)kc * MR) {
        int mr = mc - ir < MR ? mc - ir : MR;
        const float *src = A.p + (i0 + ir) * A.rs + k0 * A.cs;
        if (A.cs == 1) {
            int k8 = 0;
#ifdef HAVE_X86
            if (nf_cpu_avx2_fma()) {
                const float *rows[8];
                for (int r = 0; r < 8; r++) rows[r] = src + (r < mr ? r : 0) * A.rs;
                k8 = kc / 8 * 8;
                pack_tr_avx2(dst, MR, MR, rows, mr, k8);
            }
#endif
            for (int r = 0; r < mr; r++) {
                const float *s = src + r * A.rs;
                for (int k = k8; k < kc; k++) dst[k * MR + r] = s[k];
            }
            for (int r = mr; k8 > 0 && r < MR; r++)
                for (int k = k8; k < kc; k++) dst[k * MR + r] = 0.0f;
            if (k8 > 0) continue;
            for (int r = 0; r < mr; r++) {
                const float *s = src + r * A.rs;
                for (int k = 0; k < kc; k++) dst[k * MR + r] = s[k];
            }
        } else {
            for (int k = 0; k < kc; k++) {
                const float *s = src + k * A.cs;
                for (int r = 0; r < mr; r++) dst[k * MR + r] = s[r * A.rs];
            }
        }
        for (int r = mr; r < MR; r++)
            for (int k = 0; k < kc; k++) dst[k * MR + r] = 0.0f;
    }
}

/* op(B) k in [k0, k0+kc), columns [j0, j0+nc) -> ceil(nc/NR) panels of kc*NR floats.
 * B here is indexed (k, j). */
#ifdef HAVE_X86
/* pack_b of a row-contiguous B on the AVX-512 path: each row k of the block once, into
 * all its panels, the last one partial (zero-padded by a masked load), the tap index
 * advanced instead of divided out (a batch-1 conv's B is a few dozen columns, so the
 * per-row work was mostly the offset's division and a scalar tail: pack_b took 14% of
 * ref-stft's batch-1 forward; with this the forward measured 3.6% faster, at batch 8
 * 2.8%). */
__attribute__((target("avx512f,avx2,fma"))) static void pack_b_rows_avx512(float *dst, const mat_t *B, int k0, int kc,
                                                                          int j0, int nc)
{
    const float *src = B->p + col_off(B, j0);
    const int np = nc / NR, tail = nc % NR, tap = B->taps > 1;
    const __mmask16 m = (__mmask16)((1u << tail) - 1);
    int q = tap ? k0 / B->taps : k0, t = tap ? k0 % B->taps : 0;
    for (int k = 0; k < kc; k++) {
        const float *s = src + (ptrdiff_t)q * B->rs + (ptrdiff_t)t * B->tstep;
        float *d = dst + (size_t)k * NR;
        for (int p = 0; p < np; p++) _mm512_store_ps(d + (size_t)p * kc * NR, _mm512_loadu_ps(s + p * NR));
        if (tail) _mm512_store_ps(d + (size_t)np * kc * NR, _mm512_maskz_loadu_ps(m, s + np * NR));
        if (tap && ++t < B->taps) continue;
        t = 0, q++;
    }
}
#endif

__attribute__((target_clones("avx2", "default"))) static void pack_b(float *dst, mat_t B, int k0, int kc, int j0, int nc)
{
#ifdef HAVE_X86
    /* (Only with the AVX-512 kernels, so that forcing another path for the tests also
     * runs the packing below.) */
    if (rows_contig(&B) && (g_force_path == PATH_AUTO || g_force_path == PATH_AVX512) && nf_cpu_avx512()) {
        pack_b_rows_avx512(dst, &B, k0, kc, j0, nc);
        return;
    }
#endif
    for (int jr = 0; jr < nc; jr += NR, dst += (size_t)kc * NR) {
        int nr = nc - jr < NR ? nc - jr : NR;
        if (rows_contig(&B)) {
            /* Row k of the block starts at B.p + row_off(k) (a shifted view for taps). */
            const float *src = B.p + col_off(&B, j0 + jr);
            if (nr == NR && nc - jr >= 2 * NR) {
                /* Full panels: row by row across all of them, so that B is read as
                 * kc sequential streams rather than kc scattered 64-byte pieces. */
                int np = (nc - jr) / NR;
                for (int k = 0; k < kc; k++) {
                    const float *s = src + row_off(&B, k0 + k);
                    for (int p = 0; p < np; p++)
                        memcpy(dst + (size_t)p * kc * NR + k * NR, s + p * NR, NR * sizeof(float));
                }
                dst += (size_t)(np - 1) * kc * NR;
                jr += (np - 1) * NR;
            } else if (nr == NR) {
                for (int k = 0; k < kc; k++)
                    memcpy(dst + k * NR, src + row_off(&B, k0 + k), NR * sizeof(float));
            } else {
                for (int k = 0; k < kc; k++) {
                    const float *s = src + row_off(&B, k0 + k);
                    int j = 0;
                    for (; j < nr; j++) dst[k * NR + j] = s[j];
                    for (; j < NR; j++) dst[k * NR + j] = 0.0f;
                }
            }
        } else {
            /* Column j of the block starts at B.p + col_off(j) (shifted views for taps). */
            const float *cols[NR];
            for (int j = 0; j < NR; j++)
                cols[j] = B.p + row_off(&B, k0) + col_off(&B, j0 + jr + (j < nr ? j : 0));
            int k8 = 0;
#ifdef HAVE_X86
            if (nf_cpu_avx2_fma()) {
                k8 = kc / 8 * 8;
                pack_tr_avx2(dst, NR, 8, cols, nr < 8 ? nr : 8, k8);
                pack_tr_avx2(dst + 8, NR, 8, cols + 8, nr > 8 ? nr - 8 : 0, k8);
            }
#endif
            for (int j = 0; j < nr; j++) {
                const float *s = cols[j];
                for (int k = k8; k < kc; k++) dst[k * NR + j] = s[k * B.rs];
            }
            for (int j = nr; j < NR; j++)
                for (int k = k8; k < kc; k++) dst[k * NR + j] = 0.0f;
        }
    }
}

/* ---- problem description shared by the items ---- */
typedef struct {
    mat_t A, B;
    int M, N, K;
    float *C;
    ptrdiff_t ldc;
    epi_t e;
    int mc, nc;         /* macro tile */
    int tm, tn;         /* tiles along M and N */
    int nchunks, nsup;  /* chunks, super-chunks */
    float *slab;        /* nsup > 1: q_s at slab + s*sl_stride, rows of ld Np */
    size_t sl_stride;
    int Np;
    ukr_fn ukr;
    const float *apre; /* run_item: A's registered panels (NULL: pack A per block) */
} prob_t;

/* Exact same arithmetic as the packed path, without scratch (used only if the
 * thread's scratch cannot be allocated). */
static float chain_elem(const prob_t *P, int i, int j, int s)
{
    int c0 = s * CPS, c1 = c0 + CPS < P->nchunks ? c0 + CPS : P->nchunks;
    float q = 0.0f;
    for (int c = c0; c < c1; c++) {
        int k0 = c * KCH, k1 = k0 + KCH < P->K ? k0 + KCH : P->K;
        float p = 0.0f;
        for (int k = k0; k < k1; k++)
            p = fmaf(P->A.p[row_off(&P->A, i) + col_off(&P->A, k)],
                     P->B.p[row_off(&P->B, k) + col_off(&P->B, j)], p);
        q = c == c0 ? p : q + p;
    }
    return q;
}

static void run_item_fallback(const prob_t *P, int s, int i0, int mc, int j0, int nc)
{
    for (int i = i0; i < i0 + mc; i++)
        for (int j = j0; j < j0 + nc; j++) {
            float q = chain_elem(P, i, j, s);
            if (P->nsup > 1)
                P->slab[s * P->sl_stride + (size_t)i * P->Np + j] = q;
            else
                P->C[i * P->ldc + j] = epi_one(q, &P->C[i * P->ldc + j], &P->e, i, j);
        }
}

static void prefetch_c(const prob_t *P, int i0, int mc, int j0, int nc)
{
    for (int r = 0; r < mc; r++) {
        const float *c = P->C + (i0 + r) * P->ldc + j0;
        __builtin_prefetch(c, 1, 3);
        __builtin_prefetch(c + nc - 1, 1, 3);
    }
}

/* Tile `tile` of the tm x tn grid: rows [*i0, *i0 + *mc), columns [*j0, *j0 + *nc). */
static void tile_rect(const prob_t *P, long tile, int *i0, int *mc, int *j0, int *nc)
{
    *i0 = (int)(tile % P->tm) * P->mc;
    *j0 = (int)(tile / P->tm) * P->nc;
    *mc = P->M - *i0 < P->mc ? P->M - *i0 : P->mc;
    /* The last tile column takes what is left (it may have absorbed a narrow tail). */
    *nc = (int)(tile / P->tm) == P->tn - 1 ? P->N - *j0 : P->nc;
}

/* The micro-kernels of one chunk over a block: rows [row0, row0 + ms) whose A panels
 * start at pa, columns [j0, j0 + nc) whose B panels start at pb, intermediate sums at
 * t (row row0, column j0) with leading dimension ldt. Inlined into both callers: as a
 * call, the batch-1 step measured a few percent slower. */
static inline __attribute__((always_inline)) void
run_block(const prob_t *P, int kc, int mode, const float *pa, const float *pb, int row0, int ms, int j0, int nc,
          float *t, ptrdiff_t ldt)
{
    /* C is read (beta != 0) and written only by the final modes; it is usually far out of
     * cache (rows of B*S floats), so fetch the next column panel's lines while this one
     * is computed. */
    int touch_c = mode >= M_FINAL;
    /* A narrow last panel (the AVX2 and AVX-512 paths; the portable kernel is the reference
     * the tests compare them with): one column rides on the last full panel (ukr17_avx2,
     * j17 that panel's first column; on the AVX-512 path the last call's extra column),
     * 2-4 go to the column kernel. */
    int j17 = -1, wide = 0;
#ifdef HAVE_X86
    float col17[KCH] __attribute__((aligned(64)));
    int tail = nc % NR;
    wide = P->ukr == ukr_avx512;
    if (tail && tail <= NARROW_MAX && (P->ukr == ukr_avx2 || wide)) {
        nc -= tail;
        if (tail == 1 && nc >= NR) {
            j17 = nc - NR;
            const float *b17 = pb + (size_t)(nc / NR) * kc * NR;
            for (int k = 0; k < kc; k++) col17[k] = b17[(size_t)k * NR];
        } else {
            epi_t et = epi_at(&P->e, row0, j0 + nc);
            ucol_avx2(kc, pa, ms, pb + (size_t)(nc / NR) * kc * NR, tail, mode, t + nc, ldt,
                      P->C + (ptrdiff_t)row0 * P->ldc + j0 + nc, P->ldc, &et);
        }
    }
#endif
    /* A micro-panel (<= 12 KB) stays in L1 while the B block streams from L2. */
    for (int ir = 0; ir < ms; ir += MR) {
        const float *a = pa + (size_t)(ir / MR) * kc * MR;
        int mr = ms - ir < MR ? ms - ir : MR, row = row0 + ir;
        if (touch_c) prefetch_c(P, row, mr, j0, nc < 2 * NR ? nc : 2 * NR);
#ifdef HAVE_X86
        if (wide) {
            /* Panels in pairs (an odd one first, alone); the extra column j17 + NR rides
             * on the last call, which ends at the last full panel. */
            int np = (nc + NR - 1) / NR;
            for (int p = 0; p < np;) {
                int w = p == 0 && (np & 1) ? 1 : 2, jr = p * NR, nr = nc - jr < w * NR ? nc - jr : w * NR;
                const float *b = pb + (size_t)p * kc * NR;
                const float *b17 = j17 >= 0 && p + w == np ? col17 : NULL;
                if (touch_c && jr + w * NR < nc)
                    prefetch_c(P, row, mr, j0 + jr + w * NR, nc - jr - w * NR < 2 * NR ? nc - jr - w * NR : 2 * NR);
                float *tt = t + ir * ldt + jr, *cc = P->C + row * P->ldc + j0 + jr;
                epi_t et = epi_at(&P->e, row, j0 + jr);
                if (w == 2)
                    ukr2_avx512(kc, a, b, b + (size_t)kc * NR, b17, mode, tt, ldt, cc, P->ldc, &et, mr, nr);
                else if (b17)
                    ukr17_avx512(kc, a, b, b17, mode, tt, ldt, cc, P->ldc, &et, mr);
                else
                    ukr_avx512(kc, a, b, mode, tt, ldt, cc, P->ldc, &et, mr, nr);
                p += w;
            }
            continue;
        }
#endif
        for (int jr = 0; jr < nc; jr += NR) {
            const float *b = pb + (size_t)(jr / NR) * kc * NR;
            int nr = nc - jr < NR ? nc - jr : NR;
            /* Fetch two tiles ahead. */
            if (touch_c && jr + 2 * NR < nc)
                prefetch_c(P, row, mr, j0 + jr + 2 * NR, nc - jr - 2 * NR < NR ? nc - jr - 2 * NR : NR);
            float *tt = t + ir * ldt + jr, *cc = P->C + row * P->ldc + j0 + jr;
            epi_t et = epi_at(&P->e, row, j0 + jr);
#ifdef HAVE_X86
            if (jr == j17) {
                ukr17_avx2(kc, a, b, col17, mode, tt, ldt, cc, P->ldc, &et, mr);
                continue;
            }
#endif
            P->ukr(kc, a, b, mode, tt, ldt, cc, P->ldc, &et, mr, nr);
        }
    }
}

static void run_item(const prob_t *P, long item)
{
    int ntile = P->tm * P->tn;
    int s = (int)(item / ntile), i0, mc, j0, nc;
    tile_rect(P, item % ntile, &i0, &mc, &j0, &nc);
    float *scr = thread_scratch();
    if (!scr) {
        run_item_fallback(P, s, i0, mc, j0, nc);
        return;
    }
    float *pa = scr, *pb = pa + PA_FLOATS, *T = pb + PB_FLOATS;
    int c0 = s * CPS, c1 = c0 + CPS < P->nchunks ? c0 + CPS : P->nchunks;
    int multi = P->nsup > 1;
    /* Intermediate sums: the super-chunk's slab (several super-chunks) or the scratch. */
    float *tbase = multi ? P->slab + s * P->sl_stride + (size_t)i0 * P->Np + j0 : T;
    ptrdiff_t ldt = multi ? P->Np : NCMAX;
    for (int c = c0; c < c1; c++) {
        int k0 = c * KCH, kc = P->K - k0 < KCH ? P->K - k0 : KCH;
        pack_b(pb, P->B, k0, kc, j0, nc);
        int first = c == c0, last = c == c1 - 1;
        int mode = multi ? (first ? M_STORE : M_ADD)
                         : (first ? (last ? M_FINAL : M_STORE) : (last ? M_ADD_FINAL : M_ADD));
        for (int i1 = 0; i1 < mc; i1 += MCMAX) {
            int ms = mc - i1 < MCMAX ? mc - i1 : MCMAX;
            const float *a = pa;
            if (P->apre) /* the layout of run_shared's A: per chunk, Mp x KCH */
                a = P->apre + (size_t)c * ((P->M + MR - 1) / MR * MR) * KCH + (size_t)((i0 + i1) / MR) * kc * MR;
            else
                pack_a(pa, P->A, i0 + i1, ms, k0, kc);
            run_block(P, kc, mode, a, pb, i0 + i1, ms, j0, nc, tbase + i1 * ldt, ldt);
        }
    }
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

/* ---- shared packing: each operand packed once per call ----
 * run_item packs the A rows and B columns of its own tile, so with tm x tn tiles A is
 * packed tn times and B tm times. When the problem is one super-chunk and both packed
 * operands are small (the batch-1 and small-batch layers, where the threads need several
 * tiles of a narrow problem), they are instead packed once into shared buffers, the
 * threads splitting the packing, and the tiles then only run micro-kernels. The
 * micro-kernels see the same panels in the same chunk order: the same bits. (AVX2 and
 * portable kernels only: on the AVX-512 path the copies between the cores cost more than
 * packing per tile, see gemm.) */
#define SHARED_MAX_FLOATS ((size_t)1 << 20) /* per operand: 4 MB */
#define PACK_ROWS (8 * MR)  /* rows of A per packing unit */
/* Columns of B per packing unit: about a quarter of a thread's share, at least 2 panels.
 * At batch 1 (N = 33..129) fixed 128-column units left one thread packing while the other
 * waited; fixed 32-column units made a single thread's wide operand (the plugin's
 * renders) slower to pack, its rows copied in short pieces. */
static int pack_cols(int N, int nt)
{
    int w = (N + 4 * nt - 1) / (4 * nt);
    w = (w + NR - 1) / NR * NR;
    return w < 2 * NR ? 2 * NR : w;
}

typedef struct {
    const prob_t *P;
    float *a, *b;   /* chunk c of A at a + c * Mp * KCH, of B at b + c * KCH * Np */
    int Mp, Np;
    int ua, ub;     /* packing units per chunk */
    int bcols;      /* columns of B per unit */
} shared_t;

static int shared_fits(const prob_t *P, size_t *floats)
{
    if (P->nsup != 1) return 0;
    size_t a = (size_t)round_up(P->M, MR) * (size_t)P->nchunks * KCH;
    size_t b = (size_t)round_up(P->N, NR) * (size_t)P->nchunks * KCH;
    *floats = a + b;
    return a <= SHARED_MAX_FLOATS && b <= SHARED_MAX_FLOATS;
}

static void shared_pack_unit(const shared_t *S, long u)
{
    const prob_t *P = S->P;
    int per = S->ua + S->ub, c = (int)(u / per), q = (int)(u % per);
    int k0 = c * KCH, kc = P->K - k0 < KCH ? P->K - k0 : KCH;
    if (q < S->ua) {
        int r0 = q * PACK_ROWS, rows = P->M - r0 < PACK_ROWS ? P->M - r0 : PACK_ROWS;
        pack_a(S->a + (size_t)c * S->Mp * KCH + (size_t)(r0 / MR) * kc * MR, P->A, r0, rows, k0, kc);
    } else {
        int j0 = (q - S->ua) * S->bcols, cols = P->N - j0 < S->bcols ? P->N - j0 : S->bcols;
        pack_b(S->b + (size_t)c * KCH * S->Np + (size_t)(j0 / NR) * kc * NR, P->B, k0, kc, j0, cols);
    }
}

static void shared_tile(const shared_t *S, long tile, float *T)
{
    const prob_t *P = S->P;
    int i0, mc, j0, nc;
    tile_rect(P, tile, &i0, &mc, &j0, &nc);
    for (int c = 0; c < P->nchunks; c++) {
        int kc = P->K - c * KCH < KCH ? P->K - c * KCH : KCH;
        int first = c == 0, last = c == P->nchunks - 1;
        int mode = first ? (last ? M_FINAL : M_STORE) : (last ? M_ADD_FINAL : M_ADD);
        const float *pa = S->a + (size_t)c * S->Mp * KCH + (size_t)(i0 / MR) * kc * MR;
        const float *pb = S->b + (size_t)c * KCH * S->Np + (size_t)(j0 / NR) * kc * NR;
        run_block(P, kc, mode, pa, pb, i0, mc, j0, nc, T, NCMAX);
    }
}

/* ---- weights packed once (nf_gemm_pack_a / nf_gemm_register_packed) ----
 * An inference network's weights do not change between calls, so their A panels (15% of
 * a batch-1 forward) can be packed once when the model is loaded. A registered matrix is
 * found by its address, shape and leading dimension; the shared path then reads its
 * panels instead of packing them: the same panels, so the same bits. */
/* One registry for every copy packed once: the GEMM's A panels (kind
 * NF_PACKED_GEMM_A) and the Winograd convs' transformed weights (NF_PACKED_WINO, see
 * nn_wino.c), each found by its kind, source address and two dimensions. */
typedef struct {
    int kind;
    const float *src;
    int m, k;
    const float *packed;
} packed_entry;

static pthread_rwlock_t g_reg_lock = PTHREAD_RWLOCK_INITIALIZER;
static packed_entry *g_reg;
static size_t g_reg_n, g_reg_cap;

size_t nf_gemm_packed_a_floats(int M, int K)
{
    if (M <= 0 || K <= 0) return 0;
    return (size_t)round_up(M, MR) * (size_t)((K + KCH - 1) / KCH) * KCH;
}

void nf_gemm_pack_a(int M, int K, const float *A, float *dst)
{
    mat_t Am = {A, K, 1, 1, 0, 0};
    int nchunks = (K + KCH - 1) / KCH, Mp = round_up(M, MR);
    for (int c = 0; c < nchunks; c++) {
        int k0 = c * KCH, kc = K - k0 < KCH ? K - k0 : KCH;
        pack_a(dst + (size_t)c * Mp * KCH, Am, 0, M, k0, kc);
    }
}

int nf_packed_register(int kind, const float *src, int m, int k, const float *packed)
{
    int ok = 1;
    pthread_rwlock_wrlock(&g_reg_lock);
    if (g_reg_n == g_reg_cap) {
        size_t cap = g_reg_cap ? 2 * g_reg_cap : 64;
        packed_entry *r = realloc(g_reg, cap * sizeof *r);
        if (r) {
            g_reg = r;
            g_reg_cap = cap;
        } else {
            ok = 0; /* not registered: the copy is simply made per call */
        }
    }
    if (ok) g_reg[g_reg_n++] = (packed_entry){kind, src, m, k, packed};
    pthread_rwlock_unlock(&g_reg_lock);
    return ok;
}

const float *nf_packed_find(int kind, const float *src, int m, int k)
{
    const float *r = NULL;
    pthread_rwlock_rdlock(&g_reg_lock);
    for (size_t i = 0; i < g_reg_n && !r; i++)
        if (g_reg[i].kind == kind && g_reg[i].src == src && g_reg[i].m == m && g_reg[i].k == k) r = g_reg[i].packed;
    pthread_rwlock_unlock(&g_reg_lock);
    return r;
}

int nf_gemm_register_packed(const float *A, int M, int K, const float *packed)
{
    return nf_packed_register(NF_PACKED_GEMM_A, A, M, K, packed);
}

void nf_gemm_unregister_packed(const float *buf, size_t n)
{
    pthread_rwlock_wrlock(&g_reg_lock);
    for (size_t i = 0; i < g_reg_n;)
        if (g_reg[i].packed >= buf && g_reg[i].packed < buf + n) g_reg[i] = g_reg[--g_reg_n];
        else i++;
    pthread_rwlock_unlock(&g_reg_lock);
}

/* The registered panels of A (op(A) = A, rows of K contiguous floats), or NULL. */
static const float *find_packed(const mat_t *A, int M, int K)
{
    if (A->cs != 1 || A->rs != K || A->taps > 1) return NULL;
    return nf_packed_find(NF_PACKED_GEMM_A, A->p, M, K);
}

typedef struct {
    const shared_t *S;
    long units, tiles;
    atomic_long next_u, done_u, next_t;
} shared_job;

/* Every participant packs units while there are any, waits until all are packed, then
 * runs tiles. A participant without scratch computes its tiles element by element (same
 * bits). */
static void shared_fn(void *ctx, int who)
{
    (void)who;
    shared_job *J = ctx;
    const prob_t *P = J->S->P;
    long u, t;
    while ((u = atomic_fetch_add_explicit(&J->next_u, 1, memory_order_relaxed)) < J->units) {
        shared_pack_unit(J->S, u);
        atomic_fetch_add_explicit(&J->done_u, 1, memory_order_release);
    }
    for (int i = 0; atomic_load_explicit(&J->done_u, memory_order_acquire) < J->units; i++) nf_spin_pause(i);
    float *scr = thread_scratch();
    while ((t = atomic_fetch_add_explicit(&J->next_t, 1, memory_order_relaxed)) < J->tiles) {
        if (scr) {
            shared_tile(J->S, t, scr + PA_FLOATS + PB_FLOATS);
        } else {
            int i0, mc, j0, nc;
            tile_rect(P, t, &i0, &mc, &j0, &nc);
            run_item_fallback(P, 0, i0, mc, j0, nc);
        }
    }
}

typedef struct {
    const prob_t *P;
    long items;
    atomic_long next;
} items_job;

static void items_fn(void *ctx, int who)
{
    (void)who;
    items_job *J = ctx;
    long it;
    while ((it = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed)) < J->items) run_item(J->P, it);
}

/* pre: A's registered panels, or NULL to pack A here. Returns 0 if the shared path
 * cannot run (too big, or no memory): the caller falls back. */
static int run_shared(const prob_t *P, int nt, const float *pre)
{
    size_t need;
    if (!shared_fits(P, &need)) return 0;
    if (need > tl_shared_cap) {
        free(tl_shared);
        tl_shared = aligned_alloc(64, need * sizeof(float));
        tl_shared_cap = tl_shared ? need : 0;
        if (!tl_shared) return 0;
    }
    shared_t S;
    S.P = P;
    S.Mp = round_up(P->M, MR);
    S.Np = round_up(P->N, NR);
    S.a = pre ? (float *)pre : tl_shared; /* read-only when pre: no A units below */
    S.b = tl_shared + (size_t)S.Mp * P->nchunks * KCH;
    S.ua = pre ? 0 : (P->M + PACK_ROWS - 1) / PACK_ROWS;
    S.bcols = pack_cols(P->N, nt);
    S.ub = (P->N + S.bcols - 1) / S.bcols;
    shared_job J;
    J.S = &S;
    J.units = (long)P->nchunks * (S.ua + S.ub);
    J.tiles = (long)P->tm * P->tn;
    atomic_init(&J.next_u, 0);
    atomic_init(&J.done_u, 0);
    atomic_init(&J.next_t, 0);
    nf_pool_run(nt, shared_fn, &J);
    return 1;
}

/* The macro tiles of P (M, N, K, nchunks, nsup set): P->mc, nc, tm, tn. Returns the
 * threads to use. Tile sizes only change who computes what, never the bits. */
static int plan_tiles(prob_t *P)
{
    const int M = P->M, N = P->N, K = P->K;
    int nt = nf_nn_threads();
    double flops = 2.0 * M * N * (double)K;
    /* Below ~0.1 ms of work, waking a second thread costs more than it saves. */
    if (flops < 4e6) nt = 1;
    /* With one short chunk (conv-like K) a wider B block still fits the packing
     * buffer and is read as longer sequential rows. */
    int ncmax = NCMAX;
    if (P->nchunks == 1) {
        ncmax = (int)(PB_FLOATS / (size_t)K) / NR * NR;
        if (ncmax > 4096) ncmax = 4096;
        if (ncmax < NCMAX) ncmax = NCMAX;
    }
    /* Even splits, then more tiles until every thread has several items (the dynamic
     * schedule then balances them). On the AVX-512 path a narrow problem (batch 1's
     * layers, N <= 256) is split by rows only, one tile a thread: each tile then runs its
     * whole width in panel pairs instead of leaving an odd panel to the one-panel kernel,
     * and (inference, see gemm) packs B once for itself. ref-stft's batch-1 forward
     * measured 7% faster split by rows than by columns first, and with its own B 8% faster
     * with one tile a thread than with two (three: 7% slower); its training step 5%
     * faster; batch 8 unchanged. */
    int rows_only = P->ukr == ukr_avx512 && N <= NCMAX;
    int tm = (M + MIMAX - 1) / MIMAX, tn = (N + ncmax - 1) / ncmax, mc, nc;
    for (;;) {
        mc = round_up((M + tm - 1) / tm, MR);
        nc = round_up((N + tn - 1) / tn, NR);
        long items = (long)P->nsup * tm * tn;
        if (nt == 1 || items >= (rows_only ? 1L : 4L) * nt) break;
        if (rows_only && mc > 2 * MR) tm++;
        else if (nc > 4 * NR) tn++;
        else if (mc > 4 * MR) tm++;
        else break;
    }
    P->mc = mc, P->nc = nc;
    P->tm = (M + mc - 1) / mc;
    P->tn = (N + nc - 1) / nc;
    /* A last tile of a few columns (batch 1's 2^k + 1) joins the tile before it, so that
     * its column rides on that tile's last full panel (ukr17_avx2) instead of running
     * alone; nc + NR still fits the packing and sum buffers. */
    if (P->tn > 1 && N - (P->tn - 1) * nc <= NARROW_MAX && nc + NR <= ncmax) P->tn--;
    return nt;
}

/* ---- both operands packed by the caller (nf_gemm_packed) ---- */
typedef struct {
    const prob_t *P;
    const float *a, *b;
    float *c;
    size_t as, bs, cs; /* strides between the problems */
    long tiles;        /* per problem */
} packed_job;

/* Tiles [t0, t1) over all the problems (tile t of problem t / tiles). */
static void packed_tiles(void *ctx, int t0, int t1)
{
    const packed_job *J = ctx;
    for (int t = t0; t < t1; t++) {
        long q = t / J->tiles;
        prob_t P = *J->P;
        P.C = J->c + (size_t)q * J->cs;
        int i0, mc, j0, nc;
        tile_rect(&P, t % J->tiles, &i0, &mc, &j0, &nc);
        const float *a = J->a + (size_t)q * J->as + (size_t)(i0 / MR) * P.K * MR;
        const float *b = J->b + (size_t)q * J->bs + (size_t)(j0 / NR) * P.K * NR;
        /* One chunk, so the final mode: the kernels write C and never the sums buffer
         * (given as C itself, so that its pointer arithmetic stays inside an object). */
        run_block(&P, P.K, M_FINAL, a, b, i0, mc, j0, nc, P.C, 0);
    }
}

_Static_assert(NF_GEMM_PACKED_KMAX == KCH && NF_GEMM_PANEL_N == NR, "nf_gemm_packed's layout is the packing's");

size_t nf_gemm_packed_b_floats(int K, int N)
{
    if (K <= 0 || N <= 0) return 0;
    return (size_t)K * (size_t)round_up(N, NR);
}

/* serial: every tile on the calling thread (which may be one of the pool's workers). */
static void gemm_packed(int serial, int count, int M, int N, int K, const float *Ap, size_t as, const float *Bp,
                        size_t bs, float *C, size_t cs, int ldc)
{
    if (count <= 0 || M <= 0 || N <= 0 || K <= 0 || K > NF_GEMM_PACKED_KMAX) return;
    prob_t P;
    memset(&P, 0, sizeof P);
    P.M = M, P.N = N, P.K = K;
    P.C = C, P.ldc = ldc;
    P.e = (epi_t){1.0f, 0.0f, NULL, NULL, ldc};
    P.nchunks = 1, P.nsup = 1;
    P.ukr = pick_kernel();
    int nt = plan_tiles(&P);
    packed_job J = {&P, Ap, Bp, C, as, bs, cs, (long)P.tm * P.tn};
    if (serial) packed_tiles(&J, 0, (int)(J.tiles * count));
    /* plan_tiles has already kept small problems on one thread. */
    else nf_par_for(nt, (int)(J.tiles * count), (size_t)count * M * N * K, packed_tiles, &J);
}

void nf_gemm_packed(int count, int M, int N, int K, const float *Ap, size_t as, const float *Bp, size_t bs, float *C,
                    size_t cs, int ldc)
{
    gemm_packed(0, count, M, N, K, Ap, as, Bp, bs, C, cs, ldc);
}

void nf_gemm_packed_serial(int count, int M, int N, int K, const float *Ap, size_t as, const float *Bp, size_t bs,
                           float *C, size_t cs, int ldc)
{
    gemm_packed(1, count, M, N, K, Ap, as, Bp, bs, C, cs, ldc);
}

/* a_taps > 1: A is a conv weight w[K / a_taps][M][a_taps] read as op(A)(i, q a_taps + t) =
 * w[(q M + i) a_taps + t] (ta, lda unused). */
static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, int a_taps,
                 const float *B, int ldb, int taps, ptrdiff_t tstep, float beta, float *C,
                 int ldc, const float *bias, const float *res)
{
    if (M <= 0 || N <= 0) return;
    if (taps < 1) taps = 1;
    epi_t e = {alpha, beta, bias, res, ldc};
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = epi_one(0.0f, &C[(size_t)i * ldc + j], &e, i, j);
        return;
    }
    prob_t P;
    P.apre = NULL;
    P.A.p = A;
    P.A.rs = ta ? 1 : lda;
    P.A.cs = ta ? lda : 1;
    P.B.p = B;
    P.B.rs = tb ? 1 : ldb; /* B indexed (k, j) */
    P.B.cs = tb ? ldb : 1;
    P.A.taps = 1, P.A.tside = 0, P.A.tstep = 0;
    if (a_taps > 1) {
        P.A.rs = a_taps;
        P.A.cs = (ptrdiff_t)M * a_taps;
        P.A.taps = a_taps, P.A.tside = 1, P.A.tstep = 1;
    }
    P.B.taps = taps, P.B.tside = tb ? 1 : 0, P.B.tstep = tstep;
    P.M = M, P.N = N, P.K = K;
    P.C = C, P.ldc = ldc, P.e = e;
    P.nchunks = (K + KCH - 1) / KCH;
    P.nsup = (P.nchunks + CPS - 1) / CPS;
    P.ukr = pick_kernel();

    int nt = plan_tiles(&P);
    P.slab = NULL;
    P.Np = 0;
    P.sl_stride = 0;
    if (P.nsup > 1) {
        P.Np = round_up(N, NR);
        P.sl_stride = (size_t)round_up(M, MR) * P.Np;
        size_t need = P.sl_stride * P.nsup;
        if (need > tl_slab_cap) {
            free(tl_slab);
            tl_slab = aligned_alloc(64, need * sizeof(float));
            tl_slab_cap = tl_slab ? need : 0;
        }
        P.slab = tl_slab;
        if (!P.slab) {
            /* No memory for the slabs: same order, one element at a time. */
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    float x = chain_elem(&P, i, j, 0);
                    for (int s = 1; s < P.nsup; s++) x = x + chain_elem(&P, i, j, s);
                    C[(size_t)i * ldc + j] = epi_one(x, &C[(size_t)i * ldc + j], &e, i, j);
                }
            return;
        }
    }
    long items = (long)P.nsup * P.tm * P.tn;
    if (items < 2) nt = 1;
    /* The shared path (AVX2 and portable kernels) also serves one tile when A's panels are
     * registered (no packing). */
    const float *pre = g_no_prepacked || g_no_shared ? NULL : find_packed(&P.A, M, K);
    /* On the AVX-512 path every tile packs its own operands, reading A's panels in place
     * when they are registered (an inference network's weights). Packed once and shared
     * by the threads, half of each operand was written by one core and read by the other
     * (the shared packing of a batch-1 layer took 5x as long on two threads as on one, its
     * tiles ran 35% slower); with kernels twice as fast as AVX2's, those copies between
     * the cores cost more than packing per tile: the batch-1 GEMMs of ref-stft 27-40%
     * faster, its forward 12% at batch 1 and 11% at batch 8, its training step 18% at
     * batch 1 and 3.6% at batch 8, ref-wave's training step 4% at batch 1. */
    if (P.ukr == ukr_avx512 && P.nsup == 1)
        P.apre = pre;
    else if ((items > 1 || pre) && !g_no_shared && run_shared(&P, nt, pre))
        return;
    items_job J;
    J.P = &P;
    J.items = items;
    atomic_init(&J.next, 0);
    nf_pool_run(nt, items_fn, &J);
    if (P.nsup > 1) {
        /* total = ((q_0 + q_1) + q_2) + ..., then the epilogue. */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && (size_t)M * N * P.nsup > 65536)
        for (int i = 0; i < M; i++) {
            const float *q = P.slab + (size_t)i * P.Np;
            float *c = C + (size_t)i * ldc;
            for (int j = 0; j < N; j++) {
                float x = q[j];
                for (int s = 1; s < P.nsup; s++) x = x + q[s * P.sl_stride + j];
                c[j] = epi_one(x, &c[j], &e, i, j);
            }
        }
    }
}

void nf_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc)
{
    gemm(ta, tb, M, N, K, alpha, A, lda, 1, B, ldb, 1, 0, beta, C, ldc, NULL, NULL);
}

void nf_gemm_taps(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, int taps, ptrdiff_t tstep, float beta, float *C,
                  int ldc)
{
    gemm(ta, tb, M, N, K, alpha, A, lda, 1, B, ldb, taps, tstep, beta, C, ldc, NULL, NULL);
}

void nf_gemm_convt(int M, int N, int K, int ktaps, float alpha, const float *w, const float *B, int ldb, int taps,
                   ptrdiff_t tstep, float beta, float *C, int ldc)
{
    if (ktaps <= 1) /* a 1x1 kernel: w [K][M] is just op(A)^T */
        gemm(1, 0, M, N, K, alpha, w, M, 1, B, ldb, taps, tstep, beta, C, ldc, NULL, NULL);
    else
        gemm(0, 0, M, N, K, alpha, w, 0, ktaps, B, ldb, taps, tstep, beta, C, ldc, NULL, NULL);
}

void nf_gemm_taps_bias(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, int taps,
                       ptrdiff_t tstep, const float *bias, const float *res, float *C, int ldc)
{
    gemm(0, 0, M, N, K, alpha, A, lda, 1, B, ldb, taps, tstep, bias || res ? 1.0f : 0.0f, C, ldc, bias, res);
}
