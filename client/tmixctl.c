// tmixctl: talks to a running tmixd. `status` prints the daemon's state, `pull` receives
// batches like a trainer would (and can save them), `bench` measures throughput with several
// trainers, `config` reads the daemon's settings and changes the reloadable ones, `preview`
// draws one mixed batch with its intermediates.
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tmixctl COMMAND [options]\n"
            "\n"
            "commands:\n"
            "  status     the daemon's version, data set, trainers and consumer groups\n"
            "  pull       pull batches like a trainer; print them, their ids, or save them\n"
            "  bench      several trainers pulling for a while: images/s and latency\n"
            "  config     the daemon's settings (get), and the reloadable ones changed (set)\n"
            "  preview    one batch mixed with its intermediates, drawn as a PNG grid\n"
            "  --version  print the version\n"
            "\n"
            "Every command takes -e ENDPOINT (default %s); COMMAND --help lists its options.\n",
            ctl_default_endpoint());
}

int ctl_fail(int rc, const char *message)
{
    fprintf(stderr, "tmixctl: %s\n", message);
    return rc == TMIX_EINVAL ? 2 : 1;
}

double ctl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("tmixctl %s\n", TMIX_VERSION);
        return 0;
    }
    if (strcmp(cmd, "status") == 0)
        return ctl_status_main(argc - 2, argv + 2);
    if (strcmp(cmd, "pull") == 0)
        return ctl_pull_main(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0)
        return ctl_bench_main(argc - 2, argv + 2);
    if (strcmp(cmd, "config") == 0)
        return ctl_config_main(argc - 2, argv + 2);
    if (strcmp(cmd, "preview") == 0)
        return ctl_preview_main(argc - 2, argv + 2);
    fprintf(stderr,
            "tmixctl: unknown command '%s' (commands: status, pull, bench, config, preview)\n",
            cmd);
    return 2;
}
