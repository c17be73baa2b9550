/* The denoiser: a 1D U-Net eps_theta(x_t, t, y) with hand-written forward and backward.
 *
 * Architecture (identical to the PyTorch mirror in tests/reference/ and tests/bench/):
 *
 *   time embedding: sinusoidal(t, C0) -> Linear(C0,4C0) -> SiLU -> Linear(4C0,4C0)
 *       sinusoidal: half = C0/2, f_i = 10000^(-i/half), emb = [sin(t f_0..), cos(t f_0..)]
 *       (t is the diffusion step index as a float, 0..T-1)
 *   class embedding (num_classes > 0): Embedding(num_classes + 1, 4C0) added to the time
 *       embedding; index num_classes is "no class" (classifier-free guidance, y = -1).
 *   ResBlock(cin,cout): h = conv3(SiLU(GN(x))); h += Linear(4C0,cout)(SiLU(emb));
 *                       h = conv3(dropout(SiLU(GN(h)))); out = h + (conv1(x) if cin != cout else x)
 *       GN = GroupNorm(groups, eps 1e-5, affine), conv3 = kernel 3 padding 1.
 *   Attention (levels flagged in attn[], and the middle if mid_attn):
 *       out = x + proj(MHA(qkv(GN(x)))) with qkv, proj kernel-1 convs, heads heads,
 *       softmax(q k^T / sqrt(d)) over time.
 *   in: conv3(in_ch, C0)
 *   Encoder level i (C_i = C0 * mults[i]): `blocks` ResBlocks to C_i (each followed by an
 *       Attention if attn[i]), keep the output as skip i, then Down = conv3 stride 2
 *       padding 1 (C_i -> C_i, length ceil(L/2)) except after the last level.
 *   Middle: ResBlock, Attention (if mid_attn), ResBlock, at C_last.
 *   Decoder level i (last to first): concat [h, skip i] on channels; ResBlock(C + C_i -> C_i);
 *       `blocks - 1` more ResBlock(C_i -> C_i) (each followed by an Attention if attn[i]);
 *       then, except for level 0, Up = nearest resize to skip (i-1)'s length, conv3(C_i -> C_i).
 *   out: GN -> SiLU -> conv3(C0, out_ch)
 *
 * Any length works: Down rounds up and Up resizes to the skip's exact length, so nothing
 * needs padding to a power of two.
 *
 * Tensors are [batch, channels, length], row-major. Parameter names and shapes follow
 * PyTorch's state_dict conventions (conv weight [cout, cin, k], linear [out, in]):
 *   time.lin1.{weight,bias}  time.lin2.{weight,bias}  class_emb.weight  in_conv.{weight,bias}
 *   down.{i}.res.{j}.{norm1,conv1,emb,norm2,conv2,skip}.{weight,bias}
 *   down.{i}.attn.{j}.{norm,qkv,proj}.{weight,bias}   down.{i}.downsample.{weight,bias}
 *   mid.res.{0,1}.*  mid.attn.*
 *   up.{i}.res.{j}.*  up.{i}.attn.{j}.*  up.{i}.upsample.{weight,bias}
 *   out_norm.{weight,bias}  out_conv.{weight,bias}
 * (`skip` exists only where cin != cout.)
 *
 * Details the C implementation fixes (the PyTorch mirror must match):
 *   - qkv output channels are [q; k; v] (C each); head h uses channels h*d..h*d+d-1 of
 *     each, d = C/heads (i.e. qkv.reshape(B, 3, heads, d, L)).
 *   - in the decoder EVERY ResBlock of an attention level is followed by an Attention,
 *     the first (concatenating) one included: up.{i}.attn.{j}, j = 0..blocks-1.
 *   - nearest resize uses ATen's index rule: src = dst if equal lengths, dst/2 if
 *     doubling, else min(floor(dst * (float)Lin/Lout), Lin-1).
 *   - the sinusoidal embedding is computed in double and rounded to float.
 *   - nf_unet_flops counts GEMM-type work only (convs, linears, attention products). */
#ifndef NF_UNET_H
#define NF_UNET_H

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NF_UNET_MAX_LEVELS 8

typedef struct {
    int in_ch;        /* input channels (1 wave mono, 2 stereo, 2*(n_fft/2+1)*C for stft) */
    int out_ch;       /* in_ch, or 2*in_ch when the variance is learned */
    int base;         /* C0 */
    int n_levels;
    int mults[NF_UNET_MAX_LEVELS];
    int blocks;       /* ResBlocks per encoder level (the decoder has the same count) */
    int attn[NF_UNET_MAX_LEVELS]; /* 1: attention after each ResBlock of that level */
    int mid_attn;     /* 1: attention between the two middle ResBlocks */
    int heads;        /* attention heads */
    int groups;       /* GroupNorm groups (8 in the reference networks) */
    int num_classes;  /* 0: unconditional */
    float dropout;    /* in ResBlocks, training only */
} nf_unet_config;

