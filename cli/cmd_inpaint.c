/* noisefloor inpaint: regenerate a region of a sound, keeping the rest (RePaint, or
 * SMC with --particles). */
#include "render.h"

#include <stdio.h>
#include <stdlib.h>

static int run(int argc, char **argv)
{
    nf_render_opts r;
    nf_render_opts_default(&r);
    const char *region = NULL;
    int jumps = 0, particles = 0;
    const nf_opt opts[] = {
        NF_RENDER_OPTS(r),
        {"count", 'n', NF_OPT_INT, &r.count, NULL, "versions to render", 1, 100000, NULL, NULL},
        {"region", 0, NF_OPT_STRING, &region, "A:B",
         "region to regenerate: fractions of the clip (0.2:0.35) or seconds (0.1s:0.25s)", 0, 0, NULL, NULL},
        {"jumps", 0, NF_OPT_INT, &jumps, NULL, "RePaint resampling per step (0: off)", 0, 100, NULL, NULL},
        {"particles", 0, NF_OPT_INT, &particles, "K",
         "K candidates per sound for a faithful fill (0: off; K times the compute)", 0, 1024, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {"inpaint", "[-m MODEL] IN.wav --region A:B -o DIR [options]",
                              "Regenerate the region A:B of a sound and keep the rest. A and B are fractions of\n"
                              "the clip (0.20:0.35) or, with an 's' suffix, seconds (0.10s:0.25s). The sound is\n"
                              "first cropped or padded to the model's length. Files are named IN_inpaint_SEED.wav.\n"
                              "\n"
                              "By default the region is filled the quick way (RePaint), which only approximates\n"
                              "what the model would make around the kept audio. --particles K (sequential Monte\n"
                              "Carlo, SMCDiff) runs K candidates for each sound and keeps, step by step, the ones\n"
                              "that agree with the kept audio; the more candidates, the closer the fill comes to\n"
                              "what the model would make given the rest. Each sound costs K times the compute of a\n"
                              "plain render (and takes K of the --batch rows of a network call). It needs --sampler\n"
                              "ddpm with many steps (--steps 0, every training step, or at least about 250: with\n"
                              "few steps the candidates are chosen wrongly) or --sampler ddim with --eta above 0,\n"
                              "and does not combine with --jumps.",
                              opts, 1, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    if (!region) return nf_cli_error("inpaint: missing --region A:B"), 2;
    if (particles > 1 && !(r.sampler == NF_SAMPLER_DDPM || (r.sampler == NF_SAMPLER_DDIM && r.eta > 0)))
        return nf_cli_error("--particles needs --sampler ddpm, or --sampler ddim with --eta above 0"), 2;
    if (particles > 1 && jumps > 0) return nf_cli_error("--particles and --jumps do not combine: use one of them"), 2;
    /* --batch counts network rows: with K particles a sound takes K of them. */
    if (particles > 1) r.batch = r.batch / particles > 0 ? r.batch / particles : 1;
    double a, b;
    int as, bs;
    if (nf_opt_parse_region(region, &a, &as, &b, &bs))
        return nf_cli_error("--region: '%s' is not A:B (fractions like 0.2:0.35, or seconds like 0.1s:0.25s)", region), 2;
    nf_model *m;
    const char *model_path;
    nf_gen_params p;
    nf_cli_out_format fmt;
    if ((rc = nf_render_setup(&r, &m, &model_path, &p, &fmt))) return rc;
    const nf_model_info *info = nf_model_get_info(m);
    int L = info->length;
    double clip_s = (double)L / info->sample_rate;
    if (!as && a > 1) return nf_cli_error("--region: %g is not a fraction in [0, 1] (add 's' for seconds)", a), 2;
    if (!bs && b > 1) return nf_cli_error("--region: %g is not a fraction in [0, 1] (add 's' for seconds)", b), 2;
    double fa = as ? a / clip_s : a, fb = bs ? b / clip_s : b;
    if (!(fa < fb) || fb > 1.0 + 1e-9)
        return nf_cli_error("--region: '%s' is empty or beyond the model's clip of %.3f s", region, clip_s), 2;
    int i0 = (int)(fa * L + 0.5), i1 = (int)(fb * L + 0.5);
    if (i1 <= i0) i1 = i0 + 1;
    if (i1 > L) i1 = L;

    float *audio = NULL, *mask = malloc(sizeof(float) * (size_t)L);
    int frames = 0;
    if (!mask) return nf_cli_error("out of memory");
    nf_status st = nf_cli_read_for_model(pos[0], m, L, &audio, &frames);
    if (st) {
        free(mask);
        return nf_cli_fail_status(st);
    }
    for (int i = 0; i < L; i++) mask[i] = i >= i0 && i < i1 ? 0.0f : 1.0f;
    p.init_audio = audio;
    p.known_mask = mask;
    p.strength = 1.0f;
    p.repaint_jumps = jumps;
    p.particles = particles;
    char base[256];
    nf_cli_basename(pos[0], base, sizeof base);
    nf_meta_kv extra[] = {{"region_start", i0, NULL}, {"region_end", i1, NULL}, {"repaint_jumps", jumps, NULL},
                          {"particles", particles, NULL}};
    rc = nf_render_edit_batch(&r, m, model_path, &p, &fmt, "inpaint", base, "inpaint", pos[0], extra, 4);
    free(audio);
    free(mask);
    return rc;
}

const nf_cli_command nf_cmd_inpaint = {"inpaint", "regenerate a region of a sound", run};
