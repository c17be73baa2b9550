/* The noise-aware classifier p_phi(y | x_t, t) for classifier guidance (Dhariwal & Nichol
 * 2021, sec. 4): a 1D conv encoder with the U-Net's time embedding and ResBlocks (the
 * same code, nn_resblock.c), trained on data noised with the diffusion schedule.
 *
 *   time embedding: sinusoidal(t, C0) -> Linear(C0,4C0) -> SiLU -> Linear(4C0,4C0) -> SiLU
 *   in: conv3(in_ch, C0)
 *   level i (C_i = C0 * mults[i]): `blocks` ResBlocks to C_i, then (except after the last
 *       level) Down = conv3 stride 2 padding 1 (length ceil(L/2))
 *   out: GroupNorm -> SiLU -> mean over time -> Linear(C_last, num_classes) = logits
 *
 * Parameter names (PyTorch state_dict conventions, as nf_unet.h):
 *   time.lin1.* time.lin2.* in_conv.* down.{i}.res.{j}.{norm1,conv1,emb,norm2,conv2,skip}.*
 *   down.{i}.downsample.* out_norm.* head.{weight,bias}
 *
 * Inputs are [B, in_ch, L] in the diffusion model's representation (x_t as the sampler
 * sees it) and t[B] the training-scale step index as a float, as the U-Net takes it.
 * Buffers are allocated once by nf_classifier_create; forward/backward never allocate.
 *
 * Classifier file (safetensors): the parameters under the names above and metadata
 *   "format": "noisefloor-classifier", "format_version": "1",
 *   "noisefloor.classifier": JSON of the config,
 *   "noisefloor.model": the nf_model_desc JSON of the diffusion model it was trained for
 *   (representation, scale, schedule, class names), "noisefloor.model_hash": that
 *   model's weights hash, and "noisefloor.classifier_train": a training summary. */
#ifndef NF_CLASSIFIER_H
#define NF_CLASSIFIER_H

#include "nf_checkpoint.h"
#include "nf_common.h"
#include "nf_diffusion.h"
#include "nf_engine.h"
#include "nf_unet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NF_CLASSIFIER_MAX_LEVELS 6

typedef struct {
    int in_ch;        /* the diffusion model's channels */
    int base;         /* C0 (even) */
    int n_levels;
    int mults[NF_CLASSIFIER_MAX_LEVELS];
    int blocks;       /* ResBlocks per level */
    int groups;       /* GroupNorm groups (divides every width) */
    int num_classes;  /* >= 2 */
} nf_classifier_config;

/* A small default: base 32, mults {1, 2, 2, 2}, 1 block, 8 groups (in_ch, num_classes 0). */
void nf_classifier_config_default(nf_classifier_config *c);
nf_status nf_classifier_config_check(const nf_classifier_config *c);

typedef struct nf_classifier nf_classifier;

nf_status nf_classifier_create(const nf_classifier_config *c, int max_batch, int max_length,
                               nf_classifier **out);
void nf_classifier_free(nf_classifier *c);
const nf_classifier_config *nf_classifier_get_config(const nf_classifier *c);

size_t nf_classifier_num_params(const nf_classifier *c);
float *nf_classifier_params(nf_classifier *c);
float *nf_classifier_grads(nf_classifier *c);
int nf_classifier_num_tensors(const nf_classifier *c);
const nf_param_info *nf_classifier_tensor(const nf_classifier *c, int i);
int nf_classifier_find_tensor(const nf_classifier *c, const char *name); /* -1 if absent */
/* PyTorch default initialisation from the counter RNG (as nf_unet_init_params). */
void nf_classifier_init_params(nf_classifier *c, uint64_t seed);
void nf_classifier_zero_grad(nf_classifier *c);

/* logits[B, num_classes] = net(x[B, in_ch, L], t[B]); keeps the activations. */
nf_status nf_classifier_forward(nf_classifier *c, const float *x, const float *t, int B, int L,
                                float *logits);
/* After a forward: accumulate d loss / d params into nf_classifier_grads() and, if dx is
 * not NULL, write d loss / d x [B, in_ch, L]. */
nf_status nf_classifier_backward(nf_classifier *c, const float *dlogits, float *dx);

/* Mean cross-entropy of logits [B, K] against y [B] and (dlogits may be NULL) its
 * gradient (softmax - onehot) / B; *correct (may be NULL) counts argmax == y. */
double nf_classifier_xent(const float *logits, const int *y, int B, int K, float *dlogits,
                          int *correct);

/* grad[B, in_ch, L] = grad_x log p_phi(y | x, t) (and log_prob[B], may be NULL), in chunks
 * of the network's max_batch. Leaves the parameter gradients zeroed. */
nf_status nf_classifier_grad_log_prob(nf_classifier *c, const float *x, const float *t,
                                      const int *y, int B, int L, float *grad, float *log_prob);
