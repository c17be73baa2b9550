/* The GEMM's worker threads: a fork-join pool whose workers wait for the next job with a
 * short, time-bounded spin before they sleep.
 *
 * Why not OpenMP here: a batch-1 forward pass is about 40 GEMMs of 0.1-1 ms with serial
 * elementwise work between them. With passive OpenMP waiting (what the CLI sets, so that
 * a busy machine or a DAW is not starved by spinning threads) every GEMM pays a futex
 * wake-up, and on this class of machine the second thread then arrives so late that it
 * adds almost nothing (ref-stft forward at batch 1: 18.3 ms on one thread, 17.4 ms on
 * two). libgomp's own spin (GOMP_SPINCOUNT) is set per process from the environment, which
 * a plugin cannot do and which then applies to every loop. Here only the GEMM's workers
 * spin, for at most NF_POOL_SPIN_US after their last job, then sleep on a condition
 * variable; a loaded machine loses at most that much CPU per gap.
 *
 * Jobs are functions run by every participant (the caller and the workers); they share
 * out their work through their own atomic counters, so which thread does what never
 * changes a result. One job at a time: a caller that finds the pool busy (another thread
 * of the host using the library at the same moment) runs its job alone. */
#include "nf_nn.h"

#include <pthread.h>
#include <sched.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define NF_POOL_SPIN_US 200
#define NF_POOL_MAX 64

/* The job word: generation << 32 | CLOSED | workers that entered the job. A worker takes
 * part in a job only by raising the count while the job is open and its generation is
 * the one it saw, so a late worker can never touch a job whose caller has returned, and
 * the caller never waits for a worker that is still asleep. */
#define CLOSED ((uint64_t)1 << 31)
#define ENTERED_MASK (CLOSED - 1)

typedef struct {
    pthread_mutex_t lock; /* guards the condition variable */
    pthread_cond_t wake;
    pthread_mutex_t busy; /* held by the caller running a job */
    _Atomic uint64_t job;
    atomic_int left;      /* workers that have finished the current job */
    atomic_int sleepers;
    unsigned start_gen;   /* the generation when the newest worker was started */
    int workers;          /* threads started */
    int limit;            /* the current job's thread count (caller included) */
    void (*fn)(void *ctx, int who);
    void *ctx;
} pool_t;

static pool_t g_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0, NULL, NULL};

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static unsigned gen_of(uint64_t j) { return (unsigned)(j >> 32); }

/* One step of a wait loop: a pause, and after the first SPIN_PURE steps (about 25 us)
 * a yield every 8th time, so that on a machine whose cores are all busy (a DAW, another
 * job) a waiting thread gives its core to whoever has work instead of holding it until
 * preempted; on an idle core the yield returns at once. Not from the first step: a yield
 * is a system call, 1.3 us in a virtual machine measured here (a pause: 23 ns), and a
 * thread inside one answers late to the job or barrier it waits for (ref-stft's batch-1
 * forward, a few hundred waits a pass, measured 2% faster). */
#define SPIN_PURE 1024
void nf_spin_pause(int i)
{
    if (i >= SPIN_PURE && (i & 7) == 7)
        sched_yield();
    else
        CPU_RELAX();
}
#define spin_pause nf_spin_pause

static void *worker(void *arg)
{
    pool_t *p = &g_pool;
    const int id = (int)(intptr_t)arg; /* 1 .. workers */
    unsigned seen = p->start_gen;
    for (;;) {
        /* Spin for a while, then sleep until a new job is announced. */
        uint64_t j = atomic_load(&p->job);
        if (gen_of(j) == seen) {
            double until = now_us() + NF_POOL_SPIN_US;
            for (int i = 0;; i++) {
                spin_pause(i);
                j = atomic_load(&p->job);
                if (gen_of(j) != seen) break;
                if ((i & 31) == 31 && now_us() > until) break;
            }
            if (gen_of(j) == seen) {
                pthread_mutex_lock(&p->lock);
                atomic_fetch_add(&p->sleepers, 1);
                while (gen_of(j = atomic_load(&p->job)) == seen) pthread_cond_wait(&p->wake, &p->lock);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->lock);
            }
        }
        seen = gen_of(j);
        /* Enter the job if it is still open. */
        int in = 0;
        while (gen_of(j) == seen && !(j & CLOSED)) {
            if (atomic_compare_exchange_weak(&p->job, &j, j + 1)) {
                in = 1;
                break;
            }
        }
        if (!in) continue;
        if (id < p->limit) p->fn(p->ctx, id);
        atomic_fetch_add_explicit(&p->left, 1, memory_order_release);
    }
    return NULL;
}

