// tmixd: the mixing-augmentation daemon: `serve` (the default command), `search`,
// `train-teacher`, `eval`, `selftest`, `mix`.
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "eval.h"
#include "mix_cmd.h"
#include "search.h"
#include "serve.h"
#include "selftest.h"
#include "train_teacher.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tmixd COMMAND\n"
            "       tmixd [serve] [-c FILE] [--section.key=value ...]\n"
            "       tmixd search|train-teacher [--resume] [-c FILE] [--section.key=value ...]\n"
            "\n"
            "commands:\n"
            "  serve        serve mixed batches to trainers (the default when the first\n"
            "               argument is an option); -c FILE, --section.key=value override the\n"
            "               embedded default config (deploy/tmixd.conf)\n"
            "  search       train the mixing module ([mix] method) against [teacher] path on the\n"
            "               data set and write it to [search] out; --resume continues from\n"
            "               the checkpoint after a stop or a kill\n"
            "  train-teacher  train [train] arch from scratch on the data set and write the teacher\n"
            "               file [train] out (for [teacher] path); --resume as for search\n"
            "  eval         the teacher's clean test accuracy, and per mixing method its loss on\n"
            "               mixed test batches and how often it sees every source ([eval])\n"
            "  selftest     run every numeric op against its PyTorch reference and print a table\n"
            "               with a column group per backend (selftest --help)\n"
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
    if (strcmp(cmd, "serve") == 0)
        return tmixd_serve_main(argc - 2, argv + 2);
    if (strcmp(cmd, "-c") == 0 || strncmp(cmd, "--config", 8) == 0 ||
        (strncmp(cmd, "--", 2) == 0 && strchr(cmd, '.')))
        return tmixd_serve_main(argc - 1, argv + 1);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("tmixd %s (backends: cpu%s; GPUs visible: %d)\n", TMIX_VERSION,
               TMIX_HAVE_CUDA ? ", cuda" : "", tmix_cuda_device_count());
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "search") == 0)
        return tmixd_search_main(argc - 2, argv + 2);
    if (strcmp(cmd, "train-teacher") == 0)
        return tmixd_train_teacher_main(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0)
        return tmixd_eval_main(argc - 2, argv + 2);
    if (strcmp(cmd, "selftest") == 0)
        return tmixd_selftest_main(argc - 2, argv + 2);
    if (strcmp(cmd, "mix") == 0)
        return tmixd_mix_main(argc - 2, argv + 2);
    fprintf(stderr, "tmixd: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
