/* The noise-aware classifier (architecture and file format in nf_classifier.h).
 *
 * Built like the U-Net (unet.c): a chain of ops planned onto one activation slab by a
 * bump allocator for each (B, L); the gradient slab mirrors it offset for offset, so
 * d(buffer) = dact + (buffer - act). The ResBlocks are the U-Net's (nn_resblock.c). */
#include "nf_classifier.h"
#include "nf_json.h"
#include "nf_nn.h"
#include "nf_optim.h"
#include "nf_rng.h"
#include "nf_safetensors.h"
#include "nn_resblock.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GN_EPS 1e-5f
#define MAX_BLOCKS 8
#define MAX_OPS (NF_CLASSIFIER_MAX_LEVELS * (MAX_BLOCKS + 1))
#define MAX_TENSORS (8 + MAX_OPS * 12 + 4)

enum { OP_RES, OP_DOWN };
enum { INIT_W, INIT_ONE, INIT_ZERO };

typedef struct {
    int kind, level, cin, cout, p0, layer;
    nf_seq si, so;
    const float *in;
    float *out, *col;
    nf_resblock_acts a;
} op_t;

struct nf_classifier {
    nf_classifier_config cfg;
    int max_batch, max_length;
    int n_ops;
    op_t ops[MAX_OPS];
    int n_tensors;
    nf_param_info tensors[MAX_TENSORS];
    char names[MAX_TENSORS][64];
    int init[MAX_TENSORS], fan_in[MAX_TENSORS];
    int p_time, p_in, p_out; /* first tensor of the time MLP, in_conv, out_norm + head */
    size_t n_params;
    float *params, *grads, *act, *dact, *wt, *partial;
    float *lg; /* [2][max_batch][num_classes] logits scratch for guidance */
    size_t act_size, act_used;
    /* Last forward. */
    int B, L, ready;
    nf_seq seq[NF_CLASSIFIER_MAX_LEVELS];
    float *x0, *tsin, *th, *ths, *emb, *semb, *h0, *f, *fm, *fr, *pooled, *logits;
};

static int level_ch(const nf_classifier_config *c, int i) { return c->base * c->mults[i]; }

void nf_classifier_config_default(nf_classifier_config *c)
{
    memset(c, 0, sizeof *c);
    c->base = 32;
    c->n_levels = 4;
    c->mults[0] = 1;
    c->mults[1] = c->mults[2] = c->mults[3] = 2;
    c->blocks = 1;
    c->groups = 8;
}

nf_status nf_classifier_config_check(const nf_classifier_config *c)
{
    if (!c) return nf_fail(NF_ERR_ARG, "classifier: no config");
    if (c->in_ch < 1) return nf_fail(NF_ERR_ARG, "classifier config: in_ch %d < 1", c->in_ch);
    if (c->base < 2 || c->base % 2)
        return nf_fail(NF_ERR_ARG, "classifier config: base %d must be even and >= 2", c->base);
    if (c->n_levels < 1 || c->n_levels > NF_CLASSIFIER_MAX_LEVELS)
        return nf_fail(NF_ERR_ARG, "classifier config: n_levels %d not in 1..%d", c->n_levels,
                       NF_CLASSIFIER_MAX_LEVELS);
    if (c->blocks < 1 || c->blocks > MAX_BLOCKS)
        return nf_fail(NF_ERR_ARG, "classifier config: blocks %d not in 1..%d", c->blocks, MAX_BLOCKS);
    if (c->groups < 1) return nf_fail(NF_ERR_ARG, "classifier config: groups %d < 1", c->groups);
    for (int i = 0; i < c->n_levels; i++) {
        if (c->mults[i] < 1 || c->mults[i] > 64)
            return nf_fail(NF_ERR_ARG, "classifier config: mults[%d] = %d not in 1..64", i, c->mults[i]);
        if (level_ch(c, i) % c->groups)
            return nf_fail(NF_ERR_ARG, "classifier config: groups %d does not divide level %d width %d",
                           c->groups, i, level_ch(c, i));
    }
    if (c->num_classes < 2 || c->num_classes > NF_CKPT_MAX_CLASSES)
        return nf_fail(NF_ERR_ARG, "classifier config: num_classes %d not in 2..%d", c->num_classes,
                       NF_CKPT_MAX_CLASSES);
    return NF_OK;
}

/* ------------------------------------------------------------ structure */

