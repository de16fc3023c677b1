// The imagefolder reader, as torchvision's ImageFolder: root/<class>/**/<image>, classes the
// sorted subfolder names, files listed in the order of
//   for dir, _, names in sorted(os.walk(class_dir, followlinks=True)): sorted(names)
// keeping .jpg, .jpeg and .png (any case). Each read decodes one file.
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "dataset_impl.h"
#include "decode.h"
#include "error.h"

// Deeper nesting than this inside a class folder is taken for a symlink loop.
enum { MAX_DEPTH = 32 };

struct tmixd_folder {
    char *paths;     // every file's full path, NUL-terminated, one after the other
    size_t *offsets; // [n] where each path starts in paths
    size_t paths_used, paths_cap, count_cap;
    // Decoders not in use: a reader takes one (or makes one) and gives it back.
    pthread_mutex_t lock;
    tmixd_decoder **idle;
    int idle_count, idle_cap;
};

// A growable list of strings (owned).
typedef struct {
    char **items;
    size_t count, cap;
} str_list;

static int list_push(str_list *l, const char *s)
{
    if (l->count == l->cap) {
        const size_t cap = l->cap ? 2 * l->cap : 16;
        char **items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory listing files");
        l->items = items;
        l->cap = cap;
    }
    if (!(l->items[l->count] = strdup(s)))
        return tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory listing files");
    l->count++;
    return 0;
}

static void list_free(str_list *l)
{
    for (size_t k = 0; k < l->count; k++)
        free(l->items[k]);
    free(l->items);
    *l = (str_list){0};
}

static int by_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_sort(str_list *l)
{
    if (l->count > 1)
        qsort(l->items, l->count, sizeof *l->items, by_strcmp);
}

static bool is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                   strcasecmp(dot, ".png") == 0);
}

static char *join(const char *dir, const char *name)
{
    const size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s/%s", dir, name);
    return p;
}

// Lists dir's entries (symlinks followed): subfolder paths into dirs, image file paths into
// files; either may be NULL to skip that kind.
static int list_dir(const char *dir, str_list *dirs, str_list *files)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return tmix_fail(errno == ENOENT ? TMIX_ENOENT : TMIX_EIO, "imagefolder: %s: %s", dir,
                         strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(dp))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *path = join(dir, e->d_name);
        struct stat st;
        if (!path)
            rc = tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory listing %s", dir);
        else if (stat(path, &st) != 0)
            ; // a dangling symlink: neither a folder nor a file, like os.walk sees it
        else if (dirs && S_ISDIR(st.st_mode))
            rc = list_push(dirs, path);
        else if (files && S_ISREG(st.st_mode) && is_image_name(e->d_name))
            rc = list_push(files, path);
        free(path);
    }
    closedir(dp);
    return rc;
}

// The image files under dir (itself included), at most MAX_DEPTH folders down, into files.
static int walk(const char *dir, int depth, str_list *files)
{
    if (depth > MAX_DEPTH)
        return tmix_fail(TMIX_EFORMAT,
                         "imagefolder: %s is nested more than %d folders deep (a symlink loop?)",
                         dir, MAX_DEPTH);
    str_list subdirs = {0};
    int rc = list_dir(dir, &subdirs, files);
    for (size_t k = 0; rc == 0 && k < subdirs.count; k++)
        rc = walk(subdirs.items[k], depth + 1, files);
    list_free(&subdirs);
    return rc;
}

// torchvision's file order: by folder path (strcmp, so "s" < "s-u" < "s/t"), then by name.
static int by_folder_then_name(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    const size_t dx = (size_t)(strrchr(x, '/') - x), dy = (size_t)(strrchr(y, '/') - y);
    const int c = strncmp(x, y, dx < dy ? dx : dy);
    if (c != 0 || dx != dy)
        return c != 0 ? c : dx < dy ? -1 : 1;
    return strcmp(x + dx + 1, y + dy + 1);
}

// Appends one file of class `label` to the list.
static int add_file(tmixd_dataset *ds, const char *path, int label)
{
    tmixd_folder *f = ds->folder;
    if ((size_t)ds->n == f->count_cap) {
        const size_t grown = f->count_cap ? 2 * f->count_cap : 1024;
        size_t *offs = realloc(f->offsets, grown * sizeof *offs);
        if (offs)
            f->offsets = offs;
        int32_t *labels = offs ? realloc(ds->labels, grown * sizeof *labels) : NULL;
        if (!labels)
            return tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory listing files");
        ds->labels = labels;
        f->count_cap = grown;
    }
    const size_t len = strlen(path) + 1;
    if (f->paths_used + len > f->paths_cap) {
        const size_t grown =
            f->paths_cap * 2 > f->paths_used + len ? f->paths_cap * 2 : f->paths_used + len + 4096;
        char *p = realloc(f->paths, grown);
        if (!p)
            return tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory storing file names");
        f->paths = p;
        f->paths_cap = grown;
    }
    memcpy(f->paths + f->paths_used, path, len);
    f->offsets[ds->n] = f->paths_used;
    f->paths_used += len;
    ds->labels[ds->n++] = label;
    return 0;
}

