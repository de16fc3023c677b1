#ifndef TMIXD_SELFTEST_H
#define TMIXD_SELFTEST_H

// `tmixd selftest [--backend NAME]...` (argv after "selftest"): runs every op and the whole
// TransformMix against the golden cases on each backend (by default the CPU and every GPU;
// else each NAME, "cpu", "cuda" or "cuda:N", repeatable) and prints one table with a group of
// columns per backend, side by side. Returns the process exit status: 0 when every check
// passes, 1 when one fails or a named backend cannot be used, 2 for a usage error (a bad
// argument or backend name).
int tmixd_selftest_main(int argc, char **argv);

#endif
