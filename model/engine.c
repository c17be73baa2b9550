/* The engine: a loaded model (network + representation + schedule) and the rendering
 * calls that the CLI and the plugin share. It glues the pieces together and owns no
 * math of its own: the samplers are in the diffusion core, the network in unet.c, the
 * STFT in dsp/. */
#include "nf_engine.h"
#include "nf_classifier.h"

#include "nf_checkpoint.h"
#include "nf_diffusion.h"
#include "nf_repr.h"
#include "nf_unet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

struct nf_model {
    char *path;
    nf_unet_config ucfg;
    float *params;          /* the weights used for sampling (EMA when present) */
    size_t n_params;
    nf_unet *net;           /* created lazily for the largest batch asked for */
    int net_batch;
    int model_length;       /* Lm: the network's time axis */
    nf_repr_config repr_cfg;
    nf_repr *repr;
    nf_schedule sched;      /* the training schedule */
    nf_pred_kind pred;
    int learned_var;
    nf_model_desc desc;
    const char *class_ptrs[NF_CKPT_MAX_CLASSES];
    nf_model_info info;
};

nf_status nf_model_load(const char *path, nf_model **out)
{
    if (!path || !out) return nf_fail(NF_ERR_ARG, "nf_model_load: NULL argument");
    *out = NULL;
    nf_checkpoint_info ci;
    nf_status s = nf_checkpoint_read_info(path, &ci);
    if (s) return s;
    nf_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    }
    m->desc = ci.desc;
    m->ucfg = ci.config;
    const nf_model_desc *d = &m->desc;

    int kind = nf_repr_kind_from_name(d->representation);
    int pred = nf_pred_from_name(d->objective);
    nf_schedule_kind sk = !strcmp(d->schedule, "linear") ? NF_SCHEDULE_LINEAR : NF_SCHEDULE_COSINE;
    if (kind < 0) { s = nf_fail(NF_ERR_CORRUPT, "%s: unknown representation '%s'", path, d->representation); goto fail; }
    if (pred < 0) { s = nf_fail(NF_ERR_CORRUPT, "%s: unknown objective '%s'", path, d->objective); goto fail; }
    if (strcmp(d->schedule, "linear") && strcmp(d->schedule, "cosine")) {
        s = nf_fail(NF_ERR_CORRUPT, "%s: unknown noise schedule '%s'", path, d->schedule);
        goto fail;
    }
    if (d->sample_rate < 1000 || d->sample_rate > 768000 || d->channels < 1 || d->channels > 2 ||
        d->length < 16 || d->length > (1 << 22)) {
        s = nf_fail(NF_ERR_CORRUPT, "%s: implausible audio format (%d Hz, %d channels, %d samples)", path,
                    d->sample_rate, d->channels, d->length);
        goto fail;
    }
    m->pred = (nf_pred_kind)pred;
    m->learned_var = d->learned_variance;

    if ((s = nf_model_desc_repr_config(d, &m->repr_cfg))) goto fail;
    if ((s = nf_repr_create(&m->repr_cfg, &m->repr))) goto fail;
    m->repr_cfg = *nf_repr_get_config(m->repr);
    m->model_length = nf_repr_length(m->repr, d->length);
    if (nf_repr_channels(m->repr) != m->ucfg.in_ch ||
        m->ucfg.out_ch != (m->learned_var ? 2 : 1) * m->ucfg.in_ch) {
        s = nf_fail(NF_ERR_CORRUPT, "%s: network has %d input / %d output channels, the %s representation needs %d",
                    path, m->ucfg.in_ch, m->ucfg.out_ch, d->representation, nf_repr_channels(m->repr));
        goto fail;
    }
    if (m->ucfg.num_classes != d->num_classes) {
        s = nf_fail(NF_ERR_CORRUPT, "%s: network has %d classes, the description %d", path,
                    m->ucfg.num_classes, d->num_classes);
        goto fail;
    }
    if ((s = nf_schedule_init(&m->sched, sk, d->T))) goto fail;

    if ((s = nf_checkpoint_load(path, 1, m->model_length, NF_CKPT_USE_EMA, &m->net, NULL, &ci))) goto fail;
    m->net_batch = 1;
    m->n_params = nf_unet_num_params(m->net);
    m->params = malloc(m->n_params * sizeof(float));
    if (!m->params) { s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    memcpy(m->params, nf_unet_params(m->net), m->n_params * sizeof(float));
    for (size_t i = 0; i < m->n_params; i++)
        if (!isfinite(m->params[i])) {
            s = nf_fail(NF_ERR_NUMERIC, "%s: the weights contain NaN or Inf", path);
            goto fail;
        }
    nf_unet_prepack(m->net); /* weights fixed from here on; NOMEM just leaves them unpacked */

    nf_model_info *info = &m->info;
    info->sample_rate = d->sample_rate;
    info->channels = d->channels;
    info->length = d->length;
    info->num_classes = d->num_classes;
    for (int i = 0; i < d->num_classes; i++) m->class_ptrs[i] = d->class_names[i];
    info->class_names = m->class_ptrs;
    info->representation = d->representation;
    info->objective = d->objective;
    info->train_steps = d->steps;
    info->param_count = (long long)m->n_params;
    info->flops_per_example = nf_unet_flops(&m->ucfg, m->model_length);
    memcpy(info->hash, ci.hash, sizeof info->hash);
    *out = m;
    return NF_OK;
fail:
    nf_model_free(m);
    return s;
}

