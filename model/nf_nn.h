/* Layers of the denoiser as free forward/backward function pairs (llm.c style).
 *
 *   x_forward(out, cache..., inp, params..., dims)
 *   x_backward(dinp, dparams..., dout, inp, params, cache..., dims)
 *
 * Backward ACCUMULATES into dinp and into parameter gradients (zeroing is the caller's
 * job), except where a comment says "overwrites". The weight gradients of convolutions
 * and linear layers are OVERWRITTEN: a weight serves one layer call, and writing its
 * gradient (instead of adding it to a zeroed buffer) spares a training step a pass
 * over most of the parameters and the GEMM a read of them.
 *
 * Sequence layout. Activations over time are stored channel-major with the batch laid
 * along time, so that one GEMM covers the whole batch:
 *
 *   X[c][b*S + off + l],  c < C, b < B, l < L,   row stride ld = B*S
 *
 * Each example owns a segment of S >= off + L + pad columns; the columns outside
 * [off, off + L) of a segment (the "gaps") are zero in every buffer that a convolution
 * reads, so a kernel-k convolution is a GEMM on k shifted views of one buffer, with no
 * im2col copy. Columns of an output that fall in a gap receive meaningless sums of
 * neighbouring examples and are re-zeroed by the layer. Every value at a valid column
 * depends only on its own example, so an example gives bit-identical results alone or
 * inside a batch.
 *
 * Reductions (GroupNorm statistics, bias and norm gradients) run in a fixed order per
 * example and per channel, independent of the thread count. */
#ifndef NF_NN_H
#define NF_NN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int B;   /* examples */
    int L;   /* valid length per example */
    int S;   /* segment stride (columns per example) */
    int off; /* first valid column inside a segment */
} nf_seq;

static inline size_t nf_seq_ld(nf_seq s) { return (size_t)s.B * (size_t)s.S; }
/* Standard layout for length L: one zero column either side of each example. */
static inline nf_seq nf_seq_make(int B, int L) { nf_seq s = {B, L, L + 2, 1}; return s; }

/* ---- threads and CPU ---- */
/* Threads our own OpenMP loops use (the value set by nf_set_threads). */
int nf_nn_threads(void);
/* 1 if this CPU runs AVX2 and FMA (x86-64 with GCC or Clang; 0 elsewhere): with
 * nf_cpu_avx512, the tests behind every run-time choice of a vector path in model/ (GEMM,
 * GroupNorm, Winograd transforms, AdamW). */
int nf_cpu_avx2_fma(void);
/* 1 if this CPU (and OS) also runs AVX-512F: the GEMM micro-kernels and packing, the
 * GroupNorm forward rows and the Winograd transforms then use 16-float vectors (the same
 * bits as every other path). */
int nf_cpu_avx512(void);
/* The widest vector path this CPU runs: 0 none, 1 AVX2 + FMA, 2 AVX-512F. */
int nf_cpu_vec_level(void);
/* Whether this CPU runs kernel path `path` as the testing hooks number them (1 portable,
 * 2 AVX2 + FMA, 3 AVX-512F; anything else: 0). */
int nf_cpu_runs_path(int path);

/* Runs fn(ctx, who) on up to nthreads threads at once (who = 0 is the caller, 1.. the
 * pool's workers) and returns when all have returned. The calls share out the work
 * themselves (an atomic counter in ctx); results must not depend on who does what. Runs
 * fn(ctx, 0) alone when nthreads <= 1 or when another thread is using the pool. See
 * nn_pool.c. */
void nf_pool_run(int nthreads, void (*fn)(void *ctx, int who), void *ctx);
/* fn(ctx, i0, i1) over rows [i0, i1) covering [0, n) once, on up to nthreads threads of
 * the pool (nn_pool.c); on one thread when `work` (elements touched) is below
 * NF_PAR_MIN_WORK. fn must compute each row on its own (results independent of the
 * split). Cheap between GEMMs, whose workers are still spinning: the layers' passes at
 * batch 1 use it instead of OpenMP. */