static void add_tensor(nf_classifier *net, int init, int fan_in, int ndim, int s0, int s1, int s2,
                       const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void add_tensor(nf_classifier *net, int init, int fan_in, int ndim, int s0, int s1, int s2,
                       const char *fmt, ...)
{
    int i = net->n_tensors++;
    nf_param_info *t = &net->tensors[i];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(net->names[i], sizeof net->names[i], fmt, ap);
    va_end(ap);
    net->init[i] = init;
    net->fan_in[i] = fan_in;
    t->name = net->names[i];
    t->ndim = ndim;
    t->shape[0] = s0;
    t->shape[1] = ndim > 1 ? s1 : 0;
    t->shape[2] = ndim > 2 ? s2 : 0;
    t->size = (size_t)s0 * (ndim > 1 ? (size_t)s1 : 1) * (ndim > 2 ? (size_t)s2 : 1);
    t->offset = net->n_params;
    net->n_params += t->size;
}

static void add_conv(nf_classifier *net, int co, int ci, int k, const char *prefix)
{
    add_tensor(net, INIT_W, ci * k, 3, co, ci, k, "%s.weight", prefix);
    add_tensor(net, INIT_W, ci * k, 1, co, 0, 0, "%s.bias", prefix);
}
static void add_linear(nf_classifier *net, int o, int i, const char *prefix)
{
    add_tensor(net, INIT_W, i, 2, o, i, 0, "%s.weight", prefix);
    add_tensor(net, INIT_W, i, 1, o, 0, 0, "%s.bias", prefix);
}
static void add_norm(nf_classifier *net, int c, const char *prefix)
{
    add_tensor(net, INIT_ONE, 0, 1, c, 0, 0, "%s.weight", prefix);
    add_tensor(net, INIT_ZERO, 0, 1, c, 0, 0, "%s.bias", prefix);
}

static void build(nf_classifier *net)
{
    const nf_classifier_config *c = &net->cfg;
    int C0 = c->base, E = 4 * C0, ch = C0, layer = 0;
    char p[64];
    net->p_time = net->n_tensors;
    add_linear(net, E, C0, "time.lin1");
    add_linear(net, E, E, "time.lin2");
    net->p_in = net->n_tensors;
    add_conv(net, C0, c->in_ch, 3, "in_conv");
    for (int i = 0; i < c->n_levels; i++) {
        int Ci = level_ch(c, i);
        for (int j = 0; j < c->blocks; j++) {
            op_t *o = &net->ops[net->n_ops++];
            memset(o, 0, sizeof *o);
            *o = (op_t){.kind = OP_RES, .level = i, .cin = ch, .cout = Ci, .p0 = net->n_tensors, .layer = layer++};
            snprintf(p, sizeof p, "down.%d.res.%d.norm1", i, j), add_norm(net, ch, p);
            snprintf(p, sizeof p, "down.%d.res.%d.conv1", i, j), add_conv(net, Ci, ch, 3, p);
            snprintf(p, sizeof p, "down.%d.res.%d.emb", i, j), add_linear(net, Ci, E, p);
            snprintf(p, sizeof p, "down.%d.res.%d.norm2", i, j), add_norm(net, Ci, p);
            snprintf(p, sizeof p, "down.%d.res.%d.conv2", i, j), add_conv(net, Ci, Ci, 3, p);
            if (ch != Ci) snprintf(p, sizeof p, "down.%d.res.%d.skip", i, j), add_conv(net, Ci, ch, 1, p);
            ch = Ci;
        }
        if (i < c->n_levels - 1) {
            op_t *o = &net->ops[net->n_ops++];
            *o = (op_t){.kind = OP_DOWN, .level = i, .cin = Ci, .cout = Ci, .p0 = net->n_tensors};
            snprintf(p, sizeof p, "down.%d.downsample", i), add_conv(net, Ci, Ci, 3, p);
        }
    }
    net->p_out = net->n_tensors;
    add_norm(net, ch, "out_norm");
    add_linear(net, c->num_classes, ch, "head");
}

typedef struct {
    float *base;
    size_t used;
} bump_t;

static float *balloc(bump_t *b, size_t n)
{
    size_t off = b->used;
    b->used += (n + 15) & ~(size_t)15;
    return b->base ? b->base + off : NULL;
}

static size_t plan(nf_classifier *net, float *act, int B, int L)
{
    const nf_classifier_config *c = &net->cfg;
    bump_t bp = {act, 0};
    int E = 4 * c->base, G = c->groups, Ll = L;
    for (int i = 0; i < c->n_levels; i++) {
        net->seq[i] = nf_seq_make(B, Ll);
        Ll = (Ll + 1) / 2;
    }
    size_t ld0 = nf_seq_ld(net->seq[0]);
    net->x0 = balloc(&bp, (size_t)c->in_ch * ld0);
    net->tsin = balloc(&bp, (size_t)B * c->base);
    net->th = balloc(&bp, (size_t)B * E);
    net->ths = balloc(&bp, (size_t)B * E);
    net->emb = balloc(&bp, (size_t)B * E);
    net->semb = balloc(&bp, (size_t)B * E);
    net->h0 = balloc(&bp, (size_t)c->base * ld0);
    const float *prev = net->h0;
    for (int k = 0; k < net->n_ops; k++) {
        op_t *o = &net->ops[k];
        o->si = net->seq[o->level];
        o->so = net->seq[o->kind == OP_DOWN ? o->level + 1 : o->level];
        size_t ld = nf_seq_ld(o->si), ldo = nf_seq_ld(o->so);
        o->in = prev;
        if (o->kind == OP_RES) {
            o->a.a1 = balloc(&bp, (size_t)o->cin * ld);
            o->a.m1 = balloc(&bp, (size_t)B * G);
            o->a.r1 = balloc(&bp, (size_t)B * G);
            o->a.h1 = balloc(&bp, (size_t)o->cout * ld);
            o->a.embp = balloc(&bp, (size_t)B * o->cout);
            o->a.m2 = balloc(&bp, (size_t)B * G);
            o->a.r2 = balloc(&bp, (size_t)B * G);
            o->a.a2 = balloc(&bp, (size_t)o->cout * ld);
        } else {
            o->col = balloc(&bp, (size_t)3 * o->cin * ldo);
        }
        o->out = balloc(&bp, (size_t)o->cout * ldo);
        prev = o->out;
    }
    int Cl = level_ch(c, c->n_levels - 1);
    net->f = balloc(&bp, (size_t)Cl * nf_seq_ld(net->seq[c->n_levels - 1]));
    net->fm = balloc(&bp, (size_t)B * G);
    net->fr = balloc(&bp, (size_t)B * G);
    net->pooled = balloc(&bp, (size_t)B * Cl);
    net->logits = balloc(&bp, (size_t)B * c->num_classes);
    return bp.used;
}

nf_status nf_classifier_create(const nf_classifier_config *cfg, int max_batch, int max_length,
                               nf_classifier **out)
{
    *out = NULL;
    nf_status st = nf_classifier_config_check(cfg);
    if (st) return st;
    if (max_batch < 1 || max_length < 1)
        return nf_fail(NF_ERR_ARG, "classifier: max_batch %d and max_length %d must be >= 1",
                       max_batch, max_length);
    nf_classifier *net = calloc(1, sizeof *net);
    if (!net) return nf_fail(NF_ERR_NOMEM, "classifier: out of memory");
    net->cfg = *cfg;
    net->max_batch = max_batch;
    net->max_length = max_length;
    build(net);
    net->params = calloc(net->n_params, sizeof(float));
    net->grads = calloc(net->n_params, sizeof(float));
    net->act_size = plan(net, NULL, max_batch, max_length);
    net->act = calloc(net->act_size, sizeof(float));
    net->dact = calloc(net->act_size, sizeof(float));
    size_t wt = (size_t)3 * cfg->base * cfg->in_ch, cmax = (size_t)cfg->base;
    for (int k = 0; k < net->n_ops; k++) {
        const op_t *o = &net->ops[k];
        size_t m = (size_t)(o->cin > o->cout ? o->cin : o->cout);
        if (3 * m * o->cout > wt) wt = 3 * m * o->cout;
        if (m > cmax) cmax = m;
    }
    net->wt = malloc(wt * sizeof(float));
    net->partial = malloc(2 * cmax * (size_t)max_batch * sizeof(float));
    net->lg = malloc(2 * (size_t)max_batch * cfg->num_classes * sizeof(float));
    if (!net->lg || !net->params || !net->grads || !net->act || !net->dact || !net->wt || !net->partial) {
        nf_classifier_free(net);
        return nf_fail(NF_ERR_NOMEM, "classifier: out of memory (max_batch %d, max_length %d)",
                       max_batch, max_length);
    }
    *out = net;
    return NF_OK;
}

void nf_classifier_free(nf_classifier *net)
{
    if (!net) return;
    free(net->params);
    free(net->grads);
    free(net->act);
    free(net->dact);
    free(net->wt);
    free(net->partial);
    free(net->lg);
    free(net);
}

const nf_classifier_config *nf_classifier_get_config(const nf_classifier *c) { return &c->cfg; }
size_t nf_classifier_num_params(const nf_classifier *c) { return c->n_params; }
float *nf_classifier_params(nf_classifier *c) { return c->params; }
float *nf_classifier_grads(nf_classifier *c) { return c->grads; }
int nf_classifier_num_tensors(const nf_classifier *c) { return c->n_tensors; }
const nf_param_info *nf_classifier_tensor(const nf_classifier *c, int i)
{
    return i >= 0 && i < c->n_tensors ? &c->tensors[i] : NULL;
}
int nf_classifier_find_tensor(const nf_classifier *c, const char *name)
{
    for (int i = 0; i < c->n_tensors; i++)
        if (!strcmp(c->names[i], name)) return i;
    return -1;
}
void nf_classifier_zero_grad(nf_classifier *c) { nf_par_zero(c->grads, c->n_params); }

/* PyTorch defaults (kaiming_uniform(a = sqrt 5): U(+-1/sqrt(fan_in)) for weights and
 * biases; GroupNorm 1, 0), one counter-RNG stream per tensor name (as the U-Net). */
void nf_classifier_init_params(nf_classifier *net, uint64_t seed)
{
    for (int i = 0; i < net->n_tensors; i++) {
        const nf_param_info *t = &net->tensors[i];
        float *p = net->params + t->offset;
        if (net->init[i] == INIT_ONE) {
            for (size_t k = 0; k < t->size; k++) p[k] = 1.0f;
        } else if (net->init[i] == INIT_ZERO) {
            memset(p, 0, t->size * sizeof *p);
        } else {
            float bound = 1.0f / sqrtf((float)net->fan_in[i]);
            nf_randu(p, t->size, seed, nf_stream_id(net->names[i], 0, 0), 0);
            for (size_t k = 0; k < t->size; k++) p[k] = (2.0f * p[k] - 1.0f) * bound;
        }
    }
}

/* ------------------------------------------------------------ forward / backward */

#define PRM(net, k) ((net)->params + (net)->tensors[k].offset)
#define GRD(net, k) ((net)->grads + (net)->tensors[k].offset)

static float *dbuf(nf_classifier *net, const float *p) { return net->dact + (p - net->act); }
static nf_conv_dims conv3(int cin, int cout) { nf_conv_dims d = {cin, cout, 3, 1, 1, 1}; return d; }
static nf_conv_dims down3(int c) { nf_conv_dims d = {c, c, 3, 2, 1, 1}; return d; }

static void res_args(nf_classifier *net, const op_t *o, const float *p[12], float *g[12],
                     nf_resblock_dims *d)
{
    int np = o->cin != o->cout ? 12 : 10;
    for (int k = 0; k < 12; k++) {
        p[k] = k < np ? PRM(net, o->p0 + k) : NULL;
        g[k] = k < np ? GRD(net, o->p0 + k) : NULL;
    }
    *d = (nf_resblock_dims){o->cin, o->cout, net->cfg.groups, 4 * net->cfg.base};
}

nf_status nf_classifier_forward(nf_classifier *net, const float *x, const float *t, int B, int L,
                                float *logits)
{
    const nf_classifier_config *c = &net->cfg;
    if (B < 1 || B > net->max_batch || L < 1 || L > net->max_length)
        return nf_fail(NF_ERR_ARG, "classifier forward: batch %d x length %d outside the 1..%d x "
                                   "1..%d it was created for", B, L, net->max_batch, net->max_length);
    if (!x || !t || !logits) return nf_fail(NF_ERR_ARG, "classifier forward: NULL x, t or logits");
    net->act_used = plan(net, net->act, B, L);
    net->B = B;
    net->L = L;
    int E = 4 * c->base, Lv = c->n_levels - 1, Cl = level_ch(c, Lv), K = c->num_classes;
    /* semb = SiLU(lin2(SiLU(lin1(sinusoidal(t))))), as the U-Net's (no class term). */
    nf_timestep_embedding(net->tsin, t, B, c->base);
    nf_linear_forward(net->th, net->tsin, PRM(net, net->p_time), PRM(net, net->p_time + 1), B, c->base, E);
    nf_silu_forward(net->ths, net->th, (size_t)B * E);
    nf_linear_forward(net->emb, net->ths, PRM(net, net->p_time + 2), PRM(net, net->p_time + 3), B, E, E);
    nf_silu_forward(net->semb, net->emb, (size_t)B * E);
    nf_seq_pack(net->x0, x, c->in_ch, net->seq[0]);
    nf_conv1d_forward(net->h0, net->seq[0], NULL, net->wt, net->x0, net->seq[0], PRM(net, net->p_in),
                      PRM(net, net->p_in + 1), NULL, conv3(c->in_ch, c->base));
    for (int k = 0; k < net->n_ops; k++) {
        op_t *o = &net->ops[k];
        if (o->kind == OP_RES) {
            const float *p[12];
            float *g[12];
            nf_resblock_dims d;
            res_args(net, o, p, g, &d);
            nf_resblock_forward(o->out, &o->a, o->in, net->semb, p, d, o->si, net->wt, 0.0f, 0, 0);
        } else {
            nf_conv1d_forward(o->out, o->so, o->col, net->wt, o->in, o->si, PRM(net, o->p0),
                              PRM(net, o->p0 + 1), NULL, down3(o->cin));
        }
    }
    const float *last = net->n_ops ? net->ops[net->n_ops - 1].out : net->h0;
    nf_seq s = net->seq[Lv];
    size_t ld = nf_seq_ld(s);
    nf_groupnorm_forward(net->f, net->fm, net->fr, last, PRM(net, net->p_out), PRM(net, net->p_out + 1),
                         Cl, c->groups, GN_EPS, 1, s);
    /* Global average pool over time (fixed summation order per example). */
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < Cl; ch++) {
            const float *row = net->f + (size_t)ch * ld + (size_t)b * s.S + s.off;
            float acc = 0.0f;
            for (int l = 0; l < s.L; l++) acc += row[l];
            net->pooled[(size_t)b * Cl + ch] = acc / (float)s.L;
        }
    nf_linear_forward(net->logits, net->pooled, PRM(net, net->p_out + 2), PRM(net, net->p_out + 3), B, Cl, K);
    memcpy(logits, net->logits, sizeof(float) * B * K);
    net->ready = 1;
    return NF_OK;
}

