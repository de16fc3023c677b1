// tmixd: the mixing-augmentation daemon. This release has the numeric core and its
// self-test; serving (`tmixd serve`) and search mode arrive with the next milestones.
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "mix_cmd.h"
#include "selftest.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tmixd COMMAND\n"
            "\n"
            "commands:\n"
            "  selftest     run every numeric op against its PyTorch reference and print a table\n"
            "  mix          mix one batch offline and write every intermediate (mix --help)\n"
            "  --version    print the version and the backends this build has\n"
            "  --help       print this help\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("tmixd %s (backends: cpu%s; GPUs visible: %d)\n", TMIX_VERSION,
               TMIX_HAVE_CUDA ? ", cuda" : "", tmix_cuda_device_count());
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "selftest") == 0) {
        if (argc > 2) {
            fprintf(stderr, "tmixd selftest: unexpected argument '%s'\n", argv[2]);
            return 2;
        }
        return tmixd_selftest();
    }
    if (strcmp(cmd, "mix") == 0)
        return tmixd_mix_main(argc - 2, argv + 2);
    fprintf(stderr, "tmixd: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
