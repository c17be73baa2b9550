/* Internal: the fast exp shared by the layer kernels (not installed). */
#ifndef NF_NN_FASTEXP_H
#define NF_NN_FASTEXP_H

#include <stdint.h>
#include <string.h>

/* exp(x): x = n ln2 + r with |r| <= ln2/2 (Cody & Waite split of ln2), exp(r) by the
 * Cephes expf minimax polynomial, 2^n assembled in the exponent bits. Relative error
 * about 2e-7 over the clamped range [-87, 88]. The rounding constant 1.5*2^23 rounds t
 * to the nearest integer in round-to-nearest mode (no -ffast-math in this build).
 * static inline so that the loops calling it vectorise. */
static inline float nf_fastexp_inline(float x_in)
{
    /* The clamp sends NaN to -87 so that the integer conversion below stays defined
     * (a NaN cast to int is undefined behaviour); the NaN is given back at the end. */
    float x = x_in > -87.0f ? x_in : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    float t = x * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    float e = p * s;
    return x_in == x_in ? e : x_in; /* NaN in, NaN out */
}

#endif
