/* noisefloor vary: variations of a sound (SDEdit: noise it part way, denoise back). */
#include "render.h"

#include <stdio.h>
#include <stdlib.h>

static int run(int argc, char **argv)
{
    nf_render_opts r;
    nf_render_opts_default(&r);
    float strength = 0.4f;
    const nf_opt opts[] = {
        NF_RENDER_OPTS(r),
        {"count", 'n', NF_OPT_INT, &r.count, NULL, "variations to render", 1, 100000, NULL, NULL},
        {"strength", 's', NF_OPT_FLOAT, &strength, NULL, "0: a copy, 1: a new sound", 0, 1, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {"vary", "[-m MODEL] IN.wav -o DIR [--strength 0.4] [-n N] [options]",
                              "Render variations of a sound: it is noised to `strength` of the way and denoised\n"
                              "back (SDEdit). Files are named IN_vary_SEED.wav, at the model's length.",
                              opts, 1, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    nf_model *m;
    const char *model_path;
    nf_gen_params p;
    nf_cli_out_format fmt;
    if ((rc = nf_render_setup(&r, &m, &model_path, &p, &fmt))) return rc;
    const nf_model_info *info = nf_model_get_info(m);
    float *audio = NULL;
    int frames = 0;
    nf_status st = nf_cli_read_for_model(pos[0], m, info->length, &audio, &frames);
    if (st) return nf_cli_fail_status(st);
    p.init_audio = audio;
    p.strength = strength;
    char base[256];
    nf_cli_basename(pos[0], base, sizeof base);
    nf_meta_kv extra[] = {{"strength", strength, NULL}};
    rc = nf_render_edit_batch(&r, m, model_path, &p, &fmt, "vary", base, "vary", pos[0], extra, 1);
    free(audio);
    return rc;
}

const nf_cli_command nf_cmd_vary = {"vary", "render variations of a sound", run};
