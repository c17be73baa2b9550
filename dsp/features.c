/* Spectral features, a classifier, a set distance and per-sound checks: noisefloor's
 * own measures of generated sounds. See nf_features.h for the list of features. */
#include "nf_features.h"

#include "nf_rng.h"
#include "nf_stft.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NB NF_FEAT_MEL_BANDS
#define D NF_FEAT_DIM
/* -90 dB: the floor of the mel features. A model's residual hiss at about -70 dBFS
 * stays near this floor, so it does not count as a different spectrum. */
#define POWER_FLOOR 1e-9
#define NE NF_FEAT_ENV_SEGMENTS
#define ENV_FLOOR_DB -80.0

/* Envelope segments in ms: log-spaced, so that a kick's body and a cymbal's tail both
 * get a few. */
static const double env_edges_ms[NE + 1] = {0, 10, 25, 50, 100, 200, 400, 800, 1600};

enum {
    F_ENV = 2 * NB,
    F_CENTROID = 2 * NB + NE,
    F_BANDWIDTH,
    F_ROLLOFF,
    F_FLATNESS,
    F_ZCR,
    F_DECAY20,
    F_DECAY40,
    F_ATTACK,
    F_PEAKTIME,
    F_CREST,
    F_DOMINANT
};

static const char *const scalar_names[NF_FEAT_SCALARS] = {
    "log2_centroid_hz", "log2_bandwidth_hz", "log2_rolloff_hz", "log10_flatness",
    "log2_zcr_hz", "log2_decay20_ms", "log2_decay40_ms", "log2_attack_ms",
    "log2_peak_time_ms", "crest_db", "log2_dominant_hz",
};

static const char *const env_names[NE] = {
    "env_0_10ms_db", "env_10_25ms_db", "env_25_50ms_db", "env_50_100ms_db",
    "env_100_200ms_db", "env_200_400ms_db", "env_400_800ms_db", "env_800_1600ms_db",
};

const char *nf_feature_name(int i)
{
    static char mel_names[2 * NB][16];
    static int made = 0;
    if (i < 0 || i >= D) return NULL;
    if (i >= 2 * NB + NE) return scalar_names[i - 2 * NB - NE];
    if (i >= 2 * NB) return env_names[i - 2 * NB];
    if (!made) {
        /* Written once with identical contents; a race between two first callers
         * writes the same bytes. */
        for (int b = 0; b < NB; b++) {
            snprintf(mel_names[b], sizeof mel_names[b], "mel_mean_%02d", b);
            snprintf(mel_names[NB + b], sizeof mel_names[NB + b], "mel_attack_%02d", b);
        }
        made = 1;
    }
    return mel_names[i];
}

struct nf_features {
    int rate, n_fft, bins;
    nf_stft *stft;
    float *mel;      /* [NB][bins] triangular filters */
    int cap_len;     /* scratch sized for this length */
    float *re, *im;  /* [bins][frames] */
    double *spec;    /* [bins] summed power spectrum */
};

/* HTK mel scale (Young et al., The HTK Book, 2006, eq. 5.13). */
static double hz_to_mel(double f) { return 2595.0 * log10(1.0 + f / 700.0); }
static double mel_to_hz(double m) { return 700.0 * (pow(10.0, m / 2595.0) - 1.0); }

