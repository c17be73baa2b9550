/* Procedural drum synthesis: the recipes behind the default model's training corpus.
 *
 * Each class is a classic analogue-drum-machine recipe (the TR-808/909 family, as
 * described in Gordon Reid's "Synth Secrets" articles on synthesising drums, Sound On
 * Sound 2001-2002), with every parameter drawn at random within a range per class:
 *   kick      sine with an exponential pitch sweep (f_end..ratio*f_end) + a noise click,
 *             soft-saturated;
 *   snare     two detuned sine modes + band-passed noise, with separate decays;
 *   closedhat six square waves at the 808's inharmonic ratios + noise, high-passed,
 *             short decay;
 *   openhat   the same metallic source, long decay;
 *   tom       sine with a slight downward sweep over a wide random pitch range + stick;
 *   clap      3-4 short band-passed noise bursts then a diffuse decaying tail;
 *   cymbal    metallic source + noise, band-passed lower and wider than the hats, very
 *             long decay.
 * Filters are RBJ biquads (R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad
 * filter coefficients"). Noise is filtered while stationary and enveloped afterwards so
 * that no filter ring-up softens the attack. */
#include "nf_drums.h"

#include "nf_audio.h"
#include "nf_rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TWO_PI 6.283185307179586476925

static const char *const drum_names[NF_DRUM_NUM_CLASSES] = {
    "kick", "snare", "closedhat", "openhat", "tom", "clap", "cymbal",
};

const char *nf_drum_class_name(int cls)
{
    if (cls < 0 || cls >= NF_DRUM_NUM_CLASSES) return NULL;
    return drum_names[cls];
}

int nf_drum_class_from_name(const char *name)
{
    if (!name) return -1;
    for (int c = 0; c < NF_DRUM_NUM_CLASSES; c++)
        if (strcmp(name, drum_names[c]) == 0) return c;
    return -1;
}

/* ---- biquad filters (RBJ cookbook) ---- */

typedef enum { BQ_LOWPASS, BQ_HIGHPASS, BQ_BANDPASS } bq_type;

typedef struct {
    double b0, b1, b2, a1, a2; /* normalised by a0 */
    double z1, z2;             /* transposed direct form II state */
} biquad;

static void bq_design(biquad *f, bq_type type, double f0, double q, double sr)
{
    /* Keep the centre inside (10 Hz, 0.45 sr) so that a low sample rate bends the
     * recipe instead of making an unstable filter. */
    if (f0 > 0.45 * sr) f0 = 0.45 * sr;
    if (f0 < 10.0) f0 = 10.0;
    double w0 = TWO_PI * f0 / sr, cw = cos(w0), alpha = sin(w0) / (2.0 * q);
    double b0, b1, b2, a0 = 1.0 + alpha, a1 = -2.0 * cw, a2 = 1.0 - alpha;
    switch (type) {
    case BQ_LOWPASS:
        b0 = (1.0 - cw) / 2.0; b1 = 1.0 - cw; b2 = b0;
        break;
    case BQ_HIGHPASS:
        b0 = (1.0 + cw) / 2.0; b1 = -(1.0 + cw); b2 = b0;
        break;
    default: /* band-pass, constant 0 dB peak gain */
        b0 = alpha; b1 = 0.0; b2 = -alpha;
        break;
    }
    f->b0 = b0 / a0; f->b1 = b1 / a0; f->b2 = b2 / a0;
    f->a1 = a1 / a0; f->a2 = a2 / a0;
    f->z1 = f->z2 = 0.0;
}

static void bq_run(biquad *f, float *x, int n)
{
    for (int i = 0; i < n; i++) {
        double in = x[i], out = f->b0 * in + f->z1;
        f->z1 = f->b1 * in - f->a1 * out + f->z2;
        f->z2 = f->b2 * in - f->a2 * out;
        x[i] = (float)out;
    }
}

static void filter(float *x, int n, bq_type type, double f0, double q, double sr)
{
    biquad f;
    bq_design(&f, type, f0, q, sr);
    bq_run(&f, x, n);
}

/* Scale to unit RMS (noise of any bandwidth then mixes at a known level). */
static void unit_rms(float *x, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    if (s <= 0.0) return;
    float g = (float)(1.0 / sqrt(s / n));
    for (int i = 0; i < n; i++) x[i] *= g;
}

