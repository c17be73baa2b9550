/* Folder scan and clip loading for training. See nf_dataset.h for the folder layout. */
#include "nf_dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void nf_dataset_opts_default(nf_dataset_opts *o)
{
    memset(o, 0, sizeof *o);
    o->channels = 1;
    o->rate = 44100;
    o->length = 16384;
    o->trim_silence = 1;
    o->trim_db = -60.0f;
    o->peak = 1.0f;
    o->quality = NF_RESAMPLE_MEDIUM;
}

typedef struct {
    char **v;
    int n, cap;
} strvec;

static int strvec_push(strvec *s, const char *str)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str))) return -1;
    s->n++;
    return 0;
}

static void strvec_free(strvec *s)
{
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *dir, const char *name)
{
    /* memcpy rather than snprintf: GCC's -Wformat-truncation cannot see that n fits. */
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* The visible entries of a folder, sorted, split into subfolders and everything else
 * (regular files, dangling symlinks, ...: the loader says what is wrong with them). */
static nf_status list_dir(const char *dir, strvec *dirs, strvec *files)
{
    DIR *d = opendir(dir);
    if (!d) return nf_fail(NF_ERR_IO, "%s: cannot open folder (%s)", dir, strerror(errno));
    strvec names = {0};
    struct dirent *e;
    nf_status s = NF_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., and hidden files (.DS_Store, ...) */
        if (strvec_push(&names, e->d_name)) {
            s = nf_fail(NF_ERR_NOMEM, "%s: out of memory listing the folder", dir);
            break;
        }
    }
    closedir(d);
    if (names.n) qsort(names.v, (size_t)names.n, sizeof(char *), cmp_str);
    for (int i = 0; i < names.n && !s; i++) {
        char *p = join(dir, names.v[i]);
        if (!p) {
            s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        struct stat st;
        int is_dir = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
        if (strvec_push(is_dir ? dirs : files, is_dir ? names.v[i] : p))
            s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", dir);
        free(p);
    }
    strvec_free(&names);
    return s;
}

/* Every file below `dir`, depth-first in sorted order. The depth limit stops symlink
 * loops. */
static nf_status collect(const char *dir, int depth, strvec *out)
{
    if (depth > 32) {
        nf_warn("%s: skipped (folders nested too deep, or a symbolic link loop)", dir);
        return NF_OK;
    }
    strvec dirs = {0}, files = {0};
    nf_status s = list_dir(dir, &dirs, &files);
    for (int i = 0; i < files.n && !s; i++)
        if (strvec_push(out, files.v[i])) s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", dir);
    for (int i = 0; i < dirs.n && !s; i++) {
        char *p = join(dir, dirs.v[i]);
        if (!p) {
            s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        s = collect(p, depth + 1, out);
        free(p);
    }
    strvec_free(&dirs);
    strvec_free(&files);
    return s;
}

void nf_dataset_free(nf_dataset *ds)
{
    if (!ds) return;
    for (int i = 0; i < ds->num_classes; i++) free(ds->class_names[i]);
    free(ds->class_names);
    for (int i = 0; i < ds->num_files; i++) free(ds->files[i]);
    free(ds->files);
    free(ds->file_labels);
    free(ds->audio);
    free(ds->labels);
    free(ds->clip_file);
    free(ds->per_class);
    free(ds->root);
    memset(ds, 0, sizeof *ds);
}

nf_status nf_dataset_scan(const char *root, nf_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    if (!root || !*root) return nf_fail(NF_ERR_ARG, "empty dataset folder path");
    struct stat st;
    if (stat(root, &st) != 0)
        return nf_fail(NF_ERR_IO, "%s: dataset folder missing (%s)", root, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return nf_fail(NF_ERR_IO, "%s: not a folder", root);

    strvec classes = {0}, loose = {0}, files = {0};
    nf_status s = list_dir(root, &classes, &loose);
    int *labels = NULL;
    if (!s) {
        int nc = classes.n;
        if (nc == 0) {
            for (int i = 0; i < loose.n && !s; i++)
                if (strvec_push(&files, loose.v[i])) s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", root);
        }
        int *start = calloc((size_t)nc + 1, sizeof(int));
        if (!start) s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", root);
        for (int c = 0; c < nc && !s; c++) {
            start[c] = files.n;
            char *p = join(root, classes.v[c]);
            if (!p) {
                s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", root);
                break;
            }
            s = collect(p, 1, &files);
            free(p);
        }
        if (!s && nc > 0) {
            start[nc] = files.n;
            for (int i = 0; i < loose.n && !s; i++)
                if (strvec_push(&files, loose.v[i])) s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", root);
        }
        if (!s) {
            labels = malloc(((size_t)files.n + 1) * sizeof(int));
            ds->per_class = calloc((size_t)nc + 1, sizeof(nf_dataset_count));
            ds->root = strdup(root);
            if (!labels || !ds->per_class || !ds->root) s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", root);
        }
        if (!s) {
            for (int i = 0; i < files.n; i++) {
                int lab = -1;
                if (nc > 0) {
                    lab = -2; /* loose file beside class folders */
                    for (int c = 0; c < nc; c++)
                        if (i >= start[c] && i < start[c + 1]) lab = c;
                }
                labels[i] = lab;
                ds->per_class[lab >= 0 ? lab : nc].found++;
            }
            ds->total.found = files.n;
            ds->num_classes = nc;
            ds->class_names = classes.v;
            ds->num_files = files.n;
            ds->files = files.v;
            ds->file_labels = labels;
            memset(&classes, 0, sizeof classes);
            memset(&files, 0, sizeof files);
            labels = NULL;
        }
        free(start);
    }
    free(labels);
    strvec_free(&classes);
    strvec_free(&loose);
    strvec_free(&files);
    if (s) {
        nf_dataset_free(ds);
        return s;
    }
    if (ds->num_files == 0) {
        nf_dataset_free(ds);
        return nf_fail(NF_ERR_EMPTY, "%s: no files in the dataset folder", root);
    }
    return NF_OK;
}

/* One file -> one clip of the target shape, or a status whose message says why not. */
static nf_status load_clip(const char *path, const nf_dataset_opts *o, nf_audio *a)
{
    double max_s = o->max_seconds > 0 ? o->max_seconds : (double)o->length / o->rate + 1.0;
    nf_status s = nf_audio_read(path, max_s, a);
    if (s) return s;
    if ((s = nf_audio_to_channels(a, o->channels))) return s;
    if ((s = nf_audio_resample(a, o->rate, o->quality))) return s;
    if (o->trim_silence) nf_audio_trim_leading_silence(a, o->trim_db);
    /* -120 dBFS: below any real recording's noise floor; normalising it would only blow
     * up dither or numerical noise. */
    float peak = nf_audio_peak(a);
    if (!(peak >= 1e-6f)) return nf_fail(NF_ERR_EMPTY, "%s: silent (peak below -120 dBFS)", path);
    int fade = o->fade_frames > 0 ? o->fade_frames : (int)(0.005 * o->rate); /* 5 ms */
    if ((s = nf_audio_fit_length(a, o->length, fade))) return s;
    if (o->peak > 0) nf_audio_peak_normalize(a, o->peak);
    return NF_OK;
}

nf_status nf_dataset_load(nf_dataset *ds, const nf_dataset_opts *o)
{
    const char *root = ds->root ? ds->root : "dataset";
    if (o->channels < 1 || o->channels > 2 || o->rate < 1 || o->length < 1)
        return nf_fail(NF_ERR_ARG, "%s: bad load options (%d channels, %d Hz, %d frames)", root,
                       o->channels, o->rate, o->length);
    free(ds->audio);
    free(ds->labels);
    free(ds->clip_file);
    ds->audio = NULL;
    ds->labels = ds->clip_file = NULL;
    ds->n = 0;
    for (int c = 0; c <= ds->num_classes; c++) ds->per_class[c].used = ds->per_class[c].skipped = 0;
    ds->total.used = ds->total.skipped = 0;

    const size_t clip = (size_t)o->channels * o->length;
    size_t cap = ds->num_files > 0 ? (size_t)ds->num_files : 1;
    ds->audio = malloc(cap * clip * sizeof(float));
    ds->labels = malloc(cap * sizeof(int));
    ds->clip_file = malloc(cap * sizeof(int));
    if (!ds->audio || !ds->labels || !ds->clip_file)
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory for %zu clips", root, cap);
    ds->channels = o->channels;
    ds->rate = o->rate;
    ds->length = o->length;

    for (int i = 0; i < ds->num_files; i++) {
        int lab = ds->file_labels[i];
        nf_dataset_count *pc = &ds->per_class[lab >= 0 ? lab : ds->num_classes];
        if (lab == -2) {
            nf_warn("skipped %s: not in a class folder (the dataset has class subfolders)", ds->files[i]);
            pc->skipped++;
            ds->total.skipped++;
            continue;
        }
        nf_audio a;
        nf_status s = load_clip(ds->files[i], o, &a);
        if (s == NF_ERR_NOMEM) {
            nf_audio_free(&a);
            return s;
        }
        if (s) {
            nf_warn("skipped %s", nf_last_error());
            pc->skipped++;
            ds->total.skipped++;
        } else {
            memcpy(ds->audio + (size_t)ds->n * clip, a.data, clip * sizeof(float));
            ds->labels[ds->n] = lab;
            ds->clip_file[ds->n] = i;
            ds->n++;
            pc->used++;
            ds->total.used++;
        }
        nf_audio_free(&a);
    }
    nf_clear_error();
    for (int c = 0; c < ds->num_classes; c++)
        if (ds->per_class[c].used == 0)
            nf_warn("%s: class \"%s\" has no usable audio", root, ds->class_names[c]);
    if (ds->n == 0)
        return nf_fail(NF_ERR_EMPTY, "%s: no usable audio (%d files tried, all skipped)", root, ds->num_files);
    float *shrunk = realloc(ds->audio, (size_t)ds->n * clip * sizeof(float));
    if (shrunk) ds->audio = shrunk;
    return NF_OK;
}

nf_status nf_dataset_open(const char *root, const nf_dataset_opts *o, nf_dataset *ds)
{
    nf_status s = nf_dataset_scan(root, ds);
    if (s) return s;
    s = nf_dataset_load(ds, o);
    if (s) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", nf_last_error());
        nf_dataset_free(ds);
        nf_fail(s, "%s", msg);
    }
    return s;
}

/* snprintf onto the end of buf, counting what would have been written. */
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t size, size_t *used, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (buf && *used < size) snprintf(buf + *used, size - *used, "%s", line);
    *used += (size_t)k;
}

int nf_dataset_summary_text(const nf_dataset *ds, char *buf, size_t size)
{
    size_t used = 0;
    const char *root = ds->root ? ds->root : "dataset";
    if (buf && size) buf[0] = '\0';
    if (ds->num_classes > 0)
        append(buf, size, &used, "%s: %d classes, %d clips used, %d files skipped\n", root,
               ds->num_classes, ds->total.used, ds->total.skipped);
    else
        append(buf, size, &used, "%s: unconditional (no class folders), %d clips used, %d files skipped\n",
               root, ds->total.used, ds->total.skipped);
    for (int c = 0; c < ds->num_classes; c++)
        append(buf, size, &used, "  %d %s: %d used, %d skipped\n", c, ds->class_names[c],
               ds->per_class[c].used, ds->per_class[c].skipped);
    if (ds->per_class && ds->num_classes > 0 && ds->per_class[ds->num_classes].found > 0)
        append(buf, size, &used, "  (not in a class folder): %d skipped\n",
               ds->per_class[ds->num_classes].skipped);
    return (int)used;
}
