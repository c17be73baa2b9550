/* The strict JSON parser and writer (model/nf_json.h): valid documents decode to the
 * right values, everything RFC 8259 forbids is refused with a byte offset, no input
 * (every prefix of a document, random mutations) makes it read past the end (inputs
 * are copied to exact-size heap buffers so that ASan sees any overread), and the
 * writer's output parses back to what was written. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nf_json.h"
#include "nf_test.h"

/* Parse s[0..n) from an exact-size heap copy (no terminator after it). */
static nf_status parse_exact(const char *s, size_t n, nf_json_doc **doc)
{
    char *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, s, n);
    nf_status st = nf_json_parse(copy, n, "t.json", 0, doc);
    free(copy);
    return st;
}

static int parses(const char *s)
{
    nf_json_doc *d = NULL;
    nf_status st = parse_exact(s, strlen(s), &d);
    nf_json_free(d);
    return st == NF_OK;
}

static void test_values(void)
{
    const char *text = " {\"a\": [1, -2, 3.5e2, 0, -0, 18446744073709551615, 18446744073709551616,"
                       " -9223372036854775808, 1e-400, 1E+2],"
                       " \"s\": \"x\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud834\\udd1e\\u0000z\","
                       " \"t\": true, \"f\": false, \"n\": null, \"o\": {}, \"e\": [],"
                       " \"u\": \"caf\xc3\xa9 \xe2\x99\xab\"} ";
    nf_json_doc *d = NULL;
    CHECK_OK(parse_exact(text, strlen(text), &d));
    if (!d) return;
    const nf_json *r = nf_json_root(d);
    CHECK(r->type == NF_JSON_OBJECT && r->n == 8, "root type %d n %zu", r->type, r->n);
    const nf_json *a = nf_json_get(r, "a");
    CHECK(a && a->type == NF_JSON_ARRAY && a->n == 10, "array");
    if (a && a->n == 10) {
        CHECK(a->items[0].is_u64 && a->items[0].u64 == 1 && a->items[0].number == 1.0, "1");
        CHECK(a->items[1].is_i64 && !a->items[1].is_u64 && a->items[1].i64 == -2, "-2");
        CHECK(!a->items[2].is_u64 && !a->items[2].is_i64 && a->items[2].number == 350.0, "3.5e2");
        CHECK(a->items[3].is_u64 && a->items[3].u64 == 0, "0");
        CHECK(a->items[4].is_i64 && a->items[4].i64 == 0, "-0");
        CHECK(a->items[5].is_u64 && a->items[5].u64 == UINT64_MAX && !a->items[5].is_i64, "u64 max");
        CHECK(!a->items[6].is_u64 && !a->items[6].is_i64 && a->items[6].number == 18446744073709551616.0,
              "2^64 is a double only");
        CHECK(a->items[7].is_i64 && a->items[7].i64 == INT64_MIN, "i64 min");
        CHECK(a->items[8].number == 0.0, "underflow");
        CHECK(a->items[9].number == 100.0, "1E+2");
        CHECK(a->items[5].offset > 0 && text[a->items[5].offset] == '1', "offset of a value");
    }
    const nf_json *s = nf_json_get(r, "s");
    const char want[] = "x\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e\0z";
    CHECK(s && s->type == NF_JSON_STRING && s->str_len == sizeof want - 1 &&
              memcmp(s->str, want, sizeof want) == 0,
          "escapes decoded (len %zu)", s ? s->str_len : 0);
    CHECK(nf_json_get(r, "t")->boolean == 1 && nf_json_get(r, "f")->type == NF_JSON_BOOL &&
              nf_json_get(r, "f")->boolean == 0 && nf_json_get(r, "n")->type == NF_JSON_NULL,
          "literals");
    CHECK(nf_json_get(r, "o")->type == NF_JSON_OBJECT && nf_json_get(r, "o")->n == 0, "{}");
    CHECK(nf_json_get(r, "e")->type == NF_JSON_ARRAY && nf_json_get(r, "e")->n == 0, "[]");
    CHECK(nf_json_is_string(nf_json_get(r, "u"), "caf\xc3\xa9 \xe2\x99\xab"), "raw UTF-8 kept");
    CHECK(nf_json_get(r, "missing") == NULL, "missing key");
    nf_json_free(d);
}

