/* noisefloor procedural drums: a drum corpus that noisefloor synthesises itself, so
 * that a model trained on it can be redistributed with the project.
 *
 * Seven classes, each a small subtractive/FM-free synthesis recipe whose parameters
 * (pitch, sweep, decays, brightness, noise mix, ...) are drawn from the counter RNG
 * (nf_rng.h) from a seed: the same (class, seed, rate, length) always gives the same
 * samples, different seeds give different hits, and the classes stay distinguishable.
 *
 * Every hit starts at its transient (no fade-in: the peak is within the first 20 ms),
 * is peak-normalised to -1 dBFS, is finite, and has a short fade-out over its last
 * 10 ms so that a long class cut by the clip length does not end in a click. */
#ifndef NF_DRUMS_H
#define NF_DRUMS_H

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    NF_DRUM_KICK = 0,
    NF_DRUM_SNARE,
    NF_DRUM_CLOSEDHAT,
    NF_DRUM_OPENHAT,
    NF_DRUM_TOM,
    NF_DRUM_CLAP,
    NF_DRUM_CYMBAL,
    NF_DRUM_NUM_CLASSES
} nf_drum_class;

/* "kick", "snare", "closedhat", "openhat", "tom", "clap", "cymbal"; NULL out of range. */
const char *nf_drum_class_name(int cls);
/* The class with that name, or -1. */
int nf_drum_class_from_name(const char *name);

/* The peak every rendered hit is normalised to: -1 dBFS. */
#define NF_DRUM_PEAK 0.8912509f

/* Render one hit of class `cls` with parameters drawn from `seed` into out[length].
 * sample_rate in [8000, 384000]; length >= 1 frame (the sound is cut, with the 10 ms
 * fade, if the clip is shorter than its natural decay). Deterministic; allocates a
 * scratch buffer of `length` floats. */
nf_status nf_drum_render(int cls, uint64_t seed, int sample_rate, int length, float *out);

/* The seed of hit `index` of class `cls` in the corpus made from `corpus_seed` (a hash,
 * so that corpora of different seeds share no hit). */
uint64_t nf_drum_corpus_hit_seed(uint64_t corpus_seed, int cls, int index);

/* Render a whole corpus in memory: out[(cls * per_class + i) * length + t] is hit i of
 * class cls, labels[cls * per_class + i] = cls (labels may be NULL). The same hits as
 * nf_drum_corpus_write() writes. */
nf_status nf_drum_corpus_render(int per_class, int sample_rate, int length, uint64_t corpus_seed,
                                float *out, int *labels);

/* Write a labelled corpus: dir/<class>/<class>_NNN.wav (NNN = 000, 001, ...), mono
 * 16-bit WAV, per_class hits per class, each written atomically. Creates `dir` and its
 * class folders as needed; existing files of the same names are replaced. */
nf_status nf_drum_corpus_write(const char *dir, int per_class, int sample_rate, int length,
                               uint64_t corpus_seed);

#ifdef __cplusplus
}
#endif
#endif
