/* Bad corpora. (1) Poisoned data: a float WAV holding one NaN or one Inf sample is
 * refused by nf_audio_read with NF_ERR_NUMERIC naming the file, and the dataset loader
 * skips it with a warning naming it while loading the good file beside it. (2) A mixed
 * folder: good files, a corrupt one, an empty one, a truncated one, a text file, a
 * NaN one, an hour-long one (sparse), an 8-channel one, 8 kHz and 192 kHz ones. The
 * dataset must load every readable sound (the long one cut to the clip, the 8-channel
 * one downmixed, the odd rates resampled), skip exactly the broken ones with a warning
 * naming each, and do it quickly (the hour is never decoded). */
#include "corpus_util.h"
#include "nf_audio.h"
#include "nf_dataset.h"
#include "nf_checkpoint.h"
#include "nf_test.h"
#include "nf_train.h"
#include "rel_util.h"

static char warnings[16384];

static void on_warn(void *user, const char *msg)
{
    (void)user;
    size_t l = strlen(warnings);
    snprintf(warnings + l, sizeof warnings - l, "%s\n", msg);
}

/* Lines of `warnings` that mention `name`. */
static int warned(const char *name)
{
    int n = 0;
    for (const char *p = warnings; (p = strstr(p, name)); p += strlen(name)) n++;
    return n;
}

static int used(const nf_dataset *ds, const char *name)
{
    for (int i = 0; i < ds->n; i++) {
        const char *f = ds->files[ds->clip_file[i]];
        const char *b = strrchr(f, '/') ? strrchr(f, '/') + 1 : f;
        if (!strcmp(b, name)) return 1;
    }
    return 0;
}

static void check_clips(const nf_dataset *ds)
{
    size_t n = (size_t)ds->n * ds->channels * ds->length, bad = 0;
    for (size_t i = 0; i < n; i++) bad += !(isfinite(ds->audio[i]) && fabsf(ds->audio[i]) <= 1.0001f);
    CHECK(bad == 0, "%zu samples of the loaded clips are not finite or exceed the peak", bad);
}

static void poisoned(void)
{
    char dir[NF_PATH_MAX], p[NF_PATH_MAX + 32];
    rel_scratch("poison", dir, sizeof dir);
    const int FL = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    snprintf(p, sizeof p, "%s/good.wav", dir);
    CHECK(corpus_write(p, FL, 1, 22050, 4000, -1, 0) == 0, "write %s", p);
    snprintf(p, sizeof p, "%s/nan-hit.wav", dir);
    CHECK(corpus_write(p, FL, 1, 22050, 4000, 1234, NAN) == 0, "write %s", p);
    nf_audio a;
    nf_status st = nf_audio_read(p, 0, &a);
    CHECK(st == NF_ERR_NUMERIC && strstr(nf_last_error(), "nan-hit.wav"),
          "a NaN sample: status %d, message '%s'", st, nf_last_error());
    snprintf(p, sizeof p, "%s/inf-hit.wav", dir);
    CHECK(corpus_write(p, FL, 2, 22050, 4000, 3999, -INFINITY) == 0, "write %s", p);
    st = nf_audio_read(p, 0, &a);
    CHECK(st == NF_ERR_NUMERIC && strstr(nf_last_error(), "inf-hit.wav"),
          "an Inf sample: status %d, message '%s'", st, nf_last_error());

    warnings[0] = 0;
    nf_dataset_opts o;
    nf_dataset_opts_default(&o);
    o.rate = 22050;
    o.length = 2048;
    nf_dataset ds;
    memset(&ds, 0, sizeof ds);
    CHECK_OK(nf_dataset_open(dir, &o, &ds));
    CHECK(ds.n == 1 && used(&ds, "good.wav"), "poisoned folder: %d clips loaded", ds.n);
    CHECK(warned("nan-hit.wav") == 1 && warned("inf-hit.wav") == 1, "poisoned files not named once each:\n%s",
          warnings);
    CHECK(ds.total.skipped == 2, "poisoned folder: %d skipped", ds.total.skipped);
    check_clips(&ds);
    printf("# poisoned folder warnings:\n%s", warnings);
    nf_dataset_free(&ds);

    /* A folder of nothing but poison: an error naming the folder, not a crash or a model
     * of NaN. */
    snprintf(p, sizeof p, "%s/good.wav", dir);
    unlink(p);
    memset(&ds, 0, sizeof ds);
    st = nf_dataset_open(dir, &o, &ds);
    CHECK(st == NF_ERR_EMPTY && strstr(nf_last_error(), "poison"), "only poison: status %d, '%s'", st,
          nf_last_error());
    nf_dataset_free(&ds);
}

