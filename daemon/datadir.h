// tmix's run-time data directories: "golden" (the selftest fixtures) and "zoo" (the shipped
// models that a config names as zoo:FILE). Looked up in this order: $TMIX_GOLDEN_DIR or
// $TMIX_ZOO_DIR; share/tmix/KIND beside the executable (the install and bundle layout); the
// configured install directory; the source tree (tests/golden, models/zoo).
#ifndef TMIXD_DATADIR_H
#define TMIXD_DATADIR_H

#include <stddef.h>

typedef enum { TMIXD_DATA_GOLDEN, TMIXD_DATA_ZOO } tmixd_data_kind;

// The first directory of kind that exists (else the source tree's), into buf.
const char *tmixd_data_dir(tmixd_data_kind kind, char *buf, size_t n);

// A config value naming a file: "zoo:FILE" becomes FILE in the zoo directory (TMIX_ENOENT
// naming every place looked in when it is in none); any other value is copied as it is.
int tmixd_data_resolve(const char *value, char *buf, size_t n);

#endif
