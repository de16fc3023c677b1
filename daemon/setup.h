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
#include "teacher.h"

typedef struct {
    tmixd_config cfg;
    tmixd_dataset *dataset;
    tmixd_augment_params augment;
    tmix_backend *backend; // the CPU's, or a GPU opened here
    char backend_note[512]; // why auto fell back to the CPU, or ""
    tmix_teacher *teacher;  // NULL when the method needs none and none is configured
    tmix_module module;     // serving's [mix] module
    bool has_module;
    int channels;           // output channels: the teacher's when there is one
    float mean[3], std[3];  // per output channel
} tmixd_setup;

typedef enum {
    TMIXD_SETUP_SERVE,  // teacher and module as [mix] method needs them
    TMIXD_SETUP_SEARCH, // a teacher always; no module (search makes it)
} tmixd_setup_for;

// Reads the config from argv (the arguments after the command). *printed: --print-config
// was given and the config was written to stdout instead (nothing else is opened).
int tmixd_setup_config(tmixd_setup *s, int argc, char **argv, bool *printed);
// Opens the rest, once the config is read.
int tmixd_setup_open(tmixd_setup *s, tmixd_setup_for what);
void tmixd_setup_close(tmixd_setup *s);

#endif
