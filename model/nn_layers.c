/* Layer forward/backward pairs of the denoiser (see nf_nn.h for the layout and the
 * accumulation conventions). GEMMs go to OpenBLAS (never from inside an OpenMP region);
 * elementwise passes are OpenMP loops with fixed per-row work, so the result of every
 * element does not depend on the thread count. */
#include "nf_nn.h"
#include "nf_rng.h"

#include <math.h>
#include <string.h>

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

static double lane_dot(const float *x, const float *y, int n)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += x[i + j] * y[i + j];
    double s = 0.0;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; i < n; i++) s += (double)x[i] * y[i];
    return s;
}

/* Same exp as nf_fast_expf, inlined here so the loops below vectorise. */
static inline float fexp(float x)
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

/* ------------------------------------------------------------------ conv1d */

int nf_conv_out_len(nf_conv_dims d, int L)
{
    return (L + 2 * d.pad - d.dil * (d.k - 1) - 1) / d.stride + 1;
}

/* out = bias (+ res) on valid columns, zero in the gaps; res == out is allowed. */
static void init_bias(float *out, nf_seq so, const float *bias, const float *res, int C)
{
    size_t ld = nf_seq_ld(so);
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ld > PAR_MIN)
    for (int c = 0; c < C; c++) {
        float *row = out + (size_t)c * ld;
        float bv = bias ? bias[c] : 0.0f;
        for (int b = 0; b < so.B; b++) {
            /* Gaps only: res may be out itself (a residual accumulated in place). */
            float *seg = row + (size_t)b * so.S;
            for (int i = 0; i < so.off; i++) seg[i] = 0.0f;
            for (int i = so.off + so.L; i < so.S; i++) seg[i] = 0.0f;
            float *o = seg + so.off;
            if (res) {
                const float *r = res + (size_t)c * ld + (size_t)b * so.S + so.off;
                for (int l = 0; l < so.L; l++) o[l] = bv + r[l];
            } else {
                for (int l = 0; l < so.L; l++) o[l] = bv;
            }
        }
    }
}

/* dbias[c] += sum over valid columns, per example then over examples (fixed order). */
static void bias_grad(float *dbias, const float *dout, nf_seq so, int C)
{
    size_t ld = nf_seq_ld(so);
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ld > PAR_MIN)
    for (int c = 0; c < C; c++) {
        double s = 0.0;
        for (int b = 0; b < so.B; b++)
            s += lane_sum(dout + (size_t)c * ld + (size_t)b * so.S + so.off, so.L);
        dbias[c] += (float)s;
    }
}

/* wt[j][co][ci] = w[co][ci][j]: each tap a row-major cout x cin matrix for sgemm. */
static void repack_taps(float *wt, const float *w, nf_conv_dims d)
{
    for (int co = 0; co < d.cout; co++)
        for (int ci = 0; ci < d.cin; ci++)
            for (int j = 0; j < d.k; j++)
                wt[((size_t)j * d.cout + co) * d.cin + ci] = w[((size_t)co * d.cin + ci) * d.k + j];
}

