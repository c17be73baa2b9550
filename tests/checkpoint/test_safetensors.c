/* safetensors (model/nf_safetensors.h):
 * - half / bfloat16 conversion against independent truth (the compiler's _Float16 where
 *   it has one, and a nearest-value check against the neighbouring halves everywhere);
 * - C write -> C read round trips (F32 exact, F16 / BF16 to their precision, I64 exact);
 * - fixtures written by tests/reference/safetensors_np.py (committed) load with the
 *   values stored in their metadata;
 * - a file written here is checked by tests/reference/check_safetensors.py (values and a
 *   byte-identical layout), when /usr/bin/python3 with numpy is available;
 * - damaged files of every kind give a one-line error naming the file, never a crash or
 *   a read past the end (buffers are exact-size heap copies; run under ASan). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nf_json.h"
#include "nf_safetensors.h"
#include "nf_test.h"

static char build_root[2048] = ".", source_root[2048] = ".";

static void path_in(char *out, size_t n, const char *root, const char *rel)
{
    snprintf(out, n, "%s/%s", root, rel);
}

/* ------------------------------------------------------------ half conversion */

static float half_value(uint16_t h) { return nf_f16_to_f32(h); }

static void test_half(void)
{
    /* Every half: decode matches the definition (sign, exponent bias 15, subnormals
     * m 2^-24) computed with ldexp, and encodes back to itself. */
    int bad_dec = 0, bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        float f = nf_f16_to_f32((uint16_t)h);
        double want;
        if (e == 31) want = m ? NAN : INFINITY;
        else if (e == 0) want = ldexp((double)m, -24);
        else want = ldexp(1.0 + m / 1024.0, (int)e - 15);
        if (h & 0x8000) want = -want;
        if (isnan(want) ? !isnan(f) : (double)f != want || !signbit(f) != !signbit(want)) bad_dec++;
        uint16_t back = nf_f32_to_f16(f);
        if (isnan(f) ? (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != h) bad_rt++;
#ifdef __FLT16_MAX__
        _Float16 hf;
        uint16_t hh = (uint16_t)h;
        memcpy(&hf, &hh, 2);
        if (!isnan(f) && (float)hf != f) bad_dec++;
#endif
    }
    CHECK(bad_dec == 0, "%d halves decoded wrongly", bad_dec);
    CHECK(bad_rt == 0, "%d halves did not round-trip", bad_rt);

    /* Encoding: for a sweep of float bit patterns (all exponents, many mantissas, plus
     * every halfway point), the result is the nearest half, ties to even, and
     * overflow gives infinity. */
    int bad_enc = 0, cmp_f16 = 0;
    for (uint64_t bits = 0; bits < 0x100000000ULL; bits += 65521) {
        uint32_t b = (uint32_t)bits;
        float f;
        memcpy(&f, &b, 4);
        if (isnan(f)) continue;
        uint16_t h = nf_f32_to_f16(f);
        float v = half_value(h);
        double err = fabs((double)v - (double)f);
        if (fabs(f) >= 65520.0) {
            if (!isinf(v) || !signbit(v) != !signbit(f)) bad_enc++;
            continue;
        }
        /* Neighbours one step up and down in magnitude. */
        uint16_t mag = h & 0x7fff, sign = h & 0x8000;
        for (int d = -1; d <= 1; d += 2) {
            if ((d < 0 && mag == 0) || (d > 0 && mag >= 0x7bff)) continue;
            float nv = half_value((uint16_t)(sign | (uint16_t)(mag + d)));
            double nerr = fabs((double)nv - (double)f);
            if (nerr < err || (nerr == err && (h & 1))) bad_enc++;
        }
#ifdef __FLT16_MAX__
        _Float16 hf = (_Float16)f;
        uint16_t hb;
        memcpy(&hb, &hf, 2);
        if (hb != h) bad_enc++;
        cmp_f16++;
#endif
    }
    /* Exact halfway points between adjacent halves must go to the even one. */
    for (uint16_t h = 0; h < 0x7bff; h++) {
        double mid = ((double)half_value(h) + (double)half_value((uint16_t)(h + 1))) / 2;
        uint16_t got = nf_f32_to_f16((float)mid); /* mid is exact in float */
        uint16_t want = (h & 1) ? (uint16_t)(h + 1) : h;
        if (got != want) bad_enc++;
    }
    CHECK(bad_enc == 0, "%d floats encoded to the wrong half", bad_enc);
    printf("half conversion: %s\n", cmp_f16 ? "also compared with the compiler's _Float16" : "no _Float16 here");

    /* bfloat16: top 16 bits of the float, rounded to nearest even. */
    CHECK(nf_f32_to_bf16(1.0f) == 0x3f80 && nf_bf16_to_f32(0x3f80) == 1.0f, "bf16 1.0");
    float f = nf_bf16_to_f32(0x3f81), g = nf_bf16_to_f32(0x3f82);
    CHECK(nf_f32_to_bf16((f + g) / 2) == 0x3f82, "bf16 tie to even (up)");
    CHECK(nf_f32_to_bf16((1.0f + f) / 2) == 0x3f80, "bf16 tie to even (down)");
    CHECK(isnan(nf_bf16_to_f32(nf_f32_to_bf16(NAN))), "bf16 NaN");
    CHECK(isinf(nf_bf16_to_f32(nf_f32_to_bf16(3.4e38f))), "bf16 overflow rounds to inf");
}

