/* Audio files in and out (libsndfile), channel conversion, resampling (libsamplerate),
 * length fitting and normalisation. */
#include "nf_audio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

nf_status nf_audio_alloc(nf_audio *a, int channels, int frames, int rate)
{
    memset(a, 0, sizeof *a);
    if (channels < 1 || frames < 0 || rate < 1)
        return nf_fail(NF_ERR_ARG, "audio buffer: bad shape (%d channels, %d frames, %d Hz)",
                       channels, frames, rate);
    size_t n = (size_t)channels * (size_t)frames;
    a->data = calloc(n ? n : 1, sizeof(float));
    if (!a->data) return nf_fail(NF_ERR_NOMEM, "audio buffer: out of memory (%zu samples)", n);
    a->channels = channels;
    a->frames = frames;
    a->rate = rate;
    return NF_OK;
}

void nf_audio_free(nf_audio *a)
{
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

static nf_status check_wav_lists(const char *path, long long fsize);

/* Check the path before libsndfile sees it, so that each common problem gets its own
 * words instead of libsndfile's generic "System error". *size: the file's size. */
static nf_status check_input_path(const char *path, long long *size)
{
    struct stat st, lst;
    if (stat(path, &st) != 0) {
        int e = errno;
        if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
            return nf_fail(NF_ERR_IO, "%s: missing (dangling symbolic link)", path);
        if (e == ENOENT) return nf_fail(NF_ERR_IO, "%s: missing (no such file)", path);
        return nf_fail(NF_ERR_IO, "%s: unreadable (%s)", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) return nf_fail(NF_ERR_IO, "%s: is a directory, not an audio file", path);
    if (!S_ISREG(st.st_mode)) return nf_fail(NF_ERR_IO, "%s: not a regular file", path);
    if (st.st_size == 0) return nf_fail(NF_ERR_EMPTY, "%s: empty file (0 bytes)", path);
    *size = (long long)st.st_size;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return nf_fail(NF_ERR_IO, "%s: unreadable (%s)", path, strerror(errno));
    close(fd);
    return check_wav_lists(path, *size);
}

/* A WAV's LIST chunks (metadata such as INFO tags), checked before libsndfile parses
 * them: libsndfile 1.2.0 walks a LIST's entries until it has covered the size the LIST
 * declares, and when an entry or the LIST itself runs past the end of the file its reads
 * stop advancing and sf_open never returns (fuzzing found four such files of 82-227
 * bytes; each hung `noisefloor`). Walks the top-level chunks of a RIFF/RIFX WAVE file;
 * every entry of a LIST must fit inside it, and the LIST inside the file. Anything that
 * is not a WAVE file, or ends early outside a LIST, is left to libsndfile. */
static uint32_t get32(const unsigned char *b, int big)
{
    return big ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]
               : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

static void chunk_name(char out[24], const unsigned char id[4])
{
    char *o = out;
    for (int i = 0; i < 4; i++) {
        if (id[i] >= 0x20 && id[i] < 0x7f && id[i] != '\\') *o++ = (char)id[i];
        else o += sprintf(o, "\\x%02x", id[i]);
    }
    *o = 0;
}

static nf_status check_wav_lists(const char *path, long long fsize)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NF_OK; /* check_input_path has said what is wrong with it */
    unsigned char h[12];
    nf_status st = NF_OK;
    if (fread(h, 1, 12, f) == 12 && (!memcmp(h, "RIFF", 4) || !memcmp(h, "RIFX", 4)) && !memcmp(h + 8, "WAVE", 4)) {
        const int big = h[3] == 'X';
        for (int chunks = 0; chunks < 100000 && !st; chunks++) {
            unsigned char c[8];
            if (fread(c, 1, 8, f) != 8) break;
            uint32_t size = get32(c + 4, big);
            long long body = (long long)ftello(f), next = body + size + (size & 1);
            if (!memcmp(c, "LIST", 4) && size >= 4) {
                /* A LIST cut short by the end of the file is still checked as far as it
                 * goes: an entry claiming more than its chunk declares is damaged
                 * whether or not the rest of the chunk is there. At most its first 16 MB
                 * are read (a damaged size may claim gigabytes of a 99-byte file). */
                uint32_t want = size < (1u << 24) ? size : (1u << 24);
                unsigned char *d = malloc(want);
                uint32_t got = d ? (uint32_t)fread(d, 1, want, f) : 0;
                for (uint32_t at = 4; at + 8 <= got;) {
                    uint32_t len = get32(d + at + 4, big);
                    if (len > size - at - 8) {
                        char name[24];
                        chunk_name(name, d + at);
                        st = nf_fail(NF_ERR_CORRUPT,
                                     "%s: damaged WAV metadata: LIST entry '%s' claims %u bytes, only %u are left in its chunk",
                                     path, name, len, size - at - 8);
                        break;
                    }
                    at += 8 + len + (len & 1);
                }
                free(d);
                long long left = fsize - body;
                if (!st && size > left)
                    st = nf_fail(NF_ERR_CORRUPT,
                                 "%s: damaged WAV metadata: LIST chunk claims %u bytes, only %lld are left in the file",
                                 path, size, left);
            }
            if (fseeko(f, next, SEEK_SET) != 0) break;
        }
    }
    fclose(f);
    return st;
}

static nf_status open_error(const char *path)
{
    int e = sf_error(NULL);
    const char *why = sf_error_number(e);
    switch (e) {
    case SF_ERR_UNRECOGNISED_FORMAT:
        return nf_fail(NF_ERR_FORMAT, "%s: not audio (libsndfile does not recognise the format)", path);
    case SF_ERR_MALFORMED_FILE:
        return nf_fail(NF_ERR_CORRUPT, "%s: damaged or truncated audio file (%s)", path, why);
    case SF_ERR_UNSUPPORTED_ENCODING:
        return nf_fail(NF_ERR_FORMAT, "%s: unsupported audio encoding (%s)", path, why);
    default:
        return nf_fail(NF_ERR_CORRUPT, "%s: damaged or truncated audio file (%s)", path, why);
    }
}

/* Every sample finite and, if max_level is finite, within it (one pass). */
static nf_status check_samples(const nf_audio *a, const char *name, float max_level)
{
    size_t n = (size_t)a->channels * (size_t)a->frames;
    name = name ? name : "audio";
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a->data[i]))
            return nf_fail(NF_ERR_NUMERIC, "%s: NaN or Inf sample (channel %zu, frame %zu)", name,
                           i / (size_t)a->frames, i % (size_t)a->frames);
        if (fabsf(a->data[i]) > max_level)
            return nf_fail(NF_ERR_NUMERIC, "%s: sample of %.3g (channel %zu, frame %zu) is far beyond any audio "
                           "level (the limit is %.0e); damaged float data?", name, (double)a->data[i],
                           i / (size_t)a->frames, i % (size_t)a->frames, (double)max_level);
    }
    return NF_OK;
}

