/* A deterministic single-precision GEMM for the layers.
 *
 * OpenBLAS 0.3.21's sgemm (Haswell/Zen kernels) rounds an element differently
 * depending on where it falls in the kernel's tiles and on how the threads split the
 * matrix, so a column's value changes with the batch size and the thread count
 * (measured: 24 of 25 conv-like shapes differ between 1 and 2 threads). The network
 * promises bit-identical results across both, so its GEMMs come here: every C element
 * is accumulated over k in one fixed order, by the same arithmetic (FMA on CPUs that
 * have it, multiply-then-add otherwise) whether it sits in a full register tile or an
 * edge, whichever thread computes it.
 *
 *   nn:  C[i][j] = beta C + alpha sum_k A(i,k) B[k][j]   A(i,k) = A[i*ars + k*acs]
 *   nt:  C[i][j] = beta C + alpha sum_k A[i][k] B[j][k]  (16 fixed lanes over k)
 */
#include "nf_nn.h"

#include <math.h>
#include <stddef.h>

#define MR 4
#define NR 16
#define LANES 16

#define DEFINE_KERNELS(SUF, ATTR, MAC)                                                       \
    ATTR static void nn_tile_##SUF(int mr, int nr, int K, float alpha, const float *A,       \
                                   ptrdiff_t ars, ptrdiff_t acs, const float *B, ptrdiff_t ldb, \
                                   float beta, float *C, ptrdiff_t ldc)                      \
    {                                                                                        \
        float acc[MR][NR] = {{0}};                                                           \
        if (mr == MR && nr == NR) {                                                          \
            for (int k = 0; k < K; k++) {                                                    \
                const float *b = B + k * ldb;                                                \
                for (int r = 0; r < MR; r++) {                                               \
                    float a = A[r * ars + k * acs];                                          \
                    for (int j = 0; j < NR; j++) acc[r][j] = MAC(a, b[j], acc[r][j]);        \
                }                                                                            \
            }                                                                                \
        } else {                                                                             \
            for (int k = 0; k < K; k++) {                                                    \
                const float *b = B + k * ldb;                                                \
                for (int r = 0; r < mr; r++) {                                               \
                    float a = A[r * ars + k * acs];                                          \
                    for (int j = 0; j < nr; j++) acc[r][j] = MAC(a, b[j], acc[r][j]);        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        for (int r = 0; r < mr; r++) {                                                       \
            float *c = C + r * ldc;                                                          \
            if (beta == 0.0f)                                                                \
                for (int j = 0; j < nr; j++) c[j] = alpha * acc[r][j];                       \
            else                                                                             \
                for (int j = 0; j < nr; j++) c[j] = beta * c[j] + alpha * acc[r][j];         \
        }                                                                                    \
    }                                                                                        \
    ATTR static float dot_##SUF(const float *x, const float *y, int n)                       \
    {                                                                                        \
        float acc[LANES] = {0};                                                              \
        int i = 0;                                                                           \
        for (; i + LANES <= n; i += LANES)                                                   \
            for (int j = 0; j < LANES; j++) acc[j] = MAC(x[i + j], y[i + j], acc[j]);        \
        for (int j = 0; i + j < n; j++) acc[j] = MAC(x[i + j], y[i + j], acc[j]);            \
        float s = 0.0f;                                                                      \
        for (int j = 0; j < LANES; j++) s += acc[j];                                         \
        return s;                                                                            \
    }                                                                                        \
    static void gemm_nn_##SUF(int M, int N, int K, float alpha, const float *A, ptrdiff_t ars, \
                              ptrdiff_t acs, const float *B, ptrdiff_t ldb, float beta,      \
                              float *C, ptrdiff_t ldc)                                       \
    {                                                                                        \
        int ti = (M + MR - 1) / MR, tj = (N + NR - 1) / NR;                                  \
        long tiles = (long)ti * tj;                                                          \
        _Pragma("omp parallel for schedule(static) num_threads(nf_nn_threads()) if ((double)M * N * K > 2e5)") \
        for (long t = 0; t < tiles; t++) {                                                   \
            int jt = (int)(t / ti), it = (int)(t % ti);                                      \
            int i0 = it * MR, j0 = jt * NR;                                                  \
            int mr = M - i0 < MR ? M - i0 : MR, nr = N - j0 < NR ? N - j0 : NR;              \
            nn_tile_##SUF(mr, nr, K, alpha, A + i0 * ars, ars, acs, B + j0, ldb, beta,       \
                          C + i0 * ldc + j0, ldc);                                           \
        }                                                                                    \
    }                                                                                        \
    static void gemm_nt_##SUF(int M, int N, int K, float alpha, const float *A, ptrdiff_t lda, \
                              const float *B, ptrdiff_t ldb, float beta, float *C,           \
                              ptrdiff_t ldc)                                                 \
    {                                                                                        \
        long n = (long)M * N;                                                                \
        _Pragma("omp parallel for schedule(static) num_threads(nf_nn_threads()) if ((double)M * N * K > 2e5)") \
        for (long t = 0; t < n; t++) {                                                       \
            int i = (int)(t / N), j = (int)(t % N);                                          \
            float s = dot_##SUF(A + i * lda, B + j * ldb, K);                                \
            float *c = C + i * ldc + j;                                                      \
            *c = beta == 0.0f ? alpha * s : beta * *c + alpha * s;                           \
        }                                                                                    \
    }

#define MAC_PLAIN(a, b, c) ((c) + (a) * (b))
DEFINE_KERNELS(plain, , MAC_PLAIN)

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_FMA_CLONE 1
#define MAC_FMA(a, b, c) __builtin_fmaf((a), (b), (c))
DEFINE_KERNELS(fma, __attribute__((target("avx2,fma"))), MAC_FMA)
#endif

static int use_fma(void)
{
#ifdef HAVE_FMA_CLONE
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return v;
#else
    return 0;
#endif
}

void nf_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc)
{
    if (!tb) {
        ptrdiff_t ars = ta ? 1 : lda, acs = ta ? lda : 1;
#ifdef HAVE_FMA_CLONE
        if (use_fma()) {
            gemm_nn_fma(M, N, K, alpha, A, ars, acs, B, ldb, beta, C, ldc);
            return;
        }
#endif
        gemm_nn_plain(M, N, K, alpha, A, ars, acs, B, ldb, beta, C, ldc);
    } else if (!ta) {
#ifdef HAVE_FMA_CLONE
        if (use_fma()) {
            gemm_nt_fma(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
#endif
        gemm_nt_plain(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    } else {
        /* A^T B^T is not used by the layers; (B A)^T through the nn kernel would do. */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float s = 0.0f;
                for (int k = 0; k < K; k++) s += A[k * lda + i] * B[j * ldb + k];
                C[i * ldc + j] = beta == 0.0f ? alpha * s : beta * C[i * ldc + j] + alpha * s;
            }
    }
}
