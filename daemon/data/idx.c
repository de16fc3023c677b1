// The idx reader: MNIST-style IDX files (big-endian header, then ubyte items), plain or
// gzip-compressed, loaded whole into memory at open.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "dataset_impl.h"
#include "error.h"

enum {
    IDX_IMAGES_MAGIC = 0x00000803, // ubyte items, 3 dimensions
    IDX_LABELS_MAGIC = 0x00000801, // ubyte items, 1 dimension
    IDX_MAX_SIDE = 65535,
    IDX_MAX_COUNT = 0x7fffffff,
};

// One opened IDX file: its path (DIR/NAME or DIR/NAME.gz) and a zlib reader, which passes
// plain files through unchanged.
typedef struct {
    char *path;
    gzFile gz;
} idx_file;

static void idx_close(idx_file *f)
{
    if (f->gz)
        gzclose(f->gz);
    free(f->path);
    *f = (idx_file){0};
}

static int idx_open(idx_file *f, const char *dir, const char *name)
{
    *f = (idx_file){0};
    const size_t len = strlen(dir) + strlen(name) + 5;
    if (!(f->path = malloc(len)))
        return tmix_fail(TMIX_ENOMEM, "idx: out of memory");
    // The plain file wins when both exist: it is the one a user unpacked last.
    struct stat st;
    snprintf(f->path, len, "%s/%s", dir, name);
    if (stat(f->path, &st) != 0) {
        snprintf(f->path, len, "%s/%s.gz", dir, name);
        if (stat(f->path, &st) != 0)
            return tmix_fail(TMIX_ENOENT, "idx: neither %s/%s nor %s exists", dir, name, f->path);
    }
    if (!(f->gz = gzopen(f->path, "rb")))
        return tmix_fail(TMIX_EIO, "idx: cannot open %s: %s", f->path,
                         errno ? strerror(errno) : "out of memory");
    return 0;
}

// Reads up to n bytes into dst, stopping early only at the end of the file; *got says how
// many arrived. zlib's errors (a corrupt stream) and the system's are failures.
static int idx_read(idx_file *f, uint8_t *dst, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        const size_t chunk = n - *got < (1u << 30) ? n - *got : (1u << 30);
        const int r = gzread(f->gz, dst + *got, (unsigned)chunk);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f->gz, &zerr);
            if (zerr == Z_ERRNO)
                return tmix_fail(TMIX_EIO, "idx: cannot read %s: %s", f->path, strerror(errno));
            return tmix_fail(TMIX_EFORMAT, "idx: %s is %s: %s", f->path,
                             zerr == Z_BUF_ERROR ? "truncated" : "corrupt", msg);
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

// Reads a header of `dims` big-endian uint32 after the magic number into out[0..dims).
static int idx_header(idx_file *f, uint32_t magic, int dims, uint32_t *out)
{
    uint8_t raw[16];
    const size_t need = 4 + 4 * (size_t)dims;
    size_t got;
    TMIX_TRY(idx_read(f, raw, need, &got));
    if (got < need)
        return tmix_fail(TMIX_EFORMAT, "idx: %s is truncated: %zu bytes, shorter than its header",
                         f->path, got);
    uint32_t v[4];
    for (int k = 0; k <= dims; k++)
        v[k] = (uint32_t)raw[4 * k] << 24 | (uint32_t)raw[4 * k + 1] << 16 |
               (uint32_t)raw[4 * k + 2] << 8 | raw[4 * k + 3];
    if (v[0] != magic)
        return tmix_fail(TMIX_EFORMAT,
                         "idx: %s has magic number 0x%08x, expected 0x%08x (ubyte, %d dimension%s)",
                         f->path, v[0], magic, dims, dims > 1 ? "s" : "");
    for (int k = 0; k < dims; k++)
        out[k] = v[k + 1];
    if (out[0] == 0 || out[0] > IDX_MAX_COUNT)
        return tmix_fail(TMIX_EFORMAT, "idx: %s holds %u items (expected 1 to %d)", f->path, out[0],
                         IDX_MAX_COUNT);
    return 0;
}

