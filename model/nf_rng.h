/* Counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
 *
 * Every number is a pure function of (seed, stream, index), so a buffer of noise is the
 * same whatever the thread count, the batch split or the order in which it is drawn.
 * Streams separate independent uses of one seed (the start noise of example k, the
 * noise added at sampler step i, dropout masks, ...). */
#ifndef NF_RNG_H
#define NF_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Four 32-bit random words for counter `ctr` (128 bits as two halves) under `key`. */
void nf_philox4x32(uint64_t key, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4]);

/* Standard normal numbers: out[i] = N(0,1) number number (offset + i) of (seed, stream). */
void nf_randn(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset);
/* Uniform numbers in [0, 1): out[i] = number (offset + i) of (seed, stream). */
void nf_randu(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset);
/* One uniform double in [0, 1) and one uniform integer in [0, n), by index. */
double nf_rand_uniform1(uint64_t seed, uint64_t stream, uint64_t index);
uint64_t nf_rand_below(uint64_t n, uint64_t seed, uint64_t stream, uint64_t index);

/* A sequential generator on top of the counter one, for code that draws a few numbers
 * at a time (data order, augmentation). Its whole state is the three fields, so it can
 * be saved in a training-state file and resumed exactly. */
typedef struct {
    uint64_t seed, stream, index;
} nf_rng;

static inline void nf_rng_init(nf_rng *r, uint64_t seed, uint64_t stream)
{
    r->seed = seed;
    r->stream = stream;
    r->index = 0;
}
double nf_rng_uniform(nf_rng *r);          /* [0, 1) */
double nf_rng_normal(nf_rng *r);           /* N(0, 1) */
uint64_t nf_rng_below(nf_rng *r, uint64_t n); /* [0, n) */

/* Derive a stream id from a name and numbers, for readable call sites:
 * nf_stream_id("start-noise", example, 0). */
uint64_t nf_stream_id(const char *name, uint64_t a, uint64_t b);

#ifdef __cplusplus
}
#endif
#endif
