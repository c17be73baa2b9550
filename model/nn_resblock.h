/* Internal (not installed): the residual block shared by the U-Net (unet.c) and the
 * noise-aware classifier (classifier.c), so that both run the same code.
 *
 *   ResBlock(cin, cout): h = conv3(SiLU(GN(x))) + Linear(E, cout)(semb)
 *                        out = conv3(dropout(SiLU(GN(h)))) + (conv1(x) if cin != cout else x)
 * (Ho et al. 2020 appendix B / the DDPM and Dance Diffusion residual block; semb is the
 * already-SiLU'd time (+ class) embedding [B][E].)
 *
 * Parameters p[0..11] (gradients g[0..11] alike), in the nets' table order:
 *   norm1.{weight,bias} conv1.{weight,bias} emb.{weight,bias} norm2.{weight,bias}
 *   conv2.{weight,bias} skip.{weight,bias} (skip only when cin != cout). */
#ifndef NF_NN_RESBLOCK_H
#define NF_NN_RESBLOCK_H

#include "nf_nn.h"

typedef struct {
    int cin, cout, groups, emb_dim;
} nf_resblock_dims;

/* Activations kept for backward; the gradient buffers of backward have the same shapes.
 * a1 [cin][ld], h1 [cout][ld], embp [B][cout], a2 [cout][ld], m*, r* [B][groups]. */
typedef struct {
    float *a1, *h1, *embp, *a2, *m1, *r1, *m2, *r2;
} nf_resblock_acts;

/* dropout > 0 only while training (the same mask is re-drawn in backward from
 * (dropout_seed, layer)). wt: conv repack scratch of 3 * max(cin, cout) * cout floats. */
void nf_resblock_forward(float *out, const nf_resblock_acts *a, const float *in,
                         const float *semb, const float *const *p, nf_resblock_dims d, nf_seq s,
                         float *wt, float dropout, uint64_t dropout_seed, uint64_t layer);
/* Accumulates into dx (d loss / d in),
 * dsemb [B][E] and g[]; da holds zeroed gradient buffers shaped like `a` (a1, h1, embp,
 * a2; the statistics fields are unused). dout's gaps are zeroed. partial: 2*C*B floats. */
void nf_resblock_backward(float *dx, float *dsemb, float *const *g, float *dout,
                          const nf_resblock_acts *da, const nf_resblock_acts *a, const float *in,
                          const float *semb, const float *const *p, nf_resblock_dims d, nf_seq s,
                          float *wt, float *partial, float dropout, uint64_t dropout_seed,
                          uint64_t layer);

#endif
