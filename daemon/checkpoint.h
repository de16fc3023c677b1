// Checkpoints of training commands (search, train-teacher): one safetensors file, written
// atomically, holding the command's tensors under prefixes, its optimiser's buffers, the
// step reached, and the settings that fix its batches (a fingerprint that --resume checks).
#ifndef TMIXD_CHECKPOINT_H
#define TMIXD_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "safetensors.h"

// The files of a run: out (required), the checkpoint (default OUT.ckpt) and the metrics
// (default OUT.metrics.jsonl). Refuses to start over an existing checkpoint unless resuming,
// and to resume without one. section names the config section in messages ("search").
typedef struct {
    char out[4096], checkpoint[4200], metrics[4200];
} tmixd_run_files;

int tmixd_run_files_get(tmixd_run_files *f, const char *section, const char *out,
                        const char *checkpoint, const char *metrics, bool resume);

// A setting that must be the same when resuming: its key in the file and its value as text.
typedef struct {
    const char *key;
    char value[256];
} tmixd_fingerprint;

// Adds the step and the fingerprint to w.
int tmixd_checkpoint_put_meta(tmix_st_writer *w, int64_t step, const tmixd_fingerprint *fp,
                              int n);
// The step of st, after checking that st holds the fingerprint (errors name the key and
// both values).
int tmixd_checkpoint_get_meta(const tmix_safetensors *st, int64_t *step,
                              const tmixd_fingerprint *fp, int n);

// Adds tensors[i] (skipping empty ones) under prefix + names[i], downloaded from be.
int tmixd_checkpoint_put_tensors(tmix_st_writer *w, tmix_backend *be, const char *prefix,
                                 const char *const *names, const tmix_tensor *tensors, int n);
// Reads them back (every non-empty one must be in st with its size; why_missing ends the
// error when one is not).
int tmixd_checkpoint_get_tensors(const tmix_safetensors *st, tmix_backend *be, const char *prefix,
                                 const char *const *names, tmix_tensor *tensors, int n,
                                 const char *why_missing);

#endif
