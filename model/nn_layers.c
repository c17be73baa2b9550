/* Layer forward/backward pairs of the denoiser (see nf_nn.h for the layout and the
 * accumulation conventions). GEMMs go to nf_gemm (nn_gemm.c, deterministic; never from
 * inside an OpenMP region);
 * elementwise passes share out whole rows on the GEMM's pool (nf_par_for: cheap between
 * GEMMs, whose workers are still spinning) or, for the attention and dropout loops,
 * OpenMP; either way every row is computed by one thread in a fixed order, so the result
 * of every element does not depend on the thread count. */
#include "nf_nn.h"
#include "nn_fastexp.h"
#include "nf_rng.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LANE_X86 1 /* AVX2 versions of the lane sums and GroupNorm rows, picked at run time */
#endif

#define PAR_MIN 32768
#define NT nf_nn_threads()
#define LANES 16

/* Sums in a fixed order: 16 float lanes (vectorisable), then the lanes in double. */
static double lane_sum(const float *x, int n)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += x[i + j];
    double s = 0.0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; i < n; i++) s += x[i];
    return s;
}

static double lane_sumsq_centered(const float *x, int n, float m)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float d = x[i + j] - m;
            acc[j] += d * d;
        }
    double s = 0.0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; i < n; i++) s += (double)(x[i] - m) * (x[i] - m);
    return s;
}

#ifdef LANE_X86
/* lane_dot's 16 lanes as two AVX vectors: per lane the same multiply then add (no FMA),
 * so the same bits as the portable loop (the library is built for plain x86-64, where
 * that loop runs on 4-wide SSE). The embedding projections at batch 1 are dot products
 * over the weights' rows. */
__attribute__((target("avx2"))) static void lane_dot_avx2(const float *x, const float *y, int n, float *acc)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int i = 0; i + LANES <= n; i += LANES) {
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8)));
    }
    _mm256_storeu_ps(acc, a0);
    _mm256_storeu_ps(acc + 8, a1);
}
#endif

static double lane_dot(const float *x, const float *y, int n)
{
    float acc[LANES] = {0};
    int i = n / LANES * LANES;
#ifdef LANE_X86
    if (nf_cpu_avx2_fma())
        lane_dot_avx2(x, y, n, acc);
    else
#endif
        for (int i0 = 0; i0 < i; i0 += LANES)
            for (int j = 0; j < LANES; j++) acc[j] += x[i0 + j] * y[i0 + j];
    double s = 0.0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; i < n; i++) s += (double)x[i] * y[i];
    return s;
}


/* ------------------------------------------------------------------ conv1d */

int nf_conv_out_len(nf_conv_dims d, int L)
{
    return (L + 2 * d.pad - d.dil * (d.k - 1) - 1) / d.stride + 1;
}

typedef struct {
    float *dbias;
    const float *dout;
    nf_seq so;
} bias_grad_job;

static void bias_grad_rows(void *v, int c0, int c1)
{
    const bias_grad_job *J = v;
    nf_seq so = J->so;
    size_t ld = nf_seq_ld(so);
    for (int c = c0; c < c1; c++) {
        double s = 0.0;
        for (int b = 0; b < so.B; b++)
            s += lane_sum(J->dout + (size_t)c * ld + (size_t)b * so.S + so.off, so.L);
        J->dbias[c] += (float)s;
    }
}

/* dbias[c] += sum over valid columns, per example then over examples (fixed order). */
static void bias_grad(float *dbias, const float *dout, nf_seq so, int C)
{
    bias_grad_job J = {dbias, dout, so};
    nf_par_for(NT, C, (size_t)C * nf_seq_ld(so), bias_grad_rows, &J);
}

typedef struct {
    float *col;
    nf_seq so, si;
    const float *in;
    nf_conv_dims d;
} gather_job;

static void gather_rows(void *v, int r0, int r1)
{
    const gather_job *J = v;
    nf_seq so = J->so, si = J->si;
    nf_conv_dims d = J->d;
    float *col = J->col;
    const float *in = J->in;
    size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
    for (int r = r0; r < r1; r++) {
        int ci = r / d.k, j = r % d.k;
        float *dst = col + (size_t)r * ldo;
        memset(dst, 0, ldo * sizeof *dst);
        for (int b = 0; b < so.B; b++) {
            const float *src = in + (size_t)ci * ldi + (size_t)b * si.S + si.off;
            float *o = dst + (size_t)b * so.S + so.off;
            for (int l = 0; l < so.L; l++) {
                int p = d.stride * l + j * d.dil - d.pad;
                o[l] = (p >= 0 && p < si.L) ? src[p] : 0.0f;
            }
        }
    }
}

/* Strided convs gather taps: col[ci*k + j][out col of (b, l)] = in[ci][stride*l + j*dil - pad]. */
static void gather_cols(float *col, nf_seq so, const float *in, nf_seq si, nf_conv_dims d)
{
    gather_job J = {col, so, si, in, d};
    nf_par_for(NT, d.cin * d.k, (size_t)d.cin * d.k * nf_seq_ld(so), gather_rows, &J);
}

void nf_conv1d_forward(float *out, nf_seq so, float *col, float *wt, const float *in, nf_seq si,
                       const float *w, const float *bias, const float *res, nf_conv_dims d)
{
    nf_conv1d_forward_rows(out, so, col, wt, in, si, w, bias, res, NULL, d);
}

