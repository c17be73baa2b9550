/* Audio <-> model tensor: waveform (identity) or compressed STFT, with a scalar
 * normalisation. */
#include "nf_repr.h"

#include "nf_stft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct nf_repr {
    nf_repr_config cfg;
    nf_stft *stft; /* NULL for "wave" */
};

int nf_repr_kind_from_name(const char *name)
{
    if (!name) return -1;
    if (!strcasecmp(name, "wave")) return NF_REPR_WAVE;
    if (!strcasecmp(name, "stft")) return NF_REPR_STFT;
    if (!strcasecmp(name, "mag")) return NF_REPR_MAG;
    return -1;
}

const char *nf_repr_kind_name(nf_repr_kind k)
{
    return k == NF_REPR_STFT ? "stft" : k == NF_REPR_MAG ? "mag" : "wave";
}

void nf_repr_config_default(nf_repr_config *c, nf_repr_kind kind, int channels)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->channels = channels;
    c->n_fft = 512;
    c->hop = 128;
    c->power = 0.5f;
    c->gl_iters = NF_REPR_GL_ITERS;
    c->scale = 1.0f;
}

float nf_repr_log_floor(int n_fft) { return 1e-3f * (float)n_fft / 4.0f; }

nf_status nf_repr_create(const nf_repr_config *cfg, nf_repr **out)
{
    *out = NULL;
    if (cfg->kind != NF_REPR_WAVE && cfg->kind != NF_REPR_STFT && cfg->kind != NF_REPR_MAG)
        return nf_fail(NF_ERR_ARG, "representation: unknown kind %d", (int)cfg->kind);
    if (cfg->channels < 1)
        return nf_fail(NF_ERR_ARG, "representation: bad channel count %d", cfg->channels);
    if (cfg->scale < 0 || !isfinite(cfg->scale))
        return nf_fail(NF_ERR_ARG, "representation: bad scale %g", cfg->scale);
    nf_repr *r = calloc(1, sizeof *r);
    if (!r) return nf_fail(NF_ERR_NOMEM, "representation: out of memory");
    r->cfg = *cfg;
    if (r->cfg.scale == 0) r->cfg.scale = 1;
    if (cfg->kind == NF_REPR_WAVE) r->cfg.lead_frames = 0;
    if (cfg->kind != NF_REPR_WAVE) {
        if (r->cfg.n_fft == 0) r->cfg.n_fft = 512;
        if (r->cfg.gl_iters == 0) r->cfg.gl_iters = NF_REPR_GL_ITERS;
        if (!(r->cfg.log_floor >= 0) || !isfinite(r->cfg.log_floor)) {
            free(r);
            return nf_fail(NF_ERR_ARG, "representation: bad log floor %g", cfg->log_floor);
        }
        if (r->cfg.gl_iters < 0 || r->cfg.gl_iters > 10000) {
            free(r);
            return nf_fail(NF_ERR_ARG, "representation: Griffin-Lim iterations must be in 1..10000 (got %d)",
                           cfg->gl_iters);
        }
        if (r->cfg.power == 0) r->cfg.power = 0.5f;
        if (!(r->cfg.power > 0) || r->cfg.power > 4) {
            free(r);
            return nf_fail(NF_ERR_ARG, "representation: compression power must be in (0, 4] (got %g)",
                           cfg->power);
        }
        nf_status s = nf_stft_create(r->cfg.n_fft, r->cfg.hop, &r->stft);
        if (s) {
            free(r);
            return s;
        }
        r->cfg.hop = nf_stft_hop(r->stft);
        s = nf_stft_set_lead(r->stft, r->cfg.lead_frames);
        if (s) {
            nf_repr_free(r);
            return s;
        }
        if (r->cfg.kind != NF_REPR_MAG) r->cfg.phase_bins = 0;
        if (r->cfg.phase_bins < 0 || r->cfg.phase_bins > nf_stft_bins(r->stft)) {
            int pb = r->cfg.phase_bins, bins = nf_stft_bins(r->stft);
            nf_repr_free(r);
            return nf_fail(NF_ERR_ARG, "representation: phase bins must be in 0..%d (got %d)", bins, pb);
        }
    }
    *out = r;
    return NF_OK;
}

void nf_repr_free(nf_repr *r)
{
    if (!r) return;
    nf_stft_free(r->stft);
    free(r);
}

const nf_repr_config *nf_repr_get_config(const nf_repr *r) { return &r->cfg; }

int nf_repr_channels(const nf_repr *r)
{
    if (!r->stft) return r->cfg.channels;
    return r->cfg.kind == NF_REPR_MAG ? nf_stft_mag_channels(r->stft, r->cfg.channels, r->cfg.phase_bins)
                                      : nf_stft_layout_channels(r->stft, r->cfg.channels);
}

