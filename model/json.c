/* Strict JSON (RFC 8259) parser and writer. See nf_json.h.
 *
 * Safety: every read of the input goes through `p->pos < p->len` checks (peek/next), so
 * a malformed or truncated input ends in an error, never a read past its end. */
#include "nf_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- arena */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} arena_block;

struct nf_json_doc {
    arena_block *blocks;
    nf_json root;
};

static void *arena_alloc(nf_json_doc *d, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX - align) return NULL;
    n = (n + align - 1) / align * align;
    arena_block *b = d->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (size_t)65536 ? n : (size_t)65536;
        if (cap > SIZE_MAX - sizeof(arena_block)) return NULL;
        arena_block *nb = malloc(sizeof(arena_block) + cap);
        if (!nb) return NULL;
        nb->next = d->blocks;
        nb->used = 0;
        nb->cap = cap;
        d->blocks = nb;
        b = nb;
    }
    void *r = (char *)b->data + b->used;
    b->used += n;
    return r;
}

void nf_json_free(nf_json_doc *doc)
{
    if (!doc) return;
    arena_block *b = doc->blocks;
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    free(doc);
}

const nf_json *nf_json_root(const nf_json_doc *doc) { return doc ? &doc->root : NULL; }

/* ---------------------------------------------------------------- parser */

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    int depth, max_depth;
    nf_json_doc *doc;
    const char *err;   /* first error */
    size_t err_pos;
    int nomem;
} parser;

static int fail_at(parser *p, size_t pos, const char *msg)
{
    if (!p->err) {
        p->err = msg;
        p->err_pos = pos;
    }
    return -1;
}

static int fail_nomem(parser *p)
{
    p->nomem = 1;
    return fail_at(p, p->pos, "out of memory");
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            p->pos++;
        else
            break;
    }
}

static int literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return fail_at(p, p->pos, "invalid literal");
    p->pos += n;
    return 0;
}

/* Length of the valid UTF-8 sequence at s[0..avail) (RFC 3629, table 3-7 of Unicode:
 * no overlong forms, no encoded surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) { n = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) n = 3;
    else if (c == 0xED) { n = 3; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) n = 3;
    else if (c == 0xF0) { n = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) { n = 4; hi = 0x8F; }
    else return 0;
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

static int hex4(parser *p, size_t at, unsigned *out)
{
    if (p->len - at < 4) return fail_at(p, at, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p->s[at + (size_t)i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return fail_at(p, at + (size_t)i, "invalid hex digit in \\u escape");
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At the opening quote. Decodes into the arena. The decoded text is never longer than
 * the raw text (each escape shrinks or keeps its length), so one allocation of the raw
 * length suffices; the raw extent is found first. */
static int parse_string(parser *p, nf_json *v)
{
    size_t start = p->pos; /* the quote */
    size_t i = start + 1;
    for (;;) {
        if (i >= p->len) return fail_at(p, start, "unterminated string");
        unsigned char c = p->s[i];
        if (c == '"') break;
        if (c == '\\') {
            if (i + 1 >= p->len) return fail_at(p, start, "unterminated string");
            i += 2;
        } else {
            i++;
        }
    }
    size_t raw_end = i; /* the closing quote */
    unsigned char *out = arena_alloc(p->doc, raw_end - start);
    if (!out) return fail_nomem(p);
    size_t o = 0;
    i = start + 1;
    while (i < raw_end) {
        unsigned char c = p->s[i];
        if (c < 0x20) return fail_at(p, i, "control character in string");
        if (c == '\\') {
            unsigned char e = p->s[i + 1]; /* i + 1 < raw_end: the scan skipped it */
            i += 2;
            switch (e) {
            case '"': out[o++] = '"'; break;
            case '\\': out[o++] = '\\'; break;
            case '/': out[o++] = '/'; break;
            case 'b': out[o++] = '\b'; break;
            case 'f': out[o++] = '\f'; break;
            case 'n': out[o++] = '\n'; break;
            case 'r': out[o++] = '\r'; break;
            case 't': out[o++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (i + 4 > raw_end) return fail_at(p, i - 2, "truncated \\u escape");
                if (hex4(p, i, &cp)) return -1;
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    /* A high surrogate must be followed by \u and a low one (RFC 8259 s.7). */
                    unsigned lo;
                    if (i + 6 > raw_end || p->s[i] != '\\' || p->s[i + 1] != 'u')
                        return fail_at(p, i - 6, "lone high surrogate in \\u escape");
                    if (hex4(p, i + 2, &lo)) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return fail_at(p, i, "high surrogate not followed by a low one");
                    i += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return fail_at(p, i - 6, "lone low surrogate in \\u escape");
                }
                o += put_utf8(out + o, cp);
                break;
            }
            default:
                return fail_at(p, i - 1, "invalid escape in string");
            }
        } else if (c < 0x80) {
            out[o++] = c;
            i++;
        } else {
            size_t n = utf8_seq(p->s + i, raw_end - i);
            if (!n) return fail_at(p, i, "invalid UTF-8 in string");
            memcpy(out + o, p->s + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = '\0'; /* o < raw_end - start: the opening quote's byte is spare */
    v->type = NF_JSON_STRING;
    v->str = (const char *)out;
    v->str_len = o;
    p->pos = raw_end + 1;
    return 0;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, nf_json *v)
{
    size_t start = p->pos, i = p->pos;
    int neg = 0, integral = 1;
    if (i < p->len && p->s[i] == '-') { neg = 1; i++; }
    if (i >= p->len || !is_digit(p->s[i])) return fail_at(p, i, "invalid number");
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && is_digit(p->s[i])) return fail_at(p, i, "leading zero in number");
    } else {
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && p->s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->len || !is_digit(p->s[i])) return fail_at(p, i, "digit expected after '.'");
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->len || !is_digit(p->s[i])) return fail_at(p, i, "digit expected in exponent");
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    size_t n = i - start;
    /* strtod needs a terminated copy; the input may not be terminated. */
    char small[64];
    char *buf = small;
    if (n + 1 > sizeof small) {
        buf = malloc(n + 1);
        if (!buf) return fail_nomem(p);
    }
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    v->type = NF_JSON_NUMBER;
    v->number = strtod(buf, NULL); /* overflow gives +-HUGE_VAL: still a number */
    if (buf != small) free(buf);
    v->is_u64 = v->is_i64 = 0;
    if (integral) {
        uint64_t m = 0;
        int over = 0;
        for (size_t k = start + (size_t)neg; k < i; k++) {
            unsigned d = (unsigned)(p->s[k] - '0');
            if (m > (UINT64_MAX - d) / 10) { over = 1; break; }
            m = m * 10 + d;
        }
        if (!over) {
            if (!neg) {
                v->is_u64 = 1;
                v->u64 = m;
                if (m <= (uint64_t)INT64_MAX) { v->is_i64 = 1; v->i64 = (int64_t)m; }
            } else if (m <= (uint64_t)INT64_MAX + 1) {
                v->is_i64 = 1;
                v->i64 = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
                if (m == 0) { v->is_u64 = 1; v->u64 = 0; } /* "-0" */
            }
        }
    }
    p->pos = i;
    return 0;
}

/* A growable vector of values (or keys) for one array/object being parsed. */
typedef struct {
    nf_json *v;
    size_t n, cap;
} vec;

static int vec_push(parser *p, vec *a, const nf_json *x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof(nf_json)) return fail_nomem(p);
        nf_json *nv = realloc(a->v, cap * sizeof(nf_json));
        if (!nv) return fail_nomem(p);
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = *x;
    return 0;
}

static const nf_json *vec_to_arena(parser *p, const vec *a)
{
    if (a->n == 0) return NULL;
    nf_json *r = arena_alloc(p->doc, a->n * sizeof(nf_json)); /* n*size <= cap*size: no overflow */
    if (!r) {
        fail_nomem(p);
        return NULL;
    }
    memcpy(r, a->v, a->n * sizeof(nf_json));
    return r;
}

static int parse_value(parser *p, nf_json *v);

