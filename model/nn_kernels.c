/* Elementwise kernels, sequence-layout helpers and the thread count shared by the
 * layers. Every loop here is plain C that GCC vectorises; nothing calls libm's expf
 * in a hot loop. */
#include "nf_nn.h"
#include "nf_unet.h"

#include <cblas.h>
#include <omp.h>
#include <stdatomic.h>
#include <string.h>

static atomic_int g_threads = 0; /* 0: not set yet (use every core) */

void nf_set_threads(int n)
{
    if (n <= 0) n = omp_get_num_procs();
    atomic_store(&g_threads, n);
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
}

int nf_get_threads(void) { return nf_nn_threads(); }

int nf_nn_threads(void)
{
    int n = atomic_load(&g_threads);
    return n > 0 ? n : omp_get_num_procs();
}

/* exp(x): x = n ln2 + r with |r| <= ln2/2 (Cody & Waite split of ln2), exp(r) by the
 * Cephes expf minimax polynomial, 2^n assembled in the exponent bits. Relative error
 * about 2e-7 over the clamped range. The rounding constant 1.5*2^23 rounds t to the
 * nearest integer in round-to-nearest mode (no -ffast-math in this build). */
static inline float fast_expf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

float nf_fast_expf(float x) { return fast_expf(x); }
float nf_fast_sigmoid(float x) { return 1.0f / (1.0f + fast_expf(-x)); }

#define PAR_MIN 32768 /* below this many elements a loop stays on one thread */

void nf_silu_forward(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) num_threads(nf_nn_threads()) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v / (1.0f + fast_expf(-v));
    }
}

/* silu'(x) = s (1 + x (1 - s)), s = sigmoid(x). */
void nf_silu_backward(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) num_threads(nf_nn_threads()) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float s = 1.0f / (1.0f + fast_expf(-v));
        dx[i] += dy[i] * (s * (1.0f + v * (1.0f - s)));
    }
}

void nf_seq_pack(float *X, const float *x, int C, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
#pragma omp parallel for schedule(static) num_threads(nf_nn_threads()) if ((size_t)C * ld > PAR_MIN)
    for (int c = 0; c < C; c++) {
        float *row = X + (size_t)c * ld;
        memset(row, 0, ld * sizeof *row);
        for (int b = 0; b < s.B; b++)
            memcpy(row + (size_t)b * s.S + s.off, x + ((size_t)b * C + c) * s.L,
                   (size_t)s.L * sizeof *row);
    }
}

void nf_seq_unpack(float *x, const float *X, int C, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
#pragma omp parallel for schedule(static) num_threads(nf_nn_threads()) if ((size_t)C * ld > PAR_MIN)
    for (int c = 0; c < C; c++)
        for (int b = 0; b < s.B; b++)
            memcpy(x + ((size_t)b * C + c) * s.L, X + (size_t)c * ld + (size_t)b * s.S + s.off,
                   (size_t)s.L * sizeof *x);
}

void nf_seq_zero_gaps(float *X, int C, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
    int tail = s.S - s.off - s.L;
    for (int c = 0; c < C; c++) {
        float *row = X + (size_t)c * ld;
        for (int b = 0; b < s.B; b++) {
            float *seg = row + (size_t)b * s.S;
            for (int i = 0; i < s.off; i++) seg[i] = 0.0f;
            for (int i = 0; i < tail; i++) seg[s.off + s.L + i] = 0.0f;
        }
    }
}

void nf_seq_add(float *Y, const float *X, int C, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
    int rows = C * s.B;
#pragma omp parallel for schedule(static) num_threads(nf_nn_threads()) if ((size_t)C * ld > PAR_MIN)
    for (int r = 0; r < rows; r++) {
        int c = r / s.B, b = r % s.B;
        size_t o = (size_t)c * ld + (size_t)b * s.S + s.off;
        float *y = Y + o;
        const float *x = X + o;
        for (int l = 0; l < s.L; l++) y[l] += x[l];
    }
}
