#include "conf_test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[512];

// Removes the scratch directory and what is in it (files, and empty directories).
static void remove_scratch(void)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            if (unlink(scratch_path(e->d_name)) != 0)
                rmdir(scratch_path(e->d_name));
    closedir(d);
    rmdir(dir);
}

const char *scratch_dir(void)
{
    if (dir[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/tmix-conf-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (mkdtemp(dir) == NULL) {
            perror(dir);
            exit(1);
        }
        atexit(remove_scratch);
    }
    return dir;
}

const char *scratch_path(const char *name)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", scratch_dir(), name);
    return path;
}

int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        len += fread(buf + len, 1, cap - 1 - len, f);
        if (len < cap - 1)
            break;
        buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

int check_message_(int rc, int code, const char *want, const char *expr, const char *file,
                   int line)
{
    if (check_err_(rc, code, expr, file, line) != 0)
        return 1;
    if (strcmp(tmix_last_error(), want) != 0) {
        fprintf(stderr, "%s:%d: %s: message\n  got:  %s\n  want: %s\n", file, line, expr,
                tmix_last_error(), want);
        return 1;
    }
    return 0;
}
