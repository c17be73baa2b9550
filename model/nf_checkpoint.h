/* Model checkpoints and training state, as safetensors files.
 *
 * Model file (M.safetensors):
 *   tensors    the network's parameters under their nf_unet names (F32, or F16 for a
 *              small bundled model; converted to float on load), and optionally the EMA
 *              weights under "ema.<name>";
 *   metadata   "format": "noisefloor", "format_version": "1",
 *              "noisefloor.config": JSON of the nf_unet_config,
 *              "noisefloor.model": JSON of the nf_model_desc (representation, audio
 *              format, diffusion settings, class names, training summary).
 * A file with a newer format_version is refused with NF_ERR_VERSION; a missing or bad
 * key is NF_ERR_CORRUPT naming it; a tensor whose shape does not match the config is
 * NF_ERR_CORRUPT naming the tensor and both shapes.
 *
 * Training-state file (M.state.safetensors): raw weights, AdamW moments, EMA, step,
 * RNG state, data order and loss-scale state, so that resuming is exact. */
#ifndef NF_CHECKPOINT_H
#define NF_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "nf_common.h"
#include "nf_repr.h"
#include "nf_rng.h"
#include "nf_unet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NF_CKPT_FORMAT_VERSION 1
#define NF_CKPT_MAX_CLASSES 128
#define NF_CKPT_NAME_MAX 64
#define NF_CKPT_MAX_EXTRA 16

/* Everything besides the network that is needed to use (and describe) a model. */
typedef struct {
    char representation[8];   /* "wave", "stft" or "mag" (nf_repr.h) */
    int n_fft, hop;           /* stft frames (0 for wave) */
    float compress_power;     /* stft/mag amplitude compression |X|^p (1: none) */
    float log_floor;          /* mag: > 0: log(1 + |X|/log_floor) instead (key optional, 0) */
    int phase_bins;           /* mag: low bins kept complex (key optional, 0) */
    int lead_frames;          /* stft/mag: frames of silence before each clip (key optional, 0) */
    float norm_scale;         /* data are multiplied by this before diffusion */
    int sample_rate;          /* Hz */
    int channels;             /* 1 or 2 */
    int length;               /* samples per sound */
    char objective[4];        /* "eps", "v" or "x0" */
    char schedule[8];         /* "linear" or "cosine" */
    int T;                    /* diffusion steps of the training schedule */
    int learned_variance;     /* 1: out_ch = 2 in_ch (Nichol & Dhariwal's interpolated variance) */
    int num_classes;          /* 0: unconditional */
    char class_names[NF_CKPT_MAX_CLASSES][NF_CKPT_NAME_MAX];
    /* Training summary. */
    long long steps;
    long long examples_seen;
    double final_loss;
    long long class_files[NF_CKPT_MAX_CLASSES]; /* data files per class ([0]: all, if unconditional) */
    uint64_t seed;
    /* Free-form extras (e.g. "dataset": path, "git": version). */
    int n_extra;
    char extra_key[NF_CKPT_MAX_EXTRA][NF_CKPT_NAME_MAX];
    char extra_value[NF_CKPT_MAX_EXTRA][256];
} nf_model_desc;

/* Defaults: wave, objective "v", schedule "cosine", T 1000, compress_power 1,
 * norm_scale 1, everything else 0/empty. */
void nf_model_desc_init(nf_model_desc *d);

/* JSON forms (malloc'd text, caller frees). from_json: `what` names the source in
 * messages; missing or ill-typed keys are NF_ERR_CORRUPT naming the key. */
nf_status nf_model_desc_to_json(const nf_model_desc *d, char **json);
/* The representation a model was trained with (kind, STFT size, compression, scale), for
 * nf_repr_create. Fails on an unknown representation name. */
nf_status nf_model_desc_repr_config(const nf_model_desc *d, nf_repr_config *rc);
nf_status nf_model_desc_from_json(const char *json, size_t len, const char *what, nf_model_desc *d);
nf_status nf_unet_config_to_json(const nf_unet_config *c, char **json);
nf_status nf_unet_config_from_json(const char *json, size_t len, const char *what, nf_unet_config *c);

/* 64-bit FNV-1a over the little-endian bytes of p[0..n), as 16 lower-case hex digits
 * (for nf_model_info.hash). */
uint64_t nf_weights_hash64(const float *p, size_t n);
void nf_weights_hash(const float *p, size_t n, char out[17]);

/* Save a model: net's parameters, `ema` (nf_unet_num_params floats, or NULL) and the
 * description; store_f16 writes F16 instead of F32 (rounded to nearest even). Atomic. */
nf_status nf_checkpoint_save(const char *path, nf_unet *net, const float *ema,
                             const nf_model_desc *desc, int store_f16);

typedef struct {
    int format_version;
    nf_unet_config config;
    nf_model_desc desc;
    int has_ema;
    int stored_f16;           /* the weights are stored as F16 */
    long long param_count;
    char hash[17];            /* of the weights put into the network */
} nf_checkpoint_info;

/* Read and check the header only (no weights loaded). */
nf_status nf_checkpoint_read_info(const char *path, nf_checkpoint_info *info);

#define NF_CKPT_USE_EMA 1u    /* put the EMA weights (if the file has them) into the network */

/* Load a model: creates *net from the stored config (nf_unet_create with max_batch,
 * max_length) and fills its parameters. With `ema` non-NULL, *ema receives a malloc'd
 * copy of the EMA weights (NULL if the file has none). `info` may be NULL. */
nf_status nf_checkpoint_load(const char *path, int max_batch, int max_length, unsigned flags,
                             nf_unet **net, float **ema, nf_checkpoint_info *info);

/* ---- training state ---- */

#define NF_STATE_FORMAT_VERSION 1

typedef struct {
    size_t n_params;
    float *params;            /* raw (non-EMA) weights [n_params], or NULL */
    float *adam_m, *adam_v;   /* AdamW moments [n_params] */
    float *ema;               /* [n_params], or NULL */
    int64_t step;             /* optimizer steps taken */
    int64_t epoch;
    nf_rng rng;               /* the data-order / augmentation generator */
    int64_t *order;           /* the current epoch's permutation of the examples */
    size_t n_order;
    int64_t order_pos;        /* next position in `order` */
    float loss_scale;         /* dynamic loss scale (1 when unused) */
    int64_t loss_scale_good_steps;
    char model_hash[17];      /* hash of the model file's weights this state goes with ("" if none) */
} nf_train_state;

/* Save atomically. Arrays that are NULL (params, ema, order with n_order 0) are left out. */
nf_status nf_train_state_save(const char *path, const nf_train_state *s);
/* Load into *s (arrays malloc'd; free with nf_train_state_free). expected_n_params > 0
 * must match the file's. */
nf_status nf_train_state_load(const char *path, size_t expected_n_params, nf_train_state *s);
void nf_train_state_free(nf_train_state *s);

#ifdef __cplusplus
}
#endif
#endif