/* Starts workers up to n - 1 (never stops them: they sleep when idle). Called with
 * p->busy held, between jobs. Returns how many workers exist. */
static int ensure_workers(pool_t *p, int n)
{
    if (n > NF_POOL_MAX) n = NF_POOL_MAX;
    p->start_gen = gen_of(atomic_load(&p->job));
    while (p->workers < n - 1) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &at, worker, (void *)(intptr_t)(p->workers + 1));
        pthread_attr_destroy(&at);
        if (rc) break; /* no more threads: run with the ones there are */
        p->workers++;
    }
    return p->workers;
}

void nf_pool_run(int nthreads, void (*fn)(void *ctx, int who), void *ctx)
{
    pool_t *p = &g_pool;
    if (nthreads <= 1 || pthread_mutex_trylock(&p->busy)) {
        fn(ctx, 0);
        return;
    }
    if (ensure_workers(p, nthreads) < 1) {
        pthread_mutex_unlock(&p->busy);
        fn(ctx, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->limit = nthreads;
    atomic_store(&p->left, 0);
    /* Announce: a new generation, open, nobody in yet. */
    atomic_store(&p->job, (uint64_t)(gen_of(atomic_load(&p->job)) + 1u) << 32);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    fn(ctx, 0);
    /* Close the job, then wait for the workers that entered it. */
    int entered = (int)(atomic_fetch_or(&p->job, CLOSED) & ENTERED_MASK);
    for (int i = 0; atomic_load_explicit(&p->left, memory_order_acquire) < entered; i++) spin_pause(i);
    pthread_mutex_unlock(&p->busy);
}

/* ---- parallel loops on the pool ----
 * The layers' elementwise passes between the GEMMs (GroupNorm, bias, upsampling, the
 * embedding projections) at batch 1 are 10-100 us each: too short for OpenMP's passive
 * wake-up (a futex per region, the second thread arriving after the work is done), but
 * the pool's workers are still spinning from the GEMM before. Rows go out in chunks from
 * an atomic counter; every row is computed whole by one thread, so which thread takes
 * which chunk never changes a result. */
typedef struct {
    void (*fn)(void *ctx, int i0, int i1);
    void *ctx;
    int n, grain;
    atomic_int next;
} par_job;

static void par_fn(void *c, int who)
{
    (void)who;
    par_job *J = c;
    int i0;
    while ((i0 = atomic_fetch_add_explicit(&J->next, J->grain, memory_order_relaxed)) < J->n)
        J->fn(J->ctx, i0, J->n - i0 < J->grain ? J->n : i0 + J->grain);
}

void nf_par_for(int nthreads, int n, size_t work, void (*fn)(void *ctx, int i0, int i1), void *ctx)
{
    if (n <= 0) return;
    if (nthreads <= 1 || n < 2 || work < NF_PAR_MIN_WORK) {
        fn(ctx, 0, n);
        return;
    }
    par_job J;
    J.fn = fn;
    J.ctx = ctx;
    J.n = n;
    J.grain = n / (4 * nthreads) > 1 ? n / (4 * nthreads) : 1;
    atomic_init(&J.next, 0);
    nf_pool_run(nthreads, par_fn, &J);
}

typedef struct {
    void (*fn)(void *ctx, size_t lo, size_t hi);
    void *ctx;
    size_t n, block;
} range_job;

static void range_blocks(void *v, int b0, int b1)
{
    const range_job *R = v;
    size_t hi = (size_t)b1 * R->block;
    R->fn(R->ctx, (size_t)b0 * R->block, hi < R->n ? hi : R->n);
}

void nf_par_range(int nthreads, size_t n, size_t block, size_t work, void (*fn)(void *ctx, size_t lo, size_t hi),
                  void *ctx)
{
    if (n == 0) return;
    size_t nb = (n + block - 1) / block;
    if (nb > (size_t)INT_MAX) { /* more blocks than nf_par_for counts: one thread */
        fn(ctx, 0, n);
        return;
    }
    range_job R = {fn, ctx, n, block};
    nf_par_for(nthreads, (int)nb, work, range_blocks, &R);
}

#define ZERO_BLOCK 16384

static void zero_range(void *ctx, size_t lo, size_t hi) { memset((float *)ctx + lo, 0, (hi - lo) * sizeof(float)); }

void nf_par_zero(float *x, size_t n) { nf_par_range(nf_nn_threads(), n, ZERO_BLOCK, n, zero_range, x); }
