/* The C U-Net against the PyTorch reference (tests/reference/unet_ref.py): the same
 * weights, inputs and loss give the same output (relative error <= 1e-4), the same
 * gradient for every parameter and for the input (<= 1e-3), and 10 AdamW steps with
 * gradient clipping give the same losses (<= 1e-3).
 *
 * The reference values were computed in float64 by torch and stored as float32 in
 * tests/reference/fixtures/; the relative error of a tensor is max|c - ref| / max|ref|.
 * Every tensor is reported with its error, and any failure makes the exit status non-zero.
 * Regenerate the fixtures with `/usr/bin/python3 tests/reference/unet_ref.py`. */
#include "nf_optim.h"
#include "nf_safetensors.h"
#include "nf_test.h"
#include "nf_unet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FWD_TOL 1e-4
#define GRAD_TOL 1e-3
#define LOSS_TOL 1e-3

static char fixture_dir[4096];

static nf_st_file *open_fixture(const char *name)
{
    char path[4608];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, name);
    nf_st_file *f = NULL;
    nf_status st = nf_st_open(path, &f);
    CHECK(st == NF_OK, "cannot open %s: %s", path, nf_last_error());
    return st == NF_OK ? f : NULL;
}

static int meta_int(const nf_st_file *f, const char *key)
{
    const char *v = nf_st_meta_get(f, key);
    CHECK(v != NULL, "fixture metadata has no '%s'", key);
    return v ? atoi(v) : 0;
}

static double meta_double(const nf_st_file *f, const char *key)
{
    const char *v = nf_st_meta_get(f, key);
    CHECK(v != NULL, "fixture metadata has no '%s'", key);
    return v ? strtod(v, NULL) : 0.0;
}

/* "1,2,4" -> {1,2,4}; returns the count. */
static int meta_list(const nf_st_file *f, const char *key, int *out, int max)
{
    const char *v = nf_st_meta_get(f, key);
    CHECK(v != NULL, "fixture metadata has no '%s'", key);
    int n = 0;
    while (v && *v && n < max) {
        char *end;
        out[n++] = (int)strtol(v, &end, 10);
        v = *end == ',' ? end + 1 : end;
        if (end == v && *v) break;
    }
    return n;
}

/* Read a float tensor of exactly `count` elements (shape checked by count only). */
static float *read_floats(const nf_st_file *f, const char *name, size_t count)
{
    float *a = malloc(count * sizeof(float));
    nf_status st = nf_st_read_f32(f, name, a, count, 0, NULL);
    CHECK(st == NF_OK, "reading %s: %s", name, nf_last_error());
    if (st != NF_OK) {
        free(a);
        return NULL;
    }
    return a;
}

/* Normalised max error of c against ref, reported on one line; returns it. */
static double compare(const char *what, const float *c, const float *ref, size_t n, double tol)
{
    double maxref = 0, maxdiff = 0;
    size_t at = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(c[i])) finite = 0;
        double d = fabs((double)c[i] - ref[i]);
        if (d > maxdiff) {
            maxdiff = d;
            at = i;
        }
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    }
    double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
    int ok = finite && rel <= tol;
    printf("  %-34s n=%-6zu max|ref| %.3e  max|diff| %.3e (at %zu)  rel %.2e  %s\n", what, n, maxref,
           maxdiff, at, rel, ok ? "ok" : "FAIL");
    CHECK(ok, "%s: relative error %.3g > %.g (or non-finite)", what, rel, tol);
    return rel;
}

static double mse_loss(const float *out, const float *target, size_t n, float *dout)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)out[i] - target[i];
        s += d * d;
        if (dout) dout[i] = (float)(2.0 * d / (double)n);
    }
    return s / (double)n;
}

