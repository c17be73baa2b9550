/* Options and set-up shared by the rendering commands (generate, vary, inpaint, extend,
 * interpolate): the model, the sampler settings, the output folder and format. */
#ifndef NF_CLI_RENDER_H
#define NF_CLI_RENDER_H

#include "cli.h"
#include "options.h"

#include <stdint.h>

typedef struct {
    const char *model;      /* -m (NULL: the default model) */
    const char *out_dir;    /* -o */
    const char *class_name; /* --class (NULL / "any": unconditional) */
    uint64_t seed;
    int count;              /* -n */
    int steps;              /* 0: the sampler's default */
    int sampler;            /* nf_sampler_kind */
    float eta, cfg;
    int rate;               /* output rate (0: the model's) */
    int bits_i;             /* 0: 16, 1: 24, 2: 32 float */
    int format_i;           /* 0: wav, 1: flac */
    int batch;              /* sounds per network call */
    int threads;
    int cfg_seen;
    const char *classifier;  /* --classifier FILE (NULL: no classifier guidance) */
    float classifier_scale;  /* --classifier-scale */
    float fade_in_ms;        /* --fade-in */
} nf_render_opts;

void nf_render_opts_default(nf_render_opts *r);

/* The option-table entries of the shared options (16 entries). */
#define NF_RENDER_OPTS(r)                                                                                              \
    {"model", 'm', NF_OPT_STRING, &(r).model, "MODEL", "model file (default: the bundled model)", 0, 0, NULL, NULL},   \
        {"output", 'o', NF_OPT_STRING, &(r).out_dir, "DIR", "output folder (created if needed)", 0, 0, NULL, NULL},     \
        {"class", 'c', NF_OPT_STRING, &(r).class_name, "NAME", "class to render (any: unconditional)", 0, 0, NULL,     \
         NULL},                                                                                                        \
        {"seed", 0, NF_OPT_U64, &(r).seed, NULL, "seed of the first sound (sound k uses seed + k)", 0, 0, NULL, NULL}, \
        {"steps", 0, NF_OPT_INT, &(r).steps, NULL, "sampler steps (0: the sampler's default)", 0, 10000, NULL, NULL},  \
        {"sampler", 0, NF_OPT_CHOICE, &(r).sampler, NULL, "sampler", 0, 0, "dpmpp|ddim|ddpm|langevin|euler_a", NULL},  \
        {"eta", 0, NF_OPT_FLOAT, &(r).eta, NULL, "DDIM stochasticity", 0, 1, NULL, NULL},                              \
        {"cfg", 0, NF_OPT_FLOAT, &(r).cfg, "S", "classifier-free guidance scale (1: none)", 0, 100, NULL, &(r).cfg_seen}, \
        {"rate", 0, NF_OPT_INT, &(r).rate, "HZ", "output sample rate (0: the model's)", 0, 384000, NULL, NULL},        \
        {"bits", 0, NF_OPT_CHOICE, &(r).bits_i, NULL, "sample format (32: float)", 0, 0, "16|24|32", NULL},            \
        {"format", 0, NF_OPT_CHOICE, &(r).format_i, NULL, "file format", 0, 0, "wav|flac", NULL},                      \
        {"batch", 0, NF_OPT_INT, &(r).batch, NULL, "sounds per network call", 1, 1024, NULL, NULL},                    \
        {"threads", 'j', NF_OPT_INT, &(r).threads, NULL, "threads (0: all cores)", 0, 1024, NULL, NULL},             \
        {"classifier", 0, NF_OPT_STRING, &(r).classifier, "FILE",                                                      \
         "classifier guidance towards --class with this classifier (train-classifier)", 0, 0, NULL, NULL},             \
        {"classifier-scale", 0, NF_OPT_FLOAT, &(r).classifier_scale, "S", "classifier guidance scale", 0, 100, NULL,  \
         NULL},                                                                                                        \
        {"fade-in", 0, NF_OPT_FLOAT, &(r).fade_in_ms, "MS",                                                            \
         "declick: raised-cosine fade-in of each rendered start (0: off)", 0, 1000, NULL, NULL}

/* Load the model (cached), resolve the class and fill the generation parameters and the
 * output format; creates the output folder. Returns an exit status (0 = go on). */
int nf_render_setup(nf_render_opts *r, nf_model **m, const char **model_path, nf_gen_params *p,
                    nf_cli_out_format *fmt);

/* "kick" / "any" / "sound" for file names. */
const char *nf_render_class_label(const nf_model *m, int class_id);


/* One extra setting for the metadata: a number (str NULL) or a string. */
typedef struct {
    const char *key;
    double num;
    const char *str;
} nf_meta_kv;

/* The edit commands' common tail: render r->count sounds of the model's length with p
 * (init_audio / strength / known_mask already set), named <out_dir>/<base>_<tag>_<seed>,
 * with the n_extra settings `extra` added to the metadata. */
int nf_render_edit_batch(nf_render_opts *r, nf_model *m, const char *model_path, nf_gen_params *p,
                         const nf_cli_out_format *fmt, const char *command, const char *base, const char *tag,
                         const char *input, const nf_meta_kv *extra, int n_extra);
#endif
