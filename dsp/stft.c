/* STFT / ISTFT on FFTW plans; the compressed model layout. See nf_stft.h for the
 * conventions. */
#include "nf_stft.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* FFTW's planner (and plan destruction) is not thread-safe; execution is. */
static pthread_mutex_t planner_lock = PTHREAD_MUTEX_INITIALIZER;

struct nf_stft {
    int n_fft, hop, bins;
    int lead;           /* frames centred before the first sample (nf_stft_set_lead) */
    float *window;      /* [n_fft] periodic Hann */
    double *wsum;       /* [hop]: sum_j w^2[r + j hop] for r < hop, largest index first: the
                         * ISTFT's normaliser at a sample that every frame it needs covers */
    float *frame;       /* [n_fft] FFTW-aligned real buffer */
    fftwf_complex *spec; /* [bins] FFTW-aligned */
    fftwf_plan fwd, inv;
};

nf_status nf_stft_create(int n_fft, int hop, nf_stft **out)
{
    *out = NULL;
    if (n_fft < 8 || (n_fft & (n_fft - 1)) || n_fft > (1 << 20))
        return nf_fail(NF_ERR_ARG, "STFT: n_fft must be a power of two from 8 to 2^20 (got %d)", n_fft);
    if (hop == 0) hop = n_fft / 4;
    /* hop <= n_fft/2 keeps sum_f w^2 > 0 at every sample (the periodic Hann window is 0
     * at n = 0, so hop = n_fft would leave holes). */
    if (hop < 1 || hop > n_fft / 2)
        return nf_fail(NF_ERR_ARG, "STFT: hop must be in 1..n_fft/2 = %d (got %d)", n_fft / 2, hop);
    nf_stft *s = calloc(1, sizeof *s);
    if (!s) return nf_fail(NF_ERR_NOMEM, "STFT: out of memory");
    s->n_fft = n_fft;
    s->hop = hop;
    s->bins = n_fft / 2 + 1;
    s->window = malloc((size_t)n_fft * sizeof(float));
    s->wsum = malloc((size_t)hop * sizeof(double));
    s->frame = fftwf_alloc_real((size_t)n_fft);
    s->spec = fftwf_alloc_complex((size_t)s->bins);
    if (!s->window || !s->wsum || !s->frame || !s->spec) {
        nf_stft_free(s);
        return nf_fail(NF_ERR_NOMEM, "STFT: out of memory");
    }
    /* Periodic Hann (the DFT-even window, Harris 1978), as torch.hann_window(periodic=True). */
    for (int n = 0; n < n_fft; n++) s->window[n] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * n / n_fft));
    for (int r = 0; r < hop; r++) {
        double acc = 0;
        for (int i = r + (n_fft - 1 - r) / hop * hop; i >= 0; i -= hop) acc += (double)s->window[i] * s->window[i];
        s->wsum[r] = acc;
    }
    pthread_mutex_lock(&planner_lock);
    s->fwd = fftwf_plan_dft_r2c_1d(n_fft, s->frame, s->spec, FFTW_ESTIMATE);
    s->inv = fftwf_plan_dft_c2r_1d(n_fft, s->spec, s->frame, FFTW_ESTIMATE);
    pthread_mutex_unlock(&planner_lock);
    if (!s->fwd || !s->inv) {
        nf_stft_free(s);
        return nf_fail(NF_ERR_INTERNAL, "STFT: FFTW could not plan n_fft = %d", n_fft);
    }
    *out = s;
    return NF_OK;
}

void nf_stft_free(nf_stft *s)
{
    if (!s) return;
    pthread_mutex_lock(&planner_lock);
    if (s->fwd) fftwf_destroy_plan(s->fwd);
    if (s->inv) fftwf_destroy_plan(s->inv);
    pthread_mutex_unlock(&planner_lock);
    fftwf_free(s->frame);
    fftwf_free(s->spec);
    free(s->window);
    free(s->wsum);
    free(s);
}

int nf_stft_n_fft(const nf_stft *s) { return s->n_fft; }
int nf_stft_hop(const nf_stft *s) { return s->hop; }
int nf_stft_bins(const nf_stft *s) { return s->bins; }
int nf_stft_frames(const nf_stft *s, int length) { return length < 0 ? 0 : s->lead + 1 + length / s->hop; }

nf_status nf_stft_set_lead(nf_stft *s, int frames)
{
    if (frames < 0 || frames > NF_STFT_MAX_LEAD)
        return nf_fail(NF_ERR_ARG, "STFT: lead frames must be in 0..%d (got %d)", NF_STFT_MAX_LEAD, frames);
    s->lead = frames;
    return NF_OK;
}