/* Strided convs gather taps: col[ci*k + j][out col of (b, l)] = in[ci][stride*l + j*dil - pad]. */
static void gather_cols(float *col, nf_seq so, const float *in, nf_seq si, nf_conv_dims d)
{
    size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
    int rows = d.cin * d.k;
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)rows * ldo > PAR_MIN)
    for (int r = 0; r < rows; r++) {
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

void nf_conv1d_forward(float *out, nf_seq so, float *col, float *wt, const float *in, nf_seq si,
                       const float *w, const float *bias, const float *res, nf_conv_dims d)
{
    init_bias(out, so, bias, res, d.cout);
    if (d.stride == 1) {
        size_t ld = nf_seq_ld(si);
        int n0 = so.off;
        int N = (so.B - 1) * so.S + so.L;
        repack_taps(wt, w, d);
        for (int j = 0; j < d.k; j++) {
            int shift = si.off - d.pad + j * d.dil - so.off;
            nf_gemm(0, 0, d.cout, N, d.cin, 1.0f,
                        wt + (size_t)j * d.cout * d.cin, d.cin, in + n0 + shift, (int)ld, 1.0f,
                        out + n0, (int)ld);
        }
        if (so.B > 1) nf_seq_zero_gaps(out, d.cout, so);
    } else {
        size_t ldo = nf_seq_ld(so);
        gather_cols(col, so, in, si, d);
        /* w as [cout][cin*k] matches col's row order ci*k + j: one GEMM, no repack. */
        nf_gemm(0, 0, d.cout, (int)ldo, d.cin * d.k,
                    1.0f, w, d.cin * d.k, col, (int)ldo, 1.0f, out, (int)ldo);
        nf_seq_zero_gaps(out, d.cout, so);
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
        size_t tap = (size_t)d.cout * d.cin;
        /* dW_j = dout . in_j^T, then scattered back to [cout][cin][k]. */
        for (int j = 0; j < d.k; j++) {
            int shift = si.off - d.pad + j * d.dil - so.off;
            nf_gemm(0, 1, d.cout, d.cin, N, 1.0f,
                        dout + n0, (int)ld, in + n0 + shift, (int)ld, 0.0f, wt + j * tap, d.cin);
        }
        for (int co = 0; co < d.cout; co++)
            for (int ci = 0; ci < d.cin; ci++)
                for (int j = 0; j < d.k; j++)
                    dw[((size_t)co * d.cin + ci) * d.k + j] += wt[j * tap + (size_t)co * d.cin + ci];
        if (din) {
            repack_taps(wt, w, d);
            for (int j = 0; j < d.k; j++) {
                int shift = si.off - d.pad + j * d.dil - so.off;
                nf_gemm(1, 0, d.cin, N, d.cout, 1.0f,
                            wt + j * tap, d.cin, dout + n0, (int)ld, 1.0f, din + n0 + shift,
                            (int)ld);
            }
        }
    } else {
        size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
        int K = d.cin * d.k;
        nf_gemm(0, 1, d.cout, K, (int)ldo, 1.0f, dout,
                    (int)ldo, col, (int)ldo, 1.0f, dw, K);
        if (din) {
            nf_gemm(1, 0, K, (int)ldo, d.cout, 1.0f, w, K,
                        dout, (int)ldo, 0.0f, dcol, (int)ldo);
            /* Scatter-add the taps back; one thread per input channel, fixed order. */
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)K * ldo > PAR_MIN)
            for (int ci = 0; ci < d.cin; ci++) {
                for (int j = 0; j < d.k; j++) {
                    const float *src = dcol + ((size_t)ci * d.k + j) * ldo;
                    for (int b = 0; b < so.B; b++) {
                        float *dst = din + (size_t)ci * ldi + (size_t)b * si.S + si.off;
                        const float *g = src + (size_t)b * so.S + so.off;
                        for (int l = 0; l < so.L; l++) {
                            int p = d.stride * l + j * d.dil - d.pad;
                            if (p >= 0 && p < si.L) dst[p] += g[l];
                        }
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ linear */

void nf_linear_forward(float *out, const float *x, const float *w, const float *bias, int B,
                       int in, int outn)
{
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)B * in * outn > PAR_MIN)
    for (int r = 0; r < B * outn; r++) {
        int b = r / outn, o = r % outn;
        double s = lane_dot(w + (size_t)o * in, x + (size_t)b * in, in);
        out[r] = (bias ? bias[o] : 0.0f) + (float)s;
    }
}

void nf_linear_backward(float *dx, float *dw, float *dbias, const float *dout, const float *x,
                        const float *w, int B, int in, int outn)
{
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)B * in * outn > PAR_MIN)
    for (int o = 0; o < outn; o++) {
        float *g = dw + (size_t)o * in;
        for (int b = 0; b < B; b++) {
            float a = dout[(size_t)b * outn + o];
            const float *xb = x + (size_t)b * in;
            for (int i = 0; i < in; i++) g[i] += a * xb[i];
        }
        if (dbias) {
            float s = 0.0f;
            for (int b = 0; b < B; b++) s += dout[(size_t)b * outn + o];
            dbias[o] += s;
        }
    }
    if (!dx) return;
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)B * in * outn > PAR_MIN)
    for (int b = 0; b < B; b++) {
        float *g = dx + (size_t)b * in;
        for (int o = 0; o < outn; o++) {
            float a = dout[(size_t)b * outn + o];
            const float *wo = w + (size_t)o * in;
            for (int i = 0; i < in; i++) g[i] += a * wo[i];
        }
    }
}

