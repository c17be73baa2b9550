/* The sound-quality measures: features against closed forms (sine frequency, exponential
 * decay times, zero-crossing rate, flatness of noise vs tone), the classifier on the drum
 * corpus (trained on one corpus, tested on an independently seeded one), the Fréchet
 * distance against closed forms and on the corpus, the per-sound checks and copy
 * detection. */
#include "nf_drums.h"
#include "nf_features.h"
#include "nf_rng.h"
#include "nf_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RATE 22050
#define LEN 16384

static int feat_index(const char *name)
{
    for (int i = 0; i < NF_FEAT_DIM; i++)
        if (strcmp(nf_feature_name(i), name) == 0) return i;
    return -1;
}

static void test_names(void)
{
    CHECK(nf_feature_name(-1) == NULL && nf_feature_name(NF_FEAT_DIM) == NULL, "range");
    int unique = 1;
    for (int i = 0; i < NF_FEAT_DIM; i++)
        for (int j = i + 1; j < NF_FEAT_DIM; j++)
            if (strcmp(nf_feature_name(i), nf_feature_name(j)) == 0) unique = 0;
    CHECK(unique, "feature names are unique");
    CHECK(strcmp(nf_feature_name(0), "mel_mean_00") == 0, "first name");
    CHECK(strcmp(nf_feature_name(NF_FEAT_MEL_BANDS), "mel_attack_00") == 0, "attack names");
    CHECK(feat_index("env_50_100ms_db") == 2 * NF_FEAT_MEL_BANDS + 3, "envelope names");
    CHECK(feat_index("log2_dominant_hz") == NF_FEAT_DIM - 1, "last name");
}