void nf_conv1d_forward_rows(float *out, nf_seq so, float *col, float *wt, const float *in, nf_seq si,
                            const float *w, const float *bias, const float *res, const float *row_add,
                            nf_conv_dims d)
{
    (void)wt;
    /* out = bias (+ res) + conv(in): the GEMM adds bias and residual in its epilogue
     * (same bits as storing them first), then the gap columns are zeroed. A Winograd
     * conv also adds row_add as it writes out; otherwise a pass over out does. */
    if (nf_wino_applies(d, si, so) && nf_wino_conv3(out, in, so, w, bias, res, row_add, d.cin, d.cout) == 0) {
        /* Long sequences: half the multiply-adds (nn_wino.c). */
        row_add = NULL;
    } else if (d.stride == 1) {
        /* out[co][n] = sum_{ci,j} w[co][ci*k + j] in[ci][n + shift + j dil]: one GEMM
         * with K = cin k whose B operand is the k shifted views of `in`. */
        size_t ld = nf_seq_ld(si);
        int n0 = so.off;
        int N = (so.B - 1) * so.S + so.L;
        int shift = si.off - d.pad - so.off;
        nf_gemm_taps_bias(d.cout, N, d.cin * d.k, 1.0f, w, d.cin * d.k, in + n0 + shift, (int)ld, d.k, d.dil, bias,
                          res ? res + n0 : NULL, out + n0, (int)ld);
    } else {
        size_t ldo = nf_seq_ld(so);
        gather_cols(col, so, in, si, d);
        /* w as [cout][cin*k] matches col's row order ci*k + j: one GEMM, no repack. */
        nf_gemm_taps_bias(d.cout, (int)ldo, d.cin * d.k, 1.0f, w, d.cin * d.k, col, (int)ldo, 1, 0, bias, res, out,
                          (int)ldo);
    }
    nf_seq_zero_gaps(out, d.cout, so);
    if (row_add) nf_seq_add_vec(out, row_add, d.cout, so);
}

typedef struct {
    float *din;
    const float *dcol;
    nf_seq so, si;
    nf_conv_dims d;
} scatter_job;

static void scatter_rows(void *v, int c0, int c1)
{
    const scatter_job *J = v;
    nf_seq so = J->so, si = J->si;
    nf_conv_dims d = J->d;
    size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
    for (int ci = c0; ci < c1; ci++) {
        for (int j = 0; j < d.k; j++) {
            const float *src = J->dcol + ((size_t)ci * d.k + j) * ldo;
            for (int b = 0; b < so.B; b++) {
                float *dst = J->din + (size_t)ci * ldi + (size_t)b * si.S + si.off;
                const float *g = src + (size_t)b * so.S + so.off;
                for (int l = 0; l < so.L; l++) {
                    int p = d.stride * l + j * d.dil - d.pad;
                    if (p >= 0 && p < si.L) dst[p] += g[l];
                }
            }
        }
    }
}

void nf_conv1d_backward(float *din, float *dw, float *dbias, float *dout, nf_seq so,
                        const float *col, float *dcol, float *wt, const float *in, nf_seq si,
                        const float *w, nf_conv_dims d)
{
    nf_seq_zero_gaps(dout, d.cout, so);
    if (dbias) bias_grad(dbias, dout, so, d.cout);
    if (d.stride == 1) {
        size_t ld = nf_seq_ld(si);
        int n0 = so.off;
        int N = (so.B - 1) * so.S + so.L;
        int shift = si.off - d.pad - so.off;
        /* dw[co][ci*k + j] = sum_n dout[co][n] in[ci][n + shift + j dil]: one GEMM whose
         * op(B) columns are the k shifted views of `in`, straight into PyTorch's order. */
        nf_gemm_taps(0, 1, d.cout, d.cin * d.k, N, 1.0f, dout + n0, (int)ld, in + n0 + shift,
                     (int)ld, d.k, d.dil, 0.0f, dw, d.cin * d.k);
        if (din) {
            /* din[ci][m] += sum_{co,j} w[co][ci][j] dout[co][m - shift - j dil] over the
             * valid span of the input (the gaps of dout are zero): one GEMM with
             * K = cout k on k views of dout shifted the other way. */
            long m0 = si.off, Nm = (long)(si.B - 1) * si.S + si.L;
            long lo = m0 - shift - (long)(d.k - 1) * d.dil, hi = m0 + Nm - shift;
            if (lo >= 0 && hi <= (long)ld) {
                /* A is w read as the transposed convolution's cin x (cout k) matrix,
                 * packed straight from w (a transposed copy per step was ~10% of a
                 * batch-1 training step). */
                nf_gemm_convt(d.cin, (int)Nm, d.cout * d.k, d.k, 1.0f, w, dout + m0 - shift, (int)ld, d.k,
                              -(ptrdiff_t)d.dil, 1.0f, din + m0, (int)ld);
            } else {
                /* A "valid"-style conv whose shifted views of dout would start before
                 * the buffer: one GEMM per tap over the output columns instead. */
                for (int j = 0; j < d.k; j++) {
                    for (int co = 0; co < d.cout; co++)
                        for (int ci = 0; ci < d.cin; ci++)
                            wt[(size_t)co * d.cin + ci] = w[((size_t)co * d.cin + ci) * d.k + j];
                    nf_gemm(1, 0, d.cin, N, d.cout, 1.0f, wt, d.cin, dout + n0, (int)ld, 1.0f,
                            din + n0 + shift + j * d.dil, (int)ld);
                }
            }
        }
    } else {
        size_t ldo = nf_seq_ld(so);
        int K = d.cin * d.k;
        nf_gemm(0, 1, d.cout, K, (int)ldo, 1.0f, dout,
                    (int)ldo, col, (int)ldo, 0.0f, dw, K);
        if (din) {
            nf_gemm(1, 0, K, (int)ldo, d.cout, 1.0f, w, K,
                        dout, (int)ldo, 0.0f, dcol, (int)ldo);
            /* Scatter-add the taps back; one thread per input channel, fixed order. */
            scatter_job J = {din, dcol, so, si, d};
            nf_par_for(NT, d.cin, (size_t)K * ldo, scatter_rows, &J);
        }
    }
}

