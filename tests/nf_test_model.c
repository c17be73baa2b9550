/* Small untrained models for tests (nf_test_model.h). */
#include "nf_test_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nf_test_model_opts_init(nf_test_model_opts *o)
{
    memset(o, 0, sizeof *o);
    o->repr = NF_REPR_WAVE;
    o->n_fft = 32;
    o->hop = 8;
    o->power = 0.5f;
    o->norm_scale = 1.0f;
    o->sample_rate = 8000;
    o->channels = 1;
    o->length = 64;
    o->objective = "v";
    o->schedule = "cosine";
    o->T = 1000;
    o->net.base = 8;
    o->net.n_levels = 2;
    o->net.mults[0] = 1;
    o->net.mults[1] = 2;
    o->net.blocks = 1;
    o->net.heads = 1;
    o->net.groups = 2;
    o->seed = 1;
}

static nf_status copy_name(char *dst, size_t cap, const char *src, size_t n, const char *what)
{
    if (n >= cap) return nf_fail(NF_ERR_ARG, "test model: %s '%.*s' is longer than %zu bytes", what, (int)n, src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return NF_OK;
}

static nf_status set_classes(const nf_test_model_opts *o, nf_model_desc *d)
{
    if (!o->class_names) {
        if (o->num_classes < 0 || o->num_classes > NF_CKPT_MAX_CLASSES)
            return nf_fail(NF_ERR_ARG, "test model: %d classes", o->num_classes);
        d->num_classes = o->num_classes;
        for (int i = 0; i < d->num_classes; i++) snprintf(d->class_names[i], NF_CKPT_NAME_MAX, "class%d", i);
        return NF_OK;
    }
    d->num_classes = 0;
    for (const char *s = o->class_names; *s;) {
        size_t n = strcspn(s, ",");
        if (n) {
            if (d->num_classes == NF_CKPT_MAX_CLASSES)
                return nf_fail(NF_ERR_ARG, "test model: more than %d classes", NF_CKPT_MAX_CLASSES);
            nf_status st = copy_name(d->class_names[d->num_classes++], NF_CKPT_NAME_MAX, s, n, "class name");
            if (st) return st;
        }
        s += n + (s[n] == ',');
    }
    if (o->num_classes && o->num_classes != d->num_classes)
        return nf_fail(NF_ERR_ARG, "test model: num_classes %d, but %d class names", o->num_classes, d->num_classes);
    return NF_OK;
}

static nf_status make_desc(const nf_test_model_opts *o, nf_model_desc *d)
{
    nf_model_desc_init(d);
    snprintf(d->representation, sizeof d->representation, "%s", nf_repr_kind_name(o->repr));
    if (o->repr != NF_REPR_WAVE) {
        d->n_fft = o->n_fft;
        d->hop = o->hop;
        d->compress_power = o->power;
        d->log_floor = o->log_floor;
        d->phase_bins = o->phase_bins;
    }
    d->norm_scale = o->norm_scale;
    d->sample_rate = o->sample_rate;
    d->channels = o->channels;
    d->length = o->length;
    nf_status st = copy_name(d->objective, sizeof d->objective, o->objective, strlen(o->objective), "objective");
    if (!st) st = copy_name(d->schedule, sizeof d->schedule, o->schedule, strlen(o->schedule), "schedule");
    d->T = o->T;
    if (!st) st = set_classes(o, d);
    return st;
}

nf_status nf_test_model_create(const nf_test_model_opts *o, nf_unet **net, nf_model_desc *desc)
{
    *net = NULL;
    nf_model_desc local;
    nf_model_desc *d = desc ? desc : &local;
    nf_status st = make_desc(o, d);
    /* The network's channels and length are the representation's. */
    nf_repr_config rc;
    nf_repr *r = NULL;
    if (!st) st = nf_model_desc_repr_config(d, &rc);
    if (!st) st = nf_repr_create(&rc, &r);
    if (!st) {
        nf_unet_config c = o->net;
        c.in_ch = c.out_ch = nf_repr_channels(r);
        c.num_classes = d->num_classes;
        st = nf_unet_create(&c, 1, nf_repr_length(r, d->length), net);
    }
    nf_repr_free(r);
    if (!st) nf_unet_init_params(*net, o->seed);
    return st;
}

nf_status nf_test_model_save(const nf_test_model_opts *o, const char *path)
{
    nf_model_desc d;
    nf_unet *net;
    nf_status st = nf_test_model_create(o, &net, &d);
    float *ema = NULL;
    if (!st && o->ema) {
        size_t n = nf_unet_num_params(net);
        ema = malloc(n * sizeof *ema);
        if (ema) memcpy(ema, nf_unet_params(net), n * sizeof *ema);
        else st = nf_fail(NF_ERR_NOMEM, "test model: out of memory");
    }
    if (!st) st = nf_checkpoint_save(path, net, ema, &d, o->f16);
    free(ema);
    nf_unet_free(net);
    return st;
}
