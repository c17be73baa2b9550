/* The procedural drum corpus: deterministic per seed, different across seeds, every
 * class finite, not silent, not clipped, peak-normalised, with its attack intact, short
 * classes ending in silence, each class's energy where its recipe puts it (checked by a
 * plain DFT, independent of the features code), and the corpus folder written and read
 * back. */
#include "nf_audio.h"
#include "nf_drums.h"
#include "nf_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RATE 22050

/* Fraction of the power of x[0..n) (plain DFT, Hann-free, bins of RATE/n Hz) that lies
 * in [lo, hi) Hz. */
static double band_fraction(const float *x, int n, double lo, double hi)
{
    double in = 0.0, all = 0.0;
    double *cs = malloc(2 * (size_t)n * sizeof *cs); /* cos, sin of 2 pi j / n */
    for (int j = 0; j < n; j++) {
        cs[2 * j] = cos(2.0 * M_PI * j / n);
        cs[2 * j + 1] = sin(2.0 * M_PI * j / n);
    }
    for (int k = 1; k < n / 2; k++) {
        double re = 0.0, im = 0.0;
        for (int t = 0; t < n; t++) {
            size_t j = ((size_t)k * t) % (size_t)n;
            re += x[t] * cs[2 * j];
            im -= x[t] * cs[2 * j + 1];
        }
        double p = re * re + im * im, f = (double)k * RATE / n;
        all += p;
        if (f >= lo && f < hi) in += p;
    }
    free(cs);
    return all > 0.0 ? in / all : 0.0;
}

static int rm_tree_corpus(const char *dir, int per_class)
{
    char p[2048];
    for (int c = 0; c < NF_DRUM_NUM_CLASSES; c++) {
        const char *nm = nf_drum_class_name(c);
        for (int i = 0; i < per_class; i++) {
            snprintf(p, sizeof p, "%s/%s/%s_%03d.wav", dir, nm, nm, i);
            unlink(p);
        }
        snprintf(p, sizeof p, "%s/%s", dir, nm);
        rmdir(p);
    }
    return rmdir(dir);
}

