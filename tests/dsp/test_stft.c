/* STFT against a direct DFT, ISTFT reconstruction, the compressed model layout and the
 * representation object. */
#include "nf_repr.h"
#include "nf_stft.h"
#include "nf_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned rng_state = 1;
static float urand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / 8388608.0f - 1.0f;
}

static double rel_err(const float *a, const float *b, size_t n)
{
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        s += (double)b[i] * b[i];
    }
    return sqrt(e / (s > 0 ? s : 1));
}

/* The forward transform against the textbook definition, in double precision. */
static void test_forward_vs_dft(void)
{
    const int N = 64, hop = 16, L = 200;
    nf_stft *s;
    CHECK_OK(nf_stft_create(N, hop, &s));
    if (!s) return;
    const int K = nf_stft_bins(s), F = nf_stft_frames(s, L);
    CHECK(K == 33 && F == 1 + 200 / 16, "bins %d frames %d", K, F);
    float *x = malloc(L * sizeof(float)), *re = malloc((size_t)K * F * sizeof(float)),
          *im = malloc((size_t)K * F * sizeof(float));
    for (int i = 0; i < L; i++) x[i] = urand();
    CHECK_OK(nf_stft_forward(s, x, L, re, im));
    double worst = 0, scale = 0;
    for (int f = 0; f < F; f++)
        for (int k = 0; k < K; k++) {
            double r = 0, m = 0;
            for (int n = 0; n < N; n++) {
                int t = f * hop - N / 2 + n;
                double v = (t >= 0 && t < L) ? x[t] : 0.0;
                double w = 0.5 - 0.5 * cos(2 * M_PI * n / N);
                r += w * v * cos(2 * M_PI * k * n / N);
                m -= w * v * sin(2 * M_PI * k * n / N);
            }
            double d = hypot(re[k * F + f] - r, im[k * F + f] - m);
            if (d > worst) worst = d;
            if (hypot(r, m) > scale) scale = hypot(r, m);
        }
    CHECK(worst / scale < 1e-5, "STFT vs direct DFT: max error %g of %g", worst, scale);
    free(x);
    free(re);
    free(im);
    nf_stft_free(s);

    CHECK_OK(nf_stft_create(512, 0, &s));
    CHECK(nf_stft_hop(s) == 128 && nf_stft_frames(s, 16384) == 129, "default hop %d, frames %d",
          nf_stft_hop(s), nf_stft_frames(s, 16384));
    CHECK(nf_stft_layout_channels(s, 2) == 1028, "%s", "layout channels 2*257*2");
    nf_stft_free(s);
    CHECK(nf_stft_create(500, 0, &s) == NF_ERR_ARG && s == NULL, "%s", "n_fft 500 refused");
    CHECK(nf_stft_create(512, 512, &s) == NF_ERR_ARG, "%s", "hop n_fft refused (holes in the window sum)");
}

static void test_reconstruction(void)
{
    struct { int n_fft, hop, L; } cases[] = {
        {512, 128, 16384}, {512, 0, 1000}, {64, 16, 4097}, {256, 128, 3000},
        {2048, 512, 9000}, {1024, 100, 5001}, {8, 2, 37}, {128, 32, 1},
    };
    float powers[] = {1.0f, 0.5f, 0.25f};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nf_stft *s;
        CHECK_OK(nf_stft_create(cases[i].n_fft, cases[i].hop, &s));
        if (!s) continue;
        const int L = cases[i].L, K = nf_stft_bins(s), F = nf_stft_frames(s, L);
        for (int C = 1; C <= 2; C++) {
            const int B = 2;
            size_t na = (size_t)B * C * L, ns = (size_t)B * nf_stft_layout_channels(s, C) * F;
            float *x = malloc(na * sizeof(float)), *y = malloc(na * sizeof(float));
            float *spec = malloc(ns * sizeof(float));
            for (size_t j = 0; j < na; j++) x[j] = 0.5f * urand();
            if (C == 1) { /* plain API */
                float *re = malloc((size_t)K * F * sizeof(float)), *im = malloc((size_t)K * F * sizeof(float));
                CHECK_OK(nf_stft_forward(s, x, L, re, im));
                CHECK_OK(nf_stft_inverse(s, re, im, L, y));
                double e = rel_err(y, x, L);
                CHECK(e < 1e-5, "plain n_fft %d hop %d L %d: rel err %g", cases[i].n_fft, nf_stft_hop(s), L, e);
                free(re);
                free(im);
            }
            for (int p = 0; p < 3; p++) {
                memset(y, 0, na * sizeof(float));
                CHECK_OK(nf_stft_encode_batch(s, x, B, C, L, powers[p], spec));
                CHECK_OK(nf_stft_decode_batch(s, spec, B, C, L, powers[p], y));
                double e = rel_err(y, x, na);
                CHECK(e < 1e-5, "layout p %.2f n_fft %d hop %d L %d C %d: rel err %g", powers[p],
                      cases[i].n_fft, nf_stft_hop(s), L, C, e);
            }
            free(x);
            free(y);
            free(spec);
        }
        nf_stft_free(s);
    }
}

