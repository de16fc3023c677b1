#ifndef TMIXD_SELFTEST_H
#define TMIXD_SELFTEST_H

// Runs every op on every backend present against the golden cases and prints a table.
// Returns the process exit status: 0 when every check passes.
int tmixd_selftest(void);

#endif