#define NF_PAR_MIN_WORK 4096
void nf_par_for(int nthreads, int n, size_t work, void (*fn)(void *ctx, int i0, int i1), void *ctx);
/* fn(ctx, lo, hi) over element ranges covering [0, n) once, each a whole number of
 * `block`-element blocks (the last may end short), handed out as nf_par_for hands out
 * rows (block 0 of [b0, b1) starts at lo = b0 block). For elementwise passes and
 * generators over long slabs whose results do not depend on the split. */
void nf_par_range(int nthreads, size_t n, size_t block, size_t work, void (*fn)(void *ctx, size_t lo, size_t hi),
                  void *ctx);
/* x[0 .. n) = 0 on nf_nn_threads() threads of the pool (gradient slabs of many MB). */
void nf_par_zero(float *x, size_t n);
/* Weights packed once for the GEMM (nn_gemm.c): A [M][K] row-major (the layers' weight
 * layout) packed into nf_gemm_packed_a_floats(M, K) floats (64-byte aligned) and
 * registered; every later nf_gemm / nf_gemm_taps with op(A) = that A (same address, M, K,
 * lda = K) may read the panels instead of packing them, with identical results. The
 * caller must unregister before A changes or either buffer is freed.
 * nf_gemm_register_packed returns 0 (and the matrix is packed per call as before) when
 * out of memory. */
size_t nf_gemm_packed_a_floats(int M, int K);
void nf_gemm_pack_a(int M, int K, const float *A, float *dst);
int nf_gemm_register_packed(const float *A, int M, int K, const float *packed);
/* Unregisters every copy (of any kind below) whose panels start in buf[0 .. n). */
void nf_gemm_unregister_packed(const float *buf, size_t n);
/* The registry behind it, for every copy packed once: a kind, the source's address and
 * two dimensions find the copy (NULL: none). Thread safe. */
enum { NF_PACKED_GEMM_A = 1, NF_PACKED_WINO = 2, NF_PACKED_WINO_UP = 3 };
int nf_packed_register(int kind, const float *src, int m, int k, const float *packed);
const float *nf_packed_find(int kind, const float *src, int m, int k);
/* count problems C_q[M][N] = A_q B_q (q < count; A_q at Ap + q as, B_q at Bp + q bs, C_q
 * at C + q cs, leading dimension ldc) with both operands already in the GEMM's panels,
 * K <= 512 (one chunk of the summation order; the same bits as nf_gemm on the same
 * matrices): A packed by nf_gemm_pack_a; B in nf_gemm_packed_b_floats(K, N) floats as
 * panels of 16 columns, panel p at B + 16 K p, element (k, j) at [16 k + j % 16], zero
 * beyond column N. For operands a caller writes itself (the Winograd transforms): no
 * packing pass, no scratch, and the problems share one fork and join of the threads. */
#define NF_GEMM_PACKED_KMAX 512
#define NF_GEMM_PANEL_N 16
size_t nf_gemm_packed_b_floats(int K, int N);
void nf_gemm_packed(int count, int M, int N, int K, const float *Ap, size_t as, const float *Bp, size_t bs, float *C,
                    size_t cs, int ldc);
/* The same on the calling thread only, for work already shared out between the pool's
 * threads (it may run inside an nf_par_for). */
void nf_gemm_packed_serial(int count, int M, int N, int K, const float *Ap, size_t as, const float *Bp, size_t bs,
                           float *C, size_t cs, int ldc);

/* One step (the i-th) of a wait loop on another thread's progress: a CPU pause, and
 * now and then a yield of the core (nn_pool.c). */
void nf_spin_pause(int i);

