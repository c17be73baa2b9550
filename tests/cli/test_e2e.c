/* End to end (issue 5): make a small labelled corpus, train tiny models (waveform and
 * STFT) with the built `noisefloor` program, then check what they learned and what every
 * command writes.
 *
 * Corpus (4 kHz, 0.064 s clips: small, so that two trainings fit in the time of a CI test): "low" = decaying sines near 300 Hz, "high" = decaying
 * sines near 1500 Hz, "noise" = decaying white-noise bursts. A sound's signature is
 * measured with the project's features (nf_features.h, on the project's STFT): spectral
 * flatness separates noise from tones, the dominant frequency separates the two tones.
 *
 * Checks: the loss falls well below its start; >= 80% of conditional samples of each
 * class have that class's signature; unconditional sampling covers every class; the same
 * seed gives identical files; SIGINT + --resume gives the same loss log and the same
 * weights as an uninterrupted run; generate/vary/inpaint/extend/interpolate/render write
 * valid audio of the requested length and rate; spectrogram and info work; errors (missing
 * or corrupt model, empty dataset, unknown option, unwritable output) give one line and
 * the documented exit status. */
#include "nf_test.h"
#include "cli_run.h"

#include "nf_audio.h"
#include "nf_engine.h"
#include "nf_features.h"
#include "nf_rng.h"
#include "nf_safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RATE 4000
#define LEN 256
#define PER_CLASS 24
#define N_CLASSES 3

static const char *class_names[N_CLASSES] = {"high", "low", "noise"}; /* sorted, as the dataset scan numbers them */
static char exe[4096], work[4096];
/* Threads for training and rendering (NF_E2E_THREADS; default 1: on a shared 2-core
 * machine two spinning thread pools can slow a run down many times over). */
static char *threads = "1";
static int feat_dom = -1, feat_flat = -1;

/* ---- running the program ---- */

/* Run `noisefloor args...` (NULL-terminated) with stdout/stderr into files under work/;
 * returns the exit status (128 + signal if killed). */
static int run_v(const char *tag, char **args) { return nf_test_run_program(exe, args, work, tag); }

static int run(const char *tag, ...)
{
    va_list ap;
    va_start(ap, tag);
    int rc = nf_test_run_va(exe, work, tag, ap);
    va_end(ap);
    return rc;
}

/* A whole file as a NUL-terminated string (NULL if unreadable). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    for (size_t k; s && (k = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += k;
        if (n + 1 == cap) {
            char *t = realloc(s, cap *= 2);
            if (!t) free(s);
            s = t;
        }
    }
    fclose(f);
    if (s) s[n] = '\0';
    return s;
}

static char *stderr_of(const char *tag)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s.err", work, tag);
    char *s = slurp(p);
    return s ? s : strdup("");
}


static char *path_in(const char *fmt, ...)
{
    static char bufs[8][4200];
    static int k;
    char *b = bufs[k++ % 8];
    int n = snprintf(b, 4200, "%s/", work);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, 4200 - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

/* ---- the corpus ---- */

static void make_sound(int cls, uint64_t seed, float *x)
{
    uint64_t s = nf_stream_id("e2e-corpus", (uint64_t)cls, seed);
    double decay = 0.03 + 0.02 * nf_rand_uniform1(1, s, 0); /* time constant, s */
    double amp = 0.6 + 0.4 * nf_rand_uniform1(1, s, 1);
    if (cls == 2) {
        float noise[LEN];
        nf_randn(noise, LEN, 2, s, 0);
        for (int i = 0; i < LEN; i++) x[i] = (float)(amp * 0.3 * noise[i] * exp(-i / (decay * RATE)));
    } else {
        double f = (cls == 0 ? 1500.0 : 300.0) * (1.0 + 0.04 * (nf_rand_uniform1(1, s, 2) - 0.5));
        double ph = 2 * M_PI * nf_rand_uniform1(1, s, 3);
        for (int i = 0; i < LEN; i++) x[i] = (float)(amp * sin(2 * M_PI * f * i / RATE + ph) * exp(-i / (decay * RATE)));
    }
}

static void write_corpus(const char *dir)
{
    mkdir(dir, 0755);
    for (int c = 0; c < N_CLASSES; c++) {
        char d[4300];
        snprintf(d, sizeof d, "%s/%s", dir, class_names[c]);
        mkdir(d, 0755);
        for (int i = 0; i < PER_CLASS; i++) {
            nf_audio a;
            nf_audio_alloc(&a, 1, LEN, RATE);
            make_sound(c, (uint64_t)i, a.data);
            char p[4400];
            snprintf(p, sizeof p, "%s/%s_%02d.wav", d, class_names[c], i);
            CHECK_OK(nf_audio_write(p, &a, NF_FILE_WAV, NF_SAMPLE_PCM16, NULL));
            nf_audio_free(&a);
        }
    }
}

/* ---- signatures ---- */

/* -1: not a sound of any class (silent / broken), else the class whose signature it has. */
static int signature(nf_features *fx, const float *x, int n)
{
    float f[NF_FEAT_DIM];
    if (nf_features_compute(fx, x, n, f)) return -1;
    double peak = 0;
    for (int i = 0; i < n; i++) peak = fmax(peak, fabs(x[i]));
    if (peak < 1e-3) return -1;
    if (f[feat_flat] > -0.7f) return 2; /* flat spectrum: noise (a tone is far below) */
    double hz = exp2(f[feat_dom]);
    return hz > sqrt(300.0 * 1500.0) ? 0 : 1;
}

