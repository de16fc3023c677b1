// tmixctl's option parser (see ctl_args.h).
#include "ctl_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// 1 + the index of value among "a|b|c", or 0.
static int choice_index(const char *choices, const char *value)
{
    size_t len = strlen(value);
    int idx = 1;
    for (const char *p = choices;; idx++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0)
            return idx;
        if (!bar)
            return 0;
        p = bar + 1;
    }
}

static int set_value(const char *cmd, const ctl_opt *opt, const char *value)
{
    if (opt->kind == CTL_TEXT) {
        *(const char **)opt->dest = value;
        return 0;
    }
    if (opt->kind == CTL_CHOICE) {
        int idx = choice_index(opt->choices, value);
        if (!idx) {
            fprintf(stderr, "%s: %s '%s': expected one of %s\n", cmd, opt->name, value,
                    opt->choices);
            return 2;
        }
        *(int *)opt->dest = idx;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    const bool integer = opt->kind == CTL_COUNT;
    if (errno || end == value || *end || !(v >= opt->lo && v <= opt->hi) ||
        (integer && v != floor(v))) {
        fprintf(stderr, "%s: %s '%s': expected %s from %.15g to %.15g\n", cmd, opt->name, value,
                integer ? "an integer" : "a number", opt->lo, opt->hi);
        return 2;
    }
    if (integer)
        *(uint32_t *)opt->dest = (uint32_t)v;
    else
        *(double *)opt->dest = v;
    return 0;
}

static const ctl_opt *find(const ctl_opt *opts, const char *name, size_t len)
{
    for (const ctl_opt *o = opts; o->name; o++)
        if ((strlen(o->name) == len && strncmp(o->name, name, len) == 0) ||
            (o->alias && strlen(o->alias) == len && strncmp(o->alias, name, len) == 0))
            return o;
    return NULL;
}

int ctl_parse(const char *cmd, const char *usage, ctl_opt *opts, int argc, char **argv)
{
    bool seen[CTL_MAX_OPTS] = {0};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        // --name=value or --name value.
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const ctl_opt *opt = arg[0] == '-' ? find(opts, arg, len) : NULL;
        if (!opt) {
            fprintf(stderr, "%s: %s '%.*s' (see %s --help)\n", cmd,
                    arg[0] == '-' ? "unknown option" : "unexpected argument", (int)len, arg, cmd);
            return 2;
        }
        seen[opt - opts] = true;
        if (opt->kind == CTL_FLAG) {
            if (eq) {
                fprintf(stderr, "%s: %s takes no value\n", cmd, opt->name);
                return 2;
            }
            *(bool *)opt->dest = true;
            continue;
        }
        if (!eq && i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n", cmd, opt->name);
            return 2;
        }
        int rc = set_value(cmd, opt, eq ? eq + 1 : argv[++i]);
        if (rc)
            return rc;
    }
    for (const ctl_opt *o = opts; o->name; o++) {
        if (o->required && !seen[o - opts]) {
            fprintf(stderr, "%s: %s is required (see %s --help)\n", cmd, o->name, cmd);
            return 2;
        }
    }
    return 0;
}

void ctl_conn_opts(ctl_conn *c, double timeout_s, bool hello, ctl_opt *opts, int *n)
{
    c->endpoint = ctl_default_endpoint();
    c->timeout_s = timeout_s;
    tmix_options_init(&c->o);
    opts[(*n)++] =
        (ctl_opt){.name = "--endpoint", .alias = "-e", .kind = CTL_TEXT, .dest = &c->endpoint};
    opts[(*n)++] = (ctl_opt){
        .name = "--timeout", .kind = CTL_SECONDS, .dest = &c->timeout_s, .lo = 0, .hi = 1e6};
    if (!hello)
        return;
    opts[(*n)++] = (ctl_opt){.name = "--group", .kind = CTL_TEXT, .dest = &c->o.group};
    opts[(*n)++] = (ctl_opt){
        .name = "--mode", .kind = CTL_CHOICE, .dest = &c->o.mode, .choices = "shard|broadcast"};
    opts[(*n)++] = (ctl_opt){.name = "--batch-size",
                             .kind = CTL_COUNT,
                             .dest = &c->o.batch_size,
                             .lo = 1,
                             .hi = 1 << 20};
    opts[(*n)++] = (ctl_opt){.name = "--dtype",
                             .kind = CTL_CHOICE,
                             .dest = &c->o.dtype,
                             .choices = "float32|float16|uint8"};
    opts[(*n)++] = (ctl_opt){
        .name = "--layout", .kind = CTL_CHOICE, .dest = &c->o.layout, .choices = "nchw|nhwc"};
    opts[(*n)++] = (ctl_opt){
        .name = "--delivery", .kind = CTL_CHOICE, .dest = &c->o.delivery, .choices = "inline|shm"};
    opts[(*n)++] = (ctl_opt){
        .name = "--node-rank", .kind = CTL_COUNT, .dest = &c->o.node_rank, .lo = 0, .hi = 65535};
    opts[(*n)++] = (ctl_opt){
        .name = "--node-count", .kind = CTL_COUNT, .dest = &c->o.node_count, .lo = 1, .hi = 65536};
}

void ctl_conn_finish(ctl_conn *c)
{
    c->o.timeout_ms = (int)ceil(c->timeout_s * 1000);
}

const char *ctl_default_endpoint(void)
{
    static char buf[4200];
    const char *dir = getenv("XDG_RUNTIME_DIR");
    if (geteuid() == 0 || !dir || !*dir)
        return "ipc:///run/tmix/tmixd.sock";
    snprintf(buf, sizeof(buf), "ipc://%s/tmix/tmixd.sock", dir);
    return buf;
}