nf_status nf_features_create(int sample_rate, nf_features **out)
{
    *out = NULL;
    if (sample_rate < 4000 || sample_rate > 384000)
        return nf_fail(NF_ERR_ARG, "features: sample rate %d Hz out of range 4000..384000",
                       sample_rate);
    nf_features *f = calloc(1, sizeof *f);
    if (!f) return nf_fail(NF_ERR_NOMEM, "features: out of memory");
    f->rate = sample_rate;
    /* About 46 ms (1024 at 22.05 kHz, 2048 at 44.1/48 kHz): enough resolution for a
     * 45 Hz kick, still short enough for the attack window. */
    f->n_fft = 256;
    while (f->n_fft < 0.035 * sample_rate) f->n_fft *= 2;
    nf_status st = nf_stft_create(f->n_fft, 0, &f->stft);
    if (st) {
        free(f);
        return st;
    }
    f->bins = nf_stft_bins(f->stft);
    f->mel = calloc((size_t)NB * f->bins, sizeof *f->mel);
    f->spec = malloc((size_t)f->bins * sizeof *f->spec);
    if (!f->mel || !f->spec) {
        nf_features_free(f);
        return nf_fail(NF_ERR_NOMEM, "features: out of memory");
    }
    /* NB triangles evenly spaced in mel from 20 Hz to Nyquist, each peaking at 1. */
    double lo = hz_to_mel(20.0), hi = hz_to_mel(0.5 * sample_rate);
    for (int b = 0; b < NB; b++) {
        double f0 = mel_to_hz(lo + (hi - lo) * b / (NB + 1));
        double f1 = mel_to_hz(lo + (hi - lo) * (b + 1) / (NB + 1));
        double f2 = mel_to_hz(lo + (hi - lo) * (b + 2) / (NB + 1));
        double wsum = 0.0;
        for (int k = 0; k < f->bins; k++) {
            double fk = (double)k * sample_rate / f->n_fft, w = 0.0;
            if (fk > f0 && fk <= f1) w = (fk - f0) / (f1 - f0);
            else if (fk > f1 && fk < f2) w = (f2 - fk) / (f2 - f1);
            f->mel[(size_t)b * f->bins + k] = (float)w;
            wsum += w;
        }
        /* A low band narrower than one bin would be empty: give it its nearest bin. */
        if (wsum == 0.0) {
            int k = (int)lround(f1 * f->n_fft / sample_rate);
            if (k >= f->bins) k = f->bins - 1;
            f->mel[(size_t)b * f->bins + k] = 1.0f;
            wsum = 1.0;
        }
        /* Normalise to unit area: a band's value is a mean power density, so bands of
         * different widths are on one scale. */
        for (int k = 0; k < f->bins; k++) f->mel[(size_t)b * f->bins + k] /= (float)wsum;
    }
    *out = f;
    return NF_OK;
}

void nf_features_free(nf_features *f)
{
    if (!f) return;
    nf_stft_free(f->stft);
    free(f->mel);
    free(f->re);
    free(f->im);
    free(f->spec);
    free(f);
}

static double db(double p) { return 10.0 * log10(p + POWER_FLOOR); }

