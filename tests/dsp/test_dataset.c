/* Dataset scan and load on generated folders: classes, labels, skipped files with their
 * warnings, the summary, and the empty-folder errors. */
#include "nf_dataset.h"
#include "nf_test.h"

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/nf_test_datasetXXXXXX";

#define MAX_WARN 64
static char warnings[MAX_WARN][1024];
static int n_warnings;

static void on_warning(void *user, const char *msg)
{
    (void)user;
    if (n_warnings < MAX_WARN) snprintf(warnings[n_warnings++], sizeof warnings[0], "%s", msg);
}

/* The warning that names `name`, or NULL. */
static const char *warning_for(const char *name)
{
    for (int i = 0; i < n_warnings; i++)
        if (strstr(warnings[i], name)) return warnings[i];
    return NULL;
}

static char *p(const char *rel)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, rel);
    return buf[k];
}

/* A drum-like hit: `lead` seconds of silence, then a decaying sine of amplitude amp. */
static void hit(const char *rel, int channels, int rate, double seconds, double lead, float amp, nf_file_format fmt)
{
    nf_audio a;
    CHECK_OK(nf_audio_alloc(&a, channels, (int)(seconds * rate), rate));
    for (int c = 0; c < channels; c++)
        for (int f = (int)(lead * rate); f < a.frames; f++) {
            double t = (double)f / rate - lead;
            a.data[(size_t)c * a.frames + f] = amp * (float)(exp(-t * 20) * sin(2 * M_PI * 150 * t + 0.5));
        }
    CHECK_OK(nf_audio_write(p(rel), &a, fmt, NF_SAMPLE_PCM24, NULL));
    nf_audio_free(&a);
}

static void raw(const char *rel, const char *text)
{
    FILE *f = fopen(p(rel), "wb");
    fputs(text, f);
    fclose(f);
}

