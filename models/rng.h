// Deterministic random draws: xoshiro256** seeded through splitmix64 (Blackman & Vigna),
// and the distributions the mixing needs. The same seed gives the same numbers on every
// machine; nothing here depends on the C library's rand().
#ifndef TMIX_RNG_H
#define TMIX_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} tmix_rng;

void tmix_rng_seed(tmix_rng *r, uint64_t seed);
uint64_t tmix_rng_next(tmix_rng *r);
// Uniform in [0, 1) with 53 random bits.
double tmix_rng_uniform(tmix_rng *r);
// Uniform integer in [0, n), without modulo bias. n > 0.
uint64_t tmix_rng_below(tmix_rng *r, uint64_t n);
// Standard normal (Box-Muller; one draw per call, so the sequence does not depend on pairing).
double tmix_rng_normal(tmix_rng *r);
// Gamma(shape, 1), shape > 0 (Marsaglia & Tsang; shape < 1 boosted by U^(1/shape)).
double tmix_rng_gamma(tmix_rng *r, double shape);
// Dirichlet(alpha, ..., alpha) over n components into out (Beta(alpha, alpha) when n = 2).
void tmix_rng_dirichlet(tmix_rng *r, double alpha, int n, double *out);
// A uniformly random permutation of 0..n-1 (Fisher-Yates).
void tmix_rng_permutation(tmix_rng *r, int64_t n, int64_t *out);

#endif