/* Features of signals whose answers are known in closed form. */
static void test_closed_forms(nf_features *fx)
{
    float *x = malloc(LEN * sizeof *x), feat[NF_FEAT_DIM];
    const double f0 = 1000.0, tau = 0.05;
    /* A steady sine: dominant frequency and centroid f0, ZCR 2 f0, tonal (flatness low). */
    for (int t = 0; t < LEN; t++) x[t] = (float)(0.5 * sin(2 * M_PI * f0 * t / RATE + 0.3));
    CHECK_OK(nf_features_compute(fx, x, LEN, feat));
    CHECK_CLOSE(exp2(feat[feat_index("log2_dominant_hz")]) - 1, f0, 3.0, 0, "sine dominant Hz");
    CHECK_CLOSE(exp2(feat[feat_index("log2_centroid_hz")]) - 1, f0, 0, 0.03, "sine centroid Hz");
    CHECK_CLOSE(exp2(feat[feat_index("log2_zcr_hz")]) - 1, 2 * f0, 0, 0.01, "sine ZCR");
    CHECK(feat[feat_index("log10_flatness")] < -3.0, "sine flatness %g", feat[feat_index("log10_flatness")]);
    /* Crest factor of a sine: sqrt(2) = 3.01 dB. */
    CHECK_CLOSE(feat[feat_index("crest_db")], 20 * log10(sqrt(2.0)), 0.05, 0, "sine crest");
    /* The 1000 Hz mel band is the loudest band of the mean spectrum. */
    int best = 0;
    for (int b = 1; b < NF_FEAT_MEL_BANDS; b++)
        if (feat[b] > feat[best]) best = b;
    double mel_c = 2595 * log10(1 + f0 / 700), lo = 2595 * log10(1 + 20 / 700.0),
           hi = 2595 * log10(1 + RATE / 2 / 700.0);
    /* Band b peaks at lo + (hi-lo)(b+1)/33. */
    int want_b = (int)lround((mel_c - lo) / (hi - lo) * (NF_FEAT_MEL_BANDS + 1)) - 1;
    CHECK(abs(best - want_b) <= 1, "loudest mel band %d, want %d", best, want_b);

    /* An exponentially decaying sine x = sin(2 pi f t) e^{-t/tau}: its RMS envelope falls
     * 20 dB at t = tau ln 10 and 40 dB at 2 tau ln 10. */
    for (int t = 0; t < LEN; t++)
        x[t] = (float)(0.9 * sin(2 * M_PI * f0 * t / RATE) * exp(-(double)t / RATE / tau));
    CHECK_OK(nf_features_compute(fx, x, LEN, feat));
    CHECK_CLOSE(exp2(feat[feat_index("log2_decay20_ms")]), 1000 * tau * log(10.0), 1.5, 0, "decay20 ms");
    CHECK_CLOSE(exp2(feat[feat_index("log2_decay40_ms")]), 2000 * tau * log(10.0), 1.5, 0, "decay40 ms");
    CHECK(exp2(feat[feat_index("log2_peak_time_ms")]) - 1 < 1.0, "peak in the first ms");
    /* Envelope segments: mean of e^{-2t/tau} over [A, B] relative to the first ms's mean
     * power (the peak block; the sine's mean square 1/2 cancels). */
    {
        double blk = 22.0 / RATE, p0 = tau / 2 * (1 - exp(-2 * blk / tau)) / blk;
        double A = 0.050, Bq = 0.100;
        double seg = tau / 2 * (exp(-2 * A / tau) - exp(-2 * Bq / tau)) / (Bq - A);
        CHECK_CLOSE(feat[feat_index("env_50_100ms_db")], 10 * log10(seg / p0), 0.2, 0, "env 50-100 ms");
        CHECK_CLOSE(feat[feat_index("env_800_1600ms_db")], -80.0, 1e-4, 0, "env past the end");
    }
    CHECK(exp2(feat[feat_index("log2_attack_ms")]) - 1 < 0.5, "no attack ramp");
    /* Start the same sound after 100 ms of silence: peak time moves by 100 ms, decay stays. */
    int off = RATE / 10;
    memmove(x + off, x, (LEN - off) * sizeof *x);
    memset(x, 0, off * sizeof *x);
    float f2[NF_FEAT_DIM];
    CHECK_OK(nf_features_compute(fx, x, LEN, f2));
    /* 1 ms envelope blocks: the peak time is known to a block or two. */
    CHECK_CLOSE(exp2(f2[feat_index("log2_peak_time_ms")]) - 1, 100.0, 2.0, 0, "delayed peak time");
    CHECK_CLOSE(f2[feat_index("log2_decay20_ms")], feat[feat_index("log2_decay20_ms")], 0.05, 0,
                "delayed decay20");
    /* A linear 50 ms fade-in: attack is about the time from -20 dB (0.1 of the peak
     * amplitude, at 5 ms) to the peak (50 ms). */
    for (int t = 0; t < LEN; t++) {
        double tt = (double)t / RATE;
        x[t] = (float)(0.5 * sin(2 * M_PI * f0 * tt) * (tt < 0.05 ? tt / 0.05 : exp(-(tt - 0.05) / tau)));
    }
    CHECK_OK(nf_features_compute(fx, x, LEN, feat));
    CHECK_CLOSE(exp2(feat[feat_index("log2_attack_ms")]) - 1, 45.0, 2.0, 0, "ramp attack ms");

    /* White noise: flat (flatness near e^-gamma = 0.56 for a periodogram), centroid at
     * a quarter of the rate, ZCR about half the rate. */
    nf_randn(x, LEN, 3, 0, 0);
    for (int t = 0; t < LEN; t++) x[t] *= 0.2f;
    CHECK_OK(nf_features_compute(fx, x, LEN, feat));
    CHECK(feat[feat_index("log10_flatness")] > log10(0.4), "noise flatness %g",
          pow(10, feat[feat_index("log10_flatness")]));
    CHECK_CLOSE(exp2(feat[feat_index("log2_centroid_hz")]) - 1, RATE / 4.0, 0, 0.03, "noise centroid");
    CHECK_CLOSE(exp2(feat[feat_index("log2_zcr_hz")]) - 1, RATE / 2.0, 0, 0.03, "noise ZCR");
    /* Silence: finite floor values. */
    memset(x, 0, LEN * sizeof *x);
    CHECK_OK(nf_features_compute(fx, x, LEN, feat));
    int finite = 1;
    for (int i = 0; i < NF_FEAT_DIM; i++) finite &= isfinite(feat[i]) != 0;
    CHECK(finite, "silence gives finite features");
    x[5] = NAN;
    CHECK(nf_features_compute(fx, x, LEN, feat) == NF_ERR_NUMERIC, "NaN input refused");
    free(x);
}