/* ------------------------------------------------------------------ linear */

typedef struct {
    float *out;
    const float *x, *w, *bias;
    int in, outn;
} linear_job;

static void linear_rows(void *v, int r0, int r1)
{
    const linear_job *J = v;
    for (int r = r0; r < r1; r++) {
        int b = r / J->outn, o = r % J->outn;
        double s = lane_dot(J->w + (size_t)o * J->in, J->x + (size_t)b * J->in, J->in);
        J->out[r] = (J->bias ? J->bias[o] : 0.0f) + (float)s;
    }
}

void nf_linear_forward(float *out, const float *x, const float *w, const float *bias, int B,
                       int in, int outn)
{
    linear_job J = {out, x, w, bias, in, outn};
    nf_par_for(NT, B * outn, (size_t)B * in * outn, linear_rows, &J);
}

typedef struct {
    float *dx, *dw, *dbias;
    const float *dout, *x, *w;
    int B, in, outn;
} linear_bwd_job;

static void linear_bwd_w(void *v, int o0, int o1)
{
    const linear_bwd_job *J = v;
    int B = J->B, in = J->in, outn = J->outn;
    for (int o = o0; o < o1; o++) {
        float *g = J->dw + (size_t)o * in;
        /* Written, not accumulated: example 0's term, then the others added in order. */
        for (int b = 0; b < B; b++) {
            float a = J->dout[(size_t)b * outn + o];
            const float *xb = J->x + (size_t)b * in;
            if (b == 0)
                for (int i = 0; i < in; i++) g[i] = a * xb[i];
            else
                for (int i = 0; i < in; i++) g[i] += a * xb[i];
        }
        if (J->dbias) {
            float s = 0.0f;
            for (int b = 0; b < B; b++) s += J->dout[(size_t)b * outn + o];
            J->dbias[o] += s;
        }
    }
}

/* dx row by row, split along its elements (batch 1 has one row): each element sums its
 * outn terms in o order whoever computes it. */
static void linear_bwd_x(void *v, int i0, int i1)
{
    const linear_bwd_job *J = v;
    int in = J->in, outn = J->outn;
    for (int b = 0; b < J->B; b++) {
        float *g = J->dx + (size_t)b * in;
        for (int o = 0; o < outn; o++) {
            float a = J->dout[(size_t)b * outn + o];
            const float *wo = J->w + (size_t)o * in;
            for (int i = i0; i < i1; i++) g[i] += a * wo[i];
        }
    }
}

void nf_linear_backward(float *dx, float *dw, float *dbias, const float *dout, const float *x,
                        const float *w, int B, int in, int outn)
{
    linear_bwd_job J = {dx, dw, dbias, dout, x, w, B, in, outn};
    size_t work = (size_t)B * in * outn;
    nf_par_for(NT, outn, work, linear_bwd_w, &J);
    if (dx) nf_par_for(NT, in, work, linear_bwd_x, &J);
}

/* ------------------------------------------------------------------ GroupNorm */

/* Row kernels of GroupNorm (+ SiLU). GCC does not vectorise the clamped exp of the SiLU
 * (it measured as a scalar loop taking a quarter of a training step), so there is an
 * AVX2 + FMA version in intrinsics, picked at run time, and a portable version that
 * performs per element exactly the same IEEE operations in the same order (fmaf where
 * the vector code fuses, the same 8 accumulator lanes), so both give identical bits.
 * Every row is processed by one thread, so nothing depends on the thread count. */
#ifdef LANE_X86
#define GN_X86 1
#endif
#define GW 8 /* accumulator lanes of the row sums */

/* exp(x) as nf_fast_expf (Cody-Waite reduction, Cephes expf polynomial), with the
 * multiply-adds of the reduction and of Horner's scheme fused. */
static inline float exp_fma(float x)
{
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

/* silu(v) = v sigmoid(v) (Elfwing et al. 2018). */
static inline float silu_fma(float v) { return v / (1.0f + exp_fma(-v)); }

/* dy * silu'(y), silu'(y) = s (1 + y (1 - s)), s = sigmoid(y). */
static inline float silu_grad_fma(float dy, float y)
{
    float sg = 1.0f / (1.0f + exp_fma(-y));
    return dy * (sg * (1.0f + y * (1.0f - sg)));
}

/* The scalar tail of backward pass 1 (columns l..L-1) and the result, shared by the
 * AVX2 and the portable row kernels so that both end in exactly the same operations. */
static inline void gn_bwd1_tail(float *dy, const float *x, int l, int L, float m, float rs, float ga,
                                float be, int silu, double s0, double s1, double *s)
{
    for (; l < L; l++) {
        float xh = (x[l] - m) * rs;
        float g = dy[l];
        if (silu) dy[l] = g = silu_grad_fma(g, fmaf(xh, ga, be));
        s0 += g;
        s1 += (double)g * xh;
    }
    s[0] = s0, s[1] = s1;
}

#ifdef GN_X86
#define AVX2_FMA __attribute__((target("avx2,fma")))
/* exp_fma on the lanes of a W-bit vector (W = 256: AVX2 + FMA, 512: AVX-512F): the same
 * operations per lane, so the same bits as exp_fma and as each other. */
#define DEF_EXP_VEC(W, ATTR)                                                                   \
    ATTR static inline __m##W exp_vec##W(__m##W x)                                             \
    {                                                                                          \
        x = _mm##W##_max_ps(x, _mm##W##_set1_ps(-87.0f)); /* x > -87 ? x : -87 */              \
        x = _mm##W##_min_ps(x, _mm##W##_set1_ps(88.0f));  /* x < 88 ? x : 88 */                \
        __m##W big = _mm##W##_set1_ps(12582912.0f);                                            \
        __m##W n = _mm##W##_sub_ps(                                                            \
            _mm##W##_add_ps(_mm##W##_mul_ps(x, _mm##W##_set1_ps(1.44269504088896341f)), big), big); \
        __m##W r = _mm##W##_fmadd_ps(n, _mm##W##_set1_ps(-0.693359375f), x);                   \
        r = _mm##W##_fmadd_ps(n, _mm##W##_set1_ps(2.12194440e-4f), r);                         \
        __m##W p = _mm##W##_set1_ps(1.9875691500e-4f);                                         \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(1.3981999507e-3f));                       \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(8.3334519073e-3f));                       \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(4.1665795894e-2f));                       \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(1.6666665459e-1f));                       \
        p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(5.0000001201e-1f));                       \
        p = _mm##W##_add_ps(_mm##W##_fmadd_ps(p, _mm##W##_mul_ps(r, r), r), _mm##W##_set1_ps(1.0f)); \
        __m##W##i e = _mm##W##_slli_epi32(                                                     \
            _mm##W##_add_epi32(_mm##W##_cvttps_epi32(n), _mm##W##_set1_epi32(127)), 23);       \
        return _mm##W##_mul_ps(p, _mm##W##_castsi##W##_ps(e));                                 \
    }
