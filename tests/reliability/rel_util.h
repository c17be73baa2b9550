/* Small helpers shared by the reliability tests: scratch folders, whole-file compares,
 * listing a folder, and running a function in a child process under a file-size limit. */
#ifndef NF_REL_UTIL_H
#define NF_REL_UTIL_H

#include "nf_common.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A fresh scratch folder under the build tree (or /tmp), emptied first. */
static inline void rel_scratch(const char *name, char *out, size_t size)
{
    const char *b = getenv("NF_BUILD_ROOT");
    snprintf(out, size, "%s/tests/reliability/scratch-%s", b ? b : "/tmp", name);
    char cmd[NF_PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    if (system(cmd) != 0) abort();
    if (mkdir(out, 0755) != 0) abort();
}

/* 1 if both files exist and hold the same bytes. */
static inline int rel_same_file(const char *a, const char *b_data_path_or_null, const void *b_data, size_t b_n)
{
    void *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    if (nf_read_file(a, &x, &nx)) return 0;
    int same;
    if (b_data_path_or_null) {
        if (nf_read_file(b_data_path_or_null, &y, &ny)) {
            free(x);
            return 0;
        }
        same = nx == ny && memcmp(x, y, nx) == 0;
    } else {
        same = nx == b_n && memcmp(x, b_data, nx) == 0;
    }
    free(x);
    free(y);
    return same;
}

/* Number of entries in `dir` (not . and ..); the names, space-separated, in `names`. */
static inline int rel_list(const char *dir, char *names, size_t size)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    names[0] = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        size_t l = strlen(names);
        snprintf(names + l, size - l, "%s%s", l ? " " : "", e->d_name);
    }
    closedir(d);
    return n;
}

/* Run fn(arg) in a child whose files may not grow past `limit` bytes (RLIMIT_FSIZE with
 * SIGXFSZ ignored, so a write past it fails with EFBIG instead of killing the process:
 * what a full disk looks like to the program). The child's status and its error
 * message come back; returns -1 if the child crashed. */
typedef nf_status (*rel_write_fn)(void *arg);
static inline int rel_run_limited(rel_write_fn fn, void *arg, rlim_t limit, char *msg, size_t msg_size)
{
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {limit, limit};
        if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(100);
        nf_status st = fn(arg);
        const char *m = nf_last_error();
        ssize_t w = write(fd[1], m, strlen(m));
        (void)w;
        close(fd[1]);
        _exit((int)st);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < msg_size && (r = read(fd[0], msg + got, msg_size - 1 - got)) > 0) got += (size_t)r;
    msg[got] = 0;
    close(fd[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

#endif