nf_status nf_features_compute(nf_features *f, const float *x, int length, float *feat)
{
    if (!x || !feat || length < 16)
        return nf_fail(NF_ERR_ARG, "features: need at least 16 samples (got %d)", length);
    for (int i = 0; i < length; i++)
        if (!isfinite(x[i])) return nf_fail(NF_ERR_NUMERIC, "features: non-finite sample %d", i);
    const int K = f->bins, F = nf_stft_frames(f->stft, length), hop = nf_stft_hop(f->stft);
    const double sr = f->rate;
    if (length > f->cap_len) {
        float *re = realloc(f->re, (size_t)K * F * sizeof *re);
        if (re) f->re = re;
        float *im = realloc(f->im, (size_t)K * F * sizeof *im);
        if (im) f->im = im;
        if (!re || !im) return nf_fail(NF_ERR_NOMEM, "features: out of memory");
        f->cap_len = length;
    }
    nf_status st = nf_stft_forward(f->stft, x, length, f->re, f->im);
    if (st) return st;

    /* Power, scaled so that a full-scale sine's peak bin is about 0 dB: |X|^2 / (sum w)^2
     * with sum w = n_fft/2 for the periodic Hann, times 4 for the one-sided spectrum. */
    const double pscale = 4.0 / ((double)f->n_fft * f->n_fft / 4.0);
    float *pw = f->re; /* power overwrites the real parts, [K][F] */
    for (size_t i = 0; i < (size_t)K * F; i++)
        pw[i] = (float)(((double)f->re[i] * f->re[i] + (double)f->im[i] * f->im[i]) * pscale);

    /* Attack window: frames whose centre is at or before 30 ms (at least one). */
    int Fa = (int)floor(0.030 * sr / hop) + 1;
    if (Fa > F) Fa = F;
    double total = 0.0;
    for (int k = 0; k < K; k++) {
        double s = 0.0;
        for (int t = 0; t < F; t++) s += pw[(size_t)k * F + t];
        f->spec[k] = s / F;
        total += f->spec[k];
    }
    for (int b = 0; b < NB; b++) {
        const float *m = f->mel + (size_t)b * K;
        double mean = 0.0, att = 0.0;
        for (int k = 0; k < K; k++) {
            if (m[k] == 0.0f) continue;
            mean += m[k] * f->spec[k];
            double a = 0.0;
            for (int t = 0; t < Fa; t++) a += pw[(size_t)k * F + t];
            att += m[k] * a / Fa;
        }
        feat[b] = (float)db(mean);
        feat[NB + b] = (float)db(att);
    }

    /* Spectral shape of the time-averaged power spectrum (Peeters 2004, "A large set of
     * audio features", sections 6.1: centroid, spread, roll-off). */
    double c = 0.0, bw = 0.0, roll = 0.0, dom = 0.0;
    if (total > 0.0) {
        for (int k = 0; k < K; k++) c += (double)k * sr / f->n_fft * f->spec[k];
        c /= total;
        for (int k = 0; k < K; k++) {
            double d = (double)k * sr / f->n_fft - c;
            bw += d * d * f->spec[k];
        }
        bw = sqrt(bw / total);
        double cum = 0.0;
        for (int k = 0; k < K; k++) {
            cum += f->spec[k];
            if (cum >= 0.85 * total) {
                roll = (double)k * sr / f->n_fft;
                break;
            }
        }
        /* Strongest bin above DC, refined by a parabola through log powers (the
         * quadratic interpolation of Smith & Serra's PARSHL, 1987). */
        int kb = 1;
        for (int k = 2; k < K; k++)
            if (f->spec[k] > f->spec[kb]) kb = k;
        double delta = 0.0;
        if (kb + 1 < K) {
            double a = log(f->spec[kb - 1] + 1e-30), bb = log(f->spec[kb] + 1e-30),
                   g = log(f->spec[kb + 1] + 1e-30), den = a - 2.0 * bb + g;
            if (den < 0.0) delta = 0.5 * (a - g) / den;
            if (delta > 0.5) delta = 0.5;
            if (delta < -0.5) delta = -0.5;
        }
        dom = (kb + delta) * sr / f->n_fft;
    }
    feat[F_CENTROID] = (float)log2(c + 1.0);
    feat[F_BANDWIDTH] = (float)log2(bw + 1.0);
    feat[F_ROLLOFF] = (float)log2(roll + 1.0);
    feat[F_DOMINANT] = (float)log2(dom + 1.0);

    /* Spectral flatness (Wiener entropy: geometric over arithmetic mean of the power
     * spectrum, bins 1..K-1), averaged over frames weighted by frame energy. */
    double fl_num = 0.0, fl_den = 0.0;
    for (int t = 0; t < F; t++) {
        double lsum = 0.0, sum = 0.0;
        for (int k = 1; k < K; k++) {
            double p = pw[(size_t)k * F + t];
            lsum += log(p + POWER_FLOOR);
            sum += p;
        }
        double am = sum / (K - 1) + POWER_FLOOR, gm = exp(lsum / (K - 1));
        fl_num += sum * (gm / am);
        fl_den += sum;
    }
    feat[F_FLATNESS] = (float)log10((fl_den > 0.0 ? fl_num / fl_den : 0.0) + 1e-6);

    /* 1 ms RMS envelope: attack, decay times and the active part of the sound. */
    int B = (int)(0.001 * sr);
    if (B < 1) B = 1;
    int J = length / B;
    if (J < 1) J = 1, B = length;
    double env_peak = 0.0;
    int jp = 0;
    for (int j = 0; j < J; j++) {
        double s = 0.0;
        for (int i = j * B; i < (j + 1) * B; i++) s += (double)x[i] * x[i];
        s /= B;
        if (s > env_peak) env_peak = s, jp = j;
    }
    double ms_per_block = 1000.0 * B / sr;
    int first20 = jp, last20 = jp, last40 = jp;
    for (int j = 0; j < J; j++) {
        double s = 0.0;
        for (int i = j * B; i < (j + 1) * B; i++) s += (double)x[i] * x[i];
        s /= B;
        if (s >= env_peak * 1e-2) { /* within 20 dB of the peak (power ratio 100) */
            if (j < first20) first20 = j;
            if (j > last20) last20 = j;
        }
        if (s >= env_peak * 1e-4 && j > last40) last40 = j;
    }
    if (env_peak <= 0.0) first20 = last20 = last40 = jp = 0;
    /* Mean power per envelope segment relative to the peak block, in dB (floored; a
     * segment past the clip's end is at the floor). */
    for (int e = 0; e < NE; e++) {
        int i0 = (int)(env_edges_ms[e] * 1e-3 * sr), i1 = (int)(env_edges_ms[e + 1] * 1e-3 * sr);
        if (i1 > length) i1 = length;
        double v = ENV_FLOOR_DB;
        if (i1 > i0 && env_peak > 0.0) {
            double s = 0.0;
            for (int i = i0; i < i1; i++) s += (double)x[i] * x[i];
            v = 10.0 * log10(s / (i1 - i0) / env_peak + 1e-300);
            if (v < ENV_FLOOR_DB) v = ENV_FLOOR_DB;
        }
        feat[F_ENV + e] = (float)v;
    }
    feat[F_DECAY20] = (float)log2((last20 - jp + 1) * ms_per_block);
    feat[F_DECAY40] = (float)log2((last40 - jp + 1) * ms_per_block);
    feat[F_ATTACK] = (float)log2((jp - first20) * ms_per_block + 1.0);
    feat[F_PEAKTIME] = (float)log2((jp + 0.5) * ms_per_block + 1.0);

    /* Zero crossings and crest factor over the active part: the start to the end of
     * the last block within 40 dB of the peak, so that a near-silent tail (or a model's
     * residual noise floor) does not dominate. */
    int active = (last40 + 1) * B;
    if (active > length || env_peak <= 0.0) active = length;
    int zc = 0;
    double peak = 0.0, ss = 0.0;
    for (int i = 0; i < active; i++) {
        if (i > 0 && ((x[i - 1] < 0.0f) != (x[i] < 0.0f))) zc++;
        double a = fabs(x[i]);
        if (a > peak) peak = a;
        ss += (double)x[i] * x[i];
    }
    feat[F_ZCR] = (float)log2(zc * sr / active + 1.0);
    double rms = sqrt(ss / active);
    feat[F_CREST] = (float)(peak > 0.0 ? 20.0 * log10(peak / rms) : 0.0);
    return NF_OK;
}