nf_status nf_classifier_backward(nf_classifier *net, const float *dlogits, float *dx)
{
    const nf_classifier_config *c = &net->cfg;
    if (!net->ready) return nf_fail(NF_ERR_ARG, "classifier backward: no forward to go back through");
    if (!dlogits) return nf_fail(NF_ERR_ARG, "classifier backward: NULL dlogits");
    int B = net->B, E = 4 * c->base, Lv = c->n_levels - 1, Cl = level_ch(c, Lv), K = c->num_classes;
    memset(net->dact, 0, net->act_used * sizeof(float));
    float *dpool = dbuf(net, net->pooled), *df = dbuf(net, net->f);
    nf_linear_backward(dpool, GRD(net, net->p_out + 2), GRD(net, net->p_out + 3), dlogits, net->pooled,
                       PRM(net, net->p_out + 2), B, Cl, K);
    nf_seq s = net->seq[Lv];
    size_t ld = nf_seq_ld(s);
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < Cl; ch++) {
            float v = dpool[(size_t)b * Cl + ch] / (float)s.L;
            float *row = df + (size_t)ch * ld + (size_t)b * s.S + s.off;
            for (int l = 0; l < s.L; l++) row[l] = v;
        }
    const float *last = net->n_ops ? net->ops[net->n_ops - 1].out : net->h0;
    nf_groupnorm_backward(dbuf(net, last), GRD(net, net->p_out), GRD(net, net->p_out + 1), df, last,
                          net->fm, net->fr, PRM(net, net->p_out), PRM(net, net->p_out + 1), net->partial,
                          Cl, c->groups, 1, s);
    for (int k = net->n_ops - 1; k >= 0; k--) {
        op_t *o = &net->ops[k];
        if (o->kind == OP_RES) {
            const float *p[12];
            float *g[12];
            nf_resblock_dims d;
            res_args(net, o, p, g, &d);
            nf_resblock_acts da = {dbuf(net, o->a.a1), dbuf(net, o->a.h1), dbuf(net, o->a.embp),
                                   dbuf(net, o->a.a2), NULL, NULL, NULL, NULL};
            nf_resblock_backward(dbuf(net, o->in), dbuf(net, net->semb), g, dbuf(net, o->out), &da, &o->a,
                                 o->in, net->semb, p, d, o->si, net->wt, net->partial, 0.0f, 0, 0);
        } else {
            nf_conv1d_backward(dbuf(net, o->in), GRD(net, o->p0), GRD(net, o->p0 + 1), dbuf(net, o->out),
                               o->so, o->col, dbuf(net, o->col), net->wt, o->in, o->si, PRM(net, o->p0),
                               down3(o->cin));
        }
    }
    nf_conv1d_backward(dbuf(net, net->x0), GRD(net, net->p_in), GRD(net, net->p_in + 1), dbuf(net, net->h0),
                       net->seq[0], NULL, NULL, net->wt, net->x0, net->seq[0], PRM(net, net->p_in),
                       conv3(c->in_ch, c->base));
    if (dx) nf_seq_unpack(dx, dbuf(net, net->x0), c->in_ch, net->seq[0]);
    float *demb = dbuf(net, net->emb), *dths = dbuf(net, net->ths), *dth = dbuf(net, net->th);
    nf_silu_backward(demb, dbuf(net, net->semb), net->emb, (size_t)B * E);
    nf_linear_backward(dths, GRD(net, net->p_time + 2), GRD(net, net->p_time + 3), demb, net->ths,
                       PRM(net, net->p_time + 2), B, E, E);
    nf_silu_backward(dth, dths, net->th, (size_t)B * E);
    nf_linear_backward(NULL, GRD(net, net->p_time), GRD(net, net->p_time + 1), dth, net->tsin,
                       PRM(net, net->p_time), B, c->base, E);
    return NF_OK;
}

