// `tmixd mix`: mixes one batch offline and writes every intermediate (models/README.md,
// "Offline mixing"). `tmixd selftest` runs it on the committed TransformMix fixture.
#ifndef TMIXD_MIX_CMD_H
#define TMIXD_MIX_CMD_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *teacher, *module, *in, *out;
    const char *method; // NULL: transformmix with a module, mixup without
    int n;              // 0: the module's, else 2
    double alpha;       // 0: the module's, else 1
    uint64_t seed;
    bool grads;
    const char *backend; // NULL or "cpu"; "cuda" or "cuda:N" for GPU N
} tmixd_mix_args;

// Runs the mix; returns 0 or a negative TMIX_* code with tmix_last_error() set.
int tmixd_mix_run(const tmixd_mix_args *a);
// The command: parses argv (after "mix"), runs, prints errors; returns the exit status.
int tmixd_mix_main(int argc, char **argv);

#endif