/* Soft-limit unit-RMS noise to about +-k: a rare Gaussian outlier late in a decay would
 * otherwise become the hit's peak and move it away from the attack. */
static void soft_limit(float *x, int n, double k)
{
    for (int i = 0; i < n; i++) x[i] = (float)(k * tanh(x[i] / k));
}

/* ---- random parameters ---- */

static double uni(nf_rng *r, double lo, double hi) { return lo + (hi - lo) * nf_rng_uniform(r); }
/* Log-uniform: pitches and times spread evenly on a musical (ratio) scale. */
static double logu(nf_rng *r, double lo, double hi)
{
    return lo * exp(log(hi / lo) * nf_rng_uniform(r));
}

/* A release that takes an exponential decay to exact silence at its natural length D:
 * 1 before 0.6 D, a half-cosine down to 0 at D. Short classes end in silence this way
 * rather than in a long exponential tail that a clip would cut. */
static double release(double t, double D)
{
    double a = 0.6 * D;
    if (t <= a) return 1.0;
    if (t >= D) return 0.0;
    return 0.5 + 0.5 * cos(M_PI * (t - a) / (D - a));
}

/* The 808 cymbal/hat oscillator frequencies (205.3, 304.4, 369.6, 522.7, 540, 800 Hz)
 * as ratios to the lowest: inharmonic, so their sum sounds metallic. */
static const double metal_ratio[6] = {1.0, 1.4827, 1.8003, 2.5460, 2.6303, 3.8967};

/* out[n] += amp * (sum of six squares at base * metal_ratio, random phases) / 6 */
static void add_metal(float *out, int n, double base, double amp, double sr, nf_rng *r)
{
    for (int k = 0; k < 6; k++) {
        double f = base * metal_ratio[k] * uni(r, 0.98, 1.02), ph = nf_rng_uniform(r);
        double inc = f / sr;
        for (int i = 0; i < n; i++) {
            double p = ph + inc * i;
            p -= floor(p);
            out[i] += (float)(amp / 6.0 * (p < 0.5 ? 1.0 : -1.0));
        }
    }
}

/* ---- the recipes: each writes the raw hit into out[n]; noise[n] is unit white noise
 * the recipe may filter in place. ---- */

static void render_kick(float *out, float *noise, int n, double sr, nf_rng *r)
{
    double f_end = logu(r, 42.0, 68.0);
    double ratio = logu(r, 2.5, 6.0);         /* start pitch / end pitch */
    double tau_p = logu(r, 0.012, 0.045);     /* pitch sweep time constant, s */
    double tau_a = logu(r, 0.09, 0.25);       /* amplitude decay, s */
    double D = logu(r, 0.3, 0.6);             /* natural length, s */
    double click_mix = uni(r, 0.08, 0.35);
    double click_tau = logu(r, 0.0008, 0.003);
    double click_fc = logu(r, 1500.0, 4000.0);
    double drive = uni(r, 1.0, 3.0);
    filter(noise, n, BQ_HIGHPASS, click_fc, 0.707, sr);
    unit_rms(noise, n);
    double phase = 0.0, norm = tanh(drive);
    for (int i = 0; i < n; i++) {
        double t = i / sr;
        /* f(t) = f_end (1 + (ratio-1) e^{-t/tau_p}); phase is its running integral. */
        double f = f_end * (1.0 + (ratio - 1.0) * exp(-t / tau_p));
        phase += TWO_PI * f / sr;
        double body = sin(phase) * exp(-t / tau_a);
        double click = click_mix * 0.3 * noise[i] * exp(-t / click_tau);
        out[i] = (float)(tanh(drive * (body + click)) / norm * release(t, D));
    }
}

