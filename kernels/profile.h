// Where a backend's time goes, op by op: a profile for benchmarks (bench_mix --ops), never
// on in serving. Between tmix_profile_begin and tmix_profile_end every op an entry point of
// ops.h hands to the backend is timed twice:
// - on the host clock, from the call to its return: all of the work on the CPU; on the GPU,
//   the time to queue the op's kernels (and any wait inside the op);
// - on the device (backends with timing marks: CUDA), from a mark queued before the op to
//   one queued after it: the time the stream spent on the op;
// and the CPU time the process used meanwhile.
// The device time the ops do not account for is time the stream sat idle between them,
// waiting for the host to queue more: what CUDA graphs take away.
//
// One thread, one profile at a time; ops called by an op are its own time. Marks cost a few
// microseconds each, so a profiled run is slower than an unprofiled one. A graph cannot be
// recorded while a profile is on (tmix_capture_begin refuses).
#ifndef TMIX_PROFILE_H
#define TMIX_PROFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"

typedef struct {
    const char *op;   // the entry point's name, e.g. "conv2d_forward"
    int64_t calls;
    double host_ms;   // summed over the calls
    double device_ms; // summed over the calls; host_ms where the backend has no marks
    double cpu_ms;    // the CPU time of all the process's threads in the calls (the CPU
                      // backend's threads, spinning included): above host_ms when in parallel
} tmix_profile_row;

typedef struct {
    tmix_profile_row *rows; // largest device_ms first
    int count;
    bool device_marks; // device_ms came from the device's marks
    double wall_ms;    // begin to end on the host clock, with end's synchronize
    double device_span_ms; // first mark to last: the stream's time for all of it (else wall)
} tmix_profile;

// Starts timing the ops of `be`. TMIX_EINVAL when a profile is already on.
int tmix_profile_begin(tmix_backend *be);
// Synchronizes the backend, stops timing and sums the calls by op into *out (free it with
// tmix_profile_free). TMIX_EINVAL without a profile on.
int tmix_profile_end(tmix_profile *out);
void tmix_profile_free(tmix_profile *p);
// The profile as a table: a title line, one line per op, then the idle time and the total.
void tmix_profile_print(const tmix_profile *p, const char *title, FILE *f);

// Whether a profile is on: the check each entry point makes before it times (check.h).
extern bool tmix_profile_on;

// Around one op while a profile is on (TMIX_CALL in check.h).
// enter answers the call's number, or -1 for a call not timed (nested, or on another
// backend); leave takes it and the op's return code (a failed op is not counted).
int tmix_profile_enter(tmix_backend *be);
void tmix_profile_leave(const char *op, int call, int rc);

#endif