// Reads the n payload bytes that follow the header into a new buffer, growing it as data
// arrives so a lying header cannot make us allocate more than the file holds, then checks
// that nothing follows them.
static int idx_payload(idx_file *f, size_t n, uint8_t **out)
{
    size_t cap = n < ((size_t)64 << 20) ? n : ((size_t)64 << 20), got = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return tmix_fail(TMIX_ENOMEM, "idx: cannot allocate %zu bytes for %s", cap, f->path);
    while (got < n) {
        if (got == cap) {
            const size_t grown = cap * 2 < n ? cap * 2 : n;
            uint8_t *p = realloc(buf, grown);
            if (!p) {
                free(buf);
                return tmix_fail(TMIX_ENOMEM, "idx: cannot allocate %zu bytes for %s", grown,
                                 f->path);
            }
            buf = p;
            cap = grown;
        }
        size_t more;
        const int rc = idx_read(f, buf + got, cap - got, &more);
        got += more;
        if (rc < 0 || got < cap) {
            free(buf);
            return rc < 0 ? rc
                          : tmix_fail(TMIX_EFORMAT,
                                      "idx: %s is truncated: its header promises %zu bytes of "
                                      "items, the file holds %zu",
                                      f->path, n, got);
        }
    }
    uint8_t extra;
    const int r = gzread(f->gz, &extra, 1);
    if (r != 0) {
        free(buf);
        return tmix_fail(TMIX_EFORMAT, "idx: %s has %s after the %zu bytes its header promises",
                         f->path, r > 0 ? "more data" : "a corrupt tail", n);
    }
    *out = buf;
    return 0;
}

static int idx_load_files(tmixd_dataset *ds, idx_file *img, idx_file *lab)
{
    uint32_t idims[3], ldims[1];
    TMIX_TRY(idx_header(img, IDX_IMAGES_MAGIC, 3, idims));
    if (idims[1] == 0 || idims[1] > IDX_MAX_SIDE || idims[2] == 0 || idims[2] > IDX_MAX_SIDE)
        return tmix_fail(TMIX_EFORMAT, "idx: %s has images of %ux%u (sides 1 to %d)", img->path,
                         idims[1], idims[2], IDX_MAX_SIDE);
    TMIX_TRY(idx_header(lab, IDX_LABELS_MAGIC, 1, ldims));
    if (ldims[0] != idims[0])
        return tmix_fail(TMIX_EFORMAT, "idx: %s holds %u labels but %s holds %u images", lab->path,
                         ldims[0], img->path, idims[0]);
    ds->n = idims[0];
    ds->h = (int)idims[1];
    ds->w = (int)idims[2];
    ds->channels = 1;
    TMIX_TRY(idx_payload(img, (size_t)ds->n * (size_t)ds->h * (size_t)ds->w, &ds->pixels));

    uint8_t *raw;
    TMIX_TRY(idx_payload(lab, (size_t)ds->n, &raw));
    if (!(ds->labels = malloc((size_t)ds->n * sizeof *ds->labels))) {
        free(raw);
        return tmix_fail(TMIX_ENOMEM, "idx: cannot allocate %lld labels", (long long)ds->n);
    }
    int max_label = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        ds->labels[i] = raw[i];
        max_label = raw[i] > max_label ? raw[i] : max_label;
    }
    free(raw);
    // Labels are bytes, so every one is below max + 1 <= 256 classes.
    return tmixd_number_classes(ds, max_label + 1);
}

int tmixd_idx_load(tmixd_dataset *ds, const char *path, bool train)
{
    const char *prefix = train ? "train" : "t10k";
    char images[32], labels[32];
    snprintf(images, sizeof images, "%s-images-idx3-ubyte", prefix);
    snprintf(labels, sizeof labels, "%s-labels-idx1-ubyte", prefix);
    idx_file img = {0}, lab = {0};
    int rc = idx_open(&img, path, images);
    if (rc == 0)
        rc = idx_open(&lab, path, labels);
    if (rc == 0)
        rc = idx_load_files(ds, &img, &lab);
    idx_close(&img);
    idx_close(&lab);
    return rc;
}
