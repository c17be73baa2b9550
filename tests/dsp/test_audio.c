/* Audio files in and out, metadata, conversions, resampling and bad input. */
#include "nf_audio.h"
#include "nf_test.h"

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/nf_test_audioXXXXXX";

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* A test signal that uses the whole range: sine + a deterministic pseudo-random part. */
static void fill(nf_audio *a)
{
    unsigned s = 12345;
    for (int c = 0; c < a->channels; c++)
        for (int f = 0; f < a->frames; f++) {
            s = s * 1103515245u + 12345u;
            float r = ((s >> 9) & 0xffff) / 65535.0f - 0.5f;
            a->data[(size_t)c * a->frames + f] =
                0.6f * sinf(2 * (float)M_PI * 440.0f * (c + 1) * f / a->rate) + 0.5f * r;
        }
}

static double max_diff(const nf_audio *a, const nf_audio *b)
{
    double m = 0;
    for (size_t i = 0; i < (size_t)a->channels * a->frames; i++) {
        double d = fabs((double)a->data[i] - b->data[i]);
        if (d > m) m = d;
    }
    return m;
}

static void write_raw(const char *p, const void *d, size_t n);

static void test_round_trips(void)
{
    nf_audio a;
    CHECK_OK(nf_audio_alloc(&a, 2, 3001, 44100));
    fill(&a);
    const char *comment =
        "{\"model\":\"0123456789abcdef\",\"seed\":42,\"steps\":25,\"sampler\":\"dpmpp\","
        "\"note\":\"utf-8 \xc3\xa9 and \\\"quotes\\\"\"}";
    struct {
        const char *name;
        nf_file_format fmt;
        nf_sample_format bits;
        /* One quantisation step: libsndfile writes round(x * (2^(b-1) - 1)) but reads
         * back n / 2^(b-1), so the error near full scale approaches one step. */
        double tol;
    } cases[] = {
        {"w16.wav", NF_FILE_AUTO, NF_SAMPLE_PCM16, 1.0 / 32768 + 1e-7},
        {"w24.wav", NF_FILE_WAV, NF_SAMPLE_PCM24, 1.0 / 8388608 + 1e-7},
        {"w32.wav", NF_FILE_AUTO, NF_SAMPLE_FLOAT32, 0},
        {"f16.flac", NF_FILE_AUTO, NF_SAMPLE_PCM16, 1.0 / 32768 + 1e-7},
        {"f24.flac", NF_FILE_FLAC, NF_SAMPLE_PCM24, 1.0 / 8388608 + 1e-7},
        {"a16.aiff", NF_FILE_AUTO, NF_SAMPLE_PCM16, 1.0 / 32768 + 1e-7},
        {"a32.aif", NF_FILE_AIFF, NF_SAMPLE_FLOAT32, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[512];
        path_of(p, sizeof p, cases[i].name);
        CHECK_OK(nf_audio_write(p, &a, cases[i].fmt, cases[i].bits, comment));
        nf_audio b;
        CHECK_OK(nf_audio_read(p, 0, &b));
        CHECK(b.channels == 2 && b.frames == 3001 && b.rate == 44100, "%s: shape %d x %d @ %d",
              cases[i].name, b.channels, b.frames, b.rate);
        if (b.data && b.frames == a.frames && b.channels == a.channels) {
            double d = max_diff(&a, &b);
            CHECK(d <= cases[i].tol, "%s: max error %g > %g", cases[i].name, d, cases[i].tol);
        }
        nf_audio_free(&b);
        char *got = NULL;
        CHECK_OK(nf_audio_read_comment(p, &got));
        CHECK(got && strcmp(got, comment) == 0, "%s: comment round trip: got [%s]", cases[i].name,
              got ? got : "(none)");
        free(got);
        /* The atomic write leaves no temporary behind. */
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp%ld", p, (long)getpid());
        CHECK(access(tmp, F_OK) != 0, "%s: temporary file left behind", tmp);
    }
    /* Max-seconds: only the start is decoded. */
    char p[512];
    path_of(p, sizeof p, "w32.wav");
    nf_audio b;
    CHECK_OK(nf_audio_read(p, 0.01, &b));
    CHECK(b.frames == 441, "max_seconds 0.01 at 44.1 kHz: %d frames", b.frames);
    if (b.frames == 441) CHECK(b.data[440] == a.data[440] && b.data[441 + 100] == a.data[3001 + 100], "%s", "planar layout after a partial read");
    nf_audio_free(&b);

    /* A long comment (a full settings JSON) survives too. */
    char *big = malloc(6001);
    for (int i = 0; i < 6000; i++) big[i] = (char)('a' + i % 26);
    big[6000] = 0;
    static const char *bigs[] = {"big.wav", "big.flac", "big.aiff"};
    for (int k = 0; k < 3; k++) {
        path_of(p, sizeof p, bigs[k]);
        CHECK_OK(nf_audio_write(p, &a, NF_FILE_AUTO, NF_SAMPLE_PCM16, big));
        char *got = NULL;
        CHECK_OK(nf_audio_read_comment(p, &got));
        CHECK(got && strcmp(got, big) == 0, "%s: 6000-byte comment round trip (got %zu bytes)", p,
              got ? strlen(got) : 0);
        free(got);
    }
    free(big);
    /* No comment -> NULL. */
    path_of(p, sizeof p, "plain.wav");
    CHECK_OK(nf_audio_write(p, &a, NF_FILE_AUTO, NF_SAMPLE_PCM16, NULL));
    char *got = (char *)1;
    CHECK_OK(nf_audio_read_comment(p, &got));
    CHECK(got == NULL, "%s", "no comment gives NULL");
    /* A comment chunk whose size is damaged to gigabytes (found by fuzzing: a 573-byte
     * file made the reader allocate 3.3 GB) is refused, nothing allocated for it. */
    {
        path_of(p, sizeof p, "big.wav");
        void *wb;
        size_t wn;
        CHECK_OK(nf_read_file(p, &wb, &wn));
        unsigned char *w = wb;
        size_t at = 12;
        while (at + 8 <= wn && memcmp(w + at, "nfmd", 4) != 0) at++;
        CHECK(at + 8 <= wn, "%s", "big.wav has its comment chunk");
        if (at + 8 <= wn) {
            /* The chunk moved to the end of the file (after "data", as in the file found)
             * and its size damaged to 0xc5ffc7ff. */
            uint32_t cl = (uint32_t)w[at + 4] | (uint32_t)w[at + 5] << 8 | (uint32_t)w[at + 6] << 16 |
                          (uint32_t)w[at + 7] << 24;
            size_t cn = 8 + cl + (cl & 1);
            unsigned char *m = malloc(wn);
            memcpy(m, w, at);
            memcpy(m + at, w + at + cn, wn - at - cn);
            memcpy(m + wn - cn, w + at, cn);
            static const unsigned char huge[4] = {0xff, 0xc7, 0xff, 0xc5};
            memcpy(m + wn - cn + 4, huge, 4);
            path_of(p, sizeof p, "comment_huge.wav");
            write_raw(p, m, wn);
            free(m);
            got = NULL;
            nf_status cs = nf_audio_read_comment(p, &got);
            CHECK(cs == NF_ERR_CORRUPT && got == NULL && strstr(nf_last_error(), "'nfmd' chunk claims 3321874431 bytes"),
                  "damaged comment chunk: %s", cs ? nf_last_error() : "accepted");
        }
        free(wb);
    }

    /* FLAC float is refused with a message that says why. */
    path_of(p, sizeof p, "bad.flac");
    nf_status s = nf_audio_write(p, &a, NF_FILE_AUTO, NF_SAMPLE_FLOAT32, NULL);
    CHECK(s == NF_ERR_ARG && strstr(nf_last_error(), "FLAC") && strstr(nf_last_error(), "16- or 24-bit"),
          "FLAC float refused: %s", nf_last_error());
    CHECK(access(p, F_OK) != 0, "%s", "nothing written for a refused format");
    /* Unknown extension. */
    path_of(p, sizeof p, "x.mp3");
    s = nf_audio_write(p, &a, NF_FILE_AUTO, NF_SAMPLE_PCM16, NULL);
    CHECK(s == NF_ERR_ARG && strstr(nf_last_error(), p), "unknown extension: %s", nf_last_error());
    /* NaN refused on write. */
    a.data[7] = NAN;
    path_of(p, sizeof p, "nan.wav");
    s = nf_audio_write(p, &a, NF_FILE_AUTO, NF_SAMPLE_FLOAT32, NULL);
    CHECK(s == NF_ERR_NUMERIC && strstr(nf_last_error(), p), "NaN write refused: %s", nf_last_error());
    /* Integer formats clip instead of wrapping. */
    a.data[7] = 3.0f;
    a.data[8] = -3.0f;
    path_of(p, sizeof p, "clip.wav");
    CHECK_OK(nf_audio_write(p, &a, NF_FILE_AUTO, NF_SAMPLE_PCM16, NULL));
    CHECK_OK(nf_audio_read(p, 0, &b));
    if (b.data) CHECK(b.data[7] > 0.999f && b.data[8] < -0.999f, "clipped, not wrapped: %g %g", b.data[7], b.data[8]);
    nf_audio_free(&b);
    nf_audio_free(&a);
    nf_audio_free(&a); /* twice is safe */
}

/* Least-squares fit of a sin + b cos at `hz` over x[i0..i1): amplitude, phase and the
 * residual's RMS relative to the fitted sine's RMS. */
static void fit_sine(const float *x, int i0, int i1, double hz, double rate, double *amp,
                     double *phase, double *rel_err)
{
    double ss = 0, cc = 0, sc = 0, xs = 0, xc = 0;
    for (int i = i0; i < i1; i++) {
        double s = sin(2 * M_PI * hz * i / rate), c = cos(2 * M_PI * hz * i / rate);
        ss += s * s;
        cc += c * c;
        sc += s * c;
        xs += x[i] * s;
        xc += x[i] * c;
    }
    double det = ss * cc - sc * sc;
    double a = (xs * cc - xc * sc) / det, b = (xc * ss - xs * sc) / det;
    double e = 0;
    for (int i = i0; i < i1; i++) {
        double r = x[i] - a * sin(2 * M_PI * hz * i / rate) - b * cos(2 * M_PI * hz * i / rate);
        e += r * r;
    }
    *amp = hypot(a, b);
    *phase = atan2(b, a);
    *rel_err = sqrt(e / (i1 - i0)) / (*amp / sqrt(2.0));
}

static void test_resample(void)
{
    for (int q = NF_RESAMPLE_BEST; q <= NF_RESAMPLE_MEDIUM; q++) {
        nf_audio a;
        CHECK_OK(nf_audio_alloc(&a, 1, 44100, 44100));
        for (int i = 0; i < a.frames; i++) a.data[i] = 0.5f * sinf(2 * (float)M_PI * 1000.0f * i / 44100.0f);
        CHECK_OK(nf_audio_resample(&a, 22050, (nf_resample_quality)q));
        CHECK(a.frames == 22050 && a.rate == 22050, "44.1k -> 22.05k: %d frames", a.frames);
        CHECK_OK(nf_audio_resample(&a, 48000, (nf_resample_quality)q));
        CHECK(a.frames == 48000 && a.rate == 48000, "22.05k -> 48k: %d frames", a.frames);
        double amp, ph, err;
        /* Skip 100 ms at each end: the filters' edge transients. */
        fit_sine(a.data, 4800, 48000 - 4800, 1000.0, 48000, &amp, &ph, &err);
        double err_db = 20 * log10(err);
        printf("resample quality %d: amplitude %.6f, phase %.2e rad, error %.1f dB\n", q, amp, ph, err_db);
        CHECK(err_db < -60, "quality %d: error %.1f dB relative to the signal", q, err_db);
        CHECK_CLOSE(amp, 0.5, 0, 1e-3, "amplitude after resampling");
        CHECK(fabs(ph) < 0.01, "time-aligned: phase %g rad", ph);
        nf_audio_free(&a);
    }
    CHECK(nf_resample_quality_from_name("linear") == NF_RESAMPLE_LINEAR, "%s", "quality names");
    CHECK(nf_resample_quality_from_name("nope") == -1, "%s", "unknown quality name");
}

static void test_conversions(void)
{
    nf_audio a;
    CHECK_OK(nf_audio_alloc(&a, 1, 10, 1000));
    for (int i = 0; i < 10; i++) a.data[i] = (float)i / 10;
    CHECK_OK(nf_audio_to_channels(&a, 2));
    CHECK(a.channels == 2 && a.data[10 + 3] == 0.3f && a.data[3] == 0.3f, "%s", "mono -> stereo duplicates");
    a.data[10 + 3] = 0.5f;
    CHECK_OK(nf_audio_to_channels(&a, 1));
    CHECK(a.channels == 1 && fabsf(a.data[3] - 0.4f) < 1e-7f, "stereo -> mono is the mean: %g", a.data[3]);
    nf_audio_free(&a);

    /* 5 channels -> stereo: even channels left, odd right. */
    CHECK_OK(nf_audio_alloc(&a, 5, 4, 1000));
    for (int c = 0; c < 5; c++)
        for (int f = 0; f < 4; f++) a.data[c * 4 + f] = (float)(c + 1);
    CHECK_OK(nf_audio_to_channels(&a, 2));
    CHECK(fabsf(a.data[0] - 3.0f) < 1e-6f && fabsf(a.data[4] - 3.0f) < 1e-6f,
          "5 -> 2: L = mean(1,3,5) = 3, R = mean(2,4) = 3: %g %g", a.data[0], a.data[4]);
    CHECK(nf_audio_to_channels(&a, 6) == NF_ERR_ARG, "%s", "2 -> 6 refused");
    nf_audio_free(&a);

    /* Crop with a fade-out at the end only; the start is untouched. */
    CHECK_OK(nf_audio_alloc(&a, 2, 100, 1000));
    for (int i = 0; i < 200; i++) a.data[i] = 1.0f;
    CHECK_OK(nf_audio_fit_length(&a, 50, 10));
    CHECK(a.frames == 50, "%s", "cropped");
    CHECK(a.data[0] == 1.0f && a.data[39] == 1.0f && a.data[50] == 1.0f, "%s", "no fade-in, no fade before the last 10");
    CHECK(a.data[40] < 1.0f && a.data[49] > 0 && a.data[49] < 0.05f && a.data[99] == a.data[49],
          "fade-out over the last 10 frames of both channels: %g %g", a.data[40], a.data[49]);
    int mono = 1;
    for (int i = 40; i < 49; i++) mono &= a.data[i + 1] < a.data[i];
    CHECK(mono, "%s", "fade decreasing");
    /* Pad: silence after, no fade. */
    CHECK_OK(nf_audio_fit_length(&a, 80, 10));
    CHECK(a.frames == 80 && a.data[79] == 0 && a.data[0] == 1.0f && a.data[80] == 1.0f, "%s", "padded with zeros");
    nf_audio_free(&a);

    /* Normalisation and trimming. */
    CHECK_OK(nf_audio_alloc(&a, 1, 1000, 1000));
    for (int i = 300; i < 1000; i++) a.data[i] = 0.25f * sinf(0.1f * i);
    a.data[100] = 0.0005f; /* -66 dBFS: below a -60 dB threshold */
    a.data[299] = 0.01f;   /* -40 dBFS */
    int cut = nf_audio_trim_leading_silence(&a, -60);
    CHECK(cut == 299 && a.frames == 701 && a.data[0] == 0.01f, "trim at -60 dBFS removed %d", cut);
    float g = nf_audio_peak_normalize(&a, 1.0f);
    CHECK_CLOSE(nf_audio_peak(&a), 1.0, 1e-6, 0, "peak after normalising");
    CHECK(g > 3.9f && g < 4.1f, "gain %g", g);
    nf_audio_rms_normalize(&a, 0.1f);
    CHECK_CLOSE(nf_audio_rms(&a), 0.1, 1e-6, 0, "rms after normalising");
    nf_audio_free(&a);
    CHECK_OK(nf_audio_alloc(&a, 1, 10, 1000));
    CHECK(nf_audio_peak_normalize(&a, 1.0f) == 1.0f && nf_audio_trim_leading_silence(&a, -60) == 0 && a.frames == 10,
          "%s", "silence left alone");
    nf_audio_free(&a);
}

static void write_raw(const char *p, const void *d, size_t n)
{
    FILE *f = fopen(p, "wb");
    if (n) fwrite(d, 1, n, f);
    fclose(f);
}

/* A read that must fail with `want`, and a message naming the file and saying `why`. */
static void expect_fail(const char *p, nf_status want, const char *why)
{
    nf_audio a;
    nf_status s = nf_audio_read(p, 0, &a);
    CHECK(s == want, "%s: status %d (%s), want %d", p, s, nf_last_error(), want);
    CHECK(strstr(nf_last_error(), p) != NULL, "message names the file: %s", nf_last_error());
    CHECK(strstr(nf_last_error(), why) != NULL, "message says '%s': %s", why, nf_last_error());
    CHECK(strchr(nf_last_error(), '\n') == NULL, "%s", "one line");
    CHECK(a.data == NULL, "%s", "nothing left allocated");
    printf("  %s\n", nf_last_error());
}

/* expect_fail for a file that once hung libsndfile: refused at once, not after minutes. */
static void expect_fail_fast(const char *p, nf_status want, const char *why)
{
    double t0 = nf_now();
    expect_fail(p, want, why);
    CHECK(nf_now() - t0 < 5.0, "refusing %s took %.1f s", p, nf_now() - t0);
}

static void test_bad_input(void)
{
    char p[512], q[512];
    nf_audio a;
    CHECK_OK(nf_audio_alloc(&a, 1, 20000, 44100));
    fill(&a);
    path_of(p, sizeof p, "good.wav");
    CHECK_OK(nf_audio_write(p, &a, NF_FILE_AUTO, NF_SAMPLE_PCM16, NULL));
    nf_audio_free(&a);
    void *buf;
    size_t n;
    CHECK_OK(nf_read_file(p, &buf, &n));

    /* A LIST (metadata) entry whose size runs past its chunk: libsndfile 1.2.0 spends
     * minutes on it (found by fuzzing, tests/fuzz/corpus/audio/list-entry-overrun.wav);
     * it must be refused at once, and a well-formed LIST must still load. */
    {
        static const unsigned char list_bad[] = {'L', 'I', 'S', 'T', 26, 0, 0, 0, 'I', 'N', 'F', 'O',
                                                 'I', 'C', 0xb3, 0xab, 0xf3, 0xff, 0xff, 0xff,
                                                 'x', 'y', 'z', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        static const unsigned char list_ok[] = {'L', 'I', 'S', 'T', 28, 0, 0, 0, 'I', 'N', 'F', 'O',
                                                'I', 'C', 'M', 'T', 6, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 0,
                                                'I', 'S', 'F', 'T', 2, 0, 0, 0, 'x', 0};
        for (int bad = 0; bad <= 1; bad++) {
            /* good.wav with the LIST chunk inserted after "fmt " (before "data"). */
            size_t at = 12;
            while (at + 8 < n && memcmp((unsigned char *)buf + at, "data", 4) != 0) at++;
            const unsigned char *l = bad ? list_bad : list_ok;
            size_t ln = bad ? sizeof list_bad : sizeof list_ok;
            unsigned char *d = malloc(n + ln);
            memcpy(d, buf, at);
            memcpy(d + at, l, ln);
            memcpy(d + at + ln, (unsigned char *)buf + at, n - at);
            uint32_t riff = (uint32_t)(n + ln - 8);
            memcpy(d + 4, &riff, 4); /* little-endian host (x86) */
            path_of(q, sizeof q, bad ? "list_bad.wav" : "list_ok.wav");
            write_raw(q, d, n + ln);
            if (bad) {
                expect_fail_fast(q, NF_ERR_CORRUPT, "LIST entry 'IC\\xb3\\xab' claims 4294967283 bytes");
                /* The same file cut off just after that entry's header (the LIST itself
                 * then runs past the end of the file; found by fuzzing too). */
                path_of(q, sizeof q, "list_bad_cut.wav");
                write_raw(q, d, at + 20);
                expect_fail_fast(q, NF_ERR_CORRUPT, "LIST entry 'IC\\xb3\\xab' claims 4294967283 bytes");
                /* And with the LIST's own size damaged to gigabytes (found by fuzzing:
                 * such a LIST used to be skipped by this check, and sf_open never
                 * returned). */
                static const unsigned char huge[4] = {'L', 'I', 'S', 'T'}; /* 0x5453494c */
                memcpy(d + at + 4, huge, 4);
                path_of(q, sizeof q, "list_bad_huge.wav");
                write_raw(q, d, n + ln);
                expect_fail_fast(q, NF_ERR_CORRUPT, "LIST entry 'IC\\xb3\\xab' claims 4294967283 bytes");
            } else {
                nf_audio g;
                nf_status st = nf_audio_read(q, 0, &g);
                CHECK(st == NF_OK && g.frames == 20000, "a WAV with a well-formed LIST chunk: %s",
                      st ? nf_last_error() : "wrong length");
                nf_audio_free(&g);
                /* The same LIST at the very end of the file (ending exactly there) loads. */
                unsigned char *e = malloc(n + ln);
                memcpy(e, buf, n);
                memcpy(e + n, l, ln);
                memcpy(e + 4, &riff, 4);
                path_of(q, sizeof q, "list_ok_end.wav");
                write_raw(q, e, n + ln);
                st = nf_audio_read(q, 0, &g);
                CHECK(st == NF_OK && g.frames == 20000, "a WAV ending with a well-formed LIST chunk: %s",
                      st ? nf_last_error() : "wrong length");
                nf_audio_free(&g);
                free(e);
                /* A LIST of an unknown type whose own size runs past the end of the file,
                 * its entries fitting the size it declares (found by fuzzing,
                 * tests/fuzz/corpus/audio/list-past-end.wav: libsndfile's sf_open never
                 * returned). */
                static const unsigned char junk[8] = {0x3e, 0x00, 0x78, 0x58, 'w', 0x82, 'l', 0x7f};
                memcpy(d + at + 4, junk, 8); /* size 0x5878003e, type "w\x82l\x7f" */
                path_of(q, sizeof q, "list_past_end.wav");
                write_raw(q, d, n + ln);
                expect_fail_fast(q, NF_ERR_CORRUPT, "LIST chunk claims 1484259390 bytes");
                /* The file fuzzing found, as it is (82 bytes; without the check above,
                 * libsndfile 1.2.0's sf_open does not return). */
                static const unsigned char found[] = {
                    0x52, 0x49, 0x46, 0x46, 0x02, 0x00, 0x04, 0x00, 0x57, 0x41, 0x56, 0x45,
                    0x66, 0x6d, 0x74, 0x20, 0x10, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x01,
                    0x44, 0xac, 0x00, 0x00, 0x98, 0x09, 0x04, 0x00, 0x06, 0x00, 0x18, 0x00,
                    0x4c, 0x49, 0x53, 0x54, 0x3e, 0x00, 0x78, 0x58, 0x77, 0x82, 0x6c, 0x7f,
                    0x00, 0x00, 0x00, 0x00, 0x49, 0x4e, 0x46, 0x4f, 0x49, 0x43, 0xb3, 0xab,
                    0xf3, 0xff, 0xff, 0xff, 0x65, 0x65, 0x66, 0x22, 0x3a, 0x31, 0x97, 0x4c,
                    0x00, 0x03, 0x8c, 0x00, 0x19, 0x78, 0x00, 0xf2, 0xb4, 0x00,
                };
                path_of(q, sizeof q, "list_past_end_found.wav");
                write_raw(q, found, sizeof found);
                expect_fail_fast(q, NF_ERR_CORRUPT, "LIST chunk claims 1484259390 bytes, only 38 are left in the file");
            }
            free(d);
        }
    }

    /* Truncated in the middle of the samples: the header promises more than is there. */
    path_of(q, sizeof q, "trunc.wav");
    write_raw(q, buf, n / 2);
    expect_fail(q, NF_ERR_CORRUPT, "truncated");
    /* A streaming writer's WAV (sizes 0xFFFFFFFF: "unknown") is not truncated. */
    path_of(q, sizeof q, "stream.wav");
    {
        unsigned char *d = malloc(n);
        memcpy(d, buf, n);
        memset(d + 4, 0xff, 4);      /* RIFF size */
        size_t at = 12;
        while (at + 8 < n && memcmp(d + at, "data", 4) != 0) at++;
        CHECK(at + 8 < n, "%s", "data chunk found");
        memset(d + at + 4, 0xff, 4); /* data size */
        write_raw(q, d, n);
        free(d);
        nf_audio b;
        CHECK_OK(nf_audio_read(q, 0, &b));
        CHECK(b.frames == 20000, "streamed WAV: %d frames", b.frames);
        nf_audio_free(&b);
    }
    /* Truncated inside the header. */
    path_of(q, sizeof q, "trunc_header.wav");
    write_raw(q, buf, 30);
    {
        nf_audio b;
        nf_status s = nf_audio_read(q, 0, &b);
        CHECK(s == NF_ERR_CORRUPT || s == NF_ERR_FORMAT, "%s: %s", q, nf_last_error());
        CHECK(strstr(nf_last_error(), q) != NULL, "names the file: %s", nf_last_error());
        printf("  %s\n", nf_last_error());
    }
    free(buf);

    path_of(q, sizeof q, "text.wav");
    write_raw(q, "this is not a sound file, just some text\n", 41);
    expect_fail(q, NF_ERR_FORMAT, "not audio");

    path_of(q, sizeof q, "empty.wav");
    write_raw(q, "", 0);
    expect_fail(q, NF_ERR_EMPTY, "empty");

    /* Unreadable: tests run as root, and chmod 000 does not stop root, so use a folder
     * named x.wav and a dangling symbolic link instead. */
    path_of(q, sizeof q, "folder.wav");
    mkdir(q, 0755);
    expect_fail(q, NF_ERR_IO, "directory");
    path_of(q, sizeof q, "dangling.wav");
    CHECK(symlink("/nonexistent/nowhere.wav", q) == 0, "%s", "symlink");
    expect_fail(q, NF_ERR_IO, "dangling");
    if (geteuid() != 0) { /* where chmod does work, check it too */
        path_of(q, sizeof q, "noperm.wav");
        write_raw(q, "RIFF", 4);
        chmod(q, 0);
        expect_fail(q, NF_ERR_IO, "unreadable");
    }

    path_of(q, sizeof q, "does-not-exist.wav");
    expect_fail(q, NF_ERR_IO, "missing");

    /* A valid header with no frames. */
    CHECK_OK(nf_audio_alloc(&a, 1, 1, 8000));
    a.frames = 0;
    path_of(q, sizeof q, "zero.wav");
    {
        SF_INFO info = {.samplerate = 8000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16};
        SNDFILE *sf = sf_open(q, SFM_WRITE, &info);
        sf_close(sf);
    }
    nf_audio_free(&a);
    expect_fail(q, NF_ERR_EMPTY, "no audio frames");

    /* NaN in a float file. */
    CHECK_OK(nf_audio_alloc(&a, 1, 100, 8000));
    path_of(q, sizeof q, "nan.wav");
    {
        SF_INFO info = {.samplerate = 8000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
        SNDFILE *sf = sf_open(q, SFM_WRITE, &info);
        a.data[50] = NAN;
        sf_writef_float(sf, a.data, 100);
        sf_close(sf);
    }
    nf_audio_free(&a);
    expect_fail(q, NF_ERR_NUMERIC, "NaN");

    /* A float sample near FLT_MAX (what fuzzing found: resampled, it became Inf, then NaN
     * in the clip) is refused as damage; a loud but sane float file still loads. */
    CHECK_OK(nf_audio_alloc(&a, 1, 100, 8000));
    for (int f = 0; f < 100; f++) a.data[f] = 0.25f * (float)sin(0.3 * f);
    path_of(q, sizeof q, "huge.wav");
    a.data[40] = 3.39e38f;
    CHECK_OK(nf_audio_write(q, &a, NF_FILE_AUTO, NF_SAMPLE_FLOAT32, NULL));
    expect_fail(q, NF_ERR_NUMERIC, "far beyond any audio level");
    path_of(q, sizeof q, "loud.wav");
    a.data[40] = -NF_AUDIO_MAX_LEVEL; /* the limit itself is allowed */
    a.data[41] = 32767.0f;            /* a float file written in 16-bit units */
    CHECK_OK(nf_audio_write(q, &a, NF_FILE_AUTO, NF_SAMPLE_FLOAT32, NULL));
    nf_audio_free(&a);
    CHECK_OK(nf_audio_read(q, 0, &a));
    CHECK(a.frames == 100 && a.data[40] == -NF_AUDIO_MAX_LEVEL && a.data[41] == 32767.0f, "%s",
          "a loud float file loads as it is");
    CHECK_OK(nf_audio_resample(&a, 44100, NF_RESAMPLE_FASTEST));
    CHECK_OK(nf_audio_check_finite(&a, "resampled loud.wav"));
    nf_audio_free(&a);

    /* An 8-channel file works, and downmixes to mono as the mean. */
    CHECK_OK(nf_audio_alloc(&a, 8, 500, 48000));
    for (int c = 0; c < 8; c++)
        for (int f = 0; f < 500; f++) a.data[c * 500 + f] = 0.1f * (float)c * (f % 2 ? 1 : -1);
    path_of(q, sizeof q, "eight.wav");
    CHECK_OK(nf_audio_write(q, &a, NF_FILE_AUTO, NF_SAMPLE_FLOAT32, NULL));
    nf_audio_free(&a);
    CHECK_OK(nf_audio_read(q, 0, &a));
    CHECK(a.channels == 8 && a.frames == 500, "8 channels read: %d x %d", a.channels, a.frames);
    if (a.channels == 8) {
        CHECK(fabsf(a.data[7 * 500 + 1] - 0.7f) < 1e-6f, "%s", "channel 7 in place");
        CHECK_OK(nf_audio_to_channels(&a, 1));
        CHECK_CLOSE(a.data[1], 0.35, 1e-6, 0, "8 -> 1 downmix (mean of 0..0.7)");
    }
    nf_audio_free(&a);

    /* OGG Vorbis (lossy): decodes to the right shape and level. */
    path_of(q, sizeof q, "tone.ogg");
    {
        SF_INFO info = {.samplerate = 44100, .channels = 1, .format = SF_FORMAT_OGG | SF_FORMAT_VORBIS};
        SNDFILE *sf = sf_open(q, SFM_WRITE, &info);
        CHECK(sf != NULL, "libsndfile writes OGG: %s", sf_strerror(NULL));
        if (sf) {
            float tone[22050];
            for (int i = 0; i < 22050; i++) tone[i] = 0.5f * sinf(2 * (float)M_PI * 440.0f * i / 44100.0f);
            sf_writef_float(sf, tone, 22050);
            sf_close(sf);
            CHECK_OK(nf_audio_read(q, 0, &a));
            CHECK(a.channels == 1 && a.frames == 22050 && a.rate == 44100, "ogg shape %d x %d", a.channels, a.frames);
            if (a.data) CHECK_CLOSE(nf_audio_rms(&a), 0.5 / sqrt(2.0), 0.01, 0, "ogg level");
            nf_audio_free(&a);
        }
    }

    /* A one-sample file works. */
    CHECK_OK(nf_audio_alloc(&a, 1, 1, 22050));
    a.data[0] = 0.5f;
    path_of(q, sizeof q, "one.flac");
    CHECK_OK(nf_audio_write(q, &a, NF_FILE_AUTO, NF_SAMPLE_PCM24, NULL));
    nf_audio_free(&a);
    CHECK_OK(nf_audio_read(q, 0, &a));
    CHECK(a.frames == 1 && fabsf(a.data[0] - 0.5f) < 1e-6f, "one sample: %d frames", a.frames);
    CHECK_OK(nf_audio_resample(&a, 44100, NF_RESAMPLE_BEST));
    CHECK(a.frames == 2, "one sample resampled x2: %d frames", a.frames);
    CHECK_OK(nf_audio_fit_length(&a, 100, 10));
    CHECK(a.frames == 100, "%s", "one sample padded");
    nf_audio_free(&a);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trips();
    test_resample();
    test_conversions();
    test_bad_input();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return nf_test_done();
}