DEF_EXP_VEC(256, AVX2_FMA)

AVX2_FMA static inline __m256 neg_avx2(__m256 v)
{
    return _mm256_xor_ps(v, _mm256_set1_ps(-0.0f));
}

AVX2_FMA static void gn_fwd_row_avx2(float *y, const float *x, int L, float sc, float sh, int silu)
{
    __m256 vsc = _mm256_set1_ps(sc), vsh = _mm256_set1_ps(sh), one = _mm256_set1_ps(1.0f);
    int l = 0;
    for (; l + GW <= L; l += GW) {
        __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(x + l), vsc, vsh);
        if (silu) v = _mm256_div_ps(v, _mm256_add_ps(one, exp_vec256(neg_avx2(v))));
        _mm256_storeu_ps(y + l, v);
    }
    for (; l < L; l++) {
        float v = fmaf(x[l], sc, sh);
        y[l] = silu ? silu_fma(v) : v;
    }
}

/* The exp and the forward row on 16 lanes (CPUs with AVX-512F): the same operations per
 * lane, so the same bits. */
#define AVX512 __attribute__((target("avx512f,avx2,fma")))
DEF_EXP_VEC(512, AVX512)

AVX512 static void gn_fwd_row_avx512(float *y, const float *x, int L, float sc, float sh, int silu)
{
    __m512 vsc = _mm512_set1_ps(sc), vsh = _mm512_set1_ps(sh), one = _mm512_set1_ps(1.0f);
    int l = 0;
    for (; l + 16 <= L; l += 16) {
        __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x + l), vsc, vsh);
        if (silu) {
            __m512 nv = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)));
            v = _mm512_div_ps(v, _mm512_add_ps(one, exp_vec512(nv)));
        }
        _mm512_storeu_ps(y + l, v);
    }
    gn_fwd_row_avx2(y + l, x + l, L - l, sc, sh, silu);
}

/* Backward pass 1 of a row: g = dy (times silu' at y = GN(x) if silu) written over dy;
 * s[0] = sum g, s[1] = sum g xhat. */
AVX2_FMA static void gn_bwd1_row_avx2(float *dy, const float *x, int L, float m, float rs,
                                      float ga, float be, int silu, double s[2])
{
    __m256 vm = _mm256_set1_ps(m), vrs = _mm256_set1_ps(rs), vga = _mm256_set1_ps(ga),
           vbe = _mm256_set1_ps(be), one = _mm256_set1_ps(1.0f);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int l = 0;
    for (; l + GW <= L; l += GW) {
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + l), vm), vrs);
        __m256 g = _mm256_loadu_ps(dy + l);
        if (silu) {
            __m256 yv = _mm256_fmadd_ps(xh, vga, vbe);
            __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, exp_vec256(neg_avx2(yv))));
            __m256 d = _mm256_mul_ps(sg, _mm256_add_ps(one, _mm256_mul_ps(yv, _mm256_sub_ps(one, sg))));
            g = _mm256_mul_ps(g, d);
            _mm256_storeu_ps(dy + l, g);
        }
        a0 = _mm256_add_ps(a0, g);
        a1 = _mm256_fmadd_ps(g, xh, a1);
    }
    float t0[GW], t1[GW];
    _mm256_storeu_ps(t0, a0);
    _mm256_storeu_ps(t1, a1);
    double s0 = 0.0, s1 = 0.0;
    for (int j = 0; j < GW; j++) s0 += t0[j], s1 += t1[j];
    gn_bwd1_tail(dy, x, l, L, m, rs, ga, be, silu, s0, s1, s);
}

/* Backward pass 2 of a row: dx += rs (ga g - fm1 - xhat fm2). */
AVX2_FMA static void gn_bwd2_row_avx2(float *d, const float *dy, const float *x, int L, float m,
                                      float rs, float ga, float fm1, float fm2)
{
    __m256 vm = _mm256_set1_ps(m), vrs = _mm256_set1_ps(rs), vga = _mm256_set1_ps(ga),
           nfm1 = _mm256_set1_ps(-fm1), nfm2 = _mm256_set1_ps(-fm2);
    int l = 0;
    for (; l + GW <= L; l += GW) {
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + l), vm), vrs);
        __m256 t = _mm256_fmadd_ps(vga, _mm256_loadu_ps(dy + l), nfm1);
        t = _mm256_fmadd_ps(xh, nfm2, t);
        _mm256_storeu_ps(d + l, _mm256_fmadd_ps(vrs, t, _mm256_loadu_ps(d + l)));
    }
    for (; l < L; l++) {
        float xh = (x[l] - m) * rs;
        float t = fmaf(xh, -fm2, fmaf(ga, dy[l], -fm1));
        d[l] = fmaf(rs, t, d[l]);
    }
}
#endif

