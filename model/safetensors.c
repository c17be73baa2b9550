/* safetensors reader and writer. See nf_safetensors.h.
 *
 * The checks follow the reference implementation (huggingface/safetensors,
 * safetensors/src/tensor.rs: SafeTensors::read_metadata and Metadata::validate); the
 * writer follows its prepare(): sort by dtype (descending, i.e. largest alignment first)
 * then name, compact JSON, header padded with spaces to a multiple of 8 bytes. */
#include "nf_safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_json.h"

/* The reference's MAX_HEADER_SIZE: a larger header is refused before it is read. */
#define ST_MAX_HEADER 100000000ULL

static const char *const dtype_names[NF_DT_COUNT] = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16",
    "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"};
static const unsigned char dtype_sizes[NF_DT_COUNT] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};

const char *nf_dtype_name(nf_dtype t) { return (unsigned)t < NF_DT_COUNT ? dtype_names[t] : "?"; }
size_t nf_dtype_size(nf_dtype t) { return (unsigned)t < NF_DT_COUNT ? dtype_sizes[t] : 0; }

int nf_dtype_from_name(const char *name)
{
    for (int i = 0; i < NF_DT_COUNT; i++)
        if (strcmp(name, dtype_names[i]) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------- half floats */

/* IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits. Round to nearest,
 * ties to even, computed on the float's bits so that no double rounding happens. */
uint16_t nf_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {                      /* Inf or NaN */
        if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
        return (uint16_t)(sign | 0x7c00u);
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to Inf */
    if (ax < 0x38800000u) {                       /* below 2^-14: subnormal half or zero */
        if (ax < 0x33000000u) return sign;        /* below 2^-25: rounds to zero */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        /* value = m 2^(e-150); in units of 2^-24 that is m 2^(e-126). */
        unsigned shift = 126u - e;                /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);              /* r == 0x400 is the smallest normal */
    }
    uint32_t r = (ax - 0x38000000u) >> 13;        /* rebias exponent 127 -> 15 */
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++; /* carries into the exponent */
    return (uint16_t)(sign | r);
}

float nf_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0) {
        float v = (float)m * 5.9604644775390625e-8f; /* m 2^-24, exact */
        return (h & 0x8000u) ? -v : v;
    }
    if (e == 31)
        x = sign | 0x7f800000u | (m << 13);
    else
        x = sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* bfloat16 is the top half of a float. */
uint16_t nf_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float nf_bf16_to_f32(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---------------------------------------------------------------- helpers */

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int host_is_le(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* A name fit for a one-line message: control characters become '?', long names are
 * cut. */
static const char *printable(const char *s, char *buf, size_t n)
{
    size_t o = 0, i = 0;
    for (; s[i] && o + 4 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s[i]) {
        buf[o++] = '.';
        buf[o++] = '.';
        buf[o++] = '.';
    }
    buf[o] = '\0';
    return buf;
}

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* ---------------------------------------------------------------- reader */

struct nf_st_file {
    char *path;
    unsigned char *bytes;
    size_t size;
    const unsigned char *buf;  /* data buffer: bytes + 8 + N */
    uint64_t buf_len;
    nf_json_doc *doc;
    int n;
    nf_st_info *infos;         /* offset order */
    int *by_name;              /* indices into infos, sorted by name */
    int n_meta;
    const char **meta_key, **meta_val;
};

static int cmp_offsets(const void *a, const void *b)
{
    const nf_st_info *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_names(const void *a, const void *b, void *ctx)
{
    const nf_st_info *base = ctx;
    return strcmp(base[*(const int *)a].name, base[*(const int *)b].name);
}

void nf_st_close(nf_st_file *f)
{
    if (!f) return;
    free(f->path);
    free(f->bytes);
    nf_json_free(f->doc);
    free(f->infos);
    free(f->by_name);
    free(f->meta_key);
    free(f->meta_val);
    free(f);
}

/* Parse one tensor entry; 0 or an nf_status already recorded. */
static nf_status parse_entry(const char *path, const char *name, const nf_json *v, nf_st_info *info)
{
    char nb[96];
    const char *pn = printable(name, nb, sizeof nb);
    if (v->type != NF_JSON_OBJECT)
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: header entry is not an object", path, pn);
    const nf_json *dt = nf_json_get(v, "dtype"), *sh = nf_json_get(v, "shape"),
                  *off = nf_json_get(v, "data_offsets");
    if (!dt || !sh || !off)
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: header entry lacks \"%s\"", path, pn,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    int d = dt->type == NF_JSON_STRING && strlen(dt->str) == dt->str_len ? nf_dtype_from_name(dt->str) : -1;
    if (d < 0) {
        char db[40];
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: unknown dtype %s", path, pn,
                       dt->type == NF_JSON_STRING ? printable(dt->str, db, sizeof db) : "(not a string)");
    }
    info->dtype = (nf_dtype)d;
    if (sh->type != NF_JSON_ARRAY)
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: shape is not an array", path, pn);
    if (sh->n > NF_ST_MAX_DIMS)
        return nf_fail(NF_ERR_FORMAT, "%s: tensor %s has %zu dimensions (at most %d supported)",
                       path, pn, sh->n, NF_ST_MAX_DIMS);
    info->ndim = (int)sh->n;
    uint64_t count = 1;
    int overflow = 0;
    for (size_t i = 0; i < sh->n; i++) {
        const nf_json *e = &sh->items[i];
        if (e->type != NF_JSON_NUMBER || !e->is_u64)
            return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: shape holds something other than a non-negative integer", path, pn);
        if (e->u64 > (uint64_t)INT64_MAX)
            return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: dimension %zu is too large", path, pn, i);
        info->shape[i] = (int64_t)e->u64;
        if (e->u64 && count > UINT64_MAX / e->u64) overflow = 1;
        count *= e->u64;
    }
    /* A zero dimension makes the product 0 whatever came before it. */
    for (size_t i = 0; i < sh->n; i++)
        if (info->shape[i] == 0) { overflow = 0; count = 0; }
    if (overflow || count > UINT64_MAX / dtype_sizes[d])
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: shape too large (element count overflows)", path, pn);
    info->count = count;
    if (off->type != NF_JSON_ARRAY || off->n != 2 || off->items[0].type != NF_JSON_NUMBER ||
        off->items[1].type != NF_JSON_NUMBER || !off->items[0].is_u64 || !off->items[1].is_u64)
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: data_offsets is not [begin, end]", path, pn);
    info->begin = off->items[0].u64;
    info->end = off->items[1].u64;
    if (info->end < info->begin)
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                       path, pn, info->begin, info->end);
    uint64_t nbytes = count * dtype_sizes[d];
    if (info->end - info->begin != nbytes) {
        char sb[160];
        shape_text(sb, sizeof sb, info->ndim, info->shape);
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: data_offsets span %" PRIu64 " bytes but %s %s needs %" PRIu64,
                       path, pn, info->end - info->begin, dtype_names[d], sb, nbytes);
    }
    return NF_OK;
}

/* Validate f->bytes[0..size); fills the tables. */
static nf_status validate(nf_st_file *f)
{
    const char *path = f->path;
    if (f->size == 0) return nf_fail(NF_ERR_FORMAT, "%s: not a safetensors file: the file is empty", path);
    if (f->size < 8)
        return nf_fail(NF_ERR_FORMAT, "%s: not a safetensors file: %zu bytes, too short for a header", path, f->size);
    uint64_t n = le64(f->bytes);
    if (n > ST_MAX_HEADER)
        return nf_fail(NF_ERR_FORMAT, "%s: not a safetensors file: header length %" PRIu64 " is over the %llu byte limit",
                       path, n, ST_MAX_HEADER);
    if (n > f->size - 8)
        return nf_fail(NF_ERR_CORRUPT, "%s: truncated: the header needs %" PRIu64 " bytes, the file has %zu", path,
                       n + 8, f->size);
    if (n == 0 || f->bytes[8] != '{')
        return nf_fail(NF_ERR_FORMAT, "%s: not a safetensors file: the header does not start with '{'", path);
    char what[NF_PATH_MAX + 16];
    snprintf(what, sizeof what, "%s: header", path);
    nf_status st = nf_json_parse((const char *)f->bytes + 8, (size_t)n, what, 0, &f->doc);
    if (st == NF_ERR_FORMAT) {
        /* Same message, but the status says "damaged" (it did look like safetensors);
         * copied first because nf_fail writes the buffer nf_last_error() points at. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", nf_last_error());
        return nf_fail(NF_ERR_CORRUPT, "%s", msg);
    }
    if (st) return st;
    const nf_json *root = nf_json_root(f->doc);
    if (root->type != NF_JSON_OBJECT)
        return nf_fail(NF_ERR_CORRUPT, "%s: the header is not a JSON object", path);
    f->buf = f->bytes + 8 + n;
    f->buf_len = (uint64_t)f->size - 8 - n;

    f->infos = calloc(root->n ? root->n : 1, sizeof *f->infos);
    f->by_name = calloc(root->n ? root->n : 1, sizeof *f->by_name);
    if (!f->infos || !f->by_name) return nf_fail(NF_ERR_NOMEM, "%s: out of memory reading the header", path);
    int seen_meta = 0;
    for (size_t i = 0; i < root->n; i++) {
        const nf_json *k = &root->keys[i], *v = &root->items[i];
        char nb[96];
        if (strlen(k->str) != k->str_len || k->str_len == 0)
            return nf_fail(NF_ERR_CORRUPT, "%s: a tensor name is empty or holds a NUL character", path);
        if (strcmp(k->str, "__metadata__") == 0) {
            if (seen_meta++) return nf_fail(NF_ERR_CORRUPT, "%s: __metadata__ appears twice", path);
            if (v->type != NF_JSON_OBJECT)
                return nf_fail(NF_ERR_CORRUPT, "%s: __metadata__ is not an object", path);
            f->meta_key = calloc(v->n ? v->n : 1, sizeof(char *));
            f->meta_val = calloc(v->n ? v->n : 1, sizeof(char *));
            if (!f->meta_key || !f->meta_val) return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
            for (size_t j = 0; j < v->n; j++) {
                const nf_json *mk = &v->keys[j], *mv = &v->items[j];
                if (mv->type != NF_JSON_STRING)
                    return nf_fail(NF_ERR_CORRUPT, "%s: __metadata__ value of %s is not a string", path,
                                   printable(mk->str, nb, sizeof nb));
                if (strlen(mk->str) != mk->str_len || strlen(mv->str) != mv->str_len)
                    return nf_fail(NF_ERR_CORRUPT, "%s: __metadata__ entry %s holds a NUL character", path,
                                   printable(mk->str, nb, sizeof nb));
                for (size_t q = 0; q < j; q++)
                    if (strcmp(f->meta_key[q], mk->str) == 0)
                        return nf_fail(NF_ERR_CORRUPT, "%s: __metadata__ key %s appears twice", path,
                                       printable(mk->str, nb, sizeof nb));
                f->meta_key[j] = mk->str;
                f->meta_val[j] = mv->str;
            }
            f->n_meta = (int)v->n;
            continue;
        }
        if (f->n >= INT32_MAX - 1) return nf_fail(NF_ERR_CORRUPT, "%s: too many tensors", path);
        nf_st_info *info = &f->infos[f->n];
        info->name = k->str;
        if ((st = parse_entry(path, k->str, v, info))) return st;
        f->n++;
    }

    /* Metadata::validate: in offset order every tensor begins where the previous one
     * ended, the first at 0, and the last ends at the end of the file. */
    qsort(f->infos, (size_t)f->n, sizeof *f->infos, cmp_offsets);
    uint64_t pos = 0;
    for (int i = 0; i < f->n; i++) {
        char nb[96];
        const nf_st_info *t = &f->infos[i];
        if (t->begin != pos)
            return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] %s (expected to begin at %" PRIu64 ")",
                           path, printable(t->name, nb, sizeof nb), t->begin, t->end,
                           t->begin < pos ? "overlap another tensor" : "leave a hole", pos);
        pos = t->end;
    }
    if (pos != f->buf_len) {
        if (pos > f->buf_len)
            return nf_fail(NF_ERR_CORRUPT, "%s: truncated: the header promises %" PRIu64 " data bytes, the file has %" PRIu64,
                           path, pos, f->buf_len);
        return nf_fail(NF_ERR_CORRUPT, "%s: %" PRIu64 " bytes after the last tensor (tensors cover %" PRIu64 " of %" PRIu64 ")",
                       path, f->buf_len - pos, pos, f->buf_len);
    }
    for (int i = 0; i < f->n; i++) f->by_name[i] = i;
    qsort_r(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_names, f->infos);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->infos[f->by_name[i]].name, f->infos[f->by_name[i - 1]].name) == 0) {
            char nb[96];
            return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s appears twice", path,
                           printable(f->infos[f->by_name[i]].name, nb, sizeof nb));
        }
    return NF_OK;
}

static nf_status open_common(nf_st_file *f, nf_st_file **out)
{
    nf_status st = validate(f);
    if (st) {
        nf_st_close(f);
        return st;
    }
    *out = f;
    return NF_OK;
}

