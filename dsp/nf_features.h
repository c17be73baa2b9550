/* noisefloor sound-quality measures: spectral features of one sound, a classifier on
 * them, a distance between two sets of sounds, and the checks every generated sound
 * must pass (not silent, not clipped, finite, not a copy of a training clip).
 *
 * Features are computed with the project's STFT (nf_stft.h: periodic Hann, n_fft about
 * 46 ms rounded to a power of two, hop n_fft/4) and a 1 ms RMS envelope. Every feature
 * is on a scale where differences mean the same everywhere (dB, log2 of Hz or ms), so
 * that standardised features and Gaussian fits behave. The vector is NF_FEAT_DIM long:
 *   [0, 32)   mel_mean_NN    log-mel band energy (dB) of the whole sound, time-averaged
 *             (32 triangles evenly spaced on the HTK mel scale from 20 Hz to Nyquist;
 *             floored at -90 dB)
 *   [32, 64)  mel_attack_NN  the same over the attack window (frames centred in 0..30 ms)
 *   [64, 72)  env_A_Bms_db   mean power from A to B ms relative to the envelope's peak, dB
 *             (0-10, 10-25, 25-50, 50-100, 100-200, 200-400, 400-800, 800-1600; floored
 *             at -80 dB, and at the floor past the clip's end): the decay's shape
 *   then      log2_centroid_hz, log2_bandwidth_hz, log2_rolloff_hz (85 %),
 *             log10_flatness (Wiener entropy, energy-weighted over frames),
 *             log2_zcr_hz (zero crossings per second over the sound's active part),
 *             log2_decay20_ms, log2_decay40_ms (envelope peak -> last time within 20 / 40
 *             dB of it), log2_attack_ms (first time within 20 dB of the peak -> peak,
 *             plus 1 ms), log2_peak_time_ms (clip start -> envelope peak, plus 1 ms),
 *             crest_db (peak over RMS of the active part), log2_dominant_hz (strongest
 *             bin of the summed power spectrum, parabolic interpolation). */
#ifndef NF_FEATURES_H
#define NF_FEATURES_H

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NF_FEAT_MEL_BANDS 32
#define NF_FEAT_SCALARS 11
#define NF_FEAT_ENV_SEGMENTS 8
#define NF_FEAT_DIM (2 * NF_FEAT_MEL_BANDS + NF_FEAT_ENV_SEGMENTS + NF_FEAT_SCALARS)

/* The name of feature i ("mel_mean_00", ..., "log2_dominant_hz"); NULL out of range. */
const char *nf_feature_name(int i);

/* A feature extractor for one sample rate: owns an STFT plan, the mel filterbank and
 * scratch space. One extractor per thread. */
typedef struct nf_features nf_features;
nf_status nf_features_create(int sample_rate, nf_features **out);
void nf_features_free(nf_features *f);

/* feat[NF_FEAT_DIM] of the sound x[length] (length >= 16 frames). Always finite for a
 * finite input (silence gives the floor values: -100 dB, zero rates). */
nf_status nf_features_compute(nf_features *f, const float *x, int length, float *feat);
/* feats[n][NF_FEAT_DIM] of n sounds laid out x[n][length]; creates its own extractor. */
nf_status nf_features_compute_batch(int sample_rate, const float *x, int n, int length,
                                    float *feats);

/* ---- standardisation ---- */
typedef struct {
    float mean[NF_FEAT_DIM];
    float std[NF_FEAT_DIM]; /* floored at 1e-3 of the feature's scale, never 0 */
} nf_feat_stats;

nf_status nf_feat_stats_fit(const float *feats, int n, nf_feat_stats *st);
/* z[i] = (feat[i] - mean[i]) / std[i], in place on one vector. */
void nf_feat_standardize(const nf_feat_stats *st, float *feat);

/* ---- classifier: multinomial logistic regression on standardised features ----
 * Softmax regression (e.g. Bishop, PRML 4.3.4) with an L2 penalty, trained by 600
 * steps of full-batch gradient descent from zero weights: deterministic, and robust on
 * a few hundred examples. */