int nf_stft_lead(const nf_stft *s) { return s->lead; }
int nf_stft_layout_channels(const nf_stft *s, int C) { return 2 * s->bins * C; }

/* Frame f of x [L] windowed and transformed: the result is in s->spec [bins]. */
static void analyse_frame(nf_stft *s, const float *x, int L, int f)
{
    const int N = s->n_fft;
    /* zero padding of n_fft/2 (and the lead frames) before the first sample */
    int start = (f - s->lead) * s->hop - N / 2;
    for (int n = 0; n < N; n++) {
        int t = start + n;
        s->frame[n] = (t >= 0 && t < L) ? x[t] * s->window[n] : 0.0f;
    }
    fftwf_execute(s->fwd);
}

nf_status nf_stft_forward(nf_stft *s, const float *x, int L, float *re, float *im)
{
    if (L < 1) return nf_fail(NF_ERR_ARG, "STFT: bad length %d", L);
    const int K = s->bins, F = nf_stft_frames(s, L);
    for (int f = 0; f < F; f++) {
        analyse_frame(s, x, L, f);
        for (int k = 0; k < K; k++) {
            re[(size_t)k * F + f] = s->spec[k][0];
            im[(size_t)k * F + f] = s->spec[k][1];
        }
    }
    return NF_OK;
}

/* The ISTFT, expanding a compressed spectrum on the fly (power = 1: plain), so that
 * decoding needs no buffer of its own. */
static nf_status inverse_expand(nf_stft *s, const float *re, const float *im, int L, float power,
                                float *x)
{
    if (L < 1) return nf_fail(NF_ERR_ARG, "ISTFT: bad length %d", L);
    const int N = s->n_fft, half = N / 2, K = s->bins, F = nf_stft_frames(s, L), hop = s->hop;
    memset(x, 0, (size_t)L * sizeof(float));
    /* FFTW's c2r is unnormalised: irfft(rfft(y)) = N y. */
    const float inv_n = 1.0f / (float)N;
    for (int f = 0; f < F; f++) {
        for (int k = 0; k < K; k++) {
            s->spec[k][0] = re[(size_t)k * F + f];
            s->spec[k][1] = im[(size_t)k * F + f];
        }
        if (power != 1.0f) nf_stft_expand(&s->spec[0][0], &s->spec[0][1], (size_t)K, power, 2);
        s->spec[0][1] = 0; /* a real signal's DC and Nyquist bins are real */
        s->spec[K - 1][1] = 0;
        fftwf_execute(s->inv);
        int start = (f - s->lead) * hop - half;
        int n0 = start < 0 ? -start : 0;
        int n1 = start + N > L ? L - start : N;
        for (int n = n0; n < n1; n++) x[start + n] += s->frame[n] * inv_n * s->window[n];
    }
    /* Divide by sum_f w^2[t - f*hop + n_fft/2] (Griffin & Lim 1984, least-squares ISTFT).
     * Where every frame that could cover t exists, that sum depends on t mod hop only
     * (s->wsum, summed in the same order, so the same bits); near the ends it is
     * summed here from the frames that do exist. No buffer depends on L. */
    for (int t = 0; t < L; t++) {
        int p = t + half + s->lead * hop; /* position in the padded signal */
        int f_hi = p / hop;
        double wsum;
        if (p - N + 1 > 0 && f_hi <= F - 1) {
            wsum = s->wsum[p % hop];
        } else {
            int f_lo = p - N + 1 <= 0 ? 0 : (p - N + 1 + hop - 1) / hop;
            if (f_hi > F - 1) f_hi = F - 1;
            wsum = 0;
            for (int f = f_lo; f <= f_hi; f++) {
                float w = s->window[p - f * hop];
                wsum += (double)w * w;
            }
        }
        x[t] = wsum > 1e-12 ? (float)(x[t] / wsum) : 0.0f;
    }
    return NF_OK;
}

nf_status nf_stft_inverse(nf_stft *s, const float *re, const float *im, int L, float *x)
{
    return inverse_expand(s, re, im, L, 1.0f, x);
}

void nf_stft_compress(float *re, float *im, size_t n, float power, size_t stride)
{
    if (power == 1.0f) return;
    /* Y = |X|^p X / |X| = |X|^(p-1) X; 0 stays 0. */
    for (size_t i = 0; i < n * stride; i += stride) {
        float m = hypotf(re[i], im[i]);
        float g = m > 0 ? powf(m, power - 1.0f) : 0.0f;
        re[i] *= g;
        im[i] *= g;
    }
}

