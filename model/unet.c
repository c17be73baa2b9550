/* The denoiser U-Net (architecture in nf_unet.h) on top of the layers in nf_nn.h.
 *
 * The network is a chain of ops built once from the config. Each forward call plans
 * the activation slab for its (B, L) with a bump allocator (a pure function of B and
 * L, so backward finds everything where forward left it); the gradient slab mirrors
 * the activation slab offset for offset, so d(buffer) = dact + (buffer - act).
 * Skip connections cost no copy: the last op of encoder level i writes straight into
 * the upper rows of the decoder's concatenation buffer cat[i], and the op feeding the
 * decoder level writes into its lower rows. Backward accumulates into every gradient
 * buffer, so the two uses of a skip just add up. */
#include "nf_unet.h"
#include "nf_nn.h"
#include "nn_resblock.h"
#include "nf_rng.h"
#include "nf_optim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BLOCKS 16
#define GN_EPS 1e-5f

enum { OP_IN, OP_RES, OP_ATTN, OP_DOWN, OP_UP, OP_OUT };
enum { DEST_NEW, DEST_CAT_LO, DEST_CAT_HI };
enum { INIT_W, INIT_B, INIT_ONE, INIT_ZERO, INIT_EMB };

typedef struct {
    int kind, level, out_level; /* levels of the input and of the output */
    int cin, cout;
    int p0;                     /* first of this op's tensors in the table */
    int has_skip;               /* RES: 1x1 conv on the residual path */
    int layer;                  /* RES: dropout stream */
    int in_cat;                 /* RES: input is the whole cat[level] */
    int dest;                   /* DEST_* for the output */
    /* Set by plan() for the current (B, L). */
    nf_seq si, so;
    const float *in;
    float *out;
    float *a1, *h1, *a2, *embp; /* RES: SiLU(GN1 x), conv1 + emb, dropout(SiLU(GN2 h1)), emb proj */
    float *m1, *r1, *m2, *r2;   /* GroupNorm statistics [B][groups] */
    float *norm, *qkv, *att, *lse; /* ATTN */
    float *col;                 /* DOWN: strided taps; UP: the resized input (training) or the
                                   polyphase outputs (inference); OUT: SiLU(GN) */
    size_t upw;                 /* UP: its polyphase weights at net->upw + upw */
} op_t;

typedef struct {
    char name[64];
    int init, fan_in;
} tensor_extra;

struct nf_unet {
    nf_unet_config cfg;
    int max_batch, max_length;
    int n_ops;
    op_t *ops;
    int n_tensors, cap_tensors;
    nf_param_info *tensors;
    tensor_extra *extra;
    size_t n_params;
    float *params, *grads;
    float *act, *dact;
    size_t act_size, act_used;
    float *wt;       /* conv weight repack scratch */
    float *partial;  /* GroupNorm backward scratch */
    float *att_scr;  /* attention scores */
    size_t att_scr_size;
    int *y;          /* labels of the last training forward */
    float *packed;   /* nf_unet_prepack: conv weights packed for the GEMM (NULL: none) */
    float *upw;      /* the UP ops' polyphase weights (nf_upconv3_weights) */
    size_t upw_n;
    int upw_ready;   /* upw matches the weights (set by nf_unet_prepack) */
    size_t packed_n; /* floats in packed */
    float *wpacked;  /* nf_unet_prepack: the Winograd convs' transformed weights (NULL: none) */
    size_t wpacked_n;
    /* The gradient norm's partial sums (nf_norm_partials), filled op by op during
     * nf_unet_backward while each op's gradients are still in cache. */
    double norm_part[NF_NORM_MAX_BLOCKS];
    size_t norm_block;
    int norm_nb, norm_valid;
    /* Last forward. */
    int B, L, trained;
    uint64_t dropout_seed;
    float *x0, *tsin, *th, *ths, *emb, *semb, *final;
    float *cat[NF_UNET_MAX_LEVELS];
    nf_seq seq[NF_UNET_MAX_LEVELS];
};

static int level_ch(const nf_unet_config *c, int i) { return c->base * c->mults[i]; }

nf_status nf_unet_config_check(const nf_unet_config *c)
{
    if (!c) return nf_fail(NF_ERR_ARG, "unet: no config");
    if (c->in_ch < 1) return nf_fail(NF_ERR_ARG, "unet config: in_ch %d < 1", c->in_ch);
    if (c->out_ch < 1) return nf_fail(NF_ERR_ARG, "unet config: out_ch %d < 1", c->out_ch);
    if (c->base < 2 || c->base % 2)
        return nf_fail(NF_ERR_ARG, "unet config: base %d must be even and >= 2", c->base);
    if (c->n_levels < 1 || c->n_levels > NF_UNET_MAX_LEVELS)
        return nf_fail(NF_ERR_ARG, "unet config: n_levels %d not in 1..%d", c->n_levels,
                       NF_UNET_MAX_LEVELS);
    if (c->blocks < 1 || c->blocks > MAX_BLOCKS)
        return nf_fail(NF_ERR_ARG, "unet config: blocks %d not in 1..%d", c->blocks, MAX_BLOCKS);
    if (c->groups < 1) return nf_fail(NF_ERR_ARG, "unet config: groups %d < 1", c->groups);
    if (c->heads < 1) return nf_fail(NF_ERR_ARG, "unet config: heads %d < 1", c->heads);
    if (c->base % c->groups)
        return nf_fail(NF_ERR_ARG, "unet config: groups %d does not divide base %d", c->groups,
                       c->base);
    for (int i = 0; i < c->n_levels; i++) {
        if (c->mults[i] < 1)
            return nf_fail(NF_ERR_ARG, "unet config: mults[%d] = %d < 1", i, c->mults[i]);
        int ch = level_ch(c, i);
        if (ch % c->groups)
            return nf_fail(NF_ERR_ARG, "unet config: groups %d does not divide level %d width %d",
                           c->groups, i, ch);
        int need_attn = c->attn[i] || (c->mid_attn && i == c->n_levels - 1);
        if (need_attn && ch % c->heads)
            return nf_fail(NF_ERR_ARG, "unet config: heads %d does not divide level %d width %d",
                           c->heads, i, ch);
    }
    /* Upper bounds far above any useful network, so that sizes computed in int and
     * size_t cannot overflow when a damaged or hostile file describes a network. */
    if (c->in_ch > 65536 || c->out_ch > 65536 || c->base > 16384 || c->heads > 1024 ||
        c->num_classes > 100000)
        return nf_fail(NF_ERR_ARG, "unet config: sizes out of range (in_ch %d, out_ch %d, base %d, "
                       "heads %d, classes %d)", c->in_ch, c->out_ch, c->base, c->heads, c->num_classes);
    for (int i = 0; i < c->n_levels; i++)
        if (c->mults[i] > 64 || (long long)c->base * c->mults[i] > 16384)
            return nf_fail(NF_ERR_ARG, "unet config: level %d width %lld is larger than 16384", i,
                           (long long)c->base * c->mults[i]);
    if (c->num_classes < 0)
        return nf_fail(NF_ERR_ARG, "unet config: num_classes %d < 0", c->num_classes);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return nf_fail(NF_ERR_ARG, "unet config: dropout %g not in [0, 1)", (double)c->dropout);
    return NF_OK;
}

