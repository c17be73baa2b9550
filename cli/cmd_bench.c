/* noisefloor bench: time the reference networks (forward, training step, DDIM sampling)
 * and sgemm on this machine; print a table or one JSON object. */
#include "cli.h"
#include "nf_bench.h"
#include "options.h"

#include <stdio.h>
#include <string.h>

static void print_time_json(const char *key, const nf_bench_time *t)
{
    printf("\"%s\": {\"ms\": %.4f, \"ms_min\": %.4f, \"examples_per_s\": %.4f, \"gflops\": %.3f}", key, t->ms,
           t->ms_min, t->examples_per_s, t->gflops);
}

static void print_json(const nf_bench_result *r)
{
    const nf_unet_config *c = &r->net.cfg;
    printf("{\"implementation\": \"noisefloor\", \"net\": \"%s\", \"params\": %zu, "
           "\"length\": %d, \"in_ch\": %d, \"base\": %d, \"flops_forward\": %.17g, "
           "\"threads\": %d, \"repeat\": %d, ",
           r->net.name, r->params, r->net.length, c->in_ch, c->base, r->flops_forward, r->threads,
           r->repeat);
    printf("\"batches\": [");
    for (int i = 0; i < r->n_batches; i++) {
        printf("%s{\"batch\": %d, ", i ? ", " : "", r->batches[i].batch);
        print_time_json("forward", &r->batches[i].forward);
        printf(", ");
        print_time_json("train", &r->batches[i].train);
        printf("}");
    }
    printf("], ");
    if (r->ddim_steps > 0) {
        printf("\"ddim\": {\"steps\": %d, \"ms\": %.4f, \"ms_min\": %.4f, \"realtime\": %.4f, "
               "\"how\": \"%s\"}, ",
               r->ddim_steps, r->ddim.ms, r->ddim.ms_min, r->ddim_realtime, r->ddim_how);
    }
    printf("\"sgemm\": [");
    for (int i = 0; i < r->n_gemms; i++) {
        const nf_bench_gemm *g = &r->gemms[i];
        printf("%s{\"m\": %d, \"n\": %d, \"k\": %d, \"trans_b\": %d, \"what\": \"%s\", \"gflops\": %.3f}",
               i ? ", " : "", g->m, g->n, g->k, g->trans_b, g->what, g->gflops);
    }
    printf("], \"sgemm_best_gflops\": %.3f}\n", r->gemm_best);
}

static void print_table(const nf_bench_result *r)
{
    printf("net %s: %zu parameters, length %d, %.3f GFLOP per example forward; %d threads; "
           "medians of %d\n",
           r->net.name, r->params, r->net.length, r->flops_forward * 1e-9, r->threads, r->repeat);
    printf("%-8s %-8s %12s %14s %10s %11s\n", "batch", "what", "ms", "examples/s", "GFLOP/s",
           r->gemm_best > 0 ? "of sgemm" : "");
    for (int i = 0; i < r->n_batches; i++) {
        const nf_bench_batch *b = &r->batches[i];
        const nf_bench_time *t[2] = {&b->forward, &b->train};
        const char *what[2] = {"forward", "train"};
        for (int k = 0; k < 2; k++) {
            printf("%-8d %-8s %12.2f %14.2f %10.1f", b->batch, what[k], t[k]->ms, t[k]->examples_per_s,
                   t[k]->gflops);
            if (r->gemm_best > 0) printf(" %10.0f%%", 100.0 * t[k]->gflops / r->gemm_best);
            printf("\n");
        }
    }
    if (r->ddim_steps > 0)
        printf("sampling: %d DDIM steps, one example: %.1f ms, %.2fx real time (%s)\n", r->ddim_steps,
               r->ddim.ms, r->ddim_realtime, r->ddim_how);
    for (int i = 0; i < r->n_gemms; i++) {
        const nf_bench_gemm *g = &r->gemms[i];
        printf("sgemm %-22s m %-5d n %-7d k %-7d%s %8.1f GFLOP/s\n", g->what, g->m, g->n, g->k,
               g->trans_b ? " (B^T)" : "      ", g->gflops);
    }
}

static int run_bench(int argc, char **argv)
{
    nf_bench_options o;
    nf_bench_options_default(&o);
    int json = 0, peak = 0, batch = 0, no_gemm = 0, net_choice = 0;
    const char *net_choices = "ref-wave|ref-stft";
    const nf_opt opts[] = {
        {"net", 0, NF_OPT_CHOICE, &net_choice, "NAME", "the network to time", 0, 0, net_choices, NULL},
        {"batch", 'b', NF_OPT_INT, &batch, "N", "time batch N only (0: batches 1 and 8)", 0, 4096, NULL, NULL},
        {"repeat", 'r', NF_OPT_INT, &o.repeat, "N", "timed repeats per figure (the median is reported)", 1,
         100000, NULL, NULL},
        {"steps", 0, NF_OPT_INT, &o.ddim_steps, "N", "DDIM steps for the sampling figure (0 skips it)", 0,
         100000, NULL, NULL},
        {"threads", 't', NF_OPT_INT, &o.threads, "N", "threads for OpenBLAS and OpenMP (0: all cores)", 0,
         4096, NULL, NULL},
        {"no-gemm", 0, NF_OPT_FLAG, &no_gemm, NULL, "skip the sgemm measurements", 0, 0, NULL, NULL},
        {"peak-mem", 0, NF_OPT_FLAG, &peak, NULL,
         "only run two training steps at --batch (default 8) and print the peak resident memory "
         "(run it in a fresh process)", 0, 0, NULL, NULL},
        {"json", 0, NF_OPT_FLAG, &json, NULL, "print the results as one JSON object", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {
        "bench", "[--net NAME] [--batch N] [--repeat N] [--json]",
        "Times the reference U-Nets (forward, and a whole training step: noising + forward + "
        "backward + AdamW) at batch 1 and 8, sampling one example with 50 DDIM steps, and "
        "OpenBLAS sgemm at conv-like shapes in the same run, so that achieved GFLOP/s can be "
        "read against what the BLAS reaches on this machine. Figures are medians over the repeats.",
        opts, 0, 0};
    int npos = 0;
    int rc = nf_opt_parse(&spec, argc, argv, NULL, 0, &npos, stderr);
    if (rc >= 0) return rc;
    o.net = nf_bench_net_names()[net_choice];
    o.skip_gemm = no_gemm;
    if (batch > 0) {
        o.batches[0] = batch;
        o.n_batches = 1;
    }
    if (peak) {
        if (o.threads > 0) nf_set_threads(o.threads);
        double peak_mb, base_mb;
        nf_status st = nf_bench_peak_memory(o.net, batch > 0 ? batch : 8, &peak_mb, &base_mb);
        if (st) return nf_cli_fail_status(st);
        if (json)
            printf("{\"implementation\": \"noisefloor\", \"net\": \"%s\", \"batch\": %d, \"peak_rss_mb\": %.1f, "
                   "\"baseline_rss_mb\": %.1f}\n",
                   o.net, batch > 0 ? batch : 8, peak_mb, base_mb);
        else
            printf("net %s batch %d: peak resident memory %.1f MB (%.1f MB before the network)\n", o.net,
                   batch > 0 ? batch : 8, peak_mb, base_mb);
        return 0;
    }
    nf_bench_result r;
    nf_status st = nf_bench_run(&o, &r);
    if (st) return nf_cli_fail_status(st);
    if (json)
        print_json(&r);
    else
        print_table(&r);
    return 0;
}

const nf_cli_command nf_cmd_bench = {"bench", "time the reference networks and sgemm on this machine",
                                     run_bench};