nf_status nf_features_compute_batch(int sample_rate, const float *x, int n, int length,
                                    float *feats)
{
    nf_features *f;
    nf_status st = nf_features_create(sample_rate, &f);
    if (st) return st;
    for (int i = 0; i < n && !st; i++)
        st = nf_features_compute(f, x + (size_t)i * length, length, feats + (size_t)i * D);
    nf_features_free(f);
    return st;
}

/* ---- standardisation ---- */

nf_status nf_feat_stats_fit(const float *feats, int n, nf_feat_stats *st)
{
    if (n < 2) return nf_fail(NF_ERR_EMPTY, "feature statistics need at least 2 sounds (got %d)", n);
    for (int j = 0; j < D; j++) {
        double m = 0.0, v = 0.0;
        for (int i = 0; i < n; i++) m += feats[(size_t)i * D + j];
        m /= n;
        for (int i = 0; i < n; i++) {
            double d = feats[(size_t)i * D + j] - m;
            v += d * d;
        }
        double sd = sqrt(v / (n - 1));
        /* A constant feature (e.g. a floor value) must not blow up: floor the std. */
        double floor_sd = 1e-3 * (fabs(m) + 1.0);
        st->mean[j] = (float)m;
        st->std[j] = (float)(sd > floor_sd ? sd : floor_sd);
    }
    return NF_OK;
}

void nf_feat_standardize(const nf_feat_stats *st, float *feat)
{
    for (int j = 0; j < D; j++) feat[j] = (feat[j] - st->mean[j]) / st->std[j];
}

/* ---- softmax regression ---- */

#define CLF_STEPS 600
#define CLF_LR 0.5
#define CLF_L2 1e-3

static void softmax_logits(const nf_feat_classifier *c, const float *z, double *p)
{
    double mx = -INFINITY;
    for (int k = 0; k < c->n_classes; k++) {
        double s = c->b[k];
        for (int j = 0; j < D; j++) s += (double)c->w[(size_t)k * D + j] * z[j];
        p[k] = s;
        if (s > mx) mx = s;
    }
    double sum = 0.0;
    for (int k = 0; k < c->n_classes; k++) sum += (p[k] = exp(p[k] - mx));
    for (int k = 0; k < c->n_classes; k++) p[k] /= sum;
}

