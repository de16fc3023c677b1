// xoshiro256** and the distributions on top of it; see rng.h.
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void tmix_rng_seed(tmix_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

uint64_t tmix_rng_next(tmix_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double tmix_rng_uniform(tmix_rng *r)
{
    return (double)(tmix_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t tmix_rng_below(tmix_rng *r, uint64_t n)
{
    // Reject the top partial block so every residue is equally likely.
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = tmix_rng_next(r);
    while (x >= limit);
    return x % n;
}

double tmix_rng_normal(tmix_rng *r)
{
    const double u1 = 1.0 - tmix_rng_uniform(r), u2 = tmix_rng_uniform(r); // u1 in (0, 1]
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2); // 2 pi u2
}

double tmix_rng_gamma(tmix_rng *r, double shape)
{
    if (shape < 1.0) {
        const double u = 1.0 - tmix_rng_uniform(r);
        return tmix_rng_gamma(r, shape + 1.0) * pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = tmix_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        const double u = 1.0 - tmix_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return d * v;
    }
}

void tmix_rng_dirichlet(tmix_rng *r, double alpha, int n, double *out)
{
    double sum = 0;
    for (int k = 0; k < n; k++)
        sum += out[k] = tmix_rng_gamma(r, alpha);
    if (!(sum > 0)) { // every gamma underflowed (tiny alpha): one component takes it all
        for (int k = 0; k < n; k++)
            out[k] = 0;
        out[tmix_rng_below(r, (uint64_t)n)] = 1;
        return;
    }
    for (int k = 0; k < n; k++)
        out[k] /= sum;
}

void tmix_rng_permutation(tmix_rng *r, int64_t n, int64_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)tmix_rng_below(r, (uint64_t)i + 1);
        const int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}
