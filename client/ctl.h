// tmixctl's commands (ctl_status.c, ctl_pull.c, ctl_bench.c, ctl_config.c, ctl_preview.c)
// and what they share. Each
// command returns the process exit status: 0, 1 after a runtime error (one line
// `tmixctl: <endpoint>: <message>`), 2 after a usage error.
#ifndef TMIXCTL_H
#define TMIXCTL_H

#include "ctl_args.h"

int ctl_status_main(int argc, char **argv);
int ctl_pull_main(int argc, char **argv);
int ctl_bench_main(int argc, char **argv);
int ctl_config_main(int argc, char **argv);
int ctl_preview_main(int argc, char **argv);

// Prints "tmixctl: <message>" to stderr (libtmix's messages start with the endpoint) and
// returns the exit status for libtmix's code rc: 2 for TMIX_EINVAL (a bad endpoint or group
// is a usage error), else 1.
int ctl_fail(int rc, const char *message);

// Seconds on the monotonic clock.
double ctl_now(void);

#endif
