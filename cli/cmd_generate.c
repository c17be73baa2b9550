/* noisefloor generate: new sounds from a model, many per network call. */
#include "render.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int run(int argc, char **argv)
{
    nf_render_opts r;
    nf_render_opts_default(&r);
    double length = 0;
    int all = 0;
    const nf_opt opts[] = {
        NF_RENDER_OPTS(r),
        {"count", 'n', NF_OPT_INT, &r.count, NULL, "sounds to render (per class with --class all)", 1, 100000, NULL, NULL},
        {"length", 'l', NF_OPT_DOUBLE, &length, "SECONDS", "output length (0: the model's; cropped or padded)", 0, 600,
         NULL, NULL},
        {"all-classes", 'a', NF_OPT_FLAG, &all, NULL, "render -n sounds of every class (same as --class all)", 0, 0, NULL,
         NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {"generate", "[-m MODEL] -o DIR [-n N] [--class NAME|any|all] [--seed S] [options]",
                              "Render new sounds. Files are named CLASS_SEED.wav (any_SEED for unconditional\n"
                              "sampling of a model with classes, sound_SEED for a model without) and carry the\n"
                              "model hash, seed and every setting in their comment metadata.",
                              opts, 0, 0};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    if (r.class_name && !strcasecmp(r.class_name, "all")) {
        all = 1;
        r.class_name = NULL;
    }
    nf_model *m;
    const char *model_path;
    nf_gen_params p;
    nf_cli_out_format fmt;
    if ((rc = nf_render_setup(&r, &m, &model_path, &p, &fmt))) return rc;
    const nf_model_info *info = nf_model_get_info(m);
    int out_rate = fmt.rate > 0 ? fmt.rate : info->sample_rate;
    if (length > 0) fmt.length = (int)(length * out_rate + 0.5);
    if (all && info->num_classes == 0) return nf_cli_error("%s: --class all: the model has no classes", model_path);

    int groups = all ? info->num_classes : 1;
    int bmax = r.batch < r.count ? r.batch : r.count;
    size_t per = (size_t)info->channels * (size_t)info->length;
    float *out = malloc(sizeof(float) * per * (size_t)bmax);
    if (!out) return nf_cli_error("out of memory for %d sounds", bmax);
    double compute = 0;
    int written = 0, skipped = 0;
    int status = 0;
    for (int g = 0; g < groups && !status; g++) {
        if (all) p.class_id = g;
        const char *label = nf_render_class_label(m, p.class_id);
        for (int k0 = 0; k0 < r.count && !status; k0 += bmax) {
            int nb = r.count - k0 < bmax ? r.count - k0 : bmax;
            char path[NF_PATH_MAX];
            int missing = 0;
            for (int k = 0; k < nb; k++) {
                snprintf(path, sizeof path, "%s/%s_%" PRIu64 "%s", r.out_dir, label, r.seed + (uint64_t)(k0 + k),
                         nf_cli_ext(&fmt));
                if (!nf_cli_skip_existing || !nf_cli_file_exists(path)) missing++;
            }
            if (!missing) {
                skipped += nb;
                continue;
            }
            /* Example k of a call with seed S is the sound of seed S + k, whatever the batch. */
            p.seed = r.seed + (uint64_t)k0;
            double t0 = nf_now();
            nf_status st = nf_generate(m, &p, nb, out);
            compute += nf_now() - t0;
            if (st) {
                status = nf_cli_fail_status(st);
                break;
            }
            for (int k = 0; k < nb; k++) {
                uint64_t seed = r.seed + (uint64_t)(k0 + k);
                snprintf(path, sizeof path, "%s/%s_%" PRIu64 "%s", r.out_dir, label, seed, nf_cli_ext(&fmt));
                if (nf_cli_skip_existing && nf_cli_file_exists(path)) {
                    skipped++;
                    continue;
                }
                nf_json_writer w;
                nf_cli_meta_begin(&w, "generate", model_path, m, &p, seed);
                nf_jw_key(&w, "rate");
                nf_jw_int(&w, out_rate);
                nf_jw_key(&w, "length");
                nf_jw_int(&w, fmt.length > 0 ? fmt.length : (int)((long long)info->length * out_rate / info->sample_rate));
                nf_jw_end_object(&w);
                st = nf_jw_finish(&w);
                if (!st)
                    st = nf_cli_write_sound(path, out + per * (size_t)k, info->channels, info->length, info->sample_rate,
                                            &fmt, w.data);
                nf_jw_free(&w);
                if (st) {
                    status = nf_cli_fail_status(st);
                    break;
                }
                written++;
            }
        }
    }
    free(out);
    if (status) return status;
    if (skipped) printf("skipped %d existing file%s\n", skipped, skipped == 1 ? "" : "s");
    nf_cli_report_rtf(written, (double)written * info->length / info->sample_rate, compute);
    return 0;
}

const nf_cli_command nf_cmd_generate = {"generate", "render new sounds from a model", run};
