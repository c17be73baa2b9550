/* noisefloor STFT: short-time Fourier transform and its exact inverse, on FFTW plans
 * made once and reused.
 *
 * Conventions (shared by the model layout below and by nf_repr):
 * - window: periodic Hann, w[n] = 0.5 - 0.5 cos(2 pi n / n_fft), n = 0..n_fft-1;
 * - hop: n_fft/4 by default; any hop in [1, n_fft/2];
 * - centred framing as torch.stft(center=True) but with ZERO padding of n_fft/2 at each
 *   end: frame f covers input samples [f*hop - n_fft/2, f*hop + n_fft/2), and there are
 *   frames = 1 + L / hop (integer division) frames, e.g. L = 16384, n_fft = 512,
 *   hop = 128 -> 129 frames (plus any lead frames, see nf_stft_set_lead);
 * - X[f][k] = sum_n w[n] x[f*hop - n_fft/2 + n] e^{-2 pi i k n / n_fft}, k = 0..n_fft/2
 *   (unnormalised, FFTW's r2c convention);
 * - inverse: weighted overlap-add of w * irfft(X) divided by sum_f w^2 (the least-squares
 *   ISTFT of Griffin & Lim 1984), which is the input to float precision when X
 *   is unchanged.
 *
 * Threads: create/free take a global lock (FFTW's planner is not thread-safe) and are
 * not real-time safe. A plan holds its own scratch buffers, so one plan must not be used
 * by two threads at once; make one per thread. */
#ifndef NF_STFT_H
#define NF_STFT_H

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nf_stft nf_stft;

/* n_fft: a power of two >= 8; hop: 0 for n_fft/4, else 1..n_fft/2. */
nf_status nf_stft_create(int n_fft, int hop, nf_stft **out);
void nf_stft_free(nf_stft *s);

int nf_stft_n_fft(const nf_stft *s);
int nf_stft_hop(const nf_stft *s);
int nf_stft_bins(const nf_stft *s);             /* n_fft/2 + 1 */
int nf_stft_frames(const nf_stft *s, int length); /* lead + 1 + length / hop */

/* Lead frames: `frames` extra frames before frame 0, centred at -frames*hop, ..., -hop,
 * on the silence before the sound (0 when created). Frame f then covers input samples
 * [(f - lead)*hop - n_fft/2, (f - lead)*hop + n_fft/2). A model then sees a sound's onset
 * a few frames in from the edge of its input, with silence before it, as in the
 * recordings it was cut from; the inverse still returns samples 0..L-1 only, so a
 * decoder keeps the silence before the sound silent. */
#define NF_STFT_MAX_LEAD 4096
nf_status nf_stft_set_lead(nf_stft *s, int frames);
int nf_stft_lead(const nf_stft *s);

/* x [L] -> re, im [bins][frames] (frequency-major, the model's layout). */
nf_status nf_stft_forward(nf_stft *s, const float *x, int L, float *re, float *im);
/* re, im [bins][frames] -> x [L]. The imaginary parts of the DC and Nyquist bins are
 * ignored (a real signal has none). */
nf_status nf_stft_inverse(nf_stft *s, const float *re, const float *im, int L, float *x);

/* Model layout of C channels: a [2 * bins * C][frames] array whose rows are, for audio
 * channel c = 0..C-1 in turn, first the real parts of bins 0..bins-1, then their
 * imaginary parts:
 *     row c*2*bins + k        = Re Y[k],   row c*2*bins + bins + k = Im Y[k],
 * where Y = |X|^p X / |X| is the amplitude-compressed spectrum (p = 1: plain STFT;
 * p = 0.5: square-root magnitude, phase kept). Its exact inverse is
 * X = |Y|^(1/p) Y / |Y| (0 where |Y| = 0).
 * audio: [C][L]; spec: [2*bins*C][frames]. */
int nf_stft_layout_channels(const nf_stft *s, int C);
nf_status nf_stft_encode(nf_stft *s, const float *audio, int C, int L, float power, float *spec);
nf_status nf_stft_decode(nf_stft *s, const float *spec, int C, int L, float power, float *audio);

/* Batched: audio [B][C][L] <-> spec [B][2*bins*C][frames]. */
nf_status nf_stft_encode_batch(nf_stft *s, const float *audio, int B, int C, int L, float power,
                               float *spec);
nf_status nf_stft_decode_batch(nf_stft *s, const float *spec, int B, int C, int L, float power,
                               float *audio);

/* Magnitude layout of C channels, for a model that should not have to learn phase: per
 * channel, first the compressed complex values of the lowest P = phase_bins bins (rows
 * Re Y[0..P-1], then Im Y[0..P-1], Y = g(|X|) X / |X|), then the compressed magnitudes
 * g(|X[k]|) of bins k = P..bins-1 (their phase is dropped): (bins + P) rows per channel,
 * [frames] columns. g(m) = m^p, or with log_floor > 0 g(m) = log(1 + m / log_floor):
 * silence is 0, the level log_floor is log 2, and each further factor e adds about 1, so
 * quiet tails and loud hits get the same resolution.
 * The decoder has to invent the dropped phases: nf_stft_mag_decode runs the fast
 * Griffin-Lim algorithm (Perraudin, Balazs & Sondergaard 2013: Griffin & Lim's
 * projections with momentum 0.99) for `iters` iterations from a fixed pseudo-random start
 * phase, keeping the first P bins at their given complex values; so the same input always
 * gives the same audio. Low partials (a kick's fundamental spans one or two bins) are
 * where phase retrieval is weakest, hence phase_bins. Negative or NaN values (a model's
 * output can undershoot) count as 0. Both calls allocate scratch: not real-time safe. */
int nf_stft_mag_channels(const nf_stft *s, int C, int phase_bins);
nf_status nf_stft_mag_encode(nf_stft *s, const float *audio, int C, int L, float power, float log_floor,
                             int phase_bins, float *out);
nf_status nf_stft_mag_decode(nf_stft *s, const float *in, int C, int L, float power, float log_floor,
                             int phase_bins, int iters, float *audio);
/* The amplitude compression on its own, in place on n complex values re[i*stride],
 * im[i*stride] (stride 1: separate arrays; stride 2 with im = re + 1: interleaved):
 * Y = |X|^p X/|X|. nf_stft_expand is its inverse. */
void nf_stft_compress(float *re, float *im, size_t n, float power, size_t stride);
void nf_stft_expand(float *re, float *im, size_t n, float power, size_t stride);

#ifdef __cplusplus
}
#endif
#endif