static int file_signature(nf_features *fx, const char *path)
{
    nf_audio a = {0};
    if (nf_audio_read(path, 0, &a)) return -1;
    int s = signature(fx, a.data, a.frames);
    nf_audio_free(&a);
    return s;
}

/* Check that a written file is audio of the expected rate, frames (0: any) and channels. */
static void check_audio(const char *path, int rate, int frames, const char *what)
{
    nf_audio a = {0};
    nf_status st = nf_audio_read(path, 0, &a);
    CHECK(st == NF_OK, "%s: %s unreadable: %s", what, path, nf_last_error());
    if (st) return;
    CHECK(a.rate == rate, "%s: rate %d, want %d", what, a.rate, rate);
    if (frames > 0) CHECK(a.frames == frames, "%s: %d frames, want %d", what, a.frames, frames);
    CHECK(nf_audio_check_finite(&a, path) == NF_OK, "%s: not finite", what);
    CHECK(nf_audio_peak(&a) > 1e-4f, "%s: silent", what);
    nf_audio_free(&a);
}

/* ---- loss logs ---- */

/* Read column `col` (0 = step, 1 = loss) of a loss CSV; returns the number of rows. */
static int read_losses(const char *csv, double *out, int max)
{
    char *s = slurp(csv);
    if (!s) return 0;
    int n = 0;
    char *line = strchr(s, '\n');
    while (line && *++line && n < max) {
        char *c = strchr(line, ',');
        if (!c) break;
        out[n++] = strtod(c + 1, NULL);
        line = strchr(line, '\n');
    }
    free(s);
    return n;
}

/* The loss log without the timing-free columns' differences: everything but nothing. The
 * logs must be equal byte for byte. */
static int files_equal(const char *a, const char *b)
{
    void *da = NULL, *db = NULL;
    size_t na = 0, nb = 0;
    if (nf_read_file(a, &da, &na) || nf_read_file(b, &db, &nb)) {
        free(da);
        free(db);
        return 0;
    }
    int eq = na == nb && !memcmp(da, db, na);
    free(da);
    free(db);
    return eq;
}

/* Two rendered files hold the same samples and the same settings (the bytes may differ:
 * libsndfile stamps a PEAK chunk with the time of writing). */
static int sounds_equal(const char *pa, const char *pb)
{
    nf_audio a = {0}, b = {0};
    char *ca = NULL, *cb = NULL;
    int eq = !nf_audio_read(pa, 0, &a) && !nf_audio_read(pb, 0, &b) && a.channels == b.channels &&
             a.frames == b.frames && a.rate == b.rate &&
             !memcmp(a.data, b.data, sizeof(float) * (size_t)a.channels * (size_t)a.frames) &&
             !nf_audio_read_comment(pa, &ca) && !nf_audio_read_comment(pb, &cb) && ca && cb;
    /* The comments differ only in nothing but the output folder: compare the seeds. */
    if (eq) {
        const char *sa = strstr(ca, "\"seed\":"), *sb = strstr(cb, "\"seed\":");
        eq = sa && sb && atoll(sa + 7) == atoll(sb + 7) && !strcmp(strstr(ca, "\"model_hash\""), strstr(cb, "\"model_hash\""));
    }
    nf_audio_free(&a);
    nf_audio_free(&b);
    free(ca);
    free(cb);
    return eq;
}

/* The tensors of two safetensors files are equal (metadata may differ in nothing that
 * matters, but compare the weights only to be explicit). */
static int tensors_equal(const char *a, const char *b)
{
    nf_st_file *fa = NULL, *fb = NULL;
    if (nf_st_open(a, &fa) || nf_st_open(b, &fb)) {
        nf_st_close(fa);
        nf_st_close(fb);
        return 0;
    }
    int eq = nf_st_count(fa) == nf_st_count(fb);
    for (int i = 0; eq && i < nf_st_count(fa); i++) {
        const nf_st_info *ia = nf_st_at(fa, i), *ib = nf_st_find(fb, ia->name);
        eq = ib && ia->end - ia->begin == ib->end - ib->begin &&
             !memcmp(nf_st_data(fa, ia), nf_st_data(fb, ib), ia->end - ia->begin);
    }
    nf_st_close(fa);
    nf_st_close(fb);
    return eq;
}

/* ---- one representation ---- */

