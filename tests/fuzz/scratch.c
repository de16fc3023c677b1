#include "scratch.h"

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
