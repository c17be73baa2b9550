/* Small untrained models for tests: a U-Net with fresh nf_unet_init_params weights and
 * the description that goes with it, in memory or saved as a checkpoint.
 *
 *   nf_test_model_opts o;
 *   nf_test_model_opts_init(&o);        (8 kHz mono wave, 64 samples, C0 = 8, 2 levels)
 *   o.class_names = "kick,snare";
 *   o.seed = 3;
 *   st = nf_test_model_save(&o, path);
 *
 * The network's in_ch and out_ch follow the representation (nf_repr_channels) and its
 * num_classes the classes; everything else is the caller's. The functions return an
 * nf_status with nf_last_error() set on failure; they neither print nor exit. */
#ifndef NF_TEST_MODEL_H
#define NF_TEST_MODEL_H

#include <stdint.h>

#include "nf_checkpoint.h"
#include "nf_repr.h"
#include "nf_unet.h"

typedef struct {
    /* Representation (n_fft, hop, power, log_floor and phase_bins: stft and mag only). */
    nf_repr_kind repr;        /* NF_REPR_WAVE */
    int n_fft, hop;           /* 32, 8 */
    float power;              /* amplitude compression: 0.5 */
    float log_floor;          /* mag: 0 (none) */
    int phase_bins;           /* mag: 0 */
    float norm_scale;         /* 1 */
    /* Audio. */
    int sample_rate;          /* 8000 */
    int channels;             /* 1 */
    int length;               /* samples: 64 */
    /* Diffusion. */
    const char *objective;    /* "v" */
    const char *schedule;     /* "cosine" */
    int T;                    /* 1000 */
    /* Classes: num_classes named "class0", "class1", ...; or class_names, a comma-separated
     * list ("kick,snare"; empty fields skipped, "" is unconditional), which sets the count
     * (num_classes must then be 0 or agree). */
    int num_classes;          /* 0 */
    const char *class_names;  /* NULL */
    /* The network; in_ch, out_ch and num_classes are filled in from the above.
     * base 8, n_levels 2, mults {1, 2}, blocks 1, heads 1, groups 2, no attention. */
    nf_unet_config net;
    /* Weights and file. */
    uint64_t seed;            /* nf_unet_init_params seed: 1 */
    int ema;                  /* 1: also store a copy of the weights as the EMA weights */
    int f16;                  /* 1: store F16 */
} nf_test_model_opts;

void nf_test_model_opts_init(nf_test_model_opts *o);

/* The network (initialised weights, room for one example of `length` samples) and its
 * description. desc may be NULL. On failure *net is NULL. */
nf_status nf_test_model_create(const nf_test_model_opts *o, nf_unet **net, nf_model_desc *desc);

/* nf_test_model_create, then nf_checkpoint_save to path. */
nf_status nf_test_model_save(const nf_test_model_opts *o, const char *path);

#endif