/* The layout's row order and the compression, checked on the raw transform. */
static void test_layout(void)
{
    const int N = 32, L = 300, C = 2;
    nf_stft *s;
    CHECK_OK(nf_stft_create(N, 0, &s));
    if (!s) return;
    const int K = nf_stft_bins(s), F = nf_stft_frames(s, L);
    float *x = malloc((size_t)C * L * sizeof(float));
    for (int i = 0; i < C * L; i++) x[i] = urand();
    float *spec = malloc((size_t)2 * K * C * F * sizeof(float));
    float *re = malloc((size_t)K * F * sizeof(float)), *im = malloc((size_t)K * F * sizeof(float));
    CHECK_OK(nf_stft_encode(s, x, C, L, 0.5f, spec));
    int ok = 1;
    for (int c = 0; c < C; c++) {
        CHECK_OK(nf_stft_forward(s, x + c * L, L, re, im));
        for (int k = 0; k < K; k++)
            for (int f = 0; f < F; f++) {
                double mag = hypot(re[k * F + f], im[k * F + f]);
                double yr = spec[((size_t)c * 2 * K + k) * F + f], yi = spec[((size_t)c * 2 * K + K + k) * F + f];
                /* |Y| = |X|^0.5, same phase: Y * conj(X) is real and positive. */
                double ym = hypot(yr, yi);
                double cross_im = yi * re[k * F + f] - yr * im[k * F + f];
                double dot = yr * re[k * F + f] + yi * im[k * F + f];
                if (fabs(ym - sqrt(mag)) > 1e-5 * (1 + sqrt(mag)) || fabs(cross_im) > 1e-4 * (1 + ym * mag) ||
                    (mag > 1e-6 && dot <= 0))
                    ok = 0;
            }
    }
    CHECK(ok, "%s", "row c*2*bins + k = Re, + bins + k = Im of |X|^0.5 e^{i arg X}");
    /* Zero input: the compression's guard keeps it zero and finite. */
    memset(x, 0, (size_t)C * L * sizeof(float));
    CHECK_OK(nf_stft_encode(s, x, C, L, 0.5f, spec));
    float *y = malloc((size_t)C * L * sizeof(float));
    CHECK_OK(nf_stft_decode(s, spec, C, L, 0.5f, y));
    int zeros = 1;
    for (int i = 0; i < C * L; i++) zeros &= y[i] == 0.0f;
    for (int i = 0; i < 2 * K * C * F; i++) zeros &= spec[i] == 0.0f;
    CHECK(zeros, "%s", "silence stays exactly zero (|X| = 0 guarded)");
    /* Closed form of the compression on one value: 3 + 4i, p = 0.5 -> sqrt(5) (0.6 + 0.8i). */
    float r1 = 3, i1 = 4;
    nf_stft_compress(&r1, &i1, 1, 0.5f, 1);
    CHECK(fabsf(r1 - 0.6f * sqrtf(5)) < 1e-6f && fabsf(i1 - 0.8f * sqrtf(5)) < 1e-6f, "compress: %g %g", r1, i1);
    nf_stft_expand(&r1, &i1, 1, 0.5f, 1);
    CHECK(fabsf(r1 - 3) < 1e-5f && fabsf(i1 - 4) < 1e-5f, "expand: %g %g", r1, i1);
    free(x);
    free(y);
    free(spec);
    free(re);
    free(im);
    nf_stft_free(s);
}

