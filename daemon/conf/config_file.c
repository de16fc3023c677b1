// Config files: inih parses, fed line by line by a reader of our own. Debian's inih is built
// without INI_HANDLER_LINENO, so the reader counts lines for the messages; it also strips
// leading blanks (inih would read an indented line as the continuation of the previous
// value), rejects over-long lines (inih would cut them in two) and checks each line's shape
// so that the first error reported is the first in the file.
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

#include "config_table.h"
#include "error.h"

typedef struct {
    tmixd_config *cfg;
    const char *name; // the file, for messages
    const char *next; // the text not yet handed to inih
    int line;         // the number of the line inih works on
    int rc;           // the first failure
} ini_feed;

static bool is_comment(const char *p)
{
    return *p == ';' || *p == '#';
}

// Checks one line (without its leading blanks and newline, len chars) before inih sees it:
// section headers must close and name a section, other lines need '=' or ':'.
static int check_line(ini_feed *f, const char *p, size_t len)
{
    if (len == 0 || is_comment(p))
        return 0;
    if (*p == '[') {
        const char *close = memchr(p, ']', len);
        if (close == NULL)
            return tmix_fail(TMIX_EINVAL, "%s:%d: %.*s: section header without ']'", f->name,
                             f->line, (int)len, p);
        char section[64];
        snprintf(section, sizeof section, "%.*s", (int)(close - p - 1), p + 1);
        if (tmixd_section_known(section))
            return 0;
        char where[300], header[80];
        snprintf(where, sizeof where, "%s:%d", f->name, f->line);
        snprintf(header, sizeof header, "%.*s", (int)(close - p + 1), p);
        return tmixd_fail_unknown(section, "", where, header);
    }
    if (memchr(p, '=', len) == NULL && memchr(p, ':', len) == NULL)
        return tmix_fail(TMIX_EINVAL, "%s:%d: '%.*s': not a setting (expected key = value, "
                         "[section] or a # comment)", f->name, f->line, (int)len, p);
    return 0;
}

// inih's ini_reader: copies the next line into str[num] (fgets style) or says the end.
static char *read_line(char *str, int num, void *stream)
{
    ini_feed *f = stream;
    if (f->rc < 0 || *f->next == '\0')
        return NULL;
    const char *p = f->next;
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    f->next = eol ? eol + 1 : p + len;
    f->line++;
    if (f->line == 1 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) { // UTF-8 byte order mark
        p += 3;
        len -= 3;
    }
    while (len > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    while (len > 0 && p[len - 1] == '\r')
        len--;
    if (len + 2 > (size_t)num) {
        if (!is_comment(p)) {
            f->rc = tmix_fail(TMIX_EINVAL, "%s:%d: line longer than %d characters", f->name,
                              f->line, num - 2);
            return NULL;
        }
        len = (size_t)num - 2; // the rest of a long comment does not matter
    }
    f->rc = check_line(f, p, len);
    if (f->rc < 0)
        return NULL;
    memcpy(str, p, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

static int on_setting(void *user, const char *section, const char *key, const char *value)
{
    ini_feed *f = user;
    char where[300], subject[512];
    snprintf(where, sizeof where, "%s:%d", f->name, f->line);
    snprintf(subject, sizeof subject, "[%s] %s = '%s'", section, key, value);
    f->rc = tmixd_setting_apply(f->cfg, section, key, value, where, subject);
    return f->rc == 0;
}

int tmixd_config_parse_text(tmixd_config *cfg, const char *text, const char *name)
{
    ini_feed f = {cfg, name, text, 0, 0};
    int r = ini_parse_stream(read_line, &f, on_setting, &f);
    if (f.rc < 0)
        return f.rc;
    if (r == -2)
        return tmix_fail(TMIX_ENOMEM, "%s: out of memory", name);
    if (r != 0) // check_line lets through nothing inih refuses; kept as a safety net
        return tmix_fail(TMIX_EINVAL, "%s:%d: not a valid INI line", name, r);
    return 0;
}

// Reads the whole file at path into a NUL-terminated string (*text, owned).
static int read_file(const char *path, char **text)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return tmix_fail(errno == ENOENT ? TMIX_ENOENT : TMIX_EIO,
                         "config file %s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        len += fread(buf + len, 1, cap - 1 - len, fp);
        if (len < cap - 1)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (bigger == NULL)
            free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(fp), err = errno;
    fclose(fp);
    if (buf == NULL)
        return tmix_fail(TMIX_ENOMEM, "config file %s: out of memory", path);
    if (failed) {
        free(buf);
        return tmix_fail(TMIX_EIO, "config file %s: cannot read: %s", path, strerror(err));
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        free(buf);
        return tmix_fail(TMIX_EINVAL, "config file %s: contains a NUL byte (not a text file)",
                         path);
    }
    *text = buf;
    return 0;
}

int tmixd_config_load_file(tmixd_config *cfg, const char *path)
{
    char *text = NULL;
    TMIX_TRY(read_file(path, &text));
    int rc = tmixd_config_parse_text(cfg, text, path);
    free(text);
    return rc;
}
