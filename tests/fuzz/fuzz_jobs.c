/* libFuzzer target: `noisefloor render` job files and the CLI option parser.
 *
 * The input is a job file. Each line goes through what cli/cmd_render.c does with it
 * before running anything: nf_opt_split_line (quotes, escapes, comments), dropping a
 * leading "noisefloor", then nf_opt_parse against option tables shaped like the
 * rendering commands' (the shared NF_RENDER_OPTS plus each command's own kinds of
 * options: counts, seconds, flags, strings, choices), and --region values through
 * nf_opt_parse_region. Usage errors are printed to /dev/null. No render is run: the
 * commands' own tables live inside their run() functions, so this target mirrors them. */
#include "options.h"
#include "render.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS 256

static FILE *devnull;

static void parse_words(int n, char **w)
{
    nf_render_opts r;
    memset(&r, 0, sizeof r);
    r.count = 1;
    r.batch = 8;
    r.eta = 0;
    r.cfg = 1;
    double length = 0;
    float strength = 0.5f;
    int all = 0, jumps = 0;
    const char *region = NULL, *second = NULL;
    const nf_opt opts[] = {
        NF_RENDER_OPTS(r),
        {"count", 'n', NF_OPT_INT, &r.count, NULL, "count", 1, 100000, NULL, NULL},
        {"length", 'l', NF_OPT_DOUBLE, &length, "SECONDS", "length", 0, 600, NULL, NULL},
        {"all-classes", 'a', NF_OPT_FLAG, &all, NULL, "all", 0, 0, NULL, NULL},
        {"strength", 's', NF_OPT_FLOAT, &strength, NULL, "strength", 0, 1, NULL, NULL},
        {"region", 0, NF_OPT_STRING, &region, "A:B", "region", 0, 0, NULL, NULL},
        {"jumps", 0, NF_OPT_INT, &jumps, NULL, "jumps", 0, 100, NULL, NULL},
        {"with", 0, NF_OPT_STRING, &second, "FILE", "second input", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {w[0], "[options] [IN...]", "fuzz", opts, 0, 3};
    char *pos[3];
    int npos = 0;
    nf_opt_set_batch_context(1, "jobs.txt:1: ");
    int rc = nf_opt_parse(&spec, n, w, pos, 3, &npos, devnull);
    nf_opt_set_batch_context(0, "");
    if (rc < 0) {
        /* Positionals point into the line; touch them so ASan checks they are in bounds. */
        for (int i = 0; i < npos; i++) (void)strlen(pos[i]);
        if (region) {
            double a, b;
            int as, bs;
            (void)nf_opt_parse_region(region, &a, &as, &b, &bs);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull) devnull = fopen("/dev/null", "w");
    if (!devnull) abort();
    /* Lines as getline() hands them to cmd_render.c: NUL-terminated, newline kept. */
    size_t start = 0;
    while (start < size) {
        size_t end = start;
        while (end < size && data[end] != '\n') end++;
        size_t len = end - start + (end < size);
        char *line = malloc(len + 1);
        if (!line) return 0;
        memcpy(line, data + start, len);
        line[len] = 0;
        char *words[MAX_WORDS + 1];
        int n = 0;
        char msg[128];
        if (nf_opt_split_line(line, words, MAX_WORDS, &n, msg, sizeof msg) == 0) {
            if (n > MAX_WORDS) abort(); /* the splitter promised at most max_words */
            char **w = words;
            if (n > 0 && !strcmp(w[0], "noisefloor")) {
                w++;
                n--;
            }
            if (n > 0) parse_words(n, w);
        } else if (!memchr(msg, 0, sizeof msg)) {
            abort(); /* the message must be a terminated string */
        }
        free(line);
        start = end + 1;
    }
    return 0;
}