static void train_and_check(const char *repr, const char *steps, nf_features *fx)
{
    char model[4200], tag[64], csv[4200];
    snprintf(model, sizeof model, "%s/%s.safetensors", work, repr);
    snprintf(csv, sizeof csv, "%s/%s.loss.csv", work, repr);
    snprintf(tag, sizeof tag, "train_%s", repr);
    double t0 = nf_now();
    int rc = run(tag, "train", path_in("data"), "-o", model, "--preset", "tiny", "--repr", repr, "--n-fft", "128", "--rate",
                 "4000", "--length", "0.064", "--steps", steps, "--batch", "16", "--lr", "2e-3", "--seed", "7", "--threads",
                 "2", "--checkpoint-every", "200", "--preview-every", steps, "--preview-count", "1", "--log-every", "100",
                 "--cfg-dropout", "0.3", NULL);
    char *err = stderr_of(tag);
    CHECK(rc == 0, "train %s exit %d: %s", repr, rc, err);
    free(err);
    printf("# trained %s in %.1f s\n", repr, nf_now() - t0);
    if (rc) return;

    /* The loss falls well below its start: the mean of the last 10% of the steps against
     * the mean of the first 10 steps. Not to a fixed fraction near 0: with the v-objective,
     * data that is noise-like (the noise class; the random phases of the STFT bins) has an
     * irreducible loss of about 1 at every t (for x0 ~ N(0, 1), v = sqrt(abar) eps -
     * sqrt(1 - abar) x0 is uncorrelated with x_t), so a third of the corpus keeps the mean
     * high. 0.8 of the start still needs the tones to be learnt. */
    static double loss[100000];
    int n = read_losses(csv, loss, 100000);
    CHECK(n == atoi(steps), "%s: %d loss rows, want %s", repr, n, steps);
    if (n >= 20) {
        int k = n / 10;
        double a = 0, b = 0;
        for (int i = 0; i < 10; i++) a += loss[i];
        for (int i = 0; i < k; i++) b += loss[n - 1 - i];
        a /= 10, b /= k;
        printf("# %s loss: first %.4f, last %.4f\n", repr, a, b);
        CHECK(b < 0.8 * a, "%s: loss %.4f -> %.4f did not fall well below its start", repr, a, b);
    }
    char png[4200], prev[4200];
    snprintf(png, sizeof png, "%s/%s.loss.png", work, repr);
    snprintf(prev, sizeof prev, "%s/%s_previews", work, repr);
    struct stat sb;
    CHECK(stat(png, &sb) == 0 && sb.st_size > 100, "%s: no loss curve picture", repr);
    CHECK(stat(prev, &sb) == 0 && S_ISDIR(sb.st_mode), "%s: no previews folder", repr);

    /* Conditional samples have their class's signature. */
    const int per = 10;
    for (int c = 0; c < N_CLASSES; c++) {
        char dir[4200], t[64];
        snprintf(dir, sizeof dir, "%s/gen_%s_%s", work, repr, class_names[c]);
        snprintf(t, sizeof t, "gen_%s_%s", repr, class_names[c]);
        rc = run(t, "generate", "-m", model, "--class", class_names[c], "-n", "10", "--seed", "100", "--cfg", "3", "-o",
                 dir, "--threads", threads, NULL);
        CHECK(rc == 0, "generate %s %s: exit %d", repr, class_names[c], rc);
        int good = 0, hist[N_CLASSES + 1] = {0};
        for (int k = 0; k < per; k++) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s_%d.wav", dir, class_names[c], 100 + k);
            int s = file_signature(fx, p);
            hist[s + 1]++;
            good += s == c;
        }
        printf("# %s class %s: %d/%d with its signature (none %d, high %d, low %d, noise %d)\n", repr, class_names[c],
               good, per, hist[0], hist[1], hist[2], hist[3]);
        CHECK(good >= 8, "%s: only %d/%d samples of class %s have its signature", repr, good, per, class_names[c]);
    }

    /* Unconditional sampling covers every class. */
    {
        char dir[4200], t[64];
        snprintf(dir, sizeof dir, "%s/gen_%s_any", work, repr);
        snprintf(t, sizeof t, "gen_%s_any", repr);
        rc = run(t, "generate", "-m", model, "-n", "24", "--seed", "500", "-o", dir, "--threads", threads, NULL);
        CHECK(rc == 0, "generate %s unconditional: exit %d", repr, rc);
        int hist[N_CLASSES + 1] = {0};
        for (int k = 0; k < 24; k++) {
            char p[4400];
            snprintf(p, sizeof p, "%s/any_%d.wav", dir, 500 + k);
            hist[file_signature(fx, p) + 1]++;
        }
        printf("# %s unconditional: none %d, high %d, low %d, noise %d\n", repr, hist[0], hist[1], hist[2], hist[3]);
        for (int c = 0; c < N_CLASSES; c++)
            CHECK(hist[c + 1] > 0, "%s: unconditional sampling never produced class %s", repr, class_names[c]);
    }

    /* The same seed gives identical files (different batch split, too). */
    {
        char dir[4200], t[64], a[4400], b[4400];
        snprintf(dir, sizeof dir, "%s/gen_%s_again", work, repr);
        snprintf(t, sizeof t, "gen_%s_again", repr);
        rc = run(t, "generate", "-m", model, "--class", "low", "-n", "3", "--seed", "102", "--cfg", "3", "--batch", "2",
                 "-o", dir, "--threads", threads, NULL);
        CHECK(rc == 0, "generate again: exit %d", rc);
        for (int k = 0; k < 3; k++) {
            snprintf(a, sizeof a, "%s/gen_%s_low/low_%d.wav", work, repr, 102 + k);
            snprintf(b, sizeof b, "%s/low_%d.wav", dir, 102 + k);
            CHECK(sounds_equal(a, b), "%s: seed %d rendered twice (batch 2 instead of 16) differs", repr, 102 + k);
        }
        /* ... and whatever the thread count. */
        snprintf(t, sizeof t, "gen_%s_t1", repr);
        snprintf(dir, sizeof dir, "%s/gen_%s_t1", work, repr);
        rc = run(t, "generate", "-m", model, "-n", "2", "--seed", "7", "--steps", "8", "-o", dir, "--threads", "1", NULL);
        CHECK(rc == 0, "generate 1 thread: exit %d", rc);
        snprintf(t, sizeof t, "gen_%s_t2", repr);
        snprintf(dir, sizeof dir, "%s/gen_%s_t2", work, repr);
        rc = run(t, "generate", "-m", model, "-n", "2", "--seed", "7", "--steps", "8", "-o", dir, "--threads", "2", NULL);
        CHECK(rc == 0, "generate 2 threads: exit %d", rc);
        for (int k = 0; k < 2; k++) {
            snprintf(a, sizeof a, "%s/gen_%s_t1/any_%d.wav", work, repr, 7 + k);
            snprintf(b, sizeof b, "%s/gen_%s_t2/any_%d.wav", work, repr, 7 + k);
            CHECK(sounds_equal(a, b), "%s: seed %d differs between 1 and 2 threads", repr, 7 + k);
        }
    }
}

