#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
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
            return tmix_fail(TMIX_EFORMAT,
                             "%s: tensor '%s' has an invalid shape: dimension %d is not a whole "
                             "number in [0, 9e15]", path, name, i);
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
                         "%s: tensor '%s' data_offsets [%.15g, %.15g] out of range (data is %zu "
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
    // Only whitespace may follow the object (writers pad the header with spaces).
    const char *json = (const char *)p + 8, *end = json;
    st->header = cJSON_ParseWithLengthOpts(json, (size_t)n, &end, 0);
    if (!st->header)
        return tmix_fail(TMIX_EFORMAT, "%s: header is not valid JSON (at offset %td)", path,
                         end - json);
    if (!cJSON_IsObject(st->header))
        return tmix_fail(TMIX_EFORMAT, "%s: header is not a JSON object", path);
    for (; end < json + n; end++)
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
            return tmix_fail(TMIX_EFORMAT,
                             "%s: header has bytes after its JSON object (at offset %td)", path,
                             end - json);
    const char *data = (const char *)p + 8 + n;
    size_t data_size = st->size - 8 - (size_t)n;

    int entries = cJSON_GetArraySize(st->header);
    st->tensors = calloc((size_t)entries + 1, sizeof *st->tensors);
    if (!st->tensors)
        return tmix_fail(TMIX_ENOMEM, "%s: header with %d entries", path, entries);
    for (const cJSON *e = st->header->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (st->metadata)
                return tmix_fail(TMIX_EFORMAT, "%s: __metadata__ appears twice", path);
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

int64_t tmix_st_numel(const tmix_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

// IEEE half to single, exactly: subnormals become normal floats, NaN keeps its payload.
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = h >> 10 & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | mant << 13;
    } else if (exp) {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    } else { // zero or subnormal: mant * 2^-24, exact in float
        float v = (float)mant * 0x1p-24f;
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int tmix_st_read_f32(const tmix_safetensors *st, const tmix_st_tensor *t, float *dst)
{
    int64_t n = tmix_st_numel(t);
    // Mapped data need not be aligned: read through memcpy.
    const unsigned char *src = t->data;
    switch (t->dtype) {
    case TMIX_ST_F32:
        if (n)
            memcpy(dst, src, (size_t)n * sizeof *dst);
        return 0;
    case TMIX_ST_F16:
    case TMIX_ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, sizeof h);
            if (t->dtype == TMIX_ST_F16) {
                dst[i] = f16_to_f32(h);
            } else { // bfloat16 is the top half of a float
                uint32_t bits = (uint32_t)h << 16;
                memcpy(&dst[i], &bits, sizeof bits);
            }
        }
        return 0;
    default:
        return tmix_fail(TMIX_EDTYPE, "%s: tensor '%s' is %s, not a float type (F32, F16, BF16)",
                         st->path, t->name, tmix_st_dtype_name(t->dtype));
    }
}

// ---- writing ----------------------------------------------------------------------------

typedef struct {
    char *name;
    tmix_st_dtype dtype;
    int ndim;
    int64_t shape[TMIX_ST_MAX_DIMS];
    void *data; // a copy; NULL when empty
    size_t bytes;
} entry;

struct tmix_st_writer {
    entry *entries;
    int count, cap;
    cJSON *metadata; // string -> string
};

int tmix_st_writer_new(tmix_st_writer **out)
{
    *out = NULL;
    tmix_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->metadata = cJSON_CreateObject())) {
        free(w);
        return tmix_fail(TMIX_ENOMEM, "st_writer_new: allocating a writer");
    }
    *out = w;
    return 0;
}

void tmix_st_writer_free(tmix_st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->count; i++) {
        free(w->entries[i].name);
        free(w->entries[i].data);
    }
    free(w->entries);
    cJSON_Delete(w->metadata);
    free(w);
}

int tmix_st_writer_add(tmix_st_writer *w, const char *name, tmix_st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data)
{
    if (!w || !name)
        return tmix_fail(TMIX_EINVAL, "st_writer_add: %s is NULL", !w ? "writer" : "name");
    if (strcmp(name, "__metadata__") == 0)
        return tmix_fail(TMIX_EINVAL,
                         "st_writer_add: '__metadata__' is reserved, not a tensor name");
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return tmix_fail(TMIX_EINVAL, "st_writer_add: tensor '%s' added twice", name);
    size_t esize = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dtype == dtype)
            esize = dtypes[i].size;
    if (!esize)
        return tmix_fail(TMIX_EDTYPE, "st_writer_add: tensor '%s' has unknown dtype %d", name,
                         (int)dtype);
    if (ndim < 0 || ndim > TMIX_ST_MAX_DIMS || (ndim > 0 && !shape))
        return tmix_fail(TMIX_ESHAPE, "st_writer_add: tensor '%s' has %d dimensions (0 to %d)",
                         name, ndim, TMIX_ST_MAX_DIMS);
    // bytes stays below 2^53, the largest size a reader checks exactly.
    size_t bytes = esize;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && bytes > ((size_t)1 << 53) / (size_t)shape[i]))
            return tmix_fail(TMIX_ESHAPE,
                             "st_writer_add: tensor '%s' dimension %d is %lld (negative or too "
                             "large)", name, i, (long long)shape[i]);
        bytes *= (size_t)shape[i];
    }
    if (bytes && !data)
        return tmix_fail(TMIX_EINVAL, "st_writer_add: tensor '%s' has no data", name);

    if (w->count == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        entry *e = realloc(w->entries, (size_t)cap * sizeof *e);
        if (!e)
            return tmix_fail(TMIX_ENOMEM, "st_writer_add: %d tensors", cap);
        w->entries = e;
        w->cap = cap;
    }
    entry e = {.name = strdup(name), .dtype = dtype, .ndim = ndim, .bytes = bytes};
    if (ndim)
        memcpy(e.shape, shape, (size_t)ndim * sizeof *shape);
    if (bytes && (e.data = malloc(bytes)))
        memcpy(e.data, data, bytes);
    if (!e.name || (bytes && !e.data)) {
        free(e.name);
        free(e.data);
        return tmix_fail(TMIX_ENOMEM, "st_writer_add: tensor '%s' of %zu bytes", name, bytes);
    }
    w->entries[w->count++] = e;
    return 0;
}