/* ---- GEMM ----
 * Row-major C[M][N] = beta C + alpha op(A) op(B), op = transpose if ta/tb, with every
 * element summed in a fixed order whatever the thread count or its position (see
 * nn_gemm.c for why OpenBLAS is not used here). ta && tb is supported but slow. */
void nf_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);
/* nf_gemm with op(B) read as `taps` shifted views of one matrix (an implicit im2col,
 * assembled inside the GEMM's own packing, so no copy is made):
 *   tb == 0: op(B)(k, j) = B[(k / taps) ldb + (k % taps) tstep + j]     (K = rows * taps)
 *   tb == 1: op(B)(k, j) = B[(j / taps) ldb + (j % taps) tstep + k]     (N = rows * taps)
 * so a stride-1 kernel-k convolution is one GEMM with K = cin k against weights in
 * PyTorch's [cout][cin][k] order. Same determinism as nf_gemm (the order depends on K). */
void nf_gemm_taps(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, int taps, ptrdiff_t tstep, float beta, float *C,
                  int ldc);

/* nf_gemm_taps with op(A) a convolution weight w [K / ktaps][M][ktaps] (PyTorch's
 * [cout][cin][k]) read as the M x K matrix of the transposed convolution:
 *   op(A)(i, q ktaps + t) = w[(q M + i) ktaps + t]
 * packed straight from w (no transposed copy). The same numbers in the same order as
 * nf_gemm_taps on that matrix written out: the same bits. */
void nf_gemm_convt(int M, int N, int K, int ktaps, float alpha, const float *w, const float *B, int ldb, int taps,
                   ptrdiff_t tstep, float beta, float *C, int ldc);

/* A layer's output in one pass: nf_gemm_taps (ta = tb = 0, beta = 1) on a C that is
 * never read but taken to hold bias[i] + res[i][j] (res: the leading dimension of C; it
 * may be C itself, read before written), bias[i] alone (res NULL) or res alone (bias
 * NULL, then 0 + res). The same bits as storing that into C first and accumulating.
 * Both NULL: C = alpha op(A) op(B), as nf_gemm_taps with beta = 0. */
void nf_gemm_taps_bias(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, int taps,
                       ptrdiff_t tstep, const float *bias, const float *res, float *C, int ldc);

/* ---- elementwise kernels ---- */
/* exp(x) to about 2 ulp for x in [-87, 88] (clamped outside), branch-free and
 * vectorisable: Cody-Waite range reduction + degree-6 polynomial (Cephes expf). */
float nf_fast_expf(float x);
/* Sigmoid and SiLU through nf_fast_expf. */
float nf_fast_sigmoid(float x);
/* y[i] = silu(x[i]) for n values. */
void nf_silu_forward(float *y, const float *x, size_t n);
/* dx[i] += dy[i] * silu'(x[i]). */
void nf_silu_backward(float *dx, const float *dy, const float *x, size_t n);

/* Pack x[B][C][L] into the sequence layout (gaps zeroed) and back. */
void nf_seq_pack(float *X, const float *x, int C, nf_seq s);
void nf_seq_unpack(float *x, const float *X, int C, nf_seq s);
/* Zero the gap columns of C rows. */
void nf_seq_zero_gaps(float *X, int C, nf_seq s);
/* Zero the gap columns of one example's segment (seg: its first column). */
static inline void nf_seg_zero_gaps(float *seg, nf_seq s)
{
    for (int i = 0; i < s.off; i++) seg[i] = 0.0f;
    for (int i = s.off + s.L; i < s.S; i++) seg[i] = 0.0f;
}
/* Y[valid] += X[valid] for C rows. */
void nf_seq_add(float *Y, const float *X, int C, nf_seq s);
/* Y[c][b][l] += v[b][c] for every position l of example b (v: [B][C]). */
void nf_seq_add_vec(float *Y, const float *v, int C, nf_seq s);