static int g_gn_path; /* testing hook: 0 automatic, else the path + 1 */

/* Testing hook (declared in the tests): 0 automatic, 1 portable, 2 AVX2 + FMA, 3 AVX-512F.
 * Returns 0 if this CPU does not run that path. Not thread safe. */
int nf_gn_force_path(int path);
int nf_gn_force_path(int path)
{
    if (path != 0 && !nf_cpu_runs_path(path)) return 0;
    g_gn_path = path;
    return 1;
}

/* The row kernels: 0 portable, 1 AVX2 + FMA, 2 also AVX-512F (the forward rows, which
 * measured ref-wave's forward 5-8% faster; the rest stays AVX2). */
static int gn_vec_level(void)
{
    if (g_gn_path) return g_gn_path - 1;
#ifdef GN_X86
    return nf_cpu_vec_level();
#else
    return 0;
#endif
}

static void gn_fwd_row(int vec, float *y, const float *x, int L, float sc, float sh, int silu)
{
#ifdef GN_X86
    if (vec == 2) {
        gn_fwd_row_avx512(y, x, L, sc, sh, silu);
        return;
    }
    if (vec) {
        gn_fwd_row_avx2(y, x, L, sc, sh, silu);
        return;
    }
#endif
    (void)vec;
    for (int l = 0; l < L; l++) {
        float v = fmaf(x[l], sc, sh);
        y[l] = silu ? silu_fma(v) : v;
    }
}

static void gn_bwd1_row(int vec, float *dy, const float *x, int L, float m, float rs, float ga,
                        float be, int silu, double s[2])
{
#ifdef GN_X86
    if (vec) {
        gn_bwd1_row_avx2(dy, x, L, m, rs, ga, be, silu, s);
        return;
    }
#endif
    (void)vec;
    float a0[GW] = {0}, a1[GW] = {0};
    int l = 0;
    for (; l + GW <= L; l += GW)
        for (int j = 0; j < GW; j++) {
            float xh = (x[l + j] - m) * rs;
            float g = dy[l + j];
            if (silu) dy[l + j] = g = silu_grad_fma(g, fmaf(xh, ga, be));
            a0[j] += g;
            a1[j] = fmaf(g, xh, a1[j]);
        }
    double s0 = 0.0, s1 = 0.0;
    for (int j = 0; j < GW; j++) s0 += a0[j], s1 += a1[j];
    gn_bwd1_tail(dy, x, l, L, m, rs, ga, be, silu, s0, s1, s);
}

static void gn_bwd2_row(int vec, float *d, const float *dy, const float *x, int L, float m,
                        float rs, float ga, float fm1, float fm2)
{
#ifdef GN_X86
    if (vec) {
        gn_bwd2_row_avx2(d, dy, x, L, m, rs, ga, fm1, fm2);
        return;
    }
#endif
    (void)vec;
    for (int l = 0; l < L; l++) {
        float xh = (x[l] - m) * rs;
        float t = fmaf(xh, -fm2, fmaf(ga, dy[l], -fm1));
        d[l] = fmaf(rs, t, d[l]);
    }
}

typedef struct {
    float *out, *mean, *rstd;
    const float *x, *gamma, *beta;
    int C, groups, silu, vec;
    float eps;
    nf_seq s;
} gn_fwd_job;

/* Statistics per (example, group), two passes (mean, then centred squares) for accuracy;
 * each pair is summed by one thread in a fixed order. */
static void gn_fwd_stats(void *v, int r0, int r1)
{
    const gn_fwd_job *J = v;
    nf_seq s = J->s;
    size_t ld = nf_seq_ld(s);
    int cpg = J->C / J->groups;
    double n = (double)cpg * s.L;
    for (int r = r0; r < r1; r++) {
        int b = r / J->groups, g = r % J->groups;
        size_t o = (size_t)b * s.S + s.off;
        double sum = 0.0;
        for (int c = g * cpg; c < (g + 1) * cpg; c++) sum += lane_sum(J->x + c * ld + o, s.L);
        float m = (float)(sum / n);
        double ss = 0.0;
        for (int c = g * cpg; c < (g + 1) * cpg; c++)
            ss += lane_sumsq_centered(J->x + c * ld + o, s.L, m);
        J->mean[r] = m;
        J->rstd[r] = (float)(1.0 / sqrt(ss / n + J->eps));
    }
}

/* y = x sc + sh with sc = gamma rstd, sh = beta - mean sc (one fma per element). */
static void gn_fwd_apply(void *v, int r0, int r1)
{
    const gn_fwd_job *J = v;
    nf_seq s = J->s;
    size_t ld = nf_seq_ld(s);
    int cpg = J->C / J->groups;
    for (int r = r0; r < r1; r++) {
        int c = r / s.B, b = r % s.B;
        int st = b * J->groups + c / cpg;
        float sc = J->gamma[c] * J->rstd[st];
        float sh = J->beta[c] - J->mean[st] * sc;
        float *seg = J->out + c * ld + (size_t)b * s.S;
        const float *xi = J->x + c * ld + (size_t)b * s.S + s.off;
        nf_seg_zero_gaps(seg, s);
        gn_fwd_row(J->vec, seg + s.off, xi, s.L, sc, sh, J->silu);
    }
}

void nf_groupnorm_forward(float *out, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, int C, int groups, float eps,
                          int silu, nf_seq s)
{
    gn_fwd_job J = {out, mean, rstd, x, gamma, beta, C, groups, silu, gn_vec_level(), eps, s};
    size_t work = (size_t)C * nf_seq_ld(s);
    nf_par_for(NT, s.B * groups, work, gn_fwd_stats, &J);
    nf_par_for(NT, C * s.B, work, gn_fwd_apply, &J);
}