/* ------------------------------------------------------------ round trip */

static void test_round_trip(void)
{
    char path[4096];
    path_in(path, sizeof path, build_root, "ckpt_roundtrip.safetensors");
    enum { N1 = 3 * 5 * 7, N2 = 1000 };
    float a[N1], h[N2], bf[N2];
    int64_t ints[5] = {INT64_MIN, -1, 0, 1, INT64_MAX};
    for (int i = 0; i < N1; i++) a[i] = sinf((float)i * 0.7f) * powf(10.0f, (float)(i % 11) - 5.0f);
    for (int i = 0; i < N2; i++) h[i] = bf[i] = cosf((float)i * 0.013f) * (float)(i % 37) * 17.0f;
    nf_st_tensor t[] = {
        {"z.a", NF_DT_F32, 3, {3, 5, 7}, a},
        {"h", NF_DT_F16, 2, {10, 100}, h},
        {"b", NF_DT_BF16, 1, {N2}, bf},
        {"ints", NF_DT_I64, 1, {5}, ints},
    };
    nf_st_meta meta[] = {{"k", "v"}, {"weird \"key\"\n", "caf\xc3\xa9\t\\"}};
    CHECK_OK(nf_st_write(path, t, 4, meta, 2));
    nf_st_file *f = NULL;
    CHECK_OK(nf_st_open(path, &f));
    if (!f) return;
    CHECK(nf_st_count(f) == 4, "count %d", nf_st_count(f));
    /* Written in the reference order: I64 (8 bytes) first, then F32, BF16, F16; each
     * tensor starts aligned to its element size. */
    const char *order[] = {"ints", "z.a", "b", "h"};
    for (int i = 0; i < 4 && i < nf_st_count(f); i++) {
        const nf_st_info *in = nf_st_at(f, i);
        CHECK(strcmp(in->name, order[i]) == 0, "file order %d: %s", i, in->name);
        CHECK(((uintptr_t)nf_st_data(f, in) - (uintptr_t)nf_st_data(f, nf_st_at(f, 0))) % nf_dtype_size(in->dtype) == 0,
              "alignment of %s", in->name);
    }
    float ra[N1], rh[N2], rb[N2];
    int64_t ri[5];
    int64_t sa[3] = {3, 5, 7};
    CHECK_OK(nf_st_read_f32(f, "z.a", ra, N1, 3, sa));
    CHECK(memcmp(ra, a, sizeof a) == 0, "F32 exact");
    CHECK_OK(nf_st_read_f32(f, "h", rh, N2, 0, NULL));
    CHECK_OK(nf_st_read_f32(f, "b", rb, N2, 0, NULL));
    int bad_h = 0, bad_b = 0;
    for (int i = 0; i < N2; i++) {
        /* Half: relative error <= 2^-11 in the normal range; absolute 2^-25 below it. */
        if (fabsf(rh[i] - h[i]) > fmaxf(fabsf(h[i]) * 0x1p-11f, 0x1p-25f)) bad_h++;
        if (fabsf(rb[i] - bf[i]) > fabsf(bf[i]) * 0x1p-8f) bad_b++;
        if (nf_f32_to_f16(rh[i]) != nf_f32_to_f16(h[i])) bad_h++; /* the stored half itself */
    }
    CHECK(bad_h == 0 && bad_b == 0, "F16 %d / BF16 %d out of precision", bad_h, bad_b);
    CHECK_OK(nf_st_read_i64(f, "ints", ri, 5, 0, NULL));
    CHECK(memcmp(ri, ints, sizeof ints) == 0, "I64 exact");
    CHECK(nf_st_meta_count(f) == 2 && strcmp(nf_st_meta_get(f, "k"), "v") == 0 &&
              strcmp(nf_st_meta_get(f, "weird \"key\"\n"), "caf\xc3\xa9\t\\") == 0,
          "metadata round trip");
    CHECK(nf_st_find(f, "nope") == NULL, "absent tensor");

    /* Shape checks name the file, the tensor and both shapes. */
    int64_t wrong[3] = {3, 5, 8};
    CHECK(nf_st_read_f32(f, "z.a", ra, N1, 3, wrong) == NF_ERR_CORRUPT, "wrong shape refused");
    char want[5000];
    snprintf(want, sizeof want, "%s: tensor z.a has shape [3, 5, 7], expected [3, 5, 8]", path);
    CHECK(strcmp(nf_last_error(), want) == 0, "message: %s", nf_last_error());
    CHECK(nf_st_read_f32(f, "z.a", ra, N1 - 1, 0, NULL) == NF_ERR_CORRUPT, "wrong count refused");
    CHECK(nf_st_read_f32(f, "ints", ra, 5, 0, NULL) == NF_ERR_FORMAT, "int tensor as float refused");
    CHECK(nf_st_read_f32(f, "missing", ra, 1, 0, NULL) == NF_ERR_CORRUPT &&
              strstr(nf_last_error(), "tensor missing is missing"),
          "missing: %s", nf_last_error());
    nf_st_close(f);

    /* Writer argument checks. */
    nf_st_tensor dup[] = {{"x", NF_DT_F32, 1, {1}, a}, {"x", NF_DT_F16, 1, {1}, a}};
    CHECK(nf_st_write(path, dup, 2, NULL, 0) == NF_ERR_ARG, "duplicate names refused");
    nf_st_tensor md[] = {{"__metadata__", NF_DT_F32, 1, {1}, a}};
    CHECK(nf_st_write(path, md, 1, NULL, 0) == NF_ERR_ARG, "reserved name refused");
    /* The failed writes left the previous file intact (atomic). */
    CHECK_OK(nf_st_open(path, &f));
    nf_st_close(f);

    /* An empty file (no tensors, no metadata) is the reference's 16 bytes. */
    path_in(path, sizeof path, build_root, "ckpt_empty.safetensors");
    CHECK_OK(nf_st_write(path, NULL, 0, NULL, 0));
    void *bytes;
    size_t n;
    CHECK_OK(nf_read_file(path, &bytes, &n));
    CHECK(n == 16 && memcmp(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0, "empty file layout");
    free(bytes);
}

/* ------------------------------------------------------------ Python fixtures */

static void test_python_fixtures(void)
{
    char path[4096];
    path_in(path, sizeof path, source_root, "tests/checkpoint/fixtures/py_basic.safetensors");
    nf_st_file *f = NULL;
    CHECK_OK(nf_st_open(path, &f));
    if (!f) return;
    CHECK(strcmp(nf_st_meta_get(f, "unicode"), "caf\xc3\xa9 \xe2\x99\xab \xf0\x9d\x84\x9e") == 0, "unicode metadata");
    CHECK(strcmp(nf_st_meta_get(f, "escapes"), "quote\" backslash\\ newline\n tab\t") == 0, "escaped metadata");
    const char *exp = nf_st_meta_get(f, "expected");
    nf_json_doc *doc = NULL;
    CHECK(exp != NULL, "expected values in metadata");
    if (exp) CHECK_OK(nf_json_parse(exp, strlen(exp), "expected", 0, &doc));
    const nf_json *root = nf_json_root(doc);
    int checked = 0;
    for (size_t i = 0; root && i < root->n; i++) {
        const char *name = root->keys[i].str;
        const nf_json *shape = nf_json_get(&root->items[i], "shape"), *vals = nf_json_get(&root->items[i], "values");
        const nf_st_info *info = nf_st_find(f, name);
        CHECK(info != NULL, "fixture tensor %s present", name);
        if (!info || !shape || !vals) continue;
        int64_t sh[NF_ST_MAX_DIMS];
        for (size_t d = 0; d < shape->n && d < NF_ST_MAX_DIMS; d++) sh[d] = (int64_t)shape->items[d].u64;
        size_t count = vals->n;
        int is_int = info->dtype == NF_DT_I64 || info->dtype == NF_DT_I32 || info->dtype == NF_DT_U8;
        if (is_int) {
            int64_t *got = calloc(count + 1, sizeof *got);
            CHECK_OK(nf_st_read_i64(f, name, got, count, (int)shape->n, sh));
            for (size_t k = 0; k < count; k++)
                CHECK(vals->items[k].is_i64 && got[k] == vals->items[k].i64, "%s[%zu] = %lld", name, k, (long long)got[k]);
            free(got);
        } else {
            float *got = calloc(count + 1, sizeof *got);
            CHECK_OK(nf_st_read_f32(f, name, got, count, (int)shape->n, sh));
            for (size_t k = 0; k < count; k++) {
                const nf_json *v = &vals->items[k];
                double want = v->type == NF_JSON_STRING ? (v->str[0] == '-' ? -INFINITY : INFINITY) : v->number;
                if (info->dtype == NF_DT_F64) want = (float)want; /* read as float */
                CHECK(got[k] == (float)want && !signbit(got[k]) == !signbit(want), "%s[%zu]: %.9g != %.9g",
                      name, k, got[k], want);
            }
            free(got);
        }
        checked++;
    }
    CHECK(checked == 10, "checked %d fixture tensors", checked);
    nf_json_free(doc);
    nf_st_close(f);

    path_in(path, sizeof path, source_root, "tests/checkpoint/fixtures/py_empty.safetensors");
    CHECK_OK(nf_st_open(path, &f));
    if (f) CHECK(nf_st_count(f) == 0 && nf_st_meta_count(f) == 0, "empty fixture");
    nf_st_close(f);
}

/* What tests/reference/check_safetensors.py (c_written_expected) expects. */
static nf_status write_for_python(const char *path)
{
    float alpha[24], beta[5] = {0.5f, -1.25f, 1000.0f, 1.0f / 3.0f, 1e-6f};
    float gamma[4] = {1.0f, -2.5f, 3.14159f, 1e10f}, seven = 7.0f;
    int64_t delta[3] = {INT64_MIN, 123456789012345LL, INT64_MAX};
    for (int i = 0; i < 24; i++) alpha[i] = (float)(i * 0.25 - 3.0);
    nf_st_tensor t[] = {
        {"alpha", NF_DT_F32, 3, {2, 3, 4}, alpha},
        {"beta", NF_DT_F16, 1, {5}, beta},
        {"gamma", NF_DT_BF16, 2, {2, 2}, gamma},
        {"delta", NF_DT_I64, 1, {3}, delta},
        {"a.zero", NF_DT_F32, 1, {0}, NULL},
        {"u\xc3\xa9\"q", NF_DT_F32, 0, {0}, &seven},
    };
    nf_st_meta meta[] = {{"writer", "noisefloor test"}, {"text", "line1\nline2 \"q\" \\ \xc3\xa9"}};
    return nf_st_write(path, t, 6, meta, 2);
}

static void test_python_reads_c(void)
{
    char path[4096], script[4096], cmd[12000];
    path_in(path, sizeof path, build_root, "ckpt_for_python.safetensors");
    CHECK_OK(write_for_python(path));
    nf_st_file *f = NULL;
    CHECK_OK(nf_st_open(path, &f));
    nf_st_close(f);
    path_in(script, sizeof script, source_root, "tests/reference/check_safetensors.py");
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        printf("NOTE: the Python half of the cross-language test was NOT run (no /usr/bin/python3 "
               "with numpy); the C half and the committed fixtures were checked\n");
        return;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' check-c '%s'", script, path);
    int rc = system(cmd);
    CHECK(rc == 0, "check_safetensors.py check-c failed (%d)", rc);
}

/* ------------------------------------------------------------ damaged files */

static int n_opened_ok;

/* Open an exact-size heap copy; must give OK or a one-line message naming `name`. */
static nf_status try_open(const void *data, size_t n, const char *name)
{
    nf_st_file *f = NULL;
    nf_status st = nf_st_open_memory(data, n, name, &f);
    if (st == NF_OK) {
        n_opened_ok++;
        /* Whatever was accepted must be readable within bounds. */
        for (int i = 0; i < nf_st_count(f); i++) {
            const nf_st_info *in = nf_st_at(f, i);
            volatile unsigned char sum = 0;
            const unsigned char *p = nf_st_data(f, in);
            for (uint64_t k = in->begin; k < in->end; k++) sum ^= p[k - in->begin];
            (void)sum;
        }
        nf_st_close(f);
    } else {
        const char *msg = nf_last_error();
        CHECK(strncmp(msg, name, strlen(name)) == 0 && msg[strlen(name)] == ':' && !strchr(msg, '\n') &&
                  strlen(msg) < 1000,
              "bad message for %s: '%s'", name, msg);
        CHECK(st == NF_ERR_FORMAT || st == NF_ERR_CORRUPT, "status %d for %s", st, name);
    }
    return st;
}

/* A file from a header text (padded) and `data_len` bytes of data. */
static size_t make_file(unsigned char *out, const char *header, size_t data_len)
{
    size_t h = strlen(header), pad = (8 - h % 8) % 8;
    uint64_t n = h + pad;
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(n >> (8 * i));
    memcpy(out + 8, header, h);
    memset(out + 8 + h, ' ', pad);
    for (size_t i = 0; i < data_len; i++) out[8 + n + i] = (unsigned char)(i * 7);
    return 8 + n + data_len;
}

static void expect_error(const char *header, size_t data_len, const char *what, const char *needle)
{
    unsigned char buf[4096];
    size_t n = make_file(buf, header, data_len);
    nf_status st = try_open(buf, n, "bad.safetensors");
    CHECK(st != NF_OK, "%s: accepted", what);
    CHECK(st == NF_OK || strstr(nf_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
          nf_last_error(), needle);
}

static void test_damaged(void)
{
    char path[4096];
    path_in(path, sizeof path, build_root, "ckpt_for_python.safetensors");
    unsigned char *good;
    size_t n;
    if (nf_read_file(path, (void **)&good, &n) != NF_OK) {
        CHECK(0, "cannot read %s", path);
        return;
    }
    CHECK(try_open(good, n, "good.safetensors") == NF_OK, "the intact file opens");

    /* Truncated at every 1/16 of its length, in memory and on disk. */
    for (int k = 0; k < 16; k++) {
        size_t len = n * (size_t)k / 16;
        CHECK(try_open(good, len, "cut.safetensors") != NF_OK, "truncated to %zu accepted", len);
        char cut[4096];
        path_in(cut, sizeof cut, build_root, "ckpt_cut.safetensors");
        CHECK_OK(nf_write_file_atomic(cut, good, len));
        nf_st_file *f = NULL;
        CHECK(nf_st_open(cut, &f) != NF_OK, "truncated file on disk accepted");
        CHECK(strncmp(nf_last_error(), cut, strlen(cut)) == 0 && !strchr(nf_last_error(), '\n'),
              "disk message: %s", nf_last_error());
        nf_st_close(f);
    }
    /* Flipped bytes in the first 200 (every position, several patterns): OK or a clean
     * error, never a crash or overread. */
    unsigned char *buf = malloc(n);
    int flips = 0, accepted = 0;
    const unsigned char pats[] = {0xff, 0x01, 0x20, 0x80};
    for (size_t pos = 0; pos < 200 && pos < n; pos++)
        for (size_t q = 0; q < sizeof pats; q++) {
            memcpy(buf, good, n);
            buf[pos] ^= pats[q];
            n_opened_ok = 0;
            if (try_open(buf, n, "flip.safetensors") == NF_OK) accepted++;
            flips++;
        }
    printf("flipped header bytes: %d variants, %d still valid (e.g. a changed name)\n", flips, accepted);
    CHECK(accepted < flips / 4, "too many damaged headers accepted: %d of %d", accepted, flips);
    /* Random damage anywhere, including the header length. */
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, good, n);
        for (int j = 0; j < 1 + it % 3; j++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            buf[(it % 2 ? s % 200 : s % n) % n] = (unsigned char)(s >> 24);
        }
        try_open(buf, n - (size_t)(it % 5 == 0 ? (s >> 50) % 16 : 0), "fuzz.safetensors");
    }
    free(buf);
    free(good);

    /* Specific damage. */
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 16,
                 "header promises more data", "truncated");
    expect_error("{\"a\":{\"dtype\":\"F33\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "wrong dtype",
                 "unknown dtype F33");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3,3],\"data_offsets\":[0,16]}}", 16, "wrong shape",
                 "span 16 bytes but F32 [3, 3] needs 36");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, "overlap", "overlap");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24, "hole", "hole");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "extra data", "after the last");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
                 "overflowing shape", "overflow");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
                 "overflowing byte count", "overflow");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "negative dim",
                 "non-negative");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "reversed offsets",
                 "end before");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, "float offset",
                 "data_offsets");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing offsets", "lacks");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate", "twice");
    expect_error("{\"__metadata__\":{\"k\":1}}", 0, "non-string metadata", "not a string");
    expect_error("{\"__metadata__\":[]}", 0, "metadata not an object", "not an object");
    expect_error("{\"a\":[1]}", 0, "entry not an object", "not an object");
    expect_error("[1,2]", 0, "array header", "does not start with '{'");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "bad JSON", "JSON error");
    expect_error("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL in name", "NUL");
    expect_error("{\"a\n\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "newline in name",
                 "JSON error"); /* raw control characters are invalid JSON */
    expect_error("{\"a\\n\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 "escaped newline in a name is printed as '?'", "tensor a?: unknown dtype");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                 "too many dims", "dimensions");
    {
        char deep[600];
        size_t k = 0;
        k += (size_t)snprintf(deep, sizeof deep, "{\"__metadata__\":");
        for (int i = 0; i < 200; i++) deep[k++] = '[';
        for (int i = 0; i < 200; i++) deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = 0;
        expect_error(deep, 0, "deep nesting", "nesting too deep");
    }
    /* Header length fields. */
    unsigned char hb[64];
    memcpy(hb, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    CHECK(try_open(hb, 10, "huge.safetensors") == NF_ERR_FORMAT && strstr(nf_last_error(), "limit"),
          "huge header length: %s", nf_last_error());
    memcpy(hb, "\x00\xe1\xf5\x05\x00\x00\x00\x00{}", 10); /* 100,000,000: within the limit */
    CHECK(try_open(hb, 10, "long.safetensors") == NF_ERR_CORRUPT && strstr(nf_last_error(), "truncated"),
          "header longer than the file: %s", nf_last_error());
    memcpy(hb, "\x00\x00\x00\x00\x00\x00\x00\x00", 8);
    CHECK(try_open(hb, 8, "zero.safetensors") == NF_ERR_FORMAT, "zero header length");
    CHECK(try_open(hb, 0, "empty.safetensors") == NF_ERR_FORMAT && strstr(nf_last_error(), "empty"),
          "empty file: %s", nf_last_error());
    CHECK(try_open(hb, 5, "short.safetensors") == NF_ERR_FORMAT, "5-byte file");
    const char *text = "This is a text file, not a model.\nIt has two lines.\n";
    CHECK(try_open(text, strlen(text), "notes.txt") == NF_ERR_FORMAT && strstr(nf_last_error(), "not a safetensors"),
          "text file: %s", nf_last_error());
    /* Nonexistent and directory paths. */
    nf_st_file *f = NULL;
    CHECK(nf_st_open("/nonexistent/x.safetensors", &f) == NF_ERR_IO &&
              strncmp(nf_last_error(), "/nonexistent/x.safetensors:", 27) == 0,
          "missing file: %s", nf_last_error());
    CHECK(nf_st_open(build_root, &f) != NF_OK, "a directory");
    /* Zero-sized tensors at the same offset are contiguous, as in the reference. */
    unsigned char zb[256];
    size_t zn = make_file(zb, "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                              "\"f\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
                              "\"g\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    CHECK(try_open(zb, zn, "zeros.safetensors") == NF_OK, "zero-size tensors: %s", nf_last_error());
}

int main(void)
{
    const char *b = getenv("NF_BUILD_ROOT"), *s = getenv("NF_SOURCE_ROOT");
    if (b) snprintf(build_root, sizeof build_root, "%s", b);
    if (s) snprintf(source_root, sizeof source_root, "%s", s);
    test_half();
    test_round_trip();
    test_python_fixtures();
    test_python_reads_c();
    test_damaged();
    return nf_test_done();
}
