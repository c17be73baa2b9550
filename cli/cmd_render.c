/* noisefloor render JOBS: many renders in one process, each model loaded once.
 *
 * A job file has one command line per line, e.g.
 *     generate -m kit.safetensors --class kick -n 8 --seed 100 -o out/kicks
 *     vary -m kit.safetensors in/snare.wav --strength 0.3 -n 4 -o out/snares
 * (a leading "noisefloor" is allowed; '#' starts a comment; quotes as in a shell).
 * A bad line is reported with its line number and skipped; outputs that already exist
 * are skipped, so a killed batch resumes where it stopped. */
#include "cli.h"
#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const nf_cli_command *const job_commands[] = {
    &nf_cmd_generate, &nf_cmd_vary, &nf_cmd_inpaint, &nf_cmd_extend, &nf_cmd_interpolate, &nf_cmd_spectrogram, NULL,
};

#define MAX_WORDS 256

static int run(int argc, char **argv)
{
    int dry = 0;
    const nf_opt opts[] = {
        {"check", 'n', NF_OPT_FLAG, &dry, NULL, "only check the job file's syntax", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {
        "render", "JOBS [--check]",
        "Run a job file: one command per line (generate, vary, inpaint, extend, interpolate,\n"
        "spectrogram, with their usual options; a leading 'noisefloor' is allowed, '#' starts a\n"
        "comment). Each model is loaded once; existing outputs are skipped; a bad line is\n"
        "reported with its line number and skipped. Exit status 1 if any line failed.",
        opts, 1, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    const char *jobs = pos[0];
    FILE *f = fopen(jobs, "r");
    if (!f) return nf_cli_error("%s: cannot open the job file: %s", jobs, strerror(errno));

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, done = 0, failed = 0;
    char *words[MAX_WORDS];
    char ctx[NF_PATH_MAX + 32], msg[128];
    nf_cli_skip_existing = 1;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        int n = 0;
        snprintf(ctx, sizeof ctx, "%s:%d: ", jobs, lineno);
        if (nf_opt_split_line(line, words, MAX_WORDS, &n, msg, sizeof msg)) {
            fprintf(stderr, "%s%s; line skipped\n", ctx, msg);
            failed++;
            continue;
        }
        char **w = words;
        if (n > 0 && !strcmp(w[0], "noisefloor")) {
            w++;
            n--;
        }
        if (n == 0) continue;
        const nf_cli_command *cmd = NULL;
        for (int i = 0; job_commands[i]; i++)
            if (!strcmp(w[0], job_commands[i]->name)) cmd = job_commands[i];
        if (!cmd) {
            fprintf(stderr, "%s'%s' is not a rendering command; line skipped\n", ctx, w[0]);
            failed++;
            continue;
        }
        if (dry) {
            done++;
            continue;
        }
        nf_opt_set_batch_context(1, ctx);
        nf_clear_error();
        int r = cmd->run(n, w);
        nf_opt_set_batch_context(0, "");
        if (r) {
            failed++;
            fprintf(stderr, "%sline skipped\n", ctx);
        } else {
            done++;
        }
        fflush(stdout);
    }
    int read_error = ferror(f);
    free(line);
    fclose(f);
    nf_cli_skip_existing = 0;
    if (read_error) return nf_cli_error("%s: read error", jobs);
    printf("render: %d job%s done, %d failed\n", done, done == 1 ? "" : "s", failed);
    return failed ? 1 : 0;
}

const nf_cli_command nf_cmd_render = {"render", "run a job file of renders (each model loaded once)", run};
