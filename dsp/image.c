/* Spectrogram and line-plot pictures: our own rasteriser into an RGB buffer, then
 * libpng. */
#include "nf_image.h"

#include "nf_stft.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

nf_status nf_png_write_rgb(const char *path, const unsigned char *rgb, int width, int height)
{
    if (width < 1 || height < 1 || width > 16384 || height > 16384)
        return nf_fail(NF_ERR_ARG, "%s: bad image size %d x %d", path, width, height);
    char tmp[NF_PATH_MAX];
    nf_status s = nf_atomic_begin(path, tmp, sizeof tmp);
    if (s) return s;
    FILE *f = fopen(tmp, "wb");
    if (!f) return nf_fail(NF_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        nf_atomic_abort(tmp);
        return nf_fail(NF_ERR_NOMEM, "%s: libpng could not start", path);
    }
    /* libpng reports errors by longjmp; nothing here needs unwinding but the file. */
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        nf_atomic_abort(tmp);
        return nf_fail(NF_ERR_IO, "%s: PNG write failed", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * width * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f) != 0) {
        nf_atomic_abort(tmp);
        return nf_fail(NF_ERR_IO, "%s: write failed (%s)", path, strerror(errno));
    }
    return nf_atomic_commit(tmp, path);
}

void nf_spectrogram_opts_default(nf_spectrogram_opts *o)
{
    memset(o, 0, sizeof *o);
    o->width = 800;
    o->height = 400;
    o->n_fft = 1024;
    o->range_db = 80;
    o->log_freq = 1;
    o->min_hz = 20;
}

/* A perceptually ordered map from 0 (quiet) to 1 (loud), piecewise linear through
 * a few points close to matplotlib's "magma". */
static void colour(float v, unsigned char *px)
{
    static const float stops[][3] = {
        {0, 0, 4}, {40, 15, 100}, {114, 31, 129}, {183, 55, 121}, {241, 96, 93}, {254, 176, 120}, {252, 253, 191}};
    const int ns = (int)(sizeof stops / sizeof stops[0]);
    if (!(v > 0)) v = 0;
    if (v > 1) v = 1;
    float p = v * (ns - 1);
    int i = (int)p;
    if (i >= ns - 1) i = ns - 2;
    float t = p - i;
    for (int k = 0; k < 3; k++) px[k] = (unsigned char)lrintf(stops[i][k] + t * (stops[i + 1][k] - stops[i][k]));
}

nf_status nf_spectrogram_png(const char *path, const nf_audio *a, const nf_spectrogram_opts *opts)
{
    nf_spectrogram_opts o;
    if (opts) o = *opts;
    else nf_spectrogram_opts_default(&o);
    if (o.width <= 0) o.width = 800;
    if (o.height <= 0) o.height = 400;
    if (o.n_fft <= 0) o.n_fft = 1024;
    if (o.range_db <= 0) o.range_db = 80;
    if (o.min_hz <= 0) o.min_hz = 20;
    if (!a || !a->data || a->frames < 1)
        return nf_fail(NF_ERR_ARG, "%s: no audio to draw", path);
    nf_status s = nf_audio_check_finite(a, path);
    if (s) return s;
    nf_stft *st;
    if ((s = nf_stft_create(o.n_fft, o.hop, &st))) return s;
    const int L = a->frames, K = nf_stft_bins(st), F = nf_stft_frames(st, L);
    float *mono = malloc((size_t)L * sizeof(float));
    float *re = malloc((size_t)K * F * sizeof(float));
    float *im = malloc((size_t)K * F * sizeof(float));
    unsigned char *rgb = malloc((size_t)o.width * o.height * 3);
    if (!mono || !re || !im || !rgb) {
        s = nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int t = 0; t < L; t++) {
        double acc = 0;
        for (int c = 0; c < a->channels; c++) acc += a->data[(size_t)c * L + t];
        mono[t] = (float)(acc / a->channels);
    }
    if ((s = nf_stft_forward(st, mono, L, re, im))) goto done;
    /* Power in dB, 10 log10(|X|^2), into re; the maximum sets the top of the scale. */
    float top = -1e30f;
    for (size_t i = 0; i < (size_t)K * F; i++) {
        float p = re[i] * re[i] + im[i] * im[i];
        re[i] = 10.0f * log10f(p + 1e-20f);
        if (re[i] > top) top = re[i];
    }
    const double nyq = a->rate / 2.0;
    double fmin = o.min_hz < nyq ? o.min_hz : nyq / 1000;
    for (int y = 0; y < o.height; y++) {
        /* Row y (0 = top) -> frequency: the centre of the pixel, top = Nyquist. */
        double u = (o.height - 1 - y + 0.5) / o.height;
        double hz = o.log_freq ? fmin * pow(nyq / fmin, u) : u * nyq;
        double kf = hz / nyq * (K - 1);
        int k0 = (int)floor(kf);
        if (k0 > K - 2) k0 = K - 2;
        double w = kf - k0;
        for (int x = 0; x < o.width; x++) {
            /* Column -> frame range; take the loudest frame so short hits stay visible. */
            int f0 = (int)((long)x * F / o.width), f1 = (int)((long)(x + 1) * F / o.width);
            if (f1 <= f0) f1 = f0 + 1;
            float db = -1e30f;
            for (int f = f0; f < f1 && f < F; f++) {
                float v = (float)((1 - w) * re[(size_t)k0 * F + f] + w * re[(size_t)(k0 + 1) * F + f]);
                if (v > db) db = v;
            }
            colour((db - (top - o.range_db)) / o.range_db, rgb + ((size_t)y * o.width + x) * 3);
        }
    }
    s = nf_png_write_rgb(path, rgb, o.width, o.height);
done:
    free(mono);
    free(re);
    free(im);
    free(rgb);
    nf_stft_free(st);
    return s;
}