static void test_repr(void)
{
    const int B = 3, C = 2, L = 2048;
    float *x = malloc((size_t)B * C * L * sizeof(float)), *y = malloc((size_t)B * C * L * sizeof(float));
    for (int i = 0; i < B * C * L; i++) x[i] = 0.3f * urand();
    for (int kind = 0; kind < 2; kind++) {
        nf_repr_config cfg;
        nf_repr_config_default(&cfg, (nf_repr_kind)kind, C);
        nf_repr *r;
        CHECK_OK(nf_repr_create(&cfg, &r));
        if (!r) continue;
        int Cm = nf_repr_channels(r), Lm = nf_repr_length(r, L);
        if (kind == NF_REPR_WAVE) CHECK(Cm == C && Lm == L, "wave: %d x %d", Cm, Lm);
        else CHECK(Cm == 2 * 257 * C && Lm == 1 + L / 128, "stft: %d x %d", Cm, Lm);
        float *z = malloc((size_t)B * Cm * Lm * sizeof(float));
        float sc;
        CHECK_OK(nf_repr_estimate_scale(r, x, B, L, 0, &sc));
        nf_repr_set_scale(r, sc);
        CHECK_OK(nf_repr_encode(r, x, B, L, z));
        double ss = 0;
        for (size_t i = 0; i < (size_t)B * Cm * Lm; i++) ss += (double)z[i] * z[i];
        CHECK_CLOSE(sqrt(ss / ((double)B * Cm * Lm)), 1.0, 1e-4, 0, "unit RMS after the estimated scale");
        if (kind == NF_REPR_WAVE) CHECK_CLOSE(z[5], x[5] * sc, 1e-7, 1e-6, "wave is identity times scale");
        CHECK_OK(nf_repr_decode(r, z, B, L, y));
        double e = rel_err(y, x, (size_t)B * C * L);
        CHECK(e < 1e-5, "%s round trip with scale %g: rel err %g", nf_repr_kind_name((nf_repr_kind)kind), sc, e);
        free(z);
        nf_repr_free(r);
    }
    /* "mag" (log-compressed): the layout's shape, unit RMS after the scale, and a decode
     * whose magnitudes come back close (the phase is Griffin-Lim's own: the waveform does
     * not). The encoding of the decoded audio is compared in the model's own domain. */
    {
        nf_repr_config cfg;
        nf_repr_config_default(&cfg, NF_REPR_MAG, C);
        cfg.log_floor = nf_repr_log_floor(cfg.n_fft);
        nf_repr *r;
        CHECK_OK(nf_repr_create(&cfg, &r));
        int Cm = nf_repr_channels(r), Lm = nf_repr_length(r, L);
        CHECK(Cm == 257 * C && Lm == 1 + L / 128, "mag: %d x %d", Cm, Lm);
        size_t n = (size_t)B * Cm * Lm;
        float *z = malloc(n * sizeof(float)), *z2 = malloc(n * sizeof(float));
        float sc;
        CHECK_OK(nf_repr_estimate_scale(r, x, B, L, 0, &sc));
        nf_repr_set_scale(r, sc);
        CHECK_OK(nf_repr_encode(r, x, B, L, z));
        double ss = 0;
        for (size_t i = 0; i < n; i++) ss += (double)z[i] * z[i];
        CHECK_CLOSE(sqrt(ss / (double)n), 1.0, 1e-4, 0, "mag: unit RMS after the estimated scale");
        CHECK_OK(nf_repr_decode(r, z, B, L, y));
        CHECK_OK(nf_repr_encode(r, y, B, L, z2));
        double e = rel_err(z2, z, n);
        CHECK(e < 0.1, "mag: decode then encode gives the log magnitudes back to %.3f", e);
        cfg.log_floor = -1;
        nf_repr *bad = NULL;
        CHECK(nf_repr_create(&cfg, &bad) == NF_ERR_ARG && !bad, "%s", "negative log floor refused");
        free(z);
        free(z2);
        nf_repr_free(r);
    }
    CHECK(nf_repr_kind_from_name("stft") == NF_REPR_STFT && nf_repr_kind_from_name("mag") == NF_REPR_MAG &&
              nf_repr_kind_from_name("x") == -1 && !strcmp(nf_repr_kind_name(NF_REPR_MAG), "mag"),
          "%s", "kind names");
    free(x);
    free(y);
}