double nf_classifier_xent(const float *logits, const int *y, int B, int K, float *dlogits, int *correct)
{
    double loss = 0;
    int ok = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        int am = 0;
        double mx = z[0], se = 0;
        for (int k = 1; k < K; k++)
            if (z[k] > z[am]) am = k, mx = z[k];
        for (int k = 0; k < K; k++) se += exp(z[k] - mx);
        double lse = mx + log(se);
        loss += (lse - z[y[b]]) / B;
        ok += am == y[b];
        if (dlogits)
            for (int k = 0; k < K; k++)
                dlogits[(size_t)b * K + k] = (float)((exp(z[k] - lse) - (k == y[b])) / B);
    }
    if (correct) *correct = ok;
    return loss;
}

nf_status nf_classifier_grad_log_prob(nf_classifier *net, const float *x, const float *t, const int *y,
                                      int B, int L, float *grad, float *log_prob)
{
    const nf_classifier_config *c = &net->cfg;
    int K = c->num_classes, mb = net->max_batch;
    size_t n = (size_t)c->in_ch * L;
    for (int b0 = 0; b0 < B; b0 += mb) {
        int nb = B - b0 < mb ? B - b0 : mb;
        for (int b = 0; b < nb; b++)
            if (y[b0 + b] < 0 || y[b0 + b] >= K)
                return nf_fail(NF_ERR_ARG, "classifier: class %d outside 0..%d", y[b0 + b], K - 1);
        float *lg = net->lg; /* [2][max_batch][K] scratch */
        nf_status st = nf_classifier_forward(net, x + b0 * n, t + b0, nb, L, lg);
        if (st) return st;
        /* d/dz log softmax(z)_y = onehot(y) - softmax(z) (ascent direction on log p). */
        float *dl = lg + (size_t)nb * K;
        for (int b = 0; b < nb; b++) {
            const float *zb = lg + (size_t)b * K;
            double mx = zb[0], se = 0;
            for (int k = 1; k < K; k++) mx = zb[k] > mx ? zb[k] : mx;
            for (int k = 0; k < K; k++) se += exp(zb[k] - mx);
            double lse = mx + log(se);
            for (int k = 0; k < K; k++) dl[(size_t)b * K + k] = (float)((k == y[b0 + b]) - exp(zb[k] - lse));
            if (log_prob) log_prob[b0 + b] = (float)(zb[y[b0 + b]] - lse);
        }
        st = nf_classifier_backward(net, dl, grad + b0 * n);
        if (st) return st;
    }
    nf_classifier_zero_grad(net);
    return NF_OK;
}

