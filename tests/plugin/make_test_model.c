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

#include "nf_test_model.h"

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: make_test_model out classes rate length\n");
        return 2;
    }
    nf_test_model_opts o;
    nf_test_model_opts_init(&o);
    o.sample_rate = atoi(argv[3]);
    o.length = atoi(argv[4]);
    o.class_names = argv[2];
    o.net.base = 16;
    o.net.groups = 8;
    uint64_t seed = 1469598103934665603ull;
    for (const char *c = argv[2]; *c; c++) seed = (seed ^ (unsigned char)*c) * 1099511628211ull;
    o.seed = seed ^ ((uint64_t)o.sample_rate * 31 + (uint64_t)o.length);
    if (nf_test_model_save(&o, argv[1])) {
        fprintf(stderr, "make_test_model: %s\n", nf_last_error());
        return 1;
    }
    return 0;
}
