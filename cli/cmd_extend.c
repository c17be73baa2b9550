/* noisefloor extend: continue a sound past its end (outpainting, window by window). */
#include "render.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run(int argc, char **argv)
{
    nf_render_opts r;
    nf_render_opts_default(&r);
    double seconds = 1.0;
    int particles = 0;
    const nf_opt opts[] = {
        NF_RENDER_OPTS(r),
        {"count", 'n', NF_OPT_INT, &r.count, NULL, "continuations to render", 1, 10000, NULL, NULL},
        {"seconds", 's', NF_OPT_DOUBLE, &seconds, NULL, "seconds to add after the end", 0.001, 600, NULL, NULL},
        {"particles", 0, NF_OPT_INT, &particles, "K",
         "K candidates per window for a faithful continuation (0: off; K times the compute)", 0, 1024, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {"extend", "[-m MODEL] IN.wav --seconds S -o DIR [options]",
                              "Continue a sound for S seconds. The model works on windows of its own length: each\n"
                              "window keeps the last half-window of what exists and generates the rest, so the\n"
                              "output is IN followed by S seconds of continuation (IN_extend_SEED.wav).\n"
                              "\n"
                              "By default each window is filled the quick way (RePaint), which only approximately\n"
                              "follows on from the kept half. --particles K (sequential Monte Carlo, SMCDiff) runs\n"
                              "K candidates per window and keeps, step by step, the ones that agree with the kept\n"
                              "audio; the more candidates, the closer the continuation comes to what the model\n"
                              "would make given what came before. It costs K times the compute and memory, and\n"
                              "needs --sampler ddpm with many steps (--steps 0, every training step, or at least\n"
                              "about 250: with few steps the candidates are chosen wrongly) or --sampler ddim with\n"
                              "--eta above 0.",
                              opts, 1, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    if (particles > 1 && !(r.sampler == NF_SAMPLER_DDPM || (r.sampler == NF_SAMPLER_DDIM && r.eta > 0)))
        return nf_cli_error("--particles needs --sampler ddpm, or --sampler ddim with --eta above 0"), 2;
    nf_model *m;
    const char *model_path;
    nf_gen_params p;
    nf_cli_out_format fmt;
    if ((rc = nf_render_setup(&r, &m, &model_path, &p, &fmt))) return rc;
    const nf_model_info *info = nf_model_get_info(m);
    int L = info->length, C = info->channels;
    float *in = NULL;
    int H0 = 0;
    nf_status st = nf_cli_read_for_model(pos[0], m, 0, &in, &H0);
    if (st) return nf_cli_fail_status(st);
    long long add = (long long)(seconds * info->sample_rate + 0.5);
    long long total = H0 + add;
    if (total > 3600LL * info->sample_rate) {
        free(in);
        return nf_cli_error("extend: %.1f s is too long", (double)total / info->sample_rate);
    }
    float *acc = malloc(sizeof(float) * (size_t)C * (size_t)total);
    float *win = malloc(sizeof(float) * (size_t)C * (size_t)L);
    float *out = malloc(sizeof(float) * (size_t)C * (size_t)L);
    float *mask = malloc(sizeof(float) * (size_t)L);
    if (!acc || !win || !out || !mask) {
        free(in), free(acc), free(win), free(out), free(mask);
        return nf_cli_error("out of memory");
    }
    char base[256], path[NF_PATH_MAX];
    nf_cli_basename(pos[0], base, sizeof base);
    double compute = 0;
    int written = 0, skipped = 0;
    for (int k = 0; k < r.count && !rc; k++) {
        uint64_t seed = r.seed + (uint64_t)k;
        snprintf(path, sizeof path, "%s/%s_extend_%" PRIu64 "%s", r.out_dir, base, seed, nf_cli_ext(&fmt));
        if (nf_cli_skip_existing && nf_cli_file_exists(path)) {
            skipped++;
            continue;
        }
        for (int c = 0; c < C; c++) memcpy(acc + (size_t)c * total, in + (size_t)c * H0, sizeof(float) * (size_t)H0);
        long long have = H0;
        for (int w = 0; have < total; w++) {
            /* Keep the last half window (or all there is) and generate the rest of it. */
            int ctx = have < L / 2 ? (int)have : L / 2;
            int gen = L - ctx;
            if (gen > total - have) gen = (int)(total - have);
            memset(win, 0, sizeof(float) * (size_t)C * (size_t)L);
            for (int c = 0; c < C; c++)
                memcpy(win + (size_t)c * L, acc + (size_t)c * total + have - ctx, sizeof(float) * (size_t)ctx);
            for (int i = 0; i < L; i++) mask[i] = i < ctx ? 1.0f : 0.0f;
            p.init_audio = win;
            p.known_mask = mask;
            p.strength = 1.0f;
            p.particles = particles;
            /* Each window draws its own noise, still a pure function of the seed. */
            p.seed = seed + (uint64_t)w * 0x9E3779B97F4A7C15ull;
            double t0 = nf_now();
            st = nf_generate(m, &p, 1, out);
            compute += nf_now() - t0;
            if (st) {
                rc = nf_cli_fail_status(st);
                break;
            }
            for (int c = 0; c < C; c++)
                memcpy(acc + (size_t)c * total + have, out + (size_t)c * L + ctx, sizeof(float) * (size_t)gen);
            have += gen;
        }
        if (rc) break;
        p.seed = seed;
        nf_json_writer jw;
        nf_cli_meta_begin(&jw, "extend", model_path, m, &p, seed);
        nf_jw_key(&jw, "input");
        nf_jw_string(&jw, pos[0]);
        nf_jw_key(&jw, "seconds");
        nf_jw_double(&jw, seconds);
        nf_jw_key(&jw, "particles");
        nf_jw_int(&jw, particles);
        nf_jw_key(&jw, "rate");
        nf_jw_int(&jw, fmt.rate > 0 ? fmt.rate : info->sample_rate);
        nf_jw_end_object(&jw);
        st = nf_jw_finish(&jw);
        if (!st) st = nf_cli_write_sound(path, acc, C, (int)total, info->sample_rate, &fmt, jw.data);
        nf_jw_free(&jw);
        if (st)
            rc = nf_cli_fail_status(st);
        else
            written++;
    }
    free(in), free(acc), free(win), free(out), free(mask);
    if (rc) return rc;
    if (skipped) printf("skipped %d existing file%s\n", skipped, skipped == 1 ? "" : "s");
    nf_cli_report_rtf(written, (double)written * add / info->sample_rate, compute);
    return 0;
}

const nf_cli_command nf_cmd_extend = {"extend", "continue a sound past its end", run};
