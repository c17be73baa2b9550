/* A tiny test harness: every check counts, a failed one prints where and why, and
 * nf_test_done() prints "N passed, N failed" and returns the exit status (non-zero on
 * any failure), so `return nf_test_done();` ends every test program. */
#ifndef NF_TEST_H
#define NF_TEST_H

#include <math.h>
#include <stdio.h>

static int nf_test_passed, nf_test_failed;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            nf_test_passed++;                                                     \
        } else {                                                                  \
            nf_test_failed++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

/* |a - b| <= atol + rtol * |b| */
#define CHECK_CLOSE(a, b, atol, rtol, what)                                       \
    do {                                                                          \
        double a_ = (a), b_ = (b);                                                \
        CHECK(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_),                        \
              "%s: got %.9g, want %.9g", what, a_, b_);                           \
    } while (0)

/* A status-returning call that must succeed. */
#define CHECK_OK(call)                                                            \
    do {                                                                          \
        int st_ = (int)(call);                                                    \
        CHECK(st_ == 0, "%s returned %d: %s", #call, st_, nf_last_error());       \
    } while (0)

static inline int nf_test_done(void)
{
    printf("%d passed, %d failed\n", nf_test_passed, nf_test_failed);
    return nf_test_failed ? 1 : 0;
}

#endif
