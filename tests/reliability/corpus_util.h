/* Writing the odd sound files of the corpus tests with libsndfile directly (the library's
 * writer refuses NaN, which is the point of some of them). */
#ifndef NF_REL_CORPUS_UTIL_H
#define NF_REL_CORPUS_UTIL_H

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A decaying tone (a stand-in drum hit), interleaved, `frames` x `ch`, with an optional
 * poison value at frame `poison_at` (< 0: none). Returns 0 on success. */
static inline int corpus_write(const char *path, int format, int ch, int rate, int frames, int poison_at,
                               float poison)
{
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.channels = ch;
    info.samplerate = rate;
    info.format = format;
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    if (!sf) return -1;
    float *buf = malloc(sizeof(float) * (size_t)frames * (size_t)ch);
    if (!buf) {
        sf_close(sf);
        return -1;
    }
    for (int i = 0; i < frames; i++)
        for (int c = 0; c < ch; c++)
            buf[(size_t)i * ch + c] =
                0.7f * expf(-6.0f * i / rate) * sinf(6.2831853f * (110.0f + 20.0f * c) * i / rate);
    if (poison_at >= 0) buf[(size_t)poison_at * ch] = poison;
    sf_count_t w = sf_writef_float(sf, buf, frames);
    free(buf);
    return sf_close(sf) == 0 && w == frames ? 0 : -1;
}

static inline int corpus_write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* A 16-bit mono WAV whose header claims `seconds` of audio at `rate`: the first second is
 * a real sound, the rest a hole in a sparse file (zeros, written in no time). */
static inline int corpus_write_long_wav(const char *path, int rate, double seconds)
{
    uint32_t data_bytes = (uint32_t)(seconds * rate) * 2u;
    unsigned char h[44];
    memcpy(h, "RIFF", 4);
    uint32_t v = 36 + data_bytes;
    memcpy(h + 4, &v, 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(h + 16, &v, 4);
    uint16_t s = 1;
    memcpy(h + 20, &s, 2); /* PCM */
    memcpy(h + 22, &s, 2); /* 1 channel */
    v = (uint32_t)rate;
    memcpy(h + 24, &v, 4);
    v = (uint32_t)rate * 2u;
    memcpy(h + 28, &v, 4);
    s = 2;
    memcpy(h + 32, &s, 2);
    s = 16;
    memcpy(h + 34, &s, 2);
    memcpy(h + 36, "data", 4);
    memcpy(h + 40, &data_bytes, 4); /* little-endian host assumed (x86-64, arm64) */
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(h, 1, 44, f);
    for (int i = 0; i < rate; i++) {
        int16_t x = (int16_t)(20000.0 * exp(-6.0 * i / rate) * sin(6.2831853 * 200.0 * i / rate));
        fwrite(&x, 2, 1, f);
    }
    if (fflush(f) || ftruncate(fileno(f), (off_t)44 + data_bytes)) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

#endif
