/* Helpers shared by the commands: messages and library warnings. */
#include "cli.h"

#include <stdio.h>

static void warn_to_stderr(void *user, const char *message)
{
    (void)user;
    fprintf(stderr, "noisefloor: warning: %s\n", message);
}

void nf_cli_install_handlers(void) { nf_set_warning_handler(warn_to_stderr, NULL); }

int nf_cli_fail_status(nf_status s)
{
    const char *msg = nf_last_error();
    fprintf(stderr, "noisefloor: %s\n", *msg ? msg : nf_status_name(s));
    return 1;
}
