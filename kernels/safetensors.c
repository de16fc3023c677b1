#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

struct tmix_safetensors {
    char *path;
    void *map;
    size_t size;
    cJSON *header;
    cJSON *metadata; // borrowed from header, may be NULL
    tmix_st_tensor *tensors;
    int count;
};

static const struct {
    const char *name;
    tmix_st_dtype dtype;
    size_t size;
} dtypes[] = {
    {"F32", TMIX_ST_F32, 4}, {"F16", TMIX_ST_F16, 2}, {"BF16", TMIX_ST_BF16, 2},
    {"I64", TMIX_ST_I64, 8}, {"I32", TMIX_ST_I32, 4}, {"U8", TMIX_ST_U8, 1},
};

const char *tmix_st_dtype_name(tmix_st_dtype dtype)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dtype == dtype)
            return dtypes[i].name;
    return "?";
}

static int by_offset(const void *a, const void *b)
{
    const tmix_st_tensor *x = a, *y = b;
    const char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

// Parses one header entry into t; data offsets are checked against the data section.
static int parse_entry(tmix_safetensors *st, const cJSON *e, tmix_st_tensor *t,
                       const char *data, size_t data_size)
{
    const char *path = st->path, *name = e->string;
    t->name = name;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return tmix_fail(TMIX_EFORMAT,
                         "%s: tensor '%s' needs dtype, shape and two data_offsets", path, name);
    size_t esize = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dt->valuestring, dtypes[i].name) == 0) {
            t->dtype = dtypes[i].dtype;
            esize = dtypes[i].size;
        }
    if (!esize)
        return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' has unknown dtype '%s'", path, name,
                         dt->valuestring);
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > TMIX_ST_MAX_DIMS)
        return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' has %d dimensions (at most %d)", path,
                         name, t->ndim, TMIX_ST_MAX_DIMS);
    // numel stays below 2^53 (exact in a double) and bytes below the file size.
    double numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9e15 ||
            d->valuedouble != (double)(int64_t)d->valuedouble)
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' has an invalid shape", path, name);
        t->shape[i] = (int64_t)d->valuedouble;
        numel *= d->valuedouble;
        if (numel > 9e15)
            return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' is too large", path, name);
    }
    const cJSON *b = cJSON_GetArrayItem(offs, 0), *en = cJSON_GetArrayItem(offs, 1);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 ||
        en->valuedouble < b->valuedouble || en->valuedouble > (double)data_size ||
        b->valuedouble != (double)(size_t)b->valuedouble ||
        en->valuedouble != (double)(size_t)en->valuedouble)
        return tmix_fail(TMIX_EFORMAT,
                         "%s: tensor '%s' data_offsets [%.0f, %.0f] out of range (data is %zu "
                         "bytes; the file may be truncated)",
                         path, name, b->valuedouble, en->valuedouble, data_size);
    size_t begin = (size_t)b->valuedouble, end = (size_t)en->valuedouble;
    if ((double)(end - begin) != numel * (double)esize)
        return tmix_fail(TMIX_EFORMAT,
                         "%s: tensor '%s' holds %zu bytes but its %s shape needs %.0f", path,
                         name, end - begin, dt->valuestring, numel * (double)esize);
    t->data = data + begin;
    t->bytes = end - begin;
    return 0;
}