// The image files of one class folder, in torchvision's order, appended as class `label`.
static int add_class(tmixd_dataset *ds, const char *class_dir, int label)
{
    str_list files = {0};
    int rc = walk(class_dir, 0, &files);
    if (rc == 0 && files.count == 0)
        rc = tmix_fail(TMIX_EFORMAT,
                       "imagefolder: class folder %s holds no .jpg, .jpeg or .png file", class_dir);
    if (files.count > 1)
        qsort(files.items, files.count, sizeof *files.items, by_folder_then_name);
    for (size_t k = 0; rc == 0 && k < files.count; k++)
        rc = add_file(ds, files.items[k], label);
    list_free(&files);
    return rc;
}

// The folder a split reads: path/<split> (for test also path/val), or path itself for train.
static int find_root(const char *path, bool train, char **root)
{
    const char *tries[] = {train ? "train" : "test", train ? NULL : "val"};
    struct stat st;
    for (int k = 0; k < 2 && tries[k]; k++) {
        if (!(*root = join(path, tries[k])))
            return tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory");
        if (stat(*root, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        free(*root);
        *root = NULL;
    }
    if (train && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return (*root = strdup(path)) ? 0 : tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory");
    if (train)
        return tmix_fail(TMIX_ENOENT, "imagefolder: neither %s/train nor %s is a folder", path,
                         path);
    return tmix_fail(TMIX_ENOENT, "imagefolder: neither %s/test nor %s/val is a folder", path,
                     path);
}

static int load_classes(tmixd_dataset *ds, const char *root)
{
    str_list classes = {0};
    int rc = list_dir(root, &classes, NULL);
    list_sort(&classes);
    if (rc == 0 && classes.count == 0)
        rc = tmix_fail(TMIX_EFORMAT, "imagefolder: %s holds no class folders", root);
    if (rc == 0 && classes.count > 1000000)
        rc = tmix_fail(TMIX_EFORMAT, "imagefolder: %s holds %zu class folders (at most 1000000)",
                       root, classes.count);
    if (rc == 0 && !(ds->class_names = calloc(classes.count, sizeof *ds->class_names)))
        rc = tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory");
    for (size_t k = 0; rc == 0 && k < classes.count; k++) {
        // The class name is the folder's own name, past "root/".
        ds->class_names[k] = strdup(classes.items[k] + strlen(root) + 1);
        ds->classes = (int)k + 1;
        rc = ds->class_names[k] ? add_class(ds, classes.items[k], (int)k)
                                : tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory");
    }
    list_free(&classes);
    return rc;
}

int tmixd_imagefolder_load(tmixd_dataset *ds, const char *path, bool train)
{
    if (!(ds->folder = calloc(1, sizeof *ds->folder)))
        return tmix_fail(TMIX_ENOMEM, "imagefolder: out of memory");
    if (pthread_mutex_init(&ds->folder->lock, NULL) != 0) {
        free(ds->folder);
        ds->folder = NULL;
        return tmix_fail(TMIX_ENOMEM, "imagefolder: cannot create a mutex");
    }
    ds->channels = 3;
    char *root = NULL;
    int rc = find_root(path, train, &root);
    if (rc == 0)
        rc = load_classes(ds, root);
    free(root);
    return rc;
}

int tmixd_imagefolder_read(tmixd_folder *f, int64_t i, int min_h, int min_w,
                           tmixd_window_fn window, void *ctx, tmixd_image *img)
{
    tmixd_decoder *d = NULL;
    pthread_mutex_lock(&f->lock);
    if (f->idle_count > 0)
        d = f->idle[--f->idle_count];
    pthread_mutex_unlock(&f->lock);
    if (!d && !(d = tmixd_decoder_new()))
        return tmix_fail(TMIX_ENOMEM, "imagefolder: cannot create a decoder for sample %lld",
                         (long long)i);
    const int rc =
        tmixd_decode_file(d, f->paths + f->offsets[i], i, min_h, min_w, window, ctx, img);
    pthread_mutex_lock(&f->lock);
    if (f->idle_count == f->idle_cap) {
        const int cap = f->idle_cap ? 2 * f->idle_cap : 8;
        tmixd_decoder **idle = realloc(f->idle, (size_t)cap * sizeof *idle);
        if (idle) {
            f->idle = idle;
            f->idle_cap = cap;
        }
    }
    if (f->idle_count < f->idle_cap) {
        f->idle[f->idle_count++] = d;
        d = NULL;
    }
    pthread_mutex_unlock(&f->lock);
    tmixd_decoder_free(d); // only when there was no room to keep it
    return rc;
}

void tmixd_imagefolder_free(tmixd_folder *f)
{
    if (!f)
        return;
    for (int k = 0; k < f->idle_count; k++)
        tmixd_decoder_free(f->idle[k]);
    free(f->idle);
    pthread_mutex_destroy(&f->lock);
    free(f->offsets);
    free(f->paths);
    free(f);
}
