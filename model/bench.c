/* The reference-network benchmarks behind `noisefloor bench` (see nf_bench.h).
 *
 * What is timed, per call (the PyTorch side in tests/bench/torch_nets.py does the same):
 *   forward:  nf_unet_forward at batch B, inference mode, the convolution weights packed
 *             once beforehand (nf_unet_prepack, as the engine does when it loads a model;
 *             the same for ddim).
 *   train:    a DDPM training step (Ho et al. 2020, Algorithm 1): t uniform in [0, 1000),
 *             eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (eq. 4) on a
 *             linear beta schedule 1e-4..0.02; forward; L = mean (eps_theta - eps)^2;
 *             backward; global-norm clipping at 1; AdamW (lr 1e-4, wd 0.01).
 *   ddim:     one example, 50 deterministic DDIM steps (Song et al. 2021, eq. 12, eta = 0)
 *             by the diffusion core's sampler (nf_sample) on evenly respaced steps of the
 *             same schedule, then the ISTFT for ref-stft.
 * Each figure is the median over `repeat` timed calls after one untimed warm-up call. */
#include "nf_bench.h"
#include "nf_diffusion.h"
#include "nf_optim.h"
#include "nf_rng.h"
#include "nf_stft.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define T_TRAIN 1000

static const char *const net_names[] = {"ref-wave", "ref-stft", NULL};

const char *const *nf_bench_net_names(void) { return net_names; }

nf_status nf_bench_net_by_name(const char *name, nf_bench_net *out)
{
    memset(out, 0, sizeof *out);
    nf_unet_config *c = &out->cfg;
    c->blocks = 2;
    c->groups = 8;
    c->heads = 1;
    out->audio_length = 16384;
    if (name && !strcmp(name, "ref-wave")) {
        /* issue 3: in_ch 1, length 16384, C0 32, mults (1,2,4,4), no attention, no classes */
        c->in_ch = c->out_ch = 1;
        c->base = 32;
        c->n_levels = 4;
        int m[4] = {1, 2, 4, 4};
        memcpy(c->mults, m, sizeof m);
        out->length = 16384;
    } else if (name && !strcmp(name, "ref-stft")) {
        /* issue 3: STFT n_fft 512, hop 128, Hann, centred, of 16384 samples:
         * 2 * 257 = 514 channels x 129 frames; C0 128, mults (1,2,2) */
        out->n_fft = 512;
        out->hop = 128;
        c->in_ch = c->out_ch = 2 * (out->n_fft / 2 + 1);
        c->base = 128;
        c->n_levels = 3;
        int m[3] = {1, 2, 2};
        memcpy(c->mults, m, sizeof m);
        out->length = 1 + out->audio_length / out->hop;
    } else {
        return nf_fail(NF_ERR_ARG, "bench: unknown network '%s' (known: ref-wave, ref-stft)",
                       name ? name : "(null)");
    }
    snprintf(out->name, sizeof out->name, "%s", name);
    return nf_unet_config_check(c);
}

