/* noisefloor dataset: a folder of sounds -> one contiguous array of equal-length clips
 * with class labels.
 *
 * Layout of a dataset folder:
 * - root/<class>/... : every first-level subfolder is a class, named after the folder;
 *   classes are sorted by name (strcmp, so the label numbers are stable); files at any
 *   depth below a class folder belong to it.
 * - root/... with no subfolders: no classes (num_classes = 0, every label -1): an
 *   unconditional dataset.
 * - both: files directly in root are skipped with a warning ("not in a class folder"),
 *   because a conditional model needs a label for every clip.
 * Hidden entries (names starting with '.') are ignored silently. Every other file is
 * tried: one libsndfile cannot read (not audio, empty, truncated, unreadable, NaN/Inf,
 * silent) is skipped with nf_warn() naming it and saying why.
 *
 * Loading: decode (at most max_seconds), convert to the target channel count, resample
 * to the target rate, optionally trim leading silence, crop (with a short fade-out) or
 * zero-pad to the clip length, peak-normalise each clip. */
#ifndef NF_DATASET_H
#define NF_DATASET_H

#include "nf_audio.h"
#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int channels;          /* 1 or 2 */
    int rate;              /* Hz */
    int length;            /* frames per clip */
    double max_seconds;    /* decode at most this much of each file (0: length/rate + 1 s) */
    int trim_silence;      /* trim leading silence below trim_db */
    float trim_db;         /* dBFS, e.g. -60 */
    float peak;            /* peak-normalisation target (e.g. 1.0); 0 = leave the level */
    int fade_frames;       /* fade-out at a crop (0: 5 ms) */
    nf_resample_quality quality;
} nf_dataset_opts;

/* 1 channel, 44100 Hz, 16384 frames, trim at -60 dBFS, peak 1, medium resampling. */
void nf_dataset_opts_default(nf_dataset_opts *o);

typedef struct {
    int found;   /* files seen in the scan */
    int used;    /* clips loaded */
    int skipped; /* files skipped (with a warning) */
} nf_dataset_count;

typedef struct {
    /* Scan (nf_dataset_scan). */
    char *root;          /* the folder, as given */
    int num_classes;     /* 0: unconditional */
    char **class_names;  /* [num_classes] */
    int num_files;
    char **files;        /* [num_files] paths, sorted */
    int *file_labels;    /* [num_files]; -1 for unconditional; -2 for a loose file that
                            will be skipped */
    /* Load (nf_dataset_load). */
    int n;               /* clips loaded */
    int channels, rate, length;
    float *audio;        /* [n][channels][length] */
    int *labels;         /* [n], -1 when num_classes == 0 */
    int *clip_file;      /* [n] index into files */
    /* Summary: per class (index num_classes, or 0 when unconditional, holds the
     * unconditional / loose files), and totals. */
    nf_dataset_count *per_class; /* [num_classes + 1] */
    nf_dataset_count total;
} nf_dataset;

/* Scan a folder (recursively) into files and classes; no decoding. NF_ERR_IO if root
 * is missing or not a folder, NF_ERR_EMPTY if it holds no files. */
nf_status nf_dataset_scan(const char *root, nf_dataset *ds);
/* Decode every scanned file into ds->audio. NF_ERR_EMPTY (one line, naming the folder)
 * if no file gives a usable clip. */
nf_status nf_dataset_load(nf_dataset *ds, const nf_dataset_opts *o);
/* Scan, then load. root names the folder in messages. */
nf_status nf_dataset_open(const char *root, const nf_dataset_opts *o, nf_dataset *ds);
void nf_dataset_free(nf_dataset *ds);

/* A few lines, e.g.
 *   "3 classes, 10 clips used, 2 files skipped\n  kick: 4 used, 1 skipped\n ..."
 * Returns the length snprintf would have written. */
int nf_dataset_summary_text(const nf_dataset *ds, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
