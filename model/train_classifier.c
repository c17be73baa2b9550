/* Training a noise-aware classifier for a given diffusion model on a data folder, and
 * loading one back for that model (nf_classifier.h). The network, its loss and its
 * training loop are in classifier.c; this file only prepares the data exactly as the
 * model sees it (same rate, channels, length, representation and normalisation scale,
 * same noise schedule) and checks that a classifier file belongs to a model. */
#include "nf_classifier.h"

#include "nf_dataset.h"
#include "nf_diffusion.h"
#include "nf_repr.h"
#include "nf_rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void nf_classifier_fit_config_default(nf_classifier_fit_config *c)
{
    memset(c, 0, sizeof *c);
    nf_classifier_config_default(&c->net);
    nf_classifier_train_config_default(&c->train);
}

/* The model's representation, configured as engine.c configures it from the description
 * (so that the classifier sees x_t in the very units the sampler gives it). */
static nf_status model_repr(const nf_model_desc *d, nf_repr **out)
{
    nf_repr_config rc;
    nf_status s = nf_model_desc_repr_config(d, &rc);
    return s ? s : nf_repr_create(&rc, out);
}

static nf_schedule_kind model_schedule(const nf_model_desc *d)
{
    return !strcmp(d->schedule, "linear") ? NF_SCHEDULE_LINEAR : NF_SCHEDULE_COSINE;
}

nf_status nf_classifier_accuracy(nf_classifier *c, const nf_schedule *s, const float *x0, const int *labels,
                                 int N, int L, int t, uint64_t seed, double *accuracy)
{
    const nf_classifier_config *cc = nf_classifier_get_config(c);
    if (N < 1 || t < 0 || t >= s->T) return nf_fail(NF_ERR_ARG, "classifier accuracy: %d clips, step %d", N, t);
    /* Chunks of up to 64 clips; the network may have been made for fewer (its max_batch
     * is not exposed), so a chunk it refuses is run in halves, and that size is kept. */
    int B = 64, fit = B;
    size_t n = (size_t)cc->in_ch * L;
    float *xt = NULL, *eps = NULL, *lg = NULL, *tf = NULL;
    int *tt = NULL;
    nf_status st = NF_OK;
    int correct = 0;
    xt = malloc(sizeof(float) * n * (size_t)B);
    eps = malloc(sizeof(float) * n * (size_t)B);
    lg = malloc(sizeof(float) * (size_t)B * (size_t)cc->num_classes);
    tf = malloc(sizeof(float) * (size_t)B);
    tt = malloc(sizeof(int) * (size_t)B);
    if (!xt || !eps || !lg || !tf || !tt) {
        st = nf_fail(NF_ERR_NOMEM, "classifier accuracy: out of memory");
        goto done;
    }
    uint64_t stream = nf_stream_id("classifier-eval", (uint64_t)t, 0);
    for (int k0 = 0; k0 < N; k0 += B) {
        int nb = N - k0 < B ? N - k0 : B;
        /* Noise of clip k from (seed, t, k): the same draws whatever the chunking. */
        for (int b = 0; b < nb; b++) {
            nf_randn(eps + b * n, n, seed, stream, (uint64_t)(k0 + b) * n);
            tt[b] = t;
            tf[b] = (float)s->timesteps[t];
        }
        nf_q_sample(s, tt, x0 + (size_t)k0 * n, eps, nb, n, xt); /* Ho et al. eq. 4 */
        /* The network may have been made for fewer examples than B: run sub-chunks. */
        for (int j = 0; j < nb;) {
            int m = nb - j < fit ? nb - j : fit;
            nf_status fs;
            while ((fs = nf_classifier_forward(c, xt + j * n, tf + j, m, L, lg + (size_t)j * cc->num_classes)) &&
                   m > 1)
                fit = m /= 2;
            if (fs) {
                st = fs;
                goto done;
            }
            j += m;
        }
        for (int b = 0; b < nb; b++) {
            const float *l = lg + (size_t)b * cc->num_classes;
            int best = 0;
            for (int q = 1; q < cc->num_classes; q++)
                if (l[q] > l[best]) best = q;
            correct += best == labels[k0 + b];
        }
    }
    *accuracy = (double)correct / N;
done:
    free(xt);
    free(eps);
    free(lg);
    free(tf);
    free(tt);
    return st;
}