void nf_bench_options_default(nf_bench_options *o)
{
    memset(o, 0, sizeof *o);
    o->net = "ref-wave";
    o->batches[0] = 1;
    o->batches[1] = 8;
    o->n_batches = 2;
    o->repeat = 5;
    o->ddim_steps = 50;
    o->threads = 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill_time(nf_bench_time *bt, double *sec, int n, int batch, double flops_per_call)
{
    double med = median(sec, n);
    bt->ms = med * 1e3;
    bt->ms_min = sec[0] * 1e3; /* sorted by median() */
    bt->examples_per_s = batch / med;
    bt->gflops = flops_per_call / med * 1e-9;
}

nf_status nf_bench_sgemm(int m, int n, int k, int trans_b, int repeat, double *gflops)
{
    if (m <= 0 || n <= 0 || k <= 0 || repeat <= 0) return nf_fail(NF_ERR_ARG, "bench: bad sgemm shape");
    float *a = malloc((size_t)m * k * sizeof(float));
    float *b = malloc((size_t)k * n * sizeof(float));
    float *c = malloc((size_t)m * n * sizeof(float));
    double *sec = malloc((size_t)repeat * sizeof(double));
    if (!a || !b || !c || !sec) {
        free(a); free(b); free(c); free(sec);
        return nf_fail(NF_ERR_NOMEM, "bench: out of memory for a %dx%dx%d sgemm", m, n, k);
    }
    nf_randu(a, (size_t)m * k, 1, 1, 0);
    nf_randu(b, (size_t)k * n, 1, 2, 0);
    for (int r = -1; r < repeat; r++) {
        double t0 = nf_now();
        if (trans_b) /* C[m,n] = A[m,k] B[n,k]^T: the weight-gradient shape */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
        if (r >= 0) sec[r] = nf_now() - t0;
    }
    *gflops = 2.0 * m * n * (double)k / median(sec, repeat) * 1e-9;
    free(a); free(b); free(c); free(sec);
    return NF_OK;
}

/* Linear beta schedule (Ho et al. 2020, sec. 4): beta_i = 1e-4 + (0.02 - 1e-4) i/(T-1),
 * abar_i = prod_{j<=i} (1 - beta_j). */
static void linear_alpha_bar(double *abar, int T)
{
    double p = 1.0;
    for (int i = 0; i < T; i++) {
        p *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / (T - 1));
        abar[i] = p;
    }
}

typedef struct {
    nf_unet *net;
    nf_adamw opt;
    int B, C, L;
    size_t n;      /* B*C*L */
    float *x0, *eps, *xt, *out, *dout, *t;
    double abar[T_TRAIN];
} bench_state;

static void state_free(bench_state *s)
{
    nf_adamw_free(&s->opt);
    free(s->x0); free(s->eps); free(s->xt); free(s->out); free(s->dout); free(s->t);
    nf_unet_free(s->net);
    memset(s, 0, sizeof *s);
}

static nf_status state_init(bench_state *s, const nf_bench_net *bn, int B)
{
    memset(s, 0, sizeof *s);
    nf_status st = nf_unet_create(&bn->cfg, B, bn->length, &s->net);
    if (st) return st;
    nf_unet_init_params(s->net, 1);
    s->B = B;
    s->C = bn->cfg.in_ch;
    s->L = bn->length;
    s->n = (size_t)B * s->C * s->L;
    s->x0 = malloc(s->n * sizeof(float));
    s->eps = malloc(s->n * sizeof(float));
    s->xt = malloc(s->n * sizeof(float));
    s->out = malloc((size_t)B * bn->cfg.out_ch * s->L * sizeof(float));
    s->dout = malloc((size_t)B * bn->cfg.out_ch * s->L * sizeof(float));
    s->t = malloc((size_t)B * sizeof(float));
    if (!s->x0 || !s->eps || !s->xt || !s->out || !s->dout || !s->t) {
        state_free(s);
        return nf_fail(NF_ERR_NOMEM, "bench: out of memory for batch %d", B);
    }
    /* Stand-in data of unit scale: the timing does not depend on the values. */
    nf_randn(s->x0, s->n, 2, 1, 0);
    for (int b = 0; b < B; b++) s->t[b] = 500.0f;
    linear_alpha_bar(s->abar, T_TRAIN);
    nf_adamw_config ac = nf_adamw_defaults();
    st = nf_adamw_init(&s->opt, nf_unet_num_params(s->net), &ac);
    if (st) state_free(s);
    return st;
}

