/* nf_pool_run (model/nn_pool.c), the GEMM's fork-join pool: every work item of every
 * job runs exactly once, the caller returns only when every participant is done (the
 * job lives on the caller's stack), thread counts may change from job to job, a job
 * started while another thread holds the pool runs on its caller alone, and a worker
 * that wakes up late (after sleeping past its spin) still joins or skips cleanly. */
#include "nf_nn.h"
#include "nf_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int n;
    atomic_int next;
    atomic_int *hits; /* hits[i]: how often item i ran */
    atomic_int who_mask;
    int slow_us; /* per item */
} job_t;

static void sleep_us(int us)
{
    struct timespec t = {0, (long)us * 1000};
    nanosleep(&t, NULL);
}

static void job_fn(void *ctx, int who)
{
    job_t *J = ctx;
    atomic_fetch_or(&J->who_mask, 1 << (who < 30 ? who : 30));
    int i;
    while ((i = atomic_fetch_add(&J->next, 1)) < J->n) {
        if (J->slow_us) sleep_us(J->slow_us);
        atomic_fetch_add(&J->hits[i], 1);
    }
}

/* Runs one job of n items on nt threads; returns 1 if every item ran exactly once. */
static int run_job(int nt, int n, int slow_us, int *who_mask)
{
    job_t J;
    J.n = n;
    atomic_init(&J.next, 0);
    atomic_init(&J.who_mask, 0);
    J.slow_us = slow_us;
    J.hits = calloc((size_t)n, sizeof *J.hits);
    nf_pool_run(nt, job_fn, &J);
    int ok = 1;
    for (int i = 0; i < n; i++) ok &= atomic_load(&J.hits[i]) == 1;
    int m = atomic_load(&J.who_mask);
    ok &= (m >> (nt < 30 ? nt : 30)) == 0; /* nobody beyond the thread count took part */
    if (who_mask) *who_mask = m;
    /* Poison the job: a participant still inside it would now count wrongly. */
    memset(J.hits, 0xff, (size_t)n * sizeof *J.hits);
    free(J.hits);
    return ok;
}

static void *caller(void *arg)
{
    int *bad = arg;
    for (int r = 0; r < 2000; r++)
        if (!run_job(1 + r % 3, 1 + r % 37, 0, NULL)) (*bad)++;
    return NULL;
}

int main(void)
{
    /* Many short jobs, thread counts 1..4 in turn (more threads than this machine may
     * have cores: the extra ones must still join or skip correctly). */
    int bad = 0;
    for (int r = 0; r < 20000; r++)
        if (!run_job(1 + r % 4, r % 50, 0, NULL)) bad++;
    CHECK(bad == 0, "%d of 20000 jobs ran an item other than exactly once", bad);

    /* Slow items: the workers must take part (not only the caller). */
    int mask = 0, helped = 0;
    for (int r = 0; r < 20 && !helped; r++) {
        CHECK(run_job(2, 64, 200, &mask), "slow job: an item ran other than once");
        helped = (mask & ~1) != 0;
    }
    CHECK(helped, "a worker never took part in a 2-thread job of 64 x 200 us items");

    /* Slow items finishing at different times: the caller must wait for every worker
     * that entered (an item counted after the return would be caught here). */
    bad = 0;
    for (int r = 0; r < 100; r++)
        if (!run_job(2 + r % 3, 3 + r % 5, 100 + 37 * (r % 4), NULL)) bad++;
    CHECK(bad == 0, "%d slow jobs returned before every item had run", bad);

    /* Jobs after the workers have gone to sleep (their spin is 200 us). */
    bad = 0;
    for (int r = 0; r < 30; r++) {
        sleep_us(1000 + 300 * (r % 4));
        if (!run_job(2, 16, r % 2 ? 50 : 0, NULL)) bad++;
    }
    CHECK(bad == 0, "%d jobs after an idle pause ran an item other than once", bad);

    /* Two callers at once: one holds the pool, the other runs its jobs alone. */
    int bad1 = 0, bad2 = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, caller, &bad1) == 0, "pthread_create");
    caller(&bad2);
    pthread_join(t, NULL);
    CHECK(bad1 == 0 && bad2 == 0, "concurrent callers: %d and %d bad jobs", bad1, bad2);
    return nf_test_done();
}
