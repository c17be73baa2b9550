/* Model checkpoints and training state on top of nf_safetensors. See nf_checkpoint.h. */
#include "nf_checkpoint.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_json.h"
#include "nf_stft.h"
#include "nf_safetensors.h"

/* ---------------------------------------------------------------- hash */

/* FNV-1a, 64-bit (Fowler, Noll, Vo; offset basis 14695981039346656037, prime
 * 1099511628211), over the float bits in little-endian byte order so the hash is the
 * same on every host. */
uint64_t nf_weights_hash64(const float *p, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, &p[i], 4);
        for (int b = 0; b < 4; b++) {
            h ^= (x >> (8 * b)) & 0xffu;
            h *= 1099511628211ULL;
        }
    }
    return h;
}

void nf_weights_hash(const float *p, size_t n, char out[17])
{
    snprintf(out, 17, "%016" PRIx64, nf_weights_hash64(p, n));
}

/* ---------------------------------------------------------------- descriptions */

void nf_model_desc_init(nf_model_desc *d)
{
    memset(d, 0, sizeof *d);
    strcpy(d->representation, "wave");
    strcpy(d->objective, "v");
    strcpy(d->schedule, "cosine");
    d->T = 1000;
    d->compress_power = 1.0f;
    d->norm_scale = 1.0f;
}

static int one_of(const char *s, const char *a, const char *b, const char *c)
{
    return strcmp(s, a) == 0 || strcmp(s, b) == 0 || (c && strcmp(s, c) == 0);
}

/* A float as the shortest decimal that reads back as the same float ("0.1", not
 * "0.10000000149011612"). */
static void jw_float(nf_json_writer *w, float v)
{
    if (!isfinite(v)) {
        nf_jw_double(w, v); /* records the error */
        return;
    }
    char b[32];
    int n = 0;
    for (int prec = 6; prec <= 9; prec++) {
        n = snprintf(b, sizeof b, "%.*g", prec, (double)v);
        if (strtof(b, NULL) == v) break;
    }
    nf_jw_raw(w, b, (size_t)n);
}

static nf_status finish_json(nf_json_writer *w, char **json)
{
    nf_status st = nf_jw_finish(w);
    if (st) {
        nf_jw_free(w);
        return st;
    }
    *json = w->data; /* handed over to the caller */
    return NF_OK;
}

nf_status nf_unet_config_to_json(const nf_unet_config *c, char **json)
{
    *json = NULL;
    if (c->n_levels < 1 || c->n_levels > NF_UNET_MAX_LEVELS)
        return nf_fail(NF_ERR_ARG, "config: n_levels %d out of range", c->n_levels);
    nf_json_writer w;
    nf_jw_init(&w);
    nf_jw_begin_object(&w);
    nf_jw_key(&w, "in_ch"); nf_jw_int(&w, c->in_ch);
    nf_jw_key(&w, "out_ch"); nf_jw_int(&w, c->out_ch);
    nf_jw_key(&w, "base"); nf_jw_int(&w, c->base);
    nf_jw_key(&w, "n_levels"); nf_jw_int(&w, c->n_levels);
    nf_jw_key(&w, "mults");
    nf_jw_begin_array(&w);
    for (int i = 0; i < c->n_levels; i++) nf_jw_int(&w, c->mults[i]);
    nf_jw_end_array(&w);
    nf_jw_key(&w, "blocks"); nf_jw_int(&w, c->blocks);
    nf_jw_key(&w, "attn");
    nf_jw_begin_array(&w);
    for (int i = 0; i < c->n_levels; i++) nf_jw_int(&w, c->attn[i]);
    nf_jw_end_array(&w);
    nf_jw_key(&w, "mid_attn"); nf_jw_int(&w, c->mid_attn);
    nf_jw_key(&w, "heads"); nf_jw_int(&w, c->heads);
    nf_jw_key(&w, "groups"); nf_jw_int(&w, c->groups);
    nf_jw_key(&w, "num_classes"); nf_jw_int(&w, c->num_classes);
    nf_jw_key(&w, "dropout"); jw_float(&w, c->dropout);
    nf_jw_end_object(&w);
    return finish_json(&w, json);
}

/* Typed getters that name the missing or bad key. */
static nf_status get_int(const nf_json *o, const char *key, const char *what, int *out)
{
    const nf_json *v = nf_json_get(o, key);
    if (!v) return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is missing", what, key);
    if (v->type != NF_JSON_NUMBER || !v->is_i64 || v->i64 < INT32_MIN || v->i64 > INT32_MAX)
        return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is not an integer", what, key);
    *out = (int)v->i64;
    return NF_OK;
}

