// `tmixd eval`: the teacher's clean accuracy on the test split, and per mixing method its
// loss on mixed test batches and how often it sees every source, at the same draws.
#ifndef TMIXD_EVAL_H
#define TMIXD_EVAL_H

// argv: the arguments after `eval` (-c FILE, --section.key=value, --print-config). Prints
// the table on stdout; returns the exit code.
int tmixd_eval_main(int argc, char **argv);

#endif