/* ------------------------------------------------------------ structure */

/* Registers a tensor (net may be NULL when only counting). */
static int add_tensor(nf_unet *net, int init, int fan_in, int ndim, int s0, int s1, int s2,
                      const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static int add_tensor(nf_unet *net, int init, int fan_in, int ndim, int s0, int s1, int s2,
                      const char *fmt, ...)
{
    if (!net) return 0;
    if (net->n_tensors == net->cap_tensors) {
        int cap = net->cap_tensors ? 2 * net->cap_tensors : 64;
        nf_param_info *t = realloc(net->tensors, (size_t)cap * sizeof *t);
        if (t) net->tensors = t;
        tensor_extra *e = realloc(net->extra, (size_t)cap * sizeof *e);
        if (e) net->extra = e;
        if (!t || !e) return -1;
        net->cap_tensors = cap;
    }
    int i = net->n_tensors++;
    nf_param_info *t = &net->tensors[i];
    tensor_extra *e = &net->extra[i];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->init = init;
    e->fan_in = fan_in;
    t->name = NULL; /* pointed at e->name once the table stops moving */
    t->ndim = ndim;
    t->shape[0] = s0;
    t->shape[1] = ndim > 1 ? s1 : 0;
    t->shape[2] = ndim > 2 ? s2 : 0;
    t->size = (size_t)s0 * (ndim > 1 ? (size_t)s1 : 1) * (ndim > 2 ? (size_t)s2 : 1);
    t->offset = net->n_params;
    net->n_params += t->size;
    return i;
}

static void add_conv(nf_unet *net, int co, int ci, int k, const char *prefix)
{
    add_tensor(net, INIT_W, ci * k, 3, co, ci, k, "%s.weight", prefix);
    add_tensor(net, INIT_B, ci * k, 1, co, 0, 0, "%s.bias", prefix);
}
static void add_linear(nf_unet *net, int o, int i, const char *prefix)
{
    add_tensor(net, INIT_W, i, 2, o, i, 0, "%s.weight", prefix);
    add_tensor(net, INIT_B, i, 1, o, 0, 0, "%s.bias", prefix);
}
static void add_norm(nf_unet *net, int c, const char *prefix)
{
    add_tensor(net, INIT_ONE, 0, 1, c, 0, 0, "%s.weight", prefix);
    add_tensor(net, INIT_ZERO, 0, 1, c, 0, 0, "%s.bias", prefix);
}

static op_t *new_op(op_t *ops, int *n, nf_unet *net, int kind, int level, int cin, int cout)
{
    op_t *o = &ops[(*n)++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->level = o->out_level = level;
    o->cin = cin;
    o->cout = cout;
    o->p0 = net ? net->n_tensors : 0;
    return o;
}

static void add_res(op_t *ops, int *n, nf_unet *net, int *layer, int level, int cin, int cout,
                    int E, const char *prefix)
{
    op_t *o = new_op(ops, n, net, OP_RES, level, cin, cout);
    o->has_skip = cin != cout;
    o->layer = (*layer)++;
    char p[64];
    snprintf(p, sizeof p, "%s.norm1", prefix), add_norm(net, cin, p);
    snprintf(p, sizeof p, "%s.conv1", prefix), add_conv(net, cout, cin, 3, p);
    snprintf(p, sizeof p, "%s.emb", prefix), add_linear(net, cout, E, p);
    snprintf(p, sizeof p, "%s.norm2", prefix), add_norm(net, cout, p);
    snprintf(p, sizeof p, "%s.conv2", prefix), add_conv(net, cout, cout, 3, p);
    if (o->has_skip) snprintf(p, sizeof p, "%s.skip", prefix), add_conv(net, cout, cin, 1, p);
}

static void add_attn(op_t *ops, int *n, nf_unet *net, int level, int C, const char *prefix)
{
    new_op(ops, n, net, OP_ATTN, level, C, C);
    char p[64];
    snprintf(p, sizeof p, "%s.norm", prefix), add_norm(net, C, p);
    snprintf(p, sizeof p, "%s.qkv", prefix), add_conv(net, 3 * C, C, 1, p);
    snprintf(p, sizeof p, "%s.proj", prefix), add_conv(net, C, C, 1, p);
}

static int max_ops(const nf_unet_config *c) { return 8 + 2 * c->n_levels * (2 * c->blocks + 1); }

/* The op chain and (if net) the parameter table, in forward order. */
static int build(const nf_unet_config *c, nf_unet *net, op_t *ops)
{
    int n = 0, layer = 0, L = c->n_levels, C0 = c->base, E = 4 * C0;
    char p[64];
    add_linear(net, E, C0, "time.lin1");
    add_linear(net, E, E, "time.lin2");
    if (c->num_classes > 0)
        add_tensor(net, INIT_EMB, 0, 2, c->num_classes + 1, E, 0, "class_emb.weight");
    new_op(ops, &n, net, OP_IN, 0, c->in_ch, C0);
    add_conv(net, C0, c->in_ch, 3, "in_conv");
    int ch = C0;
    for (int i = 0; i < L; i++) {
        int Ci = level_ch(c, i);
        for (int j = 0; j < c->blocks; j++) {
            snprintf(p, sizeof p, "down.%d.res.%d", i, j);
            add_res(ops, &n, net, &layer, i, ch, Ci, E, p);
            ch = Ci;
            if (c->attn[i]) {
                snprintf(p, sizeof p, "down.%d.attn.%d", i, j);
                add_attn(ops, &n, net, i, Ci, p);
            }
        }
        ops[n - 1].dest = DEST_CAT_HI;
        if (i < L - 1) {
            op_t *o = new_op(ops, &n, net, OP_DOWN, i, Ci, Ci);
            o->out_level = i + 1;
            snprintf(p, sizeof p, "down.%d.downsample", i);
            add_conv(net, Ci, Ci, 3, p);
        }
    }
    add_res(ops, &n, net, &layer, L - 1, ch, ch, E, "mid.res.0");
    if (c->mid_attn) add_attn(ops, &n, net, L - 1, ch, "mid.attn");
    add_res(ops, &n, net, &layer, L - 1, ch, ch, E, "mid.res.1");
    ops[n - 1].dest = DEST_CAT_LO;
    for (int i = L - 1; i >= 0; i--) {
        int Ci = level_ch(c, i);
        for (int j = 0; j < c->blocks; j++) {
            snprintf(p, sizeof p, "up.%d.res.%d", i, j);
            add_res(ops, &n, net, &layer, i, j == 0 ? ch + Ci : Ci, Ci, E, p);
            if (j == 0) ops[n - 1].in_cat = 1;
            ch = Ci;
            if (c->attn[i]) {
                snprintf(p, sizeof p, "up.%d.attn.%d", i, j);
                add_attn(ops, &n, net, i, Ci, p);
            }
        }
        if (i > 0) {
            op_t *o = new_op(ops, &n, net, OP_UP, i, Ci, Ci);
            o->out_level = i - 1;
            o->dest = DEST_CAT_LO;
            snprintf(p, sizeof p, "up.%d.upsample", i);
            add_conv(net, Ci, Ci, 3, p);
        }
    }
    new_op(ops, &n, net, OP_OUT, 0, C0, c->out_ch);
    add_norm(net, C0, "out_norm");
    add_conv(net, c->out_ch, C0, 3, "out_conv");
    return n;
}

/* ------------------------------------------------------------ planning */

typedef struct {
    float *base;
    size_t used;
} bump_t;

static float *balloc(bump_t *b, size_t n)
{
    size_t off = b->used;
    b->used += (n + 15) & ~(size_t)15; /* 64-byte granules */
    return b->base ? b->base + off : NULL;
}

static void level_lengths(const nf_unet_config *c, int L, int *Ls)
{
    Ls[0] = L;
    for (int i = 1; i < c->n_levels; i++) Ls[i] = (Ls[i - 1] + 1) / 2;
}

/* Assigns every buffer for (B, L); returns the floats used. With act == NULL only counts. */
static size_t plan(nf_unet *net, float *act, int B, int L)
{
    const nf_unet_config *c = &net->cfg;
    bump_t bp = {act, 0};
    int Ls[NF_UNET_MAX_LEVELS], E = 4 * c->base, G = c->groups;
    level_lengths(c, L, Ls);
    nf_seq seq[NF_UNET_MAX_LEVELS];
    for (int i = 0; i < c->n_levels; i++) seq[i] = nf_seq_make(B, Ls[i]), net->seq[i] = seq[i];
    size_t ld0 = nf_seq_ld(seq[0]);
    net->x0 = balloc(&bp, (size_t)c->in_ch * ld0);
    net->tsin = balloc(&bp, (size_t)B * c->base);
    net->th = balloc(&bp, (size_t)B * E);
    net->ths = balloc(&bp, (size_t)B * E);
    net->emb = balloc(&bp, (size_t)B * E);
    net->semb = balloc(&bp, (size_t)B * E);
    int lo_ch[NF_UNET_MAX_LEVELS];
    for (int i = 0; i < c->n_levels; i++) {
        lo_ch[i] = i == c->n_levels - 1 ? level_ch(c, i) : level_ch(c, i + 1);
        net->cat[i] = balloc(&bp, (size_t)(lo_ch[i] + level_ch(c, i)) * nf_seq_ld(seq[i]));
    }
    const float *prev = net->x0;
    size_t att = 0;
    for (int k = 0; k < net->n_ops; k++) {
        op_t *o = &net->ops[k];
        o->si = seq[o->level];
        o->so = seq[o->out_level];
        size_t ld = nf_seq_ld(o->si), ldo = nf_seq_ld(o->so);
        o->in = o->in_cat ? net->cat[o->level] : prev;
        switch (o->kind) {
        case OP_RES:
            o->a1 = balloc(&bp, (size_t)o->cin * ld);
            o->m1 = balloc(&bp, (size_t)B * G);
            o->r1 = balloc(&bp, (size_t)B * G);
            o->h1 = balloc(&bp, (size_t)o->cout * ld);
            o->embp = balloc(&bp, (size_t)B * o->cout);
            o->m2 = balloc(&bp, (size_t)B * G);
            o->r2 = balloc(&bp, (size_t)B * G);
            o->a2 = balloc(&bp, (size_t)o->cout * ld);
            break;
        case OP_ATTN:
            o->norm = balloc(&bp, (size_t)o->cin * ld);
            o->m1 = balloc(&bp, (size_t)B * G);
            o->r1 = balloc(&bp, (size_t)B * G);
            o->qkv = balloc(&bp, (size_t)3 * o->cin * ld);
            o->att = balloc(&bp, (size_t)o->cin * ld);
            o->lse = balloc(&bp, (size_t)B * c->heads * o->si.L);
            if ((size_t)2 * o->si.L * o->si.L > att) att = (size_t)2 * o->si.L * o->si.L;
            break;
        case OP_DOWN:
            o->col = balloc(&bp, (size_t)3 * o->cin * ldo);
            break;
        case OP_UP: {
            /* The resized input (training), or the two polyphase outputs at the input's
             * length (inference). */
            size_t rs = (size_t)o->cin * ldo, pp = (size_t)2 * o->cout * nf_seq_ld(o->si);
            o->col = balloc(&bp, rs > pp ? rs : pp);
            break;
        }
        case OP_OUT:
            o->col = balloc(&bp, (size_t)o->cin * ld);
            o->m1 = balloc(&bp, (size_t)B * G);
            o->r1 = balloc(&bp, (size_t)B * G);
            break;
        default:
            break;
        }
        if (o->dest == DEST_CAT_LO)
            o->out = net->cat[o->out_level];
        else if (o->dest == DEST_CAT_HI)
            o->out = net->cat[o->out_level] ? net->cat[o->out_level] +
                                                  (size_t)lo_ch[o->out_level] * ldo
                                            : NULL;
        else
            o->out = balloc(&bp, (size_t)o->cout * ldo);
        prev = o->out;
    }
    net->final = net->ops[net->n_ops - 1].out;
    if (!act) net->att_scr_size = att;
    return bp.used;
}

/* ------------------------------------------------------------ lifecycle */

nf_status nf_unet_create(const nf_unet_config *cfg, int max_batch, int max_length, nf_unet **out)
{
    *out = NULL;
    nf_status st = nf_unet_config_check(cfg);
    if (st) return st;
    if (max_batch < 1 || max_length < 1)
        return nf_fail(NF_ERR_ARG, "unet: max_batch %d and max_length %d must be >= 1", max_batch,
                       max_length);
    nf_unet *net = calloc(1, sizeof *net);
    if (!net) return nf_fail(NF_ERR_NOMEM, "unet: out of memory");
    net->cfg = *cfg;
    net->max_batch = max_batch;
    net->max_length = max_length;
    net->ops = calloc((size_t)max_ops(cfg), sizeof *net->ops);
    if (!net->ops) goto nomem;
    net->n_ops = build(cfg, net, net->ops);
    if (net->n_tensors < 0 || (net->n_tensors && !net->tensors)) goto nomem;
    for (int i = 0; i < net->n_tensors; i++) net->tensors[i].name = net->extra[i].name;
    net->params = calloc(net->n_params, sizeof(float));
    net->grads = calloc(net->n_params, sizeof(float));
    net->act_size = plan(net, NULL, max_batch, max_length);
    net->act = malloc(net->act_size * sizeof(float));
    net->dact = malloc(net->act_size * sizeof(float));
    size_t wt = 0, cmax = 0;
    for (int k = 0; k < net->n_ops; k++) {
        const op_t *o = &net->ops[k];
        size_t w = (size_t)3 * o->cin * o->cout; /* the widest conv of each op */
        if (o->kind == OP_ATTN) w = (size_t)3 * o->cin * o->cin;
        if (w > wt) wt = w;
        if ((size_t)o->cin > cmax) cmax = (size_t)o->cin;
        if ((size_t)o->cout > cmax) cmax = (size_t)o->cout;
    }
    for (int k = 0; k < net->n_ops; k++) {
        op_t *o = &net->ops[k];
        if (o->kind != OP_UP) continue;
        o->upw = net->upw_n;
        net->upw_n += (size_t)4 * o->cin * o->cout;
    }
    net->upw = malloc((net->upw_n ? net->upw_n : 1) * sizeof(float));
    net->wt = malloc(wt * sizeof(float));
    net->partial = malloc(2 * cmax * (size_t)max_batch * sizeof(float));
    net->att_scr = malloc((net->att_scr_size ? net->att_scr_size : 1) * sizeof(float));
    net->y = malloc((size_t)max_batch * sizeof(int));
    if (!net->params || !net->grads || !net->act || !net->dact || !net->wt || !net->partial ||
        !net->att_scr || !net->y || !net->upw)
        goto nomem;
    net->norm_nb = nf_norm_blocks(net->n_params, &net->norm_block);
    *out = net;
    return NF_OK;
nomem:
    nf_unet_free(net);
    return nf_fail(NF_ERR_NOMEM, "unet: out of memory allocating the network (max_batch %d, "
                                 "max_length %d)", max_batch, max_length);
}

nf_status nf_unet_count_params(const nf_unet_config *cfg, size_t *count)
{
    *count = 0;
    nf_status st = nf_unet_config_check(cfg);
    if (st) return st;
    /* The tensor table alone (no weights, no activations), so that a checkpoint loader
     * can compare a header's config with the data the file really holds before it
     * allocates anything that size. */
    nf_unet tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.cfg = *cfg;
    op_t *ops = calloc((size_t)max_ops(cfg), sizeof *ops);
    if (!ops) return nf_fail(NF_ERR_NOMEM, "unet: out of memory");
    build(cfg, &tmp, ops);
    int ok = tmp.n_tensors >= 0 && (!tmp.n_tensors || tmp.tensors);
    *count = tmp.n_params;
    free(ops);
    free(tmp.tensors);
    free(tmp.extra);
    return ok ? NF_OK : nf_fail(NF_ERR_NOMEM, "unet: out of memory");
}

static void drop_packed(nf_unet *net)
{
    net->upw_ready = 0;
    if (net->wpacked) {
        nf_gemm_unregister_packed(net->wpacked, net->wpacked_n);
        free(net->wpacked);
        net->wpacked = NULL;
        net->wpacked_n = 0;
    }
    if (!net->packed) return;
    nf_gemm_unregister_packed(net->packed, net->packed_n);
    free(net->packed);
    net->packed = NULL;
    net->packed_n = 0;
}

/* The A operands the inference GEMMs read: every conv weight [cout][cin][k] as
 * [cout][cin k], and each UP op's two polyphase weights [cout][cin 2]. Returns how many;
 * fills ptr/M/K when ptr is not NULL. */
static int inference_weights(const nf_unet *net, const float **ptr, int *M, int *K)
{
    int n = 0;
    for (int i = 0; i < net->n_tensors; i++) {
        const nf_param_info *t = &net->tensors[i];
        if (t->ndim != 3) continue;
        if (ptr) ptr[n] = net->params + t->offset, M[n] = t->shape[0], K[n] = t->shape[1] * t->shape[2];
        n++;
    }
    for (int k = 0; k < net->n_ops; k++) {
        const op_t *o = &net->ops[k];
        if (o->kind != OP_UP || nf_wino_upconv3_applies(o->cin, o->cout, o->si, o->so)) continue;
        for (int h = 0; h < 2; h++, n++)
            if (ptr) ptr[n] = net->upw + o->upw + (size_t)h * 2 * o->cin * o->cout, M[n] = o->cout, K[n] = 2 * o->cin;
    }
    return n;
}

static void upconv_weights(nf_unet *net, const op_t *o)
{
    float *we = net->upw + o->upw;
    nf_upconv3_weights(we, we + (size_t)2 * o->cin * o->cout, net->params + net->tensors[o->p0].offset, o->cin,
                       o->cout);
}

/* The weights that run by Winograd at inference at this network's lengths: the ResBlocks'
 * kernel-3 convs (NF_PACKED_WINO) and the Up convs (NF_PACKED_WINO_UP), as (kind, w,
 * cout, cin). Returns how many; fills the arrays when w is not NULL. */
static int wino_weights(const nf_unet *net, int *kind, const float **w, int *cout, int *cin)
{
    int n = 0;
    for (int k = 0; k < net->n_ops; k++) {
        const op_t *o = &net->ops[k];
        if (o->kind == OP_UP && nf_wino_upconv3_applies(o->cin, o->cout, o->si, o->so)) {
            if (w) kind[n] = NF_PACKED_WINO_UP, w[n] = net->params + net->tensors[o->p0].offset, cout[n] = o->cout,
                   cin[n] = o->cin;
            n++;
        }
        if (o->kind != OP_RES) continue;
        const int pi[2] = {2, 8}, ci[2] = {o->cin, o->cout}; /* conv1: cin -> cout; conv2 */
        for (int c = 0; c < 2; c++) {
            nf_conv_dims d = {ci[c], o->cout, 3, 1, 1, 1};
            if (!nf_wino_applies(d, o->si, o->si)) continue;
            if (w) kind[n] = NF_PACKED_WINO, w[n] = net->params + net->tensors[o->p0 + pi[c]].offset, cout[n] = o->cout,
                   cin[n] = ci[c];
            n++;
        }
    }
    return n;
}

static size_t wino_floats(int kind, int cout, int cin)
{
    return kind == NF_PACKED_WINO_UP ? nf_wino_up_packed_floats(cout, cin) : nf_wino_packed_floats(cout, cin);
}

/* Transforms and registers the Winograd convs' weights (nf_wino_pack, nf_wino_up_pack);
 * NOMEM leaves the rest to be transformed per call. */
static void prepack_wino(nf_unet *net)
{
    int n = wino_weights(net, NULL, NULL, NULL, NULL);
    if (n == 0) return;
    const float **w = malloc((size_t)n * sizeof *w);
    int *kd = malloc((size_t)n * sizeof *kd), *co = malloc((size_t)n * sizeof *co);
    int *ci = malloc((size_t)n * sizeof *ci);
    size_t total = 0;
    if (w && kd && co && ci) {
        wino_weights(net, kd, w, co, ci);
        for (int i = 0; i < n; i++) total += wino_floats(kd[i], co[i], ci[i]);
        net->wpacked = aligned_alloc(64, (total * sizeof(float) + 63) / 64 * 64);
    }
    if (net->wpacked) {
        net->wpacked_n = total;
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            float *dst = net->wpacked + off;
            int rc = kd[i] == NF_PACKED_WINO_UP ? nf_wino_up_pack(w[i], co[i], ci[i], dst)
                                                : nf_wino_pack(w[i], co[i], ci[i], dst);
            if (rc || !nf_packed_register(kd[i], w[i], co[i], ci[i], dst)) break;
            off += wino_floats(kd[i], co[i], ci[i]); /* a multiple of 512 floats */
        }
    }
    free(w), free(kd), free(co), free(ci);
}

nf_status nf_unet_prepack(nf_unet *net)
{
    drop_packed(net);
    for (int k = 0; k < net->n_ops; k++)
        if (net->ops[k].kind == OP_UP) upconv_weights(net, &net->ops[k]);
    net->upw_ready = 1;
    prepack_wino(net);
    int n = inference_weights(net, NULL, NULL, NULL);
    if (n == 0) return NF_OK;
    const float **ptr = malloc((size_t)n * sizeof *ptr);
    int *M = malloc((size_t)n * sizeof *M), *K = malloc((size_t)n * sizeof *K);
    if (!ptr || !M || !K) {
        free(ptr), free(M), free(K);
        return nf_fail(NF_ERR_NOMEM, "unet: out of memory for packed weights");
    }
    inference_weights(net, ptr, M, K);
    /* A conv whose transformed weights prepack_wino registered never reads its GEMM
     * panels: none are made for it. */
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (K[i] % 3 || (!nf_packed_find(NF_PACKED_WINO, ptr[i], M[i], K[i] / 3) &&
                         !nf_packed_find(NF_PACKED_WINO_UP, ptr[i], M[i], K[i] / 3)))
            ptr[kept] = ptr[i], M[kept] = M[i], K[kept] = K[i], kept++;
    n = kept;
    if (n == 0) {
        free(ptr), free(M), free(K);
        return NF_OK;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) total += nf_gemm_packed_a_floats(M[i], K[i]);
    net->packed = aligned_alloc(64, (total * sizeof(float) + 63) / 64 * 64);
    if (!net->packed) {
        free(ptr), free(M), free(K);
        return nf_fail(NF_ERR_NOMEM, "unet: out of memory for packed weights");
    }
    net->packed_n = total;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        float *dst = net->packed + off;
        nf_gemm_pack_a(M[i], K[i], ptr[i], dst);
        if (!nf_gemm_register_packed(ptr[i], M[i], K[i], dst)) break; /* unpacked from here on */
        off += nf_gemm_packed_a_floats(M[i], K[i]); /* a multiple of 512 floats: blocks stay 64-byte aligned */
    }
    free(ptr), free(M), free(K);
    return NF_OK;
}