typedef struct {
    int n_classes;
    nf_feat_stats stats;
    float *w; /* [n_classes][NF_FEAT_DIM] */
    float *b; /* [n_classes] */
} nf_feat_classifier;

nf_status nf_feat_classifier_fit(nf_feat_classifier *c, const float *feats, const int *labels,
                                 int n, int n_classes);
/* The most probable class of one feature vector; probs[n_classes] may be NULL. */
int nf_feat_classifier_predict(const nf_feat_classifier *c, const float *feat, float *probs);
/* Fraction of n feature vectors whose predicted class equals labels[i]. */
double nf_feat_classifier_accuracy(const nf_feat_classifier *c, const float *feats,
                                   const int *labels, int n);
void nf_feat_classifier_free(nf_feat_classifier *c);

/* ---- distance between two sets of sounds ----
 * Fréchet distance between Gaussian fits of the standardised features (the FID formula,
 * Heusel et al. 2017, eq. 6; Dowson & Landau 1982):
 *   d² = |mu_a - mu_b|² + Tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2}).
 * Both sets are standardised with `st` (the reference corpus's statistics), so d² is in
 * units of the corpus's per-feature variance. Both covariances are shrunk towards their
 * diagonals, S = (1 - a) C + a diag(C) with one a = D / (D + min(na, nb)) (D =
 * NF_FEAT_DIM), which keeps them well conditioned for few samples; min(na, nb) < 3 uses
 * the diagonals alone. Returns d² (not d).
 * delta[NF_FEAT_DIM] (may be NULL) receives the per-feature |mu_a - mu_b| / std. */
nf_status nf_feat_frechet(const nf_feat_stats *st, const float *a, int na, const float *b, int nb,
                          double *d2, float *delta);
/* The corpus's own reference: the Fréchet d² between its even- and odd-indexed halves
 * (so "close to the corpus" means within a small multiple of this). */
nf_status nf_feat_frechet_split_half(const nf_feat_stats *st, const float *feats, int n,
                                     double *d2);

/* The reference for judging m sounds against a corpus of n: the Fréchet d² between m
 * corpus sounds drawn at random (without replacement) and the other n - m, over `draws`
 * draws from `seed`. Fréchet estimates from few samples are biased upwards by an amount
 * that depends on the sample sizes, so a generated set of m is compared with this
 * (same m), not with the split-half value. *mean_d2 and *max_d2 may be NULL. */
nf_status nf_feat_frechet_holdout(const nf_feat_stats *st, const float *feats, int n, int m,
                                  int draws, uint64_t seed, double *mean_d2, double *max_d2);

/* ---- per-sound checks ---- */
typedef struct {
    int nonfinite;   /* samples that are NaN or Inf */
    int clipped;     /* samples with |x| >= 0.999 */
    float peak_db;   /* dBFS of the largest finite |x| (-inf for all zeros) */
    int silent;      /* peak below -60 dBFS */
    int is_clipped;  /* more than NF_CHECK_MAX_CLIPPED clipped samples */
    int ok;          /* finite, not silent, not clipped */
} nf_sound_check;
#define NF_CHECK_MAX_CLIPPED 4
void nf_sound_check_run(const float *x, int length, nf_sound_check *out);

/* Copy detection: the largest normalised cross-correlation
 *   max over |lag| <= max_lag of |sum_t x[t] y[t + lag]| / (|x| |y|)
 * between x[length] and each of the n training clips train[n][length] (clips that start
 * at their onset line up within a few ms, so a small max_lag suffices; 0 = 5 ms at
 * `sample_rate`). *best_ncc and *best_index (may be NULL) receive the maximum and its clip.
 * A value above NF_COPY_THRESHOLD marks x as a copy of that clip. */
#define NF_COPY_THRESHOLD 0.99
nf_status nf_copy_max_ncc(const float *x, const float *train, int n, int length, int max_lag,
                          int sample_rate, double *best_ncc, int *best_index);

#ifdef __cplusplus
}
#endif
#endif
