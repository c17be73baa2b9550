/* noisefloor train-classifier DATA_DIR -m MODEL -o CLASSIFIER: a noise-aware classifier
 * for classifier guidance (generate --classifier). The work is
 * nf_classifier_train_dataset() in the library. */
#include "cli.h"
#include "nf_classifier.h"
#include "options.h"

#include <stdio.h>
#include <unistd.h>

typedef struct {
    int tty, quiet;
    long long total, log_every;
} clf_progress;

static void on_progress(void *user, long long step, double loss, double accuracy)
{
    clf_progress *ps = user;
    if (ps->quiet) return;
    if (ps->tty) {
        fprintf(stderr, "\rstep %lld/%lld loss %.4f batch accuracy %.2f  ", step, ps->total, loss, accuracy);
        fflush(stderr);
    } else if (step % ps->log_every == 0 || step == ps->total) {
        fprintf(stderr, "step %lld/%lld loss %.5f batch accuracy %.3f\n", step, ps->total, loss, accuracy);
    }
}

static int run(int argc, char **argv)
{
    nf_classifier_fit_config c;
    nf_classifier_fit_config_default(&c);
    const char *model_path = NULL, *output = NULL;
    int quiet = 0;
    long long log_every = 50;
    const nf_opt opts[] = {
        {"model", 'm', NF_OPT_STRING, &model_path, "MODEL", "the diffusion model to guide (default: the bundled model)",
         0, 0, NULL, NULL},
        {"output", 'o', NF_OPT_STRING, &output, "CLASSIFIER", "classifier file to write (.safetensors)", 0, 0, NULL,
         NULL},
        {"steps", 's', NF_OPT_I64, &c.train.steps, NULL, "training steps", 1, 1e9, NULL, NULL},
        {"batch", 'b', NF_OPT_INT, &c.train.batch, NULL, "examples per step", 1, 4096, NULL, NULL},
        {"lr", 0, NF_OPT_FLOAT, &c.train.lr, NULL, "peak learning rate", 1e-7, 1, NULL, NULL},
        {"width", 0, NF_OPT_INT, &c.net.base, NULL, "channels of the first level (even, a multiple of 8)", 8, 1024,
         NULL, NULL},
        {"seed", 0, NF_OPT_U64, &c.train.seed, NULL, "random seed", 0, 0, NULL, NULL},
        {"threads", 'j', NF_OPT_INT, &c.threads, NULL, "threads (0: all cores)", 0, 1024, NULL, NULL},
        {"log-every", 0, NF_OPT_I64, &log_every, NULL, "progress line every N steps when not on a terminal", 1, 1e12,
         NULL, NULL},
        {"quiet", 'q', NF_OPT_FLAG, &quiet, NULL, "no progress output", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {
        "train-classifier", "DATA_DIR -m MODEL -o CLASSIFIER.safetensors [options]",
        "Train a noise-aware classifier for classifier guidance of MODEL (generate --classifier).\n"
        "DATA_DIR is laid out as for train: first-level subfolders are classes, matched to the\n"
        "model's class names (case-insensitive); other folders are skipped with a warning.",
        opts, 0, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    if (npos != 1) {
        fprintf(stderr, "noisefloor train-classifier: missing DATA_DIR\n");
        nf_opt_print_usage(&spec, stderr);
        return 2;
    }
    if (!output) {
        fprintf(stderr, "noisefloor train-classifier: missing -o CLASSIFIER.safetensors\n");
        nf_opt_print_usage(&spec, stderr);
        return 2;
    }
    nf_model *m;
    const char *resolved;
    nf_status st = nf_cli_model(model_path, &m, &resolved);
    if (st) return nf_cli_fail_status(st);

    clf_progress ps = {isatty(2), quiet, c.train.steps, log_every};
    c.progress = on_progress;
    c.progress_user = &ps;
    double t0 = nf_now();
    nf_classifier_fit_result res;
    st = nf_classifier_train_dataset(pos[0], m, output, &c, &res);
    if (ps.tty && !quiet) fputc('\n', stderr);
    if (st) return nf_cli_fail_status(st);
    if (!quiet)
        printf("trained %s for %s in %.1f s: %d clips, final loss %.4f, accuracy at moderate noise %.3f\n", output,
               resolved, nf_now() - t0, res.clips, res.final_loss, res.accuracy);
    return 0;
}

const nf_cli_command nf_cmd_train_classifier = {"train-classifier", "train a classifier for classifier guidance",
                                                run};
