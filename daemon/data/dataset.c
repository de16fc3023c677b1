// The data set interface: open by format name, the getters, and reads of the in-memory
// formats (idx, cifar); imagefolder reads go to imagefolder.c.
#include "dataset_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

void tmixd_image_free(tmixd_image *img)
{
    free(img->data);
    *img = (tmixd_image){0};
}

int tmixd_image_reserve(tmixd_image *img, int h, int w, int c)
{
    if (h <= 0 || w <= 0 || c <= 0)
        return tmix_fail(TMIX_EINVAL, "image: size %dx%dx%d is not positive", h, w, c);
    const size_t need = (size_t)h * (size_t)w * (size_t)c;
    if (need > img->cap) {
        uint8_t *p = realloc(img->data, need);
        if (!p)
            return tmix_fail(TMIX_ENOMEM, "image: cannot allocate %zu bytes for %dx%dx%d", need, h,
                             w, c);
        img->data = p;
        img->cap = need;
    }
    img->h = h;
    img->w = w;
    img->c = c;
    img->top = img->left = 0;
    img->window = (tmixd_crop_box){0, 0, h, w};
    return 0;
}

int tmixd_number_classes(tmixd_dataset *ds, int classes)
{
    ds->class_names = calloc((size_t)classes, sizeof *ds->class_names);
    if (!ds->class_names)
        return tmix_fail(TMIX_ENOMEM, "dataset: cannot allocate %d class names", classes);
    ds->classes = classes;
    for (int k = 0; k < classes; k++) {
        char name[16];
        snprintf(name, sizeof name, "%d", k);
        if (!(ds->class_names[k] = strdup(name)))
            return tmix_fail(TMIX_ENOMEM, "dataset: cannot allocate class names");
    }
    return 0;
}

int tmixd_dataset_open(tmixd_dataset **out, const char *format, const char *path, const char *split)
{
    *out = NULL;
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
        return tmix_fail(TMIX_EINVAL, "dataset: split '%s' is not 'train' or 'test'", split);
    static const struct {
        const char *name;
        int (*load)(tmixd_dataset *ds, const char *path, bool train);
    } formats[] = {
        {"idx", tmixd_idx_load},
        {"cifar", tmixd_cifar_load},
        {"imagefolder", tmixd_imagefolder_load},
    };
    int (*load)(tmixd_dataset *, const char *, bool) = NULL;
    for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++)
        if (strcmp(format, formats[k].name) == 0)
            load = formats[k].load;
    if (!load)
        return tmix_fail(TMIX_EINVAL, "dataset: format '%s' is not 'idx', 'cifar' or 'imagefolder'",
                         format);

    tmixd_dataset *ds = calloc(1, sizeof *ds);
    const size_t len = strlen(format) + strlen(path) + strlen(split) + 5;
    if (!ds || !(ds->describe = malloc(len))) {
        free(ds);
        return tmix_fail(TMIX_ENOMEM, "dataset: out of memory opening %s", path);
    }
    snprintf(ds->describe, len, "%s:%s (%s)", format, path, split);
    const int rc = load(ds, path, strcmp(split, "train") == 0);
    if (rc < 0) {
        tmixd_dataset_close(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

void tmixd_dataset_close(tmixd_dataset *ds)
{
    if (!ds)
        return;
    if (ds->class_names)
        for (int k = 0; k < ds->classes; k++)
            free(ds->class_names[k]);
    free(ds->class_names);
    free(ds->labels);
    free(ds->pixels);
    tmixd_imagefolder_free(ds->folder);
    free(ds->describe);
    free(ds);
}

int64_t tmixd_dataset_size(const tmixd_dataset *ds)
{
    return ds->n;
}

int tmixd_dataset_classes(const tmixd_dataset *ds)
{
    return ds->classes;
}

const char *tmixd_dataset_class_name(const tmixd_dataset *ds, int k)
{
    return k >= 0 && k < ds->classes ? ds->class_names[k] : NULL;
}

int tmixd_dataset_channels(const tmixd_dataset *ds)
{
    return ds->channels;
}

void tmixd_dataset_image_size(const tmixd_dataset *ds, int *h, int *w)
{
    *h = ds->h;
    *w = ds->w;
}

int tmixd_dataset_label(const tmixd_dataset *ds, int64_t i)
{
    return i >= 0 && i < ds->n ? ds->labels[i] : -1;
}

const char *tmixd_dataset_describe(const tmixd_dataset *ds)
{
    return ds->describe;
}

int tmixd_dataset_read_window(const tmixd_dataset *ds, int64_t i, int min_h, int min_w,
                              tmixd_window_fn window, void *ctx, tmixd_image *img)
{
    if (i < 0 || i >= ds->n)
        return tmix_fail(TMIX_EINVAL, "%s: sample %lld out of range [0, %lld)", ds->describe,
                         (long long)i, (long long)ds->n);
    if (ds->folder)
        return tmixd_imagefolder_read(ds->folder, i, min_h, min_w, window, ctx, img);
    TMIX_TRY(tmixd_image_reserve(img, ds->h, ds->w, ds->channels));
    const size_t bytes = (size_t)ds->h * (size_t)ds->w * (size_t)ds->channels;
    memcpy(img->data, ds->pixels + (size_t)i * bytes, bytes);
    return window ? window(ctx, ds->h, ds->w, &img->window) : 0;
}

int tmixd_dataset_read(const tmixd_dataset *ds, int64_t i, int min_h, int min_w, tmixd_image *img)
{
    return tmixd_dataset_read_window(ds, i, min_h, min_w, NULL, NULL, img);
}
