/* Set-up shared by the rendering commands (see render.h). */
#include "render.h"
#include "nf_classifier.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void nf_render_opts_default(nf_render_opts *r)
{
    memset(r, 0, sizeof *r);
    nf_gen_params p;
    nf_gen_params_default(&p);
    r->count = 1;
    r->steps = p.steps;
    r->sampler = (int)p.sampler;
    r->eta = p.eta;
    r->cfg = p.cfg_scale;
    r->seed = 0;
    r->bits_i = 2;
    r->batch = 16;
    r->classifier_scale = p.classifier_scale;
    r->fade_in_ms = p.fade_in_ms;
}

/* The classifier of --classifier, loaded once per model and file (a job file renders
 * many lines with the same one) and freed at exit. */
static struct {
    char *path;
    const nf_model *model;
    nf_classifier *c;
} clf_cache;

static void clf_release(void)
{
    nf_classifier_free(clf_cache.c);
    free(clf_cache.path);
    memset(&clf_cache, 0, sizeof clf_cache);
}

static nf_status clf_get(const char *path, const nf_model *m, int batch, nf_classifier **out)
{
    static int registered;
    if (clf_cache.c && clf_cache.model == m && !strcmp(clf_cache.path, path)) {
        *out = clf_cache.c;
        return NF_OK;
    }
    clf_release();
    if (!registered) registered = !atexit(clf_release);
    /* Guidance runs in chunks of the classifier's batch, so a small one is enough. */
    nf_status st = nf_classifier_load_for_model(path, m, batch < 16 ? batch : 16, &clf_cache.c);
    if (st) return st;
    if (!(clf_cache.path = strdup(path))) {
        clf_release();
        return nf_fail(NF_ERR_NOMEM, "out of memory");
    }
    clf_cache.model = m;
    *out = clf_cache.c;
    return NF_OK;
}

const char *nf_render_class_label(const nf_model *m, int class_id)
{
    const nf_model_info *info = nf_model_get_info(m);
    if (info->num_classes == 0) return "sound";
    if (class_id < 0 || class_id >= info->num_classes) return "any";
    return info->class_names[class_id];
}

int nf_render_setup(nf_render_opts *r, nf_model **m, const char **model_path, nf_gen_params *p,
                    nf_cli_out_format *fmt)
{
    if (!r->out_dir) return nf_cli_error("missing -o DIR (the output folder)"), 2;
    nf_status st = nf_cli_model(r->model, m, model_path);
    if (st) return nf_cli_fail_status(st);
    const nf_model_info *info = nf_model_get_info(*m);
    nf_gen_params_default(p);
    p->sampler = (nf_sampler_kind)r->sampler;
    p->steps = r->steps;
    p->eta = r->eta;
    p->cfg_scale = r->cfg;
    p->seed = r->seed;
    p->threads = r->threads;
    p->fade_in_ms = r->fade_in_ms;
    p->class_id = -1;
    if (r->class_name && strcasecmp(r->class_name, "any") != 0) {
        if (info->num_classes == 0)
            return nf_cli_error("%s: the model has no classes (--class %s)", *model_path, r->class_name);
        p->class_id = nf_model_class_index(*m, r->class_name);
        if (p->class_id < 0) {
            char names[1024] = "";
            size_t n = 0;
            for (int i = 0; i < info->num_classes && n < sizeof names; i++)
                n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", info->class_names[i]);
            return nf_cli_error("%s: no class '%s' (classes: %s)", *model_path, r->class_name, names);
        }
    }
    if (r->classifier) {
        if (p->class_id < 0)
            return nf_cli_error("--classifier %s: give the class to guide towards with --class NAME", r->classifier);
        if ((st = clf_get(r->classifier, *m, r->batch, &p->classifier))) return nf_cli_fail_status(st);
        p->classifier_scale = r->classifier_scale;
    }
    memset(fmt, 0, sizeof *fmt);
    fmt->rate = r->rate;
    fmt->bits = r->bits_i == 0 ? 16 : r->bits_i == 1 ? 24 : 32;
    fmt->flac = r->format_i == 1;
    if (fmt->flac && fmt->bits == 32) fmt->bits = 24;
    if ((st = nf_cli_mkdirs(r->out_dir))) return nf_cli_fail_status(st);
    return 0;
}

int nf_render_edit_batch(nf_render_opts *r, nf_model *m, const char *model_path, nf_gen_params *p,
                         const nf_cli_out_format *fmt, const char *command, const char *base, const char *tag,
                         const char *input, const nf_meta_kv *extra, int n_extra)
{
    const nf_model_info *info = nf_model_get_info(m);
    int bmax = r->batch < r->count ? r->batch : r->count;
    size_t per = (size_t)info->channels * (size_t)info->length;
    float *out = malloc(sizeof(float) * per * (size_t)bmax);
    if (!out) return nf_cli_error("out of memory for %d sounds", bmax);
    double compute = 0;
    int written = 0, skipped = 0, status = 0;
    char path[NF_PATH_MAX];
    for (int k0 = 0; k0 < r->count && !status; k0 += bmax) {
        int nb = r->count - k0 < bmax ? r->count - k0 : bmax;
        int missing = 0;
        for (int k = 0; k < nb; k++) {
            snprintf(path, sizeof path, "%s/%s_%s_%" PRIu64 "%s", r->out_dir, base, tag, r->seed + (uint64_t)(k0 + k),
                     nf_cli_ext(fmt));
            if (!nf_cli_skip_existing || !nf_cli_file_exists(path)) missing++;
        }
        if (!missing) {
            skipped += nb;
            continue;
        }
        p->seed = r->seed + (uint64_t)k0;
        double t0 = nf_now();
        nf_status st = nf_generate(m, p, nb, out);
        compute += nf_now() - t0;
        if (st) {
            status = nf_cli_fail_status(st);
            break;
        }
        for (int k = 0; k < nb && !status; k++) {
            uint64_t seed = r->seed + (uint64_t)(k0 + k);
            snprintf(path, sizeof path, "%s/%s_%s_%" PRIu64 "%s", r->out_dir, base, tag, seed, nf_cli_ext(fmt));
            if (nf_cli_skip_existing && nf_cli_file_exists(path)) {
                skipped++;
                continue;
            }
            nf_json_writer w;
            nf_cli_meta_begin(&w, command, model_path, m, p, seed);
            nf_jw_key(&w, "input");
            nf_jw_string(&w, input);
            nf_jw_key(&w, "rate");
            nf_jw_int(&w, fmt->rate > 0 ? fmt->rate : info->sample_rate);
            for (int e = 0; e < n_extra; e++) {
                nf_jw_key(&w, extra[e].key);
                if (extra[e].str)
                    nf_jw_string(&w, extra[e].str);
                else
                    nf_jw_double(&w, extra[e].num);
            }
            nf_jw_end_object(&w);
            st = nf_jw_finish(&w);
            if (!st)
                st = nf_cli_write_sound(path, out + per * (size_t)k, info->channels, info->length, info->sample_rate, fmt,
                                        w.data);
            nf_jw_free(&w);
            if (st)
                status = nf_cli_fail_status(st);
            else
                written++;
        }
    }
    free(out);
    if (status) return status;
    if (skipped) printf("skipped %d existing file%s\n", skipped, skipped == 1 ? "" : "s");
    nf_cli_report_rtf(written, (double)written * info->length / info->sample_rate, compute);
    return 0;
}
