/* noisefloor pictures: a spectrogram of a sound and a line plot of a series (the
 * training loss), as PNG files (libpng), written atomically. No text: axes and grid
 * lines only. */
#ifndef NF_IMAGE_H
#define NF_IMAGE_H

#include "nf_audio.h"
#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int width, height;   /* pixels (0: 800 x 400) */
    int n_fft;           /* 0: 1024 */
    int hop;             /* 0: n_fft/4 */
    float range_db;      /* dynamic range shown below the loudest bin (0: 80 dB) */
    int log_freq;        /* 1: logarithmic frequency axis from min_hz; 0: linear */
    float min_hz;        /* lowest frequency of a log axis (0: 20 Hz) */
} nf_spectrogram_opts;

void nf_spectrogram_opts_default(nf_spectrogram_opts *o);

/* Log-magnitude spectrogram of `a` (channels mixed to mono): time left to right,
 * frequency bottom to top, colour = dB relative to the loudest bin (black -> purple ->
 * orange -> pale yellow). opts may be NULL for the defaults. */
nf_status nf_spectrogram_png(const char *path, const nf_audio *a, const nf_spectrogram_opts *opts);

/* Line plot of y[0..n-1] (x = index), with a frame and a 10 x 8 grid; log_y plots
 * log10(y) (non-positive values skipped). NaN/Inf points are skipped (the line breaks). */
nf_status nf_plot_png(const char *path, const float *y, int n, int width, int height, int log_y);

/* The RGB writer both use: rgb is [height][width][3]. */
nf_status nf_png_write_rgb(const char *path, const unsigned char *rgb, int width, int height);

#ifdef __cplusplus
}
#endif
#endif
