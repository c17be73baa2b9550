/* Status codes, per-thread error messages and atomic file writes. */
#include "nf_common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char last_error[1024];

const char *nf_last_error(void) { return last_error; }

void nf_clear_error(void) { last_error[0] = '\0'; }

nf_status nf_fail(nf_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    /* One line: a message that spans lines breaks log parsing and the CLI's contract. */
    for (char *p = last_error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return s;
}

const char *nf_status_name(nf_status s)
{
    switch (s) {
    case NF_OK: return "ok";
    case NF_ERR_ARG: return "bad argument";
    case NF_ERR_IO: return "I/O error";
    case NF_ERR_FORMAT: return "unsupported format";
    case NF_ERR_CORRUPT: return "corrupt file";
    case NF_ERR_VERSION: return "incompatible version";
    case NF_ERR_NOMEM: return "out of memory";
    case NF_ERR_NUMERIC: return "non-finite numbers";
    case NF_ERR_EMPTY: return "nothing to do";
    case NF_ERR_INTERRUPTED: return "interrupted";
    case NF_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

static nf_warn_fn warn_fn;
static void *warn_user;

void nf_set_warning_handler(nf_warn_fn fn, void *user)
{
    warn_fn = fn;
    warn_user = user;
}

void nf_warn(const char *fmt, ...)
{
    if (!warn_fn) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    warn_fn(warn_user, msg);
}

nf_status nf_atomic_begin(const char *path, char *tmp, size_t tmp_size)
{
    if (!path || !*path) return nf_fail(NF_ERR_ARG, "empty output path");
    /* Same directory as the target, so that rename() never crosses file systems. The
     * pid keeps two processes writing the same file from sharing a temporary. */
    int n = snprintf(tmp, tmp_size, "%s.tmp%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= tmp_size) return nf_fail(NF_ERR_ARG, "%s: path too long", path);
    return NF_OK;
}

static int fsync_path(const char *p, int flags)
{
    int fd = open(p, flags);
    if (fd < 0) return -1;
    int r = fsync(fd);
    /* Some file systems refuse fsync on a directory; that is not a failed write. */
    if (r != 0 && (errno == EINVAL || errno == EBADF) && (flags & O_DIRECTORY)) r = 0;
    close(fd);
    return r;
}

nf_status nf_atomic_commit(const char *tmp, const char *path)
{
    if (fsync_path(tmp, O_RDONLY) != 0) {
        int e = errno;
        unlink(tmp);
        return nf_fail(NF_ERR_IO, "%s: cannot flush to disk: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return nf_fail(NF_ERR_IO, "%s: cannot replace: %s", path, strerror(e));
    }
    char dir[NF_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    fsync_path(dirname(dir), O_RDONLY | O_DIRECTORY);
    return NF_OK;
}

void nf_atomic_abort(const char *tmp)
{
    if (tmp && *tmp) unlink(tmp);
}

nf_status nf_write_file_atomic(const char *path, const void *data, size_t n)
{
    char tmp[NF_PATH_MAX];
    nf_status s = nf_atomic_begin(path, tmp, sizeof tmp);
    if (s) return s;
    FILE *f = fopen(tmp, "wb");
    if (!f) return nf_fail(NF_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    int e = (w != n) ? errno : 0;
    if (fclose(f) != 0 && !e) e = errno;
    if (w != n || e) {
        nf_atomic_abort(tmp);
        return nf_fail(NF_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return nf_atomic_commit(tmp, path);
}

nf_status nf_read_file(const char *path, void **data, size_t *n)
{
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return nf_fail(NF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return nf_fail(NF_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        fclose(f);
        return nf_fail(NF_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, size + 1);
    }
    size_t got = size ? fread(buf, 1, size, f) : 0;
    fclose(f);
    if (got != size) {
        free(buf);
        return nf_fail(NF_ERR_IO, "%s: read %zu of %zu bytes", path, got, size);
    }
    buf[size] = '\0';
    *data = buf;
    *n = size;
    return NF_OK;
}

double nf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