/* ------------------------------------------------------------------ GroupNorm */

/* The GroupNorm + SiLU row loops, compiled twice (baseline SSE2 and AVX2, picked at
 * load time through an ifunc). Neither clone has FMA and ISO C mode keeps
 * -ffp-contract=off, so every lane runs the same IEEE operations in the same order and
 * both clones give identical bits; AVX2 only doubles the vector width of fexp. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define NF_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NF_AVX2_CLONES
#endif
NF_AVX2_CLONES static void gn_silu_row(float *y, const float *xi, int L, float sc, float sh)
{
    for (int l = 0; l < L; l++) {
        float v = xi[l] * sc + sh;
        y[l] = v / (1.0f + fexp(-v));
    }
}

/* dy *= silu'(y) at y = GroupNorm(x) (before the SiLU). */
NF_AVX2_CLONES static void gn_silu_back_row(float *dy, const float *xi, int L, float m, float rs,
                                            float ga, float be)
{
    for (int l = 0; l < L; l++) {
        float y = (xi[l] - m) * rs * ga + be;
        float sg = 1.0f / (1.0f + fexp(-y));
        dy[l] *= sg * (1.0f + y * (1.0f - sg));
    }
}

void nf_groupnorm_forward(float *out, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, int C, int groups, float eps,
                          int silu, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
    int cpg = C / groups;
    double n = (double)cpg * s.L;
    /* Statistics per (example, group), two passes (mean, then centred squares) for
     * accuracy; each pair is summed by one thread in a fixed order. */
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ld > PAR_MIN)
    for (int r = 0; r < s.B * groups; r++) {
        int b = r / groups, g = r % groups;
        size_t o = (size_t)b * s.S + s.off;
        double sum = 0.0;
        for (int c = g * cpg; c < (g + 1) * cpg; c++) sum += lane_sum(x + c * ld + o, s.L);
        float m = (float)(sum / n);
        double ss = 0.0;
        for (int c = g * cpg; c < (g + 1) * cpg; c++)
            ss += lane_sumsq_centered(x + c * ld + o, s.L, m);
        mean[r] = m;
        rstd[r] = (float)(1.0 / sqrt(ss / n + eps));
    }
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ld > PAR_MIN)
    for (int r = 0; r < C * s.B; r++) {
        int c = r / s.B, b = r % s.B;
        int st = b * groups + c / cpg;
        float sc = gamma[c] * rstd[st];
        float sh = beta[c] - mean[st] * sc;
        float *seg = out + c * ld + (size_t)b * s.S;
        const float *xi = x + c * ld + (size_t)b * s.S + s.off;
        for (int i = 0; i < s.off; i++) seg[i] = 0.0f;
        for (int i = s.off + s.L; i < s.S; i++) seg[i] = 0.0f;
        float *y = seg + s.off;
        if (silu) {
            gn_silu_row(y, xi, s.L, sc, sh);
        } else {
            for (int l = 0; l < s.L; l++) y[l] = xi[l] * sc + sh;
        }
    }
}

