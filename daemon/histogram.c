#include "histogram.h"

#include <math.h>
#include <time.h>

const double tmixd_histogram_bounds[TMIXD_HISTOGRAM_BOUNDS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void tmixd_histogram_observe(tmixd_histogram *h, double seconds)
{
    int i = 0;
    while (i < TMIXD_HISTOGRAM_BOUNDS && seconds > tmixd_histogram_bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += seconds;
}

double tmixd_histogram_quantile(const tmixd_histogram *h, double q)
{
    if (!h->count)
        return 0;
    const double want = q * (double)h->count;
    uint64_t below = 0;
    for (int i = 0; i < TMIXD_HISTOGRAM_BOUNDS; i++)
        if ((double)(below += h->counts[i]) >= want)
            return tmixd_histogram_bounds[i];
    return HUGE_VAL;
}

double tmixd_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
