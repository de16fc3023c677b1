// The safetensors writer of st_write.h.
#include "st_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t elem_size(const char *dtype)
{
    return strcmp(dtype, "I64") == 0   ? 8
           : strcmp(dtype, "F32") == 0 ? 4
           : strcmp(dtype, "F16") == 0 ? 2
                                       : 1;
}

static size_t tensor_bytes(const st_tensor *t)
{
    size_t n = elem_size(t->dtype);
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    return n;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

// The tensors' indices in layout order: by decreasing element size, stable.
static void layout_order(const st_tensor *t, int count, int *order)
{
    int k = 0;
    for (size_t size = 8; size >= 1; size /= 2)
        for (int i = 0; i < count; i++)
            if (elem_size(t[i].dtype) == size)
                order[k++] = i;
}

// The JSON header, padded with spaces to a multiple of 8 bytes; NULL when out of memory.
static char *header_json(const st_tensor *t, int count, const int *order, const char *const *meta,
                         size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return NULL;
    fputc('{', f);
    if (meta && meta[0]) {
        fputs("\"__metadata__\":{", f);
        for (int k = 0; meta[k]; k += 2) {
            fputs(k ? "," : "", f);
            json_string(f, meta[k]);
            fputc(':', f);
            json_string(f, meta[k + 1]);
        }
        fputs("},", f);
    }
    size_t offset = 0;
    for (int k = 0; k < count; k++) {
        const st_tensor *x = &t[order[k]];
        fputs(k ? "," : "", f);
        json_string(f, x->name);
        fprintf(f, ":{\"dtype\":\"%s\",\"shape\":[", x->dtype);
        for (int d = 0; d < x->ndim; d++)
            fprintf(f, "%s%lld", d ? "," : "", (long long)x->shape[d]);
        size_t bytes = tensor_bytes(x);
        fprintf(f, "],\"data_offsets\":[%zu,%zu]}", offset, offset + bytes);
        offset += bytes;
    }
    fputc('}', f);
    fflush(f);
    fprintf(f, "%*s", (int)((8 - size % 8) % 8), "");
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}

static int write_file(FILE *f, const st_tensor *t, int count, const int *order, const char *header,
                      size_t header_len)
{
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++)
        len_le[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    if (fwrite(len_le, 1, 8, f) != 8 || fwrite(header, 1, header_len, f) != header_len)
        return -1;
    for (int k = 0; k < count; k++) {
        size_t bytes = tensor_bytes(&t[order[k]]);
        if (bytes && fwrite(t[order[k]].data, 1, bytes, f) != bytes)
            return -1;
    }
    return fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -1;
}

int st_write(const char *path, const st_tensor *tensors, int count, const char *const *meta,
             char *err, size_t errlen)
{
    int order[64];
    if (count > 64) {
        snprintf(err, errlen, "%s: %d tensors, at most 64", path, count);
        return -1;
    }
    layout_order(tensors, count, order);
    size_t header_len;
    char *header = header_json(tensors, count, order, meta, &header_len);
    if (!header) {
        snprintf(err, errlen, "%s: no memory for the header", path);
        return -1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = f ? write_file(f, tensors, count, order, header, header_len) : -1;
    int e = errno;
    if (f && fclose(f) != 0 && rc == 0)
        rc = -1, e = errno;
    free(header);
    if (rc < 0) {
        if (f)
            unlink(tmp);
        snprintf(err, errlen, "%s: %s", tmp, strerror(e));
        return -1;
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        snprintf(err, errlen, "%s: cannot rename %s onto it: %s", path, tmp, strerror(e));
        return -1;
    }
    return 0;
}
