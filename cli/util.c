/* Helpers shared by the commands: messages, library warnings, the model cache, signals,
 * folders and writing sounds. */
#include "cli.h"

#include "nf_audio.h"
#include "options.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void warn_to_stderr(void *user, const char *message)
{
    (void)user;
    fprintf(stderr, "%snoisefloor: warning: %s\n", nf_opt_context(), message);
}

void nf_cli_install_handlers(void) { nf_set_warning_handler(warn_to_stderr, NULL); }

int nf_cli_fail_status(nf_status s)
{
    const char *msg = nf_last_error();
    fprintf(stderr, "%snoisefloor: %s\n", nf_opt_context(), *msg ? msg : nf_status_name(s));
    return 1;
}

int nf_cli_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    fprintf(stderr, "%snoisefloor: %s\n", nf_opt_context(), msg);
    return 1;
}

/* ---- the model cache ---- */

typedef struct {
    char *path;
    nf_model *model;
} cached_model;

static cached_model *cache;
static int cache_n;

nf_status nf_cli_model(const char *path, nf_model **out, const char **resolved_path)
{
    if (!path || !*path) {
        path = nf_default_model_path();
        if (!path || !*path)
            return nf_fail(NF_ERR_IO, "no model given (-m MODEL) and no bundled default model is installed");
    }
    for (int i = 0; i < cache_n; i++)
        if (!strcmp(cache[i].path, path)) {
            *out = cache[i].model;
            if (resolved_path) *resolved_path = cache[i].path;
            return NF_OK;
        }
    nf_model *m = NULL;
    nf_status st = nf_model_load(path, &m);
    if (st) return st;
    cached_model *c = realloc(cache, sizeof *c * (size_t)(cache_n + 1));
    char *p = strdup(path);
    if (!c || !p) {
        if (c) cache = c;
        free(p);
        nf_model_free(m);
        return nf_fail(NF_ERR_NOMEM, "%s: out of memory", path);
    }
    cache = c;
    cache[cache_n].path = p;
    cache[cache_n].model = m;
    cache_n++;
    *out = m;
    if (resolved_path) *resolved_path = p;
    return NF_OK;
}

void nf_cli_release_models(void)
{
    for (int i = 0; i < cache_n; i++) {
        nf_model_free(cache[i].model);
        free(cache[i].path);
    }
    free(cache);
    cache = NULL;
    cache_n = 0;
}

/* ---- files ---- */

int nf_cli_skip_existing;

int nf_cli_file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

