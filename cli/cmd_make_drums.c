/* noisefloor make-drums DIR: write the procedural drum corpus (dsp/nf_drums.h). */
#include "cli.h"
#include "nf_drums.h"
#include "options.h"

#include <inttypes.h>
#include <stdio.h>

static int run(int argc, char **argv)
{
    int per_class = 32, rate = 44100;
    double seconds = 0.5;
    uint64_t seed = 1;
    const nf_opt opts[] = {
        {"count", 'n', NF_OPT_INT, &per_class, NULL, "hits per class", 1, 100000, NULL, NULL},
        {"rate", 'r', NF_OPT_INT, &rate, "HZ", "sample rate", 8000, 384000, NULL, NULL},
        {"length", 'l', NF_OPT_DOUBLE, &seconds, "SECONDS", "clip length", 0.01, 30, NULL, NULL},
        {"seed", 0, NF_OPT_U64, &seed, NULL, "corpus seed", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, NULL, NULL},
    };
    const nf_opt_spec spec = {"make-drums", "DIR [-n PER_CLASS] [--rate HZ] [--length S] [--seed S]",
                              "Write a labelled corpus of synthesised drum hits, DIR/<class>/<class>_NNN.wav\n"
                              "(kick, snare, closedhat, openhat, tom, clap, cymbal), ready for `noisefloor train`.",
                              opts, 1, 1};
    char *pos[1];
    int npos;
    int rc = nf_opt_parse(&spec, argc, argv, pos, 1, &npos, stderr);
    if (rc >= 0) return rc;
    int length = (int)(seconds * rate + 0.5);
    nf_status st = nf_drum_corpus_write(pos[0], per_class, rate, length, seed);
    if (st) return nf_cli_fail_status(st);
    printf("wrote %d hits (%d classes x %d) to %s\n", per_class * NF_DRUM_NUM_CLASSES, NF_DRUM_NUM_CLASSES, per_class,
           pos[0]);
    return 0;
}

const nf_cli_command nf_cmd_make_drums = {"make-drums", "write a procedural drum corpus to train on", run};
