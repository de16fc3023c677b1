// Read-only safetensors files (https://huggingface.co/docs/safetensors): an 8-byte
// little-endian header length, a JSON header, then raw little-endian tensor data. The file
// is mapped, every header field is validated before use, and a malformed file is rejected
// with a message naming the file and the fault.
#ifndef TMIX_SAFETENSORS_H
#define TMIX_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define TMIX_ST_MAX_DIMS 8
#define TMIX_ST_MAX_HEADER (100u << 20) // larger headers are refused, as upstream does

typedef enum {
    TMIX_ST_F32,
    TMIX_ST_F16,
    TMIX_ST_BF16,
    TMIX_ST_I64,
    TMIX_ST_I32,
    TMIX_ST_U8,
} tmix_st_dtype;

typedef struct {
    const char *name;
    tmix_st_dtype dtype;
    int ndim;
    int64_t shape[TMIX_ST_MAX_DIMS];
    const void *data; // inside the mapping; little-endian
    size_t bytes;
} tmix_st_tensor;

typedef struct tmix_safetensors tmix_safetensors;

int tmix_safetensors_open(tmix_safetensors **out, const char *path);
void tmix_safetensors_close(tmix_safetensors *st);

int tmix_safetensors_count(const tmix_safetensors *st);
const tmix_st_tensor *tmix_safetensors_at(const tmix_safetensors *st, int index);
// NULL when no tensor has that name.
const tmix_st_tensor *tmix_safetensors_find(const tmix_safetensors *st, const char *name);
// A value of the __metadata__ object, or NULL.
const char *tmix_safetensors_meta(const tmix_safetensors *st, const char *key);
const char *tmix_safetensors_path(const tmix_safetensors *st);
const char *tmix_st_dtype_name(tmix_st_dtype dtype);
int64_t tmix_st_numel(const tmix_st_tensor *t);

// Reads a F32, F16 or BF16 tensor into dst (tmix_st_numel(t) floats). Any other dtype is
// TMIX_EDTYPE with a message naming the file and the tensor.
int tmix_st_read_f32(const tmix_safetensors *st, const tmix_st_tensor *t, float *dst);

// Writing: collect tensors (copied) and metadata, then save. Tensors are written in the
// order added. save writes PATH.tmp, fsyncs it and renames it over PATH, so a reader never
// sees a half-written file.
typedef struct tmix_st_writer tmix_st_writer;
int tmix_st_writer_new(tmix_st_writer **out);
int tmix_st_writer_add(tmix_st_writer *w, const char *name, tmix_st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data);
int tmix_st_writer_meta(tmix_st_writer *w, const char *key, const char *value);
int tmix_st_writer_save(tmix_st_writer *w, const char *path);
void tmix_st_writer_free(tmix_st_writer *w);

#endif