static void render_snare(float *out, float *noise, int n, double sr, nf_rng *r)
{
    double f1 = logu(r, 160.0, 250.0);
    double f2 = f1 * uni(r, 1.45, 1.8);
    double a2 = uni(r, 0.3, 0.8);
    double tone_tau = logu(r, 0.025, 0.07);
    double noise_tau = logu(r, 0.06, 0.18);
    double tone_mix = uni(r, 0.25, 0.55);
    double fc = logu(r, 2500.0, 5500.0);     /* brightness of the snares */
    double q = uni(r, 0.5, 0.9);
    double D = logu(r, 0.25, 0.5);
    double strike = uni(r, 1.0, 2.0), strike_tau = logu(r, 0.003, 0.008);
    filter(noise, n, BQ_BANDPASS, fc, q, sr);
    filter(noise, n, BQ_HIGHPASS, 700.0, 0.707, sr);
    unit_rms(noise, n);
    soft_limit(noise, n, 2.5);
    for (int i = 0; i < n; i++) {
        double t = i / sr;
        double tone = (sin(TWO_PI * f1 * t) + a2 * sin(TWO_PI * f2 * t)) * exp(-t / tone_tau);
        /* The stick's strike lifts the first few ms of the snares' rattle. */
        double nz = 0.35 * noise[i] * exp(-t / noise_tau) * (1.0 + strike * exp(-t / strike_tau));
        out[i] = (float)((tone_mix * tone + (1.0 - tone_mix) * nz) * release(t, D));
    }
}

static void render_hat(float *out, float *noise, int n, double sr, nf_rng *r, int open)
{
    double base = logu(r, 300.0, 520.0);
    double noise_mix = uni(r, 0.3, 0.7);
    double fc = logu(r, 6500.0, 9500.0);
    double tau = open ? logu(r, 0.09, 0.25) : logu(r, 0.008, 0.022);
    double D = open ? 0.0 : logu(r, 0.07, 0.16);
    double strike = uni(r, 1.5, 2.5), strike_tau = logu(r, 0.004, 0.010);
    unit_rms(noise, n);
    for (int i = 0; i < n; i++) out[i] = (float)(noise_mix * noise[i]);
    add_metal(out, n, base, (1.0 - noise_mix) * 1.7, sr, r);
    /* Fourth-order high-pass: the hat's energy sits above fc. */
    filter(out, n, BQ_HIGHPASS, fc, 0.707, sr);
    filter(out, n, BQ_HIGHPASS, fc, 0.707, sr);
    unit_rms(out, n);
    soft_limit(out, n, 2.5);
    for (int i = 0; i < n; i++) {
        double t = i / sr;
        /* The stick's strike: extra level in the first few ms, so that the hit's
         * peak is at its start and not wherever the noise happens to peak later. */
        double env = exp(-t / tau) * (1.0 + strike * exp(-t / strike_tau)) *
                     (open ? 1.0 : release(t, D));
        out[i] = (float)(out[i] * env);
    }
}

static void render_tom(float *out, float *noise, int n, double sr, nf_rng *r)
{
    double f = logu(r, 85.0, 280.0);
    double ratio = uni(r, 1.08, 1.4);
    double tau_p = logu(r, 0.03, 0.12);
    double tau_a = logu(r, 0.12, 0.3);
    double D = logu(r, 0.4, 0.8);
    double partial = uni(r, 0.0, 0.2);       /* a weak second membrane mode */
    double stick = uni(r, 0.02, 0.12);
    double stick_fc = logu(r, 1000.0, 3000.0);
    filter(noise, n, BQ_BANDPASS, stick_fc, 0.8, sr);
    unit_rms(noise, n);
    double phase = 0.0;
    for (int i = 0; i < n; i++) {
        double t = i / sr;
        double fi = f * (1.0 + (ratio - 1.0) * exp(-t / tau_p));
        phase += TWO_PI * fi / sr;
        /* 1.593: the (1,1)/(0,1) mode ratio of an ideal circular membrane. */
        double body = (sin(phase) + partial * sin(1.593 * phase)) * exp(-t / tau_a);
        double st = stick * noise[i] * exp(-t / 0.004);
        out[i] = (float)((body + st) * release(t, D));
    }
}