void nf_unet_free(nf_unet *net)
{
    if (!net) return;
    drop_packed(net);
    free(net->ops);
    free(net->tensors);
    free(net->extra);
    free(net->params);
    free(net->grads);
    free(net->act);
    free(net->dact);
    free(net->wt);
    free(net->upw);
    free(net->partial);
    free(net->att_scr);
    free(net->y);
    free(net);
}

const nf_unet_config *nf_unet_get_config(const nf_unet *net) { return &net->cfg; }
size_t nf_unet_num_params(const nf_unet *net) { return net->n_params; }
float *nf_unet_params(nf_unet *net)
{
    drop_packed(net); /* the caller may change the weights */
    return net->params;
}
float *nf_unet_grads(nf_unet *net) { return net->grads; }
int nf_unet_num_tensors(const nf_unet *net) { return net->n_tensors; }

const nf_param_info *nf_unet_tensor(const nf_unet *net, int i)
{
    return (i >= 0 && i < net->n_tensors) ? &net->tensors[i] : NULL;
}

int nf_unet_find_tensor(const nf_unet *net, const char *name)
{
    for (int i = 0; i < net->n_tensors; i++)
        if (!strcmp(net->extra[i].name, name)) return i;
    return -1;
}

void nf_unet_zero_grad(nf_unet *net) { nf_par_zero(net->grads, net->n_params); }

