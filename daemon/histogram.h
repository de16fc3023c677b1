// Latency histograms for the metrics endpoint, in Prometheus's form: counts per upper bound
// (seconds, from 0.5 ms to 10 s), their sum and their number. Updated on the event loop only.
#ifndef TMIXD_HISTOGRAM_H
#define TMIXD_HISTOGRAM_H

#include <stdint.h>

enum { TMIXD_HISTOGRAM_BOUNDS = 14 };
extern const double tmixd_histogram_bounds[TMIXD_HISTOGRAM_BOUNDS];

typedef struct {
    uint64_t counts[TMIXD_HISTOGRAM_BOUNDS + 1]; // per bucket (the last: above every bound)
    uint64_t count;
    double sum;
} tmixd_histogram;

void tmixd_histogram_observe(tmixd_histogram *h, double seconds);

// The upper bound of the bucket that holds quantile q (0 < q <= 1) of what was observed:
// an estimate from above; +inf past the last bound, 0 when nothing was.
double tmixd_histogram_quantile(const tmixd_histogram *h, double q);

// A monotonic clock in seconds, for the durations observed.
double tmixd_seconds(void);

#endif