nf_status nf_st_open(const char *path, nf_st_file **out)
{
    *out = NULL;
    nf_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    }
    void *data;
    size_t n;
    nf_status st = nf_read_file(path, &data, &n);
    if (st) {
        nf_st_close(f);
        return st;
    }
    f->bytes = data;
    f->size = n;
    return open_common(f, out);
}

nf_status nf_st_open_memory(const void *data, size_t n, const char *name, nf_st_file **out)
{
    *out = NULL;
    if (!name) name = "(memory)";
    nf_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name)) || !(f->bytes = malloc(n ? n : 1))) {
        nf_st_close(f);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory", name);
    }
    if (n) memcpy(f->bytes, data, n);
    f->size = n;
    return open_common(f, out);
}

const char *nf_st_path(const nf_st_file *f) { return f->path; }
int nf_st_count(const nf_st_file *f) { return f->n; }
const nf_st_info *nf_st_at(const nf_st_file *f, int i) { return i >= 0 && i < f->n ? &f->infos[i] : NULL; }
const void *nf_st_data(const nf_st_file *f, const nf_st_info *info) { return f->buf + info->begin; }
int nf_st_meta_count(const nf_st_file *f) { return f->n_meta; }

void nf_st_meta_at(const nf_st_file *f, int i, const char **key, const char **value)
{
    *key = *value = NULL;
    if (i >= 0 && i < f->n_meta) {
        *key = f->meta_key[i];
        *value = f->meta_val[i];
    }
}

