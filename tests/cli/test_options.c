/* The CLI's option parser and job-file splitter, on their own (no model needed). */
#include "nf_test.h"
#include "options.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int steps, quiet, kind, npos;
static float cfg;
static double seconds;
static uint64_t seed;
static long long big;
static const char *out;
static int seen_cfg;
static char *pos[4];

static const nf_opt opts[] = {
    {"steps", 's', NF_OPT_INT, &steps, "N", "sampler steps", 1, 1000, NULL, NULL},
    {"cfg", 0, NF_OPT_FLOAT, &cfg, "S", "guidance", 0, 20, NULL, &seen_cfg},
    {"seconds", 0, NF_OPT_DOUBLE, &seconds, NULL, "length", 0.01, 60, NULL, NULL},
    {"seed", 0, NF_OPT_U64, &seed, NULL, "seed", 0, 0, NULL, NULL},
    {"big", 0, NF_OPT_I64, &big, NULL, "a long", 0, 0, NULL, NULL},
    {"output", 'o', NF_OPT_STRING, &out, "DIR", "output folder", 0, 0, NULL, NULL},
    {"repr", 0, NF_OPT_CHOICE, &kind, NULL, "representation", 0, 0, "wave|stft", NULL},
    {"quiet", 'q', NF_OPT_FLAG, &quiet, NULL, "say less", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
static const nf_opt_spec spec = {"test", "[options] IN [IN2]", "A test command.", opts, 1, 2};

static void reset(void)
{
    steps = 10;
    quiet = 0;
    kind = 0;
    cfg = 1.0f;
    seconds = 1.0;
    seed = 0;
    big = 0;
    out = NULL;
    seen_cfg = 0;
    npos = 0;
}

/* Parse a NULL-terminated list of words; errors go to a scratch file whose text is
 * returned in err_text. */
static int parse(char *err_text, size_t size, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, size);
    argv[argc++] = "test";
    for (char *a; (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    FILE *err = tmpfile();
    int rc = nf_opt_parse(&spec, argc, argv, pos, 4, &npos, err);
    rewind(err);
    size_t n = fread(err_text, 1, size - 1, err);
    err_text[n] = '\0';
    fclose(err);
    return rc;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

int main(void)
{
    char e[4096];

    reset();
    CHECK(parse(e, sizeof e, "-s", "25", "--cfg=3.5", "in.wav", "--seed", "0x10", "-oOUT", "--repr", "stft",
                "-q", "--big", "-9000000000", "--seconds", "0.5", NULL) == -1, "valid line rejected: %s", e);
    CHECK(steps == 25, "steps %d", steps);
    CHECK(cfg == 3.5f && seen_cfg, "cfg %g seen %d", cfg, seen_cfg);
    CHECK(seed == 16, "hex seed %llu", (unsigned long long)seed);
    CHECK(out && !strcmp(out, "OUT"), "short inline value");
    CHECK(kind == 1, "choice index %d", kind);
    CHECK(quiet == 1, "flag");
    CHECK(big == -9000000000LL, "i64 %lld", big);
    CHECK(seconds == 0.5, "double %g", seconds);
    CHECK(npos == 1 && !strcmp(pos[0], "in.wav"), "positional");
    CHECK(e[0] == '\0', "nothing printed on success: %s", e);

    /* Defaults stay when an option is absent; "--" ends the options; "-" is positional. */
    reset();
    CHECK(parse(e, sizeof e, "-", "--", "--steps", NULL) == -1, "-- : %s", e);
    CHECK(npos == 2 && !strcmp(pos[0], "-") && !strcmp(pos[1], "--steps"), "after --");
    CHECK(steps == 10 && !seen_cfg, "defaults kept");

    /* Unknown option: exit 2, usage on the error stream. */
    reset();
    CHECK(parse(e, sizeof e, "in.wav", "--nope", NULL) == 2, "unknown option");
    CHECK(strstr(e, "unknown option '--nope'") && strstr(e, "Usage: noisefloor test"), "usage printed: %s", e);
    CHECK(parse(e, sizeof e, "in.wav", "-z", NULL) == 2, "unknown short option");

    /* Bad values: exit 2, exactly one line naming the option. */
    struct {
        const char *a, *b, *name;
    } bad[] = {
        {"--steps", "0", "--steps"},       {"--steps", "1001", "--steps"}, {"--steps", "12x", "--steps"},
        {"--cfg", "nan", "--cfg"},         {"--cfg", "-1", "--cfg"},       {"--seconds", "inf", "--seconds"},
        {"--seed", "-5", "--seed"},        {"--repr", "mel", "--repr"},    {"--steps", "99999999999", "--steps"},
        {"--output", "", "--output"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reset();
        int rc = parse(e, sizeof e, "in.wav", bad[i].a, bad[i].b, NULL);
        CHECK(rc == 2, "%s %s accepted", bad[i].a, bad[i].b);
        CHECK(count_lines(e) == 1 && strstr(e, bad[i].name), "%s %s: one line naming the option: %s", bad[i].a,
              bad[i].b, e);
    }
    reset();
    CHECK(parse(e, sizeof e, "in.wav", "--steps", NULL) == 2, "missing value");
    CHECK(count_lines(e) == 1 && strstr(e, "--steps"), "missing value line: %s", e);
    reset();
    CHECK(parse(e, sizeof e, "in.wav", "--quiet=1", NULL) == 2, "flag with a value");

    /* Positional counts. */
    reset();
    CHECK(parse(e, sizeof e, NULL) == 2, "missing positional");
    reset();
    CHECK(parse(e, sizeof e, "a", "b", "c", NULL) == 2, "too many positionals");

    /* --help goes to stdout and asks for exit 0; nothing on the error stream. */
    reset();
    CHECK(parse(e, sizeof e, "--help", NULL) == 0, "help exit 0");
    CHECK(e[0] == '\0', "help not on stderr");

    /* Inside a batch, usage is not repeated and the context prefixes the line. */
    nf_opt_set_batch_context(1, "jobs.txt:7: ");
    reset();
    CHECK(parse(e, sizeof e, "in.wav", "--nope", NULL) == 2, "batch unknown option");
    CHECK(count_lines(e) == 1 && !strncmp(e, "jobs.txt:7: ", 12), "batch line: %s", e);
    nf_opt_set_batch_context(0, "");

    /* Job-file line splitting. */
    char line[256], msg[128], *w[16];
    int n;
    strcpy(line, "  generate -m 'my model.safetensors'  --class \"snare \\\"x\\\"\" a\\ b  # a comment\n");
    CHECK(nf_opt_split_line(line, w, 16, &n, msg, sizeof msg) == 0, "split: %s", msg);
    CHECK(n == 6, "word count %d", n);
    if (n == 6) {
        CHECK(!strcmp(w[0], "generate") && !strcmp(w[1], "-m"), "plain words");
        CHECK(!strcmp(w[2], "my model.safetensors"), "single quotes: [%s]", w[2]);
        CHECK(!strcmp(w[4], "snare \"x\""), "double quotes with escapes: [%s]", w[4]);
        CHECK(!strcmp(w[5], "a b"), "backslash blank: [%s]", w[5]);
    }
    strcpy(line, "   # only a comment");
    CHECK(nf_opt_split_line(line, w, 16, &n, msg, sizeof msg) == 0 && n == 0, "comment line");
    strcpy(line, "\r\n");
    CHECK(nf_opt_split_line(line, w, 16, &n, msg, sizeof msg) == 0 && n == 0, "blank line");
    strcpy(line, "generate 'oops");
    CHECK(nf_opt_split_line(line, w, 16, &n, msg, sizeof msg) == -1 && strstr(msg, "quote"), "unterminated");
    strcpy(line, "a b c d");
    CHECK(nf_opt_split_line(line, w, 3, &n, msg, sizeof msg) == -1, "too many words");
    strcpy(line, "x#y ''");
    CHECK(nf_opt_split_line(line, w, 16, &n, msg, sizeof msg) == 0 && n == 2 && !strcmp(w[0], "x#y") &&
              w[1][0] == '\0',
          "# inside a word, empty quoted word");

    /* Regions. */
    double a, b;
    int as, bs;
    CHECK(nf_opt_parse_region("0.20:0.35", &a, &as, &b, &bs) == 0 && a == 0.20 && b == 0.35 && !as && !bs,
          "fraction region");
    CHECK(nf_opt_parse_region("0.1s:0.25s", &a, &as, &b, &bs) == 0 && a == 0.1 && b == 0.25 && as && bs,
          "seconds region");
    CHECK(nf_opt_parse_region("0.2", &a, &as, &b, &bs) == -1, "no colon");
    CHECK(nf_opt_parse_region("0.2:", &a, &as, &b, &bs) == -1, "empty end");
    CHECK(nf_opt_parse_region("x:1", &a, &as, &b, &bs) == -1, "not a number");
    CHECK(nf_opt_parse_region("-0.1:0.2", &a, &as, &b, &bs) == -1, "negative");
    CHECK(nf_opt_parse_region("0.1:0.2:0.3", &a, &as, &b, &bs) == -1, "two colons");
    return nf_test_done();
}
