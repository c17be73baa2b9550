/* Benchmarks of the neural core: the reference networks of issue 3 (ref-wave, ref-stft),
 * timed forward and as whole training steps, 50-step DDIM sampling, and OpenBLAS sgemm
 * at conv-like shapes measured in the same run, so that achieved GFLOP/s can be read as
 * a fraction of what the BLAS reaches on this machine.
 *
 * The same networks, timed the same way, exist in PyTorch in tests/bench/torch_nets.py;
 * tests/bench/compare.sh runs both back to back. The library only measures; the CLI
 * (`noisefloor bench`) prints. */
#ifndef NF_BENCH_H
#define NF_BENCH_H

#include "nf_common.h"
#include "nf_unet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A benchmark network: a U-Net config and the input it is timed on. */
typedef struct {
    char name[32];
    nf_unet_config cfg;
    int length;       /* network input length (samples, or STFT frames) */
    int audio_length; /* samples of audio one example stands for (16384) */
    int n_fft, hop;   /* > 0: the input is an STFT (n_fft, hop); sampling ends with an ISTFT */
} nf_bench_net;

/* "ref-wave" or "ref-stft" (issue 3's definitions); NF_ERR_ARG for another name. */
nf_status nf_bench_net_by_name(const char *name, nf_bench_net *out);
/* The names nf_bench_net_by_name() knows, NULL-terminated. */
const char *const *nf_bench_net_names(void);

/* Median and minimum over the repeats of one timed operation. */
typedef struct {
    double ms;              /* median wall time of one call, milliseconds */
    double ms_min;
    double examples_per_s;  /* batch / median time */
    double gflops;          /* achieved GFLOP/s at the median (nf_unet_flops-based) */
} nf_bench_time;

typedef struct {
    int batch;
    nf_bench_time forward;  /* inference forward (train = 0) */
    nf_bench_time train;    /* noising + forward + MSE + backward + clip + AdamW */
} nf_bench_batch;

typedef struct {
    int m, n, k;            /* row-major C[m,n] = A[m,k] B[k,n] (or B^T for "wgrad") */
    int trans_b;
    char what[24];
    double gflops;          /* median */
} nf_bench_gemm;

#define NF_BENCH_MAX_BATCHES 4
#define NF_BENCH_MAX_GEMMS 4

typedef struct {
    nf_bench_net net;
    size_t params;
    double flops_forward;   /* per example, nf_unet_flops() */
    int threads;
    int repeat;
    int n_batches;
    nf_bench_batch batches[NF_BENCH_MAX_BATCHES];
    /* Sampling one example: ddim_steps network calls at batch 1 plus the DDIM updates
     * (and the ISTFT for an STFT network). */
    int ddim_steps;
    nf_bench_time ddim;
    double ddim_realtime;   /* seconds of audio per second of compute (at 44.1 kHz) */
    const char *ddim_how;   /* which code did the sampling (see bench.c) */
    int n_gemms;
    nf_bench_gemm gemms[NF_BENCH_MAX_GEMMS];
    double gemm_best;       /* the best sgemm GFLOP/s measured above */
} nf_bench_result;

typedef struct {
    const char *net;        /* a name for nf_bench_net_by_name() */
    int batches[NF_BENCH_MAX_BATCHES]; /* batch sizes to time (default 1 and 8) */
    int n_batches;
    int repeat;             /* timed repeats per figure (median reported); default 5 */
    int ddim_steps;         /* 0: skip sampling; default 50 */
    int threads;            /* for nf_set_threads(); 0 leaves the setting alone */
    int skip_gemm;          /* 1: do not measure sgemm */
} nf_bench_options;

void nf_bench_options_default(nf_bench_options *o);

/* Run the benchmark. Progress goes nowhere; the result is all there is. */
nf_status nf_bench_run(const nf_bench_options *o, nf_bench_result *r);

/* Median GFLOP/s of cblas_sgemm at one shape over `repeat` calls (after one warm-up). */
nf_status nf_bench_sgemm(int m, int n, int k, int trans_b, int repeat, double *gflops);

/* Peak memory: one training step of `net` at `batch` in this process (meant to be a fresh
 * one), then the process's resident-set high-water mark (getrusage ru_maxrss) in MB, and
 * the resident set measured just before the network was created (baseline_mb). */
nf_status nf_bench_peak_memory(const char *net, int batch, double *peak_mb, double *baseline_mb);

#ifdef __cplusplus
}
#endif
#endif
