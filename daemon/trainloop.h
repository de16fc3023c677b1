// The loop of a training command (search, train-teacher): steps until the end or a
// SIGTERM/SIGINT, a metrics line after each, a note and a checkpoint at each epoch's end,
// checkpoints every N steps, and a last checkpoint when stopped by a signal. The command
// says what a step, an epoch's end and a checkpoint are.
#ifndef TMIXD_TRAINLOOP_H
#define TMIXD_TRAINLOOP_H

#include <stddef.h>
#include <stdint.h>

#include "trainlog.h"

typedef struct {
    // Runs step *step (0-based) and counts it (++*step). *loss: the batch's; *images: its size;
    // fields: the command's metrics members for the line (`"lr": 0.1`).
    int (*step)(void *ctx, float *loss, int *images, char *fields, size_t size);
    // After the last step of epoch `epoch`: what to add to its note (", test accuracy 91.2%"),
    // or "" (may be NULL).
    int (*epoch_end)(void *ctx, int64_t epoch, char *note, size_t size);
    int (*save_checkpoint)(void *ctx);
} tmixd_train_ops;

typedef struct {
    int64_t *step;            // the command's step counter, which ops->step advances
    int64_t steps;            // the end
    int64_t steps_per_epoch;
    int64_t checkpoint_every; // 0: at epoch ends only
    const char *checkpoint;   // its path, for the notes
} tmixd_train_plan;

// Returns 0 at the end or after a signal (with a checkpoint written), else the error. *done:
// every step was run.
int tmixd_train_loop(tmixd_trainlog *log, const tmixd_train_plan *plan,
                     const tmixd_train_ops *ops, void *ctx, bool *done);

#endif
