// Text <-> value for every kind of setting: the parsing rules of config files and
// --section.key=value alike, and the canonical text that tmixd_config_write prints.
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_table.h"
#include "error.h"

void tmixd_text_printf(tmixd_text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = t->len < t->cap ? t->cap - t->len : 0;
    int k = vsnprintf(room ? t->buf + t->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0)
        t->len += (size_t)k;
}

static void *field_of(const tmixd_setting *s, const tmixd_config *cfg)
{
    return (char *)cfg + s->offset;
}

// The shortest %g text that reads back as x (as a double, or as a float when single),
// with every integer digit written out below 1e15 (86400, not 8.64e+04).
static void print_number(tmixd_text *t, double x, bool single)
{
    char buf[40];
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, x);
        double back = strtod(buf, NULL);
        if (single ? (float)back == (float)x : back == x)
            break;
    }
    if (fabs(x) >= 1 && fabs(x) < 1e15) {
        int integer_digits = (int)floor(log10(fabs(x))) + 1;
        if (digits < integer_digits)
            digits = integer_digits;
    }
    snprintf(buf, sizeof buf, "%.*g", digits, x);
    tmixd_text_printf(t, "%s", buf);
}

static void print_bounds(tmixd_text *t, const tmixd_setting *s)
{
    tmixd_text_printf(t, "%c", s->lo_open || isinf(s->lo) ? '(' : '[');
    print_number(t, s->lo, false);
    tmixd_text_printf(t, ", ");
    print_number(t, s->hi, false);
    tmixd_text_printf(t, "%c", isinf(s->hi) ? ')' : ']');
}

static bool unbounded(const tmixd_setting *s)
{
    return isinf(s->lo) && isinf(s->hi);
}

static void print_words(tmixd_text *t, const char *const *words)
{
    for (int i = 0; words[i]; i++)
        tmixd_text_printf(t, "%s%s", i ? ", " : "", words[i]);
}

void tmixd_setting_describe(const tmixd_setting *s, tmixd_text *t)
{
    switch (s->kind) {
    case TMIXD_KIND_STR:
        tmixd_text_printf(t, "string");
        return;
    case TMIXD_KIND_INT:
    case TMIXD_KIND_DBL:
        tmixd_text_printf(t, s->kind == TMIXD_KIND_INT ? "integer in " : "number in ");
        print_bounds(t, s);
        return;
    case TMIXD_KIND_U64:
        tmixd_text_printf(t, "integer in [0, %" PRIu64 "]", UINT64_MAX);
        return;
    case TMIXD_KIND_BOOL:
        tmixd_text_printf(t, "true or false (or yes/no, on/off, 1/0)");
        return;
    case TMIXD_KIND_ENUM:
        tmixd_text_printf(t, "one of ");
        print_words(t, s->words);
        return;
    case TMIXD_KIND_FLOATS:
        tmixd_text_printf(t, "comma-separated numbers");
        if (!unbounded(s)) {
            tmixd_text_printf(t, " in ");
            print_bounds(t, s);
        }
        tmixd_text_printf(t, ", or auto");
        return;
    }
}

// Writes "out of range BOUNDS" into why[n].
static int out_of_range(const tmixd_setting *s, const char *prefix, char *why, size_t n)
{
    tmixd_text t = {why, n, 0};
    tmixd_text_printf(&t, "%sout of range ", prefix);
    print_bounds(&t, s);
    return TMIX_EINVAL;
}

