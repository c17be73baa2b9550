/* The bundled default model (presets/default.safetensors) makes the drums it was trained
 * on. Judged with the project's own measures (dsp/nf_features.h), against the training
 * corpus regenerated in memory from the seed presets/make-default-model.sh uses:
 *
 *   1. Class: a softmax-regression classifier on spectral features, fitted on the corpus,
 *      labels >= 90 % of the conditional takes with the requested class (all takes
 *      together; per-class accuracy is printed, and each class must get >= 50 %).
 *   2. Spectral statistics: the Fréchet distance d² (FID formula on the corpus-standardised
 *      features) between the M takes of a class and the corpus's clips of that class is at
 *      most 4x the mean hold-out reference d² (M corpus clips against the rest of the
 *      class, 16 draws: the same set size, so the small-sample bias is the same), and the
 *      same for all takes pooled against the whole corpus.
 *   3. Every take is finite, not silent (peak >= -60 dBFS) and not clipped
 *      (nf_sound_check_run).
 *   4. Takes are new: within a class, the largest normalised cross-correlation (lags up to
 *      5 ms) between any two takes is < 0.99, and between any take and any corpus clip
 *      < 0.99 (NF_COPY_THRESHOLD).
 *
 * Sampling: the engine's defaults as the CLI and the plugin use them (Euler ancestral, the
 * 0.4 ms fade-in), 20 steps (the plugin's default), guidance scale 1, seeds 1000 + k, one
 * thread.
 * The model path may be given as argv[1] (for experiments); by default it is
 * $NF_SOURCE_ROOT/presets/default.safetensors. */
#include "nf_drums.h"
#include "nf_engine.h"
#include "nf_features.h"
#include "nf_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Must match presets/make-default-model.sh (make-drums -n and --seed). */
#define CORPUS_PER_CLASS 64
#define CORPUS_SEED 1
/* Takes per class and sampler settings. */
#define TAKES 10
#define SAMPLER_STEPS 20
#define SEED0 1000
#define HOLDOUT_DRAWS 16
#define FRECHET_FACTOR 4.0
#define MIN_ACCURACY 0.90
#define MIN_CLASS_ACCURACY 0.50