void nf_model_free(nf_model *m)
{
    if (!m) return;
    nf_unet_free(m->net);
    nf_repr_free(m->repr);
    nf_schedule_free(&m->sched);
    free(m->params);
    free(m->path);
    free(m);
}

const nf_model_info *nf_model_get_info(const nf_model *m) { return &m->info; }
const nf_model_desc *nf_model_desc_get(const nf_model *m) { return &m->desc; } /* clfcli: nf_classifier.h */

int nf_model_class_index(const nf_model *m, const char *name)
{
    for (int i = 0; name && i < m->info.num_classes; i++)
        if (!strcasecmp(name, m->info.class_names[i])) return i;
    return -1;
}

/* The bundled default model: $NOISEFLOOR_DEFAULT_MODEL, else the installed copy, else
 * the one in the source tree (so a build that was not installed finds it too). */
const char *nf_default_model_path(void)
{
    const char *env = getenv("NOISEFLOOR_DEFAULT_MODEL");
    if (env && *env) return env;
    struct stat st;
    if (stat(NF_INSTALLED_MODEL, &st) == 0) return NF_INSTALLED_MODEL;
    return NF_SOURCE_MODEL;
}

/* ------------------------------------------------------------------ denoiser --- */

/* Make sure the network can take batches of B; grows by recreating it (the weights
 * live in m->params and are copied in). */
static nf_status ensure_net(nf_model *m, int B)
{
    if (m->net && m->net_batch >= B) return NF_OK;
    nf_unet *net;
    nf_status s = nf_unet_create(&m->ucfg, B, m->model_length, &net);
    if (s) return s;
    memcpy(nf_unet_params(net), m->params, m->n_params * sizeof(float));
    nf_unet_prepack(net); /* weights fixed from here on; NOMEM just leaves them unpacked */
    nf_unet_free(m->net);
    m->net = net;
    m->net_batch = B;
    return NF_OK;
}

/* The nf_denoiser_fn the samplers call: the U-Net in inference mode. */
static nf_status model_denoise(void *ctx, const float *x, const float *t, const int *y, int B,
                               int C, int L, float *out)
{
    nf_model *m = ctx;
    if (C != m->ucfg.in_ch || L > m->model_length)
        return nf_fail(NF_ERR_INTERNAL, "denoiser called with [%d, %d, %d]", B, C, L);
    nf_status s = ensure_net(m, B);
    if (s) return s;
    /* An unconditional model has no class embedding: every y is "no class". */
    return nf_unet_forward(m->net, x, t, m->ucfg.num_classes > 0 ? y : NULL, B, L, out, 0, 0);
}

/* ---------------------------------------------------------------- generation --- */

