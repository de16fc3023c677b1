// The table of golden suites: one per fixture file in tests/golden, each replayed by the
// runner of its op group (kernels/golden/<group>.c).
#include "../golden.h"
#include "suites.h"

const tmix_golden_suite tmix_golden_suites[] = {
#define TMIX_SUITE_ENTRY(name) {#name, tmix_golden_##name},
    TMIX_GOLDEN_SUITES(TMIX_SUITE_ENTRY)
#undef TMIX_SUITE_ENTRY
    {NULL, NULL},
};
