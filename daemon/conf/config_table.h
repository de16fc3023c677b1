// Inside the config code: one descriptor per row of settings.h (where its field lives, its
// bounds and words), and the text <-> value conversions every setting goes through.
#ifndef TMIXD_CONFIG_TABLE_H
#define TMIXD_CONFIG_TABLE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

typedef enum {
    TMIXD_KIND_STR,
    TMIXD_KIND_INT,
    TMIXD_KIND_U64,
    TMIXD_KIND_DBL,
    TMIXD_KIND_BOOL,
    TMIXD_KIND_ENUM,
    TMIXD_KIND_FLOATS,
} tmixd_setting_kind;

// The tokens of the table's reload and low-bound columns.
enum { TMIXD_FIXED = 0, TMIXD_RELOAD = 1 };
enum { TMIXD_GE = 0, TMIXD_GT = 1 };

typedef struct {
    const char *section, *key;
    const char *def;    // the default, as text
    const char *doc;
    tmixd_setting_kind kind;
    size_t offset;      // of the field in tmixd_config
    bool reloadable;
    double lo, hi;      // INT, DBL, FLOATS: the bounds; -HUGE_VAL / HUGE_VAL when open-ended
    bool lo_open;       // DBL, FLOATS: lo itself is out of range
    const char *const *words; // ENUM: the words, NULL-terminated; the value is an index
} tmixd_setting;

// The table, in settings.h order (sections are contiguous).
extern const tmixd_setting tmixd_settings[];
extern const int tmixd_setting_count;

// The descriptor of section.key; NULL when there is none.
const tmixd_setting *tmixd_setting_find(const char *section, const char *key);
// The same by its full name, "section.key"; NULL when there is none.
const tmixd_setting *tmixd_setting_named(const char *section_key);
bool tmixd_section_known(const char *section);

// The TMIX_EINVAL for a section.key that has no descriptor: "WHERE: SUBJECT: unknown
// section [S] (sections: ...)" or "...: unknown key 'K' in [S] (keys: ...)".
int tmixd_fail_unknown(const char *section, const char *key, const char *where,
                       const char *subject);

// Parses text as the value of s and stores it in cfg, or fails with TMIX_EINVAL and the
// message "WHERE: SUBJECT: reason" (unknown section or key, or a bad value); cfg is then
// unchanged. section "" is a key before any [section] header.
int tmixd_setting_apply(tmixd_config *cfg, const char *section, const char *key,
                        const char *text, const char *where, const char *subject);

// A growing text buffer with snprintf semantics: len counts every character appended, even
// those that did not fit in cap (so a first pass with cap 0 measures).
typedef struct {
    char *buf;
    size_t cap, len;
} tmixd_text;

void tmixd_text_printf(tmixd_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// A value parsed from text, not yet stored; str and floats.values are owned.
typedef struct {
    char *str;
    long i; // INT, BOOL, ENUM (the word's index)
    uint64_t u;
    double d;
    tmixd_floats floats;
} tmixd_value;

// 0, TMIX_EINVAL with the reason (e.g. "out of range [2, 3]") in why[n], or TMIX_ENOMEM.
int tmixd_value_parse(const tmixd_setting *s, const char *text, tmixd_value *v, char *why,
                      size_t n);
// Moves v into the field of s in cfg, freeing the value it replaces.
void tmixd_value_store(const tmixd_setting *s, tmixd_config *cfg, tmixd_value *v);
// Frees what the field of s in cfg owns.
void tmixd_value_free(const tmixd_setting *s, tmixd_config *cfg);
// Appends the value of s in cfg as config-file text.
void tmixd_value_format(const tmixd_setting *s, const tmixd_config *cfg, tmixd_text *t);
// Appends the type of s with its bounds or words, e.g. "integer in [2, 3]".
void tmixd_setting_describe(const tmixd_setting *s, tmixd_text *t);

// Applies INI text to cfg; name (a path, or the embedded file's name) starts the messages
// "NAME:LINE: ...". Stops at the first error.
int tmixd_config_parse_text(tmixd_config *cfg, const char *text, const char *name);

// Applies one command-line override "--section.key=value"; errors start "command line: ARG:".
int tmixd_config_apply_arg(tmixd_config *cfg, const char *arg);

// deploy/tmixd.conf, compiled in by embed.py.
extern const char tmixd_default_config_text[];

#endif
