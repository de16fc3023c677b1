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

// A window of an image: rows [top, top + h), columns [left, left + w). It may leave the
// image (a padded crop).
typedef struct {
    int top, left, h, w;
} tmixd_crop_box;

// One decoded image, or the part of it that a read asked for: uint8, HWC, rows packed
// (h * w * c bytes at data), its first pixel at row top, column left of the whole image,
// and `window`, the window the read was asked for, in this image's coordinates (a JPEG
// may be DCT-scaled; the whole image when no window was asked for). data/cap are owned by
// the struct and grown as needed, so a worker reuses one image for every read; zero it
// before first use and release it with tmixd_image_free.
typedef struct {
    uint8_t *data;
    size_t cap;
    int h, w, c;
    int top, left; // 0, 0 for a whole image
    tmixd_crop_box window;
} tmixd_image;

// Chooses, once a read knows the image's full size (h x w, before any DCT scaling), the
// window of it that the caller will use; the read may then decode only the part of the
// image inside it (and a few pixels around), and at a DCT scale that keeps the window at
// least as large as the caller's hint. Returns 0, or an error that fails the read.
typedef int (*tmixd_window_fn)(void *ctx, int h, int w, tmixd_crop_box *window);

void tmixd_image_free(tmixd_image *img);

// Makes img hold a whole h x w x c image (contents undefined; its window the whole image),
// growing data when needed.
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

// Reads and decodes sample i into img. min_h, min_w: the size the caller will resize the
// image to (0 for no hint); a JPEG at least twice that size on both sides is decoded at the
// smallest DCT scale of 1/2, 1/4, 1/8 whose result stays >= min_h x min_w. Failures
// (TMIX_EFORMAT for a bad file, TMIX_EIO for an unreadable one, TMIX_EINVAL for i out of
// range) name the file path and the sample index; the caller replaces the sample.
int tmixd_dataset_read(const tmixd_dataset *ds, int64_t i, int min_h, int min_w, tmixd_image *img);
// The same for a caller that uses one window of the image and resizes it to min_h x min_w:
// window(ctx, ...) is called once per successful read, with the image's full size; img may
// then hold only the part of the image that the window covers (a JPEG is decoded no
// further: libjpeg's crop and skip), at the smallest DCT scale that keeps the window >= min_h
// x min_w (tmixd_jpeg_scale), and img->window is the window in img's coordinates.
int tmixd_dataset_read_window(const tmixd_dataset *ds, int64_t i, int min_h, int min_w,
                              tmixd_window_fn window, void *ctx, tmixd_image *img);

#endif