nf_status nf_classifier_guidance_fn(void *ctx, const float *x, const float *t, const int *y, int B,
                                    int C, int L, float *grad)
{
    nf_classifier *net = ctx;
    if (!net) return nf_fail(NF_ERR_ARG, "classifier guidance: no classifier");
    if (C != net->cfg.in_ch)
        return nf_fail(NF_ERR_ARG, "classifier guidance: the classifier takes %d channels, the model "
                                   "makes %d", net->cfg.in_ch, C);
    return nf_classifier_grad_log_prob(net, x, t, y, B, L, grad, NULL);
}

/* ------------------------------------------------------------ training */

void nf_classifier_train_config_default(nf_classifier_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->steps = 300;
    c->batch = 32;
    c->lr = 1e-3f;
    c->weight_decay = 0.01f;
    c->grad_clip = 1.0f;
}

nf_status nf_classifier_train(nf_classifier *net, const nf_schedule *s, const float *x0,
                              const int *labels, int N, int L, const nf_classifier_train_config *tc,
                              nf_classifier_progress_fn progress, void *user, double *final_loss)
{
    const nf_classifier_config *c = &net->cfg;
    int B = tc->batch, K = c->num_classes;
    if (N < 1 || B < 1 || B > net->max_batch || L > net->max_length || tc->steps < 1)
        return nf_fail(NF_ERR_ARG, "classifier train: %d clips, batch %d (max %d), length %d (max %d), "
                                   "%lld steps", N, B, net->max_batch, L, net->max_length, tc->steps);
    if (s->T != s->T_train) return nf_fail(NF_ERR_ARG, "classifier train: needs the training schedule");
    for (int k = 0; k < N; k++)
        if (labels[k] < 0 || labels[k] >= K)
            return nf_fail(NF_ERR_ARG, "classifier train: clip %d has class %d outside 0..%d", k, labels[k], K - 1);
    size_t n = (size_t)c->in_ch * L, bn = (size_t)B * n;
    float *xb = malloc(sizeof(float) * bn), *eps = malloc(sizeof(float) * bn), *xt = malloc(sizeof(float) * bn);
    float *tf = malloc(sizeof(float) * B), *lg = malloc(sizeof(float) * 2 * (size_t)B * K);
    int *t = malloc(sizeof(int) * B), *y = malloc(sizeof(int) * B);
    nf_adamw opt = {0};
    nf_adamw_config ac = nf_adamw_defaults();
    ac.weight_decay = tc->weight_decay;
    nf_status st = NF_OK;
    if (!xb || !eps || !xt || !tf || !lg || !t || !y) {
        st = nf_fail(NF_ERR_NOMEM, "classifier train: out of memory");
        goto done;
    }
    if ((st = nf_adamw_init(&opt, net->n_params, &ac))) goto done;
    nf_lr_schedule lrs = {NF_LR_COSINE, tc->lr, tc->lr / 10, tc->steps / 20, tc->steps};
    nf_train_draw_config dc = {0, 0.0f};
    uint64_t pick = nf_stream_id("classifier-batch", 0, 0);
    double tail = 0;
    long long tail_n = 0, tail_from = tc->steps - (tc->steps + 9) / 10;
    for (long long step = 0; step < tc->steps; step++) {
        /* Examples drawn with replacement from (seed, step): resumable and thread-independent. */
        for (int b = 0; b < B; b++) {
            uint64_t k = nf_rand_below((uint64_t)N, tc->seed, pick, (uint64_t)step * (uint64_t)B + (uint64_t)b);
            memcpy(xb + b * n, x0 + k * n, sizeof(float) * n);
            y[b] = labels[k];
        }
        /* t uniform over the training schedule, x_t ~ q(x_t | x_0) (Ho et al. eq. 4): the
         * classifier sees exactly the inputs the sampler will give it. */
        if ((st = nf_train_draw(&dc, s, NF_PRED_EPS, tc->seed, (uint64_t)step, xb, B, c->in_ch, L, t, eps,
                                xt, NULL, NULL)))
            goto done;
        for (int b = 0; b < B; b++) tf[b] = (float)s->timesteps[t[b]];
        if ((st = nf_classifier_forward(net, xt, tf, B, L, lg))) goto done;
        int correct = 0;
        double loss = nf_classifier_xent(lg, y, B, K, lg + (size_t)B * K, &correct);
        if (!isfinite(loss)) {
            st = nf_fail(NF_ERR_NUMERIC, "classifier train: the loss is %g at step %lld", loss, step);
            goto done;
        }
        nf_classifier_zero_grad(net);
        if ((st = nf_classifier_backward(net, lg + (size_t)B * K, NULL))) goto done;
        /* Clipping rides on the AdamW pass (nf_adamw_step_scaled): no pass of its own. */
        double gn = nf_l2_norm(net->grads, net->n_params);
        if (!isfinite(gn)) {
            st = nf_fail(NF_ERR_NUMERIC, "classifier train: the gradient norm is %g at step %lld", gn, step);
            goto done;
        }
        if ((st = nf_adamw_step_scaled(&opt, net->params, net->grads, nf_clip_factor(gn, tc->grad_clip),
                                       nf_lr_at(&lrs, step))))
            goto done;
        if (step >= tail_from) tail += loss, tail_n++;
        if (progress) progress(user, step + 1, loss, (double)correct / B);
    }
    if (final_loss) *final_loss = tail_n ? tail / tail_n : 0.0;
    nf_classifier_zero_grad(net);
done:
    nf_adamw_free(&opt);
    free(xb);
    free(eps);
    free(xt);
    free(tf);
    free(lg);
    free(t);
    free(y);
    return st;
}

