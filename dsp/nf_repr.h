/* noisefloor representation: the map between audio [B][C][L] and the tensor the
 * diffusion model sees, [B][Cm][Lm], and back.
 *
 * - "wave": identity (Cm = C, Lm = L), times the normalisation scale.
 * - "stft": the compressed STFT layout of nf_stft.h (Cm = 2 (n_fft/2 + 1) C,
 *   Lm = lead_frames + 1 + L / hop), times the normalisation scale.
 * - "mag": the compressed STFT magnitudes (Cm = (n_fft/2 + 1 + phase_bins) C, Lm as
 *   "stft"; the lowest phase_bins bins keep their phase), times the scale; decoding finds
 *   the other phases with fast Griffin-Lim (nf_stft.h). The model
 *   then only has to learn spectral envelopes: noise-like sounds (hats, cymbals, claps)
 *   are a smooth magnitude plus an invented phase, where in the complex layout their
 *   random phase makes every coefficient look like the diffusion noise itself and a
 *   slightly miscalibrated denoiser turns them into near-silence.
 * encode multiplies by `scale` (chosen so that the encoded data has roughly unit
 * variance, see nf_repr_estimate_scale); decode divides by it first. The diffusion code
 * only ever sees [B, Cm, Lm].
 *
 * Threads: an nf_repr owns an STFT plan with scratch buffers: one per thread. */
#ifndef NF_REPR_H
#define NF_REPR_H

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { NF_REPR_WAVE = 0, NF_REPR_STFT, NF_REPR_MAG } nf_repr_kind;

typedef struct {
    nf_repr_kind kind;
    int channels; /* audio channels C */
    int n_fft;    /* stft, mag: power of two (0: 512) */
    int hop;      /* stft, mag: 0 for n_fft/4 */
    float power;  /* stft, mag: amplitude compression exponent p (0: 0.5); 1 = plain */
    int gl_iters; /* mag: Griffin-Lim iterations when decoding (0: NF_REPR_GL_ITERS) */
    float log_floor; /* mag: > 0 compresses log(1 + |X| / log_floor) instead of |X|^power
                      * (nf_repr_log_floor gives the usual value) */
    int phase_bins;  /* mag: the lowest bins kept as complex values (nf_stft.h) */
    int lead_frames; /* stft, mag: frames of the silence before the clip in front of it
                      * (nf_stft_set_lead); Lm grows by as many */
    float scale;  /* normalisation multiplier (0: 1) */
} nf_repr_config;

typedef struct nf_repr nf_repr;

#define NF_REPR_GL_ITERS 64

/* "wave" / "stft" / "mag" -> kind; -1 for an unknown name. */
int nf_repr_kind_from_name(const char *name);
const char *nf_repr_kind_name(nf_repr_kind k);

/* The log floor that sits 60 dB below a full-scale sine's peak bin for this n_fft
 * (amplitude 1, periodic Hann window: |X| = n_fft / 4). */
float nf_repr_log_floor(int n_fft);

/* Fills in the defaults (n_fft 512, hop n_fft/4, power 0.5, no log, scale 1). */
void nf_repr_config_default(nf_repr_config *c, nf_repr_kind kind, int channels);

nf_status nf_repr_create(const nf_repr_config *cfg, nf_repr **out);
void nf_repr_free(nf_repr *r);
/* The configuration with defaults resolved (n_fft, hop, power and scale as used). */
const nf_repr_config *nf_repr_get_config(const nf_repr *r);

int nf_repr_channels(const nf_repr *r);        /* Cm */
int nf_repr_length(const nf_repr *r, int L);   /* Lm for audio of L samples */

/* audio [B][C][L] -> x [B][Cm][Lm] */
nf_status nf_repr_encode(nf_repr *r, const float *audio, int B, int L, float *x);
/* x [B][Cm][Lm] -> audio [B][C][L] */
nf_status nf_repr_decode(nf_repr *r, const float *x, int B, int L, float *audio);

void nf_repr_set_scale(nf_repr *r, float scale);
float nf_repr_get_scale(const nf_repr *r);
/* The scale that gives the encoded clips unit RMS: 1 / sqrt(mean(encode_1(audio)^2))
 * over up to `max_clips` evenly spaced clips of audio [n][C][L] (0: all). Does not
 * change r's scale. */
nf_status nf_repr_estimate_scale(nf_repr *r, const float *audio, int n, int L, int max_clips,
                                 float *scale);

#ifdef __cplusplus
}
#endif
#endif
