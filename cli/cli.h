/* Shared pieces of the noisefloor command-line program. */
#ifndef NF_CLI_H
#define NF_CLI_H

#include "nf_common.h"
#include "nf_engine.h"
#include "nf_json.h"

#include <signal.h>

typedef struct {
    const char *name;
    const char *summary;                 /* one line for `noisefloor --help` */
    int (*run)(int argc, char **argv);   /* argv[0] is the command name; returns exit status */
} nf_cli_command;

/* The commands (one file each, cli/cmd_<name>.c). */
extern const nf_cli_command nf_cmd_train, nf_cmd_generate, nf_cmd_vary, nf_cmd_inpaint, nf_cmd_extend,
    nf_cmd_interpolate, nf_cmd_render, nf_cmd_info, nf_cmd_spectrogram, nf_cmd_make_drums;
extern const nf_cli_command nf_cmd_bench;
extern const nf_cli_command nf_cmd_train_classifier;

/* Route library warnings to stderr. */
void nf_cli_install_handlers(void);

/* Print "noisefloor: <library message>" to stderr and return exit status 1. Inside
 * `noisefloor render` the message is prefixed by "JOBS:LINE: ". */
int nf_cli_fail_status(nf_status s);
/* Print "noisefloor: <message>" (one line, same prefix) and return 1. */
int nf_cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* ---- models: loaded once per process (so a job file loads each model once) ---- */
/* path NULL or "": the bundled default model. The model stays owned by the cache. */
nf_status nf_cli_model(const char *path, nf_model **out, const char **resolved_path);
void nf_cli_release_models(void);

/* ---- batch mode (`noisefloor render`) ---- */
/* Set by render: commands skip outputs that already exist. */
extern int nf_cli_skip_existing;
int nf_cli_file_exists(const char *path);

/* Create a folder and its parents (like mkdir -p). */
nf_status nf_cli_mkdirs(const char *dir);

/* ---- stopping on Ctrl-C ---- */
extern volatile sig_atomic_t nf_cli_stop_requested;
/* SIGINT / SIGTERM set nf_cli_stop_requested (a second one exits at once). */
void nf_cli_catch_signals(void);

/* ---- writing rendered sounds ---- */
typedef struct {
    int rate;          /* output rate (0: the model's) */
    int length;        /* output frames at the output rate (0: keep) */
    int bits;          /* 16, 24 or 32 (float) */
    int flac;          /* 1: FLAC instead of WAV */
} nf_cli_out_format;

/* Convert one planar sound [channels][frames] at `rate` to the requested rate and length
 * (resampled with libsamplerate; cropped with a short fade or padded with silence) and
 * write it atomically with `comment` (JSON settings) in its metadata. */
nf_status nf_cli_write_sound(const char *path, const float *data, int channels, int frames, int rate,
                             const nf_cli_out_format *fmt, const char *comment);
/* File extension for the format (".wav" / ".flac"). */
const char *nf_cli_ext(const nf_cli_out_format *fmt);

/* Read a sound for editing and bring it to the model's channels and rate; `frames` > 0
 * crops (with a fade) or pads it to that length. */
nf_status nf_cli_read_for_model(const char *path, const nf_model *m, int frames, float **data, int *out_frames);

/* A file name's base without folders and extension ("in/kick 1.wav" -> "kick 1"). */
void nf_cli_basename(const char *path, char *buf, size_t size);

/* Start the JSON settings stored in every rendered file: {"noisefloor": version,
 * "command", "model", "model_hash", "sampler", "steps", "eta", "cfg", "seed", "class",
 * ... The caller adds its own keys and closes the object with nf_jw_end_object. */
void nf_cli_meta_begin(nf_json_writer *w, const char *command, const char *model_path, const nf_model *m,
                       const nf_gen_params *p, uint64_t seed);

/* Print "wrote N sounds (X s of audio) in Y s: real-time factor Z" on stdout. */
void nf_cli_report_rtf(int n, double audio_seconds, double compute_seconds);

#endif
