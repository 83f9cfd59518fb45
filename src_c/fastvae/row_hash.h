/*
 * A 64-bit key of a data row's values, so evaluation noise can be a pure
 * function of the row itself: VAE.score_samples draws a row's eps from
 * Philox counter (block, key(row), 0, draw), hence gives the same number for
 * a row whatever other rows share the call and wherever it sits.
 *
 * The row is read as 32-bit words in memory order (one per float32, two per
 * float64, after turning -0 into +0, which the network cannot tell apart):
 * word i goes into lane i % 16 as h = (h ^ word) * 0x9E3779B1 (mod 2^32),
 * lanes start at their index, and then the lanes and the word count are
 * folded into 64 bits with SplitMix64's finalizer, lane by lane. Sixteen
 * independent lanes vectorise (a single multiply chain would cost about a
 * third of a 784-400 layer's time); integer arithmetic gives the same key on
 * every SIMD level. Not cryptographic: keys only need to differ between rows.
 *
 * tests/reference.py has the same function in NumPy; the Cython declarations
 * in fastvae/_core/_step.pyx mirror this header and must match it.
 */
#ifndef FASTVAE_ROW_HASH_H
#define FASTVAE_ROW_HASH_H

#include <stdint.h>
#include <string.h>

#include "fastvae/dispatch.h"

#define FV_ROW_HASH_LANES 16
#define FV_ROW_HASH_MUL   0x9E3779B1u

static inline uint64_t fv_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fold the lanes and the number of words into the key. */
static inline uint64_t fv_row_hash_fold(const uint32_t *h, int64_t n_words)
{
    uint64_t key = fv_mix64((uint64_t)n_words);
    for (int l = 0; l < FV_ROW_HASH_LANES; l++)
        key = fv_mix64(key ^ h[l]);
    return key;
}

#define FV_DISPATCH_IMPL "fastvae/row_hash_impl.h"
#include "fastvae/dispatch_each.h"
#undef FV_DISPATCH_IMPL
FV_DISPATCH(uint64_t, fv_row_key_f32, (const float *x, int n), (x, n))
FV_DISPATCH(uint64_t, fv_row_key_f64, (const double *x, int n), (x, n))

#endif /* FASTVAE_ROW_HASH_H */