const char *nf_st_meta_get(const nf_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

const nf_st_info *nf_st_find(const nf_st_file *f, const char *name)
{
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const nf_st_info *t = &f->infos[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

static nf_status check_shape(const nf_st_file *f, const char *name, const nf_st_info **out,
                             size_t count, int ndim, const int64_t *expected)
{
    char nb[96];
    const nf_st_info *t = nf_st_find(f, name);
    *out = t;
    if (!t) return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s is missing", f->path, printable(name, nb, sizeof nb));
    if (expected) {
        int same = t->ndim == ndim;
        for (int i = 0; same && i < ndim; i++) same = t->shape[i] == expected[i];
        if (!same) {
            char a[160], b[160];
            shape_text(a, sizeof a, t->ndim, t->shape);
            shape_text(b, sizeof b, ndim, expected);
            return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s has shape %s, expected %s", f->path,
                           printable(name, nb, sizeof nb), a, b);
        }
    }
    if (t->count != (uint64_t)count)
        return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s has %" PRIu64 " elements, expected %zu", f->path,
                       printable(name, nb, sizeof nb), t->count, count);
    return NF_OK;
}

nf_status nf_st_read_f32(const nf_st_file *f, const char *name, float *out, size_t count,
                         int ndim, const int64_t *expected_shape)
{
    const nf_st_info *t;
    nf_status st = check_shape(f, name, &t, count, ndim, expected_shape);
    if (st) return st;
    const unsigned char *p = f->buf + t->begin;
    switch (t->dtype) {
    case NF_DT_F32:
        if (host_is_le()) {
            memcpy(out, p, count * 4);
        } else {
            for (size_t i = 0; i < count; i++) {
                uint32_t x = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                             (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
                memcpy(&out[i], &x, 4);
            }
        }
        break;
    case NF_DT_F16:
        for (size_t i = 0; i < count; i++) out[i] = nf_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case NF_DT_BF16:
        for (size_t i = 0; i < count; i++) out[i] = nf_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case NF_DT_F64:
        for (size_t i = 0; i < count; i++) {
            uint64_t x = le64(p + 8 * i);
            double d;
            memcpy(&d, &x, 8);
            out[i] = (float)d;
        }
        break;
    default: {
        char nb[96];
        return nf_fail(NF_ERR_FORMAT, "%s: tensor %s has dtype %s, expected a float type", f->path,
                       printable(name, nb, sizeof nb), dtype_names[t->dtype]);
    }
    }
    return NF_OK;
}

nf_status nf_st_read_i64(const nf_st_file *f, const char *name, int64_t *out, size_t count,
                         int ndim, const int64_t *expected_shape)
{
    const nf_st_info *t;
    nf_status st = check_shape(f, name, &t, count, ndim, expected_shape);
    if (st) return st;
    const unsigned char *p = f->buf + t->begin;
    size_t s = dtype_sizes[t->dtype];
    char nb[96];
    switch (t->dtype) {
    case NF_DT_BOOL: case NF_DT_U8: case NF_DT_U16: case NF_DT_U32: case NF_DT_U64:
    case NF_DT_I8: case NF_DT_I16: case NF_DT_I32: case NF_DT_I64:
        break;
    default:
        return nf_fail(NF_ERR_FORMAT, "%s: tensor %s has dtype %s, expected an integer type", f->path,
                       printable(name, nb, sizeof nb), dtype_names[t->dtype]);
    }
    int is_signed = t->dtype == NF_DT_I8 || t->dtype == NF_DT_I16 || t->dtype == NF_DT_I32 || t->dtype == NF_DT_I64;
    for (size_t i = 0; i < count; i++) {
        uint64_t x = 0;
        for (size_t b = 0; b < s; b++) x |= (uint64_t)p[s * i + b] << (8 * b);
        if (is_signed && s < 8 && (x >> (8 * s - 1)) & 1) x |= ~(uint64_t)0 << (8 * s); /* sign-extend */
        if (t->dtype == NF_DT_U64 && x > (uint64_t)INT64_MAX)
            return nf_fail(NF_ERR_CORRUPT, "%s: tensor %s: element %zu does not fit in 64-bit signed", f->path,
                           printable(name, nb, sizeof nb), i);
        memcpy(&out[i], &x, 8);
    }
    return NF_OK;
}

/* ---------------------------------------------------------------- writer */

static int cmp_write_order(const void *a, const void *b, void *ctx)
{
    const nf_st_tensor *base = ctx;
    const nf_st_tensor *x = &base[*(const int *)a], *y = &base[*(const int *)b];
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1; /* larger alignment first */
    return strcmp(x->name, y->name);
}

/* Encode `count` elements of tensor t starting at element `first` into out (LE). */
static void encode(const nf_st_tensor *t, size_t first, size_t count, unsigned char *out)
{
    size_t s = dtype_sizes[t->dtype];
    if (t->dtype == NF_DT_F16 || t->dtype == NF_DT_BF16) {
        const float *src = (const float *)t->data + first;
        for (size_t i = 0; i < count; i++) {
            uint16_t h = t->dtype == NF_DT_F16 ? nf_f32_to_f16(src[i]) : nf_f32_to_bf16(src[i]);
            out[2 * i] = (unsigned char)(h & 0xff);
            out[2 * i + 1] = (unsigned char)(h >> 8);
        }
        return;
    }
    const unsigned char *src = (const unsigned char *)t->data + first * s;
    if (host_is_le() || s == 1) {
        memcpy(out, src, count * s);
        return;
    }
    for (size_t i = 0; i < count; i++)
        for (size_t b = 0; b < s; b++) out[i * s + b] = src[i * s + (s - 1 - b)];
}

nf_status nf_st_write(const char *path, const nf_st_tensor *tensors, int n_tensors,
                      const nf_st_meta *meta, int n_meta)
{
    if (n_tensors < 0 || n_meta < 0 || (n_tensors && !tensors) || (n_meta && !meta))
        return nf_fail(NF_ERR_ARG, "%s: bad tensor or metadata list", path);
    uint64_t *nbytes = calloc((size_t)n_tensors + 1, sizeof *nbytes);
    int *order = calloc((size_t)n_tensors + 1, sizeof *order);
    nf_json_writer w;
    nf_jw_init(&w);
    nf_status st = NF_OK;
    char tmp[NF_PATH_MAX];
    FILE *fp = NULL;
    int began = 0;
    unsigned char *stage = NULL;
    if (!nbytes || !order) {
        st = nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n_tensors; i++) {
        const nf_st_tensor *t = &tensors[i];
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0) {
            st = nf_fail(NF_ERR_ARG, "%s: tensor %d has no usable name", path, i);
            goto done;
        }
        if ((unsigned)t->dtype >= NF_DT_COUNT || t->ndim < 0 || t->ndim > NF_ST_MAX_DIMS) {
            st = nf_fail(NF_ERR_ARG, "%s: tensor %s: bad dtype or rank", path, t->name);
            goto done;
        }
        uint64_t c = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || (t->shape[d] && c > UINT64_MAX / (uint64_t)t->shape[d])) {
                st = nf_fail(NF_ERR_ARG, "%s: tensor %s: bad shape", path, t->name);
                goto done;
            }
            c *= (uint64_t)t->shape[d];
        }
        if (c > SIZE_MAX / 8) {
            st = nf_fail(NF_ERR_ARG, "%s: tensor %s: too large", path, t->name);
            goto done;
        }
        nbytes[i] = c * dtype_sizes[t->dtype];
        if (nbytes[i] && !t->data) {
            st = nf_fail(NF_ERR_ARG, "%s: tensor %s has no data", path, t->name);
            goto done;
        }
        order[i] = i;
    }
    qsort_r(order, (size_t)n_tensors, sizeof *order, cmp_write_order, (void *)tensors);
    for (int i = 0; i < n_tensors; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[i].name, tensors[j].name) == 0) {
                st = nf_fail(NF_ERR_ARG, "%s: tensor name %s appears twice", path, tensors[i].name);
                goto done;
            }
    for (int i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value) {
            st = nf_fail(NF_ERR_ARG, "%s: metadata entry %d is incomplete", path, i);
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(meta[i].key, meta[j].key) == 0) {
                st = nf_fail(NF_ERR_ARG, "%s: metadata key %s appears twice", path, meta[i].key);
                goto done;
            }
    }

    nf_jw_begin_object(&w);
    if (n_meta) {
        nf_jw_key(&w, "__metadata__");
        nf_jw_begin_object(&w);
        for (int i = 0; i < n_meta; i++) {
            nf_jw_key(&w, meta[i].key);
            nf_jw_string(&w, meta[i].value);
        }
        nf_jw_end_object(&w);
    }
    uint64_t pos = 0;
    for (int k = 0; k < n_tensors; k++) {
        const nf_st_tensor *t = &tensors[order[k]];
        nf_jw_key(&w, t->name);
        nf_jw_begin_object(&w);
        nf_jw_key(&w, "dtype");
        nf_jw_string(&w, dtype_names[t->dtype]);
        nf_jw_key(&w, "shape");
        nf_jw_begin_array(&w);
        for (int d = 0; d < t->ndim; d++) nf_jw_int(&w, t->shape[d]);
        nf_jw_end_array(&w);
        nf_jw_key(&w, "data_offsets");
        nf_jw_begin_array(&w);
        nf_jw_uint(&w, pos);
        if (nbytes[order[k]] > UINT64_MAX - pos) {
            st = nf_fail(NF_ERR_ARG, "%s: tensors too large", path);
            goto done;
        }
        pos += nbytes[order[k]];
        nf_jw_uint(&w, pos);
        nf_jw_end_array(&w);
        nf_jw_end_object(&w);
    }
    nf_jw_end_object(&w);
    if ((st = nf_jw_finish(&w))) goto done;
    /* Spaces after the JSON make 8 + N a multiple of 8, so every tensor is aligned. */
    size_t pad = (8 - w.len % 8) % 8;
    if (w.len > ST_MAX_HEADER - 8) {
        st = nf_fail(NF_ERR_ARG, "%s: header of %zu bytes is over the format's limit", path, w.len);
        goto done;
    }

    if ((st = nf_atomic_begin(path, tmp, sizeof tmp))) goto done;
    began = 1;
    fp = fopen(tmp, "wb");
    if (!fp) {
        st = nf_fail(NF_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    unsigned char head[8];
    uint64_t hn = w.len + pad;
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)(hn >> (8 * i));
    const size_t chunk = 16384; /* elements per staging pass */
    stage = malloc(chunk * 8);
    if (!stage) {
        st = nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int ok = fwrite(head, 1, 8, fp) == 8 && fwrite(w.data, 1, w.len, fp) == w.len &&
             fwrite("        ", 1, pad, fp) == pad;
    for (int k = 0; ok && k < n_tensors; k++) {
        const nf_st_tensor *t = &tensors[order[k]];
        size_t s = dtype_sizes[t->dtype], count = (size_t)(nbytes[order[k]] / s);
        for (size_t first = 0; ok && first < count; first += chunk) {
            size_t c = count - first < chunk ? count - first : chunk;
            encode(t, first, c, stage);
            ok = fwrite(stage, s, c, fp) == c;
        }
    }
    if (!ok) {
        st = nf_fail(NF_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    int rc = fclose(fp);
    fp = NULL;
    if (rc != 0) {
        st = nf_fail(NF_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    st = nf_atomic_commit(tmp, path);
    began = 0;
done:
    if (fp) fclose(fp);
    if (began && st) nf_atomic_abort(tmp);
    free(stage);
    nf_jw_free(&w);
    free(nbytes);
    free(order);
    return st;
}
