/* A small option parser shared by every `noisefloor` command.
 *
 * Each command describes its options in a table of nf_opt (long name, optional short
 * letter, a typed destination, a range or a list of choices, help text) and calls
 * nf_opt_parse(). Accepted forms: `--name value`, `--name=value`, `-x value`, `-xvalue`,
 * `--flag`, `-f`, and `--` to end the options. A lone `-` is a positional argument.
 *
 * Errors follow the house rules: an unknown option prints the command's usage on stderr
 * and the command exits 2; a bad value prints one line naming the option (and exits 2
 * too, since it is a usage error). `-h` / `--help` prints the help on stdout (exit 0). */
#ifndef NF_CLI_OPTIONS_H
#define NF_CLI_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    NF_OPT_FLAG = 0, /* int *: set to 1 when given (takes no value) */
    NF_OPT_INT,      /* int * */
    NF_OPT_I64,      /* long long * */
    NF_OPT_U64,      /* uint64_t * (seeds): decimal or 0x hex */
    NF_OPT_FLOAT,    /* float * */
    NF_OPT_DOUBLE,   /* double * */
    NF_OPT_STRING,   /* const char ** (points into argv) */
    NF_OPT_CHOICE    /* int *: index into `choices`, a '|'-separated list */
} nf_opt_type;

typedef struct {
    const char *name;     /* long name without the dashes */
    char short_name;      /* 0: none */
    nf_opt_type type;
    void *value;          /* destination; its current value is the default shown in --help */
    const char *metavar;  /* "N", "FILE", ... (NULL: derived from the type) */
    const char *help;
    double min, max;      /* numeric range, inclusive; both 0: no range check */
    const char *choices;  /* NF_OPT_CHOICE: "wave|stft" */
    int *seen;            /* optional: set to 1 when the option is given */
} nf_opt;

typedef struct {
    const char *command;     /* "generate" */
    const char *usage;       /* "[-m MODEL] -o DIR [options]" (after "noisefloor generate ") */
    const char *description; /* a paragraph printed by --help (may be NULL) */
    const nf_opt *opts;      /* terminated by an entry with name == NULL */
    int min_positional, max_positional; /* max < 0: unlimited */
} nf_opt_spec;

/* Parse argv[1..argc-1] (argv[0] is the command name). Positional arguments are stored,
 * in order, in pos[] (room for max_pos entries; the count in *npos).
 * Returns -1 when the command should go on, otherwise the exit status it should return
 * at once: 0 after --help, 2 after a usage error (already reported on `err`). */
int nf_opt_parse(const nf_opt_spec *spec, int argc, char **argv, char **pos, int max_pos,
                 int *npos, FILE *err);

/* Print the command's help (usage line, description, options with defaults). */
void nf_opt_print_help(const nf_opt_spec *spec, FILE *f);
/* Print the one-line usage ("Usage: noisefloor cmd ...; see --help"). */
void nf_opt_print_usage(const nf_opt_spec *spec, FILE *f);

/* When quiet_usage is set (inside `noisefloor render`), usage errors print only their one
 * line, prefixed by `context` (e.g. "jobs.txt:12: "), not the whole usage. */
void nf_opt_set_batch_context(int quiet_usage, const char *context);
const char *nf_opt_context(void);

/* Split one line of a job file into words, in place: words are separated by blanks;
 * '...' and "..." quote (no escapes inside '...'; \" and \\ inside "..."), a backslash
 * outside quotes escapes the next character, and '#' at the start of a word starts a
 * comment. On success *argc is the number of words (0 for a blank or comment line).
 * Returns 0, or -1 with a message in err_msg (unterminated quote, too many words). */
int nf_opt_split_line(char *line, char **argv, int max_words, int *argc, char *err_msg,
                      size_t err_size);

/* Parse "A:B" into two numbers; each may end in "s" (seconds) or not (a fraction of the
 * clip). *a_sec / *b_sec say which. Returns 0, or -1 on a malformed string. */
int nf_opt_parse_region(const char *s, double *a, int *a_sec, double *b, int *b_sec);

#endif