static int parse_header(tmix_safetensors *st)
{
    const char *path = st->path;
    if (st->size < 8)
        return tmix_fail(TMIX_EFORMAT, "%s: %zu bytes, too short for a safetensors file", path,
                         st->size);
    uint64_t n = 0;
    const unsigned char *p = st->map;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | p[i];
    if (n > TMIX_ST_MAX_HEADER)
        return tmix_fail(TMIX_EFORMAT, "%s: header of %llu bytes exceeds the %u-byte limit",
                         path, (unsigned long long)n, TMIX_ST_MAX_HEADER);
    if (n > st->size - 8)
        return tmix_fail(TMIX_EFORMAT, "%s: header of %llu bytes but the file has %zu (truncated)",
                         path, (unsigned long long)n, st->size);
    st->header = cJSON_ParseWithLength((const char *)p + 8, (size_t)n);
    if (!cJSON_IsObject(st->header))
        return tmix_fail(TMIX_EFORMAT, "%s: header is not a JSON object", path);
    const char *data = (const char *)p + 8 + n;
    size_t data_size = st->size - 8 - (size_t)n;

    int entries = cJSON_GetArraySize(st->header);
    st->tensors = calloc((size_t)entries + 1, sizeof *st->tensors);
    if (!st->tensors)
        return tmix_fail(TMIX_ENOMEM, "%s: header with %d entries", path, entries);
    for (const cJSON *e = st->header->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e))
                return tmix_fail(TMIX_EFORMAT, "%s: __metadata__ is not an object", path);
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m))
                    return tmix_fail(TMIX_EFORMAT, "%s: __metadata__ value '%s' is not a string",
                                     path, m->string);
            st->metadata = (cJSON *)e;
            continue;
        }
        for (int i = 0; i < st->count; i++)
            if (strcmp(st->tensors[i].name, e->string) == 0)
                return tmix_fail(TMIX_EFORMAT, "%s: tensor '%s' appears twice", path, e->string);
        TMIX_TRY(parse_entry(st, e, &st->tensors[st->count], data, data_size));
        st->count++;
    }

    // Overlapping tensors mean a corrupt (or hostile) file; check on a sorted copy so that
    // tensors keep their header order for the caller.
    tmix_st_tensor *sorted = malloc(((size_t)st->count + 1) * sizeof *sorted);
    if (!sorted)
        return tmix_fail(TMIX_ENOMEM, "%s: %d tensors", path, st->count);
    memcpy(sorted, st->tensors, (size_t)st->count * sizeof *sorted);
    qsort(sorted, (size_t)st->count, sizeof *sorted, by_offset);
    int rc = 0;
    for (int i = 1; i < st->count && !rc; i++)
        if ((const char *)sorted[i - 1].data + sorted[i - 1].bytes > (const char *)sorted[i].data)
            rc = tmix_fail(TMIX_EFORMAT, "%s: tensors '%s' and '%s' overlap", path,
                           sorted[i - 1].name, sorted[i].name);
    free(sorted);
    return rc;
}

int tmix_safetensors_open(tmix_safetensors **out, const char *path)
{
    *out = NULL;
    tmix_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return tmix_fail(TMIX_ENOMEM, "%s: opening", path);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        tmix_safetensors_close(st);
        return tmix_fail(e == ENOENT ? TMIX_ENOENT : TMIX_EIO, "%s: %s", path, strerror(e));
    }
    st->size = (size_t)sb.st_size;
    if (st->size > 0) {
        st->map = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (st->map == MAP_FAILED) {
            int e = errno;
            st->map = NULL;
            close(fd);
            tmix_safetensors_close(st);
            return tmix_fail(TMIX_EIO, "%s: mmap: %s", path, strerror(e));
        }
    }
    close(fd);
    int rc = parse_header(st);
    if (rc < 0) {
        tmix_safetensors_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void tmix_safetensors_close(tmix_safetensors *st)
{
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->size);
    cJSON_Delete(st->header);
    free(st->tensors);
    free(st->path);
    free(st);
}

int tmix_safetensors_count(const tmix_safetensors *st)
{
    return st->count;
}

const tmix_st_tensor *tmix_safetensors_at(const tmix_safetensors *st, int index)
{
    return index >= 0 && index < st->count ? &st->tensors[index] : NULL;
}

const tmix_st_tensor *tmix_safetensors_find(const tmix_safetensors *st, const char *name)
{
    for (int i = 0; i < st->count; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}

const char *tmix_safetensors_meta(const tmix_safetensors *st, const char *key)
{
    const cJSON *v = st->metadata ? cJSON_GetObjectItemCaseSensitive(st->metadata, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *tmix_safetensors_path(const tmix_safetensors *st)
{
    return st->path;
}