/* ------------------------------------------------------------ files */

#define CLF_FORMAT "noisefloor-classifier"
#define CLF_VERSION 1

static nf_status config_to_json(const nf_classifier_config *c, char **out)
{
    nf_json_writer w;
    nf_jw_init(&w);
    nf_jw_begin_object(&w);
    nf_jw_key(&w, "in_ch"), nf_jw_int(&w, c->in_ch);
    nf_jw_key(&w, "base"), nf_jw_int(&w, c->base);
    nf_jw_key(&w, "n_levels"), nf_jw_int(&w, c->n_levels);
    nf_jw_key(&w, "mults"), nf_jw_begin_array(&w);
    for (int i = 0; i < c->n_levels; i++) nf_jw_int(&w, c->mults[i]);
    nf_jw_end_array(&w);
    nf_jw_key(&w, "blocks"), nf_jw_int(&w, c->blocks);
    nf_jw_key(&w, "groups"), nf_jw_int(&w, c->groups);
    nf_jw_key(&w, "num_classes"), nf_jw_int(&w, c->num_classes);
    nf_jw_end_object(&w);
    nf_status st = nf_jw_finish(&w);
    if (st) {
        nf_jw_free(&w);
        return nf_fail(st, "classifier: cannot write the config JSON");
    }
    *out = w.data; /* handed over; nf_jw_free is not called */
    return NF_OK;
}