struct nf_gen {
    nf_model *m;
    int n;
    nf_sampler *sampler;
    float *init_x;    /* [n, Cm, Lm] encoded init audio (editing), or NULL */
    float *mask_x;    /* [Lm] mask in the model's time axis, or NULL */
    float *start;     /* [n, Cm, Lm] start noise override, or NULL */
    const float *init_audio; /* borrowed, for the exact splice of known audio */
    const float *known_mask; /* borrowed */
    int unchanged;    /* variation at strength 0: the result is the given audio itself */
    int threads;
    int fade;         /* fade-in length, samples */
};

void nf_gen_params_default(nf_gen_params *p)
{
    memset(p, 0, sizeof *p);
    /* Euler ancestral by default: with the deterministic samplers (DPM-Solver++, DDIM
     * eta 0) the bundled model gives some snares, claps and toms a quiet second swell
     * mid-clip, at any step count (checked at 20 and 100); drawing fresh noise at each
     * step removes it, and at the same 20 steps every class scores closer to the
     * corpus (tests/default). */
    p->sampler = NF_SAMPLER_EULER_A;
    p->steps = 0;
    p->eta = 0.0f;
    p->cfg_scale = 1.0f;
    p->class_id = -1;
    p->seed = 0;
    p->strength = 1.0f;
    p->classifier_scale = 1.0f;
    p->fade_in_ms = NF_FADE_IN_MS;
}

static const char *const sampler_names[NF_SAMPLER_COUNT] = {"dpmpp", "ddim", "ddpm", "langevin",
                                                              "euler_a"};

const char *nf_sampler_name(nf_sampler_kind k)
{
    return (unsigned)k < NF_SAMPLER_COUNT ? sampler_names[k] : "unknown";
}

int nf_sampler_from_name(const char *name)
{
    for (int i = 0; i < NF_SAMPLER_COUNT; i++)
        if (name && !strcasecmp(name, sampler_names[i])) return i;
    if (name && (!strcasecmp(name, "dpm") || !strcasecmp(name, "dpm++"))) return NF_SAMPLER_DPMPP;
    return -1;
}

int nf_model_positions(const nf_model *m) { return m->model_length; }

/* The model-domain mask for a sample-domain one: a position of the model's time axis is
 * known only when every audio sample it depends on is known (for the STFT: the frame's
 * whole window; for the waveform: the sample itself). */
void nf_model_known_positions(const nf_model *m, const float *mask, float *mx)
{
    int L = m->info.length, Lm = m->model_length;
    if (m->repr_cfg.kind == NF_REPR_WAVE) {
        for (int i = 0; i < Lm; i++) mx[i] = mask[i] >= 0.5f ? 1.0f : 0.0f;
        return;
    }
    int hop = m->repr_cfg.hop, half = m->repr_cfg.n_fft / 2, lead = m->repr_cfg.lead_frames;
    for (int j = 0; j < Lm; j++) {
        /* A lead frame over the silence before the clip depends on no sample: known. */
        int lo = (j - lead) * hop - half, hi = (j - lead) * hop + half;
        if (lo < 0) lo = 0;
        if (hi > L) hi = L;
        int known = 1;
        for (int i = lo; i < hi && known; i++) known = mask[i] >= 0.5f;
        mx[j] = known ? 1.0f : 0.0f;
    }
}

static nf_status check_params(const nf_model *m, const nf_gen_params *p, int n)
{
    if (n < 1) return nf_fail(NF_ERR_ARG, "number of sounds must be at least 1 (got %d)", n);
    if ((unsigned)p->sampler >= NF_SAMPLER_COUNT) return nf_fail(NF_ERR_ARG, "unknown sampler %d", (int)p->sampler);
    if (p->steps < 0 || p->steps > 10000) return nf_fail(NF_ERR_ARG, "steps must be 1..10000 (got %d)", p->steps);
    if (!(p->eta >= 0.0f && p->eta <= 1.0f)) return nf_fail(NF_ERR_ARG, "eta must be in [0, 1]");
    if (!(p->cfg_scale >= 0.0f && p->cfg_scale <= 100.0f)) return nf_fail(NF_ERR_ARG, "guidance scale must be in [0, 100]");
    if (!(p->strength >= 0.0f && p->strength <= 1.0f)) return nf_fail(NF_ERR_ARG, "strength must be in [0, 1]");
    if (p->classifier) { /* guide: classifier guidance */
        const nf_classifier_config *cc = nf_classifier_get_config(p->classifier);
        if (cc->in_ch != m->ucfg.in_ch)
            return nf_fail(NF_ERR_ARG, "the classifier takes %d channels, the model makes %d", cc->in_ch, m->ucfg.in_ch);
        if (m->info.num_classes > 0 && m->info.num_classes != cc->num_classes)
            return nf_fail(NF_ERR_ARG, "the classifier has %d classes, the model %d", cc->num_classes, m->info.num_classes);
        if (p->class_id < 0 || p->class_id >= cc->num_classes)
            return nf_fail(NF_ERR_ARG, "classifier guidance needs a class in 0..%d (got %d)", cc->num_classes - 1, p->class_id);
        if (!(p->classifier_scale >= 0.0f && p->classifier_scale <= 100.0f))
            return nf_fail(NF_ERR_ARG, "classifier scale must be in [0, 100]");
    } else if (p->class_id < -1 || p->class_id >= m->info.num_classes)
        return nf_fail(NF_ERR_ARG, "class %d does not exist (the model has %d classes)", p->class_id,
                       m->info.num_classes);
    if ((p->known_mask || p->strength < 1.0f) && !p->init_audio)
        return nf_fail(NF_ERR_ARG, "variation and inpainting need a sound to start from");
    if (p->particles < 0 || p->particles > 1024) return nf_fail(NF_ERR_ARG, "particles must be 0..1024 (got %d)", p->particles);
    if (!(p->fade_in_ms >= 0.0f && p->fade_in_ms <= 1000.0f))
        return nf_fail(NF_ERR_ARG, "fade-in must be 0..1000 ms (got %g)", (double)p->fade_in_ms);
    return NF_OK;
}

static nf_status gen_begin(nf_model *m, const nf_gen_params *p, int n, const float *start_noise,
                           nf_gen **out)
{
    *out = NULL;
    nf_status s = check_params(m, p, n);
    if (s) return s;
    nf_gen *g = calloc(1, sizeof *g);
    if (!g) return nf_fail(NF_ERR_NOMEM, "out of memory starting a render");
    g->m = m;
    g->n = n;
    g->threads = p->threads;
    g->fade = (int)lround((double)p->fade_in_ms * m->info.sample_rate / 1000.0);
    if (g->fade > m->info.length) g->fade = m->info.length;
    int Cm = m->ucfg.in_ch, Lm = m->model_length;
    size_t per = (size_t)Cm * Lm;

    nf_sampler_config c;
    nf_sampler_config_default(&c);
    c.kind = p->sampler;
    c.steps = p->steps;
    c.pred = m->pred;
    c.learned_var = m->learned_var;
    c.ddpm_var = m->learned_var ? NF_VAR_LEARNED : NF_VAR_BETA_TILDE;
    c.eta = p->eta;
    c.cfg_scale = m->info.num_classes > 0 && p->class_id >= 0 ? p->cfg_scale : 1.0f;
    c.strength = p->strength;
    c.repaint_jumps = p->repaint_jumps;
    c.particles = p->particles; /* the network then sees n * particles rows (ensure_net grows) */
    if (p->classifier) { /* guide: the classifier's grad log p(y | x_t) shifts each step */
        c.classifier = nf_classifier_guidance_fn;
        c.classifier_ctx = p->classifier;
        c.classifier_scale = p->classifier_scale;
    }

    if (p->init_audio) {
        g->init_x = malloc((size_t)n * per * sizeof(float));
        if (!g->init_x) { s = nf_fail(NF_ERR_NOMEM, "out of memory"); goto fail; }
        nf_set_threads(p->threads);
        s = nf_repr_encode(m->repr, p->init_audio, 1, m->info.length, g->init_x);
        if (s) goto fail;
        for (int k = 1; k < n; k++) memcpy(g->init_x + k * per, g->init_x, per * sizeof(float));
        c.init = g->init_x;
        g->init_audio = p->init_audio;
        g->unchanged = p->strength == 0.0f && !p->known_mask;
    }
    if (p->known_mask) {
        g->mask_x = malloc((size_t)Lm * sizeof(float));
        if (!g->mask_x) { s = nf_fail(NF_ERR_NOMEM, "out of memory"); goto fail; }
        nf_model_known_positions(m, p->known_mask, g->mask_x);
        c.mask = g->mask_x;
        g->known_mask = p->known_mask;
    }
    if (start_noise) {
        g->start = malloc((size_t)n * per * sizeof(float));
        if (!g->start) { s = nf_fail(NF_ERR_NOMEM, "out of memory"); goto fail; }
        memcpy(g->start, start_noise, (size_t)n * per * sizeof(float));
        c.start_noise = g->start;
    }
    s = nf_sampler_create(&m->sched, &c, n, Cm, Lm, &g->sampler);
    if (s) goto fail;
    int *y = malloc((size_t)n * sizeof(int));
    if (!y) { s = nf_fail(NF_ERR_NOMEM, "out of memory"); goto fail; }
    for (int k = 0; k < n; k++) y[k] = p->class_id;
    s = nf_sampler_init(g->sampler, model_denoise, m, y, p->seed);
    free(y);
    if (s) goto fail;
    *out = g;
    return NF_OK;
fail:
    nf_gen_free(g);
    return s;
}

nf_status nf_gen_begin(nf_model *m, const nf_gen_params *p, int n, nf_gen **out)
{
    if (!m || !p || !out) return nf_fail(NF_ERR_ARG, "nf_gen_begin: NULL argument");
    return gen_begin(m, p, n, NULL, out);
}

int nf_gen_step(nf_gen *g)
{
    if (nf_sampler_steps_left(g->sampler) == 0) return 0;
    nf_set_threads(g->threads);
    nf_status s = nf_sampler_step(g->sampler);
    if (s) return -(int)s;
    return nf_sampler_steps_left(g->sampler);
}

nf_status nf_gen_finish(nf_gen *g, float *out)
{
    nf_model *m = g->m;
    int C = m->info.channels, L = m->info.length;
    size_t per_m = (size_t)m->ucfg.in_ch * m->model_length, per_a = (size_t)C * L;
    float *x = malloc((size_t)g->n * per_m * sizeof(float));
    if (!x) return nf_fail(NF_ERR_NOMEM, "out of memory finishing a render");
    nf_status s = nf_sampler_finish(g->sampler, x);
    if (!s) {
        nf_set_threads(g->threads);
        s = nf_repr_decode(m->repr, x, g->n, L, out);
    }
    free(x);
    if (s) return s;
    for (int k = 0; k < g->n; k++) {
        float *o = out + k * per_a;
        /* The fade-in first: the splices below overwrite whatever of it lies in kept audio. */
        for (int c = 0; c < C; c++)
            for (int i = 0; i < g->fade; i++)
                o[(size_t)c * L + i] *= (float)(0.5 - 0.5 * cos(M_PI * i / g->fade));
        /* A variation of strength 0 is the input itself (decoding its encoding is exact
         * only to float precision for "stft", and not at all for "mag", whose phase
         * Griffin-Lim reinvents). */
        if (g->unchanged) memcpy(o, g->init_audio, per_a * sizeof(float));
        /* The known region of an edit is the given audio itself, to the bit. */
        if (g->known_mask)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < L; i++)
                    if (g->known_mask[i] >= 0.5f) o[(size_t)c * L + i] = g->init_audio[(size_t)c * L + i];
        float peak = 0.0f;
        for (size_t i = 0; i < per_a; i++) {
            if (!isfinite(o[i]))
                return nf_fail(NF_ERR_NUMERIC, "%s: the model produced non-finite audio", m->path);
            float a = fabsf(o[i]);
            if (a > peak) peak = a;
        }
        /* The training clips were peak-normalised; a render that overshoots full scale is
         * scaled back (not clipped), so every sound is playable as it is. */
        if (peak > 0.999f && !g->known_mask && !g->unchanged) {
            float gain = 0.999f / peak;
            for (size_t i = 0; i < per_a; i++) o[i] *= gain;
        }
    }
    return NF_OK;
}

void nf_gen_free(nf_gen *g)
{
    if (!g) return;
    nf_sampler_free(g->sampler);
    free(g->init_x);
    free(g->mask_x);
    free(g->start);
    free(g);
}

