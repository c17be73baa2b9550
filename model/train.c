/* The training loop (see nf_train.h). */
#include "nf_train.h"

#include "nf_audio.h"
#include "nf_checkpoint.h"
#include "nf_dataset.h"
#include "nf_diffusion.h"
#include "nf_image.h"
#include "nf_optim.h"
#include "nf_repr.h"
#include "nf_rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ presets --- */

typedef struct {
    const char *name;
    const char *description;
    nf_unet_config wave, stft;
} train_preset;

/* Sizes. The waveform networks go deep (many stride-2 levels over thousands of samples);
 * the STFT ones see ~100 frames of 2*(n_fft/2+1) channels, so they have few levels and a
 * wide top level: DESIGN "Lessons" measured that narrowing 514 STFT channels to 128 at
 * the first convolution cannot pass the input through. Parameter counts (mono, 22.05 kHz,
 * n_fft 512, no classes) are printed by `noisefloor train --list-presets`, computed from
 * the network itself so they cannot drift from the table. */
static const train_preset presets[] = {
    {"tiny", "for tests and quick experiments (minutes on a laptop)",
     {.base = 16, .n_levels = 4, .mults = {1, 2, 2, 4}, .blocks = 1, .heads = 1, .groups = 8},
     {.base = 64, .n_levels = 2, .mults = {1, 2}, .blocks = 1, .heads = 1, .groups = 8}},
    {"small", "a drum kit in an hour or two on 2 cores",
     {.base = 32, .n_levels = 5, .mults = {1, 2, 4, 4, 8}, .blocks = 2, .mid_attn = 1, .heads = 4, .groups = 8},
     {.base = 128, .n_levels = 3, .mults = {1, 2, 2}, .blocks = 2, .mid_attn = 1, .heads = 4, .groups = 8}},
    {"base", "a large sample library; days on a CPU",
     {.base = 64, .n_levels = 6, .mults = {1, 2, 4, 4, 8, 8}, .blocks = 2, .attn = {0, 0, 0, 0, 1, 1},
      .mid_attn = 1, .heads = 8, .groups = 8},
     {.base = 256, .n_levels = 3, .mults = {1, 2, 2}, .blocks = 2, .attn = {0, 0, 1}, .mid_attn = 1,
      .heads = 8, .groups = 8}},
    /* The bundled default model (presets/make-default-model.sh), meant for n_fft 64
     * (66 input channels, so the 64-wide top level can pass the input through: DESIGN
     * "Lessons"; at n_fft 256, 258 channels, the loss fell far slower: 0.72 vs 0.47 after
     * 1,000 steps of 16) with
     * four levels and attention in the middle over the 0.5 s clip: 1.84 M parameters at
     * n_fft 64, 3.7 MB stored as F16. */
    {"drums", "the bundled default drum model (mag n_fft 64, about an hour on 2 cores)",
     {.base = 16, .n_levels = 4, .mults = {1, 2, 2, 4}, .blocks = 1, .heads = 1, .groups = 8},
     {.base = 64, .n_levels = 4, .mults = {1, 2, 2, 2}, .blocks = 1, .mid_attn = 1, .heads = 4, .groups = 8}},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

static const char *const preset_names[] = {"tiny", "small", "base", "drums", NULL};

const char *const *nf_train_preset_names(void) { return preset_names; }

static const train_preset *find_preset(const char *name)
{
    for (int i = 0; i < N_PRESETS; i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

const char *nf_train_preset_description(const char *name)
{
    const train_preset *p = find_preset(name);
    return p ? p->description : NULL;
}

nf_status nf_train_preset(const char *name, int repr, nf_unet_config *out)
{
    const train_preset *p = name ? find_preset(name) : NULL;
    if (!p) return nf_fail(NF_ERR_ARG, "unknown preset '%s' (tiny, small, base or drums)", name ? name : "");
    *out = repr != NF_REPR_WAVE ? p->stft : p->wave;
    return NF_OK;
}

nf_status nf_train_preset_param_count(const char *name, int repr, int in_ch, int num_classes, long long *count)
{
    nf_unet_config u;
    nf_status st = nf_train_preset(name, repr, &u);
    if (st) return st;
    u.in_ch = u.out_ch = in_ch;
    u.num_classes = num_classes;
    nf_unet *net = NULL;
    /* The smallest buffers that still hold every level: counting needs no real sizes. */
    st = nf_unet_create(&u, 1, 1 << u.n_levels, &net);
    if (st) return st;
    *count = (long long)nf_unet_num_params(net);
    nf_unet_free(net);
    return NF_OK;
}

/* --------------------------------------------------------------- defaults --- */

void nf_train_config_default(nf_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->sample_rate = 22050;
    c->clip_seconds = 0.5;
    c->channels = 1;
    c->augment = 1;
    c->aug_gain_db = 6.0f;
    c->aug_shift_ms = 5.0f;
    c->repr = 0;
    c->n_fft = 512;
    c->hop = 0;
    c->preset = "small";
    c->objective = 1; /* v: DESIGN "Lessons" */
    c->schedule = 1;  /* cosine */
    c->T = 1000;
    c->cfg_dropout = 0.1f;
    c->steps = 10000;
    c->batch = 16;
    c->lr = 3e-4f;
    c->lr_schedule = 1;
    c->warmup = 100;
    c->weight_decay = 0.01f;
    c->grad_clip = 1.0f;
    c->ema_decay = 0.999f;
    c->seed = 0;
    c->checkpoint_every = 500;
    c->preview_every = 0;
    c->preview_per_class = 2;
    c->preview_steps = 25;
    c->progress_every = 1;
}

/* ------------------------------------------------------------- file names --- */

/* model path without its ".safetensors" extension (if any) + suffix */
static void companion(const char *model, const char *suffix, char *buf, size_t size)
{
    size_t n = strlen(model);
    const char *ext = ".safetensors";
    size_t e = strlen(ext);
    if (n > e && !strcmp(model + n - e, ext)) n -= e;
    snprintf(buf, size, "%.*s%s", (int)n, model, suffix);
}

void nf_train_state_path(const char *model, char *buf, size_t size) { companion(model, ".state.safetensors", buf, size); }
void nf_train_log_path(const char *model, char *buf, size_t size) { companion(model, ".loss.csv", buf, size); }
void nf_train_plot_path(const char *model, char *buf, size_t size) { companion(model, ".loss.png", buf, size); }
void nf_train_previews_dir(const char *model, char *buf, size_t size) { companion(model, "_previews", buf, size); }

static nf_status make_dir(const char *path)
{
    if (mkdir(path, 0777) && errno != EEXIST) return nf_fail(NF_ERR_IO, "%s: cannot create folder: %s", path, strerror(errno));
    return NF_OK;
}

/* ------------------------------------------------------------- the loop --- */

typedef struct {
    const nf_train_config *c;
    nf_dataset ds;
    nf_repr *repr;
    nf_unet *net;
    nf_schedule sched;
    nf_loss_config lossc;
    nf_train_draw_config drawc;
    nf_adamw opt;
    nf_ema ema;
    nf_lr_schedule lrs;
    uint8_t *decay_mask;
    int B, C, L, Cm, Lm, num_classes;
    size_t np;
    /* Per-step buffers, allocated once. */
    float *audio;          /* [B][C][L] */
    float *x0, *eps, *xt, *target, *out, *dout; /* [B][Cm][Lm] */
    int *t, *y;            /* [B] */
    float *tf;             /* [B] */
    double *per_ex;        /* [B] */
    float *backup;         /* [np] raw weights while previews run on the EMA weights */
    /* Data order of the current epoch. */
    long long perm_epoch;
    int *perm;             /* [n] */
    /* Log. */
    FILE *log;
    float *curve;          /* smoothed loss per step, for the plot */
    long long curve_n, curve_cap;
    double smooth, smooth_w;
    char model_path[NF_PATH_MAX], state_path[NF_PATH_MAX], log_path[NF_PATH_MAX], plot_path[NF_PATH_MAX],
        previews[NF_PATH_MAX];
    char summary[2048];
} trainer;

/* Fisher-Yates shuffle of 0..n-1 for one epoch, a pure function of (seed, epoch), so the
 * data order of any step can be rebuilt on resume. */
static void epoch_permutation(int *perm, int n, uint64_t seed, long long epoch)
{
    uint64_t stream = nf_stream_id("data-order", (uint64_t)epoch, 0);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)nf_rand_below((uint64_t)i + 1, seed, stream, (uint64_t)i);
        int tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

/* Assemble the clean audio of step `step`: example b is position step*B + b of the
 * endless shuffled stream of clips, augmented with draws addressed by (seed, step, b). */
static void load_batch(trainer *tr, long long step)
{
    const nf_train_config *c = tr->c;
    int n = tr->ds.n, C = tr->C, L = tr->L;
    int max_shift = (int)lrint(c->aug_shift_ms * 1e-3 * c->sample_rate);
    if (max_shift > L / 4) max_shift = L / 4;
    for (int b = 0; b < tr->B; b++) {
        long long pos = step * tr->B + b;
        long long epoch = pos / n;
        if (epoch != tr->perm_epoch) {
            epoch_permutation(tr->perm, n, c->seed, epoch);
            tr->perm_epoch = epoch;
        }
        int idx = tr->perm[pos % n];
        const float *src = tr->ds.audio + (size_t)idx * C * L;
        float *dst = tr->audio + (size_t)b * C * L;
        if (tr->y) tr->y[b] = tr->ds.labels[idx];
        if (!c->augment) {
            memcpy(dst, src, sizeof(float) * C * L);
            continue;
        }
        uint64_t stream = nf_stream_id("augment", (uint64_t)step, (uint64_t)b);
        /* Gain uniform in dB below the clip's peak (never louder: the data is
         * peak-normalised), polarity flip with probability 1/2, and a delay of a few ms
         * (zeros before the transient, never cutting the attack). */
        double gain = pow(10.0, -nf_rand_uniform1(c->seed, stream, 0) * c->aug_gain_db / 20.0);
        if (nf_rand_uniform1(c->seed, stream, 1) < 0.5) gain = -gain;
        int shift = max_shift > 0 ? (int)nf_rand_below((uint64_t)max_shift + 1, c->seed, stream, 2) : 0;
        for (int ch = 0; ch < C; ch++) {
            float *d = dst + (size_t)ch * L;
            const float *s = src + (size_t)ch * L;
            for (int i = 0; i < shift; i++) d[i] = 0.0f;
            for (int i = shift; i < L; i++) d[i] = (float)(gain * s[i - shift]);
        }
    }
}

static void free_trainer(trainer *tr)
{
    if (tr->log) fclose(tr->log);
    nf_dataset_free(&tr->ds);
    nf_repr_free(tr->repr);
    nf_unet_free(tr->net);
    nf_schedule_free(&tr->sched);
    nf_adamw_free(&tr->opt);
    nf_ema_free(&tr->ema);
    free(tr->decay_mask);
    free(tr->audio);
    free(tr->x0);
    free(tr->eps);
    free(tr->xt);
    free(tr->target);
    free(tr->out);
    free(tr->dout);
    free(tr->t);
    free(tr->y);
    free(tr->tf);
    free(tr->per_ex);
    free(tr->backup);
    free(tr->perm);
    free(tr->curve);
}

static nf_status curve_push(trainer *tr, float v)
{
    if (tr->curve_n == tr->curve_cap) {
        long long cap = tr->curve_cap ? tr->curve_cap * 2 : 4096;
        float *p = realloc(tr->curve, sizeof(float) * (size_t)cap);
        if (!p) return nf_fail(NF_ERR_NOMEM, "training: out of memory for the loss curve");
        tr->curve = p;
        tr->curve_cap = cap;
    }
    tr->curve[tr->curve_n++] = v;
    return NF_OK;
}

/* Exponential moving average of the loss, bias-corrected (as Adam's moments) so the
 * first values are not pulled towards 0. */
static double smooth_push(trainer *tr, double loss)
{
    tr->smooth = 0.98 * tr->smooth + 0.02 * loss;
    tr->smooth_w = 0.98 * tr->smooth_w + 0.02;
    return tr->smooth / tr->smooth_w;
}

/* Open the loss log. On resume keep the rows of the steps before `start` (rows written
 * after the last checkpoint belong to steps that will be run again) and rebuild the
 * smoothed curve from them. */
static nf_status open_log(trainer *tr, long long start)
{
    char header[512];
    int n = snprintf(header, sizeof header, "step,loss,lr,grad_norm");
    for (int k = 0; k < NF_TRAIN_T_BUCKETS; k++)
        n += snprintf(header + n, sizeof header - (size_t)n, ",loss_t%d", k);
    char *kept = NULL;
    size_t kept_len = 0;
    if (start > 0) {
        void *data = NULL;
        size_t len = 0;
        if (nf_read_file(tr->log_path, &data, &len) == NF_OK) {
            kept = malloc(len + 1);
            if (!kept) {
                free(data);
                return nf_fail(NF_ERR_NOMEM, "%s: out of memory", tr->log_path);
            }
            char *p = data, *end = (char *)data + len;
            while (p < end) {
                char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t l = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
                if (!nl) break; /* a torn last line */
                char *q;
                long long s = strtoll(p, &q, 10);
                if (q != p && *q == ',' && s < start) {
                    memcpy(kept + kept_len, p, l);
                    kept_len += l;
                    double loss = strtof(q + 1, NULL);
                    float sm = (float)smooth_push(tr, loss);
                    if (curve_push(tr, sm)) {
                        free(data);
                        free(kept);
                        return NF_ERR_NOMEM;
                    }
                }
                p += l;
            }
            free(data);
        }
    }
    tr->log = fopen(tr->log_path, "w");
    if (!tr->log) {
        free(kept);
        return nf_fail(NF_ERR_IO, "%s: cannot write the loss log: %s", tr->log_path, strerror(errno));
    }
    fprintf(tr->log, "%s\n", header);
    if (kept_len) fwrite(kept, 1, kept_len, tr->log);
    free(kept);
    if (fflush(tr->log)) return nf_fail(NF_ERR_IO, "%s: write failed: %s", tr->log_path, strerror(errno));
    return NF_OK;
}

static nf_status log_step(trainer *tr, long long step, double loss, double lr, double gn)
{
    fprintf(tr->log, "%lld,%.9g,%.9g,%.9g", step, loss, lr, gn);
    double sum[NF_TRAIN_T_BUCKETS] = {0};
    int cnt[NF_TRAIN_T_BUCKETS] = {0};
    for (int b = 0; b < tr->B; b++) {
        int k = (int)((long long)tr->t[b] * NF_TRAIN_T_BUCKETS / tr->sched.T);
        if (k >= NF_TRAIN_T_BUCKETS) k = NF_TRAIN_T_BUCKETS - 1;
        sum[k] += tr->per_ex[b];
        cnt[k]++;
    }
    for (int k = 0; k < NF_TRAIN_T_BUCKETS; k++) {
        if (cnt[k])
            fprintf(tr->log, ",%.6g", sum[k] / cnt[k]);
        else
            fputc(',', tr->log);
    }
    fputc('\n', tr->log);
    /* Flushed every step: the log is "updated as training goes", and readers (a plot, a
     * test) see whole rows. */
    if (fflush(tr->log) || ferror(tr->log)) return nf_fail(NF_ERR_IO, "%s: write failed", tr->log_path);
    return NF_OK;
}

/* Denoiser callback for previews: the network in evaluation mode. */
static nf_status preview_denoise(void *ctx, const float *x, const float *t, const int *y, int B, int C, int L,
                                 float *out)
{
    (void)C;
    return nf_unet_forward((nf_unet *)ctx, x, t, y, B, L, out, 0, 0);
}

static nf_status write_previews(trainer *tr, long long step)
{
    const nf_train_config *c = tr->c;
    nf_status st = make_dir(tr->previews);
    if (st) return st;
    char dir[NF_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/step_%07lld", tr->previews, step);
    if ((st = make_dir(dir))) return st;

    /* Render with the EMA weights (what the model file holds), then put the raw ones
     * back; the next training step recomputes every activation, so nothing else is
     * disturbed. */
    float *params = nf_unet_params(tr->net);
    memcpy(tr->backup, params, sizeof(float) * tr->np);
    memcpy(params, tr->ema.shadow, sizeof(float) * tr->np);

    nf_sampler_config sc;
    nf_sampler_config_default(&sc);
    sc.kind = NF_SAMPLER_DPMPP;
    sc.steps = c->preview_steps;
    sc.pred = (nf_pred_kind)c->objective;
    int per = c->preview_per_class < 1 ? 1 : c->preview_per_class;
    if (per > tr->B) per = tr->B;
    int groups = tr->num_classes > 0 ? tr->num_classes : 1;
    for (int g = 0; g < groups && !st; g++) {
        for (int b = 0; b < per; b++) tr->y[b] = tr->num_classes > 0 ? g : -1;
        /* Seeds fixed across previews, so successive previews show the same sounds
         * getting better rather than new random ones. */
        st = nf_sample(&tr->sched, &sc, preview_denoise, tr->net, tr->num_classes > 0 ? tr->y : NULL,
                       c->seed + 1000003ull * (uint64_t)g, per, tr->Cm, tr->Lm, tr->x0);
        if (!st) st = nf_repr_decode(tr->repr, tr->x0, per, tr->L, tr->audio);
        for (int b = 0; b < per && !st; b++) {
            nf_audio a = {tr->audio + (size_t)b * tr->C * tr->L, tr->C, tr->L, c->sample_rate};
            /* Previews are for listening: keep them in range without changing their shape. */
            for (size_t i = 0; i < (size_t)tr->C * tr->L; i++)
                a.data[i] = a.data[i] > 1.0f ? 1.0f : a.data[i] < -1.0f ? -1.0f : a.data[i];
            char path[NF_PATH_MAX + 128];
            snprintf(path, sizeof path, "%s/%s_%d.wav", dir, tr->num_classes > 0 ? tr->ds.class_names[g] : "sound", b);
            st = nf_audio_write(path, &a, NF_FILE_WAV, NF_SAMPLE_PCM16, NULL);
        }
    }
    memcpy(params, tr->backup, sizeof(float) * tr->np);
    return st;
}

/* ------------------------------------------------------------ checkpoints --- */

static int all_finite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

static nf_status save_checkpoint(trainer *tr, long long step);
static nf_status load_state(trainer *tr, long long *step);

static nf_status plot_loss(trainer *tr)
{
    if (tr->curve_n < 2) return NF_OK;
    /* One point per pixel column at most: plot a decimated copy of the smoothed curve. */
    int w = 800;
    long long n = tr->curve_n;
    int m = n > w ? w : (int)n;
    float *y = malloc(sizeof(float) * (size_t)m);
    if (!y) return nf_fail(NF_ERR_NOMEM, "training: out of memory for the loss plot");
    for (int i = 0; i < m; i++) y[i] = tr->curve[(long long)i * (n - 1) / (m > 1 ? m - 1 : 1)];
    nf_status st = nf_plot_png(tr->plot_path, y, m, w, 400, 1);
    free(y);
    return st;
}

static void report(trainer *tr, nf_train_progress *p, const char *event)
{
    if (!tr->c->progress) return;
    p->event = event;
    tr->c->progress(tr->c->progress_user, p);
}

nf_status nf_train(const nf_train_config *c)
{
    if (!c->data_dir || !c->output) return nf_fail(NF_ERR_ARG, "training: a data folder and an output file are needed");
    if (c->channels != 1 && c->channels != 2) return nf_fail(NF_ERR_ARG, "training: channels must be 1 or 2");
    if (c->sample_rate < 1000 || c->sample_rate > 384000)
        return nf_fail(NF_ERR_ARG, "training: sample rate %d Hz out of range", c->sample_rate);
    if (c->batch < 1) return nf_fail(NF_ERR_ARG, "training: batch size must be at least 1");
    if (c->steps <= 0 && c->minutes <= 0) return nf_fail(NF_ERR_ARG, "training: give a number of steps or a time budget");
    if (!(c->cfg_dropout >= 0 && c->cfg_dropout < 1)) return nf_fail(NF_ERR_ARG, "training: label dropout must be in [0, 1)");

    trainer tr_, *tr = &tr_;
    memset(tr, 0, sizeof *tr);
    tr->c = c;
    tr->perm_epoch = -1;
    snprintf(tr->model_path, sizeof tr->model_path, "%s", c->output);
    nf_train_state_path(c->output, tr->state_path, sizeof tr->state_path);
    nf_train_log_path(c->output, tr->log_path, sizeof tr->log_path);
    nf_train_plot_path(c->output, tr->plot_path, sizeof tr->plot_path);
    nf_train_previews_dir(c->output, tr->previews, sizeof tr->previews);
    nf_set_threads(c->threads);

    nf_status st;
    nf_train_progress p;
    memset(&p, 0, sizeof p);

    /* Data: decoded, resampled and cut once, kept in memory. */
    nf_dataset_opts dopt;
    nf_dataset_opts_default(&dopt);
    dopt.channels = c->channels;
    dopt.rate = c->sample_rate;
    dopt.length = (int)lrint(c->clip_seconds * c->sample_rate);
    if (dopt.length < 64) return nf_fail(NF_ERR_ARG, "training: clip length %.4g s is too short", c->clip_seconds);
    if ((st = nf_dataset_open(c->data_dir, &dopt, &tr->ds))) goto done;
    nf_dataset_summary_text(&tr->ds, tr->summary, sizeof tr->summary);
    tr->B = c->batch;
    tr->C = c->channels;
    tr->L = dopt.length;
    tr->num_classes = tr->ds.num_classes;

    /* Representation, with the scale that gives the encoded data unit RMS. */
    nf_repr_config rc;
    nf_repr_config_default(&rc, (nf_repr_kind)c->repr, c->channels);
    if (c->repr != NF_REPR_WAVE) {
        rc.n_fft = c->n_fft;
        rc.hop = c->hop;
        if (c->repr == NF_REPR_MAG && c->log_mag) rc.log_floor = nf_repr_log_floor(c->n_fft ? c->n_fft : 512);
        if (c->repr == NF_REPR_MAG) rc.phase_bins = c->phase_bins;
        if (c->power > 0) rc.power = c->power;
        rc.lead_frames = c->lead_frames;
    }
    if ((st = nf_repr_create(&rc, &tr->repr))) goto done;
    float scale = 1.0f;
    if ((st = nf_repr_estimate_scale(tr->repr, tr->ds.audio, tr->ds.n, tr->L, 256, &scale))) goto done;
    nf_repr_set_scale(tr->repr, scale);
    tr->Cm = nf_repr_channels(tr->repr);
    tr->Lm = nf_repr_length(tr->repr, tr->L);

    /* Network. */
    nf_unet_config uc;
    if (c->use_unet)
        uc = c->unet;
    else if ((st = nf_train_preset(c->preset ? c->preset : "small", c->repr, &uc)))
        goto done;
    uc.in_ch = uc.out_ch = tr->Cm;
    uc.num_classes = tr->num_classes;
    if ((st = nf_unet_config_check(&uc))) goto done;
    if ((st = nf_unet_create(&uc, tr->B, tr->Lm, &tr->net))) goto done;
    nf_unet_init_params(tr->net, c->seed);
    tr->np = nf_unet_num_params(tr->net);

    /* Diffusion. */
    if ((st = nf_schedule_init(&tr->sched, (nf_schedule_kind)c->schedule, c->T))) goto done;
    nf_loss_config_default(&tr->lossc);
    tr->lossc.pred = (nf_pred_kind)c->objective;
    tr->drawc.stratified = 0;
    tr->drawc.p_uncond = tr->num_classes > 0 ? c->cfg_dropout : 0.0f;

    /* Optimiser: weight decay on weight matrices and embeddings only (not on biases
     * and norm gains, the usual practice since Loshchilov & Hutter's experiments). */
    nf_adamw_config ac = nf_adamw_defaults();
    ac.weight_decay = c->weight_decay;
    if ((st = nf_adamw_init(&tr->opt, tr->np, &ac))) goto done;
    tr->decay_mask = calloc(tr->np, 1);
    if (!tr->decay_mask) {
        st = nf_fail(NF_ERR_NOMEM, "training: out of memory");
        goto done;
    }
    for (int i = 0; i < nf_unet_num_tensors(tr->net); i++) {
        const nf_param_info *pi = nf_unet_tensor(tr->net, i);
        if (pi->ndim >= 2) memset(tr->decay_mask + pi->offset, 1, pi->size);
    }
    tr->opt.decay_mask = tr->decay_mask;
    if ((st = nf_ema_init(&tr->ema, nf_unet_params(tr->net), tr->np, c->ema_decay, 1))) goto done;

    tr->lrs.shape = c->steps > 0 ? (nf_lr_shape)c->lr_schedule : NF_LR_CONSTANT;
    tr->lrs.lr = c->lr;
    tr->lrs.min_lr = c->min_lr > 0 ? c->min_lr : c->lr * 0.1f;
    tr->lrs.warmup_steps = c->warmup;
    if (c->steps > 0 && tr->lrs.warmup_steps > c->steps / 10) tr->lrs.warmup_steps = c->steps / 10;
    tr->lrs.total_steps = c->steps > 0 ? c->steps : 1;
    if ((st = nf_lr_schedule_check(&tr->lrs))) goto done;

    /* Buffers for one step. */
    size_t na = (size_t)tr->B * tr->C * tr->L, nm = (size_t)tr->B * tr->Cm * tr->Lm;
    tr->audio = malloc(sizeof(float) * na);
    tr->x0 = malloc(sizeof(float) * nm);
    tr->eps = malloc(sizeof(float) * nm);
    tr->xt = malloc(sizeof(float) * nm);
    tr->target = malloc(sizeof(float) * nm);
    tr->out = malloc(sizeof(float) * nm);
    tr->dout = malloc(sizeof(float) * nm);
    tr->t = malloc(sizeof(int) * (size_t)tr->B);
    tr->y = tr->num_classes > 0 ? malloc(sizeof(int) * (size_t)tr->B) : NULL;
    tr->tf = malloc(sizeof(float) * (size_t)tr->B);
    tr->per_ex = malloc(sizeof(double) * (size_t)tr->B);
    tr->backup = malloc(sizeof(float) * tr->np);
    tr->perm = malloc(sizeof(int) * (size_t)tr->ds.n);
    if (!tr->audio || !tr->x0 || !tr->eps || !tr->xt || !tr->target || !tr->out || !tr->dout || !tr->t ||
        (tr->num_classes > 0 && !tr->y) || !tr->tf || !tr->per_ex || !tr->backup || !tr->perm) {
        st = nf_fail(NF_ERR_NOMEM, "training: out of memory for a batch of %d", tr->B);
        goto done;
    }
    /* Previews need the label buffer even for one unconditional group. */
    if (!tr->y && c->preview_every > 0) {
        tr->y = malloc(sizeof(int) * (size_t)tr->B);
        if (!tr->y) {
            st = nf_fail(NF_ERR_NOMEM, "training: out of memory");
            goto done;
        }
    }
    int *labels = tr->num_classes > 0 ? tr->y : NULL;

    long long step = 0;
    if (c->resume) {
        if ((st = load_state(tr, &step))) goto done;
    }
    if ((st = open_log(tr, step))) goto done;

    p.total = c->steps;
    p.step = step;
    report(tr, &p, c->resume ? "resumed" : "loaded");

    double t0 = nf_now();
    long long first = step;
    double last_loss = NAN;
    int interrupted = 0;
    while (c->steps <= 0 || step < c->steps) {
        if (c->stop && *c->stop) {
            interrupted = 1;
            break;
        }
        if (c->minutes > 0 && nf_now() - t0 >= c->minutes * 60.0) break;

        load_batch(tr, step);
        if ((st = nf_repr_encode(tr->repr, tr->audio, tr->B, tr->L, tr->x0))) goto done;
        if ((st = nf_train_draw(&tr->drawc, &tr->sched, tr->lossc.pred, c->seed, (uint64_t)step, tr->x0, tr->B, tr->Cm,
                                tr->Lm, tr->t, tr->eps, tr->xt, tr->target, labels)))
            goto done;
        for (int b = 0; b < tr->B; b++) tr->tf[b] = (float)tr->t[b];
        if ((st = nf_unet_forward(tr->net, tr->xt, tr->tf, labels, tr->B, tr->Lm, tr->out, 1,
                                  nf_stream_id("dropout", c->seed, (uint64_t)step))))
            goto done;
        double loss = 0;
        if ((st = nf_loss(&tr->lossc, &tr->sched, tr->t, tr->x0, tr->xt, tr->eps, tr->out, tr->B, tr->Cm, tr->Lm, &loss,
                          tr->dout, tr->per_ex))) {
            /* The loss refuses non-finite values itself; say what that means here. */
            if (st == NF_ERR_NUMERIC)
                st = nf_fail(NF_ERR_NUMERIC, "training: the loss became non-finite at step %lld; stopped, %s keeps the last good checkpoint",
                             step + 1, tr->model_path);
            goto done;
        }
        if (!isfinite(loss)) {
            st = nf_fail(NF_ERR_NUMERIC, "training: the loss became %s at step %lld; stopped, %s keeps the last good checkpoint",
                         isnan(loss) ? "NaN" : "infinite", step + 1, tr->model_path);
            goto done;
        }
        if ((st = nf_unet_backward(tr->net, tr->dout, NULL))) goto done;
        float *grads = nf_unet_grads(tr->net), *params = nf_unet_params(tr->net);
        /* The norm was summed during the backward pass and clipping rides on the AdamW pass
         * (nf_adamw_step_scaled): neither has a pass of its own. */
        double gn = nf_unet_grad_norm(tr->net);
        if (!isfinite(gn)) {
            st = nf_fail(NF_ERR_NUMERIC, "training: the gradient became %s at step %lld; stopped, %s keeps the last good checkpoint",
                         isnan(gn) ? "NaN" : "infinite", step + 1, tr->model_path);
            goto done;
        }
        float lr = nf_lr_at(&tr->lrs, step);
        if ((st = nf_adamw_step_scaled(&tr->opt, params, grads, nf_clip_factor(gn, c->grad_clip), lr))) goto done;
        nf_ema_update(&tr->ema, params);
        /* The log and the smoothed curve use the loss rounded to float: "%.9g" prints a
         * float exactly, so a resumed run rebuilds the same curve from the log. */
        loss = (float)loss;
        if ((st = log_step(tr, step, loss, lr, gn))) goto done;
        double sm = smooth_push(tr, loss);
        if ((st = curve_push(tr, (float)sm))) goto done;
        step++;
        last_loss = loss;

        double el = nf_now() - t0;
        p.step = step;
        p.loss = loss;
        p.loss_smooth = sm;
        p.grad_norm = gn;
        p.lr = lr;
        p.elapsed_s = el;
        p.steps_per_s = el > 0 ? (double)(step - first) / el : 0;
        p.examples_per_s = p.steps_per_s * tr->B;
        if (c->steps > 0 && p.steps_per_s > 0) {
            p.eta_s = (double)(c->steps - step) / p.steps_per_s;
            if (c->minutes > 0 && c->minutes * 60.0 - el < p.eta_s) p.eta_s = c->minutes * 60.0 - el;
        } else {
            p.eta_s = c->minutes > 0 ? c->minutes * 60.0 - el : -1;
        }
        if (c->progress_every > 0 && step % c->progress_every == 0) report(tr, &p, NULL);

        int at_end = c->steps > 0 && step == c->steps;
        if (!at_end && c->checkpoint_every > 0 && step % c->checkpoint_every == 0) {
            fflush(tr->log);
            if ((st = save_checkpoint(tr, step))) goto done;
            report(tr, &p, "checkpoint");
        }
        if (c->preview_every > 0 && step % c->preview_every == 0) {
            if ((st = write_previews(tr, step))) goto done;
            report(tr, &p, "preview");
        }
    }
    (void)last_loss;
    fflush(tr->log);
    if ((st = save_checkpoint(tr, step))) goto done;
    p.step = step;
    report(tr, &p, interrupted ? "interrupted" : "done");
    if (interrupted) st = nf_fail(NF_ERR_INTERRUPTED, "training interrupted at step %lld; checkpoint written to %s", step, tr->model_path);

done:
    free_trainer(tr);
    return st;
}

/* ------------------------------------------------ checkpoint and state --- */

static void fill_desc(trainer *tr, long long step, nf_model_desc *d)
{
    const nf_train_config *c = tr->c;
    const nf_repr_config *rc = nf_repr_get_config(tr->repr);
    nf_model_desc_init(d);
    snprintf(d->representation, sizeof d->representation, "%s", nf_repr_kind_name((nf_repr_kind)c->repr));
    d->n_fft = c->repr ? rc->n_fft : 0;
    d->hop = c->repr ? rc->hop : 0;
    d->compress_power = c->repr ? rc->power : 1.0f;
    d->log_floor = rc->kind == NF_REPR_MAG ? rc->log_floor : 0.0f;
    d->phase_bins = rc->kind == NF_REPR_MAG ? rc->phase_bins : 0;
    d->lead_frames = rc->lead_frames;
    d->norm_scale = rc->scale;
    d->sample_rate = c->sample_rate;
    d->channels = tr->C;
    d->length = tr->L;
    snprintf(d->objective, sizeof d->objective, "%s", nf_pred_name((nf_pred_kind)c->objective));
    snprintf(d->schedule, sizeof d->schedule, "%s", c->schedule == NF_SCHEDULE_COSINE ? "cosine" : "linear");
    d->T = c->T;
    d->learned_variance = 0;
    d->num_classes = tr->num_classes;
    for (int i = 0; i < tr->num_classes && i < NF_CKPT_MAX_CLASSES; i++) {
        snprintf(d->class_names[i], NF_CKPT_NAME_MAX, "%s", tr->ds.class_names[i]);
        d->class_files[i] = tr->ds.per_class[i].used;
    }
    if (tr->num_classes == 0) d->class_files[0] = tr->ds.n;
    d->steps = step;
    d->examples_seen = step * tr->B;
    d->final_loss = tr->smooth_w > 0 ? tr->smooth / tr->smooth_w : 0;
    d->seed = c->seed;
    const char *keys[] = {"dataset", "preset", "data"};
    char first_line[256];
    snprintf(first_line, sizeof first_line, "%.*s", (int)strcspn(tr->summary, "\n"), tr->summary);
    const char *vals[] = {c->data_dir, c->use_unet ? "custom" : (c->preset ? c->preset : "small"), first_line};
    for (int i = 0; i < 3 && d->n_extra < NF_CKPT_MAX_EXTRA; i++) {
        snprintf(d->extra_key[d->n_extra], NF_CKPT_NAME_MAX, "%s", keys[i]);
        snprintf(d->extra_value[d->n_extra], sizeof d->extra_value[0], "%s", vals[i]);
        d->n_extra++;
    }
}

/* The model file (EMA weights as the ones to use, raw weights too) and the training
 * state, each written atomically: a failed write leaves the previous files whole.
 * A non-finite weight is never written over a good checkpoint. */
static nf_status save_checkpoint(trainer *tr, long long step)
{
    float *params = nf_unet_params(tr->net);
    if (!all_finite(params, tr->np) || !all_finite(tr->ema.shadow, tr->np))
        return nf_fail(NF_ERR_NUMERIC, "training: non-finite weights at step %lld; stopped, %s keeps the last good checkpoint",
                       step, tr->model_path);
    nf_train_state s;
    memset(&s, 0, sizeof s);
    s.n_params = tr->np;
    s.params = params;
    s.adam_m = tr->opt.m;
    s.adam_v = tr->opt.v;
    s.ema = tr->ema.shadow;
    s.step = step;
    long long pos = step * tr->B;
    s.epoch = pos / tr->ds.n;
    /* The data order is a function of (seed, epoch); it is stored anyway so the state
     * file says what comes next, and checked on resume. */
    if (tr->perm_epoch != s.epoch) {
        epoch_permutation(tr->perm, tr->ds.n, tr->c->seed, s.epoch);
        tr->perm_epoch = s.epoch;
    }
    int64_t *order = malloc(sizeof(int64_t) * (size_t)tr->ds.n);
    if (!order) return nf_fail(NF_ERR_NOMEM, "training: out of memory");
    for (int i = 0; i < tr->ds.n; i++) order[i] = tr->perm[i];
    s.order = order;
    s.n_order = (size_t)tr->ds.n;
    s.order_pos = pos % tr->ds.n;
    nf_rng_init(&s.rng, tr->c->seed, nf_stream_id("data-order", (uint64_t)s.epoch, 0));
    s.loss_scale = 1.0f;
    nf_weights_hash(tr->ema.shadow, tr->np, s.model_hash);

    /* The model first, then the state: a kill between the two leaves a model that is
     * newer than the state, and --resume (which takes every weight from the state)
     * repeats a few steps; the other order could leave a state with no model at all. */
    nf_status st;
    nf_model_desc d;
    fill_desc(tr, step, &d);
    /* The network's own parameters are the raw weights; the EMA goes beside them and is
     * what the engine loads. */
    if (tr->c->store_f16) {
        /* A file to ship: the EMA weights as the network's own, without the raw ones. */
        memcpy(tr->backup, params, sizeof(float) * tr->np);
        memcpy(params, tr->ema.shadow, sizeof(float) * tr->np);
        st = nf_checkpoint_save(tr->model_path, tr->net, NULL, &d, 1);
        memcpy(params, tr->backup, sizeof(float) * tr->np);
    } else {
        st = nf_checkpoint_save(tr->model_path, tr->net, tr->ema.shadow, &d, 0);
    }
    if (!st) st = nf_train_state_save(tr->state_path, &s);
    free(order);
    if (st) return st;
    return plot_loss(tr);
}

static int same_unet_config(const nf_unet_config *a, const nf_unet_config *b)
{
    if (a->in_ch != b->in_ch || a->out_ch != b->out_ch || a->base != b->base || a->n_levels != b->n_levels ||
        a->blocks != b->blocks || a->mid_attn != b->mid_attn || a->heads != b->heads || a->groups != b->groups ||
        a->num_classes != b->num_classes)
        return 0;
    for (int i = 0; i < a->n_levels; i++)
        if (a->mults[i] != b->mults[i] || a->attn[i] != b->attn[i]) return 0;
    return 1;
}

static nf_status load_state(trainer *tr, long long *step)
{
    const nf_train_config *c = tr->c;
    nf_checkpoint_info info;
    nf_status st = nf_checkpoint_read_info(tr->model_path, &info);
    if (st) return st;
    const nf_model_desc *d = &info.desc;
    if (!same_unet_config(&info.config, nf_unet_get_config(tr->net)))
        return nf_fail(NF_ERR_ARG, "%s: --resume: the model's network differs from these options (use the same --preset)",
                       tr->model_path);
    if (strcmp(d->representation, nf_repr_kind_name((nf_repr_kind)c->repr)) || d->sample_rate != c->sample_rate || d->length != tr->L ||
        d->channels != tr->C || d->T != c->T || strcmp(d->objective, nf_pred_name((nf_pred_kind)c->objective)))
        return nf_fail(NF_ERR_ARG,
                       "%s: --resume: trained with other settings (%s, %d Hz, %d samples, %d ch, T %d, %s); use the same options",
                       tr->model_path, d->representation, d->sample_rate, d->length, d->channels, d->T, d->objective);
    if (d->lead_frames != (c->repr == NF_REPR_WAVE ? 0 : c->lead_frames))
        return nf_fail(NF_ERR_ARG, "%s: --resume: trained with --lead-frames %d, not %d", tr->model_path, d->lead_frames,
                       c->lead_frames);
    if (d->seed != c->seed)
        return nf_fail(NF_ERR_ARG, "%s: --resume: trained with --seed %llu, not %llu", tr->model_path,
                       (unsigned long long)d->seed, (unsigned long long)c->seed);
    if (d->num_classes != tr->num_classes)
        return nf_fail(NF_ERR_ARG, "%s: --resume: the model has %d classes, the data %d", tr->model_path, d->num_classes,
                       tr->num_classes);

    nf_train_state s;
    memset(&s, 0, sizeof s);
    if ((st = nf_train_state_load(tr->state_path, tr->np, &s))) return st;
    if (!s.params || !s.adam_m || !s.adam_v || !s.ema) {
        nf_train_state_free(&s);
        return nf_fail(NF_ERR_CORRUPT, "%s: the training state lacks weights, moments or the EMA", tr->state_path);
    }
    if (s.step < 0 || (c->steps > 0 && s.step > c->steps)) {
        long long at = (long long)s.step;
        nf_train_state_free(&s);
        return nf_fail(NF_ERR_ARG, "%s: --resume: the state is at step %lld, beyond --steps %lld", tr->state_path, at,
                       c->steps);
    }
    /* The stored data order must be the one this seed and data give. */
    long long epoch = s.step * tr->B / tr->ds.n;
    if (s.n_order != (size_t)tr->ds.n) {
        size_t had = s.n_order;
        nf_train_state_free(&s);
        return nf_fail(NF_ERR_ARG, "%s: --resume: the state was made from %zu clips, the data has %d", tr->state_path, had,
                       tr->ds.n);
    }
    epoch_permutation(tr->perm, tr->ds.n, c->seed, epoch);
    tr->perm_epoch = epoch;
    for (int i = 0; i < tr->ds.n; i++)
        if (s.order[i] != tr->perm[i]) {
            nf_train_state_free(&s);
            return nf_fail(NF_ERR_ARG, "%s: --resume: the data order differs (batch size or data changed?)", tr->state_path);
        }
    memcpy(nf_unet_params(tr->net), s.params, sizeof(float) * tr->np);
    memcpy(tr->opt.m, s.adam_m, sizeof(float) * tr->np);
    memcpy(tr->opt.v, s.adam_v, sizeof(float) * tr->np);
    tr->opt.step = s.step;
    memcpy(tr->ema.shadow, s.ema, sizeof(float) * tr->np);
    tr->ema.updates = s.step;
    *step = s.step;
    nf_train_state_free(&s);
    return NF_OK;
}