static nf_status json_int(const nf_json *o, const char *key, const char *path, int *v)
{
    const nf_json *j = nf_json_get(o, key);
    if (!j || j->type != NF_JSON_NUMBER || !j->is_i64 || j->i64 < -1000000 || j->i64 > 1000000)
        return nf_fail(NF_ERR_CORRUPT, "%s: classifier config key \"%s\" missing or not a small integer", path, key);
    *v = (int)j->i64;
    return NF_OK;
}

static nf_status config_from_json(const char *text, const char *path, nf_classifier_config *c)
{
    nf_json_doc *doc;
    nf_status st = nf_json_parse(text, strlen(text), path, 0, &doc);
    if (st) {
        char why[256];
        snprintf(why, sizeof why, "%s", nf_last_error());
        return nf_fail(NF_ERR_CORRUPT, "%s: bad classifier config: %s", path, why);
    }
    const nf_json *r = nf_json_root(doc);
    memset(c, 0, sizeof *c);
    if ((st = json_int(r, "in_ch", path, &c->in_ch)) || (st = json_int(r, "base", path, &c->base)) ||
        (st = json_int(r, "n_levels", path, &c->n_levels)) || (st = json_int(r, "blocks", path, &c->blocks)) ||
        (st = json_int(r, "groups", path, &c->groups)) || (st = json_int(r, "num_classes", path, &c->num_classes)))
        goto done;
    const nf_json *m = nf_json_get(r, "mults");
    if (!m || m->type != NF_JSON_ARRAY || c->n_levels < 1 || c->n_levels > NF_CLASSIFIER_MAX_LEVELS ||
        (int)m->n != c->n_levels) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: classifier config \"mults\" missing or not n_levels long", path);
        goto done;
    }
    for (int i = 0; i < c->n_levels; i++) {
        if (m->items[i].type != NF_JSON_NUMBER || !m->items[i].is_i64 || m->items[i].i64 < 1 || m->items[i].i64 > 64) {
            st = nf_fail(NF_ERR_CORRUPT, "%s: classifier config mults[%d] is not in 1..64", path, i);
            goto done;
        }
        c->mults[i] = (int)m->items[i].i64;
    }
    if (nf_classifier_config_check(c)) {
        char why[256];
        snprintf(why, sizeof why, "%s", nf_last_error());
        st = nf_fail(NF_ERR_CORRUPT, "%s: %s", path, why);
    }