nf_status nf_classifier_train_dataset(const char *data_dir, nf_model *model, const char *output,
                                      const nf_classifier_fit_config *c, nf_classifier_fit_result *result)
{
    if (!data_dir || !model || !output || !c) return nf_fail(NF_ERR_ARG, "nf_classifier_train_dataset: NULL argument");
    const nf_model_desc *d = nf_model_desc_get(model);
    const nf_model_info *info = nf_model_get_info(model);
    if (d->num_classes < 2)
        return nf_fail(NF_ERR_ARG, "the model has %s; classifier guidance here needs a model with classes",
                       d->num_classes ? "only one class" : "no classes");
    nf_set_threads(c->threads);

    nf_dataset ds;
    memset(&ds, 0, sizeof ds);
    nf_repr *repr = NULL;
    nf_schedule sched;
    memset(&sched, 0, sizeof sched);
    nf_classifier *net = NULL;
    float *x0 = NULL;
    int *labels = NULL, *map = NULL, *have = NULL;
    nf_status st;

    /* The clips as the model was trained on them (model/train.c does the same). */
    nf_dataset_opts dopt;
    nf_dataset_opts_default(&dopt);
    dopt.channels = d->channels;
    dopt.rate = d->sample_rate;
    dopt.length = d->length;
    if ((st = nf_dataset_open(data_dir, &dopt, &ds))) goto done;
    if (ds.num_classes == 0) {
        st = nf_fail(NF_ERR_ARG, "%s: no class folders (the classifier learns the model's classes from them)", data_dir);
        goto done;
    }

    /* Folder classes -> model classes, by name. */
    map = malloc(sizeof(int) * (size_t)ds.num_classes);
    have = calloc((size_t)d->num_classes, sizeof(int));
    if (!map || !have) { st = nf_fail(NF_ERR_NOMEM, "out of memory"); goto done; }
    int matched = 0;
    for (int i = 0; i < ds.num_classes; i++) {
        map[i] = nf_model_class_index(model, ds.class_names[i]);
        if (map[i] < 0)
            nf_warn("%s: class '%s' is not one of the model's classes: skipped", data_dir, ds.class_names[i]);
        else
            matched++;
    }
    if (!matched) {
        char names[512] = "";
        size_t w = 0;
        for (int i = 0; i < d->num_classes && w < sizeof names; i++)
            w += (size_t)snprintf(names + w, sizeof names - w, "%s%s", i ? ", " : "", d->class_names[i]);
        st = nf_fail(NF_ERR_ARG, "%s: none of the folder's classes is a class of the model (%s)", data_dir, names);
        goto done;
    }

    if ((st = model_repr(d, &repr))) goto done;
    int C = d->channels, L = d->length, Cm = nf_repr_channels(repr), Lm = nf_repr_length(repr, L);
    size_t per_audio = (size_t)C * L, per_x = (size_t)Cm * Lm;
    int N = 0;
    for (int k = 0; k < ds.n; k++) N += ds.labels[k] >= 0 && map[ds.labels[k]] >= 0;
    if (N < 1) {
        st = nf_fail(NF_ERR_EMPTY, "%s: no usable clips in the model's classes", data_dir);
        goto done;
    }
    x0 = malloc(sizeof(float) * per_x * (size_t)N);
    labels = malloc(sizeof(int) * (size_t)N);
    if (!x0 || !labels) { st = nf_fail(NF_ERR_NOMEM, "%s: out of memory for %d clips", data_dir, N); goto done; }
    int j = 0;
    for (int k = 0; k < ds.n; k++) {
        if (ds.labels[k] < 0 || map[ds.labels[k]] < 0) continue;
        if ((st = nf_repr_encode(repr, ds.audio + (size_t)k * per_audio, 1, L, x0 + (size_t)j * per_x))) goto done;
        labels[j] = map[ds.labels[k]];
        have[labels[j]]++;
        j++;
    }
    int with_data = 0;
    for (int i = 0; i < d->num_classes; i++) {
        if (have[i]) with_data++;
        else nf_warn("%s: no clips of the model's class '%s': the classifier will not learn it", data_dir,
                     d->class_names[i]);
    }

    if ((st = nf_schedule_init(&sched, model_schedule(d), d->T))) goto done;
    nf_classifier_config cc = c->net;
    cc.in_ch = Cm;
    cc.num_classes = d->num_classes;
    if ((st = nf_classifier_config_check(&cc))) goto done;
    if ((st = nf_classifier_create(&cc, c->train.batch, Lm, &net))) goto done;
    nf_classifier_init_params(net, c->train.seed);
    double final_loss = 0;
    if ((st = nf_classifier_train(net, &sched, x0, labels, N, Lm, &c->train, c->progress, c->progress_user,
                                  &final_loss)))
        goto done;

    /* Accuracy at moderate noise: T/20, T/8, T/4, 3T/8 (the cosine schedule's SNR there is
     * about 160, 15, 4.8 and 1.6, where guidance decides the most). */
    static const double fr[4] = {0.05, 0.125, 0.25, 0.375};
    double acc = 0;
    for (int q = 0; q < 4; q++) {
        double a;
        if ((st = nf_classifier_accuracy(net, &sched, x0, labels, N, Lm, (int)(fr[q] * d->T), c->train.seed ^ 0x5eedu,
                                         &a)))
            goto done;
        acc += a / 4;
    }

    char summary[512];
    snprintf(summary, sizeof summary,
             "{\"data\": \"%.200s\", \"clips\": %d, \"steps\": %lld, \"batch\": %d, \"lr\": %g, \"seed\": %llu, "
             "\"final_loss\": %.6g, \"accuracy_moderate_t\": %.4f}",
             data_dir, N, c->train.steps, c->train.batch, (double)c->train.lr, (unsigned long long)c->train.seed,
             final_loss, acc);
    /* The path goes into JSON: a quote or backslash in it would break the text. */
    for (char *p = summary + 10; *p && p < summary + 10 + strlen(data_dir) && p < summary + 210; p++)
        if (*p == '"' || *p == '\\') *p = '_';
    if ((st = nf_classifier_save(output, net, d, info->hash, summary))) goto done;
    if (result) {
        result->clips = N;
        result->classes_with_data = with_data;
        result->final_loss = final_loss;
        result->accuracy = acc;
    }
done:
    nf_classifier_free(net);
    nf_schedule_free(&sched);
    nf_repr_free(repr);
    nf_dataset_free(&ds);
    free(x0);
    free(labels);
    free(map);
    free(have);
    return st;
}