static nf_status get_ll(const nf_json *o, const char *key, const char *what, long long *out)
{
    const nf_json *v = nf_json_get(o, key);
    if (!v) return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is missing", what, key);
    if (v->type != NF_JSON_NUMBER || !v->is_i64)
        return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is not an integer", what, key);
    *out = v->i64;
    return NF_OK;
}

static nf_status get_num(const nf_json *o, const char *key, const char *what, double *out)
{
    const nf_json *v = nf_json_get(o, key);
    if (!v) return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is missing", what, key);
    if (v->type != NF_JSON_NUMBER) return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is not a number", what, key);
    *out = v->number;
    return NF_OK;
}

static nf_status get_str(const nf_json *o, const char *key, const char *what, char *out, size_t size)
{
    const nf_json *v = nf_json_get(o, key);
    if (!v) return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is missing", what, key);
    if (v->type != NF_JSON_STRING || strlen(v->str) != v->str_len)
        return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is not a string", what, key);
    if (v->str_len >= size) return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is too long", what, key);
    memcpy(out, v->str, v->str_len + 1);
    return NF_OK;
}

static nf_status get_int_array(const nf_json *o, const char *key, const char *what, int *out, int n)
{
    const nf_json *v = nf_json_get(o, key);
    if (!v) return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is missing", what, key);
    if (v->type != NF_JSON_ARRAY || v->n != (size_t)n)
        return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is not an array of %d integers", what, key, n);
    for (int i = 0; i < n; i++) {
        const nf_json *e = &v->items[i];
        if (e->type != NF_JSON_NUMBER || !e->is_i64 || e->i64 < INT32_MIN || e->i64 > INT32_MAX)
            return nf_fail(NF_ERR_CORRUPT, "%s: key \"%s\" is not an array of %d integers", what, key, n);
        out[i] = (int)e->i64;
    }
    return NF_OK;
}

nf_status nf_unet_config_from_json(const char *json, size_t len, const char *what, nf_unet_config *c)
{
    nf_json_doc *doc;
    nf_status st = nf_json_parse(json, len, what, 0, &doc);
    if (st) return st == NF_ERR_FORMAT ? NF_ERR_CORRUPT : st;
    const nf_json *r = nf_json_root(doc);
    memset(c, 0, sizeof *c);
    double dropout = 0;
    if (r->type != NF_JSON_OBJECT) st = nf_fail(NF_ERR_CORRUPT, "%s: not a JSON object", what);
    if (!st) st = get_int(r, "in_ch", what, &c->in_ch);
    if (!st) st = get_int(r, "out_ch", what, &c->out_ch);
    if (!st) st = get_int(r, "base", what, &c->base);
    if (!st) st = get_int(r, "n_levels", what, &c->n_levels);
    if (!st && (c->n_levels < 1 || c->n_levels > NF_UNET_MAX_LEVELS))
        st = nf_fail(NF_ERR_CORRUPT, "%s: key \"n_levels\" = %d is out of range", what, c->n_levels);
    if (!st) st = get_int_array(r, "mults", what, c->mults, c->n_levels);
    if (!st) st = get_int(r, "blocks", what, &c->blocks);
    if (!st) st = get_int_array(r, "attn", what, c->attn, c->n_levels);
    if (!st) st = get_int(r, "mid_attn", what, &c->mid_attn);
    if (!st) st = get_int(r, "heads", what, &c->heads);
    if (!st) st = get_int(r, "groups", what, &c->groups);
    if (!st) st = get_int(r, "num_classes", what, &c->num_classes);
    if (!st) st = get_num(r, "dropout", what, &dropout);
    c->dropout = (float)dropout;
    nf_json_free(doc);
    return st;
}

nf_status nf_model_desc_repr_config(const nf_model_desc *d, nf_repr_config *rc)
{
    int kind = nf_repr_kind_from_name(d->representation);
    if (kind < 0) return nf_fail(NF_ERR_CORRUPT, "unknown representation '%s'", d->representation);
    nf_repr_config_default(rc, (nf_repr_kind)kind, d->channels);
    if (kind != NF_REPR_WAVE) {
        rc->n_fft = d->n_fft;
        rc->hop = d->hop;
        rc->power = d->compress_power;
        rc->log_floor = d->log_floor;
        rc->phase_bins = d->phase_bins;
        rc->lead_frames = d->lead_frames;
    }
    rc->scale = d->norm_scale;
    return NF_OK;
}

