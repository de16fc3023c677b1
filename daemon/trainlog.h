// What a training command (search, train-teacher) tells as it goes: one updating progress
// line on a terminal (plain log lines every few seconds otherwise), and a metrics file of
// one JSON object per step, which a resumed run first cuts back to its checkpoint.
#ifndef TMIXD_TRAINLOG_H
#define TMIXD_TRAINLOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *what;   // "search"
    int64_t total_steps;
    int64_t first_step; // where this run started (for images/s and the ETA)
    double started_ms, shown_ms;
    bool tty;
    FILE *metrics;
    char metrics_path[4096];
} tmixd_trainlog;

// Opens the metrics file at path: created anew (resume_step < 0), or kept up to the lines of
// steps <= resume_step. Errors name the file.
int tmixd_trainlog_open(tmixd_trainlog *t, const char *what, const char *path,
                        int64_t resume_step, int64_t total_steps);
// After step `step` (1-based count of steps done): the metrics line (its fields as JSON
// members: `"loss": 1.5, "tau": 1`) and, at most a few times a second, the progress line.
int tmixd_trainlog_step(tmixd_trainlog *t, int64_t step, int64_t epoch, int64_t images,
                        float loss, const char *fields);
// Ends the progress line (a newline on a terminal) and says `fmt` in the log.
void tmixd_trainlog_note(tmixd_trainlog *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int tmixd_trainlog_close(tmixd_trainlog *t);

#endif