static void render_clap(float *out, float *noise, int n, double sr, nf_rng *r)
{
    int bursts = 3 + (int)nf_rng_below(r, 2);
    double spacing = logu(r, 0.005, 0.009);
    double burst_tau = logu(r, 0.002, 0.004);
    double tail_tau = logu(r, 0.05, 0.15);
    double tail_amp = uni(r, 0.2, 0.3);
    double fc = logu(r, 900.0, 1800.0);
    double q = uni(r, 1.0, 2.0);
    double D = logu(r, 0.3, 0.55);
    double amp[4];
    amp[0] = 1.0;
    amp[1] = uni(r, 0.6, 0.8);
    /* Later bursts quieter, so that the peak stays in the first two (within 20 ms). */
    amp[2] = uni(r, 0.3, 0.4);
    amp[3] = uni(r, 0.2, 0.3);
    filter(noise, n, BQ_BANDPASS, fc, q, sr);
    filter(noise, n, BQ_HIGHPASS, 400.0, 0.707, sr);
    unit_rms(noise, n);
    soft_limit(noise, n, 2.5);
    double t_last = (bursts - 1) * spacing;
    for (int i = 0; i < n; i++) {
        double t = i / sr, env = 0.0;
        /* Each burst is a hand: the loudest one sounding dominates (max, not sum,
         * so that overlapping bursts do not pile up above the first). */
        for (int b = 0; b < bursts; b++) {
            double tb = t - b * spacing;
            if (tb >= 0.0) env = fmax(env, amp[b] * exp(-tb / burst_tau));
        }
        /* The "reverb": a diffuse tail rising with the last burst, decaying slowly. */
        if (t >= t_last) env = fmax(env, tail_amp * exp(-(t - t_last) / tail_tau));
        out[i] = (float)(noise[i] * env * release(t, D));
    }
}

static void render_cymbal(float *out, float *noise, int n, double sr, nf_rng *r)
{
    double base = logu(r, 380.0, 650.0);
    double noise_mix = uni(r, 0.4, 0.7);
    double fc = logu(r, 3000.0, 5000.0);
    double q = uni(r, 0.45, 0.8);
    double tau = logu(r, 0.6, 1.6);
    double strike = uni(r, 1.5, 2.5), strike_tau = logu(r, 0.005, 0.012);
    unit_rms(noise, n);
    for (int i = 0; i < n; i++) out[i] = (float)(noise_mix * noise[i]);
    add_metal(out, n, base, (1.0 - noise_mix) * 1.7, sr, r);
    filter(out, n, BQ_BANDPASS, fc, q, sr);
    filter(out, n, BQ_HIGHPASS, 1500.0, 0.707, sr);
    unit_rms(out, n);
    soft_limit(out, n, 2.5);
    for (int i = 0; i < n; i++) {
        double t = i / sr;
        out[i] = (float)(out[i] * exp(-t / tau) * (1.0 + strike * exp(-t / strike_tau)));
    }
}

nf_status nf_drum_render(int cls, uint64_t seed, int sample_rate, int length, float *out)
{
    if (cls < 0 || cls >= NF_DRUM_NUM_CLASSES)
        return nf_fail(NF_ERR_ARG, "drum class %d out of range 0..%d", cls, NF_DRUM_NUM_CLASSES - 1);
    if (sample_rate < 8000 || sample_rate > 384000)
        return nf_fail(NF_ERR_ARG, "drum sample rate %d Hz out of range 8000..384000", sample_rate);
    if (length < 1 || !out) return nf_fail(NF_ERR_ARG, "drum render: empty output buffer");
    float *noise = malloc((size_t)length * sizeof *noise);
    if (!noise) return nf_fail(NF_ERR_NOMEM, "drum render: out of memory (%d frames)", length);

    nf_rng r;
    nf_rng_init(&r, seed, nf_stream_id("drum-params", (uint64_t)cls, 0));
    nf_randn(noise, (size_t)length, seed, nf_stream_id("drum-noise", (uint64_t)cls, 0), 0);
    memset(out, 0, (size_t)length * sizeof *out);
    double sr = sample_rate;
    switch (cls) {
    case NF_DRUM_KICK: render_kick(out, noise, length, sr, &r); break;
    case NF_DRUM_SNARE: render_snare(out, noise, length, sr, &r); break;
    case NF_DRUM_CLOSEDHAT: render_hat(out, noise, length, sr, &r, 0); break;
    case NF_DRUM_OPENHAT: render_hat(out, noise, length, sr, &r, 1); break;
    case NF_DRUM_TOM: render_tom(out, noise, length, sr, &r); break;
    case NF_DRUM_CLAP: render_clap(out, noise, length, sr, &r); break;
    default: render_cymbal(out, noise, length, sr, &r); break;
    }
    free(noise);

    /* A 10 ms half-cosine fade-out at the clip's end (never a fade-in). */
    int fade = (int)(0.010 * sr);
    if (fade > length / 4) fade = length / 4;
    for (int i = 0; i < fade; i++)
        out[length - fade + i] *= (float)(0.5 + 0.5 * cos(M_PI * (i + 1) / (double)fade));

    double peak = 0.0;
    for (int i = 0; i < length; i++) {
        if (!isfinite(out[i]))
            return nf_fail(NF_ERR_NUMERIC, "drum render: %s seed %llu gave a non-finite sample",
                           drum_names[cls], (unsigned long long)seed);
        if (fabs(out[i]) > peak) peak = fabs(out[i]);
    }
    if (peak > 0.0) {
        float g = (float)(NF_DRUM_PEAK / peak);
        for (int i = 0; i < length; i++) out[i] *= g;
    }
    return NF_OK;
}

