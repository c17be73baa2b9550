/* make_test_model: write a small, untrained noisefloor checkpoint for the plugin tests.
 *
 *   make_test_model <out.safetensors> <classes: "kick,snare,..." or ""> <rate> <length>
 *
 * The network is a tiny U-Net (C0 = 16, two levels) with PyTorch-style random weights,
 * seeded from the class list so that two different fixtures are different models. An
 * untrained network still maps noise to a deterministic, class-dependent, finite sound,
 * which is all the plugin tests need (they test the plugin, not the model's quality). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nf_checkpoint.h"
#include "nf_unet.h"

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: make_test_model out classes rate length\n");
        return 2;
    }
    nf_model_desc d;
    nf_model_desc_init(&d);
    d.sample_rate = atoi(argv[3]);
    d.channels = 1;
    d.length = atoi(argv[4]);
    snprintf(d.objective, sizeof d.objective, "v");
    snprintf(d.schedule, sizeof d.schedule, "cosine");
    d.T = 1000;
    char classes[1024];
    snprintf(classes, sizeof classes, "%s", argv[2]);
    uint64_t seed = 1469598103934665603ull;
    for (const char *c = argv[2]; *c; c++) seed = (seed ^ (unsigned char)*c) * 1099511628211ull;
    seed ^= (uint64_t)d.sample_rate * 31 + (uint64_t)d.length;
    for (char *save = NULL, *c = strtok_r(classes, ",", &save); c && d.num_classes < NF_CKPT_MAX_CLASSES;
         c = strtok_r(NULL, ",", &save))
        snprintf(d.class_names[d.num_classes++], NF_CKPT_NAME_MAX, "%s", c);

    nf_unet_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.in_ch = 1;
    cfg.out_ch = 1;
    cfg.base = 16;
    cfg.n_levels = 2;
    cfg.mults[0] = 1;
    cfg.mults[1] = 2;
    cfg.blocks = 1;
    cfg.heads = 1;
    cfg.groups = 8;
    cfg.num_classes = d.num_classes;
    nf_unet *net = NULL;
    nf_status st = nf_unet_create(&cfg, 1, d.length, &net);
    if (!st) {
        nf_unet_init_params(net, seed);
        st = nf_checkpoint_save(argv[1], net, NULL, &d, 0);
    }
    nf_unet_free(net);
    if (st) {
        fprintf(stderr, "make_test_model: %s\n", nf_last_error());
        return 1;
    }
    return 0;
}