nf_status nf_audio_check_finite(const nf_audio *a, const char *name) { return check_samples(a, name, INFINITY); }

/* Decoded samples: finite, and within NF_AUDIO_MAX_LEVEL. A float file can hold any
 * finite value; one near FLT_MAX (3.4e38) is not a level but damage, and it overflows to
 * Inf in the first filter that sums a few samples (the resampler), then to NaN in the
 * clip (found by fuzzing: tests/fuzz/RESULTS.md). Below the limit, mixing, resampling,
 * fades and normalising stay finite. */
static nf_status check_levels(const nf_audio *a, const char *path)
{
    return check_samples(a, path, NF_AUDIO_MAX_LEVEL);
}

/* libsndfile quietly shortens a WAV or AIFF whose data chunk runs past the end of the
 * file; its parser log is the only place that says so ("data : 40000 (should be
 * 19978)"). A truncated file is refused rather than half used. */
static int log_says_truncated(SNDFILE *sf)
{
    char log[8192];
    log[0] = 0;
    sf_command(sf, SFC_GET_LOG_INFO, log, sizeof log);
    for (char *line = log; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = 0;
        while (*line == ' ') line++;
        if ((!strncmp(line, "data", 4) || !strncmp(line, "SSND", 4)) && strstr(line, "(should be")) {
            /* Streaming writers put 0xFFFFFFFF there ("size unknown"): not truncation. */
            const char *colon = strchr(line, ':');
            unsigned long long claimed = colon ? strtoull(colon + 1, NULL, 10) : 0;
            if (claimed != 0xFFFFFFFFull) return 1;
        }
        if (strstr(line, "Exiting parser") || strstr(line, "Frame count read from")) return 1;
        line = end ? end + 1 : NULL;
    }
    return 0;
}