uint64_t nf_drum_corpus_hit_seed(uint64_t corpus_seed, int cls, int index)
{
    uint32_t w[4];
    nf_philox4x32(corpus_seed, ((uint64_t)(uint32_t)cls << 32) | (uint32_t)index,
                  nf_stream_id("drum-corpus", 0, 0), w);
    return ((uint64_t)w[0] << 32) | w[1];
}

nf_status nf_drum_corpus_render(int per_class, int sample_rate, int length, uint64_t corpus_seed,
                                float *out, int *labels)
{
    if (per_class < 1) return nf_fail(NF_ERR_ARG, "drum corpus: %d hits per class", per_class);
    for (int c = 0; c < NF_DRUM_NUM_CLASSES; c++)
        for (int i = 0; i < per_class; i++) {
            size_t k = (size_t)c * per_class + i;
            nf_status st = nf_drum_render(c, nf_drum_corpus_hit_seed(corpus_seed, c, i),
                                          sample_rate, length, out + k * (size_t)length);
            if (st) return st;
            if (labels) labels[k] = c;
        }
    return NF_OK;
}

static nf_status make_dir(const char *path)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return NF_OK;
        return nf_fail(NF_ERR_IO, "%s: exists and is not a folder", path);
    }
    return nf_fail(NF_ERR_IO, "%s: cannot create folder: %s", path, strerror(errno));
}

nf_status nf_drum_corpus_write(const char *dir, int per_class, int sample_rate, int length,
                               uint64_t corpus_seed)
{
    if (!dir || !*dir) return nf_fail(NF_ERR_ARG, "drum corpus: empty folder name");
    if (per_class < 1 || per_class > 100000)
        return nf_fail(NF_ERR_ARG, "drum corpus: %d hits per class (1..100000)", per_class);
    nf_status st = make_dir(dir);
    if (st) return st;
    nf_audio a;
    st = nf_audio_alloc(&a, 1, length, sample_rate);
    if (st) return st;
    char path[NF_PATH_MAX];
    for (int c = 0; c < NF_DRUM_NUM_CLASSES && !st; c++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, drum_names[c]) >= (int)sizeof path) {
            st = nf_fail(NF_ERR_ARG, "%s: path too long", dir);
            break;
        }
        st = make_dir(path);
        for (int i = 0; i < per_class && !st; i++) {
            st = nf_drum_render(c, nf_drum_corpus_hit_seed(corpus_seed, c, i), sample_rate,
                                length, a.data);
            if (st) break;
            if (snprintf(path, sizeof path, "%s/%s/%s_%03d.wav", dir, drum_names[c],
                         drum_names[c], i) >= (int)sizeof path) {
                st = nf_fail(NF_ERR_ARG, "%s: path too long", dir);
                break;
            }
            char comment[160];
            snprintf(comment, sizeof comment,
                     "{\"generator\":\"noisefloor drums\",\"class\":\"%s\",\"seed\":%llu}",
                     drum_names[c], (unsigned long long)nf_drum_corpus_hit_seed(corpus_seed, c, i));
            st = nf_audio_write(path, &a, NF_FILE_WAV, NF_SAMPLE_PCM16, comment);
        }
    }
    nf_audio_free(&a);
    return st;
}
