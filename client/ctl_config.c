// tmixctl config get [KEY] | set KEY VALUE: the daemon's settings, and the reloadable ones
// changed while it runs.
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static const char usage[] =
    "usage: tmixctl config get [KEY] [-e ENDPOINT] [--timeout S]\n"
    "       tmixctl config set KEY VALUE [-e ENDPOINT] [--timeout S]\n"
    "\n"
    "  get             every setting as `section.key = value`, reloadable ones marked; or the\n"
    "                  value of KEY alone (e.g. server.lease_timeout_s)\n"
    "  set KEY VALUE   change a reloadable setting of the running daemon (ipc:// only),\n"
    "                  checked as in its config file; fixed ones need a restart\n"
    "  -e, --endpoint E  the daemon's endpoint (ipc://PATH or tcp://HOST:PORT)\n"
    "  --timeout S       seconds to wait for the answer (default 5; 0: forever)\n";

int ctl_config_main(int argc, char **argv)
{
    const bool get = argc > 0 && strcmp(argv[0], "get") == 0;
    const bool set = argc > 0 && strcmp(argv[0], "set") == 0;
    if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (!get && !set) {
        fprintf(stderr, "tmixctl config: expected get or set (see tmixctl config --help)\n");
        return 2;
    }
    int words = 1; // get or set, then KEY (and VALUE): the arguments before the options
    while (words < argc && argv[words][0] != '-')
        words++;
    if (get ? words > 2 : words != 3) {
        fprintf(stderr, "tmixctl config %s: expected %s (see tmixctl config --help)\n", argv[0],
                get ? "at most one KEY" : "KEY VALUE");
        return 2;
    }
    ctl_conn conn;
    ctl_opt opts[CTL_MAX_OPTS] = {0};
    int n = 0;
    ctl_conn_opts(&conn, 5, false, opts, &n);
    const int rc = ctl_parse(get ? "tmixctl config get" : "tmixctl config set", usage, opts,
                             argc - words, argv + words);
    if (rc)
        return rc < 0 ? 0 : rc;
    ctl_conn_finish(&conn);
    const char *key = words > 1 ? argv[1] : NULL;
    if (set) {
        const int got = tmix_config_set(conn.endpoint, key, argv[2], conn.o.timeout_ms);
        if (got < 0)
            return ctl_fail(got, tmix_client_error(NULL));
    }
    tmix_config *c;
    const int got = tmix_config_get(conn.endpoint, key, conn.o.timeout_ms, &c);
    if (got < 0)
        return ctl_fail(got, tmix_client_error(NULL));
    for (size_t i = 0; i < c->count; i++) {
        const tmix_setting *s = &c->settings[i];
        if (key)
            printf("%s\n", s->value);
        else
            printf("%s = %s%s\n", s->key, s->value, s->reloadable ? "  # reloadable" : "");
    }
    tmix_config_free(c);
    return 0;
}