nf_status nf_model_desc_to_json(const nf_model_desc *d, char **json)
{
    *json = NULL;
    if (!one_of(d->representation, "wave", "stft", "mag"))
        return nf_fail(NF_ERR_ARG, "model description: representation \"%s\" is not wave, stft or mag", d->representation);
    if (!one_of(d->objective, "eps", "v", "x0"))
        return nf_fail(NF_ERR_ARG, "model description: objective \"%s\" is not eps, v or x0", d->objective);
    if (!one_of(d->schedule, "linear", "cosine", NULL))
        return nf_fail(NF_ERR_ARG, "model description: schedule \"%s\" is not linear or cosine", d->schedule);
    if (d->num_classes < 0 || d->num_classes > NF_CKPT_MAX_CLASSES || d->n_extra < 0 || d->n_extra > NF_CKPT_MAX_EXTRA)
        return nf_fail(NF_ERR_ARG, "model description: class or extra count out of range");
    nf_json_writer w;
    nf_jw_init(&w);
    nf_jw_begin_object(&w);
    nf_jw_key(&w, "representation"); nf_jw_string(&w, d->representation);
    nf_jw_key(&w, "n_fft"); nf_jw_int(&w, d->n_fft);
    nf_jw_key(&w, "hop"); nf_jw_int(&w, d->hop);
    nf_jw_key(&w, "compress_power"); jw_float(&w, d->compress_power);
    if (d->log_floor > 0) { nf_jw_key(&w, "log_floor"); jw_float(&w, d->log_floor); }
    if (d->phase_bins > 0) { nf_jw_key(&w, "phase_bins"); nf_jw_int(&w, d->phase_bins); }
    if (d->lead_frames > 0) { nf_jw_key(&w, "lead_frames"); nf_jw_int(&w, d->lead_frames); }
    nf_jw_key(&w, "norm_scale"); jw_float(&w, d->norm_scale);
    nf_jw_key(&w, "sample_rate"); nf_jw_int(&w, d->sample_rate);
    nf_jw_key(&w, "channels"); nf_jw_int(&w, d->channels);
    nf_jw_key(&w, "length"); nf_jw_int(&w, d->length);
    nf_jw_key(&w, "objective"); nf_jw_string(&w, d->objective);
    nf_jw_key(&w, "schedule"); nf_jw_string(&w, d->schedule);
    nf_jw_key(&w, "T"); nf_jw_int(&w, d->T);
    nf_jw_key(&w, "learned_variance"); nf_jw_bool(&w, d->learned_variance);
    nf_jw_key(&w, "classes");
    nf_jw_begin_array(&w);
    for (int i = 0; i < d->num_classes; i++) nf_jw_string(&w, d->class_names[i]);
    nf_jw_end_array(&w);
    nf_jw_key(&w, "training");
    nf_jw_begin_object(&w);
    nf_jw_key(&w, "steps"); nf_jw_int(&w, d->steps);
    nf_jw_key(&w, "examples_seen"); nf_jw_int(&w, d->examples_seen);
    nf_jw_key(&w, "final_loss");
    if (isfinite(d->final_loss)) nf_jw_double(&w, d->final_loss);
    else nf_jw_null(&w); /* no loss yet (or it diverged): JSON has no NaN */
    nf_jw_key(&w, "class_files");
    nf_jw_begin_array(&w);
    int nf = d->num_classes > 0 ? d->num_classes : 1;
    for (int i = 0; i < nf; i++) nf_jw_int(&w, d->class_files[i]);
    nf_jw_end_array(&w);
    /* A u64 seed as a string: JSON readers that use doubles would round it. */
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, d->seed);
    nf_jw_key(&w, "seed"); nf_jw_string(&w, seed);
    nf_jw_end_object(&w);
    nf_jw_key(&w, "extra");
    nf_jw_begin_object(&w);
    for (int i = 0; i < d->n_extra; i++) {
        nf_jw_key(&w, d->extra_key[i]);
        nf_jw_string(&w, d->extra_value[i]);
    }
    nf_jw_end_object(&w);
    nf_jw_end_object(&w);
    return finish_json(&w, json);
}