static void test_classes(void)
{
    mkdir(p("kit"), 0755);
    mkdir(p("kit/kick"), 0755);
    mkdir(p("kit/kick/more"), 0755);
    mkdir(p("kit/snare"), 0755);
    hit("kit/kick/k1.wav", 1, 44100, 0.5, 0.1, 0.5f, NF_FILE_AUTO);
    hit("kit/kick/k2.flac", 1, 22050, 0.2, 0.0, 0.9f, NF_FILE_AUTO);
    hit("kit/kick/more/k3.wav", 1, 44100, 0.1, 0.0, 0.2f, NF_FILE_AUTO);
    hit("kit/kick/k8ch.wav", 8, 44100, 0.3, 0.0, 0.3f, NF_FILE_AUTO);
    hit("kit/kick/long.wav", 1, 44100, 20.0, 0.0, 0.7f, NF_FILE_AUTO); /* only ~1.4 s decoded */
    raw("kit/kick/junk.txt", "not audio at all\n");
    raw("kit/kick/empty.wav", "");
    hit("kit/snare/s1.aiff", 1, 44100, 0.3, 0.0, 0.4f, NF_FILE_AUTO);
    hit("kit/snare/s2.wav", 2, 48000, 0.3, 0.0, 0.6f, NF_FILE_AUTO);
    {
        SF_INFO info = {.samplerate = 44100, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
        SNDFILE *sf = sf_open(p("kit/snare/nan.wav"), SFM_WRITE, &info);
        float d[64] = {0.1f, NAN};
        sf_writef_float(sf, d, 64);
        sf_close(sf);
        sf = sf_open(p("kit/snare/silent.wav"), SFM_WRITE, &info);
        float z[64] = {0};
        sf_writef_float(sf, z, 64);
        sf_close(sf);
    }
    CHECK(symlink("/nonexistent/gone.wav", p("kit/snare/dangling.wav")) == 0, "%s", "symlink");
    hit("kit/loose.wav", 1, 44100, 0.1, 0.0, 0.5f, NF_FILE_AUTO);
    hit("kit/.hidden.wav", 1, 44100, 0.1, 0.0, 0.5f, NF_FILE_AUTO);
    hit("kit/snare/.DS_Store", 1, 44100, 0.1, 0.0, 0.5f, NF_FILE_WAV);

    nf_dataset_opts o;
    nf_dataset_opts_default(&o);
    o.rate = 32000;
    o.length = 4096;
    nf_dataset ds;
    n_warnings = 0;
    nf_status s = nf_dataset_open(p("kit"), &o, &ds);
    CHECK_OK(s);
    if (s) return;
    CHECK(ds.num_classes == 2 && !strcmp(ds.class_names[0], "kick") && !strcmp(ds.class_names[1], "snare"),
          "classes sorted by folder name (%d)", ds.num_classes);
    CHECK(ds.n == 7, "7 usable clips, got %d", ds.n);
    CHECK(ds.per_class[0].used == 5 && ds.per_class[0].skipped == 2, "kick: %d used, %d skipped",
          ds.per_class[0].used, ds.per_class[0].skipped);
    CHECK(ds.per_class[1].used == 2 && ds.per_class[1].skipped == 3, "snare: %d used, %d skipped",
          ds.per_class[1].used, ds.per_class[1].skipped);
    CHECK(ds.total.used == 7 && ds.total.skipped == 6 && ds.total.found == 13, "totals %d %d %d",
          ds.total.used, ds.total.skipped, ds.total.found);
    int kicks = 0, snares = 0;
    for (int i = 0; i < ds.n; i++) {
        const char *f = ds.files[ds.clip_file[i]];
        if (ds.labels[i] == 0) kicks += strstr(f, "/kick/") != NULL;
        if (ds.labels[i] == 1) snares += strstr(f, "/snare/") != NULL;
    }
    CHECK(kicks == 5 && snares == 2, "labels follow the folders (%d kicks, %d snares)", kicks, snares);
    CHECK(ds.channels == 1 && ds.rate == 32000 && ds.length == 4096, "%s", "clip shape");
    /* Every clip: peak 1 (peak-normalised), and the first sample is the onset (trimmed),
     * the k1 clip (0.1 s of leading silence) included. */
    int peaks_ok = 1, onsets_ok = 1;
    for (int i = 0; i < ds.n; i++) {
        const float *c = ds.audio + (size_t)i * ds.length;
        float pk = 0;
        for (int j = 0; j < ds.length; j++) pk = fmaxf(pk, fabsf(c[j]));
        peaks_ok &= fabsf(pk - 1.0f) < 1e-5f;
        onsets_ok &= fabsf(c[0]) > 0.001f * pk;
    }
    CHECK(peaks_ok, "%s", "every clip peak-normalised to 1");
    CHECK(onsets_ok, "%s", "every clip starts at its onset (leading silence trimmed)");
    /* The 20 s file was cut (fade at the crop end) and not decoded whole. */
    for (int i = 0; i < ds.n; i++)
        if (strstr(ds.files[ds.clip_file[i]], "long.wav")) {
            const float *c = ds.audio + (size_t)i * ds.length;
            CHECK(fabsf(c[ds.length - 1]) < 0.02f, "crop end faded: %g", c[ds.length - 1]);
        }

    /* One warning per skipped file, naming it and saying why. */
    struct { const char *name, *why; } want[] = {
        {"junk.txt", "not audio"}, {"empty.wav", "empty"}, {"nan.wav", "NaN"},
        {"silent.wav", "silent"}, {"dangling.wav", "dangling"}, {"loose.wav", "not in a class folder"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *w = warning_for(want[i].name);
        CHECK(w && strstr(w, want[i].why) && strstr(w, dir), "warning for %s saying '%s': %s", want[i].name,
              want[i].why, w ? w : "(none)");
    }
    CHECK(!warning_for(".hidden") && !warning_for(".DS_Store"), "%s", "hidden files ignored silently");
    CHECK(n_warnings == 6, "6 warnings, got %d", n_warnings);
    for (int i = 0; i < n_warnings; i++) printf("  warning: %s\n", warnings[i]);

    char text[2048];
    int len = nf_dataset_summary_text(&ds, text, sizeof text);
    printf("%s", text);
    CHECK(len == (int)strlen(text), "%s", "summary length");
    CHECK(strstr(text, "2 classes, 7 clips used, 6 files skipped") && strstr(text, "0 kick: 5 used, 2 skipped") &&
              strstr(text, "1 snare: 2 used, 3 skipped") && strstr(text, "(not in a class folder): 1 skipped"),
          "summary text: %s", text);
    char small[16];
    int len2 = nf_dataset_summary_text(&ds, small, sizeof small);
    CHECK(len2 == len && strlen(small) == 15, "%s", "summary truncates safely and reports the full length");
    nf_dataset_free(&ds);
    nf_dataset_free(&ds);

    /* Stereo load of the same folder: the 8-channel and stereo files fold to 2. */
    o.channels = 2;
    n_warnings = 0;
    CHECK_OK(nf_dataset_open(p("kit"), &o, &ds));
    CHECK(ds.n == 7 && ds.channels == 2, "stereo load: %d clips", ds.n);
    nf_dataset_free(&ds);
}

static void test_unconditional_and_empty(void)
{
    mkdir(p("flat"), 0755);
    hit("flat/a.wav", 1, 44100, 0.1, 0.0, 0.5f, NF_FILE_AUTO);
    hit("flat/b.flac", 2, 44100, 0.1, 0.0, 0.5f, NF_FILE_AUTO);
    nf_dataset_opts o;
    nf_dataset_opts_default(&o);
    o.length = 1000;
    nf_dataset ds;
    n_warnings = 0;
    CHECK_OK(nf_dataset_open(p("flat"), &o, &ds));
    CHECK(ds.num_classes == 0 && ds.n == 2 && ds.labels[0] == -1 && ds.labels[1] == -1,
          "no subfolders: unconditional, labels -1 (%d classes, %d clips)", ds.num_classes, ds.n);
    char text[512];
    nf_dataset_summary_text(&ds, text, sizeof text);
    CHECK(strstr(text, "unconditional") != NULL, "summary: %s", text);
    nf_dataset_free(&ds);

    mkdir(p("junk"), 0755);
    mkdir(p("junk/a"), 0755);
    raw("junk/a/x.wav", "text");
    raw("junk/a/y.wav", "");
    nf_status s = nf_dataset_open(p("junk"), &o, &ds);
    CHECK(s == NF_ERR_EMPTY && strstr(nf_last_error(), p("junk")) && strstr(nf_last_error(), "no usable audio"),
          "folder of junk: %d %s", s, nf_last_error());
    CHECK(ds.audio == NULL && ds.files == NULL, "%s", "freed on failure");

    mkdir(p("nothing"), 0755);
    s = nf_dataset_open(p("nothing"), &o, &ds);
    CHECK(s == NF_ERR_EMPTY && strstr(nf_last_error(), p("nothing")), "empty folder: %s", nf_last_error());
    s = nf_dataset_open(p("not-there"), &o, &ds);
    CHECK(s == NF_ERR_IO && strstr(nf_last_error(), p("not-there")) && strstr(nf_last_error(), "missing"),
          "missing folder: %s", nf_last_error());
    s = nf_dataset_open(p("flat/a.wav"), &o, &ds);
    CHECK(s == NF_ERR_IO && strstr(nf_last_error(), "not a folder"), "a file as the folder: %s", nf_last_error());
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    nf_set_warning_handler(on_warning, NULL);
    test_classes();
    test_unconditional_and_empty();
    nf_set_warning_handler(NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return nf_test_done();
}
