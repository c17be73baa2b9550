/* noisefloor engine: load a trained model and render sounds with it.
 *
 * This is the one entry point the CLI's rendering commands and the LV2 plugin share, so
 * that the same model, seed and settings give the same sound in both. Audio is planar
 * float: out[(example * channels + channel) * length + sample], at the model's own
 * sample rate, in [-1, 1] (peak-normalised as the training data was).
 *
 * Determinism: example k of a call with seed S is the sound of seed S + k; it does not
 * depend on the batch size, the thread count or how the steps were split up. */
#ifndef NF_ENGINE_H
#define NF_ENGINE_H

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nf_model nf_model;

typedef struct {
    int sample_rate;        /* Hz */
    int channels;           /* 1 or 2 */
    int length;             /* samples per generated sound */
    int num_classes;        /* 0 for an unconditional model */
    const char *const *class_names; /* num_classes names */
    const char *representation;     /* "wave", "stft" or "mag" */
    const char *objective;          /* "eps", "v" or "x0" */
    long long train_steps;
    long long param_count;
    double flops_per_example;       /* one network evaluation */
    char hash[17];                  /* 64-bit content hash of the weights, hex */
} nf_model_info;

/* Load a model checkpoint (safetensors written by `noisefloor train`). Uses the EMA
 * weights when the file has them. Thread: any but a real-time one (reads files,
 * allocates, plans FFTs). */
nf_status nf_model_load(const char *path, nf_model **out);
void nf_model_free(nf_model *m);
const nf_model_info *nf_model_get_info(const nf_model *m);
/* Class index by name (case-insensitive), or -1. */
int nf_model_class_index(const nf_model *m, const char *name);
/* The length of the model's time axis (samples for "wave", STFT frames, lead frames
 * included, otherwise). */
int nf_model_positions(const nf_model *m);
/* What inpainting and extension keep, in the model's domain: mx[j] = 1 when every audio
 * sample that position j depends on is known (mask[i] >= 0.5; for the STFT, the frame's
 * whole window; a lead frame over the silence before the clip depends on none), else 0.
 * mask [info.length], mx [nf_model_positions]. */
void nf_model_known_positions(const nf_model *m, const float *mask, float *mx);
/* Where the bundled default model is installed (or found in the source tree). */
const char *nf_default_model_path(void);

typedef enum {
    NF_SAMPLER_DPMPP = 0, /* DPM-Solver++(2M), 10-25 steps */
    NF_SAMPLER_DDIM,      /* DDIM, eta in [0, 1] */
    NF_SAMPLER_DDPM,      /* ancestral sampling (Ho et al. Algorithm 2) */
    NF_SAMPLER_LANGEVIN,  /* annealed Langevin dynamics */
    NF_SAMPLER_EULER_A,   /* Euler ancestral */
    NF_SAMPLER_COUNT
} nf_sampler_kind;

const char *nf_sampler_name(nf_sampler_kind k);
/* Parse "dpmpp", "ddim", ...; returns -1 for an unknown name. */
int nf_sampler_from_name(const char *name);

typedef struct {
    nf_sampler_kind sampler; /* default: Euler ancestral */
    int steps;            /* network evaluations (0: the sampler's default) */
    float eta;            /* DDIM stochasticity */
    float cfg_scale;      /* classifier-free guidance scale; 1 = plain conditional */
    int class_id;         /* -1: unconditional ("no class") */
    uint64_t seed;
    int threads;          /* 0: all cores */
    /* Fade-in (declick) in ms: a raised-cosine ramp, 0.5 - 0.5 cos(pi i / F) over the first
     * F = round(fade_in_ms * rate / 1000) samples of each sound, where the sound's start
     * is rendered (samples kept from init_audio by known_mask are never touched; a
     * variation of strength 0 is returned unchanged). The STFT representations cannot
     * place a sound's level at its first sample (the first frame's window is half zero
     * padding), so without it a render starts with a step, a click: 0.1-0.4 of the peak
     * in the first sample for the default model's drums, where the corpus starts near 0.
     * Default NF_FADE_IN_MS; 0: off; at most 1000. */
    float fade_in_ms;

    /* Editing. All NULL/0 for plain generation. */
    const float *init_audio;   /* [channels][length] at the model's rate */
    float strength;            /* variation (SDEdit): 0 = copy, 1 = new sound */
    const float *known_mask;   /* [length]: 1 where init_audio is kept (inpaint/extend) */
    int repaint_jumps;         /* RePaint resampling per step (0 = off) */
    int particles;             /* inpaint/extend by sequential Monte Carlo (SMCDiff) with K
                                * particles per sound (0 or 1: off, RePaint replacement): the
                                * new part tends, as K grows, to the model's conditional given
                                * the kept audio, which replacement only approximates. K times
                                * the network calls (batches of n K); needs known_mask and the
                                * DDPM sampler with many steps, or DDIM with eta > 0. */

    /* Classifier guidance (Dhariwal & Nichol 2021) towards class_id, with a noise-aware
     * classifier from nf_classifier_load (nf_classifier.h) trained for this model: borrowed,
     * and used by one render at a time. NULL: off. Works with unconditional models too
     * (class_id then indexes the classifier's classes). */
    struct nf_classifier *classifier;
    float classifier_scale;    /* s in mu + s Sigma grad log p(y | x_t) (1 when 0 is not meant) */
} nf_gen_params;

#define NF_FADE_IN_MS 0.4f

void nf_gen_params_default(nf_gen_params *p);

/* Render `n` sounds at once (batched network calls). out: n * channels * length. */
nf_status nf_generate(nf_model *m, const nf_gen_params *p, int n, float *out);

/* The same, in pieces, for callers that must answer in bounded time (the plugin's
 * worker): begin, then nf_gen_step() until it returns 0, then finish. */
typedef struct nf_gen nf_gen;
nf_status nf_gen_begin(nf_model *m, const nf_gen_params *p, int n, nf_gen **out);
/* One network evaluation's worth of work; returns the number of steps left (0 when
 * done) or a negative nf_status on failure. */
int nf_gen_step(nf_gen *g);
nf_status nf_gen_finish(nf_gen *g, float *out);
void nf_gen_free(nf_gen *g);

/* Interpolation in K steps (K >= 2; out: K sounds, the first and last being the two
 * ends). Between two seeds: spherical interpolation of their start noise, each point
 * rendered with the sampler of p (p->seed is ignored). Between two sounds a and b
 * ([channels][length] each): deterministic DDIM inversion of both to noise, slerp,
 * and DDIM (eta 0) decoding, so the ends reproduce a and b closely. */
nf_status nf_interpolate_seeds(nf_model *m, const nf_gen_params *p, uint64_t seed_a,
                               uint64_t seed_b, int K, float *out);
nf_status nf_interpolate_sounds(nf_model *m, const nf_gen_params *p, const float *a,
                                const float *b, int K, float *out);

#ifdef __cplusplus
}
#endif
#endif