typedef struct {
    float *dx, *dout;
    const float *x, *mean, *rstd, *gamma, *beta;
    float *partial;
    int C, groups, silu, vec;
    float inv_n;
    nf_seq s;
} gn_bwd_job;

/* Pass 1, per row (c, b): dy (through the SiLU), sum dy, sum dy * xhat. */
static void gn_bwd_pass1(void *v, int r0, int r1)
{
    const gn_bwd_job *J = v;
    nf_seq s = J->s;
    size_t ld = nf_seq_ld(s);
    int cpg = J->C / J->groups;
    for (int r = r0; r < r1; r++) {
        int c = r / s.B, b = r % s.B;
        int st = b * J->groups + c / cpg;
        size_t o = c * ld + (size_t)b * s.S + s.off;
        double sums[2];
        gn_bwd1_row(J->vec, J->dout + o, J->x + o, s.L, J->mean[st], J->rstd[st], J->gamma[c], J->beta[c], J->silu,
                    sums);
        J->partial[2 * (size_t)r] = (float)sums[0];
        J->partial[2 * (size_t)r + 1] = (float)sums[1];
    }
}

/* Pass 2: dx = rstd (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)). */
static void gn_bwd_pass2(void *v, int r0, int r1)
{
    const gn_bwd_job *J = v;
    nf_seq s = J->s;
    size_t ld = nf_seq_ld(s);
    int cpg = J->C / J->groups;
    const float *partial = J->partial;
    for (int r = r0; r < r1; r++) {
        int c = r / s.B, b = r % s.B;
        int g = c / cpg, st = b * J->groups + g;
        double m1 = 0.0, m2 = 0.0;
        for (int cc = g * cpg; cc < (g + 1) * cpg; cc++) {
            m1 += (double)J->gamma[cc] * partial[2 * ((size_t)cc * s.B + b)];
            m2 += (double)J->gamma[cc] * partial[2 * ((size_t)cc * s.B + b) + 1];
        }
        float fm1 = (float)m1 * J->inv_n, fm2 = (float)m2 * J->inv_n;
        size_t o = c * ld + (size_t)b * s.S + s.off;
        gn_bwd2_row(J->vec, J->dx + o, J->dout + o, J->x + o, s.L, J->mean[st], J->rstd[st], J->gamma[c], fm1, fm2);
    }
}

void nf_groupnorm_backward(float *dx, float *dgamma, float *dbeta, float *dout,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, const float *beta, float *partial, int C,
                           int groups, int silu, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
    int cpg = C / groups, vec = gn_vec_level();
    float inv_n = 1.0f / ((float)cpg * (float)s.L);
    gn_bwd_job J = {dx, dout, x, mean, rstd, gamma, beta, partial, C, groups, silu, vec, inv_n, s};
    nf_par_for(NT, C * s.B, (size_t)C * ld, gn_bwd_pass1, &J);
    for (int c = 0; c < C; c++) {
        float g0 = 0.0f, g1 = 0.0f;
        for (int b = 0; b < s.B; b++) {
            g0 += partial[2 * ((size_t)c * s.B + b)];
            g1 += partial[2 * ((size_t)c * s.B + b) + 1];
        }
        dbeta[c] += g0;
        dgamma[c] += g1;
    }
    nf_par_for(NT, C * s.B, (size_t)C * ld, gn_bwd_pass2, &J);
}

/* ------------------------------------------------------------------ embeddings */

void nf_timestep_embedding(float *emb, const float *t, int B, int dim)
{
    int half = dim / 2;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < half; i++) {
            double f = exp(-log(10000.0) * (double)i / (double)half);
            double a = (double)t[b] * f;
            emb[(size_t)b * dim + i] = (float)sin(a);
            emb[(size_t)b * dim + half + i] = (float)cos(a);
        }
}

static int class_row(const int *y, int b, int num_classes)
{
    int v = y ? y[b] : -1;
    return (v < 0 || v >= num_classes) ? num_classes : v;
}

void nf_class_embed_forward(float *out, const int *y, const float *table, int B, int num_classes,
                            int dim)
{
    for (int b = 0; b < B; b++) {
        const float *row = table + (size_t)class_row(y, b, num_classes) * dim;
        for (int i = 0; i < dim; i++) out[(size_t)b * dim + i] += row[i];
    }
}

void nf_class_embed_backward(float *dtable, const float *dout, const int *y, int B,
                             int num_classes, int dim)
{
    for (int b = 0; b < B; b++) {
        float *row = dtable + (size_t)class_row(y, b, num_classes) * dim;
        for (int i = 0; i < dim; i++) row[i] += dout[(size_t)b * dim + i];
    }
}

/* ------------------------------------------------------------------ nearest resize */

/* ATen's nearest_idx (aten/src/ATen/native/UpSample.h), so indices match PyTorch exactly. */
int nf_nearest_src(int l, int Lin, int Lout)
{
    if (Lout == Lin) return l;
    if (Lout == 2 * Lin) return l >> 1;
    float scale = (float)Lin / (float)Lout;
    int v = (int)floorf((float)l * scale);
    return v < Lin - 1 ? v : Lin - 1;
}

typedef struct {
    float *out;
    nf_seq so, si;
    const float *in;
    int halves; /* nf_nearest_src(l) == l / 2 for every l (computed once) */
} upsample_job;

/* Whether nearest resizing Lin -> Lout takes sample l from l / 2 for every l (x2, and
 * 2 Lin - 1 where PyTorch's float scale rounds the same way): checked once per call
 * instead of a float division per sample and channel. */
