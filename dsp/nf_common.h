/* noisefloor: status codes, error messages and atomic file writes.
 *
 * Every library call that can fail returns an nf_status. On failure it also leaves a
 * one-line message (naming the file and the problem where there is one) that the
 * caller can fetch with nf_last_error(); the message is per thread. The library never
 * prints to stdout and never exits. */
#ifndef NF_COMMON_H
#define NF_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    NF_OK = 0,
    NF_ERR_ARG,         /* a bad argument or option value */
    NF_ERR_IO,          /* a file could not be opened, read or written */
    NF_ERR_FORMAT,      /* not a format we read (not audio, not safetensors, ...) */
    NF_ERR_CORRUPT,     /* the right format, but damaged or truncated */
    NF_ERR_VERSION,     /* written by a newer or incompatible noisefloor */
    NF_ERR_NOMEM,       /* out of memory */
    NF_ERR_NUMERIC,     /* NaN or Inf where finite numbers are required */
    NF_ERR_EMPTY,       /* nothing to work on (no audio in a folder, ...) */
    NF_ERR_INTERRUPTED, /* stopped by a signal or a caller's request */
    NF_ERR_INTERNAL
} nf_status;

/* The message of the last failure on this thread ("" if none). */
const char *nf_last_error(void);
/* A short name for a status code ("I/O error", ...). */
const char *nf_status_name(nf_status s);
/* Record a printf-style message for this thread and return `s` (for `return nf_fail(...)`). */
nf_status nf_fail(nf_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Clear this thread's message. */
void nf_clear_error(void);

/* Warnings that the library wants a user to see (a skipped file in a folder scan, ...)
 * go to this callback; the default discards them. The CLI installs one that prints to
 * stderr. Not thread-safe to change while other threads call into the library. */
typedef void (*nf_warn_fn)(void *user, const char *message);
void nf_set_warning_handler(nf_warn_fn fn, void *user);
void nf_warn(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Atomic file writes: write everything to a temporary file beside `path`, then
 * nf_atomic_commit() flushes it to disk (fsync), renames it over `path` and syncs the
 * directory, so that `path` is always either the old complete file or the new one.
 * nf_atomic_abort() removes the temporary file after a failed write.
 *
 *   char tmp[NF_PATH_MAX];
 *   if (nf_atomic_begin(path, tmp, sizeof tmp)) return ...;   // fills tmp
 *   ... write the whole file to tmp (fopen, sf_open, ...) and close it ...
 *   if (failed) { nf_atomic_abort(tmp); return ...; }
 *   return nf_atomic_commit(tmp, path);
 */
#define NF_PATH_MAX 4096
nf_status nf_atomic_begin(const char *path, char *tmp, size_t tmp_size);
nf_status nf_atomic_commit(const char *tmp, const char *path);
void nf_atomic_abort(const char *tmp);

/* Write `n` bytes to `path` atomically (the helper most callers need). */
nf_status nf_write_file_atomic(const char *path, const void *data, size_t n);
/* Read a whole file into a new malloc'd buffer (NUL-terminated for convenience). */
nf_status nf_read_file(const char *path, void **data, size_t *n);

/* Monotonic wall-clock time in seconds, for progress reports and benchmarks. */
double nf_now(void);

#ifdef __cplusplus
}
#endif
#endif