/* ---- conv1d ----
 * out[co][l] = bias[co] (+ res[co][l]) + sum_{ci,j} w[co][ci][j] * in[ci][stride*l + j*dil - pad]
 * with w in PyTorch's [cout][cin][k] order. Lout = (L + 2 pad - dil (k-1) - 1) / stride + 1.
 * Stride 1: `in` and `out` share the segment stride S (in.S == out.S), in has >= pad zero
 * columns before and after each example, and the conv is ONE GEMM with K = cin*k whose
 * operand is the k shifted views of `in` (nf_gemm_taps: the im2col happens inside the
 * GEMM's packing, no copy); likewise the weight gradient and the input gradient.
 * wt: scratch of k*cout*cin floats (backward: the weights repacked for the input
 * gradient; forward does not use it).
 * Stride > 1: `col` is scratch of k*cin*ld_out floats (written by forward, read by
 * backward); it holds the strided taps so that one GEMM with K = cin*k does the conv.
 * `res` may be NULL; it must be laid out as `out` (it may be `out` itself). Bias and
 * residual are added in the GEMM's epilogue (nf_gemm_taps_bias): out is written once. */
typedef struct {
    int cin, cout, k, stride, dil, pad;
} nf_conv_dims;

int nf_conv_out_len(nf_conv_dims d, int L);
/* Whether nf_conv1d_forward computes this conv by Winograd F(4, 3) (nn_wino.c): kernel 3,
 * stride 1, "same" padding, an example length of at least 192, 16-512 input and at least
 * 16 output channels; the batch never enters the decision. */
int nf_wino_applies(nf_conv_dims d, nf_seq si, nf_seq so);
/* out = conv3(in) + bias (+ res) (+ row_add[b][co] on example b's row co) at the valid
 * columns of s (gaps untouched); w as in nf_conv1d_forward; res may be out; row_add
 * (NULL: none) gives the same bits as adding it afterwards (the ResBlock's time
 * embedding, one pass over the output saved). Returns 0, or -1 with nothing written if
 * its scratch cannot be allocated (the caller then uses the direct conv). */
int nf_wino_conv3(float *out, const float *in, nf_seq s, const float *w, const float *bias, const float *res,
                  const float *row_add, int cin, int cout);
/* A conv weight w [cout][cin][3] transformed and packed once, for a network whose weights
 * are fixed (nf_unet_prepack): nf_wino_packed_floats() floats (64-byte aligned) filled by
 * nf_wino_pack (-1: out of memory) and registered as nf_packed_register(NF_PACKED_WINO,
 * w, cout, cin, dst); nf_wino_conv3 with that w then skips its weight transform, with
 * identical results. Unregister (nf_gemm_unregister_packed) before w changes or either
 * buffer is freed. */
size_t nf_wino_packed_floats(int cout, int cin);
int nf_wino_pack(const float *w, int cout, int cin, float *dst);
/* The same Winograd convs for a nearest x2 upsampling followed by a kernel-3 conv (the
 * U-Net's Up at inference, in place of nf_upconv3_forward's polyphase GEMMs): with the
 * polyphase identity below, the even outputs are the "same" 3-tap conv of x with
 * (w0, w1 + w2, 0) and the odd ones with (0, w0 + w1, w2), both over the input's tiles:
 * one input transform, the six GEMMs with 2 cout rows, three quarters of the polyphase
 * multiplies, and the outputs written interleaved (no copy). out (layout so) =
 * bias + conv3(upsample(in)) at the valid columns (gaps untouched), within
 * rounding of it (tests/model/test_wino.c); for Lout = 2 Lin - 1 (nearest resizing of an
 * odd length) the last output has no w2 term and is computed alone (nf_upconv3_last).
 * Applies when Lout is 2 Lin or 2 Lin - 1, Lin >= 96, 16-512 input and 16+ output
 * channels, and both layouts have a zero column either side of each example (the input's
 * are read as the padding; the output's after it may be written, the caller zeroes
 * gaps). Returns 0, or -1 with nothing written (no scratch).
 * Weights fixed for a while (an inference network): nf_wino_up_pack into
 * nf_wino_up_packed_floats() floats, registered as nf_packed_register(
 * NF_PACKED_WINO_UP, w, cout, cin, dst); the result is then the same, bit for bit. */
