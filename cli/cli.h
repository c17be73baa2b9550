/* Shared pieces of the noisefloor command-line program. */
#ifndef NF_CLI_H
#define NF_CLI_H

#include "nf_common.h"

typedef struct {
    const char *name;
    const char *summary;                 /* one line for `noisefloor --help` */
    int (*run)(int argc, char **argv);   /* argv[0] is the command name; returns exit status */
} nf_cli_command;

/* Route library warnings to stderr. */
void nf_cli_install_handlers(void);

/* Print "noisefloor: <library message>" to stderr and return exit status 1. */
int nf_cli_fail_status(nf_status s);

#endif
