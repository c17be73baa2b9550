/* Classifier guidance from the command line: `noisefloor train-classifier` and
 * `generate --classifier`, on a tiny two-class corpus ("low" = decaying sines near 300 Hz,
 * "high" = near 1500 Hz, 8 kHz, 0.1 s) and a tiny diffusion model trained for a few
 * dozen steps with the built program.
 *
 * Checks:
 * - train-classifier writes a classifier whose accuracy at moderate noise (the trainer's
 *   own figure, printed) is >= 0.9, and, independently, the saved file classifies FRESH
 *   clips (seeds not in the corpus) noised to t = T/4 with accuracy >= 0.9;
 * - a folder class the model lacks is skipped with a warning; a folder with none of the
 *   model's classes is a one-line error;
 * - generate --class high --classifier C --classifier-scale S writes valid audio, and the
 *   guidance changes the sound (same seed without the classifier differs);
 * - errors, one line naming the file, exit 1: missing classifier file; a classifier for a
 *   model of another format (length); --classifier without --class. A model that differs
 *   only in its weights (same format, classes) is accepted with a warning. */
#include "nf_test.h"
#include "cli_run.h"

#include "nf_audio.h"
#include "nf_classifier.h"
#include "nf_repr.h"
#include "nf_rng.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RATE 8000
#define LEN 800
#define PER_CLASS 16

static char exe[4096], work[4096];

static int run(const char *tag, ...)
{
    va_list ap;
    va_start(ap, tag);
    int rc = nf_test_run_va(exe, work, tag, ap);
    va_end(ap);
    return rc;
}

static char *slurp_tag(const char *tag, const char *ext) { return nf_test_read_output(work, tag, ext); }


static char *in(const char *name)
{
    static char bufs[8][4200];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 4200, "%s/%s", work, name);
    return b;
}

/* cls 0 = high (1500 Hz), 1 = low (300 Hz), the dataset's (sorted) order. */
static void make_sound(int cls, uint64_t seed, float *x)
{
    uint64_t s = nf_stream_id("clfcli-corpus", (uint64_t)cls, seed);
    double decay = 0.02 + 0.02 * nf_rand_uniform1(1, s, 0);
    double amp = 0.6 + 0.4 * nf_rand_uniform1(1, s, 1);
    double f = (cls == 0 ? 1500.0 : 300.0) * (1.0 + 0.06 * (nf_rand_uniform1(1, s, 2) - 0.5));
    double ph = 2 * M_PI * nf_rand_uniform1(1, s, 3);
    for (int i = 0; i < LEN; i++) x[i] = (float)(amp * sin(2 * M_PI * f * i / RATE + ph) * exp(-i / (decay * RATE)));
}

static void write_class(const char *dir, const char *name, int cls, int n)
{
    char d[4300];
    snprintf(d, sizeof d, "%s/%s", dir, name);
    mkdir(dir, 0755);
    mkdir(d, 0755);
    for (int i = 0; i < n; i++) {
        nf_audio a;
        CHECK_OK(nf_audio_alloc(&a, 1, LEN, RATE));
        make_sound(cls, (uint64_t)i, a.data);
        char p[4400];
        snprintf(p, sizeof p, "%s/%s_%02d.wav", d, name, i);
        CHECK_OK(nf_audio_write(p, &a, NF_FILE_WAV, NF_SAMPLE_PCM16, NULL));
        nf_audio_free(&a);
    }
}

static void check_audio(const char *path)
{
    nf_audio a = {0};
    nf_status st = nf_audio_read(path, 0, &a);
    CHECK(st == NF_OK, "%s unreadable: %s", path, nf_last_error());
    if (st) return;
    CHECK(a.rate == RATE && a.frames == LEN && a.channels == 1, "%s: %d Hz %d frames %d ch", path, a.rate, a.frames,
          a.channels);
    CHECK(nf_audio_check_finite(&a, path) == NF_OK, "%s: not finite", path);
    CHECK(nf_audio_peak(&a) > 1e-4f, "%s: silent", path);
    nf_audio_free(&a);
}

static int same_samples(const char *pa, const char *pb)
{
    nf_audio a = {0}, b = {0};
    int eq = !nf_audio_read(pa, 0, &a) && !nf_audio_read(pb, 0, &b) && a.frames == b.frames &&
             !memcmp(a.data, b.data, sizeof(float) * (size_t)a.frames * (size_t)a.channels);
    nf_audio_free(&a);
    nf_audio_free(&b);
    return eq;
}