static int parse_container(parser *p, nf_json *v, int is_object)
{
    if (++p->depth > p->max_depth) return fail_at(p, p->pos, "nesting too deep");
    size_t open = p->pos;
    p->pos++; /* '[' or '{' */
    vec items = {0}, keys = {0};
    int rc = -1;
    unsigned char close = is_object ? '}' : ']';
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            nf_json item;
            memset(&item, 0, sizeof item);
            if (is_object) {
                nf_json key;
                memset(&key, 0, sizeof key);
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != '"') {
                    fail_at(p, p->pos, "string key expected");
                    goto out;
                }
                key.offset = p->pos;
                if (parse_string(p, &key) || vec_push(p, &keys, &key)) goto out;
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':') {
                    fail_at(p, p->pos, "':' expected after key");
                    goto out;
                }
                p->pos++;
            }
            if (parse_value(p, &item) || vec_push(p, &items, &item)) goto out;
            skip_ws(p);
            if (p->pos >= p->len) {
                fail_at(p, open, is_object ? "unterminated object" : "unterminated array");
                goto out;
            }
            unsigned char c = p->s[p->pos];
            if (c == ',') {
                p->pos++;
                continue;
            }
            if (c == close) {
                p->pos++;
                break;
            }
            fail_at(p, p->pos, is_object ? "',' or '}' expected" : "',' or ']' expected");
            goto out;
        }
    }
    v->type = is_object ? NF_JSON_OBJECT : NF_JSON_ARRAY;
    v->n = items.n;
    v->items = vec_to_arena(p, &items);
    if (items.n && !v->items) goto out;
    if (is_object) {
        v->keys = vec_to_arena(p, &keys);
        if (keys.n && !v->keys) goto out;
    }
    rc = 0;
out:
    free(items.v);
    free(keys.v);
    p->depth--;
    return rc;
}

static int parse_value(parser *p, nf_json *v)
{
    skip_ws(p);
    memset(v, 0, sizeof *v);
    v->offset = p->pos;
    if (p->pos >= p->len) return fail_at(p, p->pos, "value expected, found end of input");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_container(p, v, 1);
    case '[': return parse_container(p, v, 0);
    case '"': return parse_string(p, v);
    case 't':
        v->type = NF_JSON_BOOL;
        v->boolean = 1;
        return literal(p, "true");
    case 'f':
        v->type = NF_JSON_BOOL;
        return literal(p, "false");
    case 'n':
        v->type = NF_JSON_NULL;
        return literal(p, "null");
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
        return fail_at(p, p->pos, "unexpected character");
    }
}

nf_status nf_json_parse(const char *text, size_t len, const char *what, int max_depth,
                        nf_json_doc **out)
{
    *out = NULL;
    if (!what) what = "JSON";
    if (!text && len) return nf_fail(NF_ERR_ARG, "%s: no input", what);
    nf_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) return nf_fail(NF_ERR_NOMEM, "%s: out of memory parsing JSON", what);
    parser p = {(const unsigned char *)text, len, 0, 0,
                max_depth > 0 ? max_depth : NF_JSON_DEFAULT_DEPTH, doc, NULL, 0, 0};
    if (parse_value(&p, &doc->root) == 0) {
        skip_ws(&p);
        if (p.pos != p.len) fail_at(&p, p.pos, "trailing characters after the value");
    }
    if (p.err) {
        nf_json_free(doc);
        return nf_fail(p.nomem ? NF_ERR_NOMEM : NF_ERR_FORMAT, "%s: JSON error at byte %zu: %s",
                       what, p.err_pos, p.err);
    }
    *out = doc;
    return NF_OK;
}

const nf_json *nf_json_get(const nf_json *obj, const char *key)
{
    if (!obj || obj->type != NF_JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->keys[i].str_len == kl && memcmp(obj->keys[i].str, key, kl) == 0)
            return &obj->items[i];
    return NULL;
}

int nf_json_is_string(const nf_json *v, const char *s)
{
    return v && v->type == NF_JSON_STRING && v->str_len == strlen(s) && memcmp(v->str, s, v->str_len) == 0;
}

/* ---------------------------------------------------------------- writer */

void nf_jw_init(nf_json_writer *w) { memset(w, 0, sizeof *w); }

void nf_jw_free(nf_json_writer *w)
{
    free(w->data);
    memset(w, 0, sizeof *w);
}

static void put(nf_json_writer *w, const char *s, size_t n)
{
    if (w->err) return;
    if (n > SIZE_MAX - w->len - 1) {
        w->err = NF_ERR_NOMEM;
        return;
    }
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n + 1) {
            if (cap > SIZE_MAX / 2) {
                cap = w->len + n + 1;
                break;
            }
            cap *= 2;
        }
        char *d = realloc(w->data, cap);
        if (!d) {
            w->err = NF_ERR_NOMEM;
            return;
        }
        w->data = d;
        w->cap = cap;
    }
    memcpy(w->data + w->len, s, n);
    w->len += n;
    w->data[w->len] = '\0';
}

/* Before any value: a comma if the enclosing container already has an item. A value at
 * the top level is allowed once. */