static void check_commands(const char *model, nf_features *fx)
{
    (void)fx;
    char in[4200];
    snprintf(in, sizeof in, "%s/data/low/low_03.wav", work);
    int rc;

    /* generate at another rate and length. */
    rc = run("gen_rate", "generate", "-m", model, "--class", "noise", "-n", "2", "--rate", "16000", "--length", "0.2", "-o",
             path_in("cmd_gen"), "--bits", "16", NULL);
    CHECK(rc == 0, "generate --rate --length: exit %d", rc);
    check_audio(path_in("cmd_gen/noise_0.wav"), 16000, 3200, "generate --rate 16000 --length 0.2");
    char *meta = NULL;
    CHECK(nf_audio_read_comment(path_in("cmd_gen/noise_1.wav"), &meta) == NF_OK && meta && strstr(meta, "\"seed\":1") &&
              strstr(meta, "\"model_hash\"") && strstr(meta, "\"sampler\""),
          "generate: metadata missing: %s", meta ? meta : "(none)");
    free(meta);

    rc = run("vary", "vary", "-m", model, in, "--strength", "0.4", "-n", "2", "-o", path_in("cmd_vary"), NULL);
    CHECK(rc == 0, "vary: exit %d", rc);
    check_audio(path_in("cmd_vary/low_03_vary_0.wav"), RATE, LEN, "vary");
    check_audio(path_in("cmd_vary/low_03_vary_1.wav"), RATE, LEN, "vary");

    rc = run("inpaint", "inpaint", "-m", model, in, "--region", "0.20:0.35", "-o", path_in("cmd_inpaint"), "--rate",
             "11025", NULL);
    CHECK(rc == 0, "inpaint: exit %d", rc);
    check_audio(path_in("cmd_inpaint/low_03_inpaint_0.wav"), 11025, (int)lrint(LEN * 11025.0 / RATE), "inpaint");
    /* Outside the region the sound is kept. */
    {
        nf_audio a = {0}, b = {0};
        rc = run("inpaint2", "inpaint", "-m", model, in, "--region", "0.02s:0.04s", "-o", path_in("cmd_inpaint2"), NULL);
        CHECK(rc == 0, "inpaint seconds: exit %d", rc);
        if (!nf_audio_read(in, 0, &a) && !nf_audio_read(path_in("cmd_inpaint2/low_03_inpaint_0.wav"), 0, &b) &&
            a.frames == b.frames) {
            double pa = nf_audio_peak(&a), e = 0, r = 0;
            for (int i = 0; i < 70; i++) { /* before 0.02 s = 80 frames */
                double d = a.data[i] / pa - b.data[i];
                e += d * d;
                r += (a.data[i] / pa) * (a.data[i] / pa);
            }
            CHECK(e < 0.05 * r, "inpaint changed the kept part: error %.3g of %.3g", e, r);
        } else {
            CHECK(0, "inpaint: cannot compare");
        }
        nf_audio_free(&a);
        nf_audio_free(&b);
    }

    /* inpaint --particles (SMC): the kept part is the input exactly (32-bit float output),
     * the same seed gives the same sound at 1 and 2 threads, the setting is recorded, and
     * a sampler it cannot use or --jumps with it is a usage error (exit 2, one line). */
    {
        rc = run("inpaint_smc", "inpaint", "-m", model, in, "--region", "0.3:0.6", "--particles", "4", "--sampler", "ddpm",
                 "--steps", "20", "-n", "2", "--batch", "5", "--threads", "1", "-o", path_in("cmd_inpaint_smc"), NULL);
        CHECK(rc == 0, "inpaint --particles 4: exit %d: %s", rc, stderr_of("inpaint_smc"));
        rc = run("inpaint_smc2", "inpaint", "-m", model, in, "--region", "0.3:0.6", "--particles", "4", "--sampler", "ddpm",
                 "--steps", "20", "-n", "2", "--threads", "2", "-o", path_in("cmd_inpaint_smc2"), NULL);
        CHECK(rc == 0, "inpaint --particles 4 (2 threads): exit %d", rc);
        for (int k = 0; k < 2; k++) {
            char a1[4400], a2[4400];
            snprintf(a1, sizeof a1, "%s", path_in("cmd_inpaint_smc/low_03_inpaint_%d.wav", k));
            snprintf(a2, sizeof a2, "%s", path_in("cmd_inpaint_smc2/low_03_inpaint_%d.wav", k));
            check_audio(a1, RATE, LEN, "inpaint --particles");
            CHECK(sounds_equal(a1, a2), "inpaint --particles: seed %d differs between 1 and 2 threads (or batches)", k);
        }
        nf_audio a = {0}, b = {0};
        char *meta = NULL;
        if (!nf_audio_read(in, 0, &a) && !nf_audio_read(path_in("cmd_inpaint_smc/low_03_inpaint_1.wav"), 0, &b) &&
            a.frames == b.frames) {
            double pa = nf_audio_peak(&a), e = 0, d = 0;
            int i0 = (int)(0.3 * LEN + 0.5), i1 = (int)(0.6 * LEN + 0.5);
            for (int i = 0; i < a.frames; i++) {
                double diff = fabs(a.data[i] / pa - b.data[i]);
                if (i < i0 || i >= i1) e = fmax(e, diff);
                else d = fmax(d, diff);
            }
            CHECK(e < 1e-6, "inpaint --particles changed the kept part: max error %.3g", e);
            CHECK(d > 1e-3, "inpaint --particles did not regenerate the region (max change %.3g)", d);
        } else {
            CHECK(0, "inpaint --particles: cannot compare");
        }
        CHECK(nf_audio_read_comment(path_in("cmd_inpaint_smc/low_03_inpaint_0.wav"), &meta) == NF_OK && meta &&
                  strstr(meta, "\"particles\":4"),
              "inpaint --particles: metadata lacks the particles: %s", meta ? meta : "(none)");
        free(meta);
        nf_audio_free(&a);
        nf_audio_free(&b);
        rc = run("inpaint_smc_bad", "inpaint", "-m", model, in, "--region", "0.3:0.6", "--particles", "4", "-o",
                 path_in("cmd_inpaint_smc_bad"), NULL);
        char *err = stderr_of("inpaint_smc_bad");
        CHECK(rc == 2 && strstr(err, "--particles") && nf_test_count_lines(err) == 1,
              "inpaint --particles with DPM-Solver++: exit %d, want 2 and one line: %s", rc, err);
        free(err);
        rc = run("inpaint_smc_bad2", "inpaint", "-m", model, in, "--region", "0.3:0.6", "--particles", "4", "--sampler",
                 "ddpm", "--jumps", "2", "-o", path_in("cmd_inpaint_smc_bad"), NULL);
        err = stderr_of("inpaint_smc_bad2");
        CHECK(rc == 2 && strstr(err, "--jumps") && nf_test_count_lines(err) == 1,
              "inpaint --particles --jumps: exit %d, want 2 and one line: %s", rc, err);
        free(err);
        rc = run("extend_smc", "extend", "-m", model, in, "--seconds", "0.05", "--particles", "3", "--sampler", "ddim",
                 "--eta", "1", "--steps", "10", "-o", path_in("cmd_extend_smc"), NULL);
        CHECK(rc == 0, "extend --particles 3: exit %d: %s", rc, stderr_of("extend_smc"));
        check_audio(path_in("cmd_extend_smc/low_03_extend_0.wav"), RATE, LEN + (int)lrint(0.05 * RATE), "extend --particles");
    }

    rc = run("extend", "extend", "-m", model, in, "--seconds", "0.3", "-o", path_in("cmd_extend"), NULL);
    CHECK(rc == 0, "extend: exit %d", rc);
    check_audio(path_in("cmd_extend/low_03_extend_0.wav"), RATE, LEN + (int)lrint(0.3 * RATE), "extend");

    rc = run("interp", "interpolate", "-m", model, "--seed-a", "1", "--seed-b", "2", "-k", "4", "-o", path_in("cmd_interp"),
             NULL);
    CHECK(rc == 0, "interpolate seeds: exit %d", rc);
    for (int i = 0; i < 4; i++) check_audio(path_in("cmd_interp/interp_1_2_%d.wav", i), RATE, LEN, "interpolate seeds");
    char in2[4200];
    snprintf(in2, sizeof in2, "%s/data/high/high_05.wav", work);
    rc = run("interp2", "interpolate", "-m", model, in, in2, "-k", "3", "-o", path_in("cmd_interp"), NULL);
    CHECK(rc == 0, "interpolate sounds: exit %d", rc);
    for (int i = 0; i < 3; i++)
        check_audio(path_in("cmd_interp/low_03_to_high_05_%d.wav", i), RATE, LEN, "interpolate sounds");

    /* A job file: good lines render, a bad line is reported with its number and
     * skipped, and a second run skips the existing outputs. */
    {
        char jobs[4200];
        snprintf(jobs, sizeof jobs, "%s/jobs.txt", work);
        FILE *f = fopen(jobs, "w");
        fprintf(f, "# a job file\n"
                   "generate -m '%s' --class high -n 2 --seed 9 -o '%s/cmd_render'\n"
                   "\n"
                   "generate -m '%s' --class nosuchclass -o '%s/cmd_render'\n"
                   "noisefloor vary -m %s %s --strength 0.2 -o %s/cmd_render\n"
                   "frobnicate everything\n",
                model, work, model, work, model, in, work);
        fclose(f);
        rc = run("render", "render", jobs, NULL);
        char *err = stderr_of("render");
        CHECK(rc == 1, "render with bad lines: exit %d, want 1", rc);
        CHECK(strstr(err, "jobs.txt:4:") && strstr(err, "nosuchclass"), "render: bad line 4 not reported: %s", err);
        CHECK(strstr(err, "jobs.txt:6:") && strstr(err, "frobnicate"), "render: bad line 6 not reported: %s", err);
        free(err);
        check_audio(path_in("cmd_render/high_9.wav"), RATE, LEN, "render generate");
        check_audio(path_in("cmd_render/high_10.wav"), RATE, LEN, "render generate");
        check_audio(path_in("cmd_render/low_03_vary_0.wav"), RATE, LEN, "render vary");
        struct stat s1, s2;
        stat(path_in("cmd_render/high_9.wav"), &s1);
        rc = run("render2", "render", jobs, NULL);
        char *out = slurp(path_in("render2.out"));
        CHECK(out && strstr(out, "skipped"), "render again: existing outputs not skipped: %s", out ? out : "");
        free(out);
        stat(path_in("cmd_render/high_9.wav"), &s2);
        CHECK(s1.st_mtim.tv_sec == s2.st_mtim.tv_sec && s1.st_mtim.tv_nsec == s2.st_mtim.tv_nsec,
              "render again rewrote an existing output");
    }

    rc = run("spec", "spectrogram", in, "-o", path_in("spec.png"), NULL);
    CHECK(rc == 0, "spectrogram: exit %d", rc);
    {
        char *png = slurp(path_in("spec.png"));
        CHECK(png && !memcmp(png, "\x89PNG", 4), "spectrogram: not a PNG");
        free(png);
    }
    rc = run("info", "info", model, NULL);
    char *out = slurp(path_in("info.out"));
    CHECK(rc == 0 && out && strstr(out, "parameters") && strstr(out, "low") && strstr(out, "noise"),
          "info: exit %d: %s", rc, out ? out : "");
    free(out);
}

