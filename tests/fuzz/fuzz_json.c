/* libFuzzer target: the strict JSON parser (model/nf_json.h), which reads every
 * safetensors header and model description. The input is parsed exactly as given (not
 * NUL-terminated: the parser must never read past `len`); a parsed document is walked
 * completely and written back with the writer, and that text must parse again to the
 * same shape. Then the two model-description readers run on the same bytes. */
#include "nf_checkpoint.h"
#include "nf_json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void write_value(nf_json_writer *w, const nf_json *v)
{
    switch (v->type) {
    case NF_JSON_NULL: nf_jw_null(w); break;
    case NF_JSON_BOOL: nf_jw_bool(w, v->boolean); break;
    case NF_JSON_NUMBER:
        if (v->is_i64) nf_jw_int(w, v->i64);
        else if (v->is_u64) nf_jw_uint(w, v->u64);
        else nf_jw_double(w, v->number);
        break;
    case NF_JSON_STRING: nf_jw_string_n(w, v->str, v->str_len); break;
    case NF_JSON_ARRAY:
        nf_jw_begin_array(w);
        for (size_t i = 0; i < v->n; i++) write_value(w, &v->items[i]);
        nf_jw_end_array(w);
        break;
    case NF_JSON_OBJECT:
        nf_jw_begin_object(w);
        for (size_t i = 0; i < v->n; i++) {
            /* nf_jw_key takes a C string: a key with a \u0000 inside is written as "". */
            nf_jw_key(w, memchr(v->keys[i].str, 0, v->keys[i].str_len) ? "" : v->keys[i].str);
            write_value(w, &v->items[i]);
        }
        nf_jw_end_object(w);
        break;
    }
}

static size_t count_values(const nf_json *v)
{
    size_t n = 1;
    if (v->type == NF_JSON_ARRAY || v->type == NF_JSON_OBJECT)
        for (size_t i = 0; i < v->n; i++) n += count_values(&v->items[i]);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so that ASan catches any read past the end. */
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    nf_json_doc *doc = NULL;
    nf_status st = nf_json_parse(text, size, "fuzz.json", 0, &doc);
    if (st == NF_OK) {
        const nf_json *root = nf_json_root(doc);
        if (!root) abort();
        size_t n1 = count_values(root);
        nf_json_writer w;
        nf_jw_init(&w);
        /* The writer is shallower than the parser: deep documents may fail to write. */
        write_value(&w, root);
        if (nf_jw_finish(&w) == NF_OK) {
            nf_json_doc *doc2 = NULL;
            if (nf_json_parse(w.data, w.len, "rewritten", 0, &doc2) != NF_OK) abort();
            if (count_values(nf_json_root(doc2)) != n1) abort();
            nf_json_free(doc2);
        }
        nf_jw_free(&w);
        nf_json_free(doc);
    } else if (doc) {
        abort(); /* a failed parse must not hand out a document */
    }
    nf_model_desc d;
    (void)nf_model_desc_from_json(text, size, "fuzz", &d);
    nf_unet_config c;
    (void)nf_unet_config_from_json(text, size, "fuzz", &c);
    free(text);
    return 0;
}