typedef struct nf_unet nf_unet;

typedef struct {
    const char *name;
    int ndim;
    int shape[3];
    size_t offset;    /* into nf_unet_params() / nf_unet_grads() */
    size_t size;      /* number of floats */
} nf_param_info;

/* Check a config; returns NF_ERR_ARG with a message naming the bad field. */
nf_status nf_unet_config_check(const nf_unet_config *cfg);

/* Build a network whose activation buffers fit batches up to max_batch examples of up to
 * max_length samples (allocated once here; forward/backward never allocate). */
nf_status nf_unet_create(const nf_unet_config *cfg, int max_batch, int max_length, nf_unet **out);
void nf_unet_free(nf_unet *net);
/* The parameter count of a config, without allocating the network. */
nf_status nf_unet_count_params(const nf_unet_config *cfg, size_t *count);
const nf_unet_config *nf_unet_get_config(const nf_unet *net);

/* Parameters and gradients: one contiguous slab each, described by a table. */
size_t nf_unet_num_params(const nf_unet *net);
float *nf_unet_params(nf_unet *net);
float *nf_unet_grads(nf_unet *net);
int nf_unet_num_tensors(const nf_unet *net);
const nf_param_info *nf_unet_tensor(const nf_unet *net, int i);
/* Index of a tensor by name, or -1. */
int nf_unet_find_tensor(const nf_unet *net, const char *name);

/* PyTorch's default initialisation (kaiming-uniform weights, uniform biases in
 * +-1/sqrt(fan_in), GroupNorm weight 1 bias 0, embedding N(0,1)) from the counter RNG,
 * so the same seed gives the same network. */
void nf_unet_init_params(nf_unet *net, uint64_t seed);

/* out[B, out_ch, L] = net(x[B, in_ch, L], t[B], y[B]); y may be NULL (all "no class");
 * y[b] = -1 is "no class". With train != 0 the activations are kept for backward and
 * dropout (if any) is drawn from (dropout_seed, example index). */
nf_status nf_unet_forward(nf_unet *net, const float *x, const float *t, const int *y,
                          int B, int L, float *out, int train, uint64_t dropout_seed);
/* For inference: packs the convolution weights for the GEMM once, so that forward passes
 * do not (about 15% of a batch-1 forward; same results bit for bit), with the upsampling
 * convs' polyphase weights (see below). Valid until the next nf_unet_params() call, which
 * may change the weights and so drops the packed copy (call this again after changing
 * them). Costs about as much memory again as the weights (the conv weights packed, and the
 * upsampling convs' two polyphase weights, 4/3 of theirs). NF_ERR_NOMEM leaves the network
 * working as before.
 *
 * Inference (train == 0) runs each upsampling conv whose input has at least 512 samples
 * per example as two kernel-2 convs on the input (nf_upconv3_forward: a third fewer
 * multiplies, no resized copy); training keeps upsample + conv. The two agree within
 * float rounding, not bit for bit; each is deterministic, and an example gives the same
 * bits alone or in any batch either way. */
nf_status nf_unet_prepack(nf_unet *net);

/* After a training forward: write d loss / d params into nf_unet_grads() (every element is
 * overwritten: no zeroing needed first) and, if dx is not NULL, d loss / d x
 * [B, in_ch, L]. */
nf_status nf_unet_backward(nf_unet *net, const float *dout, float *dx);
/* The global L2 norm of the gradients as the last nf_unet_backward wrote them, summed as
 * the backward pass went (bit for bit nf_l2_norm(nf_unet_grads(net), nf_unet_num_params(net))
 * then, without a pass over all the gradients); NAN before a backward pass, after a failed
 * one, or after a forward. */
double nf_unet_grad_norm(const nf_unet *net);
/* Zeroes nf_unet_grads() (nf_unet_backward does not need it). */
void nf_unet_zero_grad(nf_unet *net);

/* Floating-point operations of one forward pass for one example of length L
 * (multiply-add = 2). A training step costs about 3x this. */
double nf_unet_flops(const nf_unet_config *cfg, int L);

/* One thread count for OpenBLAS and for our own OpenMP loops (0 = all cores). */
void nf_set_threads(int n);
int nf_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif
