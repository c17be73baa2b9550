/* noisefloor.lv2: an LV2 instrument that plays freshly generated drum hits.
 *
 * A thin face over the library (model/nf_engine.h): MIDI note-ons play takes that the
 * LV2 worker renders with the diffusion engine. The threads and who owns what:
 *
 *  - Audio thread (run, work_response): owns the Bank (note map + pools of finished
 *    takes, at the host's rate) and the voices. It never allocates, locks, reads files
 *    or calls the engine. It sends small messages to the worker (load a model, new
 *    settings, "take (slot, index) was used", "continue rendering", "free this").
 *  - Worker thread (work): owns the model and renders takes in bounded chunks
 *    (STEPS_PER_CHUNK network evaluations per work() call), resamples them to the host
 *    rate and hands each finished take to the audio thread. Everything the audio thread
 *    drops (an old bank, a replaced take) comes back here to be freed, so nothing is
 *    ever freed while run() might still read it.
 *  - save/restore (Instantiation class, never concurrent with run()) share the worker's
 *    state under `wlock`, a mutex the audio thread never touches.
 *
 * Pools: every class the note map uses is a "slot" with up to MAX_POOL takes. A note-on
 * plays the slot's next ready take (round robin, never the same index twice in a row
 * when the pool has two or more), and asks the worker to re-render that index with the
 * next seed (base seed + per-slot counter), so a pattern never repeats a sample. The
 * old take stays playable until its replacement arrives. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <samplerate.h>
#include <sndfile.h>

#include <lv2/atom/atom.h>
#include <lv2/atom/forge.h>
#include <lv2/atom/util.h>
#include <lv2/core/lv2.h>
#include <lv2/log/log.h>
#include <lv2/log/logger.h>
#include <lv2/midi/midi.h>
#include <lv2/patch/patch.h>
#include <lv2/state/state.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>

#include "nf_engine.h"

#define NF_URI "https://noisefloor.dev/lv2/noisefloor"
#define NF__model NF_URI "#model"
#define NF__seed NF_URI "#seed"
#define NF__steps NF_URI "#steps"
#define NF__guidance NF_URI "#guidance"
#define NF__variation NF_URI "#variation"
#define NF__pool NF_URI "#pool"
#define NF__takes NF_URI "#takes"

#define MAX_SLOTS 32
#define MAX_POOL 16
#define MAX_VOICES 32
#define STEPS_PER_CHUNK 2
#define TAKES_INDEX_MAGIC "noisefloor-takes 1"

enum {
    P_CONTROL = 0, P_NOTIFY, P_OUT_L, P_OUT_R, P_GAIN, P_VELSENS, P_SEED, P_STEPS,
    P_GUIDANCE, P_VARIATION, P_POOL, P_TUNE, P_LENGTH, P_NEWTAKES, P_COUNT
};

/* A finished take at the host's rate, stereo planar: data[c * frames + i]. */
typedef struct {
    float *data;
    int frames;
    int playing;  /* voices playing it (audio thread only) */
    bool retired; /* replaced in its pool: free once no voice plays it */
    uint64_t seed;
} Take;

/* What the audio thread plays. Built by the worker (or restore), swapped in by
 * work_response, freed by the worker. */
typedef struct {
    uint32_t epoch;
    int n_slots;
    int8_t note_slot[128]; /* -1: the note is silent */
    Take *pool[MAX_SLOTS][MAX_POOL];
    int cursor[MAX_SLOTS];
    int last[MAX_SLOTS];
    char path[NF_PATH_MAX]; /* model path, for patch:Get and the notify port */
} Bank;

typedef struct {
    int64_t seed;
    int steps;
    float guidance;
    float variation;
    int pool;
} Config;

typedef struct {
    Take *take;
    double pos, rate;
    float amp, env, env_mul;
    uint64_t age;
} Voice;

/* Messages. Audio -> worker: */
enum { MSG_LOAD = 1, MSG_CONFIG, MSG_NEW_TAKES, MSG_USED, MSG_CONTINUE, MSG_FREE_TAKE,
       MSG_FREE_BANK };
/* Worker -> audio: */
enum { RSP_BANK = 100, RSP_TAKE, RSP_PROGRESS };

typedef struct { uint32_t type; uint32_t len; char path[NF_PATH_MAX]; } MsgLoad;
typedef struct { uint32_t type; Config cfg; } MsgConfig;
typedef struct { uint32_t type; uint32_t epoch; int slot, index; } MsgUsed;
typedef struct { uint32_t type; void *ptr; } MsgPtr;
typedef struct { uint32_t type; uint32_t epoch; int slot, index; Take *take; } RspTake;
typedef struct { uint32_t type; int more; } RspProgress;

typedef struct {
    LV2_URID atom_Path, atom_String, atom_Int, atom_Long, atom_Float, atom_URID,
        atom_eventTransfer, midi_Event, patch_Set, patch_Get, patch_property, patch_value,
        nf_model, nf_seed, nf_steps, nf_guidance, nf_variation, nf_pool, nf_takes;
} Uris;

/* Worker-side state, guarded by wlock (worker, save and restore; never the audio
 * thread). */
typedef struct {
    nf_model *model;
    const nf_model_info *info;
    char path[NF_PATH_MAX]; /* the model asked for ("" = the default model) */
    Config cfg;
    bool have_cfg;
    uint32_t epoch;
    int n_slots;
    int slot_class[MAX_SLOTS];
    int8_t note_slot[128];
    uint64_t counter[MAX_SLOTS];
    float *anchor[MAX_SLOTS]; /* model-rate render of the base seed (SDEdit source) */
    Take *shadow[MAX_SLOTS][MAX_POOL]; /* takes sent for the current epoch */
    bool need[MAX_SLOTS][MAX_POOL];
    /* a saved take whose file went missing is rendered again with its own seed */
    uint64_t need_seed[MAX_SLOTS][MAX_POOL];
    bool need_seeded[MAX_SLOTS][MAX_POOL];
    /* the job in progress */
    nf_gen *gen;
    int job_slot, job_index; /* job_index -1: the slot's anchor */
    uint64_t job_seed;
    float *gen_out;
    bool warned_sdedit;
} WorkerState;

typedef struct {
    LV2_URID_Map *map;
    LV2_Worker_Schedule *schedule;
    LV2_Log_Logger logger;
    LV2_Atom_Forge forge;
    Uris u;
    double rate;

    const LV2_Atom_Sequence *control;
    LV2_Atom_Sequence *notify;
    float *out[2];
    const float *ctl[P_COUNT];

    /* audio thread */
    Bank *bank;
    Voice voices[MAX_VOICES];
    uint64_t voice_clock;
    Config sent;          /* last settings sent to the worker */
    bool sent_valid;
    bool load_requested;  /* a model load was asked for (or restored) */
    bool more;            /* the worker has rendering left to do */
    bool continue_outstanding;
    bool notify_model;
    float newtakes_prev;
    float gain_cur;
    float gain_coef;
    MsgLoad load_msg;     /* preallocated: run() builds load requests here */

    pthread_mutex_t wlock;
    WorkerState w;
} Plugin;

/* ---------------------------------------------------------------- helpers */

static void take_free(Take *t)
{
    if (t) {
        free(t->data);
        free(t);
    }
}

static void bank_free(Bank *b)
{
    if (!b) return;
    for (int s = 0; s < MAX_SLOTS; s++)
        for (int i = 0; i < MAX_POOL; i++) take_free(b->pool[s][i]);
    free(b);
}

/* Control values from a host can be anything, NaN included: NaN fails every
 * comparison, so it is sent to `lo` explicitly instead of slipping through. */
static float clampf(float x, float lo, float hi)
{
    if (!(x >= lo)) return lo;
    return x > hi ? hi : x;
}

/* The settings the controls ask for (audio thread: read control ports). */
static Config controls_config(const Plugin *p)
{
    Config c;
    memset(&c, 0, sizeof c); /* padding too: configs are compared field by field */
    float seed = p->ctl[P_SEED] ? *p->ctl[P_SEED] : 1.0f;
    c.seed = (int64_t)llroundf(clampf(seed, 0.0f, 16777215.0f));
    c.steps = p->ctl[P_STEPS] ? (int)lroundf(clampf(*p->ctl[P_STEPS], 1, 200)) : 20;
    c.guidance = p->ctl[P_GUIDANCE] ? clampf(*p->ctl[P_GUIDANCE], 0, 20) : 2.0f;
    c.variation = p->ctl[P_VARIATION] ? clampf(*p->ctl[P_VARIATION], 0, 1) : 0.5f;
    c.pool = p->ctl[P_POOL] ? (int)lroundf(clampf(*p->ctl[P_POOL], 1, MAX_POOL)) : 4;
    return c;
}

static bool config_equal(const Config *a, const Config *b)
{
    return a->seed == b->seed && a->steps == b->steps && a->guidance == b->guidance &&
           a->variation == b->variation && a->pool == b->pool;
}

/* ---------------------------------------------------------------- note map */

/* General MIDI percussion (GM1 Level 1 key map) grouped by instrument, with the class
 * names we accept for each group, best first. Names are compared lower-case with
 * everything but letters and digits removed: an exact match wins, then a substring. */
static const struct {
    int notes[8];
    const char *keys[8];
} gm_groups[] = {
    {{35, 36, -1}, {"kick", "bassdrum", "bd", "kik", NULL}},
    {{38, 40, -1}, {"snare", "sd", "snr", NULL}},
    {{37, -1}, {"rim", "rimshot", "sidestick", "snare", NULL}},
    {{39, -1}, {"clap", "handclap", "snap", "snare", NULL}},
    {{42, 44, -1}, {"closedhat", "closedhihat", "chh", "hatclosed", "hihatclosed", "ch",
                    "hat", "hh"}},
    {{46, -1}, {"openhat", "openhihat", "ohh", "hatopen", "hihatopen", "oh", "hat", "hh"}},
    {{41, 43, 45, 47, 48, 50, -1}, {"tom", "toms", NULL}},
    {{49, 57, -1}, {"crash", "cymbal", "cym", NULL}},
    {{51, 59, 53, -1}, {"ride", "cymbal", "cym", NULL}},
    {{52, 55, -1}, {"china", "splash", "crash", "cymbal", NULL}},
    {{54, -1}, {"tambourine", "tamb", "shaker", "perc", NULL}},
    {{56, -1}, {"cowbell", "bell", "perc", NULL}},
    {{70, 82, -1}, {"shaker", "maracas", "tambourine", "perc", NULL}},
    {{75, 76, 77, -1}, {"clave", "woodblock", "block", "perc", NULL}},
};

static void normalize_name(const char *in, char *out, size_t n)
{
    size_t k = 0;
    for (; *in && k + 1 < n; in++) {
        char c = *in;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) out[k++] = c;
    }
    out[k] = 0;
}

static int find_class(const nf_model_info *info, const char *const *keys, int nkeys)
{
    char name[128];
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < nkeys && keys[k]; k++)
            for (int c = 0; c < info->num_classes; c++) {
                normalize_name(info->class_names[c] ? info->class_names[c] : "", name,
                               sizeof name);
                if (pass == 0 ? strcmp(name, keys[k]) == 0
                              : (strlen(keys[k]) >= 3 && strstr(name, keys[k]) != NULL))
                    return c;
            }
    return -1;
}

/* Fill w->note_slot, w->slot_class and w->n_slots from the model's classes. */
static void build_note_map(WorkerState *w)
{
    memset(w->note_slot, -1, sizeof w->note_slot);
    w->n_slots = 0;
    if (!w->info || w->info->num_classes <= 0) {
        /* unconditional model: every note plays takes of the one pool */
        w->n_slots = 1;
        w->slot_class[0] = -1;
        memset(w->note_slot, 0, sizeof w->note_slot);
        return;
    }
    int class_slot[256];
    for (int c = 0; c < 256; c++) class_slot[c] = -1;
    for (size_t g = 0; g < sizeof gm_groups / sizeof gm_groups[0]; g++) {
        int c = find_class(w->info, gm_groups[g].keys, 8);
        if (c < 0 || c >= 256) continue;
        if (class_slot[c] < 0) {
            if (w->n_slots >= MAX_SLOTS) continue;
            class_slot[c] = w->n_slots;
            w->slot_class[w->n_slots++] = c;
        }
        for (int k = 0; k < 8 && gm_groups[g].notes[k] >= 0; k++)
            w->note_slot[gm_groups[g].notes[k]] = (int8_t)class_slot[c];
    }
    if (w->n_slots == 0) {
        /* no class has a drum name: lay them out chromatically from note 36 */
        int n = w->info->num_classes < MAX_SLOTS ? w->info->num_classes : MAX_SLOTS;
        for (int c = 0; c < n && 36 + c < 128; c++) {
            w->slot_class[c] = c;
            w->note_slot[36 + c] = (int8_t)c;
        }
        w->n_slots = n;
    }
}

/* ---------------------------------------------------------------- worker side */

static void worker_abort_job(WorkerState *w)
{
    if (w->gen) {
        nf_gen_free(w->gen);
        w->gen = NULL;
    }
}

static void worker_free_anchors(WorkerState *w)
{
    for (int s = 0; s < MAX_SLOTS; s++) {
        free(w->anchor[s]);
        w->anchor[s] = NULL;
    }
}

static bool worker_need_anchor(const WorkerState *w)
{
    return w->cfg.variation < 0.999f;
}

static void worker_need_all(WorkerState *w)
{
    for (int s = 0; s < w->n_slots; s++)
        for (int i = 0; i < w->cfg.pool && i < MAX_POOL; i++) w->need[s][i] = true;
}

static bool worker_pending(const WorkerState *w)
{
    if (!w->model) return false;
    if (w->gen) return true;
    for (int s = 0; s < w->n_slots; s++)
        for (int i = 0; i < w->cfg.pool && i < MAX_POOL; i++)
            if (w->need[s][i]) return true;
    return false;
}

/* A new Bank for the current model (empty pools, or the shadow's takes). */
static Bank *worker_make_bank(WorkerState *w, bool with_shadow)
{
    Bank *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->epoch = ++w->epoch;
    b->n_slots = w->model ? w->n_slots : 0;
    if (w->model)
        memcpy(b->note_slot, w->note_slot, sizeof b->note_slot);
    else
        memset(b->note_slot, -1, sizeof b->note_slot);
    for (int s = 0; s < MAX_SLOTS; s++) {
        b->last[s] = -1;
        for (int i = 0; i < MAX_POOL; i++)
            b->pool[s][i] = with_shadow ? w->shadow[s][i] : NULL;
    }
    snprintf(b->path, sizeof b->path, "%s", w->path[0] ? w->path : nf_default_model_path());
    return b;
}

/* Swap the model (path "" = the default). On failure the plugin keeps running with no
 * model, silent, and says why in the log. The shadow is reset: the old takes belong to
 * the old bank and are freed with it. */
static void worker_load_model(Plugin *p, const char *path)
{
    WorkerState *w = &p->w;
    worker_abort_job(w);
    worker_free_anchors(w);
    free(w->gen_out);
    w->gen_out = NULL;
    if (w->model) nf_model_free(w->model);
    w->model = NULL;
    w->info = NULL;
    memset(w->shadow, 0, sizeof w->shadow);
    memset(w->need, 0, sizeof w->need);
    memset(w->need_seeded, 0, sizeof w->need_seeded);
    memset(w->counter, 0, sizeof w->counter);
    snprintf(w->path, sizeof w->path, "%s", path);

    const char *real = path[0] ? path : nf_default_model_path();
    nf_model *m = NULL;
    nf_status st = real ? nf_model_load(real, &m) : NF_ERR_ARG;
    if (st != NF_OK) {
        lv2_log_error(&p->logger, "noisefloor: cannot load model %s: %s\n",
                      real ? real : "(none)", nf_last_error());
        return;
    }
    const nf_model_info *info = nf_model_get_info(m);
    size_t n = (size_t)info->channels * (size_t)info->length;
    w->gen_out = malloc(n * sizeof(float));
    if (!w->gen_out || info->length <= 0 || info->sample_rate <= 0) {
        lv2_log_error(&p->logger, "noisefloor: model %s is unusable (length %d, rate %d)\n",
                      real, info->length, info->sample_rate);
        nf_model_free(m);
        free(w->gen_out);
        w->gen_out = NULL;
        return;
    }
    w->model = m;
    w->info = info;
    build_note_map(w);
    lv2_log_note(&p->logger, "noisefloor: loaded %s (%d classes, %d Hz, %d samples)\n",
                 real, info->num_classes, info->sample_rate, info->length);
}

/* Resample a model-rate render to a stereo take at the host's rate (libsamplerate;
 * worker thread only: it allocates). */
static Take *make_take(const Plugin *p, const float *src, uint64_t seed)
{
    const nf_model_info *info = p->w.info;
    int ch = info->channels, len = info->length;
    double ratio = p->rate / (double)info->sample_rate;
    long out_frames = lround(len * ratio);
    if (out_frames < 1) out_frames = 1;
    Take *t = calloc(1, sizeof *t);
    float *inter_in = malloc((size_t)len * 2 * sizeof(float));
    float *inter_out = malloc((size_t)out_frames * 2 * sizeof(float));
    if (t) t->data = calloc((size_t)out_frames * 2, sizeof(float));
    if (!t || !t->data || !inter_in || !inter_out) goto fail;
    for (int i = 0; i < len; i++) {
        float l = src[i], r = ch > 1 ? src[len + i] : src[i];
        /* a model that blows up must not blow up the speakers */
        inter_in[2 * i] = isfinite(l) ? clampf(l, -4, 4) : 0.0f;
        inter_in[2 * i + 1] = isfinite(r) ? clampf(r, -4, 4) : 0.0f;
    }
    long gen = 0;
    if (fabs(ratio - 1.0) < 1e-12) {
        memcpy(inter_out, inter_in, (size_t)len * 2 * sizeof(float));
        gen = len;
    } else {
        SRC_DATA d;
        memset(&d, 0, sizeof d);
        d.data_in = inter_in;
        d.data_out = inter_out;
        d.input_frames = len;
        d.output_frames = out_frames;
        d.src_ratio = ratio;
        d.end_of_input = 1;
        if (src_simple(&d, SRC_SINC_MEDIUM_QUALITY, 2) != 0) goto fail;
        gen = d.output_frames_gen;
    }
    t->frames = (int)out_frames;
    for (long i = 0; i < gen && i < out_frames; i++) {
        t->data[i] = inter_out[2 * i];
        t->data[out_frames + i] = inter_out[2 * i + 1];
    }
    t->seed = seed;
    free(inter_in);
    free(inter_out);
    return t;
fail:
    free(inter_in);
    free(inter_out);
    take_free(t);
    return NULL;
}

/* Pick the next job: index-major (every slot gets a first take before any gets a
 * second), a slot's anchor before its first SDEdit take. */
static bool worker_next_job(WorkerState *w, int *slot, int *index)
{
    for (int i = 0; i < w->cfg.pool && i < MAX_POOL; i++)
        for (int s = 0; s < w->n_slots; s++)
            if (w->need[s][i]) {
                *slot = s;
                *index = (worker_need_anchor(w) && !w->anchor[s]) ? -1 : i;
                return true;
            }
    return false;
}

static void worker_base_params(const WorkerState *w, int slot, nf_gen_params *gp)
{
    nf_gen_params_default(gp);
    gp->steps = w->cfg.steps;
    gp->cfg_scale = w->cfg.guidance;
    gp->class_id = w->slot_class[slot];
    gp->threads = 1; /* leave the other cores to the audio thread and the DAW */
    const char *t = getenv("NF_PLUGIN_THREADS");
    if (t) gp->threads = atoi(t);
}

/* Start the next job; returns false when there is nothing to do. A take that is a plain
 * copy of the anchor (variation 0) completes at once. */
static bool worker_start_job(Plugin *p, LV2_Worker_Respond_Function respond,
                             LV2_Worker_Respond_Handle handle)
{
    WorkerState *w = &p->w;
    int slot, index;
    while (worker_next_job(w, &slot, &index)) {
        nf_gen_params gp;
        worker_base_params(w, slot, &gp);
        w->job_slot = slot;
        w->job_index = index;
        if (index < 0) {
            gp.seed = (uint64_t)w->cfg.seed;
        } else {
            if (w->need_seeded[slot][index]) {
                w->job_seed = w->need_seed[slot][index];
                w->need_seeded[slot][index] = false;
            } else {
                w->job_seed = (uint64_t)w->cfg.seed + w->counter[slot]++;
            }
            gp.seed = w->job_seed;
            if (worker_need_anchor(w)) {
                if (w->cfg.variation <= 0.001f) {
                    /* no variation: every take is the anchor itself */
                    Take *t = make_take(p, w->anchor[slot], (uint64_t)w->cfg.seed);
                    w->need[slot][index] = false;
                    if (!t) continue;
                    w->shadow[slot][index] = t;
                    RspTake r = {RSP_TAKE, w->epoch, slot, index, t};
                    if (respond(handle, sizeof r, &r) != LV2_WORKER_SUCCESS) {
                        w->shadow[slot][index] = NULL;
                        take_free(t);
                    }
                    continue;
                }
                /* SDEdit (Meng et al. 2022): noise the anchor to t = strength * T and
                 * denoise it back, so takes stay recognisably the same instrument. */
                gp.init_audio = w->anchor[slot];
                gp.strength = w->cfg.variation;
            }
        }
        nf_status st = nf_gen_begin(w->model, &gp, 1, &w->gen);
        if (st != NF_OK && gp.init_audio) {
            if (!w->warned_sdedit)
                lv2_log_warning(&p->logger,
                                "noisefloor: variation not available (%s); rendering "
                                "independent takes\n", nf_last_error());
            w->warned_sdedit = true;
            gp.init_audio = NULL;
            gp.strength = 0;
            st = nf_gen_begin(w->model, &gp, 1, &w->gen);
        }
        if (st != NF_OK) {
            lv2_log_error(&p->logger, "noisefloor: generation failed: %s\n", nf_last_error());
            w->gen = NULL;
            /* do not spin on a job that cannot start */
            if (index >= 0) w->need[slot][index] = false;
            else memset(w->need[slot], 0, sizeof w->need[slot]);
            continue;
        }
        return true;
    }
    return false;
}

/* Finish the job in progress: an anchor is kept here, a take goes to the audio
 * thread. */
static void worker_finish_job(Plugin *p, LV2_Worker_Respond_Function respond,
                              LV2_Worker_Respond_Handle handle)
{
    WorkerState *w = &p->w;
    nf_status st = nf_gen_finish(w->gen, w->gen_out);
    nf_gen_free(w->gen);
    w->gen = NULL;
    int s = w->job_slot, i = w->job_index;
    if (st != NF_OK) {
        lv2_log_error(&p->logger, "noisefloor: generation failed: %s\n", nf_last_error());
        if (i >= 0) w->need[s][i] = false;
        else memset(w->need[s], 0, sizeof w->need[s]);
        return;
    }
    if (i < 0) {
        size_t n = (size_t)w->info->channels * (size_t)w->info->length;
        float *a = malloc(n * sizeof(float));
        if (!a) {
            memset(w->need[s], 0, sizeof w->need[s]);
            return;
        }
        memcpy(a, w->gen_out, n * sizeof(float));
        free(w->anchor[s]);
        w->anchor[s] = a;
        return;
    }
    w->need[s][i] = false;
    Take *t = make_take(p, w->gen_out, w->job_seed);
    if (!t) return;
    w->shadow[s][i] = t;
    RspTake r = {RSP_TAKE, w->epoch, s, i, t};
    if (respond(handle, sizeof r, &r) != LV2_WORKER_SUCCESS) {
        w->shadow[s][i] = NULL;
        take_free(t);
    }
}

/* One bounded chunk of rendering: at most STEPS_PER_CHUNK network evaluations. */
static void worker_render_chunk(Plugin *p, LV2_Worker_Respond_Function respond,
                                LV2_Worker_Respond_Handle handle)
{
    WorkerState *w = &p->w;
    if (!w->model) return;
    for (int k = 0; k < STEPS_PER_CHUNK; k++) {
        if (!w->gen && !worker_start_job(p, respond, handle)) return;
        int left = nf_gen_step(w->gen);
        if (left < 0) {
            lv2_log_error(&p->logger, "noisefloor: generation step failed: %s\n",
                          nf_last_error());
            worker_abort_job(w);
            if (w->job_index >= 0) w->need[w->job_slot][w->job_index] = false;
            else memset(w->need[w->job_slot], 0, sizeof w->need[w->job_slot]);
            continue;
        }
        if (left == 0) worker_finish_job(p, respond, handle);
    }
}

static void worker_set_config(WorkerState *w, const Config *c)
{
    if (w->have_cfg && config_equal(&w->cfg, c)) return;
    Config old = w->cfg;
    bool had = w->have_cfg;
    w->cfg = *c;
    w->have_cfg = true;
    if (had && old.seed == c->seed && old.steps == c->steps &&
        old.guidance == c->guidance && old.variation == c->variation) {
        /* only the pool size changed: render the new indices, keep the rest */
        for (int s = 0; s < w->n_slots; s++)
            for (int i = 0; i < c->pool && i < MAX_POOL; i++)
                if (!w->shadow[s][i]) w->need[s][i] = true;
        return;
    }
    worker_abort_job(w);
    memset(w->need_seeded, 0, sizeof w->need_seeded);
    if (!had || old.seed != c->seed) memset(w->counter, 0, sizeof w->counter);
    if (!had || old.seed != c->seed || old.steps != c->steps || old.guidance != c->guidance)
        worker_free_anchors(w);
    if (w->model) worker_need_all(w);
}

static LV2_Worker_Status work(LV2_Handle instance, LV2_Worker_Respond_Function respond,
                              LV2_Worker_Respond_Handle handle, uint32_t size,
                              const void *data)
{
    /* Worker thread. */
    Plugin *p = instance;
    WorkerState *w = &p->w;
    uint32_t type;
    if (size < sizeof type) return LV2_WORKER_ERR_UNKNOWN;
    memcpy(&type, data, sizeof type);

    if (type == MSG_FREE_TAKE || type == MSG_FREE_BANK) {
        MsgPtr m;
        if (size < sizeof m) return LV2_WORKER_ERR_UNKNOWN;
        memcpy(&m, data, sizeof m);
        if (type == MSG_FREE_TAKE) take_free(m.ptr);
        else bank_free(m.ptr);
        return LV2_WORKER_SUCCESS;
    }

    pthread_mutex_lock(&p->wlock);
    switch (type) {
    case MSG_LOAD: {
        MsgLoad m;
        memset(&m, 0, sizeof m);
        memcpy(&m, data, size < sizeof m ? size : sizeof m);
        m.path[sizeof m.path - 1] = 0;
        worker_load_model(p, m.path);
        if (!w->have_cfg) {
            w->cfg = controls_config(p); /* no config message yet: the defaults */
            w->have_cfg = true;
        }
        if (w->model) worker_need_all(w);
        Bank *b = worker_make_bank(w, false);
        if (b) {
            MsgPtr r = {RSP_BANK, b};
            if (respond(handle, sizeof r, &r) != LV2_WORKER_SUCCESS) bank_free(b);
        }
        break;
    }
    case MSG_CONFIG: {
        MsgConfig m;
        if (size < sizeof m) break;
        memcpy(&m, data, sizeof m);
        worker_set_config(w, &m.cfg);
        break;
    }
    case MSG_NEW_TAKES:
        if (w->model) worker_need_all(w);
        break;
    case MSG_USED: {
        MsgUsed m;
        if (size < sizeof m) break;
        memcpy(&m, data, sizeof m);
        if (m.epoch == w->epoch && w->model && m.slot >= 0 && m.slot < w->n_slots &&
            m.index >= 0 && m.index < w->cfg.pool && m.index < MAX_POOL)
            w->need[m.slot][m.index] = true;
        break;
    }
    case MSG_CONTINUE:
        worker_render_chunk(p, respond, handle);
        break;
    default:
        break;
    }
    RspProgress pr = {RSP_PROGRESS, worker_pending(w)};
    pthread_mutex_unlock(&p->wlock);
    respond(handle, sizeof pr, &pr);
    return LV2_WORKER_SUCCESS;
}

/* ---------------------------------------------------------------- audio side */

static void send_free(Plugin *p, uint32_t type, void *ptr)
{
    MsgPtr m = {type, ptr};
    /* If the host's queue is full this leaks the object rather than freeing it here. */
    p->schedule->schedule_work(p->schedule->handle, sizeof m, &m);
}

static void voice_stop(Plugin *p, Voice *v, bool direct_free)
{
    Take *t = v->take;
    v->take = NULL;
    if (!t) return;
    if (--t->playing == 0 && t->retired) {
        if (direct_free) take_free(t);
        else send_free(p, MSG_FREE_TAKE, t);
    }
}

static void voices_stop_all(Plugin *p, bool direct_free)
{
    for (int k = 0; k < MAX_VOICES; k++) voice_stop(p, &p->voices[k], direct_free);
}

static LV2_Worker_Status work_response(LV2_Handle instance, uint32_t size, const void *data)
{
    /* Audio thread. */
    Plugin *p = instance;
    uint32_t type;
    if (size < sizeof type) return LV2_WORKER_ERR_UNKNOWN;
    memcpy(&type, data, sizeof type);
    if (type == RSP_BANK && size >= sizeof(MsgPtr)) {
        MsgPtr m;
        memcpy(&m, data, sizeof m);
        Bank *b = m.ptr;
        if (p->bank && b->epoch <= p->bank->epoch) {
            send_free(p, MSG_FREE_BANK, b); /* older than what restore installed */
        } else {
            voices_stop_all(p, false);
            Bank *old = p->bank;
            p->bank = b;
            if (old) send_free(p, MSG_FREE_BANK, old);
            p->notify_model = true;
        }
    } else if (type == RSP_TAKE && size >= sizeof(RspTake)) {
        RspTake r;
        memcpy(&r, data, sizeof r);
        Bank *b = p->bank;
        if (!b || r.epoch != b->epoch || r.slot < 0 || r.slot >= MAX_SLOTS || r.index < 0 ||
            r.index >= MAX_POOL) {
            send_free(p, MSG_FREE_TAKE, r.take);
        } else {
            Take *old = b->pool[r.slot][r.index];
            b->pool[r.slot][r.index] = r.take;
            if (old) {
                old->retired = true;
                if (old->playing == 0) send_free(p, MSG_FREE_TAKE, old);
            }
        }
    } else if (type == RSP_PROGRESS && size >= sizeof(RspProgress)) {
        RspProgress r;
        memcpy(&r, data, sizeof r);
        p->more = r.more != 0;
        p->continue_outstanding = false;
    }
    return LV2_WORKER_SUCCESS;
}

static void note_on(Plugin *p, int note, int velocity)
{
    Bank *b = p->bank;
    if (!b || note < 0 || note > 127) return;
    int s = b->note_slot[note];
    if (s < 0 || s >= b->n_slots) return;
    int pool = p->ctl[P_POOL] ? (int)lroundf(clampf(*p->ctl[P_POOL], 1, MAX_POOL)) : 4;
    int chosen = -1;
    for (int k = 0; k < pool; k++) {
        int i = (b->cursor[s] + k) % pool;
        if (b->pool[s][i] && (i != b->last[s] || pool < 2)) {
            chosen = i;
            break;
        }
    }
    /* only the take played last is ready: better that than silence */
    if (chosen < 0 && b->last[s] >= 0 && b->last[s] < pool && b->pool[s][b->last[s]])
        chosen = b->last[s];
    if (chosen < 0) return; /* the pool is not ready yet: silent, never blocking */
    b->cursor[s] = (chosen + 1) % pool;
    b->last[s] = chosen;
    Take *t = b->pool[s][chosen];

    MsgUsed u = {MSG_USED, b->epoch, s, chosen};
    p->schedule->schedule_work(p->schedule->handle, sizeof u, &u);

    Voice *v = NULL;
    for (int k = 0; k < MAX_VOICES && !v; k++)
        if (!p->voices[k].take) v = &p->voices[k];
    if (!v) { /* steal the oldest */
        v = &p->voices[0];
        for (int k = 1; k < MAX_VOICES; k++)
            if (p->voices[k].age < v->age) v = &p->voices[k];
        voice_stop(p, v, false);
    }
    float sens = p->ctl[P_VELSENS] ? clampf(*p->ctl[P_VELSENS], 0, 1) : 1.0f;
    float vel = (float)velocity / 127.0f;
    float tune = p->ctl[P_TUNE] ? clampf(*p->ctl[P_TUNE], -24, 24) : 0.0f;
    float length = p->ctl[P_LENGTH] ? clampf(*p->ctl[P_LENGTH], 0.01f, 1) : 1.0f;
    v->take = t;
    t->playing++;
    v->pos = 0;
    v->rate = pow(2.0, tune / 12.0); /* playback-rate tuning: 12-TET semitones */
    /* A squared velocity curve: 64 is about -12 dB below 127 at full sensitivity. */
    v->amp = (1.0f - sens) + sens * vel * vel;
    v->env = 1.0f;
    if (length >= 0.999f) {
        v->env_mul = 1.0f;
    } else {
        /* exponential decay reaching -60 dB after `length` of the take */
        double frames = length * t->frames / v->rate;
        v->env_mul = (float)exp(log(1e-3) / (frames > 1 ? frames : 1));
    }
    v->age = ++p->voice_clock;
}

static void render_voices(Plugin *p, uint32_t from, uint32_t to)
{
    float *L = p->out[0], *R = p->out[1];
    for (int k = 0; k < MAX_VOICES; k++) {
        Voice *v = &p->voices[k];
        Take *t = v->take;
        if (!t) continue;
        const float *tl = t->data, *tr = t->data + t->frames;
        for (uint32_t i = from; i < to; i++) {
            long idx = (long)v->pos;
            if (idx >= t->frames || v->env < 1e-4f) {
                voice_stop(p, v, false);
                break;
            }
            float frac = (float)(v->pos - (double)idx);
            float l1 = idx + 1 < t->frames ? tl[idx + 1] : 0.0f;
            float r1 = idx + 1 < t->frames ? tr[idx + 1] : 0.0f;
            float g = v->amp * v->env;
            L[i] += g * (tl[idx] + (l1 - tl[idx]) * frac);
            R[i] += g * (tr[idx] + (r1 - tr[idx]) * frac);
            v->pos += v->rate;
            v->env *= v->env_mul;
        }
    }
}

static void notify_model_path(Plugin *p)
{
    if (!p->bank || !p->notify) return;
    const char *path = p->bank->path;
    LV2_Atom_Forge *f = &p->forge;
    LV2_Atom_Forge_Frame frame;
    if (!lv2_atom_forge_frame_time(f, 0)) return;
    if (!lv2_atom_forge_object(f, &frame, 0, p->u.patch_Set)) return;
    lv2_atom_forge_key(f, p->u.patch_property);
    lv2_atom_forge_urid(f, p->u.nf_model);
    lv2_atom_forge_key(f, p->u.patch_value);
    lv2_atom_forge_path(f, path, (uint32_t)strlen(path));
    lv2_atom_forge_pop(f, &frame);
}

static void handle_patch(Plugin *p, const LV2_Atom_Object *obj)
{
    if (obj->body.otype == p->u.patch_Get) {
        p->notify_model = true;
        return;
    }
    if (obj->body.otype != p->u.patch_Set) return;
    const LV2_Atom *property = NULL, *value = NULL;
    lv2_atom_object_get(obj, p->u.patch_property, &property, p->u.patch_value, &value, 0);
    if (!property || property->type != p->u.atom_URID ||
        ((const LV2_Atom_URID *)property)->body != p->u.nf_model)
        return;
    if (!value || (value->type != p->u.atom_Path && value->type != p->u.atom_String)) return;
    /* some hosts send paths without a trailing NUL: trust the atom's size */
    uint32_t len = value->size;
    const char *s = LV2_ATOM_BODY_CONST(value);
    while (len > 0 && s[len - 1] == 0) len--;
    if (len >= NF_PATH_MAX) {
        lv2_log_error(&p->logger, "noisefloor: model path too long\n");
        return;
    }
    p->load_msg.type = MSG_LOAD;
    p->load_msg.len = len;
    memcpy(p->load_msg.path, s, len);
    p->load_msg.path[len] = 0;
    uint32_t msg_size = (uint32_t)offsetof(MsgLoad, path) + len + 1;
    if (p->schedule->schedule_work(p->schedule->handle, msg_size, &p->load_msg) ==
        LV2_WORKER_SUCCESS)
        p->load_requested = true;
}