/* One training step (Ho et al. Algorithm 1 with AdamW); `step` seeds its draws. */
static nf_status train_step(bench_state *s, uint64_t step)
{
    const size_t per = (size_t)s->C * s->L;
    nf_randn(s->eps, s->n, 3, 1, step * s->n);
    for (int b = 0; b < s->B; b++) {
        int ti = (int)nf_rand_below(T_TRAIN, 3, 2, step * (uint64_t)s->B + (uint64_t)b);
        s->t[b] = (float)ti;
        const float ca = (float)sqrt(s->abar[ti]), cb = (float)sqrt(1.0 - s->abar[ti]);
        const float *x0 = s->x0 + b * per, *e = s->eps + b * per;
        float *xt = s->xt + b * per;
        for (size_t i = 0; i < per; i++) xt[i] = ca * x0[i] + cb * e[i]; /* eq. 4 */
    }
    nf_status st = nf_unet_forward(s->net, s->xt, s->t, NULL, s->B, s->L, s->out, 1, step);
    if (st) return st;
    /* L_simple = mean (eps_theta - eps)^2 (eq. 14); d L / d out = 2 (out - eps) / n. */
    const float g = 2.0f / (float)s->n;
    for (size_t i = 0; i < s->n; i++) s->dout[i] = g * (s->out[i] - s->eps[i]);
    st = nf_unet_backward(s->net, s->dout, NULL);
    if (st) return st;
    float clip = nf_clip_factor(nf_unet_grad_norm(s->net), 1.0);
    return nf_adamw_step_scaled(&s->opt, nf_unet_params(s->net), nf_unet_grads(s->net), clip, 1e-4f);
}

/* The denoiser callback of the diffusion core: the network in inference mode. */
static nf_status bench_denoiser(void *ctx, const float *x, const float *t, const int *y, int B, int C,
                                int L, float *out)
{
    (void)C;
    bench_state *s = ctx;
    return nf_unet_forward(s->net, x, t, y, B, L, out, 0, 0);
}

/* One example by the library's DDIM sampler (Song et al. 2021, eta = 0, eps-prediction)
 * on `steps` respaced steps of the linear schedule, then the ISTFT for an STFT network. */
static nf_status ddim_sample(bench_state *s, const nf_schedule *sched, int steps, nf_stft *stft,
                             int audio_len, float *audio)
{
    nf_sampler_config sc;
    nf_sampler_config_default(&sc);
    sc.kind = NF_SAMPLER_DDIM;
    sc.steps = steps;
    sc.pred = NF_PRED_EPS;
    sc.eta = 0.0;
    nf_status st = nf_sample(sched, &sc, bench_denoiser, s, NULL, 4, 1, s->C, s->L, s->xt);
    if (st) return st;
    if (stft) return nf_stft_decode_batch(stft, s->xt, 1, 1, audio_len, 1.0f, audio);
    return NF_OK;
}

