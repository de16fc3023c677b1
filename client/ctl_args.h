// tmixctl's command-line options: one table per command, parsed in one place so that every
// usage error is one line naming the option and the command exits 2.
#ifndef TMIXCTL_ARGS_H
#define TMIXCTL_ARGS_H

#include <stdbool.h>
#include <stdint.h>

#include "tmix.h"

typedef enum {
    CTL_FLAG,    // dest: bool
    CTL_TEXT,    // dest: const char *
    CTL_COUNT,   // dest: uint32_t, an integer from lo to hi
    CTL_SECONDS, // dest: double, a number from lo to hi
    CTL_CHOICE,  // dest: int, 1 + the index of the value among `choices` ("a|b|c")
} ctl_kind;

typedef struct {
    const char *name;  // "--batches"
    const char *alias; // "-e", or NULL
    ctl_kind kind;
    void *dest;
    const char *choices;
    double lo, hi;
    bool required;
} ctl_opt;

// The most options a command has (its table ends with an entry whose name is NULL).
#define CTL_MAX_OPTS 16

// Parses argv[argc] for `cmd` ("tmixctl pull") into opts' destinations, leaving those not
// given as they are. Returns 0, -1 after printing usage to stdout for --help, or 2 after
// printing one line naming the bad option to stderr.
int ctl_parse(const char *cmd, const char *usage, ctl_opt *opts, int argc, char **argv);

// Where to find the daemon and how to say Hello, shared by pull and bench.
typedef struct {
    const char *endpoint;
    double timeout_s;
    tmix_options o;
} ctl_conn;

// Sets c to the defaults (the default endpoint, timeout_s) and appends the options that fill
// it (-e, --timeout and, with hello, --group --mode --batch-size --dtype --layout
// --delivery --node-rank --node-count) to opts at
// *n; after parsing, ctl_conn_finish sets o.timeout_ms from timeout_s.
void ctl_conn_opts(ctl_conn *c, double timeout_s, bool hello, ctl_opt *opts, int *n);
void ctl_conn_finish(ctl_conn *c);

// ipc://$XDG_RUNTIME_DIR/tmix/tmixd.sock, or ipc:///run/tmix/tmixd.sock as root (or without
// XDG_RUNTIME_DIR): where tmixd listens by default.
const char *ctl_default_endpoint(void);

#endif
