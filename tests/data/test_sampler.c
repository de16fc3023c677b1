// The sampler (daemon/sampler.c) reads only the window of each image that its crop uses,
// at the DCT scale that crop allows; its batches must be exactly those of the plain
// pipeline (check_crop). Checked over noise JPEGs of several sizes (read at every scale for
// the small output, whole for the large) and a broken file that is replaced, for each crop
// kind, over two epochs.
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "fixtures.h"
#include "jpeg_write.h"
#include "sampler.h"

enum { FILES = 10, BROKEN = 4 }; // file BROKEN is not an image

// Noise JPEGs (4:2:0, the common kind) of several sizes, and the broken file.
static int write_files(void)
{
    uint64_t seed = 3;
    for (int k = 0; k < FILES; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "s/train/c/img%02d.jpg", k); // sample k
        if (k == BROKEN) {
            CHECK(fixture_write(rel, "not an image", 12) == 0);
            continue;
        }
        const int h = 40 + 23 * k, w = 150 - 9 * k;
        uint8_t *rgb = malloc((size_t)h * w * 3);
        CHECK(rgb != NULL);
        for (size_t i = 0; i < (size_t)h * w * 3; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            rgb[i] = (uint8_t)(seed >> 56);
        }
        unsigned char *jpeg;
        unsigned long size;
        char err[200];
        const jpeg_options o = {.quality = 90, .subsampling = JPEG_420};
        CHECK(jpeg_write(rgb, h, w, JPEG_RGB, &o, &jpeg, &size, err, sizeof err) == 0);
        free(rgb);
        CHECK(fixture_write(rel, jpeg, size) == 0);
        free(jpeg);
    }
    return 0;
}

// Every sample of two epochs through the sampler, against the plain pipeline: the crop
// drawn on the whole image at full size, the image read whole at the DCT scale that the
// crop allows (tmixd_jpeg_scale), the crop resized from it. *scales gets each scale used.
static int check_crop(const tmixd_dataset *ds, tmixd_augment_params a, unsigned *scales)
{
    const tmixd_sampler s = {.dataset = ds, .augment = a, .seed = 11, .alpha = 1.0};
    const size_t image = (size_t)a.out_h * a.out_w * 3;
    uint8_t *pixels = malloc(FILES * image), *want = malloc(image);
    int64_t ids[FILES], read_ids[FILES], labels[FILES];
    tmixd_batch_inputs in = {pixels, ids, read_ids, labels};
    tmixd_epoch_order order = {0};
    tmixd_image img = {0};
    CHECK(pixels && want);
    *scales = 0;
    for (uint64_t epoch = 0; epoch < 2; epoch++) {
        CHECK_OK(tmixd_sample_batch(&s, &order, epoch, 0, FILES, &in));
        for (int i = 0; i < FILES; i++) {
            CHECK(ids[i] == BROKEN ? read_ids[i] != BROKEN : read_ids[i] == ids[i]);
            CHECK_OK(tmixd_dataset_read(ds, read_ids[i], 0, 0, &img));
            const int h = img.h, w = img.w;
            tmix_rng rng;
            tmixd_sample_rng(&s, epoch, ids[i], &rng);
            tmixd_crop_box box, scaled;
            CHECK_OK(tmixd_augment_window(&a, h, w, &rng, &box));
            const int scale = tmixd_jpeg_scale(h, w, box, a.out_h, a.out_w, &scaled);
            *scales |= (unsigned)scale;
            CHECK(fixture_read_scaled(ds, read_ids[i], h, w, scale, &img) == 0);
            CHECK_OK(tmixd_augment_apply(&a, &img, scaled, &rng, want));
            if (memcmp(pixels + (size_t)i * image, want, image) != 0) {
                fprintf(stderr, "crop %d, %dx%d, epoch %llu: sample %lld (read %lld) differs\n",
                        (int)a.crop, a.out_h, a.out_w, (unsigned long long)epoch,
                        (long long)ids[i], (long long)read_ids[i]);
                return 1;
            }
        }
    }
    tmixd_image_free(&img);
    tmixd_epoch_order_free(&order);
    free(pixels);
    free(want);
    return 0;
}

static int test_windows(void)
{
    CHECK(write_files() == 0);
    tmixd_dataset *ds;
    CHECK_OK(tmixd_dataset_open(&ds, "imagefolder", fixture_path("s"), "train"));
    CHECK(tmixd_dataset_size(ds) == FILES);
    const tmixd_augment_params rrc = {.crop = TMIXD_CROP_RANDOM_RESIZED, .scale_min = 0.08f,
                                      .scale_max = 1.0f, .ratio_min = 0.75f,
                                      .ratio_max = 4.0f / 3.0f, .flip = true};
    tmixd_augment_params a = rrc;
    unsigned scales;
    // Small crops read at full size or 1/2, large ones at 1/4 (1/8 would need 128 pixels
    // both ways, more than any file has).
    a.out_h = a.out_w = 16;
    CHECK(check_crop(ds, a, &scales) == 0);
    CHECK(scales == (1 | 2 | 4));
    a.out_h = 96, a.out_w = 112; // full-size reads, the windows enlarged
    CHECK(check_crop(ds, a, &scales) == 0);
    CHECK(scales == 1);
    const tmixd_augment_params pad = {.out_h = 40, .out_w = 60, .crop = TMIXD_CROP_PAD,
                                      .pad = 8, .flip = true};
    CHECK(check_crop(ds, pad, &scales) == 0);
    CHECK(scales == 1);
    const tmixd_augment_params none = {.out_h = 24, .out_w = 24, .crop = TMIXD_CROP_NONE};
    CHECK(check_crop(ds, none, &scales) == 0);
    CHECK(scales & (2 | 4 | 8));
    tmixd_dataset_close(ds);
    return 0;
}

static const test_case tests[] = {
    {"sampler.windows", test_windows},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return fixture_test_main(argc, argv, tests);
}
