// The settings table made from settings.h, and the operations that walk it: defaults, set,
// write, get, free.
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "config_table.h"
#include "error.h"

#define ROW(s, k, kind_, def_, lo_, hi_, lo_open_, words_, reload, doc_)                   \
    {.section = #s, .key = #k, .def = def_, .doc = doc_, .kind = kind_,                    \
     .offset = offsetof(tmixd_config, s##_##k), .reloadable = TMIXD_##reload, .lo = lo_,   \
     .hi = hi_, .lo_open = lo_open_, .words = words_},
#define ROW_STR(s, k, def, reload, doc) ROW(s, k, TMIXD_KIND_STR, def, 0, 0, 0, NULL, reload, doc)
#define ROW_INT(s, k, def, lo, hi, reload, doc)                                            \
    ROW(s, k, TMIXD_KIND_INT, #def, lo, hi, 0, NULL, reload, doc)
#define ROW_U64(s, k, def, reload, doc) ROW(s, k, TMIXD_KIND_U64, #def, 0, 0, 0, NULL, reload, doc)
#define ROW_DBL(s, k, def, lo_kind, lo, hi, reload, doc)                                   \
    ROW(s, k, TMIXD_KIND_DBL, #def, lo, hi, TMIXD_##lo_kind, NULL, reload, doc)
#define ROW_BOOL(s, k, def, reload, doc) ROW(s, k, TMIXD_KIND_BOOL, #def, 0, 0, 0, NULL, reload, doc)
#define ROW_WORD(id, word) word,
#define ROW_ENUM(s, k, ctype, WORDS, def, reload, doc)                                     \
    ROW(s, k, TMIXD_KIND_ENUM, def, 0, 0, 0, ((const char *const[]){WORDS(ROW_WORD) NULL}), \
        reload, doc)
#define ROW_FLOATS(s, k, def, lo_kind, lo, hi, reload, doc)                                \
    ROW(s, k, TMIXD_KIND_FLOATS, def, lo, hi, TMIXD_##lo_kind, NULL, reload, doc)

const tmixd_setting tmixd_settings[] = {
    TMIXD_SETTINGS(ROW_STR, ROW_INT, ROW_U64, ROW_DBL, ROW_BOOL, ROW_ENUM, ROW_FLOATS)};
const int tmixd_setting_count = (int)(sizeof tmixd_settings / sizeof tmixd_settings[0]);

// Enum fields are read and written as int (config_values.c).
#define NO_CHECK(...)
#define ENUM_IS_INT(s, k, ctype, ...)                                                      \
    _Static_assert(sizeof(ctype) == sizeof(int), #ctype " is stored as an int");
TMIXD_SETTINGS(NO_CHECK, NO_CHECK, NO_CHECK, NO_CHECK, NO_CHECK, ENUM_IS_INT, NO_CHECK)

const tmixd_setting *tmixd_setting_find(const char *section, const char *key)
{
    for (int i = 0; i < tmixd_setting_count; i++)
        if (strcmp(tmixd_settings[i].section, section) == 0 &&
            strcmp(tmixd_settings[i].key, key) == 0)
            return &tmixd_settings[i];
    return NULL;
}

bool tmixd_section_known(const char *section)
{
    for (int i = 0; i < tmixd_setting_count; i++)
        if (strcmp(tmixd_settings[i].section, section) == 0)
            return true;
    return false;
}

// Appends the names of the sections, or of the keys of one section: "server, dataset, ...".
static void list_names(tmixd_text *t, const char *section)
{
    const char *last = "";
    for (int i = 0; i < tmixd_setting_count; i++) {
        const tmixd_setting *s = &tmixd_settings[i];
        if (section ? strcmp(s->section, section) != 0 : strcmp(s->section, last) == 0)
            continue;
        tmixd_text_printf(t, "%s%s", t->len ? ", " : "", section ? s->key : s->section);
        last = s->section;
    }
}

int tmixd_fail_unknown(const char *section, const char *key, const char *where,
                       const char *subject)
{
    char names[256];
    tmixd_text t = {names, sizeof names, 0};
    if (section[0] == '\0')
        return tmix_fail(TMIX_EINVAL, "%s: %s: key before any [section]", where, subject);
    if (!tmixd_section_known(section)) {
        list_names(&t, NULL);
        return tmix_fail(TMIX_EINVAL, "%s: %s: unknown section [%s] (sections: %s)", where,
                         subject, section, names);
    }
    list_names(&t, section);
    return tmix_fail(TMIX_EINVAL, "%s: %s: unknown key '%s' in [%s] (keys: %s)", where, subject,
                     key, section, names);
}

int tmixd_setting_apply(tmixd_config *cfg, const char *section, const char *key,
                        const char *text, const char *where, const char *subject)
{
    const tmixd_setting *s = tmixd_setting_find(section, key);
    if (s == NULL)
        return tmixd_fail_unknown(section, key, where, subject);
    tmixd_value v;
    char why[256];
    int rc = tmixd_value_parse(s, text, &v, why, sizeof why);
    if (rc == TMIX_ENOMEM)
        return tmix_fail(rc, "%s: %s: out of memory", where, subject);
    if (rc < 0)
        return tmix_fail(rc, "%s: %s: %s", where, subject, why);
    tmixd_value_store(s, cfg, &v);
    return 0;
}

// Splits "section.key" at its first dot: the section into buf[n] (cut short when longer, as
// it then names no section anyway), the key after it. False when there is no dot.
static bool split_name(const char *section_key, char *buf, size_t n, const char **key)
{
    const char *dot = strchr(section_key, '.');
    if (dot == NULL)
        return false;
    snprintf(buf, n, "%.*s", (int)(dot - section_key), section_key);
    *key = dot + 1;
    return true;
}

const tmixd_setting *tmixd_setting_named(const char *section_key)
{
    char section[64];
    const char *key;
    if (!split_name(section_key, section, sizeof section, &key))
        return NULL;
    return tmixd_setting_find(section, key);
}

int tmixd_config_set(tmixd_config *cfg, const char *section_key, const char *value,
                     const char *origin)
{
    char section[64];
    const char *key;
    if (!split_name(section_key, section, sizeof section, &key))
        return tmix_fail(TMIX_EINVAL, "%s: %s = '%s': not a setting name (expected section.key)",
                         origin, section_key, value);
    char subject[512];
    snprintf(subject, sizeof subject, "[%s] %s = '%s'", section, key, value);
    return tmixd_setting_apply(cfg, section, key, value, origin, subject);
}

int tmixd_config_apply_arg(tmixd_config *cfg, const char *arg)
{
    char section[64];
    const char *key;
    const char *eq = strchr(arg, '=');
    if (strncmp(arg, "--", 2) != 0 || eq == NULL ||
        !split_name(arg + 2, section, sizeof section, &key) || key > eq || section[0] == '\0')
        return tmix_fail(TMIX_EINVAL, "command line: %s: not an option (expected -c FILE, "
                         "--config=FILE or --section.key=value)", arg);
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(eq - key), key);
    return tmixd_setting_apply(cfg, section, name, eq + 1, "command line", arg);
}

int tmixd_config_defaults(tmixd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < tmixd_setting_count; i++) {
        const tmixd_setting *s = &tmixd_settings[i];
        TMIX_TRY(tmixd_setting_apply(cfg, s->section, s->key, s->def, "settings.h", s->key));
    }
    return tmixd_config_parse_text(cfg, tmixd_default_config_text, "deploy/tmixd.conf (embedded)");
}

void tmixd_config_free(tmixd_config *cfg)
{
    for (int i = 0; i < tmixd_setting_count; i++)
        tmixd_value_free(&tmixd_settings[i], cfg);
}

int tmixd_config_get(const tmixd_config *cfg, const char *section_key, char *buf, size_t n)
{
    const tmixd_setting *s = tmixd_setting_named(section_key);
    if (s == NULL)
        return tmix_fail(TMIX_EINVAL, "config: no setting '%s'", section_key);
    tmixd_text t = {buf, n, 0};
    tmixd_value_format(s, cfg, &t);
    if (t.len >= n)
        return tmix_fail(TMIX_EINVAL, "config: %s: value longer than %zu bytes", section_key,
                         n - 1);
    return 0;
}

bool tmixd_config_reloadable(const char *section_key)
{
    const tmixd_setting *s = tmixd_setting_named(section_key);
    return s != NULL && s->reloadable;
}

// Writes the value of s as text; values have no length limit, so measure first.
static void write_value(const tmixd_setting *s, const tmixd_config *cfg, FILE *f)
{
    tmixd_text t = {NULL, 0, 0};
    tmixd_value_format(s, cfg, &t);
    t.buf = malloc(t.len + 1);
    if (t.buf == NULL)
        return;
    t.cap = t.len + 1;
    t.len = 0;
    tmixd_value_format(s, cfg, &t);
    fprintf(f, "%s%s", t.len ? " " : "", t.buf);
    free(t.buf);
}

// Writes text as comment lines of at most 100 columns, broken at blanks.
static void write_comment(FILE *f, const char *text)
{
    const size_t width = 98;
    while (*text) {
        size_t n = strlen(text);
        if (n > width) {
            n = width;
            while (n > 0 && text[n] != ' ')
                n--;
            if (n == 0) // one long word: its own line
                n = strcspn(text, " ");
        }
        fprintf(f, "# %.*s\n", (int)n, text);
        text += n;
        while (*text == ' ')
            text++;
    }
}

void tmixd_config_write(const tmixd_config *cfg, FILE *f)
{
    const char *section = NULL;
    for (int i = 0; i < tmixd_setting_count; i++) {
        const tmixd_setting *s = &tmixd_settings[i];
        if (section == NULL || strcmp(section, s->section) != 0)
            fprintf(f, "%s[%s]\n", section ? "\n" : "", s->section);
        else
            fputc('\n', f);
        section = s->section;
        char type[512];
        tmixd_text t = {type, sizeof type, 0};
        tmixd_setting_describe(s, &t);
        tmixd_text_printf(&t, "; default %s", s->def[0] ? s->def : "empty");
        if (s->reloadable)
            tmixd_text_printf(&t, "; reloadable: tmixctl config set %s.%s VALUE", s->section,
                              s->key);
        write_comment(f, s->doc);
        write_comment(f, type);
        fprintf(f, "%s =", s->key);
        write_value(s, cfg, f);
        fputc('\n', f);
    }
}

int tmixd_config_check(const tmixd_config *cfg)
{
    if (cfg->augment_scale_min > cfg->augment_scale_max)
        return tmix_fail(TMIX_EINVAL, "config: [augment] scale_min = %g is above [augment] "
                         "scale_max = %g", cfg->augment_scale_min, cfg->augment_scale_max);
    int means = cfg->augment_mean.count, stds = cfg->augment_std.count;
    if (means && stds && means != stds)
        return tmix_fail(TMIX_EINVAL, "config: [augment] mean has %d numbers but [augment] std "
                         "has %d", means, stds);
    return 0;
}
