/* noisefloor train DATA_DIR -o MODEL.safetensors: options in, progress out; the loop
 * itself is nf_train() in the library. */
#include "cli.h"
#include "nf_repr.h"
#include "nf_train.h"
#include "options.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int tty, quiet;
    long long log_every;
    double last_line;
} progress_state;

static void fmt_time(double s, char *buf, size_t size)
{
    if (s < 0) {
        snprintf(buf, size, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

static void on_progress(void *user, const nf_train_progress *p)
{
    progress_state *ps = user;
    if (ps->quiet) return;
    char eta[32], el[32];
    fmt_time(p->eta_s, eta, sizeof eta);
    fmt_time(p->elapsed_s, el, sizeof el);
    if (p->event) {
        if (ps->tty) fputc('\n', stderr);
        if (!strcmp(p->event, "loaded") || !strcmp(p->event, "resumed"))
            fprintf(stderr, "%s at step %lld of %lld\n", !strcmp(p->event, "loaded") ? "starting" : "resumed", p->step,
                    p->total);
        else
            fprintf(stderr, "step %lld: %s\n", p->step, p->event);
        return;
    }
    if (ps->tty) {
        /* One self-overwriting line: bar, step/total, smoothed loss, rates, ETA. */
        char bar[31];
        int w = 30, fill = p->total > 0 ? (int)(w * p->step / p->total) : 0;
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
        bar[w] = '\0';
        fprintf(stderr, "\r[%s] %lld/%lld loss %.4f  %.2f steps/s  %.1f ex/s  ETA %s  ", bar, p->step, p->total,
                p->loss_smooth, p->steps_per_s, p->examples_per_s, eta);
        fflush(stderr);
    } else if (ps->log_every > 0 && (p->step % ps->log_every == 0 || p->step == p->total)) {
        fprintf(stderr, "step %lld/%lld loss %.5f smoothed %.5f lr %.3g grad %.3g  %.2f steps/s %.1f ex/s elapsed %s ETA %s\n",
                p->step, p->total, p->loss, p->loss_smooth, p->lr, p->grad_norm, p->steps_per_s, p->examples_per_s, el,
                eta);
    }
}

static int list_presets(int repr)
{
    printf("Training size presets (parameter counts for mono audio, %s, no classes):\n",
           repr == NF_REPR_WAVE ? "waveform" : repr == NF_REPR_STFT ? "STFT n_fft 512" : "STFT magnitudes n_fft 512");
    const int in_ch = repr == NF_REPR_WAVE ? 1 : repr == NF_REPR_STFT ? 2 * (512 / 2 + 1) : 512 / 2 + 1;
    for (const char *const *n = nf_train_preset_names(); *n; n++) {
        long long count = 0;
        nf_status st = nf_train_preset_param_count(*n, repr, in_ch, 0, &count);
        if (st) return nf_cli_fail_status(st);
        printf("  %-6s %10lld parameters  %s\n", *n, count, nf_train_preset_description(*n));
    }
    return 0;
}

static int run(int argc, char **argv)
{
    nf_train_config c;
    nf_train_config_default(&c);
    const char *output = NULL, *preset = "small";
    int preset_i = 1, stereo = 0, no_augment = 0, list = 0, quiet = 0, repr = 0, objective = 1, schedule = 1,
        lr_shape = 1;
    double seconds = c.clip_seconds;
    long long log_every = 50;
    const nf_opt opts[] = {
        {"output", 'o', NF_OPT_STRING, &output, "MODEL", "model file to write (.safetensors)", 0, 0, NULL, NULL},
        {"preset", 'p', NF_OPT_CHOICE, &preset_i, NULL, "network size", 0, 0, "tiny|small|base|drums", NULL},
        {"list-presets", 0, NF_OPT_FLAG, &list, NULL, "print the presets with their parameter counts", 0, 0, NULL, NULL},
        {"repr", 0, NF_OPT_CHOICE, &repr, NULL, "representation: waveform, complex STFT, or STFT magnitudes (phase by Griffin-Lim)", 0, 0, "wave|stft|mag", NULL},
        {"n-fft", 0, NF_OPT_INT, &c.n_fft, NULL, "STFT size (power of two)", 16, 8192, NULL, NULL},
        {"hop", 0, NF_OPT_INT, &c.hop, NULL, "STFT hop (0: n_fft/4)", 0, 4096, NULL, NULL},
        {"log-mag", 0, NF_OPT_FLAG, &c.log_mag, NULL, "with --repr mag: log-compressed magnitudes (silence is 0, 60 dB of range) instead of square roots", 0, 0, NULL, NULL},
        {"power", 0, NF_OPT_FLOAT, &c.power, "P", "with --repr stft|mag: compress amplitudes to |X|^P (0: 0.5, square roots; 1: none)", 0, 1, NULL, NULL},
        {"phase-bins", 0, NF_OPT_INT, &c.phase_bins, "N", "with --repr mag: keep the phase of the N lowest bins (a kick's fundamental), Griffin-Lim for the rest", 0, 4097, NULL, NULL},
        {"lead-frames", 0, NF_OPT_INT, &c.lead_frames, "N", "with --repr stft|mag: N frames of the silence before each clip in front of it, so that the onset is not the model's first frame", 0, 4096, NULL, NULL},
        {"rate", 'r', NF_OPT_INT, &c.sample_rate, "HZ", "sample rate", 4000, 192000, NULL, NULL},
        {"length", 'l', NF_OPT_DOUBLE, &seconds, "SECONDS", "clip length", 0.01, 30, NULL, NULL},
        {"stereo", 0, NF_OPT_FLAG, &stereo, NULL, "train on stereo clips (default: mono)", 0, 0, NULL, NULL},
        {"steps", 's', NF_OPT_I64, &c.steps, NULL, "training steps (0: until --minutes)", 0, 1e12, NULL, NULL},
        {"minutes", 0, NF_OPT_DOUBLE, &c.minutes, "M", "time budget (0: none)", 0, 1e7, NULL, NULL},
        {"batch", 'b', NF_OPT_INT, &c.batch, NULL, "examples per step", 1, 4096, NULL, NULL},
        {"lr", 0, NF_OPT_FLOAT, &c.lr, NULL, "peak learning rate", 1e-7, 1, NULL, NULL},
        {"min-lr", 0, NF_OPT_FLOAT, &c.min_lr, NULL, "floor of the cosine schedule (0: lr/10)", 0, 1, NULL, NULL},
        {"lr-schedule", 0, NF_OPT_CHOICE, &lr_shape, NULL, "learning-rate schedule after warm-up", 0, 0,
         "constant|cosine", NULL},
        {"warmup", 0, NF_OPT_INT, &c.warmup, NULL, "warm-up steps (at most steps/10)", 0, 1000000, NULL, NULL},
        {"weight-decay", 0, NF_OPT_FLOAT, &c.weight_decay, NULL, "AdamW weight decay", 0, 1, NULL, NULL},
        {"grad-clip", 0, NF_OPT_FLOAT, &c.grad_clip, NULL, "global gradient-norm clip (0: off)", 0, 1e6, NULL, NULL},
        {"objective", 0, NF_OPT_CHOICE, &objective, NULL, "what the network predicts", 0, 0, "eps|v|x0", NULL},
        {"schedule", 0, NF_OPT_CHOICE, &schedule, NULL, "noise schedule", 0, 0, "linear|cosine", NULL},
        {"diffusion-steps", 'T', NF_OPT_INT, &c.T, NULL, "steps of the noise schedule", 2, 100000, NULL, NULL},
        {"cfg-dropout", 0, NF_OPT_FLOAT, &c.cfg_dropout, "P", "label dropout for classifier-free guidance", 0, 0.99,
         NULL, NULL},
        {"ema", 0, NF_OPT_FLOAT, &c.ema_decay, NULL, "EMA decay of the weights", 0, 0.999999, NULL, NULL},
        {"threads", 'j', NF_OPT_INT, &c.threads, NULL, "threads (0: all cores)", 0, 1024, NULL, NULL},
        {"seed", 0, NF_OPT_U64, &c.seed, NULL, "random seed", 0, 0, NULL, NULL},
        {"resume", 0, NF_OPT_FLAG, &c.resume, NULL, "continue from MODEL's training state", 0, 0, NULL, NULL},
        {"checkpoint-every", 0, NF_OPT_I64, &c.checkpoint_every, NULL, "checkpoint every N steps (0: at the end)", 0,
         1e12, NULL, NULL},
        {"preview-every", 0, NF_OPT_I64, &c.preview_every, NULL, "preview renders every N steps (0: never)", 0, 1e12,
         NULL, NULL},
        {"preview-count", 0, NF_OPT_INT, &c.preview_per_class, NULL, "preview sounds per class", 1, 64, NULL, NULL},
        {"f16", 0, NF_OPT_FLAG, &c.store_f16, NULL,
         "write the model as float16 EMA weights only (to ship it; the state stays float32)", 0, 0, NULL, NULL},
        {"no-augment", 0, NF_OPT_FLAG, &no_augment, NULL, "no random gain, polarity flip or delay", 0, 0, NULL, NULL},
        {"log-every", 0, NF_OPT_I64, &log_every, NULL, "progress line every N steps when not on a terminal", 1,
         1e12, NULL, NULL},
        {"quiet", 'q', NF_OPT_FLAG, &quiet, NULL, "no progress output", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {
        "train", "DATA_DIR -o MODEL.safetensors [options]",
        "Train a diffusion model on a folder of sounds. First-level subfolders are the classes\n"
        "(none: an unconditional model). Writes MODEL, MODEL's training state, a loss log (.loss.csv)\n"
        "and curve (.loss.png), and previews into MODEL_previews/. Ctrl-C writes a checkpoint;\n"
        "--resume continues exactly where it stopped.",
        opts, 0, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    if (list) return list_presets(repr);
    if (npos != 1) {
        fprintf(stderr, "noisefloor train: missing DATA_DIR\n");
        nf_opt_print_usage(&spec, stderr);
        return 2;
    }
    if (!output) {
        fprintf(stderr, "noisefloor train: missing -o MODEL.safetensors\n");
        nf_opt_print_usage(&spec, stderr);
        return 2;
    }
    if (c.n_fft & (c.n_fft - 1)) return nf_cli_error("--n-fft: %d is not a power of two", c.n_fft), 2;
    if (c.log_mag && repr != NF_REPR_MAG) return nf_cli_error("--log-mag: only for --repr mag"), 2;
    if (c.power > 0 && repr == NF_REPR_WAVE) return nf_cli_error("--power: only for --repr stft or mag"), 2;
    if (c.power > 0 && c.log_mag) return nf_cli_error("--power: not with --log-mag (one compression or the other)"), 2;
    if (c.phase_bins && repr != NF_REPR_MAG) return nf_cli_error("--phase-bins: only for --repr mag"), 2;
    if (c.lead_frames && repr == NF_REPR_WAVE) return nf_cli_error("--lead-frames: only for --repr stft or mag"), 2;
    if (c.phase_bins > c.n_fft / 2 + 1)
        return nf_cli_error("--phase-bins: %d is more than the %d bins of --n-fft %d", c.phase_bins, c.n_fft / 2 + 1, c.n_fft), 2;
    if (c.steps <= 0 && c.minutes <= 0) return nf_cli_error("give --steps N or --minutes M"), 2;
    preset = nf_train_preset_names()[preset_i];
    c.data_dir = pos[0];
    c.output = output;
    c.preset = preset;
    c.repr = repr;
    c.objective = objective;
    c.schedule = schedule;
    c.lr_schedule = lr_shape;
    c.channels = stereo ? 2 : 1;
    c.clip_seconds = seconds;
    c.augment = !no_augment;

    progress_state ps = {isatty(2), quiet, log_every, 0};
    c.progress = on_progress;
    c.progress_user = &ps;
    c.stop = &nf_cli_stop_requested;
    nf_cli_catch_signals();

    double t0 = nf_now();
    nf_status st = nf_train(&c);
    if (ps.tty && !quiet) fputc('\n', stderr);
    if (st == NF_ERR_INTERRUPTED) {
        fprintf(stderr, "noisefloor: %s; continue with --resume\n", nf_last_error());
        return 130;
    }
    if (st) return nf_cli_fail_status(st);
    if (!quiet) printf("trained %s in %.1f s\n", output, nf_now() - t0);
    return 0;
}

const nf_cli_command nf_cmd_train = {"train", "train a model on a folder of sounds", run};
