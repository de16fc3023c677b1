// Writes an ImageFolder data set of JPEGs for tests and benchmarks:
//   make_imagefolder DIR CLASSES PER_CLASS WIDTH HEIGHT [--corrupt] [--texture]
// DIR/train/classNN/imgNNNN.jpg (quality 90), each a smooth colour field with a class-coloured
// square, so crops and mixes are visible. --corrupt adds class00/img_corrupt.jpg, a JPEG cut
// to a third of its length, and class01/not_an_image.jpg, text. --texture adds seeded pixel
// noise, so that the files are as large as photographs' (about 100 KB at 500x375 instead of
// 12 KB): decoding time grows with the compressed size, and benchmarks want photographs'.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jpeg_write.h"

// Noise in [-TEXTURE, TEXTURE] for a pixel channel: a hash of its position and image, so
// that every run writes the same files.
enum { TEXTURE = 40 };
static int texture_at(unsigned image, unsigned pixel)
{
    unsigned h = image * 2654435761u ^ pixel * 2246822519u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return (int)(h % (2 * TEXTURE + 1)) - TEXTURE;
}

static unsigned char clamp_byte(int v)
{
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        perror(path);
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f);
}

int main(int argc, char **argv)
{
    static const char usage[] =
        "usage: make_imagefolder DIR CLASSES PER_CLASS WIDTH HEIGHT [--corrupt] [--texture]\n";
    if (argc < 6) {
        fputs(usage, stderr);
        return 2;
    }
    const char *dir = argv[1];
    const int classes = atoi(argv[2]), per = atoi(argv[3]), w = atoi(argv[4]), h = atoi(argv[5]);
    int corrupt = 0, texture = 0;
    for (int a = 6; a < argc; a++) {
        if (strcmp(argv[a], "--corrupt") == 0)
            corrupt = 1;
        else if (strcmp(argv[a], "--texture") == 0)
            texture = 1;
        else {
            fprintf(stderr, "make_imagefolder: unknown option '%s'\n%s", argv[a], usage);
            return 2;
        }
    }
    unsigned char *rgb = malloc((size_t)w * h * 3);
    char path[4096];
    snprintf(path, sizeof path, "%s/train", dir);
    mkdir(dir, 0755);
    mkdir(path, 0755);
    for (int c = 0; c < classes; c++) {
        snprintf(path, sizeof path, "%s/train/class%02d", dir, c);
        mkdir(path, 0755);
        for (int i = 0; i < per; i++) {
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    unsigned char *p = rgb + ((size_t)y * w + x) * 3;
                    const int inside = x > w / 4 && x < 3 * w / 4 && y > h / 4 && y < 3 * h / 4;
                    p[0] = (unsigned char)(inside ? 40 * c : x * 255 / w);
                    p[1] = (unsigned char)(inside ? 255 - 25 * c : y * 255 / h);
                    p[2] = (unsigned char)((i * 37 + c * 11) % 256);
                    const unsigned at = (unsigned)(p - rgb);
                    for (int k = 0; texture && k < 3; k++)
                        p[k] = clamp_byte(p[k] + texture_at((unsigned)(c * per + i), at + k));
                }
            unsigned char *jpeg;
            unsigned long size;
            char err[200];
            const jpeg_options o = {.quality = 90, .subsampling = JPEG_420};
            if (jpeg_write(rgb, h, w, JPEG_RGB, &o, &jpeg, &size, err, sizeof err) < 0) {
                fprintf(stderr, "make_imagefolder: %s\n", err);
                return 1;
            }
            snprintf(path, sizeof path, "%s/train/class%02d/img%04d.jpg", dir, c, i);
            if (write_file(path, jpeg, size) < 0)
                return 1;
            if (corrupt && c == 0 && i == 0) {
                snprintf(path, sizeof path, "%s/train/class00/img_corrupt.jpg", dir);
                if (write_file(path, jpeg, size / 3) < 0)
                    return 1;
            }
            free(jpeg);
        }
    }
    if (corrupt) {
        snprintf(path, sizeof path, "%s/train/class%02d/not_an_image.jpg", dir, classes > 1);
        const char text[] = "this is not a JPEG\n";
        if (write_file(path, text, sizeof text - 1) < 0)
            return 1;
    }
    free(rgb);
    return 0;
}
