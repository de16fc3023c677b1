#include "harness.h"

#include <math.h>
#include <string.h>

int test_main(int argc, char **argv, const test_case *tests)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (const test_case *t = tests; t->name; t++)
            printf("%s\n", t->name);
        return 0;
    }
    int failed = 0, ran = 0, skipped = 0;
    for (const test_case *t = tests; t->name; t++) {
        if (argc > 1 && strcmp(argv[1], t->name) != 0)
            continue;
        ran++;
        printf("-- %s\n", t->name);
        fflush(stdout);
        int rc = t->fn();
        printf("%s %s\n", rc == 0 ? "PASS" : rc == 77 ? "SKIP" : "FAIL", t->name);
        failed += rc != 0 && rc != 77;
        skipped += rc == 77;
    }
    if (!ran) {
        fprintf(stderr, "no test named '%s' (see --list)\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    if (ran == skipped)
        return 77;
    return failed ? 1 : 0;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * (float)((splitmix64(&seed) >> 40) / 16777216.0);
}

double dot(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

int gradcheck(const char *what, float *x, int64_t n, const float *analytic,
              double (*loss)(void *ctx), void *ctx, double h, double atol, double rtol)
{
    int64_t samples = n <= 256 ? n : 256, bad = 0;
    uint64_t seed = 12345;
    double worst = 0;
    for (int64_t s = 0; s < samples; s++) {
        int64_t i = n <= 256 ? s : (int64_t)(splitmix64(&seed) % (uint64_t)n);
        float keep = x[i];
        x[i] = (float)(keep + h);
        double hi = loss(ctx);
        x[i] = (float)(keep - h);
        double lo = loss(ctx);
        // The step actually taken in float32, not the one asked for.
        double step = (double)(float)(keep + h) - (double)(float)(keep - h);
        x[i] = keep;
        double numeric = (hi - lo) / step, diff = fabs(analytic[i] - numeric);
        double excess = diff / (atol + rtol * fabs(numeric));
        if (excess > worst)
            worst = excess;
        if (excess > 1 && bad++ < 5)
            fprintf(stderr, "  %s[%lld]: analytic %.7g numeric %.7g\n", what, (long long)i,
                    analytic[i], numeric);
    }
    printf("  gradcheck %s: %lld coordinates, worst %.3g of tolerance, %lld over\n", what,
           (long long)samples, worst, (long long)bad);
    return bad ? 1 : 0;
}
