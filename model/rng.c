/* Philox4x32-10: Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011. Constants from the paper's reference implementation. */
#include "nf_rng.h"
#include "nf_nn.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void nf_philox4x32(uint64_t key, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)ctr_lo, c1 = (uint32_t)(ctr_lo >> 32);
    uint32_t c2 = (uint32_t)ctr_hi, c3 = (uint32_t)(ctr_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* 53-bit uniform in (0, 1] from two words: never 0, so log() below is finite. */
static inline double u53_open0(uint32_t hi, uint32_t lo)
{
    uint64_t v = (((uint64_t)hi << 21) ^ (uint64_t)(lo >> 11)) & ((1ull << 53) - 1);
    return ((double)v + 1.0) * (1.0 / 9007199254740992.0);
}

static inline double u53(uint32_t hi, uint32_t lo)
{
    uint64_t v = (((uint64_t)hi << 21) ^ (uint64_t)(lo >> 11)) & ((1ull << 53) - 1);
    return (double)v * (1.0 / 9007199254740992.0);
}

/* Normal number `index`: one Philox block gives a Box-Muller pair (even/odd index). */
static double normal_at(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint32_t w[4];
    nf_philox4x32(seed, index >> 1, stream, w);
    double u1 = u53_open0(w[0], w[1]);
    double u2 = u53(w[2], w[3]);
    double r = sqrt(-2.0 * log(u1));
    double a = 6.283185307179586476925 * u2;
    return (index & 1) ? r * sin(a) : r * cos(a);
}

static void randn_serial(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset)
{
    size_t i = 0;
    /* Odd start: the first number is the second half of a pair. */
    if (n && ((offset + i) & 1)) {
        out[i] = (float)normal_at(seed, stream, offset + i);
        i++;
    }
    for (; i + 1 < n; i += 2) {
        uint32_t w[4];
        nf_philox4x32(seed, (offset + i) >> 1, stream, w);
        double u1 = u53_open0(w[0], w[1]);
        double u2 = u53(w[2], w[3]);
        double r = sqrt(-2.0 * log(u1));
        double a = 6.283185307179586476925 * u2;
        out[i] = (float)(r * cos(a));
        out[i + 1] = (float)(r * sin(a));
    }
    if (i < n) out[i] = (float)normal_at(seed, stream, offset + i);
}

/* Number k depends on (seed, stream, offset + k) only, so blocks of it can be drawn by
 * different threads (on the pool, nf_par_range) with the same result. A training step's
 * noise (66,000 numbers for ref-stft at batch 1) cost ~2 ms on one thread. */
#define RANDN_BLOCK 4096
typedef struct {
    float *out;
    uint64_t seed, stream, offset;
} randn_job;

static void randn_range(void *v, size_t lo, size_t hi)
{
    const randn_job *J = v;
    randn_serial(J->out + lo, hi - lo, J->seed, J->stream, J->offset + lo);
}

void nf_randn(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset)
{
    if (n < 2 * RANDN_BLOCK) {
        randn_serial(out, n, seed, stream, offset);
        return;
    }
    randn_job J = {out, seed, stream, offset};
    /* work: the generator costs about as much per number as 16 elementwise passes. */
    nf_par_range(nf_nn_threads(), n, RANDN_BLOCK, 16 * n, randn_range, &J);
}

double nf_rand_uniform1(uint64_t seed, uint64_t stream, uint64_t index)
{
    uint32_t w[4];
    /* High bit of the counter separates uniforms from the normals' blocks. */
    nf_philox4x32(seed, index, stream ^ 0x8000000000000000ull, w);
    return u53(w[0], w[1]);
}

void nf_randu(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset)
{
    for (size_t i = 0; i < n; i++) {
        float u = (float)nf_rand_uniform1(seed, stream, offset + i);
        out[i] = u < 1.0f ? u : 0x1.fffffep-1f; /* rounding to float may reach 1 */
    }
}

uint64_t nf_rand_below(uint64_t n, uint64_t seed, uint64_t stream, uint64_t index)
{
    if (n <= 1) return 0;
    uint64_t v = (uint64_t)(nf_rand_uniform1(seed, stream, index) * (double)n);
    return v < n ? v : n - 1;
}

double nf_rng_uniform(nf_rng *r) { return nf_rand_uniform1(r->seed, r->stream, r->index++); }

double nf_rng_normal(nf_rng *r) { return normal_at(r->seed, r->stream ^ 0x4000000000000000ull, r->index++); }

uint64_t nf_rng_below(nf_rng *r, uint64_t n) { return nf_rand_below(n, r->seed, r->stream, r->index++); }

uint64_t nf_stream_id(const char *name, uint64_t a, uint64_t b)
{
    /* FNV-1a over the name, then mixed with the numbers through one Philox block. */
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)name; p && *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    uint32_t w[4];
    nf_philox4x32(h, a, b, w);
    return ((uint64_t)w[0] << 32 | w[1]) & 0x3fffffffffffffffull;
}
