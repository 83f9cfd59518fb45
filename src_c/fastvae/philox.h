/*
 * Philox4x64-10 counter-based random numbers (Salmon et al., "Parallel random
 * numbers: as easy as 1, 2, 3", SC11), header-only C99.
 *
 * Every output is a pure function of (key, counter): no state, so any thread
 * can draw any element and results never depend on the thread count.
 *
 * fastvae's counter convention for the normals of a training run:
 *   key     = {seed, stream}            stream names the purpose (FV_STREAM_*)
 *   counter = {block, row, step, draw}  block = element index / 4
 * One block yields 4 uint64 -> 4 uniforms (53 bits) -> 4 normals by
 * Box-Muller in double precision. Element e of a row is lane e % 4 of block
 * e / 4, so a single element can be recomputed without its neighbours.
 *
 * The Cython declarations in fastvae/_core/_rng.pxd mirror this header and must
 * match it.
 */
#ifndef FASTVAE_PHILOX_H
#define FASTVAE_PHILOX_H

#include <math.h>
#include <stdint.h>

/* Purposes of random streams; part of the key, so streams never overlap. */
#define FV_STREAM_REPARAM  1u  /* eps of the reparameterization in training */
#define FV_STREAM_EVAL     2u  /* eps used by elbo / score_samples */
#define FV_STREAM_SAMPLE   3u  /* latent draws of sample() */
#define FV_STREAM_BINARIZE 4u  /* dynamic binarization of training rows */
#define FV_STREAM_CORRUPT  5u  /* input masking of denoising training */
#define FV_STREAM_IS       6u  /* latent draws of importance-sampled log p(x) */
#define FV_STREAM_USER     16u /* first stream free for users of the C API */

#define FV_PHILOX_M0 UINT64_C(0xD2E7470EE14C6C93)
#define FV_PHILOX_M1 UINT64_C(0xCA5A826395121157)
#define FV_PHILOX_W0 UINT64_C(0x9E3779B97F4A7C15)
#define FV_PHILOX_W1 UINT64_C(0xBB67AE8584CAA73B)

static inline uint64_t fv_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi)
{
#if defined(__SIZEOF_INT128__)
    __uint128_t p = (__uint128_t)a * b;
    *hi = (uint64_t)(p >> 64);
    return (uint64_t)p;
#else
    /* Portable 64x64 -> 128 multiply from 32-bit halves. */
    uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32;
    uint64_t b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
    uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
    uint64_t mid = (p0 >> 32) + (p1 & 0xFFFFFFFFu) + (p2 & 0xFFFFFFFFu);
    *hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
    return (mid << 32) | (p0 & 0xFFFFFFFFu);
#endif
}

/* One Philox4x64-10 block: out = Philox(counter, key). */
static inline void fv_philox4x64_10(const uint64_t ctr[4], const uint64_t key[2],
                                    uint64_t out[4])
{
    uint64_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint64_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t hi0, hi1;
        uint64_t lo0 = fv_mulhilo64(FV_PHILOX_M0, c0, &hi0);
        uint64_t lo1 = fv_mulhilo64(FV_PHILOX_M1, c2, &hi1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += FV_PHILOX_W0;
        k1 += FV_PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Uniform in [0, 1) from the top 53 bits. */
static inline double fv_u64_to_unit(uint64_t x)
{
    return (double)(x >> 11) * 0x1.0p-53;
}

/* Four standard normals from one block, Box-Muller in double precision.
 * The first uniform of each pair is mapped to (0, 1] so log() stays finite;
 * the largest possible |z| is sqrt(-2 log 2^-53) ~ 8.57. */
static inline void fv_normal4(uint64_t seed, uint64_t stream, uint64_t block, uint64_t row,
                              uint64_t step, uint64_t draw, double out[4])
{
    const double two_pi = 6.283185307179586476925286766559;
    uint64_t ctr[4] = {block, row, step, draw};
    uint64_t key[2] = {seed, stream};
    uint64_t r[4];
    fv_philox4x64_10(ctr, key, r);
    for (int p = 0; p < 2; p++) {
        double u1 = 1.0 - fv_u64_to_unit(r[2 * p]);
        double u2 = fv_u64_to_unit(r[2 * p + 1]);
        double rad = sqrt(-2.0 * log(u1));
        double theta = two_pi * u2;
        out[2 * p] = rad * cos(theta);
        out[2 * p + 1] = rad * sin(theta);
    }
}

/* n normals of one (row, step, draw): element e is lane e % 4 of block e / 4. */
static inline void fv_normal_fill_f64(uint64_t seed, uint64_t stream, uint64_t row,
                                      uint64_t step, uint64_t draw, double *out, int64_t n)
{
    double z[4];
    for (int64_t b = 0; 4 * b < n; b++) {
        fv_normal4(seed, stream, (uint64_t)b, row, step, draw, z);
        for (int64_t l = 0; l < 4 && 4 * b + l < n; l++)
            out[4 * b + l] = z[l];
    }
}

static inline void fv_normal_fill_f32(uint64_t seed, uint64_t stream, uint64_t row,
                                      uint64_t step, uint64_t draw, float *out, int64_t n)
{
    double z[4];
    for (int64_t b = 0; 4 * b < n; b++) {
        fv_normal4(seed, stream, (uint64_t)b, row, step, draw, z);
        for (int64_t l = 0; l < 4 && 4 * b + l < n; l++)
            out[4 * b + l] = (float)z[l];
    }
}

/* Four uniforms in [0, 1) from one block of (block, row, step, draw). */
static inline void fv_uniform4(uint64_t seed, uint64_t stream, uint64_t block, uint64_t row,
                               uint64_t step, uint64_t draw, double out[4])
{
    uint64_t ctr[4] = {block, row, step, draw};
    uint64_t key[2] = {seed, stream};
    uint64_t r[4];
    fv_philox4x64_10(ctr, key, r);
    for (int l = 0; l < 4; l++)
        out[l] = fv_u64_to_unit(r[l]);
}

/* n uniforms in [0, 1) of one (row, step, draw): element e is lane e % 4 of
 * block e / 4, as for the normals. Double only: rounding to float32 could
 * turn a value just below 1 into 1. */
static inline void fv_uniform_fill_f64(uint64_t seed, uint64_t stream, uint64_t row,
                                       uint64_t step, uint64_t draw, double *out, int64_t n)
{
    double u[4];
    for (int64_t b = 0; 4 * b < n; b++) {
        fv_uniform4(seed, stream, (uint64_t)b, row, step, draw, u);
        for (int64_t l = 0; l < 4 && 4 * b + l < n; l++)
            out[4 * b + l] = u[l];
    }
}

#endif /* FASTVAE_PHILOX_H */
