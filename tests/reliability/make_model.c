/* rel_make_model OUT.safetensors: a tiny untrained (random) 2-class model, 4 kHz mono,
 * 256 samples, for tests that only need the program to run end to end. */
#include "nf_checkpoint.h"
#include "nf_unet.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: rel_make_model OUT.safetensors\n");
        return 2;
    }
    nf_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_ch = c.out_ch = 1;
    c.base = 8;
    c.n_levels = 2;
    c.mults[0] = 1;
    c.mults[1] = 2;
    c.blocks = 1;
    c.heads = 1;
    c.groups = 2;
    c.attn[1] = 1;
    c.num_classes = 2;
    nf_model_desc d;
    nf_model_desc_init(&d);
    d.sample_rate = 4000;
    d.channels = 1;
    d.length = 256;
    d.num_classes = 2;
    strcpy(d.class_names[0], "kick");
    strcpy(d.class_names[1], "snare");
    nf_unet *net = NULL;
    nf_status st = nf_unet_create(&c, 1, d.length, &net);
    if (!st) {
        nf_unet_init_params(net, 3);
        st = nf_checkpoint_save(argv[1], net, NULL, &d, 0);
    }
    nf_unet_free(net);
    if (st) {
        fprintf(stderr, "rel_make_model: %s\n", nf_last_error());
        return 1;
    }
    return 0;
}