static void run(LV2_Handle instance, uint32_t n)
{
    /* Audio thread. */
    Plugin *p = instance;
    float *L = p->out[0], *R = p->out[1];
    if (n > 0 && L && R) {
        memset(L, 0, n * sizeof(float));
        memset(R, 0, n * sizeof(float));
    }

    /* settings that change what the worker renders */
    Config c = controls_config(p);
    if (!p->sent_valid || !config_equal(&c, &p->sent)) {
        MsgConfig m = {MSG_CONFIG, c};
        if (p->schedule->schedule_work(p->schedule->handle, sizeof m, &m) ==
            LV2_WORKER_SUCCESS) {
            p->sent = c;
            p->sent_valid = true;
        }
    }
    float nt = p->ctl[P_NEWTAKES] ? *p->ctl[P_NEWTAKES] : 0.0f;
    if (nt > 0.5f && p->newtakes_prev <= 0.5f) {
        uint32_t m = MSG_NEW_TAKES;
        p->schedule->schedule_work(p->schedule->handle, sizeof m, &m);
    }
    p->newtakes_prev = nt;

    /* notify port: reset to its capacity every cycle */
    LV2_Atom_Forge_Frame notify_frame; /* the forge points at it until the pop below */
    if (p->notify) {
        uint32_t cap = p->notify->atom.size;
        lv2_atom_forge_set_buffer(&p->forge, (uint8_t *)p->notify, cap);
        lv2_atom_forge_sequence_head(&p->forge, &notify_frame, 0);
    }

    uint32_t pos = 0;
    if (p->control) {
        LV2_ATOM_SEQUENCE_FOREACH (p->control, ev) {
            uint32_t t = ev->time.frames < n ? (uint32_t)ev->time.frames : n;
            if (t > pos && L && R) {
                render_voices(p, pos, t);
                pos = t;
            }
            if (ev->body.type == p->u.midi_Event && ev->body.size >= 3) {
                const uint8_t *msg = (const uint8_t *)(ev + 1);
                uint8_t st = msg[0] & 0xF0;
                if (st == LV2_MIDI_MSG_NOTE_ON && msg[2] > 0)
                    note_on(p, msg[1] & 0x7F, msg[2] & 0x7F);
                else if (st == LV2_MIDI_MSG_CONTROLLER &&
                         (msg[1] == LV2_MIDI_CTL_ALL_SOUNDS_OFF ||
                          msg[1] == LV2_MIDI_CTL_ALL_NOTES_OFF))
                    voices_stop_all(p, false);
                /* note-off: drum hits are one-shots and ring out */
            } else if (lv2_atom_forge_is_object_type(&p->forge, ev->body.type)) {
                handle_patch(p, (const LV2_Atom_Object *)&ev->body);
            }
        }
    }
    if (n > pos && L && R) render_voices(p, pos, n);

    if (!p->load_requested) {
        /* nothing restored and no patch:Set in this first cycle: the default model */
        MsgLoad *m = &p->load_msg;
        m->type = MSG_LOAD;
        m->len = 0;
        m->path[0] = 0;
        if (p->schedule->schedule_work(p->schedule->handle,
                                       (uint32_t)offsetof(MsgLoad, path) + 1, m) ==
            LV2_WORKER_SUCCESS)
            p->load_requested = true;
    }

    /* output gain, smoothed (one pole, ~10 ms) so that automation does not click */
    float gain_db = p->ctl[P_GAIN] ? clampf(*p->ctl[P_GAIN], -90, 24) : 0.0f;
    float target = gain_db <= -89.9f ? 0.0f : powf(10.0f, gain_db / 20.0f);
    if (L && R) {
        for (uint32_t i = 0; i < n; i++) {
            p->gain_cur += (target - p->gain_cur) * p->gain_coef;
            L[i] *= p->gain_cur;
            R[i] *= p->gain_cur;
        }
        if (fabsf(p->gain_cur - target) < 1e-6f) p->gain_cur = target;
    }

    if (p->notify_model && p->notify) {
        notify_model_path(p);
        p->notify_model = false;
    }
    if (p->notify) lv2_atom_forge_pop(&p->forge, &notify_frame);

    if (p->more && !p->continue_outstanding) {
        uint32_t m = MSG_CONTINUE;
        if (p->schedule->schedule_work(p->schedule->handle, sizeof m, &m) ==
            LV2_WORKER_SUCCESS)
            p->continue_outstanding = true;
    }
}

/* ---------------------------------------------------------------- state */

static nf_status write_wav(const char *path, const float *planar, int ch, int frames, int rate)
{
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = rate;
    info.channels = ch;
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    float *inter = malloc((size_t)frames * (size_t)ch * sizeof(float));
    if (!inter) return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < frames; i++)
        for (int c = 0; c < ch; c++) inter[(size_t)i * ch + c] = planar[(size_t)c * frames + i];
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    if (!f) {
        free(inter);
        return nf_fail(NF_ERR_IO, "%s: %s", path, sf_strerror(NULL));
    }
    sf_count_t w = sf_writef_float(f, inter, frames);
    sf_close(f);
    free(inter);
    return w == frames ? NF_OK : nf_fail(NF_ERR_IO, "%s: short write", path);
}

/* Read a float WAV written by write_wav into planar floats (malloc'd). */
static float *read_wav(const char *path, int ch, int *frames, int rate)
{
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    if (!f) return NULL;
    if (info.channels != ch || info.samplerate != rate || info.frames <= 0 ||
        info.frames > (sf_count_t)1 << 28) {
        sf_close(f);
        return NULL;
    }
    int n = (int)info.frames;
    float *inter = malloc((size_t)n * (size_t)ch * sizeof(float));
    float *planar = malloc((size_t)n * (size_t)ch * sizeof(float));
    if (!inter || !planar || sf_readf_float(f, inter, n) != n) {
        sf_close(f);
        free(inter);
        free(planar);
        return NULL;
    }
    sf_close(f);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < ch; c++) planar[(size_t)c * n + i] = inter[(size_t)i * ch + c];
    free(inter);
    *frames = n;
    return planar;
}

static const void *feature(const LV2_Feature *const *features, const char *uri)
{
    for (int i = 0; features && features[i]; i++)
        if (!strcmp(features[i]->URI, uri)) return features[i]->data;
    return NULL;
}

static void free_state_path(const LV2_State_Free_Path *fp, char *path)
{
    if (fp) fp->free_path(fp->handle, path);
    else free(path);
}

