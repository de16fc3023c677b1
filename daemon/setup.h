// What `tmixd serve` and `tmixd search` both build from the config, in this order: the
// config itself (file, overrides, --print-config) and the log; the data set and its
// augmentation; the backend ([server] device); the teacher and, for serving, the module,
// checked against the data set and [mix]; the normalisation.
#ifndef TMIXD_SETUP_H
#define TMIXD_SETUP_H

#include <stdbool.h>

#include "augment.h"
#include "config.h"
#include "dataset.h"
#include "module.h"
#include "sampler.h"
#include "teacher.h"

typedef struct {
    tmixd_config cfg;
    tmixd_dataset *dataset;
    tmixd_augment_params augment;
    tmix_backend *backend; // the CPU's, or a GPU opened here
    char backend_note[512]; // why auto fell back to the CPU, or ""
    char teacher_file[4096], module_file[4096]; // [teacher] path, [mix] module, zoo: resolved
    tmix_teacher *teacher;  // NULL when the method needs none and none is configured
    tmix_module module;     // serving's [mix] module
    bool has_module;
    int channels;           // output channels: the teacher's when there is one
    float mean[3], std[3];  // per output channel
} tmixd_setup;

typedef enum {
    TMIXD_SETUP_SERVE,  // teacher and module as [mix] method needs them
    TMIXD_SETUP_SEARCH, // a teacher always; no module (search makes it)
    TMIXD_SETUP_TRAIN,  // neither (train-teacher makes the teacher)
    TMIXD_SETUP_EVAL,   // a teacher always; [mix] module when one is named
} tmixd_setup_for;

// Whether flag is among argv[0 .. *argc); every copy is removed.
bool tmixd_take_flag(int *argc, char **argv, const char *flag);
// Reads the config from argv (the arguments after the command). *printed: --print-config
// was given and the config was written to stdout instead (nothing else is opened).
int tmixd_setup_config(tmixd_setup *s, int argc, char **argv, bool *printed);
// Opens the rest, once the config is read.
int tmixd_setup_open(tmixd_setup *s, tmixd_setup_for what);
void tmixd_setup_close(tmixd_setup *s);

// A command built on the setup (search, train-teacher, eval): reads the config from argv,
// opens the setup for `what`, then runs run(ctx) unless --print-config was given; a failure
// is one line "tmixd NAME: why" on stderr. Returns the exit code (0 or 1).
int tmixd_setup_run(const char *name, tmixd_setup *s, tmixd_setup_for what, int argc,
                    char **argv, int (*run)(void *ctx), void *ctx);

// The test split of the configured data set, and a sampler that shows it whole and
// unaugmented: padded to the output size as [augment] pad does (centred), else resized.
int tmixd_setup_test_split(const tmixd_setup *s, tmixd_dataset **test, tmixd_sampler *sampler);

#endif