/* PyTorch defaults: Conv1d/Linear reset_parameters use kaiming_uniform_(a = sqrt(5)),
 * i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias;
 * GroupNorm weight 1, bias 0; Embedding N(0, 1). One RNG stream per tensor name. */
void nf_unet_init_params(nf_unet *net, uint64_t seed)
{
    for (int i = 0; i < net->n_tensors; i++) {
        const nf_param_info *t = &net->tensors[i];
        const tensor_extra *e = &net->extra[i];
        float *p = net->params + t->offset;
        uint64_t stream = nf_stream_id(e->name, 0, 0);
        switch (e->init) {
        case INIT_ONE:
            for (size_t k = 0; k < t->size; k++) p[k] = 1.0f;
            break;
        case INIT_ZERO:
            memset(p, 0, t->size * sizeof *p);
            break;
        case INIT_EMB:
            nf_randn(p, t->size, seed, stream, 0);
            break;
        default: {
            float bound = 1.0f / sqrtf((float)e->fan_in);
            nf_randu(p, t->size, seed, stream, 0);
            for (size_t k = 0; k < t->size; k++) p[k] = (2.0f * p[k] - 1.0f) * bound;
        }
        }
    }
}

/* ------------------------------------------------------------ forward / backward */

#define PRM(net, o, k) ((net)->params + (net)->tensors[(o)->p0 + (k)].offset)
#define GRD(net, o, k) ((net)->grads + (net)->tensors[(o)->p0 + (k)].offset)