int nf_wino_upconv3_applies(int cin, int cout, nf_seq si, nf_seq so);
int nf_wino_upconv3(float *out, nf_seq so, const float *in, nf_seq si, const float *w, const float *bias, int cin,
                    int cout);
size_t nf_wino_up_packed_floats(int cout, int cin);
int nf_wino_up_pack(const float *w, int cout, int cin, float *dst);
void nf_conv1d_forward(float *out, nf_seq so, float *col, float *wt, const float *in, nf_seq si,
                       const float *w, const float *bias, const float *res, nf_conv_dims d);
/* The same, then row_add[b][co] (NULL: none) added to example b's valid columns of row co
 * (the ResBlock's time embedding): by the Winograd output transform where the conv runs
 * by Winograd, else by a pass over out; the same bits either way. */
void nf_conv1d_forward_rows(float *out, nf_seq so, float *col, float *wt, const float *in, nf_seq si,
                            const float *w, const float *bias, const float *res, const float *row_add,
                            nf_conv_dims d);
/* dw is overwritten; din and dbias accumulate. din may be NULL (no input gradient).
 * dout's gaps are zeroed here. `dcol` is scratch like `col` (stride > 1 only); `wt` as
 * in forward (rewritten). */
void nf_conv1d_backward(float *din, float *dw, float *dbias, float *dout, nf_seq so,
                        const float *col, float *dcol, float *wt, const float *in, nf_seq si,
                        const float *w, nf_conv_dims d);

/* ---- linear on [B][in] rows (small: time/class embeddings) ----
 * out[b][o] = bias[o] + sum_i w[o][i] x[b][i], w in PyTorch's [out][in] order.
 * Plain loops with fixed summation order (no BLAS), so results do not depend on B. */
void nf_linear_forward(float *out, const float *x, const float *w, const float *bias,
                       int B, int in, int outn);
/* dw is overwritten; dx and dbias accumulate. */
void nf_linear_backward(float *dx, float *dw, float *dbias, const float *dout, const float *x,
                        const float *w, int B, int in, int outn);

/* ---- GroupNorm (Wu & He 2018), optionally fused with SiLU ----
 * y = gamma * (x - mean) * rstd + beta per (example, group), rstd = 1/sqrt(var + eps),
 * var the biased variance; then y = silu(y) if silu. mean, rstd: [B][groups].
 * out's gaps are zeroed. */
void nf_groupnorm_forward(float *out, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, int C, int groups, float eps,
                          int silu, nf_seq s);
/* dout is overwritten (with d loss / d y before the SiLU). `partial` is scratch of
 * 2*C*B floats. dx accumulates. */
void nf_groupnorm_backward(float *dx, float *dgamma, float *dbeta, float *dout,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, const float *beta, float *partial, int C,
                           int groups, int silu, nf_seq s);

/* ---- sinusoidal time embedding (Vaswani et al. 2017, sec. 3.5; DDPM) ----
 * emb[b] = [sin(t_b f_0..f_{h-1}), cos(t_b f_0..f_{h-1})], h = dim/2, f_i = 10000^(-i/h). */
void nf_timestep_embedding(float *emb, const float *t, int B, int dim);

/* ---- class embedding: out[b] += table[y_b] (y_b < 0 -> row num_classes, "no class") ---- */
void nf_class_embed_forward(float *out, const int *y, const float *table, int B, int num_classes,
                            int dim);
void nf_class_embed_backward(float *dtable, const float *dout, const int *y, int B,
                             int num_classes, int dim);