static nf_status run_gen(nf_gen *g, float *out)
{
    int left;
    while ((left = nf_gen_step(g)) > 0) {
    }
    if (left < 0) return (nf_status)(-left);
    return nf_gen_finish(g, out);
}

nf_status nf_generate(nf_model *m, const nf_gen_params *p, int n, float *out)
{
    nf_gen *g;
    nf_status s = nf_gen_begin(m, p, n, &g);
    if (s) return s;
    s = run_gen(g, out);
    nf_gen_free(g);
    return s;
}

nf_status nf_interpolate_seeds(nf_model *m, const nf_gen_params *p, uint64_t seed_a, uint64_t seed_b,
                               int K, float *out)
{
    if (!m || !p || !out || K < 2) return nf_fail(NF_ERR_ARG, "interpolation needs at least 2 points");
    size_t per = (size_t)m->ucfg.in_ch * m->model_length;
    float *a = malloc(per * sizeof(float)), *b = malloc(per * sizeof(float));
    float *noise = malloc((size_t)K * per * sizeof(float));
    nf_status s = NF_OK;
    if (!a || !b || !noise) s = nf_fail(NF_ERR_NOMEM, "out of memory");
    if (!s) {
        nf_start_noise(seed_a, 1, per, a);
        nf_start_noise(seed_b, 1, per, b);
        for (int k = 0; k < K; k++) nf_slerp(a, b, per, (double)k / (K - 1), noise + k * per);
        nf_gen_params q = *p;
        q.seed = seed_a;
        nf_gen *g;
        s = gen_begin(m, &q, K, noise, &g);
        if (!s) {
            s = run_gen(g, out);
            nf_gen_free(g);
        }
    }
    free(a);
    free(b);
    free(noise);
    return s;
}

nf_status nf_interpolate_sounds(nf_model *m, const nf_gen_params *p, const float *sa, const float *sb,
                                int K, float *out)
{
    if (!m || !p || !sa || !sb || !out || K < 2) return nf_fail(NF_ERR_ARG, "interpolation needs two sounds and at least 2 points");
    nf_gen_params q = *p;
    q.sampler = NF_SAMPLER_DDIM;
    q.eta = 0.0f;
    q.init_audio = NULL;
    q.known_mask = NULL;
    q.strength = 1.0f;
    nf_status s = check_params(m, &q, K);
    if (s) return s;
    int Cm = m->ucfg.in_ch, Lm = m->model_length, L = m->info.length;
    size_t per = (size_t)Cm * Lm, per_a = (size_t)m->info.channels * L;
    float *x0 = malloc(2 * per * sizeof(float)), *xT = malloc(2 * per * sizeof(float));
    float *noise = malloc((size_t)K * per * sizeof(float));
    float *both = malloc(2 * per_a * sizeof(float));
    int y[2] = {q.class_id, q.class_id};
    if (!x0 || !xT || !noise || !both) s = nf_fail(NF_ERR_NOMEM, "out of memory");
    if (!s) {
        memcpy(both, sa, per_a * sizeof(float));
        memcpy(both + per_a, sb, per_a * sizeof(float));
        nf_set_threads(q.threads);
        s = nf_repr_encode(m->repr, both, 2, L, x0);
    }
    if (!s) {
        nf_sampler_config c;
        nf_sampler_config_default(&c);
        c.kind = NF_SAMPLER_DDIM;
        c.steps = q.steps;
        c.pred = m->pred;
        c.learned_var = m->learned_var;
        c.eta = 0.0;
        c.cfg_scale = m->info.num_classes > 0 && q.class_id >= 0 ? q.cfg_scale : 1.0f;
        s = nf_ddim_invert(&m->sched, &c, model_denoise, m, y, x0, 2, Cm, Lm, xT);
    }
    if (!s) {
        for (int k = 0; k < K; k++) nf_slerp(xT, xT + per, per, (double)k / (K - 1), noise + k * per);
        nf_gen *g;
        s = gen_begin(m, &q, K, noise, &g);
        if (!s) {
            s = run_gen(g, out);
            nf_gen_free(g);
        }
    }
    free(x0);
    free(xT);
    free(noise);
    free(both);
    return s;
}