static float *dbuf(nf_unet *net, const float *p) { return net->dact + (p - net->act); }

static nf_conv_dims conv3(int cin, int cout) { nf_conv_dims d = {cin, cout, 3, 1, 1, 1}; return d; }
static nf_conv_dims conv1(int cin, int cout) { nf_conv_dims d = {cin, cout, 1, 1, 1, 0}; return d; }

/* The ResBlock is shared with the classifier (nn_resblock.c); these adapt an op to it. */
static void res_args(nf_unet *net, const op_t *o, const float *p[12], float *g[12],
                     nf_resblock_dims *d)
{
    int np = o->has_skip ? 12 : 10;
    for (int k = 0; k < 12; k++) {
        p[k] = k < np ? PRM(net, o, k) : NULL;
        g[k] = k < np ? GRD(net, o, k) : NULL;
    }
    d->cin = o->cin;
    d->cout = o->cout;
    d->groups = net->cfg.groups;
    d->emb_dim = 4 * net->cfg.base;
}

static nf_resblock_acts res_acts(const op_t *o)
{
    nf_resblock_acts a = {o->a1, o->h1, o->embp, o->a2, o->m1, o->r1, o->m2, o->r2};
    return a;
}

static void res_forward(nf_unet *net, op_t *o, int train)
{
    const float *p[12];
    float *g[12];
    nf_resblock_dims d;
    res_args(net, o, p, g, &d);
    nf_resblock_acts a = res_acts(o);
    nf_resblock_forward(o->out, &a, o->in, net->semb, p, d, o->si, net->wt,
                        train ? net->cfg.dropout : 0.0f, net->dropout_seed, o->layer);
}