/* The magnitude layout: encode is g(|STFT|) exactly, for the square root and the log
 * compression; decode (fast Griffin-Lim) finds audio whose magnitudes match, is
 * deterministic, improves with iterations, and treats a model's negative or NaN output
 * as silence. The test sound has what drums have: a decaying low sine (a kick), a noise
 * burst (a hat) and silence. */
static double spectral_convergence(nf_stft *s, const float *y, int L, const float *lin)
{
    const size_t n = (size_t)nf_stft_bins(s) * nf_stft_frames(s, L);
    float *m2 = malloc(n * sizeof(float));
    nf_stft_mag_encode(s, y, 1, L, 1.0f, 0.0f, 0, m2);
    double e = 0, t = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)m2[i] - lin[i]) * ((double)m2[i] - lin[i]);
        t += (double)lin[i] * lin[i];
    }
    free(m2);
    return sqrt(e / t);
}

static void test_magnitude(float power, float log_floor, int P)
{
    const int N = 128, hop = 32, L = 4000, rate = 16000;
    nf_stft *s;
    CHECK_OK(nf_stft_create(N, hop, &s));
    if (!s) return;
    const int K = nf_stft_bins(s), F = nf_stft_frames(s, L);
    CHECK(nf_stft_mag_channels(s, 2, P) == 2 * (K + P), "mag channels %d", nf_stft_mag_channels(s, 2, P));
    const size_t n = (size_t)K * F, nm = (size_t)(K + P) * F;
    float *x = calloc(L, sizeof(float)), *y = malloc(L * sizeof(float)), *y2 = malloc(L * sizeof(float));
    float *mag = malloc(nm * sizeof(float)), *lin = malloc(n * sizeof(float)), *re = malloc(n * sizeof(float)),
          *im = malloc(n * sizeof(float));
    for (int i = 0; i < 2000; i++) x[i] += 0.8f * expf(-i / 600.0f) * sinf(2 * (float)M_PI * 120.0f * i / rate);
    for (int i = 2400; i < 2800; i++) x[i] += 0.4f * urand() * expf(-(i - 2400) / 80.0f);
    CHECK_OK(nf_stft_mag_encode(s, x, 1, L, power, log_floor, P, mag));
    CHECK_OK(nf_stft_forward(s, x, L, re, im));
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double m = hypot(re[i], im[i]);
        lin[i] = (float)m;
        double want = log_floor > 0 ? log1p(m / log_floor) : pow(m, power);
        size_t k = i / (size_t)F, f = i % (size_t)F;
        if (k < (size_t)P) { /* kept as the compressed complex value: check |Y| and its phase */
            double yr = mag[k * F + f], yi = mag[(P + k) * F + f];
            double d = fabs(hypot(yr, yi) - want) / (want + 1e-6);
            if (m > 1e-3) d += fabs(yr * im[i] - yi * re[i]) / (hypot(yr, yi) * m); /* sin of the phase error */
            if (d > worst) worst = d;
            continue;
        }
        double d = fabs(mag[(P + k) * F + f] - want) / (want + 1e-6);
        if (d > worst) worst = d;
    }
    CHECK(worst < 1e-5, "mag encode (power %g, log floor %g, %d phase bins) = g(|STFT|) (worst rel err %g)", power,
          log_floor, P, worst);

    CHECK_OK(nf_stft_mag_decode(s, mag, 1, L, power, log_floor, P, 0, y));
    double sc0 = spectral_convergence(s, y, L, lin);
    CHECK_OK(nf_stft_mag_decode(s, mag, 1, L, power, log_floor, P, 64, y));
    double sc64 = spectral_convergence(s, y, L, lin);
    CHECK_OK(nf_stft_mag_decode(s, mag, 1, L, power, log_floor, P, 256, y2));
    double sc256 = spectral_convergence(s, y2, L, lin);
    fprintf(stderr, "Griffin-Lim, %d phase bins: spectral convergence: start phase %.3f, 64 iterations %.3f, 256 %.3f\n",
            P, sc0, sc64, sc256);
    /* Measured without phase bins 0.686 -> 0.316 -> 0.316: a 120 Hz partial, one bin wide
     * at this window size, is the hard part for phase retrieval (the burst alone converges
     * to a few percent); without the projection step the error would stay at the start's.
     * With its bins' phases given (P = 3), the rest converges: 0.04x measured. */
    CHECK(sc64 < (P >= 3 ? 0.1 : 0.35) && sc64 < 0.6 * sc0, "%d phase bins: 64 iterations bring the magnitudes closer: %.3f (from %.3f)",
          P, sc64, sc0);
    CHECK(sc256 <= sc64, "more iterations do not diverge: %.3f <= %.3f", sc256, sc64);
    CHECK_OK(nf_stft_mag_decode(s, mag, 1, L, power, log_floor, P, 64, y2));
    CHECK(!memcmp(y, y2, L * sizeof(float)), "%s", "the same magnitudes decode to the same audio");
    /* Energy and where it sits in time survive: the burst stays in its 400 samples. */
    double e_x = 0, e_y = 0, e_gap = 0;
    for (int i = 0; i < L; i++) {
        e_x += (double)x[i] * x[i];
        e_y += (double)y[i] * y[i];
        if (i >= 3000) e_gap += (double)y[i] * y[i];
    }
    CHECK(fabs(e_y - e_x) < 0.1 * e_x, "energy kept (%g vs %g)", e_y, e_x);
    CHECK(e_gap < 1e-4 * e_x, "the silent end stays silent (%g)", e_gap / e_x);
    /* A model's output undershoots: negative and NaN magnitudes are silence, not NaN. */
    for (size_t i = 0; i < nm; i++) mag[i] = (i % 3 == 0) ? -mag[i] : (i % 7 == 0 ? NAN : mag[i]);
    CHECK_OK(nf_stft_mag_decode(s, mag, 1, L, power, log_floor, P, 8, y));
    int finite = 1;
    for (int i = 0; i < L; i++) finite &= isfinite(y[i]);
    CHECK(finite, "%s", "negative and NaN magnitudes decode to finite audio");
    CHECK(nf_stft_mag_decode(s, mag, 1, L, power, log_floor, P, -1, y) == NF_ERR_ARG, "%s", "negative iteration count refused");
    free(x); free(y); free(y2); free(mag); free(lin); free(re); free(im);
    nf_stft_free(s);
}