static void mixed(void)
{
    char dir[NF_PATH_MAX], p[NF_PATH_MAX + 32];
    rel_scratch("mixed", dir, sizeof dir);
#define AT(name) (snprintf(p, sizeof p, "%s/%s", dir, name), p)
    const int W16 = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    CHECK(corpus_write(AT("good1.wav"), W16, 1, 44100, 9000, -1, 0) == 0, "write");
    CHECK(corpus_write(AT("good2.flac"), SF_FORMAT_FLAC | SF_FORMAT_PCM_24, 2, 48000, 9000, -1, 0) == 0, "write");
    CHECK(corpus_write(AT("eight-channels.wav"), W16, 8, 44100, 9000, -1, 0) == 0, "write");
    CHECK(corpus_write(AT("rate-8k.wav"), W16, 1, 8000, 2000, -1, 0) == 0, "write");
    CHECK(corpus_write(AT("rate-192k.wav"), SF_FORMAT_WAV | SF_FORMAT_FLOAT, 2, 192000, 40000, -1, 0) == 0,
          "write");
    CHECK(corpus_write_long_wav(AT("an-hour.wav"), 44100, 3600.0) == 0, "write the hour");
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && sb.st_size > 300000000, "the hour-long file is %lld bytes", (long long)sb.st_size);
    CHECK(corpus_write(AT("poison.wav"), SF_FORMAT_WAV | SF_FORMAT_FLOAT, 1, 44100, 9000, 10, NAN) == 0, "write");
    CHECK(corpus_write_bytes(AT("empty.wav"), "", 0) == 0, "write");
    CHECK(corpus_write_bytes(AT("notes.txt"), "kick: 808, snare: 909\n", 22) == 0, "write");
    /* Random bytes behind a RIFF/WAVE signature. */
    unsigned char junk[3000];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)((x = x * 1664525u + 1013904223u) >> 24);
    memcpy(junk, "RIFF\xb0\x0b\0\0WAVEfmt ", 16);
    CHECK(corpus_write_bytes(AT("corrupt.wav"), junk, sizeof junk) == 0, "write");
    /* A good file cut in the middle of its data. */
    CHECK(corpus_write(AT("truncated.wav"), W16, 1, 44100, 20000, -1, 0) == 0, "write");
    CHECK(truncate(p, 44 + 10000) == 0, "truncate");
#undef AT

    warnings[0] = 0;
    nf_dataset_opts o;
    nf_dataset_opts_default(&o);
    o.rate = 22050;
    o.length = 4096;
    nf_dataset ds;
    memset(&ds, 0, sizeof ds);
    double t0 = nf_now();
    CHECK_OK(nf_dataset_open(dir, &o, &ds));
    double dt = nf_now() - t0;
    printf("# mixed folder loaded in %.2f s; warnings:\n%s", dt, warnings);
    CHECK(dt < 30, "loading the mixed folder took %.1f s (is the hour decoded whole?)", dt);
    static const char *good[] = {"good1.wav", "good2.flac", "eight-channels.wav", "rate-8k.wav", "rate-192k.wav",
                                 "an-hour.wav"};
    static const char *bad[] = {"poison.wav", "empty.wav", "notes.txt", "corrupt.wav", "truncated.wav"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        CHECK(used(&ds, good[i]), "%s was not loaded", good[i]);
        CHECK(warned(good[i]) == 0, "%s was warned about:\n%s", good[i], warnings);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(!used(&ds, bad[i]), "%s was loaded", bad[i]);
        CHECK(warned(bad[i]) >= 1, "%s is not listed among the skipped files:\n%s", bad[i], warnings);
    }
    CHECK(ds.n == 6 && ds.total.used == 6 && ds.total.skipped == 5 && ds.total.found == 11,
          "counts: %d clips, found %d used %d skipped %d", ds.n, ds.total.found, ds.total.used, ds.total.skipped);
    check_clips(&ds);
    char summary[2048];
    nf_dataset_summary_text(&ds, summary, sizeof summary);
    CHECK(strstr(summary, "5") != NULL, "summary does not count the skipped files: %s", summary);
    nf_dataset_free(&ds);

    /* Training on the same folder: it trains on the six good files and lists the five
     * others (the warnings, and the model's data summary). */
    warnings[0] = 0;
    char model[NF_PATH_MAX + 32];
    snprintf(model, sizeof model, "%s.model.safetensors", dir);
    nf_train_config c;
    nf_train_config_default(&c);
    c.data_dir = dir;
    c.output = model;
    c.preset = "tiny";
    c.sample_rate = 4000;
    c.clip_seconds = 0.064;
    c.steps = 2;
    c.batch = 2;
    c.checkpoint_every = 0;
    c.threads = 1;
    c.seed = 1;
    nf_status st = nf_train(&c);
    CHECK(st == NF_OK, "training on the mixed folder: %s", nf_last_error());
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(warned(bad[i]) >= 1, "training: %s is not listed among the skipped files:\n%s", bad[i], warnings);
    nf_checkpoint_info info;
    if (st == NF_OK && nf_checkpoint_read_info(model, &info) == NF_OK) {
        CHECK(info.desc.class_files[0] == 6, "the model says it was trained on %lld files, want 6",
              info.desc.class_files[0]);
        int listed = 0;
        for (int i = 0; i < info.desc.n_extra; i++)
            if (strstr(info.desc.extra_value[i], "5 files skipped")) listed = 1;
        CHECK(listed, "the model's metadata does not say that 5 files were skipped");
    } else {
        CHECK(0, "the trained model does not load: %s", nf_last_error());
    }
    char cmd[NF_PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'.model*", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void)
{
    nf_set_warning_handler(on_warn, NULL);
    poisoned();
    mixed();
    return nf_test_done();
}