/* Fréchet distance against closed forms on synthetic feature sets. */
static void test_frechet_closed_forms(void)
{
    const int n = 200, D = NF_FEAT_DIM;
    float *a = malloc((size_t)n * D * sizeof *a), *b = malloc((size_t)n * D * sizeof *b);
    nf_randn(a, (size_t)n * D, 11, 0, 0);
    /* Correlate the features a little so the covariance is not diagonal. */
    for (int i = 0; i < n; i++)
        for (int j = 1; j < D; j++) a[i * D + j] += 0.5f * a[i * D + j - 1];
    nf_feat_stats st;
    CHECK_OK(nf_feat_stats_fit(a, n, &st));
    double d2;
    float delta[NF_FEAT_DIM];
    CHECK_OK(nf_feat_frechet(&st, a, n, a, n, &d2, delta));
    CHECK_CLOSE(d2, 0.0, 1e-6, 0, "d2(A, A) = 0");
    /* B = A + shift: same covariance, so d2 = |shift / std|^2 exactly. */
    double want = 0.0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) b[i * D + j] = a[i * D + j] + (float)(0.1 * (j % 5)) * st.std[j];
    for (int j = 0; j < D; j++) want += 0.01 * (j % 5) * (j % 5);
    CHECK_OK(nf_feat_frechet(&st, a, n, b, n, &d2, delta));
    CHECK_CLOSE(d2, want, 1e-4, 1e-3, "d2 of a shifted set");
    CHECK_CLOSE(delta[7], 0.2, 1e-4, 0, "per-feature |dmean|/std");
    /* B = mean + 2 (A - mean): covariance 4 S, so d2 = Tr(S + 4S - 2 * 2S) = Tr S, and
     * in standardised units each variance is 1, so Tr S = D. */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) b[i * D + j] = st.mean[j] + 2.0f * (a[i * D + j] - st.mean[j]);
    CHECK_OK(nf_feat_frechet(&st, a, n, b, n, &d2, NULL));
    CHECK_CLOSE(d2, (double)D, 1e-3, 1e-3, "d2 of a scaled set");
    /* Symmetry. */
    double d2b;
    CHECK_OK(nf_feat_frechet(&st, b, n, a, n, &d2b, NULL));
    CHECK_CLOSE(d2b, d2, 1e-6, 1e-6, "d2 symmetric");
    free(a);
    free(b);
}

static void test_checks(void)
{
    float x[1000];
    nf_sound_check ck;
    for (int i = 0; i < 1000; i++) x[i] = 0.5f * sinf(0.1f * i);
    nf_sound_check_run(x, 1000, &ck);
    CHECK(ck.ok && !ck.silent && !ck.is_clipped && !ck.nonfinite, "a fine sound passes");
    CHECK_CLOSE(ck.peak_db, 20 * log10(0.5), 0.01, 0, "peak dBFS");
    for (int i = 0; i < 1000; i++) x[i] *= 1e-3f * 1.5f; /* -62.5 dBFS */
    nf_sound_check_run(x, 1000, &ck);
    CHECK(ck.silent && !ck.ok, "-62 dBFS is silent");
    memset(x, 0, sizeof x);
    nf_sound_check_run(x, 1000, &ck);
    CHECK(ck.silent && !ck.ok, "zeros are silent");
    for (int i = 0; i < 1000; i++) x[i] = 0.5f * sinf(0.1f * i);
    for (int i = 0; i < NF_CHECK_MAX_CLIPPED; i++) x[100 + i] = 1.0f;
    nf_sound_check_run(x, 1000, &ck);
    CHECK(ck.ok && ck.clipped == NF_CHECK_MAX_CLIPPED, "a few full-scale samples are allowed");
    x[300] = -1.2f;
    nf_sound_check_run(x, 1000, &ck);
    CHECK(ck.is_clipped && !ck.ok, "clipped");
    x[300] = 0.0f;
    x[500] = INFINITY;
    nf_sound_check_run(x, 1000, &ck);
    CHECK(ck.nonfinite == 1 && !ck.ok, "non-finite");
}