static int nearest_halves(int Lin, int Lout)
{
    if (Lout != 2 * Lin && Lout != 2 * Lin - 1) return 0;
    if (Lout == 2 * Lin) return 1; /* nf_nearest_src's own l / 2 */
    for (int l = 0; l < Lout; l++)
        if (nf_nearest_src(l, Lin, Lout) != l >> 1) return 0;
    return 1;
}

static void upsample_rows(void *v, int c0, int c1)
{
    const upsample_job *J = v;
    nf_seq so = J->so, si = J->si;
    size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
    for (int c = c0; c < c1; c++) {
        float *row = J->out + (size_t)c * ldo;
        memset(row, 0, ldo * sizeof *row);
        for (int b = 0; b < so.B; b++) {
            const float *src = J->in + (size_t)c * ldi + (size_t)b * si.S + si.off;
            float *o = row + (size_t)b * so.S + so.off;
            if (J->halves)
                for (int l = 0; l < so.L; l++) o[l] = src[l >> 1];
            else
                for (int l = 0; l < so.L; l++) o[l] = src[nf_nearest_src(l, si.L, so.L)];
        }
    }
}

void nf_upsample_forward(float *out, nf_seq so, const float *in, nf_seq si, int C)
{
    upsample_job J = {out, so, si, in, nearest_halves(si.L, so.L)};
    nf_par_for(NT, C, (size_t)C * nf_seq_ld(so), upsample_rows, &J);
}

static void upsample_bwd_rows(void *v, int c0, int c1)
{
    const upsample_job *J = v; /* out: din, in: dout */
    nf_seq so = J->so, si = J->si;
    size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
    for (int c = c0; c < c1; c++)
        for (int b = 0; b < so.B; b++) {
            float *dst = J->out + (size_t)c * ldi + (size_t)b * si.S + si.off;
            const float *g = J->in + (size_t)c * ldo + (size_t)b * so.S + so.off;
            if (J->halves)
                for (int l = 0; l < so.L; l++) dst[l >> 1] += g[l];
            else
                for (int l = 0; l < so.L; l++) dst[nf_nearest_src(l, si.L, so.L)] += g[l];
        }
}

void nf_upsample_backward(float *din, nf_seq si, const float *dout, nf_seq so, int C)
{
    upsample_job J = {din, so, si, dout, nearest_halves(si.L, so.L)};
    nf_par_for(NT, C, (size_t)C * nf_seq_ld(so), upsample_bwd_rows, &J);
}

/* ------------------------------------------------------------------ upsample + conv3 */

int nf_upconv3_applies(int Lin, int Lout) { return Lin >= 2 && nearest_halves(Lin, Lout); }

void nf_upconv3_weights(float *we, float *wo, const float *w, int cin, int cout)
{
    for (size_t i = 0; i < (size_t)cin * cout; i++) {
        const float *k = w + 3 * i;
        we[2 * i] = k[0], we[2 * i + 1] = k[1] + k[2];
        wo[2 * i] = k[0] + k[1], wo[2 * i + 1] = k[2];
    }
}

float nf_upconv3_last(const float *in, nf_seq si, int b, const float *w, const float *bias, int co, int cin)
{
    /* out[2 Lin - 2] = b + sum_ci w0 x[Lin - 2] + w1 x[Lin - 1]. */
    const size_t ldi = nf_seq_ld(si);
    const float *x = in + (size_t)b * si.S + si.off + si.L - 2;
    const float *wc = w + (size_t)co * cin * 3;
    /* Eight chains (ci mod 8), summed in a fixed order: one chain would wait on the
     * FMA's latency for every term. */
    float acc[8] = {0};
    for (int ci = 0; ci < cin; ci++) {
        const float *xc = x + (size_t)ci * ldi;
        acc[ci & 7] = fmaf(wc[3 * ci + 1], xc[1], fmaf(wc[3 * ci], xc[0], acc[ci & 7]));
    }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    return (bias ? bias[co] : 0.0f) + s;
}

typedef struct {
    float *out;
    nf_seq so, si;
    const float *even, *odd, *in, *w, *bias;
    int cin;
} interleave_job;

/* out's rows from the even and odd phases; gaps zeroed; an odd Lout's last sample. */
static void interleave_rows(void *v, int c0, int c1)
{
    const interleave_job *J = v;
    nf_seq so = J->so, si = J->si;
    size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
    int half = so.L / 2; /* complete (even, odd) pairs */
    for (int c = c0; c < c1; c++)
        for (int b = 0; b < so.B; b++) {
            float *seg = J->out + (size_t)c * ldo + (size_t)b * so.S, *o = seg + so.off;
            const float *e = J->even + (size_t)c * ldi + (size_t)b * si.S + si.off;
            const float *d = J->odd + (size_t)c * ldi + (size_t)b * si.S + si.off;
            nf_seg_zero_gaps(seg, so);
            for (int m = 0; m < half; m++) o[2 * m] = e[m], o[2 * m + 1] = d[m];
            if (so.L & 1) o[so.L - 1] = nf_upconv3_last(J->in, si, b, J->w, J->bias, c, J->cin);
        }
}

void nf_upconv3_forward(float *out, nf_seq so, float *scr, const float *in, nf_seq si, const float *we,
                        const float *wo, const float *w, const float *bias, int cin, int cout)
{
    size_t ld = nf_seq_ld(si);
    int n0 = si.off, N = (si.B - 1) * si.S + si.L;
    float *even = scr, *odd = scr + (size_t)cout * ld;
    /* Taps over x[m - 1], x[m] (even) and x[m], x[m + 1] (odd). */
    nf_gemm_taps_bias(cout, N, 2 * cin, 1.0f, we, 2 * cin, in + n0 - 1, (int)ld, 2, 1, bias, NULL, even + n0, (int)ld);
    nf_gemm_taps_bias(cout, N, 2 * cin, 1.0f, wo, 2 * cin, in + n0, (int)ld, 2, 1, bias, NULL, odd + n0, (int)ld);
    interleave_job J = {out, so, si, even, odd, in, w, bias, cin};
    nf_par_for(NT, cout, (size_t)cout * nf_seq_ld(so), interleave_rows, &J);
}