int nf_repr_length(const nf_repr *r, int L) { return r->stft ? nf_stft_frames(r->stft, L) : L; }

void nf_repr_set_scale(nf_repr *r, float scale) { r->cfg.scale = scale; }
float nf_repr_get_scale(const nf_repr *r) { return r->cfg.scale; }

static void scale_by(float *x, size_t n, float g)
{
    if (g == 1.0f) return;
    for (size_t i = 0; i < n; i++) x[i] *= g;
}

nf_status nf_repr_encode(nf_repr *r, const float *audio, int B, int L, float *x)
{
    if (B < 1 || L < 1) return nf_fail(NF_ERR_ARG, "representation: bad shape (B %d, L %d)", B, L);
    const int C = r->cfg.channels;
    size_t n = (size_t)B * nf_repr_channels(r) * nf_repr_length(r, L);
    if (!r->stft) {
        memcpy(x, audio, n * sizeof(float));
    } else if (r->cfg.kind == NF_REPR_MAG) {
        size_t per_in = (size_t)C * L, per_out = n / (size_t)B;
        for (int b = 0; b < B; b++) {
            nf_status s = nf_stft_mag_encode(r->stft, audio + b * per_in, C, L, r->cfg.power, r->cfg.log_floor,
                                             r->cfg.phase_bins, x + b * per_out);
            if (s) return s;
        }
    } else {
        nf_status s = nf_stft_encode_batch(r->stft, audio, B, C, L, r->cfg.power, x);
        if (s) return s;
    }
    scale_by(x, n, r->cfg.scale);
    return NF_OK;
}

nf_status nf_repr_decode(nf_repr *r, const float *x, int B, int L, float *audio)
{
    if (B < 1 || L < 1) return nf_fail(NF_ERR_ARG, "representation: bad shape (B %d, L %d)", B, L);
    if (!(r->cfg.scale > 0)) return nf_fail(NF_ERR_ARG, "representation: scale %g cannot be undone", r->cfg.scale);
    const int C = r->cfg.channels;
    const float inv = 1.0f / r->cfg.scale;
    if (!r->stft) {
        size_t n = (size_t)B * C * L;
        for (size_t i = 0; i < n; i++) audio[i] = x[i] * inv;
        return NF_OK;
    }
    if (inv == 1.0f && r->cfg.kind == NF_REPR_STFT)
        return nf_stft_decode_batch(r->stft, x, B, C, L, r->cfg.power, audio);
    /* The compression is not linear, so the scale must come off before the expansion:
     * decode one example at a time through a copy. */
    size_t per = (size_t)nf_repr_channels(r) * nf_repr_length(r, L);
    float *tmp = malloc(per * sizeof(float));
    if (!tmp) return nf_fail(NF_ERR_NOMEM, "representation: out of memory");
    nf_status s = NF_OK;
    for (int b = 0; b < B && !s; b++) {
        for (size_t i = 0; i < per; i++) tmp[i] = x[b * per + i] * inv;
        float *a = audio + (size_t)b * C * L;
        s = r->cfg.kind == NF_REPR_MAG ? nf_stft_mag_decode(r->stft, tmp, C, L, r->cfg.power, r->cfg.log_floor,
                                                            r->cfg.phase_bins, r->cfg.gl_iters, a)
                                       : nf_stft_decode(r->stft, tmp, C, L, r->cfg.power, a);
    }
    free(tmp);
    return s;
}

nf_status nf_repr_estimate_scale(nf_repr *r, const float *audio, int n, int L, int max_clips,
                                 float *scale)
{
    *scale = 1;
    if (n < 1 || L < 1) return nf_fail(NF_ERR_EMPTY, "representation: no clips to estimate the scale from");
    const int C = r->cfg.channels;
    int m = (max_clips > 0 && max_clips < n) ? max_clips : n;
    size_t per = (size_t)nf_repr_channels(r) * nf_repr_length(r, L);
    float *tmp = malloc(per * sizeof(float));
    if (!tmp) return nf_fail(NF_ERR_NOMEM, "representation: out of memory");
    float saved = r->cfg.scale;
    r->cfg.scale = 1;
    double acc = 0;
    nf_status s = NF_OK;
    for (int j = 0; j < m && !s; j++) {
        size_t i = (size_t)j * n / m; /* evenly spaced, so every class is seen */
        s = nf_repr_encode(r, audio + i * C * L, 1, L, tmp);
        for (size_t k = 0; k < per && !s; k++) acc += (double)tmp[k] * tmp[k];
    }
    r->cfg.scale = saved;
    free(tmp);
    if (s) return s;
    double rms = sqrt(acc / ((double)per * m));
    if (!(rms > 0) || !isfinite(rms))
        return nf_fail(NF_ERR_NUMERIC, "representation: the clips are silent or not finite (RMS %g)", rms);
    *scale = (float)(1.0 / rms);
    return NF_OK;
}