int main(void)
{
    test_names();
    nf_features *fx;
    CHECK_OK(nf_features_create(RATE, &fx));
    test_closed_forms(fx);
    nf_features_free(fx);
    test_frechet_closed_forms();
    test_checks();

    /* The drum corpus: train on one corpus, label an independently seeded one. */
    const int C = NF_DRUM_NUM_CLASSES, per_tr = 40, per_te = 20, D = NF_FEAT_DIM;
    const int ntr = C * per_tr, nte = C * per_te;
    float *wtr = malloc((size_t)ntr * LEN * sizeof *wtr), *wte = malloc((size_t)nte * LEN * sizeof *wte);
    float *ftr = malloc((size_t)ntr * D * sizeof *ftr), *fte = malloc((size_t)nte * D * sizeof *fte);
    int *ltr = malloc(ntr * sizeof *ltr), *lte = malloc(nte * sizeof *lte);
    CHECK_OK(nf_drum_corpus_render(per_tr, RATE, LEN, 1, wtr, ltr));
    CHECK_OK(nf_drum_corpus_render(per_te, RATE, LEN, 2, wte, lte));
    CHECK_OK(nf_features_compute_batch(RATE, wtr, ntr, LEN, ftr));
    CHECK_OK(nf_features_compute_batch(RATE, wte, nte, LEN, fte));

    nf_feat_classifier clf, clf2;
    CHECK_OK(nf_feat_classifier_fit(&clf, ftr, ltr, ntr, C));
    double acc_tr = nf_feat_classifier_accuracy(&clf, ftr, ltr, ntr);
    double acc = nf_feat_classifier_accuracy(&clf, fte, lte, nte);
    printf("classifier accuracy: train %.3f, fresh corpus %.3f\n", acc_tr, acc);
    CHECK(acc >= 0.95, "fresh-corpus accuracy %.3f, want >= 0.95", acc);
    for (int c = 0; c < C; c++) {
        double a = nf_feat_classifier_accuracy(&clf, fte + (size_t)c * per_te * D, lte + c * per_te, per_te);
        CHECK(a >= 0.85, "%s accuracy %.3f, want >= 0.85", nf_drum_class_name(c), a);
    }
    CHECK_OK(nf_feat_classifier_fit(&clf2, ftr, ltr, ntr, C));
    CHECK(memcmp(clf.w, clf2.w, (size_t)C * D * sizeof(float)) == 0, "fit is deterministic");
    float probs[NF_DRUM_NUM_CLASSES];
    int k = nf_feat_classifier_predict(&clf, fte, probs);
    double psum = 0.0;
    for (int c = 0; c < C; c++) psum += probs[c];
    CHECK_CLOSE(psum, 1.0, 1e-5, 0, "probabilities sum to 1");
    CHECK(probs[k] >= probs[(k + 1) % C], "predict returns the most probable class");
    nf_feat_classifier_free(&clf);
    nf_feat_classifier_free(&clf2);

    /* Fréchet distances on the corpus (standardised with the training corpus's stats). */
    nf_feat_stats st;
    CHECK_OK(nf_feat_stats_fit(ftr, ntr, &st));
    double split, fresh, kick_hat;
    /* Interleave classes so that each half has every class: the corpus is class-major,
     * and the split takes even / odd indices, so per_tr even gives equal halves. */
    CHECK_OK(nf_feat_frechet_split_half(&st, ftr, ntr, &split));
    CHECK_OK(nf_feat_frechet(&st, ftr, ntr, fte, nte, &fresh, NULL));
    CHECK_OK(nf_feat_frechet(&st, ftr + (size_t)NF_DRUM_KICK * per_tr * D, per_tr,
                             ftr + (size_t)NF_DRUM_CLOSEDHAT * per_tr * D, per_tr, &kick_hat, NULL));
    printf("Fréchet d2: split-half %.3f, corpus vs fresh corpus %.3f, kicks vs closed hats %.1f\n",
           split, fresh, kick_hat);
    CHECK(fresh < 2.0 * split, "fresh corpus within 2x the split-half distance");
    CHECK(kick_hat > 20.0 * split, "kicks vs hats far beyond the split-half distance");
    /* Per class, as the default-model check does it: m = 10 sounds against the class's
     * 40 corpus sounds, judged against the hold-out reference of the same sizes. */
    const int m = 10;
    double worst_ratio = 0.0, nearest_other = INFINITY;
    for (int c = 0; c < C; c++) {
        const float *fc = ftr + (size_t)c * per_tr * D;
        double ref, ref_max, same;
        CHECK_OK(nf_feat_frechet_holdout(&st, fc, per_tr, m, 8, 5, &ref, &ref_max));
        CHECK(ref > 0.0 && ref_max >= ref, "hold-out reference");
        CHECK_OK(nf_feat_frechet(&st, fte + (size_t)c * per_te * D, m, fc, per_tr, &same, NULL));
        worst_ratio = fmax(worst_ratio, same / ref);
        double closest = INFINITY;
        for (int o = 0; o < C; o++) {
            if (o == c) continue;
            double other;
            CHECK_OK(nf_feat_frechet(&st, fte + (size_t)o * per_te * D, m, fc, per_tr, &other, NULL));
            closest = fmin(closest, other / ref);
        }
        nearest_other = fmin(nearest_other, closest);
        printf("  %-9s hold-out d2 %.2f (max %.2f), fresh same class %.2f, nearest other class "
               "%.1fx\n", nf_drum_class_name(c), ref, ref_max, same, closest);
    }
    printf("per class: worst same-class ratio %.2f, nearest other-class ratio %.2f\n",
           worst_ratio, nearest_other);
    CHECK(worst_ratio < 2.0, "each class of a fresh corpus within 2x its hold-out distance");

    /* The distance sees a degraded sound: the same fresh hits with white hiss at
     * -40 dBFS (a poor model's noise floor) move far from their class. */
    {
        float *x = malloc((size_t)m * LEN * sizeof *x), *fx2 = malloc((size_t)m * D * sizeof *fx2);
        double mean_ratio = 0.0;
        for (int c = 0; c < C; c++) {
            nf_randn(x, (size_t)m * LEN, 8, (uint64_t)c, 0);
            for (size_t i = 0; i < (size_t)m * LEN; i++) x[i] = wte[(size_t)c * per_te * LEN + i] + 0.01f * x[i];
            CHECK_OK(nf_features_compute_batch(RATE, x, m, LEN, fx2));
            const float *fc = ftr + (size_t)c * per_tr * D;
            double ref, d2h;
            CHECK_OK(nf_feat_frechet_holdout(&st, fc, per_tr, m, 8, 5, &ref, NULL));
            CHECK_OK(nf_feat_frechet(&st, fx2, m, fc, per_tr, &d2h, NULL));
            mean_ratio += d2h / ref / C;
        }
        printf("hiss at -40 dBFS: mean per-class ratio %.1f\n", mean_ratio);
        CHECK(mean_ratio > 10.0, "-40 dBFS hiss moves the classes > 10x their hold-out distance");
        free(x);
        free(fx2);
    }
    {
        double d2;
        CHECK(nf_feat_frechet_holdout(&st, ftr, 5, 4, 3, 1, &d2, NULL) == NF_ERR_ARG, "hold-out m too big");
        nf_feat_classifier bad;
        int lab[3] = {0, 1, 7};
        CHECK(nf_feat_classifier_fit(&bad, ftr, lab, 3, 2) == NF_ERR_ARG, "label out of range");
        nf_features *fb;
        CHECK(nf_features_create(100, &fb) == NF_ERR_ARG && fb == NULL, "bad rate refused");
    }
    CHECK(nearest_other > 5.0, "every other class beyond 5x the hold-out distance");

    /* Copy detection: a training clip with noise at -40 dB is a copy (also shifted by a
     * millisecond); hits of other seeds are not. */
    {
        static float q[LEN];
        double ncc;
        int idx;
        int victim = NF_DRUM_SNARE * per_tr + 3;
        nf_randn(q, LEN, 99, 0, 0);
        for (int t = 0; t < LEN; t++) q[t] = wtr[(size_t)victim * LEN + t] + 0.005f * q[t];
        CHECK_OK(nf_copy_max_ncc(q, wtr, ntr, LEN, 0, RATE, &ncc, &idx));
        CHECK(ncc > NF_COPY_THRESHOLD && idx == victim, "noisy copy: ncc %.4f index %d", ncc, idx);
        printf("copy check: training clip + noise at -45 dB re peak: ncc %.4f\n", ncc);
        for (int t = LEN - 1; t >= 0; t--) q[t] = t >= 22 ? q[t - 22] : 0.0f; /* 1 ms later */
        CHECK_OK(nf_copy_max_ncc(q, wtr, ntr, LEN, 0, RATE, &ncc, &idx));
        CHECK(ncc > NF_COPY_THRESHOLD && idx == victim, "shifted copy: ncc %.4f index %d", ncc, idx);
        for (int t = 0; t < LEN; t++) q[t] = -wtr[(size_t)victim * LEN + t];
        CHECK_OK(nf_copy_max_ncc(q, wtr, ntr, LEN, 0, RATE, &ncc, &idx));
        CHECK(ncc > 0.999 && idx == victim, "polarity-flipped copy: ncc %.4f", ncc);
        double worst = 0.0;
        for (int c = 0; c < C; c++) {
            /* The fresh corpus's hits are other seeds of the same recipes. */
            for (int i = 0; i < 2; i++) {
                CHECK_OK(nf_copy_max_ncc(wte + (size_t)(c * per_te + i) * LEN, wtr, ntr, LEN, 0,
                                         RATE, &ncc, &idx));
                worst = fmax(worst, ncc);
                CHECK(ncc < NF_COPY_THRESHOLD, "%s fresh hit %d flagged as a copy (ncc %.4f)",
                      nf_drum_class_name(c), i, ncc);
            }
        }
        printf("copy check: largest ncc of a fresh hit against the training corpus %.3f\n", worst);
    }
    free(wtr); free(wte); free(ftr); free(fte); free(ltr); free(lte);
    return nf_test_done();
}