int main(int argc, char **argv)
{
    char path[4096];
    if (argc > 1) {
        snprintf(path, sizeof path, "%s", argv[1]);
    } else {
        const char *root = getenv("NF_SOURCE_ROOT");
        snprintf(path, sizeof path, "%s/presets/default.safetensors", root ? root : ".");
    }
    nf_model *m = NULL;
    nf_status st = nf_model_load(path, &m);
    CHECK(st == NF_OK, "loading %s: %s", path, nf_last_error());
    if (st) return nf_test_done();
    const nf_model_info *info = nf_model_get_info(m);
    const int K = info->num_classes, rate = info->sample_rate, L = info->length;
    CHECK(K == NF_DRUM_NUM_CLASSES, "the default model has %d classes, want %d", K, NF_DRUM_NUM_CLASSES);
    CHECK(info->channels == 1, "the default model has %d channels, want mono", info->channels);
    if (K != NF_DRUM_NUM_CLASSES || info->channels != 1) {
        nf_model_free(m);
        return nf_test_done();
    }
    /* The model's class k is drum class drum_of[k] (the dataset orders its folders). */
    int drum_of[NF_DRUM_NUM_CLASSES];
    for (int k = 0; k < K; k++) {
        drum_of[k] = nf_drum_class_from_name(info->class_names[k]);
        CHECK(drum_of[k] >= 0, "model class '%s' is not a drum class", info->class_names[k]);
        if (drum_of[k] < 0) {
            nf_model_free(m);
            return nf_test_done();
        }
    }
    printf("model %s: %d Hz, %d samples, %s, %lld parameters, %lld training steps\n", path, rate, L,
           info->representation, info->param_count, info->train_steps);

    /* The training corpus, its features, the classifier. */
    const int N = K * CORPUS_PER_CLASS;
    float *corpus = malloc(sizeof(float) * (size_t)N * L);
    int *clabels = malloc(sizeof(int) * (size_t)N);
    float *cfeat = malloc(sizeof(float) * (size_t)N * NF_FEAT_DIM);
    const int G = K * TAKES;
    float *gen = malloc(sizeof(float) * (size_t)G * L);
    int *glabels = malloc(sizeof(int) * (size_t)G);
    float *gfeat = malloc(sizeof(float) * (size_t)G * NF_FEAT_DIM);
    if (!corpus || !clabels || !cfeat || !gen || !glabels || !gfeat) {
        CHECK(0, "out of memory");
        return nf_test_done();
    }
    CHECK_OK(nf_drum_corpus_render(CORPUS_PER_CLASS, rate, L, CORPUS_SEED, corpus, clabels));
    CHECK_OK(nf_features_compute_batch(rate, corpus, N, L, cfeat));
    nf_feat_classifier clf;
    memset(&clf, 0, sizeof clf);
    CHECK_OK(nf_feat_classifier_fit(&clf, cfeat, clabels, N, NF_DRUM_NUM_CLASSES));
    double train_acc = nf_feat_classifier_accuracy(&clf, cfeat, clabels, N);
    printf("classifier accuracy on its training corpus: %.3f\n", train_acc);

    /* The takes: TAKES per class, seeds SEED0 + k. */
    double t0 = nf_now();
    for (int k = 0; k < K; k++) {
        nf_gen_params p;
        nf_gen_params_default(&p);
        p.steps = SAMPLER_STEPS;
        p.class_id = k;
        p.seed = SEED0;
        /* One thread: the sounds do not depend on it, and on a shared 2-core machine a
         * second thread fighting the BLAS pool made this 5x slower, not faster. */
        p.threads = 1;
        CHECK_OK(nf_generate(m, &p, TAKES, gen + (size_t)drum_of[k] * TAKES * L));
        for (int i = 0; i < TAKES; i++) glabels[drum_of[k] * TAKES + i] = drum_of[k];
    }
    printf("generated %d takes in %.1f s\n", G, nf_now() - t0);

    /* 3. Sound checks. */
    int bad = 0;
    for (int g = 0; g < G; g++) {
        nf_sound_check sc;
        nf_sound_check_run(gen + (size_t)g * L, L, &sc);
        if (!sc.ok) {
            bad++;
            fprintf(stderr, "take %d of %s: nonfinite %d, clipped %d, peak %.1f dBFS\n", g % TAKES,
                    nf_drum_class_name(glabels[g]), sc.nonfinite, sc.clipped, sc.peak_db);
        }
    }
    CHECK(bad == 0, "%d of %d takes are silent, clipped or non-finite", bad, G);
    if (bad) goto out; /* features of broken sounds would only add noise below */

    /* 1. Classification. */
    CHECK_OK(nf_features_compute_batch(rate, gen, G, L, gfeat));
    int correct_all = 0;
    printf("class       accuracy  frechet_d2  holdout_d2  ratio  max_ncc_takes  max_ncc_corpus\n");
    for (int c = 0; c < K; c++) {
        const float *cf = cfeat + (size_t)c * CORPUS_PER_CLASS * NF_FEAT_DIM;
        const float *gf = gfeat + (size_t)c * TAKES * NF_FEAT_DIM;
        int correct = 0;
        for (int i = 0; i < TAKES; i++)
            correct += nf_feat_classifier_predict(&clf, gf + (size_t)i * NF_FEAT_DIM, NULL) == c;
        correct_all += correct;
        double acc = (double)correct / TAKES;

        /* 2. Fréchet distance of this class's takes to its corpus clips, and the
         * reference at the same set size. */
        double d2 = 0, ref = 0;
        CHECK_OK(nf_feat_frechet(&clf.stats, gf, TAKES, cf, CORPUS_PER_CLASS, &d2, NULL));
        CHECK_OK(nf_feat_frechet_holdout(&clf.stats, cf, CORPUS_PER_CLASS, TAKES, HOLDOUT_DRAWS, 7, &ref, NULL));

        /* 4. Novelty: takes against each other and against the whole corpus. */
        double ncc_takes = 0, ncc_corpus = 0;
        const float *gc = gen + (size_t)c * TAKES * L;
        for (int i = 0; i < TAKES; i++) {
            double v = 0;
            if (i + 1 < TAKES) {
                CHECK_OK(nf_copy_max_ncc(gc + (size_t)i * L, gc + (size_t)(i + 1) * L, TAKES - i - 1, L, 0, rate, &v,
                                         NULL));
                if (v > ncc_takes) ncc_takes = v;
            }
            CHECK_OK(nf_copy_max_ncc(gc + (size_t)i * L, corpus, N, L, 0, rate, &v, NULL));
            if (v > ncc_corpus) ncc_corpus = v;
        }
        printf("%-10s  %8.2f  %10.3f  %10.3f  %5.2f  %13.3f  %14.3f\n", nf_drum_class_name(c), acc, d2, ref,
               ref > 0 ? d2 / ref : 0.0, ncc_takes, ncc_corpus);
        CHECK(acc >= MIN_CLASS_ACCURACY, "%s: only %.0f%% of the takes are labelled %s", nf_drum_class_name(c),
              100 * acc, nf_drum_class_name(c));
        CHECK(d2 <= FRECHET_FACTOR * ref, "%s: Fréchet d2 %.3f > %.1f x hold-out reference %.3f",
              nf_drum_class_name(c), d2, FRECHET_FACTOR, ref);
        CHECK(ncc_takes < NF_COPY_THRESHOLD, "%s: two takes correlate at %.4f", nf_drum_class_name(c), ncc_takes);
        CHECK(ncc_corpus < NF_COPY_THRESHOLD, "%s: a take copies a training clip (NCC %.4f)", nf_drum_class_name(c),
              ncc_corpus);
    }
    double acc_all = (double)correct_all / G;
    double d2 = 0, ref = 0;
    CHECK_OK(nf_feat_frechet(&clf.stats, gfeat, G, cfeat, N, &d2, NULL));
    CHECK_OK(nf_feat_frechet_holdout(&clf.stats, cfeat, N, G, HOLDOUT_DRAWS, 7, &ref, NULL));
    printf("%-10s  %8.2f  %10.3f  %10.3f  %5.2f\n", "pooled", acc_all, d2, ref, ref > 0 ? d2 / ref : 0.0);
    CHECK(acc_all >= MIN_ACCURACY, "only %.1f%% of the takes are labelled with their class (want >= %.0f%%)",
          100 * acc_all, 100 * MIN_ACCURACY);
    CHECK(d2 <= FRECHET_FACTOR * ref, "pooled Fréchet d2 %.3f > %.1f x hold-out reference %.3f", d2, FRECHET_FACTOR,
          ref);

out:
    nf_feat_classifier_free(&clf);
    free(corpus);
    free(clabels);
    free(cfeat);
    free(gen);
    free(glabels);
    free(gfeat);
    nf_model_free(m);
    return nf_test_done();
}