static void res_backward(nf_unet *net, op_t *o)
{
    const float *p[12];
    float *g[12];
    nf_resblock_dims d;
    res_args(net, o, p, g, &d);
    nf_resblock_acts a = res_acts(o);
    nf_resblock_acts da = {dbuf(net, o->a1), dbuf(net, o->h1), dbuf(net, o->embp),
                           dbuf(net, o->a2), NULL, NULL, NULL, NULL};
    nf_resblock_backward(dbuf(net, o->in), dbuf(net, net->semb), g, dbuf(net, o->out), &da, &a,
                         o->in, net->semb, p, d, o->si, net->wt, net->partial, net->cfg.dropout,
                         net->dropout_seed, o->layer);
}

static void attn_forward(nf_unet *net, op_t *o)
{
    const nf_unet_config *c = &net->cfg;
    nf_seq s = o->si;
    int C = o->cin;
    nf_groupnorm_forward(o->norm, o->m1, o->r1, o->in, PRM(net, o, 0), PRM(net, o, 1), C,
                         c->groups, GN_EPS, 0, s);
    nf_conv1d_forward(o->qkv, s, NULL, net->wt, o->norm, s, PRM(net, o, 2), PRM(net, o, 3), NULL,
                      conv1(C, 3 * C));
    nf_attention_forward(o->att, o->lse, o->qkv, net->att_scr, C, c->heads, s);
    nf_conv1d_forward(o->out, s, NULL, net->wt, o->att, s, PRM(net, o, 4), PRM(net, o, 5), o->in,
                      conv1(C, C));
}