void nf_stft_expand(float *re, float *im, size_t n, float power, size_t stride)
{
    if (power == 1.0f) return;
    /* X = |Y|^(1/p) Y / |Y| = |Y|^(1/p - 1) Y; 0 stays 0. */
    float q = 1.0f / power - 1.0f;
    for (size_t i = 0; i < n * stride; i += stride) {
        float m = hypotf(re[i], im[i]);
        float g = m > 0 ? powf(m, q) : 0.0f;
        re[i] *= g;
        im[i] *= g;
    }
}

nf_status nf_stft_encode(nf_stft *s, const float *audio, int C, int L, float power, float *spec)
{
    if (C < 1) return nf_fail(NF_ERR_ARG, "STFT: bad channel count %d", C);
    if (!(power > 0)) return nf_fail(NF_ERR_ARG, "STFT: compression power must be > 0 (got %g)", power);
    const size_t plane = (size_t)s->bins * nf_stft_frames(s, L);
    for (int c = 0; c < C; c++) {
        float *re = spec + (size_t)c * 2 * plane, *im = re + plane;
        nf_status st = nf_stft_forward(s, audio + (size_t)c * L, L, re, im);
        if (st) return st;
        nf_stft_compress(re, im, plane, power, 1);
    }
    return NF_OK;
}

nf_status nf_stft_decode(nf_stft *s, const float *spec, int C, int L, float power, float *audio)
{
    if (C < 1) return nf_fail(NF_ERR_ARG, "ISTFT: bad channel count %d", C);
    if (!(power > 0)) return nf_fail(NF_ERR_ARG, "ISTFT: compression power must be > 0 (got %g)", power);
    const size_t plane = (size_t)s->bins * nf_stft_frames(s, L);
    for (int c = 0; c < C; c++) {
        const float *re = spec + (size_t)c * 2 * plane, *im = re + plane;
        nf_status st = inverse_expand(s, re, im, L, power, audio + (size_t)c * L);
        if (st) return st;
    }
    return NF_OK;
}

nf_status nf_stft_encode_batch(nf_stft *s, const float *audio, int B, int C, int L, float power,
                               float *spec)
{
    const size_t per = (size_t)nf_stft_layout_channels(s, C) * nf_stft_frames(s, L);
    for (int b = 0; b < B; b++) {
        nf_status st = nf_stft_encode(s, audio + (size_t)b * C * L, C, L, power, spec + b * per);
        if (st) return st;
    }
    return NF_OK;
}

nf_status nf_stft_decode_batch(nf_stft *s, const float *spec, int B, int C, int L, float power,
                               float *audio)
{
    const size_t per = (size_t)nf_stft_layout_channels(s, C) * nf_stft_frames(s, L);
    for (int b = 0; b < B; b++) {
        nf_status st = nf_stft_decode(s, spec + b * per, C, L, power, audio + (size_t)b * C * L);
        if (st) return st;
    }
    return NF_OK;
}

/* ------------------------------------------------ magnitude layout --- */

int nf_stft_mag_channels(const nf_stft *s, int C, int phase_bins)
{
    if (phase_bins < 0) phase_bins = 0;
    if (phase_bins > s->bins) phase_bins = s->bins;
    return (s->bins + phase_bins) * C;
}

/* The amplitude compression g and its inverse (see nf_stft.h). */
static inline float mag_compress(float m, float power, float log_floor)
{
    return log_floor > 0 ? log1pf(m / log_floor) : power == 1.0f ? m : powf(m, power);
}

static inline float mag_expand(float v, float power, float log_floor)
{
    if (!(v > 0)) return 0.0f; /* negative (a model undershooting) or NaN: silence */
    return log_floor > 0 ? log_floor * expm1f(v > 80.0f ? 80.0f : v) : power == 1.0f ? v : powf(v, 1.0f / power);
}

static nf_status check_mag_args(const nf_stft *s, int C, float power, float log_floor, int phase_bins)
{
    if (C < 1) return nf_fail(NF_ERR_ARG, "STFT: bad channel count %d", C);
    if (!(power > 0)) return nf_fail(NF_ERR_ARG, "STFT: compression power must be > 0 (got %g)", power);
    if (!(log_floor >= 0)) return nf_fail(NF_ERR_ARG, "STFT: bad log floor %g", log_floor);
    if (phase_bins < 0 || phase_bins > s->bins)
        return nf_fail(NF_ERR_ARG, "STFT: phase bins must be in 0..%d (got %d)", s->bins, phase_bins);
    return NF_OK;
}