/* The first difference between the description a classifier was trained for and the
 * model's, written into why; 0 if they agree on everything the classifier depends on. */
static int desc_differs(const nf_model_desc *a, const nf_model_desc *b, char *why, size_t size)
{
    /* The audio format first: it is the most telling difference. */
    if (a->sample_rate != b->sample_rate || a->channels != b->channels || a->length != b->length)
        return snprintf(why, size, "%d Hz, %d channels, %d samples; the model's %d Hz, %d, %d", a->sample_rate,
                        a->channels, a->length, b->sample_rate, b->channels, b->length), 1;
    if (strcmp(a->representation, b->representation))
        return snprintf(why, size, "representation %s, the model's %s", a->representation, b->representation), 1;
    if (strcmp(a->representation, "wave") &&
        (a->n_fft != b->n_fft || a->hop != b->hop || fabsf(a->compress_power - b->compress_power) > 1e-6f ||
         fabsf(a->log_floor - b->log_floor) > 1e-6f * b->log_floor || a->phase_bins != b->phase_bins || a->lead_frames != b->lead_frames))
        return snprintf(why, size, "STFT %d/%d (lead %d), the model's %d/%d (lead %d)", a->n_fft, a->hop,
                        a->lead_frames, b->n_fft, b->hop, b->lead_frames), 1;
    if (fabsf(a->norm_scale - b->norm_scale) > 1e-5f * fabsf(b->norm_scale))
        return snprintf(why, size, "normalisation scale %g, the model's %g", (double)a->norm_scale,
                        (double)b->norm_scale), 1;
    if (strcmp(a->schedule, b->schedule) || a->T != b->T)
        return snprintf(why, size, "schedule %s T=%d, the model's %s T=%d", a->schedule, a->T, b->schedule, b->T), 1;
    if (a->num_classes != b->num_classes)
        return snprintf(why, size, "%d classes, the model %d", a->num_classes, b->num_classes), 1;
    for (int i = 0; i < a->num_classes; i++)
        if (strcasecmp(a->class_names[i], b->class_names[i]))
            return snprintf(why, size, "class %d is '%s', the model's '%s'", i, a->class_names[i], b->class_names[i]),
                   1;
    return 0;
}

nf_status nf_classifier_load_for_model(const char *path, const nf_model *model, int max_batch, nf_classifier **out)
{
    *out = NULL;
    const nf_model_desc *d = nf_model_desc_get(model);
    nf_repr *repr = NULL;
    nf_status st = model_repr(d, &repr);
    if (st) return st;
    int Lm = nf_repr_length(repr, d->length);
    nf_repr_free(repr);
    nf_model_desc stored;
    char hash[17];
    nf_classifier *c = NULL;
    if ((st = nf_classifier_load(path, max_batch, Lm, &c, &stored, hash))) return st;
    char why[256];
    if (stored.sample_rate == 0) {
        nf_warn("%s: the classifier does not say which model it was trained for; it cannot be checked", path);
    } else if (desc_differs(&stored, d, why, sizeof why)) {
        nf_classifier_free(c);
        return nf_fail(NF_ERR_ARG, "%s: the classifier was trained for a different model (%s)", path, why);
    } else if (strcmp(hash, nf_model_get_info(model)->hash)) {
        nf_warn("%s: the classifier was trained for model weights %s, these are %s (same format and classes: "
                "using it)", path, *hash ? hash : "(unknown)", nf_model_get_info(model)->hash);
    }
    *out = c;
    return NF_OK;
}
