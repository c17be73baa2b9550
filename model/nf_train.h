/* noisefloor training: the loop that turns a folder of sounds into a model file.
 *
 * One step (DDPM Algorithm 1, Ho et al. 2020, with the v-objective of Salimans & Ho 2022
 * by default):
 *   x0  <- B clips in a shuffled order, augmented (gain, polarity, delay), encoded by nf_repr
 *   t, eps, x_t, target, label dropout <- nf_train_draw (diffusion core)
 *   out <- nf_unet_forward(x_t, t, y);  loss, dloss/dout <- nf_loss
 *   grads <- nf_unet_backward;  clip to a global norm;  AdamW;  EMA of the weights
 * Every random draw is addressed by (seed, step, example), the data order by
 * (seed, epoch), so a run stopped and resumed from its training-state file gives the
 * same loss sequence, bit for bit, as an uninterrupted one with the same seed and
 * thread count.
 *
 * Files written beside the model M.safetensors (each atomically where it matters):
 *   M.safetensors        the model (EMA weights, config, classes, data summary)
 *   M.state.safetensors  the training state (raw weights, AdamW moments, EMA, step)
 *   M.loss.csv           one row per step: loss, lr, grad norm, loss per t bucket
 *   M.loss.png           the loss curve (smoothed), redrawn at every checkpoint
 *   M_previews/step_NNNNNNN/<class>_<k>.wav   preview renders
 *
 * The library prints nothing: progress goes to a callback, warnings to nf_warn. */
#ifndef NF_TRAIN_H
#define NF_TRAIN_H

#include "nf_common.h"
#include "nf_unet.h"

#include <signal.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Loss columns in the CSV: the per-example loss averaged within NF_TRAIN_T_BUCKETS equal
 * ranges of the diffusion step t (DESIGN "Lessons": watch the loss per noise level). */
#define NF_TRAIN_T_BUCKETS 10

typedef struct {
    long long step;        /* steps done so far */
    long long total;       /* planned steps (0 when only a time budget is known) */
    double loss;           /* this step's loss */
    double loss_smooth;    /* exponential moving average of the loss (0.98) */
    double grad_norm;      /* before clipping */
    double lr;
    double steps_per_s;    /* over this run (not counting a resumed run's past) */
    double examples_per_s;
    double eta_s;          /* seconds left (-1: unknown) */
    double elapsed_s;
    const char *event;     /* NULL for a plain step, else "checkpoint", "preview",
                              "loaded", "resumed", "done", "interrupted" */
} nf_train_progress;

typedef void (*nf_train_progress_fn)(void *user, const nf_train_progress *p);