static void before_value(nf_json_writer *w)
{
    if (w->err) return;
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth == 0) {
        if (w->len) w->err = NF_ERR_ARG; /* second top-level value */
        return;
    }
    if (w->in_object[w->depth - 1]) {
        w->err = NF_ERR_ARG; /* a value in an object without its key */
        return;
    }
    if (w->has_items[w->depth - 1]) put(w, ",", 1);
    w->has_items[w->depth - 1] = 1;
}

static void begin(nf_json_writer *w, char c)
{
    before_value(w);
    if (w->err) return;
    if (w->depth >= NF_JSON_WRITER_DEPTH) {
        w->err = NF_ERR_ARG;
        return;
    }
    put(w, &c, 1);
    w->in_object[w->depth] = c == '{';
    w->has_items[w->depth++] = 0;
}

static void end(nf_json_writer *w, char c)
{
    if (w->err) return;
    if (w->depth == 0 || w->after_key || w->in_object[w->depth - 1] != (c == '}')) {
        w->err = NF_ERR_ARG;
        return;
    }
    w->depth--;
    put(w, &c, 1);
}

void nf_jw_begin_object(nf_json_writer *w) { begin(w, '{'); }
void nf_jw_end_object(nf_json_writer *w) { end(w, '}'); }
void nf_jw_begin_array(nf_json_writer *w) { begin(w, '['); }
void nf_jw_end_array(nf_json_writer *w) { end(w, ']'); }

static void put_escaped(nf_json_writer *w, const char *s, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    put(w, "\"", 1);
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c == '\b') esc = "\\b";
        else if (c == '\f') esc = "\\f";
        else if (c < 0x20) {
            u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
            u[4] = hexd[c >> 4]; u[5] = hexd[c & 15]; u[6] = '\0';
            esc = u;
        }
        if (esc) {
            put(w, s + run, i - run);
            put(w, esc, strlen(esc));
            run = i + 1;
        }
    }
    put(w, s + run, n - run);
    put(w, "\"", 1);
}

void nf_jw_key(nf_json_writer *w, const char *key)
{
    if (w->err) return;
    if (w->depth == 0 || w->after_key || !w->in_object[w->depth - 1]) {
        w->err = NF_ERR_ARG;
        return;
    }
    if (w->has_items[w->depth - 1]) put(w, ",", 1);
    w->has_items[w->depth - 1] = 1;
    put_escaped(w, key, strlen(key));
    put(w, ":", 1);
    w->after_key = 1;
}

void nf_jw_string_n(nf_json_writer *w, const char *s, size_t n)
{
    before_value(w);
    put_escaped(w, s, n);
}

void nf_jw_string(nf_json_writer *w, const char *s) { nf_jw_string_n(w, s, strlen(s)); }

void nf_jw_int(nf_json_writer *w, int64_t v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%lld", (long long)v);
    before_value(w);
    put(w, b, (size_t)n);
}

void nf_jw_uint(nf_json_writer *w, uint64_t v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    before_value(w);
    put(w, b, (size_t)n);
}

void nf_jw_double(nf_json_writer *w, double v)
{
    if (!isfinite(v)) {
        if (!w->err) w->err = NF_ERR_NUMERIC;
        return;
    }
    /* The shortest of %.15g..%.17g that reads back exactly. */
    char b[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(b, sizeof b, "%.*g", prec, v);
        if (strtod(b, NULL) == v) break;
    }
    before_value(w);
    put(w, b, (size_t)n);
}

void nf_jw_bool(nf_json_writer *w, int v)
{
    before_value(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
}

void nf_jw_null(nf_json_writer *w)
{
    before_value(w);
    put(w, "null", 4);
}

void nf_jw_raw(nf_json_writer *w, const char *s, size_t n)
{
    before_value(w);
    put(w, s, n);
}

nf_status nf_jw_finish(nf_json_writer *w)
{
    if (w->err == NF_ERR_NOMEM) return nf_fail(NF_ERR_NOMEM, "JSON writer: out of memory");
    if (w->err == NF_ERR_NUMERIC) return nf_fail(NF_ERR_NUMERIC, "JSON writer: NaN or infinity has no JSON form");
    if (w->err) return nf_fail(w->err, "JSON writer: values written out of order");
    if (w->depth != 0 || w->after_key || w->len == 0)
        return nf_fail(NF_ERR_ARG, "JSON writer: document not complete");
    return NF_OK;
}