nf_status nf_cli_mkdirs(const char *dir)
{
    char buf[NF_PATH_MAX];
    if (!dir || !*dir) return nf_fail(NF_ERR_ARG, "empty output folder name");
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return nf_fail(NF_ERR_ARG, "%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) && errno != EEXIST)
                return nf_fail(NF_ERR_IO, "%s: cannot create folder: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) return nf_fail(NF_ERR_IO, "%s: not a folder", dir);
    if (access(dir, W_OK)) return nf_fail(NF_ERR_IO, "%s: folder is not writable: %s", dir, strerror(errno));
    return NF_OK;
}

void nf_cli_basename(const char *path, char *buf, size_t size)
{
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    const char *dot = strrchr(s, '.');
    size_t n = dot && dot != s ? (size_t)(dot - s) : strlen(s);
    snprintf(buf, size, "%.*s", (int)n, s);
}

/* ---- signals ---- */

volatile sig_atomic_t nf_cli_stop_requested;

static void on_signal(int sig)
{
    if (nf_cli_stop_requested) {
        /* A second Ctrl-C: the user does not want to wait for the checkpoint. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    nf_cli_stop_requested = 1;
}

void nf_cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- sounds ---- */

const char *nf_cli_ext(const nf_cli_out_format *fmt) { return fmt->flac ? ".flac" : ".wav"; }

nf_status nf_cli_write_sound(const char *path, const float *data, int channels, int frames, int rate,
                             const nf_cli_out_format *fmt, const char *comment)
{
    nf_audio a;
    nf_status st = nf_audio_alloc(&a, channels, frames, rate);
    if (st) return st;
    memcpy(a.data, data, sizeof(float) * (size_t)channels * (size_t)frames);
    if (fmt->rate > 0 && fmt->rate != rate) st = nf_audio_resample(&a, fmt->rate, NF_RESAMPLE_BEST);
    /* 5 ms fade where a crop cuts the sound. */
    if (!st && fmt->length > 0 && fmt->length != a.frames) st = nf_audio_fit_length(&a, fmt->length, a.rate / 200);
    if (!st) {
        nf_sample_format bits = fmt->bits == 16 ? NF_SAMPLE_PCM16 : fmt->bits == 24 ? NF_SAMPLE_PCM24 : NF_SAMPLE_FLOAT32;
        if (fmt->flac && bits == NF_SAMPLE_FLOAT32) bits = NF_SAMPLE_PCM24; /* FLAC has no float samples */
        st = nf_audio_write(path, &a, fmt->flac ? NF_FILE_FLAC : NF_FILE_WAV, bits, comment);
    }
    nf_audio_free(&a);
    return st;
}

nf_status nf_cli_read_for_model(const char *path, const nf_model *m, int frames, float **data, int *out_frames)
{
    const nf_model_info *info = nf_model_get_info(m);
    nf_audio a = {0};
    nf_status st = nf_audio_read(path, 0, &a);
    if (!st) st = nf_audio_to_channels(&a, info->channels);
    if (!st) st = nf_audio_resample(&a, info->sample_rate, NF_RESAMPLE_BEST);
    if (!st && frames > 0) st = nf_audio_fit_length(&a, frames, info->sample_rate / 200);
    /* The model was trained on peak-normalised clips: edit at the level it knows. */
    if (!st) nf_audio_peak_normalize(&a, 1.0f);
    if (st) {
        nf_audio_free(&a);
        return st;
    }
    *data = a.data;
    *out_frames = a.frames;
    return NF_OK;
}

void nf_cli_report_rtf(int n, double audio_seconds, double compute_seconds)
{
    printf("wrote %d sound%s (%.2f s of audio) in %.2f s: real-time factor %.2f\n", n, n == 1 ? "" : "s",
           audio_seconds, compute_seconds, compute_seconds > 0 ? audio_seconds / compute_seconds : 0.0);
}

void nf_cli_meta_begin(nf_json_writer *w, const char *command, const char *model_path, const nf_model *m,
                       const nf_gen_params *p, uint64_t seed)
{
    const nf_model_info *info = nf_model_get_info(m);
    nf_jw_init(w);
    nf_jw_begin_object(w);
    nf_jw_key(w, "noisefloor");
    nf_jw_string(w, NF_VERSION);
    nf_jw_key(w, "command");
    nf_jw_string(w, command);
    nf_jw_key(w, "model");
    nf_jw_string(w, model_path);
    nf_jw_key(w, "model_hash");
    nf_jw_string(w, info->hash);
    nf_jw_key(w, "seed");
    nf_jw_uint(w, seed);
    nf_jw_key(w, "class");
    if (p->class_id >= 0 && p->class_id < info->num_classes)
        nf_jw_string(w, info->class_names[p->class_id]);
    else
        nf_jw_null(w);
    nf_jw_key(w, "sampler");
    nf_jw_string(w, nf_sampler_name(p->sampler));
    nf_jw_key(w, "steps");
    nf_jw_int(w, p->steps);
    nf_jw_key(w, "eta");
    nf_jw_double(w, p->eta);
    nf_jw_key(w, "cfg");
    nf_jw_double(w, p->cfg_scale);
    nf_jw_key(w, "fade_in_ms");
    nf_jw_double(w, p->fade_in_ms);
    nf_jw_key(w, "model_rate");
    nf_jw_int(w, info->sample_rate);
    nf_jw_key(w, "model_length");
    nf_jw_int(w, info->length);
}