static int reason(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int reason(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return TMIX_EINVAL;
}

// strtod over the whole of text, which must start like a number (no blanks, no "inf").
static bool read_double(const char *text, double *x)
{
    if (text[0] == '\0' || !(isdigit((unsigned char)text[0]) || strchr("+-.", text[0])))
        return false;
    char *end;
    errno = 0;
    *x = strtod(text, &end);
    return end != text && *end == '\0' && !isnan(*x);
}

static bool in_bounds(const tmixd_setting *s, double x)
{
    return isfinite(x) && (s->lo_open ? x > s->lo : x >= s->lo) && x <= s->hi;
}

static int parse_int(const tmixd_setting *s, const char *text, long *out, char *why, size_t n)
{
    const char *digits = text + (text[0] == '-' || text[0] == '+');
    if (!isdigit((unsigned char)digits[0]))
        return reason(why, n, "not an integer");
    char *end;
    errno = 0;
    long x = strtol(text, &end, 10);
    if (*end != '\0')
        return reason(why, n, "not an integer");
    if (errno == ERANGE || x < s->lo || x > s->hi)
        return out_of_range(s, "", why, n);
    *out = x;
    return 0;
}

static int parse_u64(const char *text, uint64_t *out, char *why, size_t n)
{
    if (!isdigit((unsigned char)text[0]))
        return reason(why, n, "not an unsigned integer");
    char *end;
    errno = 0;
    unsigned long long x = strtoull(text, &end, 10);
    if (*end != '\0')
        return reason(why, n, "not an unsigned integer");
    if (errno == ERANGE || x > UINT64_MAX)
        return reason(why, n, "out of range [0, %" PRIu64 "]", UINT64_MAX);
    *out = x;
    return 0;
}

static int parse_double(const tmixd_setting *s, const char *text, double *out, char *why,
                        size_t n)
{
    if (!read_double(text, out))
        return reason(why, n, "not a number");
    if (!in_bounds(s, *out))
        return out_of_range(s, "", why, n);
    return 0;
}

static int parse_bool(const char *text, long *out, char *why, size_t n)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            *out = strcasecmp(text, yes[i]) == 0;
            return 0;
        }
    }
    return reason(why, n, "not a bool (true/false, yes/no, on/off, 1/0)");
}

