/* Elementwise kernels, sequence-layout helpers and the thread count shared by the
 * layers. Every loop here is plain C that GCC vectorises; nothing calls libm's expf
 * in a hot loop. */
#include "nf_nn.h"
#include "nn_fastexp.h"
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

/* The vector paths this CPU (and OS) runs, bit 0 AVX2+FMA, bit 1 AVX-512F as well; found
 * once. libgcc's AVX-512 test also checks that the OS saves the 512-bit state (XCR0). */
static int cpu_paths(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    static atomic_int have = -1;
    int h = atomic_load(&have);
    if (h < 0) {
        __builtin_cpu_init();
        int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        h = avx2 | (avx2 && __builtin_cpu_supports("avx512f")) << 1;
        atomic_store(&have, h);
    }
    return h;
#else
    return 0;
#endif
}

int nf_cpu_avx2_fma(void) { return cpu_paths() & 1; }

int nf_cpu_avx512(void) { return (cpu_paths() >> 1) & 1; }

int nf_cpu_vec_level(void) { return nf_cpu_avx2_fma() + nf_cpu_avx512(); }

int nf_cpu_runs_path(int path) { return path >= 1 && path <= 3 && path - 1 <= nf_cpu_vec_level(); }


float nf_fast_expf(float x) { return nf_fastexp_inline(x); }
float nf_fast_sigmoid(float x) { return 1.0f / (1.0f + nf_fastexp_inline(-x)); }

#define PAR_MIN 32768 /* below this many elements a loop stays on one thread */

void nf_silu_forward(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) num_threads(nf_nn_threads()) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v / (1.0f + nf_fastexp_inline(-v));
    }
}

/* silu'(x) = s (1 + x (1 - s)), s = sigmoid(x). */
void nf_silu_backward(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) num_threads(nf_nn_threads()) if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float s = 1.0f / (1.0f + nf_fastexp_inline(-v));
        dx[i] += dy[i] * (s * (1.0f + v * (1.0f - s)));
    }
}

/* The layout conversions and the residual add, on the pool (nf_par_for). */
typedef struct {
    float *y;
    const float *x;
    int C;
    nf_seq s;
} seq_job;

static void seq_pack_rows(void *v, int c0, int c1)
{
    const seq_job *J = v;
    nf_seq s = J->s;
    size_t ld = nf_seq_ld(s);
    for (int c = c0; c < c1; c++) {
        float *row = J->y + (size_t)c * ld;
        memset(row, 0, ld * sizeof *row);
        for (int b = 0; b < s.B; b++)
            memcpy(row + (size_t)b * s.S + s.off, J->x + ((size_t)b * J->C + c) * s.L, (size_t)s.L * sizeof *row);
    }
}

void nf_seq_pack(float *X, const float *x, int C, nf_seq s)
{
    seq_job J = {X, x, C, s};
    nf_par_for(nf_nn_threads(), C, (size_t)C * nf_seq_ld(s), seq_pack_rows, &J);
}

static void seq_unpack_rows(void *v, int c0, int c1)
{
    const seq_job *J = v;
    nf_seq s = J->s;
    size_t ld = nf_seq_ld(s);
    for (int c = c0; c < c1; c++)
        for (int b = 0; b < s.B; b++)
            memcpy(J->y + ((size_t)b * J->C + c) * s.L, J->x + (size_t)c * ld + (size_t)b * s.S + s.off,
                   (size_t)s.L * sizeof *J->y);
}

void nf_seq_unpack(float *x, const float *X, int C, nf_seq s)
{
    seq_job J = {x, X, C, s};
    nf_par_for(nf_nn_threads(), C, (size_t)C * nf_seq_ld(s), seq_unpack_rows, &J);
}

void nf_seq_zero_gaps(float *X, int C, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
    for (int c = 0; c < C; c++)
        for (int b = 0; b < s.B; b++) nf_seg_zero_gaps(X + (size_t)c * ld + (size_t)b * s.S, s);
}

static void seq_add_rows(void *v, int r0, int r1)
{
    const seq_job *J = v;
    nf_seq s = J->s;
    size_t ld = nf_seq_ld(s);
    for (int r = r0; r < r1; r++) {
        int c = r / s.B, b = r % s.B;
        size_t o = (size_t)c * ld + (size_t)b * s.S + s.off;
        float *y = J->y + o;
        const float *x = J->x + o;
        for (int l = 0; l < s.L; l++) y[l] += x[l];
    }
}

void nf_seq_add(float *Y, const float *X, int C, nf_seq s)
{
    seq_job J = {Y, X, C, s};
    nf_par_for(nf_nn_threads(), C * s.B, (size_t)C * nf_seq_ld(s), seq_add_rows, &J);
}

/* Row (c, b) of Y plus v[b][c] (x is v here). */
static void seq_add_vec_rows(void *v, int r0, int r1)
{
    const seq_job *J = v;
    nf_seq s = J->s;
    size_t ld = nf_seq_ld(s);
    for (int r = r0; r < r1; r++) {
        int c = r / s.B, b = r % s.B;
        float e = J->x[(size_t)b * J->C + c];
        float *y = J->y + (size_t)c * ld + (size_t)b * s.S + s.off;
        for (int l = 0; l < s.L; l++) y[l] += e;
    }
}

void nf_seq_add_vec(float *Y, const float *v, int C, nf_seq s)
{
    seq_job J = {Y, v, C, s};
    nf_par_for(nf_nn_threads(), C * s.B, (size_t)C * nf_seq_ld(s), seq_add_vec_rows, &J);
}