static void store_int(LV2_State_Store_Function store, LV2_State_Handle h, const Plugin *p,
                      LV2_URID key, int32_t v)
{
    store(h, key, &v, sizeof v, p->u.atom_Int, LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
}

/* Write the takes and anchors next to an index file made with makePath. Returns the
 * index path (from make_path) or NULL. Called with wlock held. */
static char *save_takes(Plugin *p, const LV2_State_Make_Path *mk, const LV2_State_Free_Path *fp)
{
    WorkerState *w = &p->w;
    char *index = mk->path(mk->handle, "noisefloor-takes.txt");
    if (!index) return NULL;
    char dir[NF_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", index);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    FILE *f = fopen(index, "w");
    if (!f) {
        lv2_log_error(&p->logger, "noisefloor: cannot write %s\n", index);
        free_state_path(fp, index);
        return NULL;
    }
    fprintf(f, "%s\nrate %.17g\nhash %s\nslots %d\n", TAKES_INDEX_MAGIC, p->rate,
            w->info->hash, w->n_slots);
    for (int s = 0; s < w->n_slots; s++) {
        fprintf(f, "counter %d %llu\n", s, (unsigned long long)w->counter[s]);
        char name[64], full[NF_PATH_MAX + 64];
        if (w->anchor[s]) {
            snprintf(name, sizeof name, "anchor-%02d.wav", s);
            snprintf(full, sizeof full, "%s%s", dir, name);
            if (write_wav(full, w->anchor[s], w->info->channels, w->info->length,
                          w->info->sample_rate) == NF_OK)
                fprintf(f, "anchor %d %s\n", s, name);
        }
        for (int i = 0; i < MAX_POOL; i++) {
            Take *t = w->shadow[s][i];
            if (!t) continue;
            snprintf(name, sizeof name, "take-%02d-%02d.wav", s, i);
            snprintf(full, sizeof full, "%s%s", dir, name);
            if (write_wav(full, t->data, 2, t->frames, (int)lround(p->rate)) == NF_OK)
                fprintf(f, "take %d %d %llu %s\n", s, i, (unsigned long long)t->seed, name);
        }
    }
    bool ok = fclose(f) == 0;
    if (!ok) {
        free_state_path(fp, index);
        return NULL;
    }
    return index;
}

static LV2_State_Status save(LV2_Handle instance, LV2_State_Store_Function store,
                             LV2_State_Handle handle, uint32_t flags,
                             const LV2_Feature *const *features)
{
    /* Any non-real-time thread (may run alongside run(): only the worker's state is
     * read, under its lock). */
    (void)flags;
    Plugin *p = instance;
    WorkerState *w = &p->w;
    const LV2_State_Map_Path *mp = feature(features, LV2_STATE__mapPath);
    const LV2_State_Make_Path *mk = feature(features, LV2_STATE__makePath);
    const LV2_State_Free_Path *fp = feature(features, LV2_STATE__freePath);

    pthread_mutex_lock(&p->wlock);
    if (w->path[0] && mp) {
        char *apath = mp->abstract_path(mp->handle, w->path);
        if (apath) {
            store(handle, p->u.nf_model, apath, strlen(apath) + 1, p->u.atom_Path,
                  LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
            free_state_path(fp, apath);
        }
    }
    if (w->have_cfg) {
        int64_t seed = w->cfg.seed;
        store(handle, p->u.nf_seed, &seed, sizeof seed, p->u.atom_Long,
              LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
        store_int(store, handle, p, p->u.nf_steps, w->cfg.steps);
        store(handle, p->u.nf_guidance, &w->cfg.guidance, sizeof(float), p->u.atom_Float,
              LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
        store(handle, p->u.nf_variation, &w->cfg.variation, sizeof(float), p->u.atom_Float,
              LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
        store_int(store, handle, p, p->u.nf_pool, w->cfg.pool);
    }
    if (w->model && mk && mp) {
        char *index = save_takes(p, mk, fp);
        if (index) {
            char *apath = mp->abstract_path(mp->handle, index);
            if (apath) {
                store(handle, p->u.nf_takes, apath, strlen(apath) + 1, p->u.atom_Path,
                      LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
                free_state_path(fp, apath);
            }
            free_state_path(fp, index);
        }
    }
    pthread_mutex_unlock(&p->wlock);
    return LV2_STATE_SUCCESS;
}

/* Adopt saved takes from an index file if they were rendered by this very model at this
 * rate; anything missing or unreadable is simply rendered again. Called with wlock
 * held, after the model is loaded. */
static void restore_takes(Plugin *p, const char *index)
{
    WorkerState *w = &p->w;
    FILE *f = fopen(index, "r");
    if (!f) {
        lv2_log_warning(&p->logger, "noisefloor: saved takes %s missing; rendering again\n",
                        index);
        return;
    }
    char dir[NF_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", index);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    char line[1024];
    bool header_ok = false, valid = true;
    int irate = (int)lround(p->rate);
    while (valid && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char name[512], full[NF_PATH_MAX + 512];
        int s, i;
        unsigned long long u;
        double r;
        if (!header_ok) {
            header_ok = strcmp(line, TAKES_INDEX_MAGIC) == 0;
            valid = header_ok;
        } else if (sscanf(line, "rate %lf", &r) == 1) {
            valid = fabs(r - p->rate) < 1e-6;
        } else if (!strncmp(line, "hash ", 5)) {
            valid = strcmp(line + 5, w->info->hash) == 0;
        } else if (sscanf(line, "slots %d", &s) == 1) {
            valid = s == w->n_slots;
        } else if (sscanf(line, "counter %d %llu", &s, &u) == 2) {
            if (s >= 0 && s < w->n_slots) w->counter[s] = u;
        } else if (sscanf(line, "anchor %d %511s", &s, name) == 2) {
            if (s < 0 || s >= w->n_slots || strchr(name, '/')) continue;
            snprintf(full, sizeof full, "%s%s", dir, name);
            int frames = 0;
            float *a = read_wav(full, w->info->channels, &frames, w->info->sample_rate);
            if (a && frames == w->info->length) {
                free(w->anchor[s]);
                w->anchor[s] = a;
            } else {
                free(a);
            }
        } else if (sscanf(line, "take %d %d %llu %511s", &s, &i, &u, name) == 4) {
            if (s < 0 || s >= w->n_slots || i < 0 || i >= MAX_POOL || strchr(name, '/'))
                continue;
            snprintf(full, sizeof full, "%s%s", dir, name);
            int frames = 0;
            float *d = read_wav(full, 2, &frames, irate);
            Take *t = d ? calloc(1, sizeof *t) : NULL;
            if (!t) {
                free(d);
                lv2_log_warning(&p->logger, "noisefloor: saved take %s unreadable; "
                                "rendering it again\n", full);
                w->need_seed[s][i] = u;
                w->need_seeded[s][i] = true;
                continue;
            }
            t->data = d;
            t->frames = frames;
            t->seed = u;
            take_free(w->shadow[s][i]);
            w->shadow[s][i] = t;
        }
    }
    fclose(f);
    if (!valid) {
        /* rendered by another model or at another rate: start again */
        lv2_log_note(&p->logger, "noisefloor: saved takes do not match the model or "
                                 "rate; rendering again\n");
        for (int s = 0; s < MAX_SLOTS; s++)
            for (int i = 0; i < MAX_POOL; i++) {
                take_free(w->shadow[s][i]);
                w->shadow[s][i] = NULL;
            }
        worker_free_anchors(w);
        memset(w->counter, 0, sizeof w->counter);
        memset(w->need_seeded, 0, sizeof w->need_seeded);
    }
}

static LV2_State_Status restore(LV2_Handle instance, LV2_State_Retrieve_Function retrieve,
                                LV2_State_Handle handle, uint32_t flags,
                                const LV2_Feature *const *features)
{
    /* Instantiation class: never concurrent with run(), so the audio-side fields may be
     * changed here; the worker may still be busy, hence the lock. */
    (void)flags;
    Plugin *p = instance;
    WorkerState *w = &p->w;
    const LV2_State_Map_Path *mp = feature(features, LV2_STATE__mapPath);
    const LV2_State_Free_Path *fp = feature(features, LV2_STATE__freePath);
    size_t size;
    uint32_t type, vflags;

    const void *model = retrieve(handle, p->u.nf_model, &size, &type, &vflags);
    const void *takes = retrieve(handle, p->u.nf_takes, &size, &type, &vflags);
    if (!model && !takes) {
        /* a preset, or a session without a model of its own: keep the current model
         * (a first run() loads the default one) */
        return LV2_STATE_SUCCESS;
    }

    char model_path[NF_PATH_MAX] = "";
    char takes_path[NF_PATH_MAX] = "";
    model = retrieve(handle, p->u.nf_model, &size, &type, &vflags);
    if (model && type == p->u.atom_Path && size > 0) {
        char *abs = mp ? mp->absolute_path(mp->handle, model) : NULL;
        snprintf(model_path, sizeof model_path, "%.*s", (int)size, abs ? abs : (const char *)model);
        if (abs) free_state_path(fp, abs);
    }
    takes = retrieve(handle, p->u.nf_takes, &size, &type, &vflags);
    if (takes && type == p->u.atom_Path && size > 0) {
        char *abs = mp ? mp->absolute_path(mp->handle, takes) : NULL;
        snprintf(takes_path, sizeof takes_path, "%.*s", (int)size, abs ? abs : (const char *)takes);
        if (abs) free_state_path(fp, abs);
    }

    Config c = w->have_cfg ? w->cfg : controls_config(p);
    const void *v;
    if ((v = retrieve(handle, p->u.nf_seed, &size, &type, &vflags)) && type == p->u.atom_Long &&
        size == sizeof(int64_t))
        memcpy(&c.seed, v, sizeof c.seed);
    if ((v = retrieve(handle, p->u.nf_steps, &size, &type, &vflags)) && type == p->u.atom_Int &&
        size == sizeof(int32_t))
        c.steps = *(const int32_t *)v;
    if ((v = retrieve(handle, p->u.nf_guidance, &size, &type, &vflags)) &&
        type == p->u.atom_Float && size == sizeof(float))
        c.guidance = *(const float *)v;
    if ((v = retrieve(handle, p->u.nf_variation, &size, &type, &vflags)) &&
        type == p->u.atom_Float && size == sizeof(float))
        c.variation = *(const float *)v;
    if ((v = retrieve(handle, p->u.nf_pool, &size, &type, &vflags)) && type == p->u.atom_Int &&
        size == sizeof(int32_t))
        c.pool = *(const int32_t *)v;
    if (c.pool < 1 || c.pool > MAX_POOL) c.pool = 4;
    if (c.steps < 1 || c.steps > 200) c.steps = 20;

    pthread_mutex_lock(&p->wlock);
    worker_load_model(p, model_path);
    w->cfg = c;
    w->have_cfg = true;
    if (w->model && takes_path[0]) restore_takes(p, takes_path);
    if (w->model)
        for (int s = 0; s < w->n_slots; s++)
            for (int i = 0; i < c.pool && i < MAX_POOL; i++)
                if (!w->shadow[s][i]) w->need[s][i] = true;
    Bank *b = worker_make_bank(w, true);
    bool pending = worker_pending(w);
    pthread_mutex_unlock(&p->wlock);

    if (!b) {
        /* keep the shadow's takes freeable: they now belong to no bank */
        pthread_mutex_lock(&p->wlock);
        for (int s = 0; s < MAX_SLOTS; s++)
            for (int i = 0; i < MAX_POOL; i++) {
                take_free(w->shadow[s][i]);
                w->shadow[s][i] = NULL;
            }
        pthread_mutex_unlock(&p->wlock);
        return LV2_STATE_ERR_UNKNOWN;
    }
    voices_stop_all(p, true);
    bank_free(p->bank);
    p->bank = b;
    p->load_requested = true;
    p->more = pending;
    p->continue_outstanding = false;
    p->notify_model = true;
    return LV2_STATE_SUCCESS;
}

/* ---------------------------------------------------------------- lifecycle */

static LV2_Handle instantiate(const LV2_Descriptor *descriptor, double rate,
                              const char *bundle_path, const LV2_Feature *const *features)
{
    /* Instantiation class. */
    (void)descriptor;
    (void)bundle_path;
    LV2_URID_Map *map = (LV2_URID_Map *)feature(features, LV2_URID__map);
    LV2_Worker_Schedule *schedule =
        (LV2_Worker_Schedule *)feature(features, LV2_WORKER__schedule);
    LV2_Log_Log *log = (LV2_Log_Log *)feature(features, LV2_LOG__log);
    if (!map || !schedule || !(rate > 0)) {
        LV2_Log_Logger lg;
        lv2_log_logger_init(&lg, map, log);
        lv2_log_error(&lg, "noisefloor: the host lacks %s\n",
                      !map ? LV2_URID__map : !schedule ? LV2_WORKER__schedule
                                                       : "a valid sample rate");
        return NULL;
    }
    Plugin *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->map = map;
    p->schedule = schedule;
    p->rate = rate;
    lv2_log_logger_init(&p->logger, map, log);
    lv2_atom_forge_init(&p->forge, map);
    Uris *u = &p->u;
    u->atom_Path = map->map(map->handle, LV2_ATOM__Path);
    u->atom_String = map->map(map->handle, LV2_ATOM__String);
    u->atom_Int = map->map(map->handle, LV2_ATOM__Int);
    u->atom_Long = map->map(map->handle, LV2_ATOM__Long);
    u->atom_Float = map->map(map->handle, LV2_ATOM__Float);
    u->atom_URID = map->map(map->handle, LV2_ATOM__URID);
    u->atom_eventTransfer = map->map(map->handle, LV2_ATOM__eventTransfer);
    u->midi_Event = map->map(map->handle, LV2_MIDI__MidiEvent);
    u->patch_Set = map->map(map->handle, LV2_PATCH__Set);
    u->patch_Get = map->map(map->handle, LV2_PATCH__Get);
    u->patch_property = map->map(map->handle, LV2_PATCH__property);
    u->patch_value = map->map(map->handle, LV2_PATCH__value);
    u->nf_model = map->map(map->handle, NF__model);
    u->nf_seed = map->map(map->handle, NF__seed);
    u->nf_steps = map->map(map->handle, NF__steps);
    u->nf_guidance = map->map(map->handle, NF__guidance);
    u->nf_variation = map->map(map->handle, NF__variation);
    u->nf_pool = map->map(map->handle, NF__pool);
    u->nf_takes = map->map(map->handle, NF__takes);
    pthread_mutex_init(&p->wlock, NULL);
    p->gain_cur = 1.0f;
    p->gain_coef = (float)(1.0 - exp(-1.0 / (0.010 * rate)));
    return p;
}

static void connect_port(LV2_Handle instance, uint32_t port, void *data)
{
    Plugin *p = instance;
    switch (port) {
    case P_CONTROL: p->control = data; break;
    case P_NOTIFY: p->notify = data; break;
    case P_OUT_L: p->out[0] = data; break;
    case P_OUT_R: p->out[1] = data; break;
    default:
        if (port < P_COUNT) p->ctl[port] = data;
        break;
    }
}

static void activate(LV2_Handle instance)
{
    Plugin *p = instance;
    /* voices from before a deactivate must not resume (Instantiation class: run() is
     * not running, so a retired take can be freed here) */
    voices_stop_all(p, true);
    float gain_db = p->ctl[P_GAIN] ? clampf(*p->ctl[P_GAIN], -90, 24) : 0.0f;
    p->gain_cur = gain_db <= -89.9f ? 0.0f : powf(10.0f, gain_db / 20.0f);
}

static void cleanup(LV2_Handle instance)
{
    /* Instantiation class: the worker has stopped. */
    Plugin *p = instance;
    voices_stop_all(p, true);
    bank_free(p->bank);
    WorkerState *w = &p->w;
    worker_abort_job(w);
    worker_free_anchors(w);
    free(w->gen_out);
    if (w->model) nf_model_free(w->model);
    pthread_mutex_destroy(&p->wlock);
    free(p);
}

static const void *extension_data(const char *uri)
{
    static const LV2_Worker_Interface worker = {work, work_response, NULL};
    static const LV2_State_Interface state = {save, restore};
    if (!strcmp(uri, LV2_WORKER__interface)) return &worker;
    if (!strcmp(uri, LV2_STATE__interface)) return &state;
    return NULL;
}

static const LV2_Descriptor descriptor = {
    NF_URI, instantiate, connect_port, activate, run, NULL, cleanup, extension_data,
};

LV2_SYMBOL_EXPORT const LV2_Descriptor *lv2_descriptor(uint32_t index)
{
    return index == 0 ? &descriptor : NULL;
}
