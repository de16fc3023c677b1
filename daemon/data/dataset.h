// Image data sets for tmixd: one interface over three on-disk formats.
//   idx          MNIST / Fashion-MNIST IDX files, plain or gzip; loaded into memory at open.
//   cifar        CIFAR-10 / CIFAR-100 binary batches; loaded into memory (as HWC) at open.
//   imagefolder  root/<class>/.../*.jpg|*.jpeg|*.png, as torchvision's ImageFolder; the file
//                list is built at open and each read decodes one file (libjpeg-turbo, libpng).
// A data set never changes after open, so any number of threads may read it at once.
// daemon/data/README.md states the file and split rules exactly.
#ifndef TMIXD_DATASET_H
#define TMIXD_DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef struct tmixd_dataset tmixd_dataset;

// One decoded image: uint8, HWC, rows packed (h * w * c bytes at data). data/cap are owned
// by the struct and grown as needed, so a worker reuses one image for every read; zero it
// before first use and release it with tmixd_image_free.
typedef struct {
    uint8_t *data;
    size_t cap;
    int h, w, c;
} tmixd_image;

void tmixd_image_free(tmixd_image *img);

// Makes img hold an h x w x c image (contents undefined), growing data when needed.
int tmixd_image_reserve(tmixd_image *img, int h, int w, int c);

// Opens a data set. format: "idx" | "cifar" | "imagefolder"; split: "train" | "test".
// Missing files give TMIX_ENOENT, malformed ones TMIX_EFORMAT, both naming the path.
int tmixd_dataset_open(tmixd_dataset **out, const char *format, const char *path,
                       const char *split);
void tmixd_dataset_close(tmixd_dataset *ds);

int64_t tmixd_dataset_size(const tmixd_dataset *ds);
int tmixd_dataset_classes(const tmixd_dataset *ds);
// "0", "1", ... for idx and cifar; the class folder's name for imagefolder; NULL when k is
// outside [0, classes).
const char *tmixd_dataset_class_name(const tmixd_dataset *ds, int k);
// 1 for idx, 3 for cifar and imagefolder (grayscale files are expanded to RGB).
int tmixd_dataset_channels(const tmixd_dataset *ds);
// The native image size; 0, 0 for imagefolder, whose images vary.
void tmixd_dataset_image_size(const tmixd_dataset *ds, int *h, int *w);
// The label of sample i in [0, size); -1 outside it.
int tmixd_dataset_label(const tmixd_dataset *ds, int64_t i);
// "format:path (split)", e.g. "idx:/usr/share/datasets/fashion-mnist (train)".
const char *tmixd_dataset_describe(const tmixd_dataset *ds);

// Reads and decodes sample i into img. min_h, min_w: the size the caller will crop to (0 for
// no hint); a JPEG at least twice that size on both sides is decoded at the smallest DCT
// scale of 1/2, 1/4, 1/8 whose result stays >= min_h x min_w. Failures (TMIX_EFORMAT for a
// bad file, TMIX_EIO for an unreadable one, TMIX_EINVAL for i out of range) name the file
// path and the sample index; the caller replaces the sample.
int tmixd_dataset_read(const tmixd_dataset *ds, int64_t i, int min_h, int min_w, tmixd_image *img);

#endif
