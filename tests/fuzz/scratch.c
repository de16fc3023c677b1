#include "scratch.h"

#include "dataset.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

const char *fuzz_dir(void)
{
    static char dir[64];
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/tmix-fuzz-%ld", base, (long)getpid());
        if (mkdir(dir, 0700) < 0 && access(dir, W_OK) < 0)
            abort();
    }
    return dir;
}

const char *fuzz_file(int slot, const char *name, const uint8_t *data, size_t size)
{
    static char paths[4][128];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", fuzz_dir(), name);
    const int fd = open(paths[slot], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
        abort();
    close(fd);
    return paths[slot];
}

void fuzz_read_dataset(const char *format)
{
    tmixd_dataset *ds;
    if (tmixd_dataset_open(&ds, format, fuzz_dir(), "train") < 0)
        return;
    tmixd_image img = {0};
    const int64_t n = tmixd_dataset_size(ds);
    for (int64_t i = 0; i < n && i < 64; i++) {
        (void)tmixd_dataset_label(ds, i);
        (void)tmixd_dataset_read(ds, i, 0, 0, &img);
    }
    tmixd_image_free(&img);
    tmixd_dataset_close(ds);
}
