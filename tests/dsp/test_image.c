/* Spectrogram and line-plot PNGs, read back with libpng and checked where the picture
 * must put things. */
#include "nf_image.h"
#include "nf_test.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/nf_test_imageXXXXXX";

/* Read an 8-bit RGB PNG; NULL on failure. */
static unsigned char *read_png(const char *path, int *w, int *h)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    unsigned char *rgb = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        free(rgb);
        return NULL;
    }
    png_init_io(png, f);
    png_read_info(png, info);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    if (png_get_color_type(png, info) != PNG_COLOR_TYPE_RGB || png_get_bit_depth(png, info) != 8)
        png_error(png, "not 8-bit RGB");
    rgb = malloc((size_t)*w * *h * 3);
    for (int y = 0; y < *h; y++) png_read_row(png, rgb + (size_t)y * *w * 3, NULL);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return rgb;
}

static int brightness(const unsigned char *px) { return px[0] + px[1] + px[2]; }

static void test_spectrogram(void)
{
    nf_audio a;
    CHECK_OK(nf_audio_alloc(&a, 2, 44100, 44100));
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < a.frames; i++) a.data[c * a.frames + i] = 0.5f * sinf(2 * (float)M_PI * 5000.0f * i / 44100.0f);
    for (int log_freq = 0; log_freq <= 1; log_freq++) {
        char path[512];
        snprintf(path, sizeof path, "%s/spec%d.png", dir, log_freq);
        nf_spectrogram_opts o;
        nf_spectrogram_opts_default(&o);
        o.width = 300;
        o.height = 200;
        o.log_freq = log_freq;
        CHECK_OK(nf_spectrogram_png(path, &a, &o));
        int w = 0, h = 0;
        unsigned char *rgb = read_png(path, &w, &h);
        CHECK(rgb && w == 300 && h == 200, "PNG %d x %d", w, h);
        if (!rgb) continue;
        /* The brightest row in the middle column is the 5 kHz line. */
        int best = -1, bestv = -1;
        for (int y = 0; y < h; y++) {
            int v = brightness(rgb + ((size_t)y * w + w / 2) * 3);
            if (v > bestv) {
                bestv = v;
                best = y;
            }
        }
        double u = (h - 1 - best + 0.5) / h; /* row -> frequency, as the picture maps it */
        double hz = log_freq ? 20.0 * pow(22050.0 / 20.0, u) : u * 22050.0;
        double tol = log_freq ? 5000 * (pow(22050.0 / 20.0, 1.0 / h) - 1) * 2 + 50 : 22050.0 / h * 2;
        CHECK(fabs(hz - 5000) < tol, "log %d: brightest row %d is %.0f Hz, want 5000 +- %.0f", log_freq, best, hz, tol);
        /* Far from the line the picture is dark (at least 60 dB down). */
        int dark = brightness(rgb + ((size_t)(log_freq ? h - 5 : 5) * w + w / 2) * 3);
        CHECK(dark < bestv / 3, "background dark: %d vs %d", dark, bestv);
        free(rgb);
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
        CHECK(access(tmp, F_OK) != 0, "%s", "no temporary left");
    }
    a.data[3] = NAN;
    char path[512];
    snprintf(path, sizeof path, "%s/nan.png", dir);
    CHECK(nf_spectrogram_png(path, &a, NULL) == NF_ERR_NUMERIC && strstr(nf_last_error(), path), "NaN refused: %s",
          nf_last_error());
    snprintf(path, sizeof path, "%s/no/such/dir/x.png", dir);
    a.data[3] = 0;
    CHECK(nf_spectrogram_png(path, &a, NULL) == NF_ERR_IO && strstr(nf_last_error(), path), "bad dir: %s",
          nf_last_error());
    nf_audio_free(&a);
}

static void test_plot(void)
{
    float loss[500];
    for (int i = 0; i < 500; i++) loss[i] = 1.0f / (1.0f + 0.05f * i);
    loss[250] = NAN; /* a gap, not a failure */
    char path[512];
    snprintf(path, sizeof path, "%s/loss.png", dir);
    CHECK_OK(nf_plot_png(path, loss, 500, 400, 200, 1));
    int w = 0, h = 0;
    unsigned char *rgb = read_png(path, &w, &h);
    CHECK(rgb && w == 400 && h == 200, "plot %d x %d", w, h);
    if (!rgb) return;
    /* The ink (blue) in the first and last columns of the plot area: high then low. */
    int first = -1, last = -1, ink = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const unsigned char *px = rgb + ((size_t)y * w + x) * 3;
            int blue = px[2] > 150 && px[0] < 100;
            ink += blue;
            if (blue && x == 8 && first < 0) first = y;
            if (blue && x == w - 9 && last < 0) last = y;
        }
    CHECK(ink > 380, "a line was drawn (%d ink pixels)", ink);
    CHECK(first >= 0 && first <= 10 && last >= h - 10, "the curve falls from top-left (%d) to bottom-right (%d)", first, last);
    /* A black frame around the plot area. */
    const unsigned char *corner = rgb + ((size_t)(h - 9) * w + w / 2) * 3; /* bottom edge */
    CHECK(corner[0] == 0 && corner[1] == 0 && corner[2] == 0, "%s", "frame bottom edge black");
    free(rgb);
    float bad[3] = {NAN, INFINITY, NAN};
    CHECK(nf_plot_png(path, bad, 3, 100, 100, 0) == NF_ERR_NUMERIC, "%s", "nothing finite to plot");
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_spectrogram();
    test_plot();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return nf_test_done();
}
