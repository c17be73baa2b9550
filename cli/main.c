/* noisefloor: the command-line face of the library. Parses options, calls the library,
 * prints results. No math lives here. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const nf_cli_command *const commands[] = {
    /* Each command file defines one nf_cli_command; listed in the order of --help. */
    &nf_cmd_train, &nf_cmd_train_classifier,
    &nf_cmd_generate, &nf_cmd_vary, &nf_cmd_inpaint, &nf_cmd_extend, &nf_cmd_interpolate, &nf_cmd_render,
    &nf_cmd_info,
    &nf_cmd_spectrogram, &nf_cmd_make_drums,
    &nf_cmd_bench,
    NULL
};

static void print_usage(FILE *f)
{
    fprintf(f,
            "noisefloor %s: train diffusion models on your own samples, then generate new sounds.\n"
            "\n"
            "Usage: noisefloor <command> [options]\n"
            "       noisefloor <command> --help\n"
            "\n"
            "Commands:\n",
            NF_VERSION);
    for (int i = 0; commands[i]; i++) fprintf(f, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f,
            "\n"
            "Options:\n"
            "  -h, --help     show this help\n"
            "  --version      print the version\n");
}

/* OpenMP's idle threads spin by default before they sleep. On a machine shared with a
 * DAW, a browser or a second job, a spinning thread holds a core the other thread
 * needs, and two threads were measured 5-8x slower than one. Passive waiting costs a
 * few microseconds per parallel region and removes that cliff. libgomp reads the
 * policy once, when it starts, so it is set here and the program re-executes itself
 * once; an explicit OMP_WAIT_POLICY from the user is left alone. */
static void prefer_passive_openmp(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || !argv[0]) return;
    /* Only when /proc/self/exe is this program itself: under a loader such as valgrind
     * it is the loader's own tool, which cannot be run directly. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = '\0';
    const char *a = strrchr(argv[0], '/'), *b = strrchr(self, '/');
    if (strcmp(a ? a + 1 : argv[0], b ? b + 1 : self) != 0) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv(self, argv);
    /* exec failed: carry on with the default policy. */
    unsetenv("OMP_WAIT_POLICY");
}

int main(int argc, char **argv)
{
    prefer_passive_openmp(argv);
    nf_cli_install_handlers();
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("noisefloor %s\n", NF_VERSION);
        return 0;
    }
    for (int i = 0; commands[i]; i++)
        if (!strcmp(cmd, commands[i]->name)) {
            int status = commands[i]->run(argc - 1, argv + 1);
            nf_cli_release_models();
            return status;
        }
    fprintf(stderr, "noisefloor: unknown command '%s'\n\n", cmd);
    print_usage(stderr);
    return 2;
}