static void attn_backward(nf_unet *net, op_t *o)
{
    const nf_unet_config *c = &net->cfg;
    nf_seq s = o->si;
    int C = o->cin;
    float *dout = dbuf(net, o->out), *dx = dbuf(net, o->in);
    nf_seq_add(dx, dout, C, s);
    nf_conv1d_backward(dbuf(net, o->att), GRD(net, o, 4), GRD(net, o, 5), dout, s, NULL, NULL,
                       net->wt, o->att, s, PRM(net, o, 4), conv1(C, C));
    nf_attention_backward(dbuf(net, o->qkv), dbuf(net, o->att), o->qkv, o->lse, net->att_scr, C,
                          c->heads, s);
    nf_conv1d_backward(dbuf(net, o->norm), GRD(net, o, 2), GRD(net, o, 3), dbuf(net, o->qkv), s,
                       NULL, NULL, net->wt, o->norm, s, PRM(net, o, 2), conv1(C, 3 * C));
    nf_groupnorm_backward(dx, GRD(net, o, 0), GRD(net, o, 1), dbuf(net, o->norm), o->in, o->m1,
                          o->r1, PRM(net, o, 0), PRM(net, o, 1), net->partial, C, c->groups, 0, s);
}

/* The input length from which an inference UP op runs as two polyphase GEMMs: measured at
 * batch 1, ref-wave's forward (lengths 2048-8192) is 5-9% faster, ref-stft's (33 and 65)
 * not faster (two narrow GEMMs cost more than the third of the multiplies they save). A
 * length per example, never the batch's width: an example must give the same bits alone
 * and in any batch. */
#define UPCONV_MIN_L 512

static void op_forward(nf_unet *net, op_t *o, int train)
{
    const nf_unet_config *c = &net->cfg;
    switch (o->kind) {
    case OP_IN:
        nf_conv1d_forward(o->out, o->so, NULL, net->wt, o->in, o->si, PRM(net, o, 0),
                          PRM(net, o, 1), NULL, conv3(o->cin, o->cout));
        break;
    case OP_RES:
        res_forward(net, o, train);
        break;
    case OP_ATTN:
        attn_forward(net, o);
        break;
    case OP_DOWN: {
        nf_conv_dims d = {o->cin, o->cout, 3, 2, 1, 1};
        nf_conv1d_forward(o->out, o->so, o->col, net->wt, o->in, o->si, PRM(net, o, 0),
                          PRM(net, o, 1), NULL, d);
        break;
    }
    case OP_UP:
        /* Inference: the conv of the upsampled signal without the resized copy (training
         * keeps it for the backward pass): by Winograd (nn_wino.c, the even and odd
         * outputs' filters over the input's tiles; half the multiplies of the direct
         * conv), else by polyphase weights (two thirds). */
        if (!train && nf_wino_upconv3_applies(o->cin, o->cout, o->si, o->so) &&
            nf_wino_upconv3(o->out, o->so, o->in, o->si, PRM(net, o, 0), PRM(net, o, 1), o->cin, o->cout) == 0) {
            nf_seq_zero_gaps(o->out, o->cout, o->so);
            break;
        }
        if (!train && o->si.L >= UPCONV_MIN_L && nf_upconv3_applies(o->si.L, o->so.L)) {
            if (!net->upw_ready) upconv_weights(net, o);
            const float *we = net->upw + o->upw;
            nf_upconv3_forward(o->out, o->so, o->col, o->in, o->si, we, we + (size_t)2 * o->cin * o->cout,
                               PRM(net, o, 0), PRM(net, o, 1), o->cin, o->cout);
            break;
        }
        nf_upsample_forward(o->col, o->so, o->in, o->si, o->cin);
        nf_conv1d_forward(o->out, o->so, NULL, net->wt, o->col, o->so, PRM(net, o, 0),
                          PRM(net, o, 1), NULL, conv3(o->cin, o->cout));
        break;
    case OP_OUT:
        nf_groupnorm_forward(o->col, o->m1, o->r1, o->in, PRM(net, o, 0), PRM(net, o, 1), o->cin,
                             c->groups, GN_EPS, 1, o->si);
        nf_conv1d_forward(o->out, o->so, NULL, net->wt, o->col, o->si, PRM(net, o, 2),
                          PRM(net, o, 3), NULL, conv3(o->cin, o->cout));
        break;
    }
}

static void op_backward(nf_unet *net, op_t *o)
{
    const nf_unet_config *c = &net->cfg;
    float *dout = dbuf(net, o->out);
    switch (o->kind) {
    case OP_IN:
        nf_conv1d_backward(dbuf(net, o->in), GRD(net, o, 0), GRD(net, o, 1), dout, o->so, NULL,
                           NULL, net->wt, o->in, o->si, PRM(net, o, 0), conv3(o->cin, o->cout));
        break;
    case OP_RES:
        res_backward(net, o);
        break;
    case OP_ATTN:
        attn_backward(net, o);
        break;
    case OP_DOWN: {
        nf_conv_dims d = {o->cin, o->cout, 3, 2, 1, 1};
        nf_conv1d_backward(dbuf(net, o->in), GRD(net, o, 0), GRD(net, o, 1), dout, o->so, o->col,
                           dbuf(net, o->col), net->wt, o->in, o->si, PRM(net, o, 0), d);
        break;
    }
    case OP_UP:
        nf_conv1d_backward(dbuf(net, o->col), GRD(net, o, 0), GRD(net, o, 1), dout, o->so, NULL,
                           NULL, net->wt, o->col, o->so, PRM(net, o, 0), conv3(o->cin, o->cout));
        nf_upsample_backward(dbuf(net, o->in), o->si, dbuf(net, o->col), o->so, o->cin);
        break;
    case OP_OUT:
        nf_conv1d_backward(dbuf(net, o->col), GRD(net, o, 2), GRD(net, o, 3), dout, o->so, NULL,
                           NULL, net->wt, o->col, o->si, PRM(net, o, 2), conv3(o->cin, o->cout));
        nf_groupnorm_backward(dbuf(net, o->in), GRD(net, o, 0), GRD(net, o, 1), dbuf(net, o->col),
                              o->in, o->m1, o->r1, PRM(net, o, 0), PRM(net, o, 1), net->partial,
                              o->cin, c->groups, 1, o->si);
        break;
    }
}

