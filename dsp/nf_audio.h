/* noisefloor audio: decode, convert, normalise and encode sound files.
 *
 * Audio is planar float: data[channel * frames + frame], nominally in [-1, 1].
 * Reading goes through libsndfile (WAV 16/24/32-bit int and float, FLAC, AIFF, OGG,
 * anything else libsndfile opens); resampling through libsamplerate.
 *
 * Every failure returns an nf_status and leaves a one-line message naming the file and
 * the problem (nf_last_error()). The in-place conversions keep the nf_audio valid on
 * failure (they only swap the buffer once the new one is complete). */
#ifndef NF_AUDIO_H
#define NF_AUDIO_H

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float *data; /* [channels][frames], malloc'd; owned by the struct */
    int channels;
    int frames;
    int rate;    /* Hz */
} nf_audio;

/* A zeroed buffer of the given shape. */
nf_status nf_audio_alloc(nf_audio *a, int channels, int frames, int rate);
/* Free the samples and zero the struct (safe on a zeroed struct, and twice). */
void nf_audio_free(nf_audio *a);

/* Decoded samples beyond this magnitude are refused as damage (float files only can hold
 * them; 1e30 is 600 dB above full scale, far past floats written in integer units, and
 * far enough below FLT_MAX that the processing of a clip cannot overflow). */
#define NF_AUDIO_MAX_LEVEL 1e30f

/* Decode `path` to float. max_seconds > 0 stops after that many seconds (so a long file
 * in a dataset is not decoded whole); <= 0 reads everything. Errors (one line, with the
 * path): missing / dangling symlink, a directory, unreadable, empty (0 bytes), not audio,
 * no audio frames, truncated, NaN or Inf samples, samples beyond NF_AUDIO_MAX_LEVEL. */
nf_status nf_audio_read(const char *path, double max_seconds, nf_audio *out);

/* The comment string stored in a file's metadata (WAV LIST/INFO ICMT, FLAC/OGG vorbis
 * comment, AIFF comment), as a new malloc'd string; *comment = NULL if there is none. */
nf_status nf_audio_read_comment(const char *path, char **comment);

/* NF_ERR_NUMERIC if any sample is NaN or Inf; `name` goes in the message. */
nf_status nf_audio_check_finite(const nf_audio *a, const char *name);

/* Channel conversion, in place. 1 -> N duplicates; N -> 1 is the mean of the channels
 * (a mean, not a sum, so that a downmix does not clip); N > 2 -> 2 averages the even
 * channels into the left and the odd ones into the right (0, 2, 4.. -> L; 1, 3, 5.. -> R).
 * Any other change (e.g. 2 -> 6) is NF_ERR_ARG. */
nf_status nf_audio_to_channels(nf_audio *a, int channels);

typedef enum {
    NF_RESAMPLE_BEST = 0,  /* SRC_SINC_BEST_QUALITY */
    NF_RESAMPLE_MEDIUM,    /* SRC_SINC_MEDIUM_QUALITY */
    NF_RESAMPLE_FASTEST,   /* SRC_SINC_FASTEST */
    NF_RESAMPLE_LINEAR     /* SRC_LINEAR (previews only: aliases) */
} nf_resample_quality;

/* Parse "best", "medium", "fastest", "linear"; -1 for an unknown name. */
int nf_resample_quality_from_name(const char *name);

/* Resample in place to `rate` (no-op if equal). The output has round(frames * ratio)
 * frames and is time-aligned with the input (libsamplerate's converters have no delay). */
nf_status nf_audio_resample(nf_audio *a, int rate, nf_resample_quality q);

/* Crop or zero-pad in place to exactly `frames`. When cropping, the last `fade_frames`
 * of the kept part get a half-cosine fade-out so that the cut does not click. Never a
 * fade-in: the start (a drum's transient) is left untouched. Padding adds silence after
 * the sound's own end and needs no fade. */
nf_status nf_audio_fit_length(nf_audio *a, int frames, int fade_frames);

/* Peak over all channels and frames (absolute value). */
float nf_audio_peak(const nf_audio *a);
/* RMS over all channels and frames. */
float nf_audio_rms(const nf_audio *a);
/* Scale so that the peak is `target` (e.g. 1.0, or 0.891 for -1 dBFS). A silent clip is
 * left as it is. Returns the gain applied (1 for a silent clip). */
float nf_audio_peak_normalize(nf_audio *a, float target);
/* Scale so that the RMS is `target_rms` (linear). Returns the gain applied. */
float nf_audio_rms_normalize(nf_audio *a, float target_rms);

/* Remove the frames before the first one whose absolute value (in any channel) reaches
 * `threshold_db` dBFS (e.g. -60). Returns the number of frames removed; a clip that
 * never reaches the threshold is left as it is (returns 0). */
int nf_audio_trim_leading_silence(nf_audio *a, float threshold_db);

typedef enum {
    NF_FILE_AUTO = 0, /* from the path's extension (.wav, .flac, .aif/.aiff) */
    NF_FILE_WAV,
    NF_FILE_FLAC,
    NF_FILE_AIFF
} nf_file_format;

typedef enum {
    NF_SAMPLE_PCM16 = 16,
    NF_SAMPLE_PCM24 = 24,
    NF_SAMPLE_FLOAT32 = 32 /* WAV and AIFF only: FLAC has no float samples */
} nf_sample_format;

/* Encode `a` to `path` atomically (temporary file, then rename), with an optional
 * comment string (any text, e.g. JSON with the model hash, seed and settings) stored in
 * the file's metadata and readable with nf_audio_read_comment(). Integer formats clip
 * to [-1, 1]; NaN/Inf samples are refused. */
nf_status nf_audio_write(const char *path, const nf_audio *a, nf_file_format fmt,
                         nf_sample_format bits, const char *comment);

#ifdef __cplusplus
}
#endif
#endif