static void check_errors(const char *model)
{
    char *err;
    int rc;
    rc = run("err_missing", "generate", "-m", path_in("nope.safetensors"), "-o", path_in("x"), NULL);
    err = stderr_of("err_missing");
    CHECK(rc == 1 && nf_test_count_lines(err) == 1 && strstr(err, "nope.safetensors"), "missing model: exit %d: %s", rc, err);
    free(err);

    FILE *f = fopen(path_in("corrupt.safetensors"), "wb");
    fputs("\x20\x00\x00\x00\x00\x00\x00\x00{\"a\":[1,2,3 this is not a model", f);
    fclose(f);
    rc = run("err_corrupt", "generate", "-m", path_in("corrupt.safetensors"), "-o", path_in("x"), NULL);
    err = stderr_of("err_corrupt");
    CHECK(rc == 1 && nf_test_count_lines(err) == 1 && strstr(err, "corrupt.safetensors"), "corrupt model: exit %d: %s", rc, err);
    free(err);
    rc = run("err_info", "info", path_in("corrupt.safetensors"), NULL);
    CHECK(rc == 1, "info on a corrupt model: exit %d", rc);

    mkdir(path_in("empty"), 0755);
    rc = run("err_empty", "train", path_in("empty"), "-o", path_in("empty.safetensors"), "--steps", "5", NULL);
    err = stderr_of("err_empty");
    CHECK(rc == 1 && nf_test_count_lines(err) == 1 && strstr(err, "empty"), "empty dataset: exit %d: %s", rc, err);
    free(err);
    mkdir(path_in("junk"), 0755);
    f = fopen(path_in("junk/a.wav"), "w");
    fputs("not audio at all", f);
    fclose(f);
    rc = run("err_junk", "train", path_in("junk"), "-o", path_in("junk.safetensors"), "--steps", "5", NULL);
    err = stderr_of("err_junk");
    CHECK(rc == 1, "dataset with no readable audio: exit %d: %s", rc, err);
    free(err);

    rc = run("err_opt", "generate", "-m", model, "--frobnicate", "-o", path_in("x"), NULL);
    err = stderr_of("err_opt");
    CHECK(rc == 2 && strstr(err, "--frobnicate") && strstr(err, "Usage"), "unknown option: exit %d: %s", rc, err);
    free(err);
    rc = run("err_val", "generate", "-m", model, "--steps", "-4", "-o", path_in("x"), NULL);
    err = stderr_of("err_val");
    CHECK(rc == 2 && nf_test_count_lines(err) == 1 && strstr(err, "--steps"), "bad value: exit %d: %s", rc, err);
    free(err);
    rc = run("err_cmd", "frobnicate", NULL);
    CHECK(rc == 2, "unknown command: exit %d", rc);
    /* Options of the magnitude representation, where they do not apply. */
    rc = run("err_logmag", "train", path_in("x"), "-o", path_in("x.safetensors"), "--log-mag", NULL);
    err = stderr_of("err_logmag");
    CHECK(rc == 2 && nf_test_count_lines(err) == 1 && strstr(err, "--log-mag"), "--log-mag without mag: exit %d: %s", rc, err);
    free(err);
    rc = run("err_pbins", "train", path_in("x"), "-o", path_in("x.safetensors"), "--repr", "mag", "--n-fft", "64",
             "--phase-bins", "40", NULL);
    err = stderr_of("err_pbins");
    CHECK(rc == 2 && nf_test_count_lines(err) == 1 && strstr(err, "33 bins"), "too many phase bins: exit %d: %s", rc, err);
    free(err);
    rc = run("err_power_wave", "train", path_in("x"), "-o", path_in("x.safetensors"), "--power", "0.3", NULL);
    err = stderr_of("err_power_wave");
    CHECK(rc == 2 && nf_test_count_lines(err) == 1 && strstr(err, "--power"), "--power with wave: exit %d: %s", rc, err);
    free(err);
    rc = run("err_power_log", "train", path_in("x"), "-o", path_in("x.safetensors"), "--repr", "mag", "--log-mag",
             "--power", "0.3", NULL);
    err = stderr_of("err_power_log");
    CHECK(rc == 2 && nf_test_count_lines(err) == 1 && strstr(err, "--log-mag"), "--power with --log-mag: exit %d: %s", rc, err);
    free(err);

    /* An output folder that cannot be made (a file in the way; root ignores modes). */
    f = fopen(path_in("afile"), "w");
    fclose(f);
    rc = run("err_out", "generate", "-m", model, "-o", path_in("afile/sub"), NULL);
    err = stderr_of("err_out");
    CHECK(rc == 1 && nf_test_count_lines(err) == 1 && strstr(err, "afile"), "unwritable output: exit %d: %s", rc, err);
    free(err);
    /* A model output in an impossible place: the training fails with one line and leaves
     * the existing model untouched. */
    rc = run("err_train_out", "train", path_in("data"), "-o", path_in("afile/m.safetensors"), "--preset", "tiny", "--rate",
             "4000", "--length", "0.064", "--steps", "2", NULL);
    err = stderr_of("err_train_out");
    CHECK(rc == 1 && nf_test_count_lines(err) == 1, "training into an impossible path: exit %d: %s", rc, err);
    free(err);
}