static void test_invalid(void)
{
    static const char *bad[] = {
        "", " ", "{", "}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{'a':1}",
        "[01]", "[1.]", "[.5]", "[1e]", "[1e+]", "[-]", "[+1]", "[NaN]", "[Infinity]",
        "[0x10]", "tru", "nul", "True", "[\"a\tb\"]", "[\"a\nb\"]", "[\"\\x\"]",
        "[\"\\u12\"]", "[\"\\u12g4\"]", "[\"\\ud834\"]", "[\"\\ud834\\u0041\"]",
        "[\"\\udd1e\"]", "[\"\xff\"]", "[\"\xc0\xaf\"]", "[\"\xed\xa0\x80\"]",
        "[\"\xf4\x90\x80\x80\"]", "[\"\xe2\x82\"]", "[1] [2]", "[1] x", "/*c*/[1]",
        "[\"abc", "\"abc\\", "{\"a\":}", "[1 2]", "\xef\xbb\xbf[1]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        nf_json_doc *d = NULL;
        nf_status st = parse_exact(bad[i], strlen(bad[i]), &d);
        CHECK(st == NF_ERR_FORMAT && d == NULL, "accepted invalid JSON #%zu '%s'", i, bad[i]);
        const char *msg = nf_last_error();
        CHECK(strncmp(msg, "t.json: JSON error at byte ", 27) == 0 && !strchr(msg, '\n'),
              "message '%s'", msg);
    }
    /* The offset points at the problem. */
    nf_json_doc *d = NULL;
    parse_exact("[1, 2, x]", 9, &d);
    CHECK(strstr(nf_last_error(), "at byte 7:") != NULL, "offset: %s", nf_last_error());

    /* Depth limit: 64 levels parse, 65 do not; very deep input does not blow the stack. */
    char deep[200001];
    for (int depth = 63; depth <= 66; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++) deep[n++] = '[';
        for (int i = 0; i < depth; i++) deep[n++] = ']';
        nf_status st = parse_exact(deep, n, &d);
        nf_json_free(d);
        d = NULL;
        CHECK((st == NF_OK) == (depth <= NF_JSON_DEFAULT_DEPTH), "depth %d: %d", depth, st);
    }
    memset(deep, '[', 100000);
    CHECK(parse_exact(deep, 100000, &d) == NF_ERR_FORMAT, "100000 open brackets");
    CHECK(strstr(nf_last_error(), "nesting too deep") != NULL, "%s", nf_last_error());
}

static void test_prefixes_and_mutations(void)
{
    const char *doc = "{\"name\": \"a\\u00e9\\ud834\\udd1e\", \"shape\": [1, 22, 333],"
                      " \"x\": -1.5e-3, \"ok\": [true, false, null], \"o\": {\"k\": \"v\"}}";
    size_t n = strlen(doc);
    CHECK(parses(doc), "the base document parses");
    /* Every proper prefix is incomplete JSON: all must fail, none may overread. */
    int prefix_ok = 0;
    for (size_t k = 0; k < n; k++) {
        nf_json_doc *d = NULL;
        if (parse_exact(doc, k, &d) == NF_OK) prefix_ok++;
        nf_json_free(d);
    }
    CHECK(prefix_ok == 0, "%d prefixes parsed", prefix_ok);
    /* Random single- and multi-byte mutations: must not crash or overread (ASan), and a
     * success must be a well-formed tree. */
    uint64_t state = 88172645463325252ULL;
    char buf[256];
    int ran = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(buf, doc, n);
        int flips = 1 + it % 4;
        for (int f = 0; f < flips; f++) {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17; /* xorshift64 */
            buf[state % n] = (char)(state >> 32);
        }
        size_t len = n - (size_t)(it % 3 == 0 ? (state >> 40) % 8 : 0);
        nf_json_doc *d = NULL;
        nf_status st = parse_exact(buf, len, &d);
        if (st == NF_OK) CHECK(nf_json_root(d) != NULL, "root");
        else CHECK(st == NF_ERR_FORMAT, "status %d", st);
        nf_json_free(d);
        ran++;
    }
    CHECK(ran == 20000, "mutations ran");
}

