/* A small strict JSON (RFC 8259) parser and writer, for safetensors headers and the
 * model description stored in them.
 *
 * The parser reads exactly `len` bytes (the input need not be NUL-terminated and is
 * never read past its end), accepts only what RFC 8259 allows (no comments, trailing
 * commas, NaN, leading zeros, control characters in strings, invalid UTF-8 or lone
 * surrogates), limits nesting depth, and reports the first error with its byte offset.
 * Values live in one arena owned by the document, freed by nf_json_free().
 *
 * The writer appends to a growable buffer, escaping strings as JSON requires and
 * inserting the commas itself. */
#ifndef NF_JSON_H
#define NF_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "nf_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    NF_JSON_NULL,
    NF_JSON_BOOL,
    NF_JSON_NUMBER,
    NF_JSON_STRING,
    NF_JSON_ARRAY,
    NF_JSON_OBJECT
} nf_json_type;

typedef struct nf_json nf_json;
struct nf_json {
    nf_json_type type;
    size_t offset;      /* byte offset of the value's first character in the input */
    int boolean;        /* NF_JSON_BOOL */
    double number;      /* NF_JSON_NUMBER (nearest double) */
    /* NF_JSON_NUMBER written as an integer (no fraction, no exponent) that fits:
     * is_u64 for 0..2^64-1 (value in u64), is_i64 for -2^63..2^63-1 (value in i64). */
    int is_u64, is_i64;
    uint64_t u64;
    int64_t i64;
    const char *str;    /* NF_JSON_STRING: decoded UTF-8, NUL-terminated */
    size_t str_len;     /* bytes, without the terminator (a \u0000 escape may be inside) */
    size_t n;           /* NF_JSON_ARRAY / NF_JSON_OBJECT: number of items */
    const nf_json *items;       /* n values */
    const nf_json *keys;        /* NF_JSON_OBJECT: n string values, keys[i] names items[i] */
};

typedef struct nf_json_doc nf_json_doc;

#define NF_JSON_DEFAULT_DEPTH 64

/* Parse `len` bytes of `text`. `what` names the input in error messages (a file name;
 * may be NULL). max_depth <= 0 means NF_JSON_DEFAULT_DEPTH. On failure returns
 * NF_ERR_FORMAT (or NF_ERR_NOMEM) with "<what>: JSON error at byte <k>: <problem>". */
nf_status nf_json_parse(const char *text, size_t len, const char *what, int max_depth,
                        nf_json_doc **out);
const nf_json *nf_json_root(const nf_json_doc *doc);
void nf_json_free(nf_json_doc *doc);

/* The first member named `key` of an object (NULL if `obj` is not an object or has no
 * such member). */
const nf_json *nf_json_get(const nf_json *obj, const char *key);
/* 1 if `v` is a string equal to s (no embedded NUL). */
int nf_json_is_string(const nf_json *v, const char *s);

/* ---- writer ---- */

#define NF_JSON_WRITER_DEPTH 32

typedef struct {
    char *data;        /* NUL-terminated while no error */
    size_t len, cap;
    int depth;
    unsigned char has_items[NF_JSON_WRITER_DEPTH]; /* a comma is due before the next item */
    unsigned char in_object[NF_JSON_WRITER_DEPTH]; /* values there need a key first */
    int after_key;     /* a key was written; its value comes next (no comma) */
    nf_status err;     /* first error (sticky): NF_ERR_NOMEM, or NF_ERR_ARG for misuse */
} nf_json_writer;

void nf_jw_init(nf_json_writer *w);
void nf_jw_free(nf_json_writer *w);
void nf_jw_begin_object(nf_json_writer *w);
void nf_jw_end_object(nf_json_writer *w);
void nf_jw_begin_array(nf_json_writer *w);
void nf_jw_end_array(nf_json_writer *w);
void nf_jw_key(nf_json_writer *w, const char *key);
void nf_jw_string(nf_json_writer *w, const char *s);
void nf_jw_string_n(nf_json_writer *w, const char *s, size_t n);
void nf_jw_int(nf_json_writer *w, int64_t v);
void nf_jw_uint(nf_json_writer *w, uint64_t v);
/* Shortest text that reads back as the same double; NaN/Inf are an error (JSON has none). */
void nf_jw_double(nf_json_writer *w, double v);
void nf_jw_bool(nf_json_writer *w, int v);
void nf_jw_null(nf_json_writer *w);
/* Append text as is (the caller vouches that it is valid JSON for this place). */
void nf_jw_raw(nf_json_writer *w, const char *s, size_t n);
/* Check that the document is complete; returns NF_OK or the first error with a message.
 * The text stays in w->data / w->len (owned by the writer until nf_jw_free). */
nf_status nf_jw_finish(nf_json_writer *w);

#ifdef __cplusplus
}
#endif
#endif