nf_status nf_audio_read(const char *path, double max_seconds, nf_audio *out)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path) return nf_fail(NF_ERR_ARG, "empty audio file path");
    long long size;
    nf_status s = check_input_path(path, &size);
    if (s) return s;

    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) return open_error(path);
    if (info.channels < 1 || info.samplerate < 1) {
        sf_close(sf);
        return nf_fail(NF_ERR_CORRUPT, "%s: bad header (%d channels, %d Hz)", path,
                       info.channels, info.samplerate);
    }
    if (log_says_truncated(sf)) {
        sf_close(sf);
        return nf_fail(NF_ERR_CORRUPT, "%s: truncated (the header promises more audio than the file holds)", path);
    }
    if (info.frames <= 0) {
        sf_close(sf);
        return nf_fail(NF_ERR_EMPTY, "%s: no audio frames", path);
    }
    sf_count_t want = info.frames;
    if (max_seconds > 0) {
        double m = ceil(max_seconds * info.samplerate);
        if (m < (double)want) want = (sf_count_t)m;
    }
    if (want > (sf_count_t)(1 << 30) / info.channels) {
        sf_close(sf);
        return nf_fail(NF_ERR_ARG, "%s: too long to decode whole (%lld frames); give a maximum "
                       "length", path, (long long)want);
    }
    /* libsndfile converts integer PCM to float in [-1, 1) (SFC_SET_NORM_FLOAT is on by
     * default); an integer file's full scale maps to 1.0. */
    float *inter = malloc((size_t)want * (size_t)info.channels * sizeof(float));
    s = nf_audio_alloc(out, info.channels, (int)want, info.samplerate);
    if (s || !inter) {
        free(inter);
        sf_close(sf);
        nf_audio_free(out);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory decoding %lld frames", path, (long long)want);
    }
    sf_count_t got = sf_readf_float(sf, inter, want);
    int err = sf_error(sf);
    sf_close(sf);
    if (got < want) {
        free(inter);
        nf_audio_free(out);
        if (err)
            return nf_fail(NF_ERR_CORRUPT, "%s: truncated or damaged (decoded %lld of %lld frames: %s)",
                           path, (long long)got, (long long)want, sf_error_number(err));
        return nf_fail(NF_ERR_CORRUPT, "%s: truncated (decoded %lld of %lld frames)", path,
                       (long long)got, (long long)want);
    }
    int C = info.channels;
    for (sf_count_t f = 0; f < want; f++)
        for (int c = 0; c < C; c++) out->data[(size_t)c * want + f] = inter[(size_t)f * C + c];
    free(inter);
    s = check_levels(out, path);
    if (s) nf_audio_free(out);
    return s;
}

/* The comment also goes in a chunk of our own in WAV and AIFF files, because
 * libsndfile's WAV reader drops an INFO/ICMT string of 2048 bytes or more; the chunk has
 * no such limit. Readers that do not know it skip it. */
#define COMMENT_CHUNK "nfmd"
#define WAV_ICMT_MAX 2047

/* Our comment chunk's text, or NULL if there is none (or it cannot be read). A chunk
 * claiming more than the file's `file_size` bytes is damaged: *claims gets its size and
 * nothing is allocated (a fuzzed 573-byte file claimed 3.3 GB). */
static char *read_comment_chunk(SNDFILE *sf, long long file_size, long long *claims)
{
    SF_CHUNK_INFO ci;
    memset(&ci, 0, sizeof ci);
    memcpy(ci.id, COMMENT_CHUNK, 4);
    ci.id_size = 4;
    *claims = 0;
    SF_CHUNK_ITERATOR *it = sf_get_chunk_iterator(sf, &ci);
    if (!it || sf_get_chunk_size(it, &ci) != SF_ERR_NO_ERROR || ci.datalen == 0) return NULL;
    if ((long long)ci.datalen > file_size) {
        *claims = (long long)ci.datalen;
        return NULL;
    }
    char *d = calloc(ci.datalen + 1, 1);
    if (!d) return NULL;
    ci.data = d;
    if (sf_get_chunk_data(it, &ci) != SF_ERR_NO_ERROR) {
        free(d);
        return NULL;
    }
    return d; /* NUL-terminated: the chunk is padded with zeros and we added one */
}