static void test_writer(void)
{
    nf_json_writer w;
    nf_jw_init(&w);
    const char tricky[] = "q\" b\\ n\n t\t c\x01 d\x1f e\x7f \xc3\xa9 / end";
    double dv[] = {0.1, -1e300, 5e-324, 1.0 / 3.0, 123456789.0, -0.0, 3.4028234663852886e38};
    nf_jw_begin_object(&w);
    nf_jw_key(&w, "str");
    nf_jw_string(&w, tricky);
    nf_jw_key(&w, "nul");
    nf_jw_string_n(&w, "a\0b", 3);
    nf_jw_key(&w, "k\"ey");
    nf_jw_begin_array(&w);
    for (size_t i = 0; i < sizeof dv / sizeof dv[0]; i++) nf_jw_double(&w, dv[i]);
    nf_jw_int(&w, INT64_MIN);
    nf_jw_uint(&w, UINT64_MAX);
    nf_jw_bool(&w, 1);
    nf_jw_null(&w);
    nf_jw_begin_object(&w);
    nf_jw_end_object(&w);
    nf_jw_end_array(&w);
    nf_jw_end_object(&w);
    CHECK_OK(nf_jw_finish(&w));
    CHECK(strchr(w.data, '\n') == NULL && strchr(w.data, '\x01') == NULL, "control characters escaped: %s", w.data);
    nf_json_doc *d = NULL;
    CHECK_OK(parse_exact(w.data, w.len, &d));
    if (d) {
        const nf_json *r = nf_json_root(d);
        CHECK(nf_json_is_string(nf_json_get(r, "str"), tricky), "string round trip");
        const nf_json *nul = nf_json_get(r, "nul");
        CHECK(nul && nul->str_len == 3 && memcmp(nul->str, "a\0b", 3) == 0, "embedded NUL round trip");
        const nf_json *a = nf_json_get(r, "k\"ey");
        CHECK(a && a->n == 12, "array length");
        for (size_t i = 0; a && i < sizeof dv / sizeof dv[0]; i++)
            CHECK(a->items[i].number == dv[i] && !signbit(a->items[i].number) == !signbit(dv[i]),
                  "double %zu: %.17g != %.17g", i, a->items[i].number, dv[i]);
        CHECK(a && a->items[7].is_i64 && a->items[7].i64 == INT64_MIN, "int64 min");
        CHECK(a && a->items[8].is_u64 && a->items[8].u64 == UINT64_MAX, "uint64 max");
        CHECK(a && a->items[11].type == NF_JSON_OBJECT, "nested object");
    }
    nf_json_free(d);
    nf_jw_free(&w);

    /* Misuse and non-finite numbers are errors, not bad output. */
    nf_jw_init(&w);
    nf_jw_begin_array(&w);
    nf_jw_double(&w, NAN);
    nf_jw_end_array(&w);
    CHECK(nf_jw_finish(&w) == NF_ERR_NUMERIC, "NaN refused");
    nf_jw_free(&w);
    nf_jw_init(&w);
    nf_jw_begin_object(&w);
    nf_jw_int(&w, 1);
    nf_jw_end_object(&w);
    CHECK(nf_jw_finish(&w) == NF_ERR_ARG, "a value without a key refused");
    nf_jw_free(&w);
    nf_jw_init(&w);
    nf_jw_begin_array(&w);
    nf_jw_key(&w, "k");
    CHECK(nf_jw_finish(&w) == NF_ERR_ARG, "a key in an array refused");
    nf_jw_free(&w);
    nf_jw_init(&w);
    nf_jw_begin_object(&w);
    CHECK(nf_jw_finish(&w) == NF_ERR_ARG, "unclosed object refused");
    nf_jw_free(&w);
    nf_jw_init(&w);
    nf_jw_end_array(&w);
    CHECK(nf_jw_finish(&w) == NF_ERR_ARG, "unbalanced end refused");
    nf_jw_free(&w);
}

int main(void)
{
    test_values();
    test_invalid();
    test_prefixes_and_mutations();
    test_writer();
    return nf_test_done();
}