nf_status nf_model_desc_from_json(const char *json, size_t len, const char *what, nf_model_desc *d)
{
    nf_json_doc *doc;
    nf_status st = nf_json_parse(json, len, what, 0, &doc);
    if (st) return st == NF_ERR_FORMAT ? NF_ERR_CORRUPT : st;
    const nf_json *r = nf_json_root(doc);
    nf_model_desc_init(d);
    double cp = 1, ns = 1;
    if (r->type != NF_JSON_OBJECT) st = nf_fail(NF_ERR_CORRUPT, "%s: not a JSON object", what);
    if (!st) st = get_str(r, "representation", what, d->representation, sizeof d->representation);
    if (!st && !one_of(d->representation, "wave", "stft", "mag"))
        st = nf_fail(NF_ERR_CORRUPT, "%s: key \"representation\" is \"%s\", not wave, stft or mag", what, d->representation);
    if (!st) st = get_int(r, "n_fft", what, &d->n_fft);
    if (!st) st = get_int(r, "hop", what, &d->hop);
    if (!st) st = get_num(r, "compress_power", what, &cp);
    if (!st) st = get_num(r, "norm_scale", what, &ns);
    /* Optional (files written before log compression existed have no such key). */
    double lf = 0;
    if (!st && nf_json_get(r, "log_floor")) st = get_num(r, "log_floor", what, &lf);
    if (!st && (!(lf >= 0) || !isfinite(lf))) st = nf_fail(NF_ERR_CORRUPT, "%s: key \"log_floor\" is %g", what, lf);
    d->log_floor = (float)lf;
    if (!st && nf_json_get(r, "phase_bins")) st = get_int(r, "phase_bins", what, &d->phase_bins);
    if (!st && (d->phase_bins < 0 || d->phase_bins > 65537))
        st = nf_fail(NF_ERR_CORRUPT, "%s: key \"phase_bins\" is %d", what, d->phase_bins);
    if (!st && nf_json_get(r, "lead_frames")) st = get_int(r, "lead_frames", what, &d->lead_frames);
    if (!st && (d->lead_frames < 0 || d->lead_frames > NF_STFT_MAX_LEAD))
        st = nf_fail(NF_ERR_CORRUPT, "%s: key \"lead_frames\" is %d", what, d->lead_frames);
    d->compress_power = (float)cp;
    d->norm_scale = (float)ns;
    if (!st) st = get_int(r, "sample_rate", what, &d->sample_rate);
    if (!st) st = get_int(r, "channels", what, &d->channels);
    if (!st) st = get_int(r, "length", what, &d->length);
    if (!st) st = get_str(r, "objective", what, d->objective, sizeof d->objective);
    if (!st && !one_of(d->objective, "eps", "v", "x0"))
        st = nf_fail(NF_ERR_CORRUPT, "%s: key \"objective\" is \"%s\", not eps, v or x0", what, d->objective);
    if (!st) st = get_str(r, "schedule", what, d->schedule, sizeof d->schedule);
    if (!st && !one_of(d->schedule, "linear", "cosine", NULL))
        st = nf_fail(NF_ERR_CORRUPT, "%s: key \"schedule\" is \"%s\", not linear or cosine", what, d->schedule);
    if (!st) st = get_int(r, "T", what, &d->T);
    if (!st) {
        const nf_json *lv = nf_json_get(r, "learned_variance");
        if (!lv || lv->type != NF_JSON_BOOL)
            st = nf_fail(NF_ERR_CORRUPT, "%s: key \"learned_variance\" is %s", what, lv ? "not true/false" : "missing");
        else
            d->learned_variance = lv->boolean;
    }
    const nf_json *cl = st ? NULL : nf_json_get(r, "classes");
    if (!st && (!cl || cl->type != NF_JSON_ARRAY || cl->n > NF_CKPT_MAX_CLASSES))
        st = nf_fail(NF_ERR_CORRUPT, "%s: key \"classes\" is %s", what,
                     !cl ? "missing" : cl->type != NF_JSON_ARRAY ? "not an array" : "too long");
    for (size_t i = 0; !st && i < cl->n; i++) {
        const nf_json *e = &cl->items[i];
        if (e->type != NF_JSON_STRING || e->str_len >= NF_CKPT_NAME_MAX || strlen(e->str) != e->str_len)
            st = nf_fail(NF_ERR_CORRUPT, "%s: key \"classes\": entry %zu is not a short string", what, i);
        else
            memcpy(d->class_names[i], e->str, e->str_len + 1);
    }
    if (!st) d->num_classes = (int)cl->n;
    const nf_json *tr = st ? NULL : nf_json_get(r, "training");
    if (!st && (!tr || tr->type != NF_JSON_OBJECT))
        st = nf_fail(NF_ERR_CORRUPT, "%s: key \"training\" is %s", what, tr ? "not an object" : "missing");
    char tw[NF_PATH_MAX + 32];
    snprintf(tw, sizeof tw, "%s: training", what);
    if (!st) st = get_ll(tr, "steps", tw, &d->steps);
    if (!st) st = get_ll(tr, "examples_seen", tw, &d->examples_seen);
    if (!st) {
        const nf_json *fl = nf_json_get(tr, "final_loss");
        if (fl && fl->type == NF_JSON_NULL) d->final_loss = NAN;
        else st = get_num(tr, "final_loss", tw, &d->final_loss);
    }
    if (!st) {
        const nf_json *cf = nf_json_get(tr, "class_files");
        int want = d->num_classes > 0 ? d->num_classes : 1;
        if (!cf || cf->type != NF_JSON_ARRAY || cf->n != (size_t)want)
            st = nf_fail(NF_ERR_CORRUPT, "%s: key \"class_files\" is not an array of %d counts", tw, want);
        for (int i = 0; !st && i < want; i++) {
            if (cf->items[i].type != NF_JSON_NUMBER || !cf->items[i].is_i64)
                st = nf_fail(NF_ERR_CORRUPT, "%s: key \"class_files\" is not an array of %d counts", tw, want);
            else
                d->class_files[i] = cf->items[i].i64;
        }
    }
    if (!st) {
        char seed[24];
        st = get_str(tr, "seed", tw, seed, sizeof seed);
        char *end = NULL;
        if (!st) {
            d->seed = strtoull(seed, &end, 10);
            if (!seed[0] || *end || seed[0] == '-') st = nf_fail(NF_ERR_CORRUPT, "%s: key \"seed\" is not a number", tw);
        }
    }
    const nf_json *ex = st ? NULL : nf_json_get(r, "extra");
    if (!st && ex) { /* optional */
        if (ex->type != NF_JSON_OBJECT || ex->n > NF_CKPT_MAX_EXTRA)
            st = nf_fail(NF_ERR_CORRUPT, "%s: key \"extra\" is not an object of at most %d strings", what, NF_CKPT_MAX_EXTRA);
        for (size_t i = 0; !st && i < ex->n; i++) {
            const nf_json *k = &ex->keys[i], *v = &ex->items[i];
            if (v->type != NF_JSON_STRING || k->str_len >= NF_CKPT_NAME_MAX || v->str_len >= 256 ||
                strlen(k->str) != k->str_len || strlen(v->str) != v->str_len)
                st = nf_fail(NF_ERR_CORRUPT, "%s: key \"extra\": entry %zu is not a short string", what, i);
            else {
                memcpy(d->extra_key[i], k->str, k->str_len + 1);
                memcpy(d->extra_value[i], v->str, v->str_len + 1);
            }
        }
        if (!st) d->n_extra = (int)ex->n;
    }
    nf_json_free(doc);
    return st;
}