done:
    nf_json_free(doc);
    return st;
}

nf_status nf_classifier_save(const char *path, const nf_classifier *net, const nf_model_desc *model,
                             const char *model_hash, const char *summary)
{
    char *cj = NULL, *mj = NULL;
    nf_status st = config_to_json(&net->cfg, &cj);
    if (st) return st;
    if (model && (st = nf_model_desc_to_json(model, &mj))) {
        free(cj);
        return st;
    }
    nf_st_tensor *ts = calloc((size_t)net->n_tensors, sizeof *ts);
    if (!ts) {
        free(cj);
        free(mj);
        return nf_fail(NF_ERR_NOMEM, "classifier: out of memory saving %s", path);
    }
    for (int i = 0; i < net->n_tensors; i++) {
        const nf_param_info *t = &net->tensors[i];
        ts[i].name = t->name;
        ts[i].dtype = NF_DT_F32;
        ts[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) ts[i].shape[d] = t->shape[d];
        ts[i].data = net->params + t->offset;
    }
    nf_st_meta meta[6] = {{"format", CLF_FORMAT}, {"format_version", "1"}, {"noisefloor.classifier", cj}};
    int nm = 3;
    if (mj) meta[nm++] = (nf_st_meta){"noisefloor.model", mj};
    if (model_hash && *model_hash) meta[nm++] = (nf_st_meta){"noisefloor.model_hash", model_hash};
    if (summary && *summary) meta[nm++] = (nf_st_meta){"noisefloor.classifier_train", summary};
    st = nf_st_write(path, ts, net->n_tensors, meta, nm);
    free(ts);
    free(cj);
    free(mj);
    return st;
}

nf_status nf_classifier_load(const char *path, int max_batch, int max_length, nf_classifier **out,
                             nf_model_desc *model, char *model_hash)
{
    *out = NULL;
    nf_st_file *f;
    nf_status st = nf_st_open(path, &f);
    if (st) return st;
    nf_classifier *net = NULL;
    const char *fmt = nf_st_meta_get(f, "format"), *ver = nf_st_meta_get(f, "format_version");
    const char *cj = nf_st_meta_get(f, "noisefloor.classifier");
    if (!fmt || strcmp(fmt, CLF_FORMAT)) {
        st = nf_fail(NF_ERR_FORMAT, "%s: not a noisefloor classifier (format \"%s\")", path, fmt ? fmt : "");
        goto done;
    }
    if (!ver || atoi(ver) < 1) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: bad format_version", path);
        goto done;
    }
    if (atoi(ver) > CLF_VERSION) {
        st = nf_fail(NF_ERR_VERSION, "%s: classifier format version %s is newer than this program's %d",
                     path, ver, CLF_VERSION);
        goto done;
    }
    if (!cj) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: no \"noisefloor.classifier\" metadata", path);
        goto done;
    }
    nf_classifier_config cfg;
    if ((st = config_from_json(cj, path, &cfg))) goto done;
    if (model) {
        const char *mj = nf_st_meta_get(f, "noisefloor.model");
        if (mj) {
            if ((st = nf_model_desc_from_json(mj, strlen(mj), path, model))) goto done;
        } else {
            nf_model_desc_init(model);
        }
    }
    if (model_hash) {
        const char *h = nf_st_meta_get(f, "noisefloor.model_hash");
        snprintf(model_hash, 17, "%s", h ? h : "");
    }
    if ((st = nf_classifier_create(&cfg, max_batch, max_length, &net))) goto done;
    for (int i = 0; i < net->n_tensors; i++) {
        const nf_param_info *t = &net->tensors[i];
        int64_t shape[3] = {t->shape[0], t->shape[1], t->shape[2]};
        if (!nf_st_find(f, t->name)) {
            st = nf_fail(NF_ERR_CORRUPT, "%s: tensor \"%s\" is missing", path, t->name);
            goto done;
        }
        if ((st = nf_st_read_f32(f, t->name, net->params + t->offset, t->size, t->ndim, shape))) goto done;
    }
    if (nf_st_count(f) != net->n_tensors) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: %d tensors, the config needs %d", path, nf_st_count(f), net->n_tensors);
        goto done;
    }
    *out = net;
    net = NULL;
done:
    nf_classifier_free(net);
    nf_st_close(f);
    return st;
}