nf_status nf_feat_classifier_fit(nf_feat_classifier *c, const float *feats, const int *labels,
                                 int n, int n_classes)
{
    memset(c, 0, sizeof *c);
    if (n_classes < 2 || n < n_classes)
        return nf_fail(NF_ERR_ARG, "classifier: need >= 2 classes and a sound per class "
                                   "(got %d sounds, %d classes)", n, n_classes);
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= n_classes)
            return nf_fail(NF_ERR_ARG, "classifier: label %d of sound %d out of range", labels[i], i);
    nf_status st = nf_feat_stats_fit(feats, n, &c->stats);
    if (st) return st;
    c->n_classes = n_classes;
    c->w = calloc((size_t)n_classes * D, sizeof *c->w);
    c->b = calloc((size_t)n_classes, sizeof *c->b);
    float *z = malloc((size_t)n * D * sizeof *z);
    double *gw = malloc((size_t)n_classes * D * sizeof *gw);
    double *gb = malloc((size_t)n_classes * sizeof *gb);
    double *p = malloc((size_t)n_classes * sizeof *p);
    if (!c->w || !c->b || !z || !gw || !gb || !p) {
        free(z); free(gw); free(gb); free(p);
        nf_feat_classifier_free(c);
        return nf_fail(NF_ERR_NOMEM, "classifier: out of memory");
    }
    memcpy(z, feats, (size_t)n * D * sizeof *z);
    for (int i = 0; i < n; i++) nf_feat_standardize(&c->stats, z + (size_t)i * D);
    /* Gradient of the mean cross-entropy plus (L2/2)|W|^2: for each sound,
     * dL/dlogit_k = p_k - [k == y] (PRML eq. 4.109). Full batch, fixed order:
     * deterministic. The features are standardised, so one step size fits all. */
    for (int step = 0; step < CLF_STEPS; step++) {
        memset(gw, 0, (size_t)n_classes * D * sizeof *gw);
        memset(gb, 0, (size_t)n_classes * sizeof *gb);
        for (int i = 0; i < n; i++) {
            const float *zi = z + (size_t)i * D;
            softmax_logits(c, zi, p);
            for (int k = 0; k < n_classes; k++) {
                double g = p[k] - (k == labels[i] ? 1.0 : 0.0);
                gb[k] += g;
                for (int j = 0; j < D; j++) gw[(size_t)k * D + j] += g * zi[j];
            }
        }
        for (int k = 0; k < n_classes; k++) {
            c->b[k] -= (float)(CLF_LR * gb[k] / n);
            for (int j = 0; j < D; j++) {
                size_t q = (size_t)k * D + j;
                c->w[q] -= (float)(CLF_LR * (gw[q] / n + CLF_L2 * c->w[q]));
            }
        }
    }
    free(z); free(gw); free(gb); free(p);
    return NF_OK;
}

int nf_feat_classifier_predict(const nf_feat_classifier *c, const float *feat, float *probs)
{
    float z[D];
    double p[256];
    int K = c->n_classes > 256 ? 256 : c->n_classes;
    memcpy(z, feat, sizeof z);
    nf_feat_standardize(&c->stats, z);
    softmax_logits(c, z, p);
    int best = 0;
    for (int k = 0; k < K; k++) {
        if (probs) probs[k] = (float)p[k];
        if (p[k] > p[best]) best = k;
    }
    return best;
}

double nf_feat_classifier_accuracy(const nf_feat_classifier *c, const float *feats,
                                   const int *labels, int n)
{
    if (n < 1) return 0.0;
    int right = 0;
    for (int i = 0; i < n; i++)
        right += nf_feat_classifier_predict(c, feats + (size_t)i * D, NULL) == labels[i];
    return (double)right / n;
}

void nf_feat_classifier_free(nf_feat_classifier *c)
{
    if (!c) return;
    free(c->w);
    free(c->b);
    c->w = c->b = NULL;
    c->n_classes = 0;
}

/* ---- Fréchet distance ---- */

/* Eigen-decomposition of a symmetric n x n matrix: Householder reduction to
 * tridiagonal form, then the implicit QL algorithm (EISPACK tred2 / tql2, Bowdler,
 * Martin, Reinsch & Wilkinson, Numer. Math. 11, 1968; as restated in the public-domain
 * JAMA library). a (row-major) is read only; w receives the eigenvalues and v the
 * eigenvectors as columns (v[i * n + j] = component i of vector j). e is n scratch. */
