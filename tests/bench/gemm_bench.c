/* nf_gemm (model/nn_gemm.c) vs OpenBLAS cblas_sgemm at the GEMM shapes of the two
 * reference networks (issue 3): kernel-3 convs as shifted GEMMs with the batch along N,
 * the backward-data GEMMs (A transposed) and the weight-gradient GEMMs (B transposed,
 * K = B*(L+2)). For each shape and thread count the two are timed alternately (the
 * machine is shared, so interleaving keeps load bursts from favouring one side), and
 * the medians are printed as GFLOP/s with their ratio.
 *
 *   gemm_bench [--repeat N] [--threads T] [--net wave|stft|all] [--batch B]
 */
#include "nf_nn.h"
#include "nf_unet.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct {
    const char *what;
    int ta, tb, M, N, K;
} gshape;

static float *A, *B, *C;

static void call(int ours, const gshape *s)
{
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N, ldc = s->N;
    if (ours)
        nf_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
    else
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                    s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f, A, lda, B, ldb,
                    1.0f, C, ldc);
}

/* Median seconds of both, interleaved; each sample repeats the call enough times to
 * last about 10 ms at 100 GFLOP/s. */
static void time_pair(const gshape *s, int repeat, double *t_ours, double *t_blas)
{
    double flops = 2.0 * s->M * s->N * (double)s->K;
    int inner = (int)(1e9 / (flops > 1 ? flops : 1));
    if (inner < 1) inner = 1;
    if (inner > 200) inner = 200;
    double *to = malloc(repeat * sizeof(double)), *tb = malloc(repeat * sizeof(double));
    call(1, s), call(0, s); /* warm-up */
    for (int r = 0; r < repeat; r++)
        for (int side = 0; side < 2; side++) {
            int ours = (r + side) % 2; /* alternate who goes first */
            /* Let the other side's idle threads stop spinning first (OpenBLAS's
             * pthreads spin for a while after each call, libgomp's briefly), so that
             * neither is timed against the other's spinning threads; then one
             * untimed call so that both are timed with their own threads awake. */
            nanosleep(&(struct timespec){0, 100000000}, NULL);
            call(ours, s); /* untimed: wakes this side's worker threads */
            double t0 = now();
            for (int i = 0; i < inner; i++) call(ours, s);
            double dt = (now() - t0) / inner;
            (ours ? to : tb)[r] = dt;
        }
    *t_ours = median(to, repeat);
    *t_blas = median(tb, repeat);
    free(to), free(tb);
}

#define MAXS 64
static gshape shapes[MAXS];
static int nshapes;

static void add(const char *what, int ta, int tb, int M, int N, int K)
{
    if (nshapes < MAXS) shapes[nshapes++] = (gshape){what, ta, tb, M, N, K};
}

/* One conv3 (cin -> cout) at time length L, batch b: forward, backward data, weight grad. */
static void conv(const char *tag, int cin, int cout, int L, int b)
{
    int N = b * (L + 2);
    (void)tag;
    add("fwd  nn", 0, 0, cout, N, cin);
    add("bwdD tn", 1, 0, cin, N, cout);
    add("bwdW nt", 0, 1, cout, cin, N);
}

int main(int argc, char **argv)
{
    int repeat = 7, threads = 0, batch = 0;
    const char *net = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--net") && i + 1 < argc) net = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: gemm_bench [--repeat N] [--threads T] [--net wave|stft|all] [--batch B]\n");
            return 2;
        }
    }
    if (repeat < 1) repeat = 1;
    for (int bi = 0; bi < 2; bi++) {
        int b = bi ? 8 : 1;
        if (batch && b != batch) continue;
        if (!strcmp(net, "all") || !strcmp(net, "wave")) {
            /* ref-wave: C0 32, mults 1,2,4,4, L 16384 halving per level. */
            conv("wave", 32, 32, 16384, b);
            conv("wave", 96, 32, 16384, b);   /* decoder concat 64+32 -> 32 */
            conv("wave", 64, 64, 8192, b);
            conv("wave", 128, 128, 4096, b);
            conv("wave", 256, 128, 2048, b);  /* decoder concat 128+128 */
        }
        if (!strcmp(net, "all") || !strcmp(net, "stft")) {
            /* ref-stft: 514 x 129 frames, C0 128, mults 1,2,2. */
            conv("stft", 514, 128, 129, b);
            conv("stft", 128, 128, 129, b);
            conv("stft", 256, 256, 65, b);
            conv("stft", 512, 256, 33, b);
            conv("stft", 128, 514, 129, b);   /* out conv */
        }
    }
    size_t amax = 0, bmax = 0, cmax = 0;
    for (int i = 0; i < nshapes; i++) {
        gshape *s = &shapes[i];
        size_t a = (size_t)s->M * s->K, bb = (size_t)s->K * s->N, c = (size_t)s->M * s->N;
        if (a > amax) amax = a;
        if (bb > bmax) bmax = bb;
        if (c > cmax) cmax = c;
    }
    A = malloc(amax * sizeof(float));
    B = malloc(bmax * sizeof(float));
    C = malloc(cmax * sizeof(float));
    for (size_t i = 0; i < amax; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < bmax; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    memset(C, 0, cmax * sizeof(float));

    int tlist[2] = {1, 2}, nt = 2;
    if (threads > 0) tlist[0] = threads, nt = 1;
    double sum_o[2] = {0}, sum_b[2] = {0};
    printf("%-8s %5s %7s %7s %3s %9s %9s %6s\n", "kind", "M", "N", "K", "thr", "nf GF/s",
           "blas GF/s", "ratio");
    for (int ti = 0; ti < nt; ti++) {
        nf_set_threads(tlist[ti]);
        for (int i = 0; i < nshapes; i++) {
            gshape *s = &shapes[i];
            double to, tb, fl = 2.0 * s->M * s->N * (double)s->K;
            time_pair(s, repeat, &to, &tb);
            sum_o[ti] += to, sum_b[ti] += tb;
            printf("%-8s %5d %7d %7d %3d %9.1f %9.1f %6.2f\n", s->what, s->M, s->N, s->K,
                   tlist[ti], fl / to * 1e-9, fl / tb * 1e-9, tb / to);
            fflush(stdout);
        }
        printf("total time over the shapes at %d thread(s): nf %.2f ms, blas %.2f ms, ratio %.2f\n",
               tlist[ti], sum_o[ti] * 1e3, sum_b[ti] * 1e3, sum_b[ti] / sum_o[ti]);
    }
    free(A), free(B), free(C);
    return 0;
}
