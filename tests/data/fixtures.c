// See fixtures.h.
#include "fixtures.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "error.h"

static char dir[512];

const char *fixture_dir(void)
{
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/tmix-data-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            perror(dir);
            dir[0] = '\0';
            return NULL;
        }
    }
    return dir;
}

const char *fixture_path(const char *rel)
{
    static char paths[8][1024];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", fixture_dir(), rel);
    return p;
}

int fixture_mkdir(const char *rel)
{
    if (!fixture_dir())
        return -1;
    char path[1024];
    snprintf(path, sizeof path, "%s", fixture_path(rel));
    // Every '/' past the fixture folder ends a folder to make, then the whole path.
    for (char *s = path + strlen(dir) + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        const char saved = *s;
        *s = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            perror(path);
            return -1;
        }
        *s = saved;
        if (!saved)
            return 0;
    }
}

// Makes the folders above rel.
static int make_parent(const char *rel)
{
    const char *slash = strrchr(rel, '/');
    if (!slash)
        return fixture_dir() ? 0 : -1;
    char parent[1024];
    snprintf(parent, sizeof parent, "%.*s", (int)(slash - rel), rel);
    return fixture_mkdir(parent);
}

int fixture_write(const char *rel, const void *data, size_t n)
{
    if (make_parent(rel) != 0)
        return -1;
    FILE *f = fopen(fixture_path(rel), "wb");
    if (!f)
        return -1;
    const bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int fixture_write_gz(const char *rel, const void *data, size_t n)
{
    if (make_parent(rel) != 0)
        return -1;
    gzFile f = gzopen(fixture_path(rel), "wb");
    if (!f)
        return -1;
    const bool ok = n == 0 || gzwrite(f, data, (unsigned)n) == (int)n;
    return gzclose(f) == Z_OK && ok ? 0 : -1;
}

int fixture_truncate(const char *rel, size_t n)
{
    return truncate(fixture_path(rel), (off_t)n);
}

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dp = opendir(path);
        struct dirent *e;
        while (dp && (e = readdir(dp))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        if (dp)
            closedir(dp);
        rmdir(path);
    } else {
        unlink(path);
    }
}

void fixture_cleanup(void)
{
    if (dir[0])
        remove_tree(dir);
    dir[0] = '\0';
}

int fixture_test_main(int argc, char **argv, const test_case *tests)
{
    const int rc = test_main(argc, argv, tests);
    fixture_cleanup();
    return rc;
}

bool error_mentions(const char *text)
{
    if (strstr(tmix_last_error(), text))
        return true;
    fprintf(stderr, "error message \"%s\" does not mention \"%s\"\n", tmix_last_error(), text);
    return false;
}

int fixture_read_scaled(const tmixd_dataset *ds, int64_t i, int h, int w, int scale,
                        tmixd_image *img)
{
    const int sh = (h + scale - 1) / scale, sw = (w + scale - 1) / scale; // libjpeg's sizes
    CHECK_OK(tmixd_dataset_read(ds, i, scale > 1 ? sh : 0, scale > 1 ? sw : 0, img));
    CHECK(img->h == sh && img->w == sw && img->top == 0 && img->left == 0);
    return 0;
}