nf_status nf_unet_forward(nf_unet *net, const float *x, const float *t, const int *y, int B, int L,
                          float *out, int train, uint64_t dropout_seed)
{
    const nf_unet_config *c = &net->cfg;
    if (B < 1 || B > net->max_batch || L < 1 || L > net->max_length)
        return nf_fail(NF_ERR_ARG, "unet forward: batch %d x length %d outside the 1..%d x 1..%d "
                                   "the network was created for", B, L, net->max_batch,
                       net->max_length);
    if (!x || !t || !out) return nf_fail(NF_ERR_ARG, "unet forward: NULL x, t or out");
    net->act_used = plan(net, net->act, B, L);
    net->B = B;
    net->L = L;
    net->trained = 0;
    net->dropout_seed = dropout_seed;
    for (int b = 0; b < B; b++) net->y[b] = y ? y[b] : -1;
    int E = 4 * c->base;
    /* emb = lin2(SiLU(lin1(sinusoidal(t)))) + class_emb[y]; ResBlocks see SiLU(emb). */
    nf_timestep_embedding(net->tsin, t, B, c->base);
    nf_linear_forward(net->th, net->tsin, net->params + net->tensors[0].offset,
                      net->params + net->tensors[1].offset, B, c->base, E);
    nf_silu_forward(net->ths, net->th, (size_t)B * E);
    nf_linear_forward(net->emb, net->ths, net->params + net->tensors[2].offset,
                      net->params + net->tensors[3].offset, B, E, E);
    if (c->num_classes > 0)
        nf_class_embed_forward(net->emb, net->y, net->params + net->tensors[4].offset, B,
                               c->num_classes, E);
    nf_silu_forward(net->semb, net->emb, (size_t)B * E);
    nf_seq_pack(net->x0, x, c->in_ch, net->seq[0]);
    for (int k = 0; k < net->n_ops; k++) op_forward(net, &net->ops[k], train);
    nf_seq_unpack(out, net->final, c->out_ch, net->seq[0]);
    net->trained = train != 0;
    net->norm_valid = 0;
    return NF_OK;
}

nf_status nf_unet_backward(nf_unet *net, const float *dout, float *dx)
{
    const nf_unet_config *c = &net->cfg;
    if (!net->trained)
        return nf_fail(NF_ERR_ARG, "unet backward: no training forward to go back through");
    if (!dout) return nf_fail(NF_ERR_ARG, "unet backward: NULL dout");
    int B = net->B, E = 4 * c->base;
    net->norm_valid = 0;
    /* The conv and linear weights' gradients are written by their layers (nf_nn.h); the
     * rest (biases, GroupNorm, the class table: a few thousand floats) accumulate. */
    for (int i = 0; i < net->n_tensors; i++)
        if (net->extra[i].init != INIT_W)
            memset(net->grads + net->tensors[i].offset, 0, net->tensors[i].size * sizeof(float));
    memset(net->dact, 0, net->act_used * sizeof(float));
    nf_seq_pack(dbuf(net, net->final), dout, c->out_ch, net->seq[0]);
    /* Ops own consecutive tensors in op order (the embedding MLP's come first), so once op
     * k is done every gradient from its first tensor on is final: the norm's blocks that
     * start there are summed now, while they are in cache, instead of in a pass over all
     * the gradients after the backward (the same blocks and sums as nf_l2_norm). */
    int nb_left = net->norm_nb;
    for (int k = net->n_ops - 1; k >= 0; k--) {
        op_t *o = &net->ops[k];
        op_backward(net, o);
        size_t lo = o->p0 < net->n_tensors ? net->tensors[o->p0].offset : net->n_params;
        int b_lo = (int)((lo + net->norm_block - 1) / net->norm_block);
        if (b_lo < nb_left) {
            nf_norm_partials(net->grads, net->n_params, net->norm_block, b_lo, nb_left, net->norm_part);
            nb_left = b_lo;
        }
    }
    if (dx) nf_seq_unpack(dx, dbuf(net, net->x0), c->in_ch, net->seq[0]);
    /* Embedding MLP. */
    float *demb = dbuf(net, net->emb), *dths = dbuf(net, net->ths), *dth = dbuf(net, net->th);
    nf_silu_backward(demb, dbuf(net, net->semb), net->emb, (size_t)B * E);
    if (c->num_classes > 0)
        nf_class_embed_backward(net->grads + net->tensors[4].offset, demb, net->y, B,
                                c->num_classes, E);
    nf_linear_backward(dths, net->grads + net->tensors[2].offset,
                       net->grads + net->tensors[3].offset, demb, net->ths,
                       net->params + net->tensors[2].offset, B, E, E);
    nf_silu_backward(dth, dths, net->th, (size_t)B * E);
    nf_linear_backward(NULL, net->grads + net->tensors[0].offset,
                       net->grads + net->tensors[1].offset, dth, net->tsin,
                       net->params + net->tensors[0].offset, B, c->base, E);
    nf_norm_partials(net->grads, net->n_params, net->norm_block, 0, nb_left, net->norm_part);
    net->norm_valid = 1;
    return NF_OK;
}

double nf_unet_grad_norm(const nf_unet *net)
{
    return net->norm_valid ? nf_norm_total(net->norm_part, net->norm_nb) : NAN;
}

/* ------------------------------------------------------------ cost */

double nf_unet_flops(const nf_unet_config *cfg, int L)
{
    if (nf_unet_config_check(cfg) || L < 1) return 0.0;
    op_t *ops = calloc((size_t)max_ops(cfg), sizeof *ops);
    if (!ops) return 0.0;
    int n = build(cfg, NULL, ops);
    int Ls[NF_UNET_MAX_LEVELS];
    level_lengths(cfg, L, Ls);
    double C0 = cfg->base, E = 4 * C0;
    double f = 2.0 * C0 * E + 2.0 * E * E; /* time MLP */
    for (int k = 0; k < n; k++) {
        const op_t *o = &ops[k];
        double ci = o->cin, co = o->cout, li = Ls[o->level], lo = Ls[o->out_level];
        switch (o->kind) {
        case OP_IN:
        case OP_OUT:
        case OP_DOWN:
        case OP_UP:
            f += 2.0 * co * ci * 3.0 * lo;
            break;
        case OP_RES:
            f += 2.0 * co * ci * 3.0 * li + 2.0 * E * co + 2.0 * co * co * 3.0 * li;
            if (o->has_skip) f += 2.0 * co * ci * li;
            break;
        case OP_ATTN:
            f += 2.0 * 3.0 * ci * ci * li + 4.0 * li * li * ci + 2.0 * ci * ci * li;
            break;
        }
    }
    free(ops);
    return f;
}