static void put(unsigned char *rgb, int W, int H, int x, int y, const unsigned char c[3])
{
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    memcpy(rgb + ((size_t)y * W + x) * 3, c, 3);
}

/* Bresenham's line algorithm (Bresenham 1965), all octants. */
static void line(unsigned char *rgb, int W, int H, int x0, int y0, int x1, int y1, const unsigned char c[3])
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        put(rgb, W, H, x0, y0, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

nf_status nf_plot_png(const char *path, const float *y, int n, int width, int height, int log_y)
{
    if (width <= 0) width = 800;
    if (height <= 0) height = 400;
    if (width < 16 || height < 16) return nf_fail(NF_ERR_ARG, "%s: plot too small (%d x %d)", path, width, height);
    if (n < 1 || !y) return nf_fail(NF_ERR_ARG, "%s: nothing to plot", path);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        double v = y[i];
        if (log_y) v = v > 0 ? log10(v) : NAN;
        if (!isfinite(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    if (!isfinite(lo)) return nf_fail(NF_ERR_NUMERIC, "%s: no finite values to plot", path);
    if (hi - lo < 1e-12) {
        lo -= 0.5;
        hi += 0.5;
    }
    unsigned char *rgb = malloc((size_t)width * height * 3);
    if (!rgb) return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    memset(rgb, 255, (size_t)width * height * 3);
    static const unsigned char grid[3] = {225, 225, 225}, axis[3] = {0, 0, 0}, ink[3] = {31, 97, 180};
    const int m = 8; /* margin */
    const int x0 = m, x1 = width - 1 - m, y0 = m, y1 = height - 1 - m;
    for (int i = 1; i < 10; i++) {
        int x = x0 + (x1 - x0) * i / 10;
        line(rgb, width, height, x, y0, x, y1, grid);
    }
    for (int i = 1; i < 8; i++) {
        int yy = y0 + (y1 - y0) * i / 8;
        line(rgb, width, height, x0, yy, x1, yy, grid);
    }
    line(rgb, width, height, x0, y0, x1, y0, axis);
    line(rgb, width, height, x0, y1, x1, y1, axis);
    line(rgb, width, height, x0, y0, x0, y1, axis);
    line(rgb, width, height, x1, y0, x1, y1, axis);
    int have = 0, px = 0, py = 0;
    for (int i = 0; i < n; i++) {
        double v = y[i];
        if (log_y) v = v > 0 ? log10(v) : NAN;
        if (!isfinite(v)) {
            have = 0; /* a gap in the line */
            continue;
        }
        int X = n > 1 ? x0 + (int)lround((double)(x1 - x0) * i / (n - 1)) : (x0 + x1) / 2;
        int Y = y1 - (int)lround((y1 - y0) * (v - lo) / (hi - lo));
        if (have) line(rgb, width, height, px, py, X, Y, ink);
        else put(rgb, width, height, X, Y, ink);
        px = X;
        py = Y;
        have = 1;
    }
    nf_status s = nf_png_write_rgb(path, rgb, width, height);
    free(rgb);
    return s;
}