nf_status nf_audio_read_comment(const char *path, char **comment)
{
    *comment = NULL;
    long long size, claims;
    nf_status s = check_input_path(path, &size);
    if (s) return s;
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) return open_error(path);
    int major = info.format & SF_FORMAT_TYPEMASK;
    if (major == SF_FORMAT_WAV || major == SF_FORMAT_AIFF || major == SF_FORMAT_WAVEX) {
        *comment = read_comment_chunk(sf, size, &claims);
        if (claims) {
            sf_close(sf);
            return nf_fail(NF_ERR_CORRUPT, "%s: damaged metadata: the '%s' chunk claims %lld bytes, the file has %lld",
                           path, COMMENT_CHUNK, claims, size);
        }
        if (*comment) {
            sf_close(sf);
            return NF_OK;
        }
    }
    const char *c = sf_get_string(sf, SF_STR_COMMENT);
    if (c) {
        *comment = strdup(c);
        if (!*comment) {
            sf_close(sf);
            return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    sf_close(sf);
    return NF_OK;
}

nf_status nf_audio_to_channels(nf_audio *a, int channels)
{
    int C = a->channels, F = a->frames;
    if (channels == C) return NF_OK;
    if (channels < 1 || (channels > 2 && C != 1))
        return nf_fail(NF_ERR_ARG, "cannot convert %d channels to %d", C, channels);
    float *d = malloc((size_t)channels * (size_t)(F ? F : 1) * sizeof(float));
    if (!d) return nf_fail(NF_ERR_NOMEM, "channel conversion: out of memory");
    if (C == 1) {
        for (int c = 0; c < channels; c++) memcpy(d + (size_t)c * F, a->data, (size_t)F * sizeof(float));
    } else if (channels == 1) {
        for (int f = 0; f < F; f++) {
            double acc = 0;
            for (int c = 0; c < C; c++) acc += a->data[(size_t)c * F + f];
            d[f] = (float)(acc / C);
        }
    } else { /* C > 2 -> 2 */
        int nl = (C + 1) / 2, nr = C / 2;
        for (int f = 0; f < F; f++) {
            double l = 0, r = 0;
            for (int c = 0; c < C; c++) {
                if (c % 2 == 0) l += a->data[(size_t)c * F + f];
                else r += a->data[(size_t)c * F + f];
            }
            d[f] = (float)(l / nl);
            d[(size_t)F + f] = (float)(r / nr);
        }
    }
    free(a->data);
    a->data = d;
    a->channels = channels;
    return NF_OK;
}

int nf_resample_quality_from_name(const char *name)
{
    static const char *names[] = {"best", "medium", "fastest", "linear"};
    for (int i = 0; i < 4; i++)
        if (name && strcasecmp(name, names[i]) == 0) return i;
    return -1;
}

nf_status nf_audio_resample(nf_audio *a, int rate, nf_resample_quality q)
{
    if (rate < 1) return nf_fail(NF_ERR_ARG, "resample: bad target rate %d Hz", rate);
    if (rate == a->rate) return NF_OK;
    static const int conv[] = {SRC_SINC_BEST_QUALITY, SRC_SINC_MEDIUM_QUALITY, SRC_SINC_FASTEST, SRC_LINEAR};
    if ((int)q < 0 || (int)q > 3) return nf_fail(NF_ERR_ARG, "resample: bad quality %d", (int)q);
    double ratio = (double)rate / a->rate;
    long out_frames = lround(a->frames * ratio);
    if (out_frames > (1L << 30) / a->channels)
        return nf_fail(NF_ERR_ARG, "resample: output too long (%ld frames)", out_frames);
    float *d = calloc((size_t)a->channels * (size_t)(out_frames ? out_frames : 1), sizeof(float));
    if (!d) return nf_fail(NF_ERR_NOMEM, "resample: out of memory");
    /* Planar data: one mono conversion per channel, each with end_of_input so that the
     * filter's tail is flushed. A few frames short of round(F * ratio) stay zero. */
    for (int c = 0; c < a->channels && out_frames > 0 && a->frames > 0; c++) {
        SRC_DATA sd;
        memset(&sd, 0, sizeof sd);
        sd.data_in = a->data + (size_t)c * a->frames;
        sd.input_frames = a->frames;
        sd.data_out = d + (size_t)c * out_frames;
        sd.output_frames = out_frames;
        sd.src_ratio = ratio;
        int e = src_simple(&sd, conv[q], 1);
        if (e) {
            free(d);
            return nf_fail(NF_ERR_INTERNAL, "resample %d -> %d Hz: %s", a->rate, rate, src_strerror(e));
        }
    }
    free(a->data);
    a->data = d;
    a->frames = (int)out_frames;
    a->rate = rate;
    return NF_OK;
}

nf_status nf_audio_fit_length(nf_audio *a, int frames, int fade_frames)
{
    if (frames < 1) return nf_fail(NF_ERR_ARG, "fit length: bad length %d", frames);
    int F = a->frames, C = a->channels;
    if (frames == F) return NF_OK;
    float *d = calloc((size_t)C * (size_t)frames, sizeof(float));
    if (!d) return nf_fail(NF_ERR_NOMEM, "fit length: out of memory");
    int keep = F < frames ? F : frames;
    for (int c = 0; c < C; c++)
        memcpy(d + (size_t)c * frames, a->data + (size_t)c * F, (size_t)keep * sizeof(float));
    if (F > frames && fade_frames > 0) {
        int n = fade_frames < frames ? fade_frames : frames;
        /* Half-cosine fade over the last n kept frames, reaching 0 at the one after the
         * cut: g(i) = 0.5 (1 + cos(pi (i + 1) / (n + 1))), i = 0..n-1. */
        for (int i = 0; i < n; i++) {
            float g = 0.5f * (1.0f + cosf((float)M_PI * (float)(i + 1) / (float)(n + 1)));
            for (int c = 0; c < C; c++) d[(size_t)c * frames + (frames - n + i)] *= g;
        }
    }
    free(a->data);
    a->data = d;
    a->frames = frames;
    return NF_OK;
}

float nf_audio_peak(const nf_audio *a)
{
    float p = 0;
    size_t n = (size_t)a->channels * (size_t)a->frames;
    for (size_t i = 0; i < n; i++) {
        float v = fabsf(a->data[i]);
        if (v > p) p = v;
    }
    return p;
}

float nf_audio_rms(const nf_audio *a)
{
    size_t n = (size_t)a->channels * (size_t)a->frames;
    if (!n) return 0;
    double acc = 0;
    for (size_t i = 0; i < n; i++) acc += (double)a->data[i] * a->data[i];
    return (float)sqrt(acc / n);
}

static void scale(nf_audio *a, float g)
{
    size_t n = (size_t)a->channels * (size_t)a->frames;
    for (size_t i = 0; i < n; i++) a->data[i] *= g;
}

float nf_audio_peak_normalize(nf_audio *a, float target)
{
    float p = nf_audio_peak(a);
    if (p <= 0) return 1;
    float g = target / p;
    scale(a, g);
    return g;
}

float nf_audio_rms_normalize(nf_audio *a, float target_rms)
{
    float r = nf_audio_rms(a);
    if (r <= 0) return 1;
    float g = target_rms / r;
    scale(a, g);
    return g;
}

int nf_audio_trim_leading_silence(nf_audio *a, float threshold_db)
{
    float thr = powf(10.0f, threshold_db / 20.0f); /* dBFS -> linear amplitude */
    int F = a->frames, C = a->channels, first = -1;
    for (int f = 0; f < F && first < 0; f++)
        for (int c = 0; c < C; c++)
            if (fabsf(a->data[(size_t)c * F + f]) >= thr) {
                first = f;
                break;
            }
    if (first <= 0) return 0;
    int nf = F - first;
    for (int c = 0; c < C; c++)
        memmove(a->data + (size_t)c * nf, a->data + (size_t)c * F + first, (size_t)nf * sizeof(float));
    a->frames = nf;
    return first;
}

static nf_file_format format_from_ext(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return NF_FILE_AUTO;
    if (!strcasecmp(dot, ".wav") || !strcasecmp(dot, ".wave")) return NF_FILE_WAV;
    if (!strcasecmp(dot, ".flac")) return NF_FILE_FLAC;
    if (!strcasecmp(dot, ".aif") || !strcasecmp(dot, ".aiff")) return NF_FILE_AIFF;
    return NF_FILE_AUTO;
}

nf_status nf_audio_write(const char *path, const nf_audio *a, nf_file_format fmt,
                         nf_sample_format bits, const char *comment)
{
    if (!path || !*path) return nf_fail(NF_ERR_ARG, "empty output path");
    if (!a || !a->data || a->channels < 1 || a->frames < 1 || a->rate < 1)
        return nf_fail(NF_ERR_ARG, "%s: nothing to write (empty audio)", path);
    if (fmt == NF_FILE_AUTO) fmt = format_from_ext(path);
    if (fmt == NF_FILE_AUTO)
        return nf_fail(NF_ERR_ARG, "%s: cannot tell the format from the extension (use .wav, .flac or .aiff)", path);
    int major = fmt == NF_FILE_WAV ? SF_FORMAT_WAV : fmt == NF_FILE_FLAC ? SF_FORMAT_FLAC : SF_FORMAT_AIFF;
    int sub;
    switch (bits) {
    case NF_SAMPLE_PCM16: sub = SF_FORMAT_PCM_16; break;
    case NF_SAMPLE_PCM24: sub = SF_FORMAT_PCM_24; break;
    case NF_SAMPLE_FLOAT32:
        if (fmt == NF_FILE_FLAC)
            return nf_fail(NF_ERR_ARG, "%s: FLAC stores 16- or 24-bit integers only, not 32-bit float "
                           "(use WAV or AIFF for float)", path);
        sub = SF_FORMAT_FLOAT;
        break;
    default: return nf_fail(NF_ERR_ARG, "%s: bad bit depth %d (16, 24 or 32 float)", path, (int)bits);
    }
    nf_status s = nf_audio_check_finite(a, path);
    if (s) return s;

    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = a->rate;
    info.channels = a->channels;
    info.format = major | sub;
    if (!sf_format_check(&info))
        return nf_fail(NF_ERR_ARG, "%s: libsndfile cannot write %d channels at %d Hz in this format",
                       path, a->channels, a->rate);
    char tmp[NF_PATH_MAX];
    s = nf_atomic_begin(path, tmp, sizeof tmp);
    if (s) return s;

    int C = a->channels, F = a->frames;
    enum { CHUNK = 4096 };
    float *inter = malloc((size_t)CHUNK * C * sizeof(float));
    if (!inter) return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    SNDFILE *sf = sf_open(tmp, SFM_WRITE, &info);
    if (!sf) {
        free(inter);
        nf_atomic_abort(tmp);
        return nf_fail(NF_ERR_IO, "%s: cannot create (%s)", path, sf_strerror(NULL));
    }
    /* Integer formats: clip instead of wrapping around on values past full scale. */
    sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    /* No PEAK chunk: libsndfile stamps it with the time of writing, so the same sound
     * rendered twice would give files that differ in their bytes. */
    sf_command(sf, SFC_SET_ADD_PEAK_CHUNK, NULL, SF_FALSE);
    /* Strings go before the first sample: FLAC writes its vorbis comment in the header. */
    int chunk_failed = 0;
    if (comment && *comment && fmt != NF_FILE_FLAC) {
        size_t len = strlen(comment) + 1; /* keep the NUL: the chunk is read back as a C string */
        SF_CHUNK_INFO ci;
        memset(&ci, 0, sizeof ci);
        memcpy(ci.id, COMMENT_CHUNK, 4);
        ci.id_size = 4;
        ci.datalen = (unsigned)len;
        ci.data = (void *)comment;
        chunk_failed = sf_set_chunk(sf, &ci) != SF_ERR_NO_ERROR;
    }
    /* In WAV, a comment too long for libsndfile's own reader lives in the chunk only. */
    int put_string = comment && *comment && !(fmt == NF_FILE_WAV && strlen(comment) > WAV_ICMT_MAX);
    if (chunk_failed || (put_string && sf_set_string(sf, SF_STR_COMMENT, comment) != 0)) {
        char why[256];
        snprintf(why, sizeof why, "%s", sf_strerror(sf));
        sf_close(sf);
        free(inter);
        nf_atomic_abort(tmp);
        return nf_fail(NF_ERR_IO, "%s: cannot store the comment metadata (%s)", path, why);
    }
    sf_set_string(sf, SF_STR_SOFTWARE, "noisefloor");
    for (int f0 = 0; f0 < F; f0 += CHUNK) {
        int n = F - f0 < CHUNK ? F - f0 : CHUNK;
        for (int f = 0; f < n; f++)
            for (int c = 0; c < C; c++) inter[(size_t)f * C + c] = a->data[(size_t)c * F + f0 + f];
        if (sf_writef_float(sf, inter, n) != n) {
            char why[256];
            snprintf(why, sizeof why, "%s", sf_strerror(sf));
            sf_close(sf);
            free(inter);
            nf_atomic_abort(tmp);
            return nf_fail(NF_ERR_IO, "%s: write failed (%s)", path, why);
        }
    }
    free(inter);
    if (sf_close(sf) != 0) {
        nf_atomic_abort(tmp);
        return nf_fail(NF_ERR_IO, "%s: write failed when closing", path);
    }
    return nf_atomic_commit(tmp, path);
}