/* --power reaches the model file and its decoding: a magnitude model trained with cube-root-like
 * compression records it, and renders a finite, non-silent sound with it. */
static void check_power(void)
{
    int rc = run("power_train", "train", path_in("data"), "-o", path_in("pw.safetensors"), "--preset", "tiny", "--repr",
                 "mag", "--power", "0.35", "--n-fft", "64", "--phase-bins", "2", "--rate", "4000", "--length", "0.064",
                 "--steps", "2", "--threads", threads, NULL);
    CHECK(rc == 0, "training with --power: exit %d", rc);
    rc = run("power_info", "info", path_in("pw.safetensors"), NULL);
    char *out = slurp(path_in("power_info.out"));
    CHECK(rc == 0 && out && strstr(out, "\"compress_power\":0.35"), "--power 0.35 not in the model: %s", out ? out : "");
    free(out);
    rc = run("power_gen", "generate", "-m", path_in("pw.safetensors"), "-n", "1", "--steps", "4", "-o", path_in("pw_out"),
             NULL);
    CHECK(rc == 0, "rendering a --power model: exit %d", rc);
}

/* --lead-frames reaches the model file, and inpainting maps its region onto the model's
 * frames with the lead counted in: a complex-STFT model (exactly invertible) keeps the
 * samples that only fully known frames cover, bit for bit up to rounding, even untrained.
 * Frame f covers [(f - lead) hop - n_fft/2, ...): forgetting the lead would treat frames
 * four hops (64 samples) further right as the known ones, and samples from 80 on would
 * change. Also refused with --repr wave. */