nf_status nf_bench_run(const nf_bench_options *o, nf_bench_result *r)
{
    memset(r, 0, sizeof *r);
    nf_status st = nf_bench_net_by_name(o->net, &r->net);
    if (st) return st;
    if (o->n_batches < 1 || o->n_batches > NF_BENCH_MAX_BATCHES)
        return nf_fail(NF_ERR_ARG, "bench: %d batch sizes (1..%d)", o->n_batches, NF_BENCH_MAX_BATCHES);
    if (o->repeat < 1) return nf_fail(NF_ERR_ARG, "bench: repeat %d must be >= 1", o->repeat);
    for (int i = 0; i < o->n_batches; i++)
        if (o->batches[i] < 1 || o->batches[i] > 4096)
            return nf_fail(NF_ERR_ARG, "bench: batch %d out of range", o->batches[i]);
    if (o->threads > 0) nf_set_threads(o->threads);
    r->threads = nf_get_threads();
    r->repeat = o->repeat;
    const nf_bench_net *bn = &r->net;
    r->flops_forward = nf_unet_flops(&bn->cfg, bn->length);

    double *sec = malloc((size_t)o->repeat * sizeof(double));
    if (!sec) return nf_fail(NF_ERR_NOMEM, "bench: out of memory");

    /* sgemm at shapes these networks run (row-major, batch 8 along time). */
    if (!o->skip_gemm) {
        const int c0 = bn->cfg.base, T8 = 8 * bn->length;
        struct gemm_shape { int m, n, k, tb; const char *what; } g[3] = {
            {c0, T8, c0, 0, "conv tap, level 0"},
            {2 * c0, T8 / 2, 2 * c0, 0, "conv tap, level 1"},
            {c0, c0, T8, 1, "weight grad, level 0"},
        };
        if (bn->n_fft > 0) g[0] = (struct gemm_shape){c0, T8, bn->cfg.in_ch, 0, "in conv tap"};
        for (int i = 0; i < 3; i++) {
            nf_bench_gemm *bg = &r->gemms[r->n_gemms++];
            bg->m = g[i].m; bg->n = g[i].n; bg->k = g[i].k; bg->trans_b = g[i].tb;
            snprintf(bg->what, sizeof bg->what, "%s", g[i].what);
            st = nf_bench_sgemm(bg->m, bg->n, bg->k, bg->trans_b, o->repeat < 3 ? 3 : o->repeat, &bg->gflops);
            if (st) goto done;
            if (bg->gflops > r->gemm_best) r->gemm_best = bg->gflops;
        }
    }

    for (int i = 0; i < o->n_batches; i++) {
        const int B = o->batches[i];
        bench_state s;
        st = state_init(&s, bn, B);
        if (st) goto done;
        r->params = nf_unet_num_params(s.net);
        nf_bench_batch *bb = &r->batches[r->n_batches++];
        bb->batch = B;
        st = nf_unet_prepack(s.net); /* as the engine does when it loads a model */
        for (int k = -1; k < o->repeat && !st; k++) {
            double t0 = nf_now();
            st = nf_unet_forward(s.net, s.x0, s.t, NULL, B, s.L, s.out, 0, 0);
            if (k >= 0) sec[k] = nf_now() - t0;
        }
        if (!st) fill_time(&bb->forward, sec, o->repeat, B, r->flops_forward * B);
        for (int k = -1; k < o->repeat && !st; k++) {
            double t0 = nf_now();
            st = train_step(&s, (uint64_t)(k + 1));
            if (k >= 0) sec[k] = nf_now() - t0;
        }
        /* A training step is about 3 forwards of work (forward, and backward's two GEMMs
         * per layer: input and weight gradients). */
        if (!st) fill_time(&bb->train, sec, o->repeat, B, 3.0 * r->flops_forward * B);
        state_free(&s);
        if (st) goto done;
    }

    if (o->ddim_steps > 0) {
        bench_state s;
        st = state_init(&s, bn, 1);
        if (st) goto done;
        nf_stft *stft = NULL;
        float *audio = NULL;
        nf_schedule sched;
        memset(&sched, 0, sizeof sched);
        st = nf_schedule_init(&sched, NF_SCHEDULE_LINEAR, T_TRAIN);
        if (!st) st = nf_unet_prepack(s.net);
        if (!st && bn->n_fft > 0) {
            st = nf_stft_create(bn->n_fft, bn->hop, &stft);
            audio = malloc((size_t)bn->audio_length * sizeof(float));
            if (!st && !audio) st = nf_fail(NF_ERR_NOMEM, "bench: out of memory");
        }
        for (int k = -1; k < o->repeat && !st; k++) {
            double t0 = nf_now();
            st = ddim_sample(&s, &sched, o->ddim_steps, stft, bn->audio_length, audio);
            if (k >= 0) sec[k] = nf_now() - t0;
        }
        if (!st) {
            r->ddim_steps = o->ddim_steps;
            fill_time(&r->ddim, sec, o->repeat, 1, r->flops_forward * o->ddim_steps);
            r->ddim_realtime = (bn->audio_length / 44100.0) / (r->ddim.ms * 1e-3);
            r->ddim_how = bn->n_fft > 0 ? "nf_sample DDIM (eta 0) + nf_stft_decode_batch"
                                        : "nf_sample DDIM (eta 0)";
        }
        free(audio);
        nf_stft_free(stft);
        nf_schedule_free(&sched);
        state_free(&s);
    }
done:
    free(sec);
    return st;
}

nf_status nf_bench_peak_memory(const char *name, int batch, double *peak_mb, double *baseline_mb)
{
    nf_bench_net bn;
    nf_status st = nf_bench_net_by_name(name, &bn);
    if (st) return st;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *baseline_mb = ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
    bench_state s;
    st = state_init(&s, &bn, batch);
    if (st) return st;
    for (int k = 0; k < 2 && !st; k++) st = train_step(&s, (uint64_t)k);
    state_free(&s);
    getrusage(RUSAGE_SELF, &ru);
    *peak_mb = ru.ru_maxrss / 1024.0;
    return st;
}
