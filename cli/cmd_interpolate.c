/* noisefloor interpolate: K sounds between two seeds or between two sounds. */
#include "render.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run(int argc, char **argv)
{
    nf_render_opts r;
    nf_render_opts_default(&r);
    uint64_t seed_a = 0, seed_b = 1;
    int K = 5, have_a = 0, have_b = 0;
    const nf_opt opts[] = {
        NF_RENDER_OPTS(r),
        {"seed-a", 0, NF_OPT_U64, &seed_a, NULL, "first seed", 0, 0, NULL, &have_a},
        {"seed-b", 0, NF_OPT_U64, &seed_b, NULL, "second seed", 0, 0, NULL, &have_b},
        {"points", 'k', NF_OPT_INT, &K, "K", "sounds from one end to the other, both included", 2, 1000, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {
        "interpolate", "[-m MODEL] (--seed-a A --seed-b B | A.wav B.wav) [-k K] -o DIR [options]",
        "Render K sounds from one end to the other: between two seeds (spherical interpolation of\n"
        "their start noise) or between two sounds (DDIM inversion of both, then interpolation).\n"
        "Files are named interp_A_B_I.wav (seeds) or A_to_B_I.wav (sounds), I = 0..K-1.",
        opts, 0, 2};
    char *pos[2];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 2, &npos, stderr);
    if (rc >= 0) return rc;
    if (npos == 1) return nf_cli_error("interpolate: give two sounds, or --seed-a and --seed-b"), 2;
    if (npos == 0 && !(have_a && have_b)) return nf_cli_error("interpolate: give --seed-a and --seed-b (or two sounds)"), 2;
    if (npos == 2 && (have_a || have_b)) return nf_cli_error("interpolate: give two sounds or two seeds, not both"), 2;
    nf_model *m;
    const char *model_path;
    nf_gen_params p;
    nf_cli_out_format fmt;
    if ((rc = nf_render_setup(&r, &m, &model_path, &p, &fmt))) return rc;
    const nf_model_info *info = nf_model_get_info(m);
    size_t per = (size_t)info->channels * (size_t)info->length;
    char stem[600];
    if (npos == 2) {
        char ba[256], bb[256];
        nf_cli_basename(pos[0], ba, sizeof ba);
        nf_cli_basename(pos[1], bb, sizeof bb);
        snprintf(stem, sizeof stem, "%s_to_%s", ba, bb);
    } else {
        snprintf(stem, sizeof stem, "interp_%" PRIu64 "_%" PRIu64, seed_a, seed_b);
    }
    char path[NF_PATH_MAX];
    int missing = 0;
    for (int i = 0; i < K; i++) {
        snprintf(path, sizeof path, "%s/%s_%d%s", r.out_dir, stem, i, nf_cli_ext(&fmt));
        if (!nf_cli_skip_existing || !nf_cli_file_exists(path)) missing++;
    }
    if (!missing) {
        printf("skipped %d existing files\n", K);
        return 0;
    }
    float *out = malloc(sizeof(float) * per * (size_t)K);
    float *a = NULL, *b = NULL;
    if (!out) return nf_cli_error("out of memory for %d sounds", K);
    nf_status st = NF_OK;
    double t0 = nf_now();
    if (npos == 2) {
        int fa = 0, fb = 0;
        st = nf_cli_read_for_model(pos[0], m, info->length, &a, &fa);
        if (!st) st = nf_cli_read_for_model(pos[1], m, info->length, &b, &fb);
        if (!st) st = nf_interpolate_sounds(m, &p, a, b, K, out);
    } else {
        st = nf_interpolate_seeds(m, &p, seed_a, seed_b, K, out);
    }
    double compute = nf_now() - t0;
    int written = 0;
    for (int i = 0; i < K && !st; i++) {
        snprintf(path, sizeof path, "%s/%s_%d%s", r.out_dir, stem, i, nf_cli_ext(&fmt));
        if (nf_cli_skip_existing && nf_cli_file_exists(path)) continue;
        nf_json_writer w;
        nf_cli_meta_begin(&w, "interpolate", model_path, m, &p, npos == 2 ? 0 : seed_a);
        if (npos == 2) {
            nf_jw_key(&w, "from");
            nf_jw_string(&w, pos[0]);
            nf_jw_key(&w, "to");
            nf_jw_string(&w, pos[1]);
        } else {
            nf_jw_key(&w, "seed_a");
            nf_jw_uint(&w, seed_a);
            nf_jw_key(&w, "seed_b");
            nf_jw_uint(&w, seed_b);
        }
        nf_jw_key(&w, "points");
        nf_jw_int(&w, K);
        nf_jw_key(&w, "index");
        nf_jw_int(&w, i);
        nf_jw_key(&w, "rate");
        nf_jw_int(&w, fmt.rate > 0 ? fmt.rate : info->sample_rate);
        nf_jw_end_object(&w);
        st = nf_jw_finish(&w);
        if (!st) st = nf_cli_write_sound(path, out + per * (size_t)i, info->channels, info->length, info->sample_rate, &fmt, w.data);
        nf_jw_free(&w);
        if (!st) written++;
    }
    free(out);
    free(a);
    free(b);
    if (st) return nf_cli_fail_status(st);
    nf_cli_report_rtf(written, (double)written * info->length / info->sample_rate, compute);
    return 0;
}

const nf_cli_command nf_cmd_interpolate = {"interpolate", "sounds between two seeds or two sounds", run};