static void check_lead(void)
{
    int rc = run("lead_train", "train", path_in("data"), "-o", path_in("lead.safetensors"), "--preset", "tiny", "--repr",
                 "stft", "--n-fft", "64", "--lead-frames", "4", "--rate", "4000", "--length", "0.064", "--steps", "2",
                 "--threads", threads, NULL);
    CHECK(rc == 0, "training with --lead-frames: exit %d", rc);
    rc = run("lead_info", "info", path_in("lead.safetensors"), NULL);
    char *out = slurp(path_in("lead_info.out"));
    CHECK(rc == 0 && out && strstr(out, "\"lead_frames\":4"), "--lead-frames 4 not in the model: %s", out ? out : "");
    free(out);
    char in[4200];
    snprintf(in, sizeof in, "%s/data/low/low_03.wav", work);
    /* Region 200..240 (of 256): frames reaching into it are centred at 184 and later, so
     * samples before 152 are covered by known frames only. */
    rc = run("lead_inpaint", "inpaint", "-m", path_in("lead.safetensors"), in, "--region", "0.05s:0.06s", "--steps", "4",
             "-o", path_in("lead_inpaint"), NULL);
    CHECK(rc == 0, "inpaint with a lead-frame model: exit %d", rc);
    nf_audio a = {0}, b = {0};
    if (!nf_audio_read(in, 0, &a) && !nf_audio_read(path_in("lead_inpaint/low_03_inpaint_0.wav"), 0, &b) &&
        a.frames == b.frames && a.frames == LEN) {
        double pa = nf_audio_peak(&a), worst = 0;
        for (int i = 0; i < 150; i++) worst = fmax(worst, fabs(a.data[i] / pa - b.data[i]));
        CHECK(worst < 1e-4, "inpaint with lead frames changed a kept sample by %.3g", worst);
    } else {
        CHECK(0, "inpaint with lead frames: cannot compare");
    }
    nf_audio_free(&a);
    nf_audio_free(&b);
    /* The known positions, straight from the library: frame j (lead 4, hop 16, n_fft 64)
     * covers [16 (j - 4) - 32, 16 (j - 4) + 32) of 256 samples; with samples 200..239
     * unknown, frames 0..14 (centres up to 160) are known and 15..20 (176..256) not. */
    nf_model *m = NULL;
    CHECK_OK(nf_model_load(path_in("lead.safetensors"), &m));
    if (m) {
        int n = nf_model_positions(m), bad = 0;
        CHECK(n == 4 + 1 + LEN / 16, "positions %d, want %d", n, 4 + 1 + LEN / 16);
        float mask[LEN], mx[64];
        for (int i = 0; i < LEN; i++) mask[i] = i >= 200 && i < 240 ? 0.0f : 1.0f;
        nf_model_known_positions(m, mask, mx);
        for (int j = 0; j < n && j < 64; j++) bad += mx[j] != (j <= 14 ? 1.0f : 0.0f);
        CHECK(bad == 0, "%d frames of a lead-frame model wrongly known or unknown", bad);
        nf_model_free(m);
    }
    rc = run("err_lead_wave", "train", path_in("x"), "-o", path_in("x.safetensors"), "--lead-frames", "2", NULL);
    char *err = stderr_of("err_lead_wave");
    CHECK(rc == 2 && nf_test_count_lines(err) == 1 && strstr(err, "--lead-frames"), "--lead-frames with wave: exit %d: %s",
          rc, err);
    free(err);
}

