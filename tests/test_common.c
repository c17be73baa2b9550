/* Status messages, atomic writes and the counter-based random numbers. */
#include "nf_common.h"
#include "nf_rng.h"
#include "nf_unet.h" /* nf_set_threads */
#include "nf_test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_errors(void)
{
    nf_status s = nf_fail(NF_ERR_IO, "%s: line one\nline two", "x.wav");
    CHECK(s == NF_ERR_IO, "nf_fail returns its status");
    CHECK(strchr(nf_last_error(), '\n') == NULL, "messages are one line: %s", nf_last_error());
    CHECK(strncmp(nf_last_error(), "x.wav: line one", 15) == 0, "message kept: %s", nf_last_error());
}

static void test_atomic(void)
{
    char dir[] = "/tmp/nf_test_atomicXXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/f.bin", dir);
    CHECK_OK(nf_write_file_atomic(path, "first", 5));
    void *data;
    size_t n;
    CHECK_OK(nf_read_file(path, &data, &n));
    CHECK(n == 5 && memcmp(data, "first", 5) == 0, "read back what was written");
    free(data);
    /* A write into a folder that does not exist fails and leaves nothing behind. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/f.bin", dir);
    CHECK(nf_write_file_atomic(bad, "x", 1) == NF_ERR_IO, "write into a missing folder fails");
    CHECK(strstr(nf_last_error(), "missing/f.bin") != NULL, "error names the file: %s", nf_last_error());
    CHECK(nf_read_file(bad, &data, &n) == NF_ERR_IO, "reading a missing file fails");
    /* A directory is not a file to read. */
    CHECK(nf_read_file(dir, &data, &n) == NF_ERR_IO, "reading a folder fails");
    unlink(path);
    rmdir(dir);
}

static void test_rng(void)
{
    /* Known-answer test from the Random123 distribution (kat_vectors, philox4x32_10):
     * counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8. */
    uint32_t w[4];
    nf_philox4x32(0, 0, 0, w);
    CHECK(w[0] == 0x6627e8d5u && w[1] == 0xe169c58du && w[2] == 0xbc57ac4cu && w[3] == 0x9b00dbd8u,
          "philox4x32-10 known answer: %08x %08x %08x %08x", w[0], w[1], w[2], w[3]);

    /* Any split of a buffer gives the same numbers. */
    enum { N = 10001 };
    static float a[N], b[N];
    nf_randn(a, N, 42, 7, 100);
    nf_randn(b, 3, 42, 7, 100);
    nf_randn(b + 3, 4000, 42, 7, 103);
    nf_randn(b + 4003, N - 4003, 42, 7, 4103);
    CHECK(memcmp(a, b, sizeof a) == 0, "normal numbers are addressed by index");
    /* The same from an odd offset, and drawn in blocks on two threads (a long buffer). */
    nf_set_threads(2);
    nf_randn(a, N, 42, 7, 101);
    nf_set_threads(1);
    nf_randn(b, 1, 42, 7, 101);
    nf_randn(b + 1, N - 1, 42, 7, 102);
    CHECK(memcmp(a, b, sizeof a) == 0, "normal numbers in blocks on two threads are the same numbers");
    /* Moments of N(0,1) within 5 standard errors. */
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += a[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (a[i] - m) * (a[i] - m);
    v /= N - 1;
    CHECK(fabs(m) < 5.0 / sqrt(N), "normal mean %g", m);
    CHECK(fabs(v - 1.0) < 5.0 * sqrt(2.0 / N), "normal variance %g", v);
    /* Another stream is a different sequence. */
    nf_randn(b, N, 42, 8, 100);
    CHECK(memcmp(a, b, sizeof a) != 0, "streams differ");
    nf_randu(a, N, 1, 2, 0);
    double um = 0;
    int in_range = 1;
    for (int i = 0; i < N; i++) {
        um += a[i];
        in_range &= a[i] >= 0.0f && a[i] < 1.0f;
    }
    CHECK(in_range, "uniforms in [0,1)");
    CHECK(fabs(um / N - 0.5) < 5.0 * sqrt(1.0 / 12 / N), "uniform mean %g", um / N);
    nf_rng r;
    nf_rng_init(&r, 5, 6);
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 3000; i++) counts[nf_rng_below(&r, 3)]++;
    CHECK(counts[0] > 850 && counts[1] > 850 && counts[2] > 850, "below(3) roughly uniform");
}

int main(void)
{
    test_errors();
    test_atomic();
    test_rng();
    return nf_test_done();
}
