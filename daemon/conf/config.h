// tmixd's configuration: one struct with a field per row of settings.h, filled in this
// order: the embedded default (deploy/tmixd.conf, compiled in), a config file, then
// command-line overrides. Every error is a sentence naming where (FILE:LINE or "command
// line"), the key, the value and what is wrong, e.g.
//   tmixd.conf:12: [mix] alpha = 'abc': not a number
//   command line: --mix.n=5: out of range [2, 3]
// Bad values are TMIX_EINVAL; a missing file TMIX_ENOENT, another unreadable one TMIX_EIO.
#ifndef TMIXD_CONFIG_H
#define TMIXD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "settings.h"

#define TMIXD_ENUM_ID(id, word) TMIXD_##id,
typedef enum { TMIXD_DATASET_FORMATS(TMIXD_ENUM_ID) } tmixd_dataset_format;
typedef enum { TMIXD_SPLITS(TMIXD_ENUM_ID) } tmixd_split;
typedef enum { TMIXD_CROPS(TMIXD_ENUM_ID) } tmixd_crop;
typedef enum { TMIXD_DTYPES(TMIXD_ENUM_ID) } tmixd_dtype;
typedef enum { TMIXD_LAYOUTS(TMIXD_ENUM_ID) } tmixd_layout;
typedef enum { TMIXD_PRECISIONS(TMIXD_ENUM_ID) } tmixd_precision;
#undef TMIXD_ENUM_ID

// A list of floats; count 0 (values NULL) is `auto`.
typedef struct {
    float *values; // [count], owned
    int count;
} tmixd_floats;

// The most numbers a floats setting holds.
#define TMIXD_FLOATS_MAX 64

#define TMIXD_FIELD_STR(s, k, ...) char *s##_##k; // owned, never NULL
#define TMIXD_FIELD_INT(s, k, ...) int s##_##k;
#define TMIXD_FIELD_U64(s, k, ...) uint64_t s##_##k;
#define TMIXD_FIELD_DBL(s, k, ...) double s##_##k;
#define TMIXD_FIELD_BOOL(s, k, ...) bool s##_##k;
#define TMIXD_FIELD_ENUM(s, k, ctype, ...) ctype s##_##k;
#define TMIXD_FIELD_FLOATS(s, k, ...) tmixd_floats s##_##k;
typedef struct {
    TMIXD_SETTINGS(TMIXD_FIELD_STR, TMIXD_FIELD_INT, TMIXD_FIELD_U64, TMIXD_FIELD_DBL,
                   TMIXD_FIELD_BOOL, TMIXD_FIELD_ENUM, TMIXD_FIELD_FLOATS)
} tmixd_config;
#undef TMIXD_FIELD_STR
#undef TMIXD_FIELD_INT
#undef TMIXD_FIELD_U64
#undef TMIXD_FIELD_DBL
#undef TMIXD_FIELD_BOOL
#undef TMIXD_FIELD_ENUM
#undef TMIXD_FIELD_FLOATS

// Fills cfg (uninitialised memory) with the embedded default config. Whatever any function
// here returns, cfg may then be passed to tmixd_config_free.
int tmixd_config_defaults(tmixd_config *cfg);

// Applies the settings of an INI file to cfg, in file order; errors name path:line. Settings
// before a failing line stay applied.
int tmixd_config_load_file(tmixd_config *cfg, const char *path);

// Sets one setting from text, e.g. ("mix.alpha", "0.4", "command line"); origin starts the
// error message ("command line", "FILE:LINE"). On failure the setting keeps its value.
int tmixd_config_set(tmixd_config *cfg, const char *section_key, const char *value,
                     const char *origin);

// Builds the config of `tmixd serve` from its arguments after the command: `-c FILE`,
// `--config FILE` or `--config=FILE` at most once, and any number of --section.key=value.
// Order: defaults, then the file, then the overrides in argument order (wherever they
// stand), then tmixd_config_check. Anything else is an error naming the argument.
int tmixd_config_from_args(tmixd_config *cfg, int argc, char **argv);

// Checks what no single setting can: [augment] scale_min <= scale_max, and mean and std of
// the same length when both are given.
int tmixd_config_check(const tmixd_config *cfg);

// Frees the strings and lists of cfg (not cfg itself).
void tmixd_config_free(tmixd_config *cfg);

// Writes every setting as INI, section by section, each key after a comment with its
// meaning and a comment with its type, bounds, default and, for a reloadable one, how to
// change it while tmixd runs (`tmixd serve --print-config`).
void tmixd_config_write(const tmixd_config *cfg, FILE *f);

// The value of one setting ("mix.method") as it would be written to a config file, into
// buf[n]. Unknown keys are TMIX_EINVAL; a value that does not fit, TMIX_EINVAL too.
int tmixd_config_get(const tmixd_config *cfg, const char *section_key, char *buf, size_t n);

// Whether the setting ("server.log_level") may change while tmixd runs; false when unknown.
bool tmixd_config_reloadable(const char *section_key);

// The endpoint used when [server] endpoint is empty: ipc:///run/tmix/tmixd.sock as root
// (uid 0), else ipc://$XDG_RUNTIME_DIR/tmix/tmixd.sock, or ipc:///tmp/tmix-UID/tmixd.sock
// when XDG_RUNTIME_DIR is unset. Into buf[n]; TMIX_EINVAL when it does not fit.
int tmixd_default_endpoint(char *buf, size_t n);

// The state directory used when [server] state_dir is empty: /var/lib/tmix as root, else
// $XDG_STATE_HOME/tmix, else $HOME/.local/state/tmix (TMIX_EINVAL when neither is set).
int tmixd_default_state_dir(char *buf, size_t n);

#endif
