/* rel_make_model OUT.safetensors: a tiny untrained (random) 2-class model, 4 kHz mono,
 * 256 samples, for tests that only need the program to run end to end. */
#include "nf_test_model.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: rel_make_model OUT.safetensors\n");
        return 2;
    }
    nf_test_model_opts o;
    nf_test_model_opts_init(&o);
    o.sample_rate = 4000;
    o.length = 256;
    o.class_names = "kick,snare";
    o.net.attn[1] = 1;
    o.seed = 3;
    if (nf_test_model_save(&o, argv[1])) {
        fprintf(stderr, "rel_make_model: %s\n", nf_last_error());
        return 1;
    }
    return 0;
}