/* ---------------------------------------------------------------- model files */

nf_status nf_checkpoint_save(const char *path, nf_unet *net, const float *ema,
                             const nf_model_desc *desc, int store_f16)
{
    char *cfg_json = NULL, *desc_json = NULL;
    nf_status st = nf_unet_config_to_json(nf_unet_get_config(net), &cfg_json);
    if (!st) st = nf_model_desc_to_json(desc, &desc_json);
    int nt = nf_unet_num_tensors(net);
    nf_st_tensor *t = calloc((size_t)(2 * nt + 1), sizeof *t);
    char **ema_names = calloc((size_t)nt + 1, sizeof *ema_names);
    if (!st && (!t || !ema_names)) st = nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    const float *params = nf_unet_params(net);
    int n = 0;
    for (int pass = 0; !st && pass < (ema ? 2 : 1); pass++) {
        const float *slab = pass ? ema : params;
        for (int i = 0; i < nt && !st; i++) {
            const nf_param_info *pi = nf_unet_tensor(net, i);
            nf_st_tensor *x = &t[n++];
            if (pass) {
                size_t len = strlen(pi->name) + 5;
                if (!(ema_names[i] = malloc(len))) {
                    st = nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
                    break;
                }
                snprintf(ema_names[i], len, "ema.%s", pi->name);
            }
            x->name = pass ? ema_names[i] : pi->name;
            x->dtype = store_f16 ? NF_DT_F16 : NF_DT_F32;
            x->ndim = pi->ndim;
            for (int d = 0; d < pi->ndim; d++) x->shape[d] = pi->shape[d];
            x->data = slab + pi->offset;
        }
    }
    if (!st) {
        char version[16];
        snprintf(version, sizeof version, "%d", NF_CKPT_FORMAT_VERSION);
        nf_st_meta meta[] = {{"format", "noisefloor"},
                             {"format_version", version},
                             {"noisefloor.config", cfg_json},
                             {"noisefloor.model", desc_json}};
        st = nf_st_write(path, t, n, meta, 4);
    }
    for (int i = 0; ema_names && i < nt; i++) free(ema_names[i]);
    free(ema_names);
    free(t);
    free(cfg_json);
    free(desc_json);
    return st;
}

