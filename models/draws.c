// The random part of a batch (pairing, λ, noise, CutMix centres) and the method names.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "mix.h"

static const char *const method_names[] = {
#define TMIX_METHOD_NAME(id, name) name,
    TMIX_METHODS(TMIX_METHOD_NAME)
#undef TMIX_METHOD_NAME
};

const char *tmix_method_name(tmix_method m)
{
    return m >= 0 && m < TMIX_MIX_METHOD_COUNT ? method_names[m] : "?";
}

int tmix_method_parse(const char *name, tmix_method *out)
{
    for (int m = 0; m < TMIX_MIX_METHOD_COUNT; m++)
        if (strcmp(name, method_names[m]) == 0) {
            *out = (tmix_method)m;
            return 0;
        }
    return tmix_fail(TMIX_EINVAL, "unknown mixing method '%s' (expected none, mixup, cutmix, "
                     "softmax-cam, stn-only, mpn-only or transformmix)", name);
}

bool tmix_method_uses_stn(tmix_method m)
{
    return m == TMIX_MIX_STN_ONLY || m == TMIX_MIX_TRANSFORMMIX;
}

bool tmix_method_uses_mpn(tmix_method m)
{
    return m == TMIX_MIX_MPN_ONLY || m == TMIX_MIX_TRANSFORMMIX;
}

bool tmix_method_uses_cams(tmix_method m)
{
    return m == TMIX_MIX_SOFTMAX_CAM || tmix_method_uses_stn(m) || tmix_method_uses_mpn(m);
}

int tmix_draws_alloc(tmix_draws *d, int batch, int n, int stn_size)
{
    memset(d, 0, sizeof *d);
    if (batch < 1 || n < 2 || n > TMIX_MODULE_MAX_N || stn_size < 0)
        return tmix_fail(TMIX_EINVAL, "draws: batch %d, n %d, stn_size %d out of range", batch, n,
                         stn_size);
    d->batch = batch;
    d->n = n;
    d->stn_size = stn_size;
    d->perm = malloc(sizeof *d->perm * (size_t)(n - 1) * batch);
    d->lam = malloc(sizeof *d->lam * (size_t)n * batch);
    d->noise = stn_size ? malloc(sizeof *d->noise * (size_t)batch * stn_size * stn_size) : NULL;
    d->centre = malloc(sizeof *d->centre * 2 * (size_t)batch);
    if (!d->perm || !d->lam || (stn_size && !d->noise) || !d->centre) {
        tmix_draws_free(d);
        return tmix_fail(TMIX_ENOMEM, "draws: out of memory for a batch of %d", batch);
    }
    return 0;
}

void tmix_draws_free(tmix_draws *d)
{
    free(d->perm);
    free(d->lam);
    free(d->noise);
    free(d->centre);
    memset(d, 0, sizeof *d);
}

void tmix_draws_sample(tmix_draws *d, tmix_rng *rng, double alpha)
{
    const int b = d->batch, n = d->n;
    for (int k = 0; k < n - 1; k++)
        tmix_rng_permutation(rng, b, d->perm + (size_t)k * b);
    for (int i = 0; i < b; i++) {
        double lam[TMIX_MODULE_MAX_N];
        tmix_rng_dirichlet(rng, alpha, n, lam);
        for (int k = 0; k < n; k++)
            d->lam[i * n + k] = (float)lam[k];
    }
    for (int i = 0; i < 2 * b; i++)
        d->centre[i] = (float)tmix_rng_uniform(rng);
    // Last, so that draws without noise (stn_size 0) agree with the others on the rest.
    for (size_t i = 0; i < (size_t)b * d->stn_size * d->stn_size; i++)
        d->noise[i] = (float)tmix_rng_normal(rng);
}

int tmix_draws_check(const tmix_draws *d)
{
    const int b = d->batch, n = d->n;
    char *seen = calloc((size_t)b, 1);
    if (!seen)
        return tmix_fail(TMIX_ENOMEM, "draws: out of memory");
    for (int k = 0; k < n - 1; k++) {
        memset(seen, 0, (size_t)b);
        for (int i = 0; i < b; i++) {
            const int64_t p = d->perm[(size_t)k * b + i];
            if (p < 0 || p >= b || seen[p]) {
                free(seen);
                return tmix_fail(TMIX_EINVAL, "perm[%d] is not a permutation of 0..%d: entry %d "
                                 "is %lld", k, b - 1, i, (long long)p);
            }
            seen[p] = 1;
        }
    }
    free(seen);
    for (int i = 0; i < b; i++) {
        double sum = 0;
        for (int k = 0; k < n; k++) {
            const float l = d->lam[i * n + k];
            if (!(l >= 0 && l <= 1))
                return tmix_fail(TMIX_EINVAL, "lam[%d][%d] = %g is outside [0, 1]", i, k, l);
            sum += l;
        }
        if (fabs(sum - 1) > 1e-4)
            return tmix_fail(TMIX_EINVAL, "lam[%d] sums to %.6f, expected 1", i, sum);
    }
    return 0;
}