/* ---- nearest resize over time (PyTorch F.interpolate(mode="nearest", size=Lout)) ----
 * src(l) = l if Lout == Lin; l/2 if Lout == 2 Lin; else min(floor(l * (float)Lin/Lout), Lin-1).
 * out's gaps are zeroed. */
int nf_nearest_src(int l, int Lin, int Lout);
void nf_upsample_forward(float *out, nf_seq so, const float *in, nf_seq si, int C);

/* ---- nearest x2 upsampling then a kernel-3 conv (stride 1, pad 1), by polyphase ----
 * With u[n] = x[n/2] (Lout = 2 Lin, or 2 Lin - 1 where nearest resizing also takes n/2):
 *   out[2m]   = b + w0 x[m-1] + (w1 + w2) x[m]
 *   out[2m+1] = b + (w0 + w1) x[m] + w2 x[m+1]
 * (x = 0 outside [0, Lin)), except that for odd Lout the last output, out[2 Lin - 2], has
 * no w2 term (its right neighbour is padding): computed on its own. Two kernel-2 convs at
 * the input's length instead of a kernel-3 one at twice it: two thirds of the multiplies
 * and no resized copy. The sums are rounded differently from conv(upsample(x)) (within
 * float rounding); the network uses this for inference only. */
/* Whether the identity above holds for nearest resizing Lin -> Lout (nf_nearest_src). */
int nf_upconv3_applies(int Lin, int Lout);
/* we[co][ci][2] = (w0, w1 + w2), wo[co][ci][2] = (w0 + w1, w2) from w[co][ci][3]. */
void nf_upconv3_weights(float *we, float *wo, const float *w, int cin, int cout);
/* out (layout so, Lout) = the conv with weights w / bias of the upsampled `in` (layout
 * si, Lin, zero gaps), from the polyphase weights; scr: 2 cout nf_seq_ld(si) floats. */
void nf_upconv3_forward(float *out, nf_seq so, float *scr, const float *in, nf_seq si, const float *we,
                        const float *wo, const float *w, const float *bias, int cin, int cout);
/* An odd Lout's last output, out[2 Lin - 2] = bias + sum_ci w0 x[Lin - 2] + w1 x[Lin - 1],
 * of example b, output channel co (Lin >= 2), summed in a fixed order. */
float nf_upconv3_last(const float *in, nf_seq si, int b, const float *w, const float *bias, int co, int cin);
void nf_upsample_backward(float *din, nf_seq si, const float *dout, nf_seq so, int C);

/* ---- dropout with a counter RNG (inverted: kept values scaled by 1/(1-p)) ----
 * Element (c, l) of example b is dropped iff u < p, u = uniform number c*L + l of
 * (seed, nf_stream_id("dropout", layer, b)). In place; backward applies the same mask. */
void nf_dropout_forward(float *x, int C, nf_seq s, float p, uint64_t seed, uint64_t layer);
void nf_dropout_backward(float *dx, int C, nf_seq s, float p, uint64_t seed, uint64_t layer);

/* ---- multi-head self-attention over time (Vaswani et al. 2017, eq. 1) ----
 * qkv: [3C][ld] with rows [q; k; v], head h using rows h*d..h*d+d-1 of each (d = C/heads).
 * o[h*d + c][l] = sum_j v[c][j] softmax_j(q[:,l] . k[:,j] / sqrt(d)).
 * lse: [B][heads][L] row log-sum-exp, kept for backward, which recomputes the
 * probabilities (memory O(L) per head instead of O(L^2)). scratch: L*L floats (forward),
 * 2*L*L (backward). o's gaps are zeroed. */
void nf_attention_forward(float *o, float *lse, const float *qkv, float *scratch, int C,
                          int heads, nf_seq s);
/* dqkv accumulates; do is read only (gaps ignored). */
void nf_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *lse,
                           float *scratch, int C, int heads, nf_seq s);

#ifdef __cplusplus
}
#endif
#endif