nf_status nf_stft_mag_encode(nf_stft *s, const float *audio, int C, int L, float power, float log_floor,
                             int phase_bins, float *out)
{
    nf_status st = check_mag_args(s, C, power, log_floor, phase_bins);
    if (st) return st;
    if (L < 1) return nf_fail(NF_ERR_ARG, "STFT: bad length %d", L);
    const int F = nf_stft_frames(s, L), P = phase_bins, K = s->bins;
    const size_t per = (size_t)(K + P) * F;
    /* Frame by frame straight into the layout: no spectrum buffer (this runs on every
     * training batch). */
    for (int c = 0; c < C; c++) {
        float *o = out + (size_t)c * per;
        for (int f = 0; f < F; f++) {
            analyse_frame(s, audio + (size_t)c * L, L, f);
            for (int k = 0; k < K; k++) {
                float re = s->spec[k][0], im = s->spec[k][1];
                float m = hypotf(re, im), g = mag_compress(m, power, log_floor);
                if (k < P) { /* phase kept: the compressed complex value */
                    float u = m > 0 ? g / m : 0.0f;
                    o[(size_t)k * F + f] = re * u;
                    o[(size_t)(P + k) * F + f] = im * u;
                } else {
                    o[(size_t)(P + k) * F + f] = g;
                }
            }
        }
    }
    return NF_OK;
}

/* A fixed pseudo-random phase in [0, 2 pi) for bin k of frame f (splitmix64 finaliser):
 * the start of Griffin-Lim, the same on every machine and thread. */
static double start_phase(size_t i)
{
    uint64_t z = (uint64_t)i + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (2.0 * M_PI / 9007199254740992.0);
}

nf_status nf_stft_mag_decode(nf_stft *s, const float *in, int C, int L, float power, float log_floor,
                             int phase_bins, int iters, float *audio)
{
    nf_status st = check_mag_args(s, C, power, log_floor, phase_bins);
    if (st) return st;
    if (iters < 0) return nf_fail(NF_ERR_ARG, "ISTFT: bad Griffin-Lim iteration count %d", iters);
    const float momentum = 0.99f;
    const int F = nf_stft_frames(s, L), P = phase_bins;
    const size_t plane = (size_t)s->bins * F, per = (size_t)(s->bins + P) * F, fixed = (size_t)P * F;
    /* m: target magnitudes; (xr, xi): the spectrum fed to the next ISTFT; (tr, ti): the
     * last projection onto spectra with the target magnitudes (and, in the first P bins,
     * the given complex values). */
    float *buf = malloc(5 * plane * sizeof(float));
    if (!buf) return nf_fail(NF_ERR_NOMEM, "ISTFT: out of memory for Griffin-Lim");
    float *m = buf, *xr = buf + plane, *xi = xr + plane, *tr = xi + plane, *ti = tr + plane;
    for (int c = 0; c < C && !st; c++) {
        const float *x = in + (size_t)c * per;
        float *y = audio + (size_t)c * L;
        for (size_t i = 0; i < plane; i++) {
            if (i < fixed) {
                float a = x[i], b = x[fixed + i];
                if (!isfinite(a) || !isfinite(b)) a = b = 0.0f; /* a NaN from a model: silence */
                float g = hypotf(a, b), e = mag_expand(g, power, log_floor), u = g > 0 ? e / g : 0.0f;
                tr[i] = xr[i] = a * u;
                ti[i] = xi[i] = b * u;
                m[i] = 0; /* unused: fixed bins are not projected */
            } else {
                m[i] = mag_expand(x[fixed + i], power, log_floor);
                double ph = start_phase(i);
                tr[i] = xr[i] = m[i] * (float)cos(ph);
                ti[i] = xi[i] = m[i] * (float)sin(ph);
            }
        }
        for (int it = 0; it < iters && !st; it++) {
            st = nf_stft_inverse(s, xr, xi, L, y);
            if (!st) st = nf_stft_forward(s, y, L, xr, xi); /* (xr, xi) = STFT(ISTFT(x)) */
            for (size_t i = 0; i < plane && !st; i++) {
                if (i < fixed) { /* known phase: the given value, every time */
                    xr[i] = tr[i];
                    xi[i] = ti[i];
                    continue;
                }
                float a = hypotf(xr[i], xi[i]);
                float pr, pi; /* the projection: the target magnitude with this phase */
                if (a > 0) {
                    pr = m[i] * xr[i] / a;
                    pi = m[i] * xi[i] / a;
                } else {
                    pr = m[i];
                    pi = 0;
                }
                xr[i] = pr + momentum * (pr - tr[i]);
                xi[i] = pi + momentum * (pi - ti[i]);
                tr[i] = pr;
                ti[i] = pi;
            }
        }
        if (!st) st = nf_stft_inverse(s, tr, ti, L, y);
    }
    free(buf);
    return st;
}