/* Check the metadata of an open file and fill info (except the hash). */
static nf_status read_header(const nf_st_file *f, nf_checkpoint_info *info)
{
    const char *path = nf_st_path(f);
    memset(info, 0, sizeof *info);
    const char *fmt = nf_st_meta_get(f, "format");
    if (!fmt) return nf_fail(NF_ERR_FORMAT, "%s: not a noisefloor model (no \"format\" key in the metadata)", path);
    if (strcmp(fmt, "noisefloor") != 0)
        return nf_fail(NF_ERR_FORMAT, "%s: not a noisefloor model (metadata \"format\" is \"%.40s\")", path, fmt);
    const char *ver = nf_st_meta_get(f, "format_version");
    if (!ver) return nf_fail(NF_ERR_CORRUPT, "%s: metadata key \"format_version\" is missing", path);
    char *end;
    long v = strtol(ver, &end, 10);
    if (!ver[0] || *end || v < 1)
        return nf_fail(NF_ERR_CORRUPT, "%s: metadata key \"format_version\" is \"%.20s\", not a version number", path, ver);
    if (v > NF_CKPT_FORMAT_VERSION)
        return nf_fail(NF_ERR_VERSION, "%s: format version %ld is newer than this noisefloor reads (%d); update noisefloor",
                       path, v, NF_CKPT_FORMAT_VERSION);
    info->format_version = (int)v;
    const char *cfg = nf_st_meta_get(f, "noisefloor.config"), *desc = nf_st_meta_get(f, "noisefloor.model");
    if (!cfg) return nf_fail(NF_ERR_CORRUPT, "%s: metadata key \"noisefloor.config\" is missing", path);
    if (!desc) return nf_fail(NF_ERR_CORRUPT, "%s: metadata key \"noisefloor.model\" is missing", path);
    char what[NF_PATH_MAX + 32];
    snprintf(what, sizeof what, "%s: noisefloor.config", path);
    nf_status st = nf_unet_config_from_json(cfg, strlen(cfg), what, &info->config);
    if (st) return st;
    if (nf_unet_config_check(&info->config)) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", nf_last_error());
        return nf_fail(NF_ERR_CORRUPT, "%s: noisefloor.config: %s", path, msg);
    }
    snprintf(what, sizeof what, "%s: noisefloor.model", path);
    return nf_model_desc_from_json(desc, strlen(desc), what, &info->desc);
}

/* Load every tensor of `net`'s table from names prefix+name into slab. */
static nf_status load_slab(const nf_st_file *f, nf_unet *net, const char *prefix, float *slab)
{
    int nt = nf_unet_num_tensors(net);
    char name[512];
    for (int i = 0; i < nt; i++) {
        const nf_param_info *pi = nf_unet_tensor(net, i);
        int64_t shape[3];
        for (int d = 0; d < pi->ndim && d < 3; d++) shape[d] = pi->shape[d];
        snprintf(name, sizeof name, "%s%s", prefix, pi->name);
        nf_status st = nf_st_read_f32(f, name, slab + pi->offset, pi->size, pi->ndim, shape);
        if (st) return st;
    }
    return NF_OK;
}

static nf_status open_model(const char *path, nf_st_file **f, nf_checkpoint_info *info)
{
    nf_status st = nf_st_open(path, f);
    if (st) return st;
    st = read_header(*f, info);
    if (st) {
        nf_st_close(*f);
        *f = NULL;
    }
    return st;
}

nf_status nf_checkpoint_read_info(const char *path, nf_checkpoint_info *info)
{
    nf_st_file *f;
    nf_status st = open_model(path, &f, info);
    if (st) return st;
    /* Count what a network of this config would hold, from the file's tensors. */
    long long count = 0;
    for (int i = 0; i < nf_st_count(f); i++) {
        const nf_st_info *t = nf_st_at(f, i);
        if (strncmp(t->name, "ema.", 4) == 0) info->has_ema = 1;
        else {
            count += (long long)t->count;
            if (t->dtype == NF_DT_F16) info->stored_f16 = 1;
        }
    }
    info->param_count = count;
    nf_st_close(f);
    return NF_OK;
}