/* One-line error, exit 1, the message containing `want`. */
static void check_error(const char *tag, int rc, const char *want)
{
    char *err = slurp_tag(tag, "err");
    CHECK(rc == 1, "%s: exit %d, want 1 (%s)", tag, rc, err);
    CHECK(nf_test_count_lines(err) == 1, "%s: %d lines of error: %s", tag, nf_test_count_lines(err), err);
    CHECK(strstr(err, want) != NULL, "%s: error does not mention '%s': %s", tag, want, err);
    free(err);
}

/* The saved classifier on fresh clips (seeds 1000+, not in the corpus), encoded with the
 * model's representation, noised to t = T/4. */
static void check_fresh_accuracy(const char *model_path, const char *clf_path)
{
    nf_model *m = NULL;
    CHECK_OK(nf_model_load(model_path, &m));
    if (!m) return;
    nf_classifier *c = NULL;
    CHECK_OK(nf_classifier_load_for_model(clf_path, m, 16, &c));
    const nf_model_desc *d = nf_model_desc_get(m);
    nf_repr_config rc;
    nf_repr_config_default(&rc, NF_REPR_WAVE, 1);
    rc.scale = d->norm_scale;
    nf_repr *r = NULL;
    CHECK_OK(nf_repr_create(&rc, &r));
    nf_schedule s;
    CHECK_OK(nf_schedule_init(&s, !strcmp(d->schedule, "linear") ? NF_SCHEDULE_LINEAR : NF_SCHEDULE_COSINE, d->T));
    enum { N = 40 };
    static float audio[N * LEN], x[N * LEN];
    int labels[N];
    for (int k = 0; k < N; k++) {
        labels[k] = k % 2;
        make_sound(labels[k], 1000 + (uint64_t)k, audio + (size_t)k * LEN);
        /* Peak-normalised, as the dataset loader does. */
        float pk = 0;
        for (int i = 0; i < LEN; i++) pk = fmaxf(pk, fabsf(audio[(size_t)k * LEN + i]));
        for (int i = 0; i < LEN; i++) audio[(size_t)k * LEN + i] /= pk;
    }
    double acc = 0;
    if (c && r) {
        CHECK_OK(nf_repr_encode(r, audio, N, LEN, x));
        CHECK_OK(nf_classifier_accuracy(c, &s, x, labels, N, LEN, d->T / 4, 99, &acc));
        printf("# fresh clips, t = T/4: accuracy %.3f\n", acc);
        CHECK(acc >= 0.9, "classifier accuracy on fresh clips at t = T/4 is %.3f (< 0.9)", acc);
    }
    nf_schedule_free(&s);
    nf_repr_free(r);
    nf_classifier_free(c);
    nf_model_free(m);
}