/* Interrupt a run with SIGINT, resume it, and compare with an uninterrupted one. */
static void check_resume(void)
{
    const char *common[] = {"--preset", "tiny", "--repr", "stft", "--n-fft", "64", "--rate", "4000", "--length", "0.064",
                            "--steps", "60", "--batch", "8", "--seed", "3", "--threads", threads, "--checkpoint-every", "10",
                            "--log-every", "1", NULL};
    char *args[64];
    int n = 0;
    char a_model[4200], b_model[4200];
    snprintf(a_model, sizeof a_model, "%s/full.safetensors", work);
    snprintf(b_model, sizeof b_model, "%s/cut.safetensors", work);

    args[n++] = exe, args[n++] = "train", args[n++] = path_in("data"), args[n++] = "-o", args[n++] = a_model;
    for (int i = 0; common[i]; i++) args[n++] = (char *)common[i];
    args[n] = NULL;
    CHECK(run_v("resume_full", args) == 0, "uninterrupted run failed");

    args[4] = b_model;
    char err[4200];
    snprintf(err, sizeof err, "%s/resume_cut.err", work);
    pid_t pid = fork();
    if (pid == 0) {
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644), fo = open("/dev/null", O_WRONLY);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(exe, args);
        _exit(127);
    }
    /* Wait until ~20 steps are logged, then Ctrl-C. */
    char csv[4200];
    snprintf(csv, sizeof csv, "%s/cut.loss.csv", work);
    static double loss[1000];
    double t0 = nf_now();
    while (nf_now() - t0 < 60) {
        if (read_losses(csv, loss, 1000) >= 20) break;
        usleep(20000);
    }
    kill(pid, SIGINT);
    int status = 0;
    waitpid(pid, &status, 0);
    int rows = read_losses(csv, loss, 1000);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 130, "interrupted run: status %d", status);
    CHECK(rows >= 20 && rows < 60, "interrupted after %d steps (want between 20 and 59)", rows);
    char *e = slurp(err);
    CHECK(e && strstr(e, "resume"), "interrupted run says nothing about --resume: %s", e ? e : "");
    free(e);

    args[n++] = "--resume";
    args[n] = NULL;
    CHECK(run_v("resume_rest", args) == 0, "resumed run failed: %s", stderr_of("resume_rest"));
    char a_csv[4200];
    snprintf(a_csv, sizeof a_csv, "%s/full.loss.csv", work);
    CHECK(files_equal(a_csv, csv), "loss log of the interrupted + resumed run differs from the uninterrupted one");
    CHECK(tensors_equal(a_model, b_model), "final weights differ after interrupt + resume");
    char a_state[4200], b_state[4200];
    snprintf(a_state, sizeof a_state, "%s/full.state.safetensors", work);
    snprintf(b_state, sizeof b_state, "%s/cut.state.safetensors", work);
    CHECK(tensors_equal(a_state, b_state), "final training state differs after interrupt + resume");
}

int main(void)
{
    const char *build = getenv("NF_BUILD_ROOT");
    if (!build) {
        fprintf(stderr, "NF_BUILD_ROOT is not set (run through meson test)\n");
        return 1;
    }
    snprintf(exe, sizeof exe, "%s/cli/noisefloor", build);
    if (getenv("NF_E2E_THREADS")) threads = getenv("NF_E2E_THREADS");
    snprintf(work, sizeof work, "%s/tests/cli/e2e_work", build);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", work, work);
    if (system(cmd)) return 1;
    for (int i = 0; i < NF_FEAT_DIM; i++) {
        if (!strcmp(nf_feature_name(i), "log2_dominant_hz")) feat_dom = i;
        if (!strcmp(nf_feature_name(i), "log10_flatness")) feat_flat = i;
    }
    CHECK(feat_dom >= 0 && feat_flat >= 0, "features not found");
    nf_features *fx = NULL;
    CHECK_OK(nf_features_create(RATE, &fx));
    if (!fx) return nf_test_done();

    write_corpus(path_in("data"));
    /* The signature measure itself must recognise the corpus, or the checks below mean
     * nothing. */
    int right = 0;
    for (int c = 0; c < N_CLASSES; c++)
        for (int i = 0; i < PER_CLASS; i++) {
            float x[LEN];
            make_sound(c, (uint64_t)i, x);
            right += signature(fx, x, LEN) == c;
        }
    CHECK(right == N_CLASSES * PER_CLASS, "signature recognises only %d/%d corpus clips", right, N_CLASSES * PER_CLASS);

    const char *only = getenv("NF_E2E_ONLY"); /* for debugging one part: wave, stft, resume, power, lead */
    if (!only || !strcmp(only, "wave")) train_and_check("wave", "300", fx);
    if (!only || !strcmp(only, "stft")) train_and_check("stft", "600", fx);
    char model[4200];
    snprintf(model, sizeof model, "%s/stft.safetensors", work);
    if (!only || !strcmp(only, "stft")) check_commands(model, fx);
    if (!only || !strcmp(only, "stft")) check_errors(model);
    if (!only || !strcmp(only, "resume")) check_resume();
    if (!only || !strcmp(only, "power")) check_power();
    if (!only || !strcmp(only, "lead")) check_lead();
    nf_features_free(fx);
    return nf_test_done();
}