nf_status nf_checkpoint_load(const char *path, int max_batch, int max_length, unsigned flags,
                             nf_unet **net_out, float **ema_out, nf_checkpoint_info *info_out)
{
    *net_out = NULL;
    if (ema_out) *ema_out = NULL;
    nf_checkpoint_info info;
    nf_st_file *f;
    nf_status st = open_model(path, &f, &info);
    if (st) return st;
    nf_unet *net = NULL;
    float *ema = NULL;
    /* A header can describe a network of any size; a large one is allocated only if
     * the file really holds its weights (a 1 KB file must not make us allocate
     * terabytes). A small network is cheap to build, and the per-tensor checks below
     * then name the tensor whose shape is wrong. */
    size_t expect = 0, held = 0;
    if ((st = nf_unet_count_params(&info.config, &expect))) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: bad network config: %s", path, nf_last_error());
        goto fail;
    }
    for (int i = 0; i < nf_st_count(f); i++) {
        const nf_st_info *t = nf_st_at(f, i);
        if (strncmp(t->name, "ema.", 4)) held += (size_t)t->count;
    }
    if (held != expect && expect > ((size_t)1 << 24)) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: the file holds %zu weights, its config needs %zu", path, held, expect);
        goto fail;
    }
    if ((st = nf_unet_create(&info.config, max_batch, max_length, &net))) goto fail;
    size_t np = nf_unet_num_params(net);
    /* Every tensor in the file must be one the network (or its EMA) has. */
    int n_ema = 0;
    for (int i = 0; i < nf_st_count(f); i++) {
        const nf_st_info *t = nf_st_at(f, i);
        int is_ema = strncmp(t->name, "ema.", 4) == 0;
        if (nf_unet_find_tensor(net, is_ema ? t->name + 4 : t->name) < 0) {
            st = nf_fail(NF_ERR_CORRUPT, "%s: tensor %.200s does not belong to a network of the stored config", path, t->name);
            goto fail;
        }
        n_ema += is_ema;
        if (!is_ema && t->dtype == NF_DT_F16) info.stored_f16 = 1;
    }
    info.has_ema = n_ema > 0;
    info.param_count = (long long)np;
    if ((st = load_slab(f, net, "", nf_unet_params(net)))) goto fail;
    if (n_ema) {
        /* A partial EMA set fails in load_slab, which names the first missing tensor. */
        if (!(ema = malloc(sizeof(float) * (np ? np : 1)))) {
            st = nf_fail(NF_ERR_NOMEM, "%s: out of memory for the EMA weights", path);
            goto fail;
        }
        if ((st = load_slab(f, net, "ema.", ema))) goto fail;
        if (flags & NF_CKPT_USE_EMA) memcpy(nf_unet_params(net), ema, sizeof(float) * np);
    }
    nf_weights_hash(nf_unet_params(net), np, info.hash);
    nf_st_close(f);
    if (ema_out) *ema_out = ema;
    else free(ema);
    if (info_out) *info_out = info;
    *net_out = net;
    return NF_OK;
fail:
    nf_st_close(f);
    nf_unet_free(net);
    free(ema);
    return st;
}

/* ---------------------------------------------------------------- training state */

nf_status nf_train_state_save(const char *path, const nf_train_state *s)
{
    if (!s->adam_m || !s->adam_v || (s->n_order && !s->order))
        return nf_fail(NF_ERR_ARG, "%s: training state lacks its moments or data order", path);
    int64_t rng[3], counters[4] = {s->step, s->epoch, s->order_pos, s->loss_scale_good_steps};
    memcpy(&rng[0], &s->rng.seed, 8); /* u64 stored bit for bit in I64 */
    memcpy(&rng[1], &s->rng.stream, 8);
    memcpy(&rng[2], &s->rng.index, 8);
    int64_t np = (int64_t)s->n_params, no = (int64_t)s->n_order;
    nf_st_tensor t[8];
    int n = 0;
    t[n++] = (nf_st_tensor){"adam.m", NF_DT_F32, 1, {np}, s->adam_m};
    t[n++] = (nf_st_tensor){"adam.v", NF_DT_F32, 1, {np}, s->adam_v};
    if (s->params) t[n++] = (nf_st_tensor){"params", NF_DT_F32, 1, {np}, s->params};
    if (s->ema) t[n++] = (nf_st_tensor){"ema", NF_DT_F32, 1, {np}, s->ema};
    t[n++] = (nf_st_tensor){"rng", NF_DT_I64, 1, {3}, rng};
    t[n++] = (nf_st_tensor){"counters", NF_DT_I64, 1, {4}, counters};
    t[n++] = (nf_st_tensor){"loss_scale", NF_DT_F32, 1, {1}, &s->loss_scale};
    t[n++] = (nf_st_tensor){"data.order", NF_DT_I64, 1, {no}, s->order};
    char version[16];
    snprintf(version, sizeof version, "%d", NF_STATE_FORMAT_VERSION);
    nf_st_meta meta[] = {{"format", "noisefloor-state"},
                         {"format_version", version},
                         {"counters", "step, epoch, order_pos, loss_scale_good_steps"},
                         {"rng", "nf_rng seed, stream, index (u64 bits)"},
                         {"model_hash", s->model_hash}};
    return nf_st_write(path, t, n, meta, 5);
}