static int parse_word(const tmixd_setting *s, const char *text, long *out, char *why, size_t n)
{
    for (int i = 0; s->words[i]; i++) {
        if (strcmp(text, s->words[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    tmixd_text t = {why, n, 0};
    tmixd_text_printf(&t, "not one of: ");
    print_words(&t, s->words);
    return TMIX_EINVAL;
}

// One comma-separated item of a floats list, without the blanks around it, into buf[n].
static const char *next_item(const char *p, char *buf, size_t n, bool *too_long)
{
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strcspn(p, ",");
    const char *next = p + len;
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    *too_long = len >= n;
    if (*too_long)
        len = n - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return next;
}

static int parse_floats(const tmixd_setting *s, const char *text, tmixd_floats *out, char *why,
                        size_t n)
{
    if (strcmp(text, "auto") == 0) {
        *out = (tmixd_floats){NULL, 0};
        return 0;
    }
    float values[TMIXD_FLOATS_MAX];
    int count = 0;
    const char *p = text;
    do {
        if (count == TMIXD_FLOATS_MAX)
            return reason(why, n, "more than %d numbers", TMIXD_FLOATS_MAX);
        char item[64];
        bool too_long;
        p = next_item(p, item, sizeof item, &too_long);
        double x;
        if (too_long || !read_double(item, &x))
            return reason(why, n, "item %d '%s' is not a number (expected numbers separated "
                                  "by commas, or auto)", count + 1, item);
        if (!in_bounds(s, x) || fabs(x) > FLT_MAX) {
            char prefix[96];
            snprintf(prefix, sizeof prefix, "item %d (%s) is ", count + 1, item);
            return out_of_range(s, prefix, why, n);
        }
        values[count++] = (float)x;
    } while (*p++ == ',');
    out->values = malloc((size_t)count * sizeof(float));
    if (out->values == NULL)
        return TMIX_ENOMEM;
    memcpy(out->values, values, (size_t)count * sizeof(float));
    out->count = count;
    return 0;
}

// Config text cannot hold control characters, and `--print-config` must read back.
static int parse_string(const char *text, char **out, char *why, size_t n)
{
    for (const char *c = text; *c; c++)
        if (iscntrl((unsigned char)*c))
            return reason(why, n, "contains the control character 0x%02x", (unsigned char)*c);
    *out = strdup(text);
    return *out ? 0 : TMIX_ENOMEM;
}

int tmixd_value_parse(const tmixd_setting *s, const char *text, tmixd_value *v, char *why,
                      size_t n)
{
    memset(v, 0, sizeof *v);
    switch (s->kind) {
    case TMIXD_KIND_STR:
        return parse_string(text, &v->str, why, n);
    case TMIXD_KIND_INT:
        return parse_int(s, text, &v->i, why, n);
    case TMIXD_KIND_U64:
        return parse_u64(text, &v->u, why, n);
    case TMIXD_KIND_DBL:
        return parse_double(s, text, &v->d, why, n);
    case TMIXD_KIND_BOOL:
        return parse_bool(text, &v->i, why, n);
    case TMIXD_KIND_ENUM:
        return parse_word(s, text, &v->i, why, n);
    case TMIXD_KIND_FLOATS:
        return parse_floats(s, text, &v->floats, why, n);
    }
    return reason(why, n, "setting of unknown kind");
}

void tmixd_value_free(const tmixd_setting *s, tmixd_config *cfg)
{
    void *field = field_of(s, cfg);
    if (s->kind == TMIXD_KIND_STR) {
        free(*(char **)field);
        *(char **)field = NULL;
    } else if (s->kind == TMIXD_KIND_FLOATS) {
        free(((tmixd_floats *)field)->values);
        *(tmixd_floats *)field = (tmixd_floats){NULL, 0};
    }
}

void tmixd_value_store(const tmixd_setting *s, tmixd_config *cfg, tmixd_value *v)
{
    tmixd_value_free(s, cfg);
    void *field = field_of(s, cfg);
    switch (s->kind) {
    case TMIXD_KIND_STR:
        *(char **)field = v->str;
        break;
    case TMIXD_KIND_INT:
    case TMIXD_KIND_ENUM: // the enums of settings.h are int-sized (checked in config.c)
        *(int *)field = (int)v->i;
        break;
    case TMIXD_KIND_U64:
        *(uint64_t *)field = v->u;
        break;
    case TMIXD_KIND_DBL:
        *(double *)field = v->d;
        break;
    case TMIXD_KIND_BOOL:
        *(bool *)field = v->i != 0;
        break;
    case TMIXD_KIND_FLOATS:
        *(tmixd_floats *)field = v->floats;
        break;
    }
    memset(v, 0, sizeof *v);
}

void tmixd_value_format(const tmixd_setting *s, const tmixd_config *cfg, tmixd_text *t)
{
    const void *field = field_of(s, cfg);
    switch (s->kind) {
    case TMIXD_KIND_STR:
        tmixd_text_printf(t, "%s", *(char *const *)field ? *(char *const *)field : "");
        return;
    case TMIXD_KIND_INT:
        tmixd_text_printf(t, "%d", *(const int *)field);
        return;
    case TMIXD_KIND_U64:
        tmixd_text_printf(t, "%" PRIu64, *(const uint64_t *)field);
        return;
    case TMIXD_KIND_DBL:
        print_number(t, *(const double *)field, false);
        return;
    case TMIXD_KIND_BOOL:
        tmixd_text_printf(t, "%s", *(const bool *)field ? "true" : "false");
        return;
    case TMIXD_KIND_ENUM:
        tmixd_text_printf(t, "%s", s->words[*(const int *)field]);
        return;
    case TMIXD_KIND_FLOATS: {
        const tmixd_floats *list = field;
        if (list->count == 0)
            tmixd_text_printf(t, "auto");
        for (int i = 0; i < list->count; i++) {
            tmixd_text_printf(t, "%s", i ? ", " : "");
            print_number(t, list->values[i], true);
        }
        return;
    }
    }
}