static void sym_eig(const double *a, int n, double *w, double *v, double *e)
{
    double *d = w;
#define V(i, j) v[(size_t)(i) * n + (j)]
    memcpy(v, a, (size_t)n * n * sizeof *v);
    for (int j = 0; j < n; j++) d[j] = V(n - 1, j);
    /* tred2: Householder tridiagonalisation, accumulating the transformations. */
    for (int i = n - 1; i > 0; i--) {
        double scale = 0.0, h = 0.0;
        for (int k = 0; k < i; k++) scale += fabs(d[k]);
        if (scale == 0.0) {
            e[i] = d[i - 1];
            for (int j = 0; j < i; j++) {
                d[j] = V(i - 1, j);
                V(i, j) = 0.0;
                V(j, i) = 0.0;
            }
        } else {
            for (int k = 0; k < i; k++) {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            double f = d[i - 1], g = sqrt(h);
            if (f > 0) g = -g;
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for (int j = 0; j < i; j++) e[j] = 0.0;
            for (int j = 0; j < i; j++) {
                f = d[j];
                V(j, i) = f;
                g = e[j] + V(j, j) * f;
                for (int k = j + 1; k <= i - 1; k++) {
                    g += V(k, j) * d[k];
                    e[k] += V(k, j) * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for (int j = 0; j < i; j++) {
                e[j] /= h;
                f += e[j] * d[j];
            }
            double hh = f / (h + h);
            for (int j = 0; j < i; j++) e[j] -= hh * d[j];
            for (int j = 0; j < i; j++) {
                f = d[j];
                g = e[j];
                for (int k = j; k <= i - 1; k++) V(k, j) -= (f * e[k] + g * d[k]);
                d[j] = V(i - 1, j);
                V(i, j) = 0.0;
            }
        }
        d[i] = h;
    }
    for (int i = 0; i < n - 1; i++) {
        V(n - 1, i) = V(i, i);
        V(i, i) = 1.0;
        double h = d[i + 1];
        if (h != 0.0) {
            for (int k = 0; k <= i; k++) d[k] = V(k, i + 1) / h;
            for (int j = 0; j <= i; j++) {
                double g = 0.0;
                for (int k = 0; k <= i; k++) g += V(k, i + 1) * V(k, j);
                for (int k = 0; k <= i; k++) V(k, j) -= g * d[k];
            }
        }
        for (int k = 0; k <= i; k++) V(k, i + 1) = 0.0;
    }
    for (int j = 0; j < n; j++) {
        d[j] = V(n - 1, j);
        V(n - 1, j) = 0.0;
    }
    V(n - 1, n - 1) = 1.0;
    e[0] = 0.0;
    /* tql2: implicit QL iterations on the tridiagonal matrix (d, e). */
    for (int i = 1; i < n; i++) e[i - 1] = e[i];
    e[n - 1] = 0.0;
    double f = 0.0, tst1 = 0.0;
    const double eps = 2.220446049250313e-16;
    for (int l = 0; l < n; l++) {
        tst1 = fmax(tst1, fabs(d[l]) + fabs(e[l]));
        int m = l;
        while (m < n - 1 && fabs(e[m]) > eps * tst1) m++;
        if (m > l) {
            for (int iter = 0; iter < 60; iter++) {
                double g = d[l], p = (d[l + 1] - g) / (2.0 * e[l]), r = hypot(p, 1.0);
                if (p < 0) r = -r;
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                double dl1 = d[l + 1], h = g - d[l];
                for (int i = l + 2; i < n; i++) d[i] -= h;
                f += h;
                p = d[m];
                double c = 1.0, c2 = c, c3 = c, el1 = e[l + 1], sn = 0.0, s2 = 0.0;
                for (int i = m - 1; i >= l; i--) {
                    c3 = c2;
                    c2 = c;
                    s2 = sn;
                    g = c * e[i];
                    h = c * p;
                    r = hypot(p, e[i]);
                    e[i + 1] = sn * r;
                    sn = e[i] / r;
                    c = p / r;
                    p = c * d[i] - sn * g;
                    d[i + 1] = h + sn * (c * g + sn * d[i]);
                    for (int k = 0; k < n; k++) {
                        h = V(k, i + 1);
                        V(k, i + 1) = sn * V(k, i) + c * h;
                        V(k, i) = c * V(k, i) - sn * h;
                    }
                }
                p = -sn * s2 * c3 * el1 * e[l] / dl1;
                e[l] = sn * p;
                d[l] = c * p;
                if (!(fabs(e[l]) > eps * tst1)) break;
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
#undef V
}

/* Mean and shrunk covariance of n standardised feature vectors. */
static void gauss_fit(const nf_feat_stats *st, const float *x, int n, double alpha, double *mu,
                      double *cov)
{
    double *z = malloc((size_t)D * sizeof *z);
    memset(mu, 0, D * sizeof *mu);
    memset(cov, 0, (size_t)D * D * sizeof *cov);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            mu[j] += ((double)x[(size_t)i * D + j] - st->mean[j]) / st->std[j] / n;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++) z[j] = ((double)x[(size_t)i * D + j] - st->mean[j]) / st->std[j] - mu[j];
        for (int j = 0; j < D; j++)
            for (int k = 0; k < D; k++) cov[j * D + k] += z[j] * z[k];
    }
    double denom = n > 1 ? n - 1 : 1;
    for (int j = 0; j < D; j++)
        for (int k = 0; k < D; k++) cov[j * D + k] *= (j == k ? 1.0 : 1.0 - alpha) / denom;
    free(z);
}

nf_status nf_feat_frechet(const nf_feat_stats *st, const float *a, int na, const float *b, int nb,
                          double *d2, float *delta)
{
    if (na < 1 || nb < 1) return nf_fail(NF_ERR_EMPTY, "Fréchet distance of an empty set");
    size_t DD = (size_t)D * D;
    double *mua = malloc(D * sizeof(double)), *mub = malloc(D * sizeof(double));
    double *ca = malloc(DD * sizeof(double)), *cb = malloc(DD * sizeof(double));
    double *v = malloc(DD * sizeof(double)), *w = malloc(D * sizeof(double));
    double *e = malloc(D * sizeof(double));
    double *s = malloc(DD * sizeof(double)), *m = malloc(DD * sizeof(double));
    nf_status stt = NF_OK;
    if (!mua || !mub || !ca || !cb || !v || !w || !e || !s || !m) {
        stt = nf_fail(NF_ERR_NOMEM, "Fréchet distance: out of memory");
        goto done;
    }
    /* One shrinkage for both sets, from the smaller: shrinking two estimates of the same
     * covariance by different amounts would itself make a distance (the mel bands are
     * strongly correlated, so their off-diagonal terms are large). */
    int nmin = na < nb ? na : nb;
    double alpha = nmin < 3 ? 1.0 : (double)D / (D + nmin);
    gauss_fit(st, a, na, alpha, mua, ca);
    gauss_fit(st, b, nb, alpha, mub, cb);
    double mean_term = 0.0, trace = 0.0;
    for (int j = 0; j < D; j++) {
        double d = mua[j] - mub[j];
        mean_term += d * d;
        trace += ca[j * D + j] + cb[j * D + j];
        if (delta) delta[j] = (float)fabs(d); /* already in units of the reference std */
    }
    /* S_a^{1/2} = V diag(sqrt(max(l, 0))) V^T from S_a = V diag(l) V^T. */
    sym_eig(ca, D, w, v, e);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double acc = 0.0;
            for (int k = 0; k < D; k++) acc += v[i * D + k] * sqrt(w[k] > 0 ? w[k] : 0) * v[j * D + k];
            s[i * D + j] = acc;
        }
    /* M = S_a^{1/2} S_b S_a^{1/2}, symmetric PSD; Tr M^{1/2} = sum sqrt(eig M). */
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double acc = 0.0;
            for (int k = 0; k < D; k++) acc += cb[i * D + k] * s[k * D + j];
            v[i * D + j] = acc; /* S_b S_a^{1/2} */
        }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double acc = 0.0;
            for (int k = 0; k < D; k++) acc += s[i * D + k] * v[k * D + j];
            m[i * D + j] = acc;
        }
    for (int i = 0; i < D; i++) /* symmetrise rounding */
        for (int j = i + 1; j < D; j++) m[i * D + j] = m[j * D + i] = 0.5 * (m[i * D + j] + m[j * D + i]);
    sym_eig(m, D, w, v, e);
    double tr_sqrt = 0.0;
    for (int i = 0; i < D; i++) tr_sqrt += sqrt(w[i] > 0 ? w[i] : 0);
    double r = mean_term + trace - 2.0 * tr_sqrt;
    *d2 = r > 0.0 ? r : 0.0;
    if (!isfinite(*d2)) stt = nf_fail(NF_ERR_NUMERIC, "Fréchet distance is not finite");
done:
    free(mua); free(mub); free(ca); free(cb); free(v); free(w); free(e); free(s); free(m);
    return stt;
}

nf_status nf_feat_frechet_split_half(const nf_feat_stats *st, const float *feats, int n,
                                     double *d2)
{
    if (n < 4) return nf_fail(NF_ERR_EMPTY, "split-half distance needs at least 4 sounds (got %d)", n);
    int na = (n + 1) / 2, nb = n / 2;
    float *a = malloc((size_t)na * D * sizeof *a), *b = malloc((size_t)nb * D * sizeof *b);
    if (!a || !b) {
        free(a); free(b);
        return nf_fail(NF_ERR_NOMEM, "split-half distance: out of memory");
    }
    for (int i = 0; i < n; i++)
        memcpy((i & 1 ? b + (size_t)(i / 2) * D : a + (size_t)(i / 2) * D), feats + (size_t)i * D,
               D * sizeof *a);
    nf_status s = nf_feat_frechet(st, a, na, b, nb, d2, NULL);
    free(a); free(b);
    return s;
}

nf_status nf_feat_frechet_holdout(const nf_feat_stats *st, const float *feats, int n, int m,
                                  int draws, uint64_t seed, double *mean_d2, double *max_d2)
{
    if (m < 1 || n - m < 2 || draws < 1)
        return nf_fail(NF_ERR_ARG, "hold-out distance: need 1 <= m <= n - 2 and draws >= 1 "
                                   "(n = %d, m = %d, draws = %d)", n, m, draws);
    int *perm = malloc((size_t)n * sizeof *perm);
    float *a = malloc((size_t)m * D * sizeof *a), *b = malloc((size_t)(n - m) * D * sizeof *b);
    if (!perm || !a || !b) {
        free(perm); free(a); free(b);
        return nf_fail(NF_ERR_NOMEM, "hold-out distance: out of memory");
    }
    nf_rng r;
    nf_rng_init(&r, seed, nf_stream_id("feat-holdout", (uint64_t)n, (uint64_t)m));
    double sum = 0.0, mx = 0.0;
    nf_status s = NF_OK;
    for (int d = 0; d < draws && !s; d++) {
        /* Fisher-Yates shuffle (Knuth, TAOCP vol. 2, algorithm 3.4.2P). */
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)nf_rng_below(&r, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int i = 0; i < n; i++)
            memcpy(i < m ? a + (size_t)i * D : b + (size_t)(i - m) * D,
                   feats + (size_t)perm[i] * D, D * sizeof *a);
        double d2;
        s = nf_feat_frechet(st, a, m, b, n - m, &d2, NULL);
        sum += d2;
        if (d2 > mx) mx = d2;
    }
    free(perm); free(a); free(b);
    if (s) return s;
    if (mean_d2) *mean_d2 = sum / draws;
    if (max_d2) *max_d2 = mx;
    return NF_OK;
}