int tmix_st_writer_meta(tmix_st_writer *w, const char *key, const char *value)
{
    if (!w || !key || !value)
        return tmix_fail(TMIX_EINVAL, "st_writer_meta: %s is NULL",
                         !w ? "writer" : !key ? "key" : "value");
    if (cJSON_GetObjectItemCaseSensitive(w->metadata, key))
        return tmix_fail(TMIX_EINVAL, "st_writer_meta: key '%s' set twice", key);
    if (!cJSON_AddStringToObject(w->metadata, key, value))
        return tmix_fail(TMIX_ENOMEM, "st_writer_meta: key '%s'", key);
    return 0;
}

// An integer as raw JSON text: cJSON's numbers are doubles, printed with 15 digits.
static cJSON *json_int(uint64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(s);
}

// The header text, "__metadata__" first and data offsets in the order added, padded with
// spaces to a multiple of 8 bytes as upstream does. NULL when out of memory.
static char *header_json(const tmix_st_writer *w, size_t *len)
{
    cJSON *h = cJSON_CreateObject();
    bool ok = h != NULL;
    if (ok && w->metadata->child) {
        cJSON *m = cJSON_Duplicate(w->metadata, 1);
        ok = m && cJSON_AddItemToObject(h, "__metadata__", m);
        if (m && !ok)
            cJSON_Delete(m);
    }
    size_t offset = 0;
    for (int i = 0; ok && i < w->count; i++) {
        const entry *e = &w->entries[i];
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray(),
              *offs = cJSON_CreateArray();
        ok = t && shape && offs &&
             cJSON_AddStringToObject(t, "dtype", tmix_st_dtype_name(e->dtype));
        for (int d = 0; ok && d < e->ndim; d++)
            ok = cJSON_AddItemToArray(shape, json_int((uint64_t)e->shape[d]));
        ok = ok && cJSON_AddItemToArray(offs, json_int(offset)) &&
             cJSON_AddItemToArray(offs, json_int(offset + e->bytes));
        ok = ok && cJSON_AddItemToObject(t, "shape", shape);
        if (!ok)
            cJSON_Delete(shape);
        ok = ok && cJSON_AddItemToObject(t, "data_offsets", offs);
        if (!ok)
            cJSON_Delete(offs);
        ok = ok && cJSON_AddItemToObject(h, e->name, t);
        if (!ok)
            cJSON_Delete(t);
        offset += e->bytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(h) : NULL;
    cJSON_Delete(h);
    if (!text)
        return NULL;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *out = realloc(text, padded);
    if (!out) {
        free(text);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    *len = padded;
    return out;
}

// Writes all n bytes of buf to fd, through short writes and signals.
static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

// Writes the whole file at tmp and syncs it; NULL, or the step that failed (errno says why).
static const char *write_file(const tmix_st_writer *w, const char *tmp, const char *header,
                              size_t hlen)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return "creating";
    const char *step = NULL;
    bool ok = write_all(fd, len, sizeof len) == 0 && write_all(fd, header, hlen) == 0;
    for (int i = 0; ok && i < w->count; i++)
        ok = write_all(fd, w->entries[i].data, w->entries[i].bytes) == 0;
    if (!ok)
        step = "writing";
    else if (fsync(fd) != 0)
        step = "syncing";
    int e = errno;
    if (close(fd) != 0 && !step)
        return "closing"; // delayed write errors (NFS, quotas) surface here
    errno = e;
    return step;
}

int tmix_st_writer_save(tmix_st_writer *w, const char *path)
{
    if (!w || !path)
        return tmix_fail(TMIX_EINVAL, "st_writer_save: %s is NULL", !w ? "writer" : "path");
    size_t hlen = 0, plen = strlen(path);
    char *header = header_json(w, &hlen), *tmp = malloc(plen + 5);
    if (!header || !tmp) {
        free(header);
        free(tmp);
        return tmix_fail(TMIX_ENOMEM, "%s: building the safetensors header", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    const char *step = write_file(w, tmp, header, hlen);
    if (!step && rename(tmp, path) != 0)
        step = "renaming";
    int rc = 0;
    if (step) {
        int e = errno;
        unlink(tmp); // no half-written file stays behind
        rc = tmix_fail(e == ENOENT ? TMIX_ENOENT : TMIX_EIO, "%s: %s %s: %s", path, step, tmp,
                       strerror(e));
    }
    free(header);
    free(tmp);
    return rc;
}