int main(void)
{
    /* Names and the name table round trip. */
    const char *want[] = {"kick", "snare", "closedhat", "openhat", "tom", "clap", "cymbal"};
    CHECK(NF_DRUM_NUM_CLASSES == 7, "7 classes");
    for (int c = 0; c < NF_DRUM_NUM_CLASSES; c++) {
        CHECK(strcmp(nf_drum_class_name(c), want[c]) == 0, "class %d is %s", c, nf_drum_class_name(c));
        CHECK(nf_drum_class_from_name(want[c]) == c, "from_name(%s)", want[c]);
    }
    CHECK(nf_drum_class_name(7) == NULL && nf_drum_class_from_name("cowbell") == -1, "unknown");
    float dummy[16];
    CHECK(nf_drum_render(7, 1, RATE, 16, dummy) == NF_ERR_ARG, "bad class refused");
    CHECK(nf_drum_render(0, 1, 100, 16, dummy) == NF_ERR_ARG, "bad rate refused");

    const int L = RATE; /* 1 s: long enough for every short class to end */
    float *a = malloc(L * sizeof *a), *b = malloc(L * sizeof *b);
    for (int c = 0; c < NF_DRUM_NUM_CLASSES; c++) {
        /* Same seed -> same samples; other seeds -> other samples. */
        CHECK_OK(nf_drum_render(c, 1234, RATE, L, a));
        CHECK_OK(nf_drum_render(c, 1234, RATE, L, b));
        CHECK(memcmp(a, b, L * sizeof *a) == 0, "%s: same seed, same samples", want[c]);
        int differ = 1;
        for (uint64_t s = 1; s <= 5; s++) {
            CHECK_OK(nf_drum_render(c, 1234 + s, RATE, L, b));
            double md = 0.0;
            for (int t = 0; t < L; t++) md = fmax(md, fabs(a[t] - b[t]));
            if (md < 0.05) differ = 0;
        }
        CHECK(differ, "%s: different seeds give different hits", want[c]);

        int short_class = c != NF_DRUM_OPENHAT && c != NF_DRUM_CYMBAL;
        for (uint64_t s = 0; s < 25; s++) {
            CHECK_OK(nf_drum_render(c, 1000 * s + 7, RATE, L, a));
            double peak = 0.0, tail = 0.0;
            int ipk = 0, finite = 1, clipped = 0;
            for (int t = 0; t < L; t++) {
                if (!isfinite(a[t])) finite = 0;
                if (fabs(a[t]) >= 0.999) clipped++;
                if (fabs(a[t]) > peak) peak = fabs(a[t]), ipk = t;
                if (t >= L - RATE / 10) tail = fmax(tail, fabs(a[t]));
            }
            CHECK(finite, "%s seed %d: finite", want[c], (int)s);
            CHECK(clipped == 0, "%s seed %d: %d clipped samples", want[c], (int)s, clipped);
            /* -1 dBFS peak: not silent, not clipped. */
            CHECK_CLOSE(peak, NF_DRUM_PEAK, 1e-5, 0, "peak -1 dBFS");
            CHECK(ipk < RATE / 50, "%s seed %d: peak at %.1f ms, want < 20 ms (attack)", want[c],
                  (int)s, 1000.0 * ipk / RATE);
            /* A sharp attack: within the first 2 ms the sound is already above -20 dB of its
             * peak (no fade-in). */
            double early = 0.0;
            for (int t = 0; t < RATE / 500; t++) early = fmax(early, fabs(a[t]));
            CHECK(early > 0.1 * peak, "%s seed %d: first 2 ms reach only %.3f of the peak",
                  want[c], (int)s, early / peak);
            if (short_class)
                CHECK(tail < 1e-3, "%s seed %d: last 100 ms peak %.2g, want silence", want[c],
                      (int)s, tail);
        }
    }

    /* Each class's energy where its recipe puts it (median over a few seeds). */
    {
        const int N = 2048; /* the first 93 ms */
        struct { int c; double lo, hi, min_frac; } bands[] = {
            {NF_DRUM_KICK, 20, 300, 0.8},       {NF_DRUM_TOM, 60, 500, 0.7},
            {NF_DRUM_CLOSEDHAT, 5000, 11025, 0.8}, {NF_DRUM_OPENHAT, 5000, 11025, 0.8},
            {NF_DRUM_CYMBAL, 1500, 11025, 0.8}, {NF_DRUM_CLAP, 500, 4000, 0.7},
            {NF_DRUM_SNARE, 100, 8000, 0.9},
        };
        for (size_t q = 0; q < sizeof bands / sizeof bands[0]; q++) {
            int good = 0;
            for (int s = 0; s < 5; s++) {
                CHECK_OK(nf_drum_render(bands[q].c, 77 + s, RATE, N, a));
                double fr = band_fraction(a, N, bands[q].lo, bands[q].hi);
                if (fr >= bands[q].min_frac) good++;
                else fprintf(stderr, "note: %s seed %d: %.2f of power in %g..%g Hz\n",
                             want[bands[q].c], 77 + s, fr, bands[q].lo, bands[q].hi);
            }
            CHECK(good == 5, "%s: energy in %g..%g Hz for %d of 5 seeds", want[bands[q].c],
                  bands[q].lo, bands[q].hi, good);
        }
    }

    /* Other sample rates and a short clip still work (cut with its fade). */
    CHECK_OK(nf_drum_render(NF_DRUM_CYMBAL, 5, 8000, 4000, a));
    CHECK_OK(nf_drum_render(NF_DRUM_KICK, 5, 96000, 9600, a));
    CHECK_OK(nf_drum_render(NF_DRUM_SNARE, 5, RATE, 1, a));
    CHECK(isfinite(a[0]), "one-sample clip finite");

    /* The corpus: seeds are distinct, files as named, content equal to the render. */
    CHECK(nf_drum_corpus_hit_seed(1, 0, 0) != nf_drum_corpus_hit_seed(2, 0, 0) &&
              nf_drum_corpus_hit_seed(1, 0, 1) != nf_drum_corpus_hit_seed(1, 1, 0),
          "corpus hit seeds differ");
    {
        char dir[] = "/tmp/nf_drums_XXXXXX";
        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        char sub[600];
        snprintf(sub, sizeof sub, "%s/corpus", dir);
        const int per = 2, n = 4096;
        CHECK_OK(nf_drum_corpus_write(sub, per, 16000, n, 42));
        float *ref = malloc((size_t)NF_DRUM_NUM_CLASSES * per * n * sizeof *ref);
        int labels[NF_DRUM_NUM_CLASSES * 2];
        CHECK_OK(nf_drum_corpus_render(per, 16000, n, 42, ref, labels));
        for (int c = 0; c < NF_DRUM_NUM_CLASSES; c++)
            for (int i = 0; i < per; i++) {
                char p[700];
                snprintf(p, sizeof p, "%s/%s/%s_%03d.wav", sub, want[c], want[c], i);
                nf_audio au = {0};
                nf_status st = nf_audio_read(p, 0, &au);
                CHECK(st == NF_OK, "read %s: %s", p, nf_last_error());
                if (st) continue;
                CHECK(au.channels == 1 && au.frames == n && au.rate == 16000, "%s shape", p);
                double md = 0.0;
                const float *r = ref + (size_t)(c * per + i) * n;
                for (int t = 0; t < n && t < au.frames; t++) md = fmax(md, fabs(au.data[t] - r[t]));
                /* 16-bit PCM: within one quantisation step. */
                CHECK(md <= 1.0 / 32768 + 1e-6, "%s: max diff %.3g from the render", p, md);
                CHECK(labels[c * per + i] == c, "label");
                nf_audio_free(&au);
            }
        free(ref);
        CHECK(rm_tree_corpus(sub, per) == 0, "clean up");
        rmdir(dir);
        /* An unwritable place fails with a message. */
        CHECK(nf_drum_corpus_write("/proc/nf_no_such/corpus", 1, 16000, 256, 1) == NF_ERR_IO,
              "unwritable folder refused");
    }
    free(a);
    free(b);
    return nf_test_done();
}