/* Lead frames (nf_stft_set_lead): frame f with a lead of D is frame f - D without one, bit
 * for bit; the lead frames see only the silence before the clip and the first samples;
 * the inverse is still exact; the representation's length grows by D and its encoding
 * of a clip is the lead-free one shifted by D frames. */
static void test_lead(void)
{
    const int N = 64, hop = 16, L = 1001, D = 5;
    nf_stft *s0, *s1;
    CHECK_OK(nf_stft_create(N, hop, &s0));
    CHECK_OK(nf_stft_create(N, hop, &s1));
    if (!s0 || !s1) return;
    CHECK(nf_stft_set_lead(s1, -1) == NF_ERR_ARG && nf_stft_set_lead(s1, NF_STFT_MAX_LEAD + 1) == NF_ERR_ARG,
          "%s", "lead out of range refused");
    CHECK_OK(nf_stft_set_lead(s1, D));
    const int K = nf_stft_bins(s0), F0 = nf_stft_frames(s0, L), F1 = nf_stft_frames(s1, L);
    CHECK(F1 == F0 + D && nf_stft_lead(s1) == D, "frames %d with lead %d, %d without", F1, D, F0);
    float *x = malloc(L * sizeof(float)), *y = malloc(L * sizeof(float));
    for (int i = 0; i < L; i++) x[i] = 0.5f * urand();
    float *r0 = malloc((size_t)K * F0 * sizeof(float)), *i0 = malloc((size_t)K * F0 * sizeof(float));
    float *r1 = malloc((size_t)K * F1 * sizeof(float)), *i1 = malloc((size_t)K * F1 * sizeof(float));
    CHECK_OK(nf_stft_forward(s0, x, L, r0, i0));
    CHECK_OK(nf_stft_forward(s1, x, L, r1, i1));
    int same = 1, silent = 1;
    for (int k = 0; k < K; k++) {
        for (int f = 0; f < F0; f++)
            same &= r1[(size_t)k * F1 + f + D] == r0[(size_t)k * F0 + f] && i1[(size_t)k * F1 + f + D] == i0[(size_t)k * F0 + f];
        /* Frame f covers [(f - D) hop - N/2, (f - D) hop + N/2): before sample 0 for f <= D - N/(2 hop). */
        for (int f = 0; f <= D - N / (2 * hop); f++) silent &= r1[(size_t)k * F1 + f] == 0 && i1[(size_t)k * F1 + f] == 0;
    }
    CHECK(same, "%s", "frames after the lead differ from the lead-free transform");
    CHECK(silent, "%s", "a lead frame wholly before the clip is not zero");
    int partial = 0; /* frame D - 1 reaches into the clip */
    for (int k = 0; k < K; k++) partial |= r1[(size_t)k * F1 + D - 1] != 0;
    CHECK(partial, "%s", "the lead frame overlapping the clip is empty");
    CHECK_OK(nf_stft_inverse(s1, r1, i1, L, y));
    double e = rel_err(y, x, L);
    CHECK(e < 1e-5, "inverse with lead frames: rel err %g", e);

    /* Through the representation (magnitudes, 3 phase bins, |X|^0.35). */
    nf_repr_config rc;
    nf_repr_config_default(&rc, NF_REPR_MAG, 1);
    rc.n_fft = N, rc.hop = hop, rc.phase_bins = 3, rc.power = 0.35f;
    nf_repr *a = NULL, *b = NULL;
    CHECK_OK(nf_repr_create(&rc, &a));
    rc.lead_frames = D;
    CHECK_OK(nf_repr_create(&rc, &b));
    if (a && b) {
        int C = nf_repr_channels(a), La = nf_repr_length(a, L), Lb = nf_repr_length(b, L);
        CHECK(Lb == La + D && nf_repr_channels(b) == C, "repr length %d vs %d", Lb, La);
        float *za = malloc((size_t)C * La * sizeof(float)), *zb = malloc((size_t)C * Lb * sizeof(float));
        CHECK_OK(nf_repr_encode(a, x, 1, L, za));
        CHECK_OK(nf_repr_encode(b, x, 1, L, zb));
        int shifted = 1;
        for (int c = 0; c < C; c++)
            for (int f = 0; f < La; f++) shifted &= zb[(size_t)c * Lb + f + D] == za[(size_t)c * La + f];
        CHECK(shifted, "%s", "the encoding with lead frames is not the lead-free one shifted");
        /* Griffin-Lim cannot give noise its waveform back, but it must give back its
         * spectrogram (measured: 0.04 relative error in the compressed magnitudes). */
        CHECK_OK(nf_repr_decode(b, zb, 1, L, y));
        CHECK_OK(nf_repr_encode(b, y, 1, L, za = realloc(za, (size_t)C * Lb * sizeof(float))));
        e = rel_err(za, zb, (size_t)C * Lb);
        CHECK(e < 0.15, "Griffin-Lim decoding with lead frames: spectrogram rel err %g", e);
        printf("lead GL spectrogram err %g\n", e);
        free(za);
        free(zb);
    }
    rc.kind = NF_REPR_WAVE;
    nf_repr *w = NULL;
    CHECK_OK(nf_repr_create(&rc, &w));
    if (w) CHECK(nf_repr_length(w, L) == L, "%s", "the waveform has no lead frames");
    nf_repr_free(a);
    nf_repr_free(b);
    nf_repr_free(w);
    free(x), free(y), free(r0), free(i0), free(r1), free(i1);
    nf_stft_free(s0);
    nf_stft_free(s1);
}

int main(void)
{
    test_forward_vs_dft();
    test_reconstruction();
    test_layout();
    test_repr();
    test_lead();
    test_magnitude(0.5f, 0.0f, 0);
    test_magnitude(1.0f, nf_repr_log_floor(128), 0);
    test_magnitude(1.0f, nf_repr_log_floor(128), 3);
    return nf_test_done();
}
