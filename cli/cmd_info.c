/* noisefloor info MODEL: what a model file holds. */
#include "cli.h"
#include "nf_safetensors.h"
#include "options.h"

#include <stdio.h>
#include <string.h>

static int run(int argc, char **argv)
{
    int all = 0;
    const nf_opt opts[] = {
        {"all", 'a', NF_OPT_FLAG, &all, NULL, "also list every tensor", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {"info", "[MODEL] [--all]",
                              "Print a model's configuration, classes, parameter count, training steps and the\n"
                              "summary of the data it was trained on (default: the bundled model).",
                              opts, 0, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    nf_model *m;
    const char *path;
    nf_status st = nf_cli_model(npos ? pos[0] : NULL, &m, &path);
    if (st) return nf_cli_fail_status(st);
    const nf_model_info *in = nf_model_get_info(m);
    printf("model:           %s\n", path);
    printf("hash:            %s\n", in->hash);
    printf("parameters:      %lld\n", in->param_count);
    printf("training steps:  %lld\n", in->train_steps);
    printf("sound:           %d Hz, %s, %d samples (%.3f s)\n", in->sample_rate, in->channels == 2 ? "stereo" : "mono",
           in->length, (double)in->length / in->sample_rate);
    printf("representation:  %s\n", in->representation);
    printf("objective:       %s\n", in->objective);
    printf("cost:            %.3g GFLOP per network evaluation per sound\n", in->flops_per_example * 1e-9);
    if (in->num_classes == 0) {
        printf("classes:         none (unconditional)\n");
    } else {
        printf("classes:         %d:", in->num_classes);
        for (int i = 0; i < in->num_classes; i++) printf(" %s", in->class_names[i]);
        printf("\n");
    }
    /* Everything else the file records (network configuration, noise schedule, data
     * summary, ...) is in its safetensors metadata: show it as stored. */
    nf_st_file *f = NULL;
    if ((st = nf_st_open(path, &f))) return nf_cli_fail_status(st);
    int n = nf_st_meta_count(f);
    if (n) printf("metadata:\n");
    for (int i = 0; i < n; i++) {
        const char *k, *v;
        nf_st_meta_at(f, i, &k, &v);
        printf("  %s: ", k);
        /* Multi-line values (the data summary) stay indented under their key. */
        for (const char *c = v; *c; c++) {
            putchar(*c);
            if (*c == '\n' && c[1]) printf("    ");
        }
        putchar('\n');
    }
    if (all) {
        printf("tensors:\n");
        for (int i = 0; i < nf_st_count(f); i++) {
            const nf_st_info *t = nf_st_at(f, i);
            printf("  %-40s %s [", t->name, nf_dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
            printf("]\n");
        }
    }
    nf_st_close(f);
    return 0;
}

const nf_cli_command nf_cmd_info = {"info", "print what a model file holds", run};
