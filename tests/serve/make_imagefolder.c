// Writes an ImageFolder data set of JPEGs for tests and benchmarks:
//   make_imagefolder DIR CLASSES PER_CLASS WIDTH HEIGHT [--corrupt]
// DIR/train/classNN/imgNNNN.jpg (quality 90), each a smooth colour field with a class-coloured
// square, so crops and mixes are visible. --corrupt adds class00/img_corrupt.jpg, a JPEG cut
// to a third of its length, and class01/not_an_image.jpg, text.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

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
    if (argc < 6) {
        fprintf(stderr, "usage: make_imagefolder DIR CLASSES PER_CLASS WIDTH HEIGHT [--corrupt]\n");
        return 2;
    }
    const char *dir = argv[1];
    const int classes = atoi(argv[2]), per = atoi(argv[3]), w = atoi(argv[4]), h = atoi(argv[5]);
    const int corrupt = argc > 6 && strcmp(argv[6], "--corrupt") == 0;
    unsigned char *rgb = malloc((size_t)w * h * 3);
    tjhandle tj = tjInitCompress();
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
                }
            unsigned char *jpeg = NULL;
            unsigned long size = 0;
            if (tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &jpeg, &size, TJSAMP_420, 90, 0) < 0) {
                fprintf(stderr, "make_imagefolder: %s\n", tjGetErrorStr2(tj));
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
            tjFree(jpeg);
        }
    }
    if (corrupt) {
        snprintf(path, sizeof path, "%s/train/class%02d/not_an_image.jpg", dir, classes > 1);
        const char text[] = "this is not a JPEG\n";
        if (write_file(path, text, sizeof text - 1) < 0)
            return 1;
    }
    tjDestroy(tj);
    free(rgb);
    return 0;
}