typedef struct {
    /* ---- data ---- */
    const char *data_dir;     /* classes from first-level subfolders */
    const char *output;       /* the model file, e.g. "kit.safetensors" */
    int sample_rate;          /* Hz (22050) */
    double clip_seconds;      /* clip length (0.5 s), round(clip_seconds * rate) samples */
    int channels;             /* 1 mono, 2 stereo */
    int augment;              /* random gain, polarity flip, small delay (1) */
    float aug_gain_db;        /* gain drawn uniformly in [-aug_gain_db, 0] dB (6) */
    float aug_shift_ms;       /* delay drawn uniformly in [0, aug_shift_ms] ms (5) */

    /* ---- representation ---- */
    int repr;                 /* nf_repr_kind: 0 wave, 1 stft, 2 mag */
    int n_fft, hop;           /* stft, mag (512, 0 = n_fft/4) */
    int log_mag;              /* mag: log compression (nf_repr_log_floor) instead of sqrt */
    int phase_bins;           /* mag: lowest bins kept complex */
    float power;              /* stft, mag: amplitude compression |X|^power (0: 0.5) */
    int lead_frames;          /* stft, mag: frames of silence in front of each clip (0) */

    /* ---- network ---- */
    const char *preset;       /* "tiny", "small", "base" (NULL: "small"); ignored when
                                 use_unet is set */
    int use_unet;             /* 1: take `unet` as given (in_ch, out_ch, num_classes are
                                 still filled in from the data) */
    nf_unet_config unet;

    /* ---- diffusion ---- */
    int objective;            /* nf_pred_kind: 0 eps, 1 v (default), 2 x0 */
    int schedule;             /* nf_schedule_kind: 0 linear, 1 cosine (default) */
    int T;                    /* training steps of the noise schedule (1000) */
    float cfg_dropout;        /* label dropped to "no class" with this probability (0.1) */

    /* ---- optimisation ---- */
    long long steps;          /* total steps (0: run until `minutes`) */
    double minutes;           /* wall-clock budget of this run (0: none) */
    int batch;                /* examples per step (16) */
    float lr;                 /* peak learning rate (3e-4) */
    float min_lr;             /* floor of the cosine (lr / 10 when 0) */
    int lr_schedule;          /* nf_lr_shape: 0 constant, 1 cosine (default) */
    int warmup;               /* warm-up steps (100, capped at steps/10) */
    float weight_decay;       /* AdamW (0.01) */
    float grad_clip;          /* global-norm clip (1.0; 0 = off) */
    float ema_decay;          /* 0.999 */
    int threads;              /* 0: all cores */
    uint64_t seed;

    /* ---- files and reporting ---- */
    int resume;               /* continue from OUTPUT's training-state file */
    long long checkpoint_every; /* steps (500; 0: only at the end) */
    long long preview_every;  /* steps (0: never) */
    int preview_per_class;    /* sounds per class in a preview (2) */
    int preview_steps;        /* sampler steps for previews (25) */
    long long progress_every; /* call `progress` every this many steps (1) */
    int store_f16;            /* 1: the model file holds the EMA weights alone, as F16 (for
                                 distribution, a quarter of the F32 file); the training
                                 state stays F32, so --resume is still exact (0) */

    /* Set (from a signal handler) to stop at the end of the current step: the loop then
     * writes a checkpoint and the state and returns NF_ERR_INTERRUPTED. */
    volatile sig_atomic_t *stop;
    nf_train_progress_fn progress;
    void *progress_user;
} nf_train_config;

/* All defaults (as documented beside each field); data_dir and output stay NULL. */
void nf_train_config_default(nf_train_config *c);

/* Fill a U-Net configuration from a size preset ("tiny", "small", "base") for the given
 * representation (0 wave; 1 stft or 2 mag: the STFT presets are wider at the top level and have
 * fewer levels, see DESIGN "Lessons"). in_ch, out_ch and num_classes are left 0. */
nf_status nf_train_preset(const char *name, int repr, nf_unet_config *out);
/* Preset names in order (NULL-terminated) and a one-line description of each. */
const char *const *nf_train_preset_names(void);
const char *nf_train_preset_description(const char *name);
/* Parameters of a preset's network for in_ch input channels and num_classes classes. */
nf_status nf_train_preset_param_count(const char *name, int repr, int in_ch, int num_classes,
                                      long long *count);

/* The companion files of a model path (e.g. "kit.safetensors" -> "kit.state.safetensors",
 * "kit.loss.csv", "kit.loss.png", "kit_previews"). */
void nf_train_state_path(const char *model, char *buf, size_t size);
void nf_train_log_path(const char *model, char *buf, size_t size);
void nf_train_plot_path(const char *model, char *buf, size_t size);
void nf_train_previews_dir(const char *model, char *buf, size_t size);

/* Train. Returns NF_OK when the planned steps (or the time budget) are done,
 * NF_ERR_INTERRUPTED after a stop request (checkpoint and state written),
 * NF_ERR_NUMERIC if the loss turned NaN/Inf (the last good checkpoint is kept, nothing
 * is written), or the error of whatever failed (dataset, files) with its message. */
nf_status nf_train(const nf_train_config *c);

#ifdef __cplusplus
}
#endif
#endif