int main(void)
{
    const char *root = getenv("NF_SOURCE_ROOT");
    snprintf(fixture_dir, sizeof fixture_dir, "%s/tests/reference/fixtures", root ? root : ".");
    nf_st_file *wf = open_fixture("unet_small_weights.safetensors");
    nf_st_file *df = open_fixture("unet_small_data.safetensors");
    if (!wf || !df) return nf_test_done();

    /* The config comes from the fixture's metadata (as unet_ref.py wrote it). */
    nf_unet_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.in_ch = meta_int(wf, "in_ch");
    cfg.out_ch = meta_int(wf, "out_ch");
    cfg.base = meta_int(wf, "base");
    cfg.n_levels = meta_list(wf, "mults", cfg.mults, NF_UNET_MAX_LEVELS);
    CHECK(cfg.n_levels == meta_int(wf, "n_levels"), "mults has %d entries", cfg.n_levels);
    CHECK(meta_list(wf, "attn", cfg.attn, NF_UNET_MAX_LEVELS) == cfg.n_levels, "attn list length");
    cfg.blocks = meta_int(wf, "blocks");
    cfg.mid_attn = meta_int(wf, "mid_attn");
    cfg.heads = meta_int(wf, "heads");
    cfg.groups = meta_int(wf, "groups");
    cfg.num_classes = meta_int(wf, "num_classes");
    cfg.dropout = (float)meta_double(wf, "dropout");
    const int B = meta_int(df, "batch"), L = meta_int(df, "length");
    printf("reference: in %d out %d base %d levels %d blocks %d heads %d groups %d classes %d, B %d L %d\n",
           cfg.in_ch, cfg.out_ch, cfg.base, cfg.n_levels, cfg.blocks, cfg.heads, cfg.groups,
           cfg.num_classes, B, L);

    nf_unet *net = NULL;
    CHECK_OK(nf_unet_create(&cfg, B, L, &net));
    if (!net) return nf_test_done();

    /* Weights: every C tensor must be in the file with the same shape, and nothing else. */
    float *params = nf_unet_params(net);
    const int nt = nf_unet_num_tensors(net);
    CHECK(nt == nf_st_count(wf), "C network has %d tensors, the file %d", nt, nf_st_count(wf));
    for (int i = 0; i < nt; i++) {
        const nf_param_info *p = nf_unet_tensor(net, i);
        int64_t shape[3];
        for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
        nf_status st = nf_st_read_f32(wf, p->name, params + p->offset, p->size, p->ndim, shape);
        CHECK(st == NF_OK, "weight %s: %s", p->name, nf_last_error());
    }
    const size_t np = nf_unet_num_params(net);
    float *init = malloc(np * sizeof(float));
    memcpy(init, params, np * sizeof(float));

    const size_t nx = (size_t)B * cfg.in_ch * L, no = (size_t)B * cfg.out_ch * L;
    float *x = read_floats(df, "x", nx), *t = read_floats(df, "t", (size_t)B);
    float *target = read_floats(df, "target", no), *ref_out = read_floats(df, "out", no);
    float *ref_dx = read_floats(df, "dx", nx), *ref_loss = read_floats(df, "loss", 1);
    int64_t y64[64];
    int y[64];
    CHECK(B <= 64, "batch %d", B);
    CHECK_OK(nf_st_read_i64(df, "y", y64, (size_t)B, 0, NULL));
    for (int b = 0; b < B; b++) y[b] = (int)y64[b];
    if (!x || !t || !target || !ref_out || !ref_dx || !ref_loss) return nf_test_done();

    /* ---- forward, loss, backward ---- */
    float *out = malloc(no * sizeof(float)), *dout = malloc(no * sizeof(float));
    float *dx = malloc(nx * sizeof(float));
    printf("forward (tolerance %.0e):\n", FWD_TOL);
    CHECK_OK(nf_unet_forward(net, x, t, y, B, L, out, 1, 0));
    compare("out", out, ref_out, no, FWD_TOL);
    double loss = mse_loss(out, target, no, dout);
    float lossf = (float)loss;
    compare("loss", &lossf, ref_loss, 1, LOSS_TOL);

    printf("backward (tolerance %.0e):\n", GRAD_TOL);
    nf_unet_zero_grad(net);
    CHECK_OK(nf_unet_backward(net, dout, dx));
    compare("dx", dx, ref_dx, nx, GRAD_TOL);
    const float *grads = nf_unet_grads(net);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < nt; i++) {
        const nf_param_info *p = nf_unet_tensor(net, i);
        char key[256];
        snprintf(key, sizeof key, "grad.%s", p->name);
        float *ref = read_floats(df, key, p->size);
        if (!ref) continue;
        double rel = compare(p->name, grads + p->offset, ref, p->size, GRAD_TOL);
        if (rel > worst) {
            worst = rel;
            worst_name = p->name;
        }
        free(ref);
    }
    printf("worst parameter gradient: %s, relative error %.2e\n", worst_name, worst);

    /* ---- 10 AdamW steps with clipping, the same batch every step ---- */
    nf_adamw_config ac = {(float)meta_double(df, "adamw.beta1"), (float)meta_double(df, "adamw.beta2"),
                          (float)meta_double(df, "adamw.eps"), (float)meta_double(df, "adamw.weight_decay")};
    const float lr = (float)meta_double(df, "adamw.lr");
    const double clip = meta_double(df, "adamw.clip");
    const int steps = meta_int(df, "adamw.steps");
    float *ref_losses = read_floats(df, "adamw.losses", (size_t)steps + 1);
    float *ref_norms = read_floats(df, "adamw.grad_norms", (size_t)steps);
    float *losses = malloc(((size_t)steps + 1) * sizeof(float)), *norms = malloc((size_t)steps * sizeof(float));
    nf_adamw opt;
    CHECK_OK(nf_adamw_init(&opt, np, &ac));
    memcpy(params, init, np * sizeof(float));
    for (int k = 0; k <= steps; k++) {
        CHECK_OK(nf_unet_forward(net, x, t, y, B, L, out, k < steps, 0));
        losses[k] = (float)mse_loss(out, target, no, dout);
        if (k == steps) break;
        nf_unet_zero_grad(net);
        CHECK_OK(nf_unet_backward(net, dout, NULL));
        norms[k] = (float)nf_clip_grad_norm(nf_unet_grads(net), np, clip);
        CHECK_OK(nf_adamw_step(&opt, params, nf_unet_grads(net), lr));
    }
    printf("adamw (%d steps, lr %g, clip %g; tolerance %.0e):\n", steps, (double)lr, clip, LOSS_TOL);
    if (ref_losses && ref_norms) {
        for (int k = 0; k <= steps; k++)
            printf("  step %2d  loss %.6f  ref %.6f%s\n", k, (double)losses[k], (double)ref_losses[k],
                   k < steps ? "" : "  (after the last step)");
        compare("adamw.losses", losses, ref_losses, (size_t)steps + 1, LOSS_TOL);
        compare("adamw.grad_norms", norms, ref_norms, (size_t)steps, LOSS_TOL);
        /* The steps must have done something, or the comparison is empty. */
        CHECK(ref_losses[steps] < 0.9f * ref_losses[0], "reference loss did not fall: %g -> %g",
              (double)ref_losses[0], (double)ref_losses[steps]);
    }

    nf_adamw_free(&opt);
    free(losses); free(norms); free(ref_losses); free(ref_norms);
    free(out); free(dout); free(dx); free(init);
    free(x); free(t); free(target); free(ref_out); free(ref_dx); free(ref_loss);
    nf_unet_free(net);
    nf_st_close(wf);
    nf_st_close(df);
    return nf_test_done();
}