void nf_groupnorm_backward(float *dx, float *dgamma, float *dbeta, float *dout,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, const float *beta, float *partial, int C,
                           int groups, int silu, nf_seq s)
{
    size_t ld = nf_seq_ld(s);
    int cpg = C / groups;
    float inv_n = 1.0f / ((float)cpg * (float)s.L);
    /* Pass 1, per row (c, b): dy (through the SiLU), sum dy, sum dy * xhat. */
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ld > PAR_MIN)
    for (int r = 0; r < C * s.B; r++) {
        int c = r / s.B, b = r % s.B;
        int st = b * groups + c / cpg;
        float m = mean[st], rs = rstd[st], ga = gamma[c], be = beta[c];
        size_t o = c * ld + (size_t)b * s.S + s.off;
        const float *xi = x + o;
        float *dy = dout + o;
        if (silu) gn_silu_back_row(dy, xi, s.L, m, rs, ga, be);
        float a0[LANES] = {0}, a1[LANES] = {0};
        int l = 0;
        for (; l + LANES <= s.L; l += LANES)
            for (int j = 0; j < LANES; j++) {
                float xh = (xi[l + j] - m) * rs;
                a0[j] += dy[l + j];
                a1[j] += dy[l + j] * xh;
            }
        double s0 = 0.0, s1 = 0.0;
        for (int j = 0; j < LANES; j++) {
            s0 += a0[j];
            s1 += a1[j];
        }
        for (; l < s.L; l++) {
            s0 += dy[l];
            s1 += (double)dy[l] * ((xi[l] - m) * rs);
        }
        partial[2 * (size_t)r] = (float)s0;
        partial[2 * (size_t)r + 1] = (float)s1;
    }
    for (int c = 0; c < C; c++) {
        float g0 = 0.0f, g1 = 0.0f;
        for (int b = 0; b < s.B; b++) {
            g0 += partial[2 * ((size_t)c * s.B + b)];
            g1 += partial[2 * ((size_t)c * s.B + b) + 1];
        }
        dbeta[c] += g0;
        dgamma[c] += g1;
    }
    /* Pass 2: dx = rstd (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)). */
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ld > PAR_MIN)
    for (int r = 0; r < C * s.B; r++) {
        int c = r / s.B, b = r % s.B;
        int g = c / cpg, st = b * groups + g;
        double m1 = 0.0, m2 = 0.0;
        for (int cc = g * cpg; cc < (g + 1) * cpg; cc++) {
            m1 += (double)gamma[cc] * partial[2 * ((size_t)cc * s.B + b)];
            m2 += (double)gamma[cc] * partial[2 * ((size_t)cc * s.B + b) + 1];
        }
        float fm1 = (float)m1 * inv_n, fm2 = (float)m2 * inv_n;
        float m = mean[st], rs = rstd[st], ga = gamma[c];
        size_t o = c * ld + (size_t)b * s.S + s.off;
        const float *xi = x + o;
        const float *dy = dout + o;
        float *d = dx + o;
        for (int l = 0; l < s.L; l++) {
            float xh = (xi[l] - m) * rs;
            d[l] += rs * (ga * dy[l] - fm1 - xh * fm2);
        }
    }
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

void nf_upsample_forward(float *out, nf_seq so, const float *in, nf_seq si, int C)
{
    size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ldo > PAR_MIN)
    for (int c = 0; c < C; c++) {
        float *row = out + (size_t)c * ldo;
        memset(row, 0, ldo * sizeof *row);
        for (int b = 0; b < so.B; b++) {
            const float *src = in + (size_t)c * ldi + (size_t)b * si.S + si.off;
            float *o = row + (size_t)b * so.S + so.off;
            for (int l = 0; l < so.L; l++) o[l] = src[nf_nearest_src(l, si.L, so.L)];
        }
    }
}

void nf_upsample_backward(float *din, nf_seq si, const float *dout, nf_seq so, int C)
{
    size_t ldo = nf_seq_ld(so), ldi = nf_seq_ld(si);
#pragma omp parallel for schedule(static) num_threads(NT) if ((size_t)C * ldo > PAR_MIN)
    for (int c = 0; c < C; c++)
        for (int b = 0; b < so.B; b++) {
            float *dst = din + (size_t)c * ldi + (size_t)b * si.S + si.off;
            const float *g = dout + (size_t)c * ldo + (size_t)b * so.S + so.off;
            for (int l = 0; l < so.L; l++) dst[nf_nearest_src(l, si.L, so.L)] += g[l];
        }
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
        for (int j = 0; j < L; j++) p[j] = fexp(p[j] - mx);
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
                for (int j = 0; j < L; j++) p[j] = fexp(p[j] - m);
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