/* ---- per-sound checks ---- */

void nf_sound_check_run(const float *x, int length, nf_sound_check *out)
{
    memset(out, 0, sizeof *out);
    double peak = 0.0;
    for (int i = 0; i < length; i++) {
        if (!isfinite(x[i])) {
            out->nonfinite++;
            continue;
        }
        double a = fabs(x[i]);
        if (a >= 0.999) out->clipped++;
        if (a > peak) peak = a;
    }
    out->peak_db = peak > 0.0 ? (float)(20.0 * log10(peak)) : -INFINITY;
    out->silent = !(out->peak_db >= -60.0f);
    out->is_clipped = out->clipped > NF_CHECK_MAX_CLIPPED;
    out->ok = !out->nonfinite && !out->silent && !out->is_clipped;
}

/* ---- copy detection ---- */

nf_status nf_copy_max_ncc(const float *x, const float *train, int n, int length, int max_lag,
                          int sample_rate, double *best_ncc, int *best_index)
{
    if (best_ncc) *best_ncc = 0.0;
    if (best_index) *best_index = -1;
    if (n < 1 || length < 1) return nf_fail(NF_ERR_EMPTY, "copy check: no training clips");
    if (max_lag <= 0) max_lag = (int)(0.005 * sample_rate);
    if (max_lag >= length) max_lag = length - 1;
    const int R = 2 * max_lag + 1;
    /* Row r of `shifted` is x delayed by lag = r - max_lag (zero-filled), so that
     * (shifted . train_i)[r] = sum_t x[t] y_i[t + lag]: all lags against all clips in one
     * matrix product. */
    float *shifted = calloc((size_t)R * length, sizeof *shifted);
    float *corr = malloc((size_t)R * n * sizeof *corr);
    if (!shifted || !corr) {
        free(shifted); free(corr);
        return nf_fail(NF_ERR_NOMEM, "copy check: out of memory");
    }
    double xx = 0.0;
    for (int t = 0; t < length; t++) xx += (double)x[t] * x[t];
    for (int r = 0; r < R; r++) {
        int lag = r - max_lag;
        float *row = shifted + (size_t)r * length;
        for (int s = 0; s < length; s++) {
            int t = s - lag;
            if (t >= 0 && t < length) row[s] = x[t];
        }
    }
    /* corr [R][n] = shifted [R][length] . train^T [length][n] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, n, length, 1.0f, shifted, length,
                train, length, 0.0f, corr, n);
    double best = 0.0;
    int bi = -1;
    for (int i = 0; i < n; i++) {
        const float *y = train + (size_t)i * length;
        double yy = 0.0;
        for (int t = 0; t < length; t++) yy += (double)y[t] * y[t];
        if (xx <= 0.0 || yy <= 0.0) continue;
        double norm = sqrt(xx * yy);
        for (int r = 0; r < R; r++) {
            double v = fabs(corr[(size_t)r * n + i]) / norm;
            if (v > best) best = v, bi = i;
        }
    }
    free(shifted);
    free(corr);
    if (best_ncc) *best_ncc = best;
    if (best_index) *best_index = bi;
    return NF_OK;
}