int main(void)
{
    const char *build = getenv("NF_BUILD_ROOT");
    if (!build) {
        fprintf(stderr, "NF_BUILD_ROOT is not set (run through meson test)\n");
        return 1;
    }
    snprintf(exe, sizeof exe, "%s/cli/noisefloor", build);
    snprintf(work, sizeof work, "%s/tests/cli/clfcli_work", build);
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", work, work);
    if (system(cmd)) return 1;

    write_class(in("data"), "high", 0, PER_CLASS);
    write_class(in("data"), "low", 1, PER_CLASS);
    /* The classifier's folder: the model's classes (other case) and one it does not know. */
    write_class(in("cdata"), "HIGH", 0, PER_CLASS);
    write_class(in("cdata"), "Low", 1, PER_CLASS);
    write_class(in("cdata"), "snare", 1, 2);
    write_class(in("other"), "snare", 1, 2);

    double t0 = nf_now();
    int rc = run("train_a", "train", in("data"), "-o", in("a.safetensors"), "--preset", "tiny", "--rate", "8000",
                 "--length", "0.1", "--steps", "30", "--batch", "8", "--threads", "2", "--seed", "1", "--quiet", NULL);
    CHECK(rc == 0, "train a: exit %d", rc);
    /* Same format and classes, other weights (fewer steps): accepted with a warning. */
    rc = run("train_c", "train", in("data"), "-o", in("c.safetensors"), "--preset", "tiny", "--rate", "8000",
             "--length", "0.1", "--steps", "2", "--batch", "8", "--threads", "2", "--seed", "1", "--quiet", NULL);
    CHECK(rc == 0, "train c: exit %d", rc);
    /* Another format (shorter clips): refused. */
    rc = run("train_b", "train", in("data"), "-o", in("b.safetensors"), "--preset", "tiny", "--rate", "8000",
             "--length", "0.05", "--steps", "2", "--batch", "8", "--threads", "2", "--seed", "1", "--quiet", NULL);
    CHECK(rc == 0, "train b: exit %d", rc);
    printf("# models trained in %.1f s\n", nf_now() - t0);

    t0 = nf_now();
    rc = run("clf", "train-classifier", in("cdata"), "-m", in("a.safetensors"), "-o", in("clf.safetensors"), "--steps",
             "150", "--batch", "16", "--lr", "2e-3", "--seed", "3", "--threads", "2", "--width", "16", NULL);
    char *out = slurp_tag("clf", "out"), *err = slurp_tag("clf", "err");
    printf("# train-classifier in %.1f s: %s", nf_now() - t0, out);
    CHECK(rc == 0, "train-classifier: exit %d: %s", rc, err);
    CHECK(strstr(err, "snare") && strstr(err, "skipped"), "no warning about the unknown class: %s", err);
    const char *a = strstr(out, "accuracy at moderate noise ");
    CHECK(a != NULL, "no accuracy in the output: %s", out);
    if (a) {
        double acc = atof(a + strlen("accuracy at moderate noise "));
        CHECK(acc >= 0.9, "trainer accuracy at moderate noise %.3f < 0.9", acc);
    }
    free(out);
    free(err);
    if (!rc) check_fresh_accuracy(in("a.safetensors"), in("clf.safetensors"));

    /* Guided generation. */
    rc = run("gen", "generate", "-m", in("a.safetensors"), "-o", in("gen"), "--class", "high", "--classifier",
             in("clf.safetensors"), "--classifier-scale", "4", "-n", "2", "--steps", "10", "--threads", "2", NULL);
    err = slurp_tag("gen", "err");
    CHECK(rc == 0, "generate --classifier: exit %d: %s", rc, err);
    free(err);
    check_audio(in("gen/high_0.wav"));
    check_audio(in("gen/high_1.wav"));
    rc = run("gen_plain", "generate", "-m", in("a.safetensors"), "-o", in("gen_plain"), "--class", "high", "-n", "1",
             "--steps", "10", "--threads", "2", NULL);
    CHECK(rc == 0, "generate: exit %d", rc);
    CHECK(!same_samples(in("gen/high_0.wav"), in("gen_plain/high_0.wav")), "classifier guidance changed nothing");

    /* Other weights, same format: a warning, and it renders. */
    rc = run("gen_c", "generate", "-m", in("c.safetensors"), "-o", in("gen_c"), "--class", "low", "--classifier",
             in("clf.safetensors"), "-n", "1", "--steps", "5", "--threads", "2", NULL);
    err = slurp_tag("gen_c", "err");
    CHECK(rc == 0, "generate with a same-format model: exit %d: %s", rc, err);
    CHECK(strstr(err, "weights") != NULL, "no warning about the weights hash: %s", err);
    free(err);
    check_audio(in("gen_c/low_0.wav"));

    /* Errors. */
    rc = run("err_missing", "generate", "-m", in("a.safetensors"), "-o", in("gen_err"), "--class", "high",
             "--classifier", in("nope.safetensors"), NULL);
    check_error("err_missing", rc, "nope.safetensors");
    rc = run("err_other", "generate", "-m", in("b.safetensors"), "-o", in("gen_err"), "--class", "high",
             "--classifier", in("clf.safetensors"), NULL);
    check_error("err_other", rc, "different model");
    rc = run("err_noclass", "generate", "-m", in("a.safetensors"), "-o", in("gen_err"), "--classifier",
             in("clf.safetensors"), NULL);
    check_error("err_noclass", rc, "--class");
    rc = run("err_nomatch", "train-classifier", in("other"), "-m", in("a.safetensors"), "-o", in("x.safetensors"),
             "--steps", "5", "--quiet", NULL);
    {
        /* The skip warning for 'snare', then the one-line error. */
        char *e = slurp_tag("err_nomatch", "err");
        CHECK(rc == 1, "train-classifier on unknown classes: exit %d", rc);
        CHECK(strstr(e, "none of the folder's classes") != NULL, "no 'none of the classes' error: %s", e);
        free(e);
    }
    rc = run("err_model", "train-classifier", in("cdata"), "-m", in("nope_model.safetensors"), "-o", in("x.safetensors"),
             "--steps", "5", NULL);
    check_error("err_model", rc, "nope_model.safetensors");
    return nf_test_done();
}