/* ------------------------------------------------------------------ dropout */

static void dropout_apply(float *x, int C, nf_seq s, float p, uint64_t seed, uint64_t layer)
{
    size_t ld = nf_seq_ld(s);
    float keep = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ld > PAR_MIN / 8)
    for (int r = 0; r < C * s.B; r++) {
        int c = r / s.B, b = r % s.B;
        uint64_t stream = nf_stream_id("dropout", layer, (uint64_t)b);
        float *row = x + (size_t)c * ld + (size_t)b * s.S + s.off;
        float u[256];
        for (int l0 = 0; l0 < s.L; l0 += 256) {
            int n = s.L - l0 < 256 ? s.L - l0 : 256;
            nf_randu(u, (size_t)n, seed, stream, (uint64_t)c * (uint64_t)s.L + (uint64_t)l0);
            for (int i = 0; i < n; i++) row[l0 + i] = u[i] < p ? 0.0f : row[l0 + i] * keep;
        }
    }
}

void nf_dropout_forward(float *x, int C, nf_seq s, float p, uint64_t seed, uint64_t layer)
{
    if (p > 0.0f) dropout_apply(x, C, s, p, seed, layer);
}

void nf_dropout_backward(float *dx, int C, nf_seq s, float p, uint64_t seed, uint64_t layer)
{
    if (p > 0.0f) dropout_apply(dx, C, s, p, seed, layer);
}

/* ------------------------------------------------------------------ attention */

/* Rows of P (L x L) in place: softmax; lse_row (may be NULL) gets max + log(sum). */
static void softmax_rows(float *P, int L, float *lse_row)
{
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)L * L > PAR_MIN)
    for (int i = 0; i < L; i++) {
        float *p = P + (size_t)i * L;
        float mx = p[0];
        for (int j = 1; j < L; j++) mx = p[j] > mx ? p[j] : mx;
        for (int j = 0; j < L; j++) p[j] = nf_fastexp_inline(p[j] - mx);
        double sum = lane_sum(p, L);
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < L; j++) p[j] *= inv;
        if (lse_row) lse_row[i] = mx + (float)log(sum);
    }
}

void nf_attention_forward(float *o, float *lse, const float *qkv, float *scratch, int C,
                          int heads, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
    int d = C / heads, L = s.L;
    float scale = 1.0f / sqrtf((float)d);
    for (int b = 0; b < s.B; b++) {
        size_t base = (size_t)b * s.S + s.off;
        for (int h = 0; h < heads; h++) {
            const float *Q = qkv + (size_t)(h * d) * ld + base;
            const float *K = qkv + (size_t)(C + h * d) * ld + base;
            const float *V = qkv + (size_t)(2 * C + h * d) * ld + base;
            /* P = softmax(Q^T K / sqrt(d)) over keys (rows are queries). */
            nf_gemm(1, 0, L, L, d, scale, Q, (int)ld, K,
                        (int)ld, 0.0f, scratch, L);
            softmax_rows(scratch, L, lse ? lse + ((size_t)b * heads + h) * L : NULL);
            /* O = V P^T. */
            nf_gemm(0, 1, d, L, L, 1.0f, V, (int)ld,
                        scratch, L, 0.0f, o + (size_t)(h * d) * ld + base, (int)ld);
        }
    }
    nf_seq_zero_gaps(o, C, s);
}

void nf_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *lse,
                           float *scratch, int C, int heads, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
    int d = C / heads, L = s.L;
    float scale = 1.0f / sqrtf((float)d);
    float *P = scratch, *dP = scratch + (size_t)L * L;
    for (int b = 0; b < s.B; b++) {
        size_t base = (size_t)b * s.S + s.off;
        for (int h = 0; h < heads; h++) {
            size_t qo = (size_t)(h * d) * ld + base, ko = (size_t)(C + h * d) * ld + base,
                   vo = (size_t)(2 * C + h * d) * ld + base;
            const float *dO = dout + qo;
            const float *lr = lse + ((size_t)b * heads + h) * L;
            nf_gemm(1, 0, L, L, d, scale, qkv + qo,
                        (int)ld, qkv + ko, (int)ld, 0.0f, P, L);
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)L * L > PAR_MIN)
            for (int i = 0; i < L; i++) {
                float *p = P + (size_t)i * L;
                float m = lr[i];
                for (int j = 0; j < L; j++) p[j] = nf_fastexp_inline(p[j] - m);
            }
            /* dP = dO^T V; dV += dO P. */
            nf_gemm(1, 0, L, L, d, 1.0f, dO, (int)ld,
                        qkv + vo, (int)ld, 0.0f, dP, L);
            nf_gemm(0, 0, d, L, L, 1.0f, dO, (int)ld, P,
                        L, 1.0f, dqkv + vo, (int)ld);
            /* Softmax backward: dS = P (dP - sum_j P dP). */
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)L * L > PAR_MIN)
            for (int i = 0; i < L; i++) {
                float *p = P + (size_t)i * L, *g = dP + (size_t)i * L;
                float D = (float)lane_dot(p, g, L);
                for (int j = 0; j < L; j++) g[j] = p[j] * (g[j] - D);
            }
            /* dQ += scale K dS^T; dK += scale Q dS. */
            nf_gemm(0, 1, d, L, L, scale, qkv + ko,
                        (int)ld, dP, L, 1.0f, dqkv + qo, (int)ld);
            nf_gemm(0, 0, d, L, L, scale, qkv + qo,
                        (int)ld, dP, L, 1.0f, dqkv + ko, (int)ld);
        }
    }
}