/* The same as an nf_classifier_grad_fn for nf_sampler_config (ctx: the nf_classifier). */
nf_status nf_classifier_guidance_fn(void *ctx, const float *x, const float *t, const int *y,
                                    int B, int C, int L, float *grad);

/* ---- training on encoded clips ---- */

typedef struct {
    long long steps;      /* optimizer steps (300) */
    int batch;            /* examples per step (32) */
    float lr;             /* AdamW learning rate, cosine to lr/10 after a 5% warm-up (1e-3) */
    float weight_decay;   /* 0.01 */
    float grad_clip;      /* global-norm clip (1.0; 0 = off) */
    uint64_t seed;
} nf_classifier_train_config;

void nf_classifier_train_config_default(nf_classifier_train_config *c);

/* Called every step with the step number (1-based), the batch loss and accuracy. */
typedef void (*nf_classifier_progress_fn)(void *user, long long step, double loss,
                                          double accuracy);

/* Train c on x0 [N, in_ch, L] with labels [N] (0..num_classes-1): each step draws B
 * examples and t uniform over the training schedule `s` from (seed, step), noises them
 * with q(x_t | x_0) (nf_train_draw), and takes an AdamW step on the cross-entropy.
 * Deterministic for a given seed and thread count. final_loss (may be NULL): the mean
 * loss of the last 10% of the steps. */
nf_status nf_classifier_train(nf_classifier *c, const nf_schedule *s, const float *x0,
                              const int *labels, int N, int L,
                              const nf_classifier_train_config *tc,
                              nf_classifier_progress_fn progress, void *user, double *final_loss);

/* ---- files ---- */

/* Save atomically; `model` describes the diffusion model the classifier goes with
 * (may be NULL), model_hash its weights hash (may be NULL); summary: free text (may be NULL). */
nf_status nf_classifier_save(const char *path, const nf_classifier *c, const nf_model_desc *model,
                             const char *model_hash, const char *summary);
/* Load: creates *out with buffers for max_batch x max_length; model (may be NULL) receives
 * the stored model description, model_hash (may be NULL, 17 chars) its hash ("" if none). */
nf_status nf_classifier_load(const char *path, int max_batch, int max_length, nf_classifier **out,
                             nf_model_desc *model, char *model_hash);

/* ---- training for a model, on a data folder (model/train_classifier.c) ---- */

/* The description of a loaded model (representation, audio format, schedule, class
 * names), as stored in its file. Defined in engine.c. */
const nf_model_desc *nf_model_desc_get(const nf_model *m);

typedef struct {
    nf_classifier_config net;         /* in_ch and num_classes are set from the model */
    nf_classifier_train_config train;
    int threads;                      /* 0: all cores */
    nf_classifier_progress_fn progress;
    void *progress_user;
} nf_classifier_fit_config;

/* Defaults: nf_classifier_config_default, nf_classifier_train_config_default, 0 threads. */
void nf_classifier_fit_config_default(nf_classifier_fit_config *c);

typedef struct {
    int clips;           /* clips trained on (of classes the model has) */
    int classes_with_data; /* model classes that had at least one clip */
    double final_loss;   /* mean loss of the last 10% of the steps */
    /* Accuracy on every training clip noised to x_t at each of four
     * moderate steps, t = T/20, T/8, T/4, 3T/8 (fixed noise): how well it separates the
     * classes where guidance acts most. */
    double accuracy;
} nf_classifier_fit_result;

/* Train a classifier for `model` on a data folder laid out as for nf_train (class =
 * first-level subfolder) and save it to `output` with the model's description and
 * weights hash. Clips are loaded at the model's rate, channels and length and encoded
 * with the model's representation (and normalisation scale). Folder classes are mapped
 * to the model's class names case-insensitively; a folder class the model does not have
 * is skipped with a warning, none matching is NF_ERR_ARG. The model must have classes
 * (the classifier's classes are the model's). result may be NULL. */
nf_status nf_classifier_train_dataset(const char *data_dir, nf_model *model, const char *output,
                                      const nf_classifier_fit_config *c, nf_classifier_fit_result *result);

/* Accuracy (fraction of argmax == label) of c on x0 [N, in_ch, L] noised with
 * q(x_t | x_0) at training step t (index into the training schedule s), with noise from
 * (seed, t). Runs in chunks of c's max_batch. */
nf_status nf_classifier_accuracy(nf_classifier *c, const nf_schedule *s, const float *x0, const int *labels,
                                 int N, int L, int t, uint64_t seed, double *accuracy);

/* Load a classifier for use with `model`: the buffers fit the model's length and
 * max_batch sounds. The file's stored model description must match the model's
 * (representation and its settings, normalisation scale, audio format, schedule, class
 * names): otherwise NF_ERR_ARG naming the file and the first difference. When only the
 * weights hash differs (e.g. the model was trained further), it is loaded with a
 * warning; a file with no model description loads with a warning too. */
nf_status nf_classifier_load_for_model(const char *path, const nf_model *model, int max_batch,
                                       nf_classifier **out);

#ifdef __cplusplus
}
#endif
#endif