void nf_train_state_free(nf_train_state *s)
{
    free(s->params);
    free(s->adam_m);
    free(s->adam_v);
    free(s->ema);
    free(s->order);
    memset(s, 0, sizeof *s);
}

static nf_status read_vec(const nf_st_file *f, const char *name, size_t n, float **out)
{
    *out = malloc(sizeof(float) * (n ? n : 1));
    if (!*out) return nf_fail(NF_ERR_NOMEM, "%s: out of memory for %s", nf_st_path(f), name);
    int64_t shape[1] = {(int64_t)n};
    return nf_st_read_f32(f, name, *out, n, 1, shape);
}

nf_status nf_train_state_load(const char *path, size_t expected_n_params, nf_train_state *s)
{
    memset(s, 0, sizeof *s);
    nf_st_file *f;
    nf_status st = nf_st_open(path, &f);
    if (st) return st;
    const char *fmt = nf_st_meta_get(f, "format"), *ver = nf_st_meta_get(f, "format_version");
    const nf_st_info *m = nf_st_find(f, "adam.m"), *ord = nf_st_find(f, "data.order");
    if (!fmt || strcmp(fmt, "noisefloor-state") != 0) {
        st = nf_fail(NF_ERR_FORMAT, "%s: not a noisefloor training state (metadata \"format\")", path);
    } else if (!ver) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: metadata key \"format_version\" is missing", path);
    } else if (atoi(ver) > NF_STATE_FORMAT_VERSION) {
        st = nf_fail(NF_ERR_VERSION, "%s: training-state version %s is newer than this noisefloor reads (%d)", path, ver,
                     NF_STATE_FORMAT_VERSION);
    } else if (atoi(ver) < 1) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: metadata key \"format_version\" is \"%.20s\"", path, ver);
    } else if (!m || m->ndim != 1 || !ord || ord->ndim != 1) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: tensor %s is missing or not a vector", path, !m || m->ndim != 1 ? "adam.m" : "data.order");
    } else if (expected_n_params && m->count != expected_n_params) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: the state holds %" PRIu64 " parameters, the model has %zu", path, m->count,
                     expected_n_params);
    }
    if (st) goto done;
    s->n_params = (size_t)m->count;
    if ((st = read_vec(f, "adam.m", s->n_params, &s->adam_m))) goto done;
    if ((st = read_vec(f, "adam.v", s->n_params, &s->adam_v))) goto done;
    if (nf_st_find(f, "params") && (st = read_vec(f, "params", s->n_params, &s->params))) goto done;
    if (nf_st_find(f, "ema") && (st = read_vec(f, "ema", s->n_params, &s->ema))) goto done;
    int64_t rng[3], counters[4];
    int64_t s3[1] = {3}, s4[1] = {4}, s1[1] = {1};
    if ((st = nf_st_read_i64(f, "rng", rng, 3, 1, s3))) goto done;
    if ((st = nf_st_read_i64(f, "counters", counters, 4, 1, s4))) goto done;
    if ((st = nf_st_read_f32(f, "loss_scale", &s->loss_scale, 1, 1, s1))) goto done;
    memcpy(&s->rng.seed, &rng[0], 8);
    memcpy(&s->rng.stream, &rng[1], 8);
    memcpy(&s->rng.index, &rng[2], 8);
    s->step = counters[0];
    s->epoch = counters[1];
    s->order_pos = counters[2];
    s->loss_scale_good_steps = counters[3];
    s->n_order = (size_t)ord->count;
    s->order = malloc(sizeof(int64_t) * (s->n_order ? s->n_order : 1));
    if (!s->order) {
        st = nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int64_t so[1] = {(int64_t)s->n_order};
    if ((st = nf_st_read_i64(f, "data.order", s->order, s->n_order, 1, so))) goto done;
    if (s->step < 0 || s->order_pos < 0 || (uint64_t)s->order_pos > s->n_order) {
        st = nf_fail(NF_ERR_CORRUPT, "%s: step or data position out of range", path);
        goto done;
    }
    const char *mh = nf_st_meta_get(f, "model_hash");
    snprintf(s->model_hash, sizeof s->model_hash, "%s", mh ? mh : "");
done:
    nf_st_close(f);
    if (st) nf_train_state_free(s);
    return st;
}
