/* Running the built `noisefloor` from a test: shared by the CLI tests. */
#ifndef NF_TEST_CLI_RUN_H
#define NF_TEST_CLI_RUN_H

#include "nf_common.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run `exe args...` (args[0] is exe, NULL-terminated) with stdout and stderr written to
 * DIR/TAG.out and DIR/TAG.err; returns the exit status (128 + signal if killed). */
static inline int nf_test_run_program(const char *exe, char **args, const char *dir, const char *tag)
{
    char out[4200], err[4200];
    snprintf(out, sizeof out, "%s/%s.out", dir, tag);
    snprintf(err, sizeof err, "%s/%s.err", dir, tag);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(exe, args);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The same with the arguments after exe as a NULL-terminated va_list (at most 126). */
static inline int nf_test_run_va(char *exe, const char *dir, const char *tag, va_list ap)
{
    char *args[128];
    int n = 0;
    args[n++] = exe;
    for (char *a; (a = va_arg(ap, char *)) && n < 127;) args[n++] = a;
    args[n] = NULL;
    return nf_test_run_program(exe, args, dir, tag);
}

/* DIR/TAG.EXT as a NUL-terminated string ("" if unreadable); the caller frees it. */
static inline char *nf_test_read_output(const char *dir, const char *tag, const char *ext)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s.%s", dir, tag, ext);
    void *d = NULL;
    size_t n = 0;
    if (nf_read_file(p, &d, &n)) return calloc(1, 1);
    return d; /* nf_read_file NUL-terminates */
}

static inline int nf_test_count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

#endif
