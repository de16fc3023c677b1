// What the format readers share: the data set struct and each reader's entry points.
// Not installed; only daemon/data includes it.
#ifndef TMIXD_DATASET_IMPL_H
#define TMIXD_DATASET_IMPL_H

#include <stdbool.h>

#include "dataset.h"

typedef struct tmixd_folder tmixd_folder;

struct tmixd_dataset {
    char *describe;
    int64_t n;
    int classes, channels;
    int h, w;             // the native size; 0, 0 for imagefolder
    char **class_names;   // [classes]
    int32_t *labels;      // [n]
    uint8_t *pixels;      // idx, cifar: (n, h, w, channels); NULL for imagefolder
    tmixd_folder *folder; // imagefolder: the file list and its decoders; NULL otherwise
};

// Names the classes "0", "1", ... "classes-1" (idx and cifar).
int tmixd_number_classes(tmixd_dataset *ds, int classes);

// Each loader fills n, classes, channels, h, w, class_names, labels and pixels or folder
// from the files of one split under path; on failure the caller frees what was set.
int tmixd_idx_load(tmixd_dataset *ds, const char *path, bool train);
int tmixd_cifar_load(tmixd_dataset *ds, const char *path, bool train);
int tmixd_imagefolder_load(tmixd_dataset *ds, const char *path, bool train);

// Decodes sample i of an imagefolder set (see tmixd_dataset_read).
int tmixd_imagefolder_read(tmixd_folder *f, int64_t i, int min_h, int min_w,
                           tmixd_window_fn window, void *ctx, tmixd_image *img);
void tmixd_imagefolder_free(tmixd_folder *f);

#endif
