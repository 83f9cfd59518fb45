/*
 * fastvae's own GEMM for the training step on x86-64 CPUs with AVX-512
 * (x86-64-v4) or AVX2 + FMA (x86-64-v3), float32 (_f32) and float64 (_f64)
 * from one source per level (gemm_impl.h, gemm_avx2_impl.h).
 *
 * Why: the BLAS that scipy ships picks its kernels from the CPU or from
 * OPENBLAS_CORETYPE, and on machines that pin an older core type (ours sets
 * Haswell on an AVX-512 EPYC) every GEMM of a step runs AVX2 code at about
 * half the core's rate (sgemm 107 against 203 GFLOP/s, one thread). On AVX2
 * CPUs BLAS's fixed cost per call dominates the small and skinny products of
 * a step. These kernels use the CPU's own vector width whatever BLAS was
 * told, the way XLA brings its own GEMMs. They cover the three products of
 * a dense layer:
 *   forward        Y  = X @ W        NN, outer-product tiles
 *   weight grad    dW = X^T @ dA     TN, the same tiles with A read by column
 *   input grad     dX = dA @ W^T     NT; AVX-512: dot-product tiles, from
 *                                    192 rows outer-product tiles on packed
 *                                    panels of W^T; AVX2: outer-product
 *                                    tiles on packed W^T, or C^T = W @ dA^T
 *                                    on packed dA^T
 * Each output element is a fixed sequence of fused multiply-adds that
 * depends only on (m, n, k), the level and the element's position in C:
 * results are deterministic, independent of the thread count and of
 * alignment. At the AVX2 level the sequence does not depend on m or n
 * either (one plain chain over k per element), so any cut of a product into
 * row or column blocks gives the same bits.
 *
 * fv_gemm_at_f32 / _f64 (level, ...) return 1 after computing C at `level`
 * (FV_ISA_AVX512 or FV_ISA_AVX2, isa.h), 0 when they do not apply (a lower
 * level, a build without dispatch, both operands transposed): the caller
 * then uses BLAS. Which level runs is the caller's choice, one switch per
 * process owned by fastvae._core._blas; the caller must not pass a level the CPU
 * lacks (fv_isa() never exceeds it).
 */
#ifndef FASTVAE_GEMM_H
#define FASTVAE_GEMM_H

#include <stdint.h>
#include <stdlib.h>

#include "fastvae/isa.h"

/* The kernels exist where isa.h dispatches (GCC >= 12, x86-64 Linux). */
#define FV_GEMM_BUILT FV_ISA_DISPATCH

#if FV_GEMM_BUILT
#include <immintrin.h>
#include <pthread.h>

/* Per-thread panel buffer, kept between calls: a fresh 256 kB block per
 * call came back from the kernel zeroed every time (clear_page: 4% of a
 * 784-1024-1024/64/512 step). Freed when its thread exits. The buffer
 * starts with its capacity in bytes; callers get the 64-byte aligned
 * space after that header. */
static pthread_key_t fv_gemm_scratch_key;
static pthread_once_t fv_gemm_scratch_once = PTHREAD_ONCE_INIT;

static void fv_gemm_scratch_make_key(void)
{
    pthread_key_create(&fv_gemm_scratch_key, free);
}

static inline __attribute__((unused)) void *fv_gemm_scratch(size_t bytes)
{
    pthread_once(&fv_gemm_scratch_once, fv_gemm_scratch_make_key);
    size_t *blk = (size_t *)pthread_getspecific(fv_gemm_scratch_key);
    if (blk && blk[0] >= bytes)
        return (char *)blk + 64;
    free(blk);
    blk = (size_t *)aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (blk)
        blk[0] = (bytes + 63) / 64 * 64;
    pthread_setspecific(fv_gemm_scratch_key, blk);
    return blk ? (char *)blk + 64 : NULL;
}

#define FV_GEMM_TARGET __attribute__((target("arch=x86-64-v4")))
/* Outer-product register tile: FV_GEMM_R rows x FV_GEMM_CV vectors = 24
 * accumulators of the 32 vector registers. */
#define FV_GEMM_R  6
#define FV_GEMM_CV 4
/* Rows of C that pay for packing a panel (gemm_impl.h, outer). */
#define FV_GEMM_PACK_MIN_ROWS 64
/* Rows of C from which A @ B^T runs as outer-product tiles on packed,
 * transposed panels of B rather than as dot-product tiles: the copy pays
 * for itself over enough rows (measured, one thread, GFLOP/s dot / packed:
 * 64x400x784 171 / 154, 128x400x784 202 / 187, 256x400x784 199 / 213,
 * 512x1024x1024 164 / 219). */
#ifndef FV_GEMM_NT_PACK_MIN_ROWS
#define FV_GEMM_NT_PACK_MIN_ROWS 192
#endif
/* Bytes of B rows the dot kernel keeps in L2 while A passes over them. */
#define FV_GEMM_L2_BYTES 262144

/* Index p of a shuffle that, at block size s, takes alternate s-blocks of
 * a and b (b's lanes numbered from V), offset o within a pair of blocks. */
#define FV_GI(p, s, o, V)                                                                      \
    ((((p) / (s)) % 2) * (V) + ((p) / (s) / 2) * 2 * (s) + (p) % (s) + (o))
#define FV_GI8(s, o)                                                                           \
    FV_GI(0, s, o, 8), FV_GI(1, s, o, 8), FV_GI(2, s, o, 8), FV_GI(3, s, o, 8),                \
        FV_GI(4, s, o, 8), FV_GI(5, s, o, 8), FV_GI(6, s, o, 8), FV_GI(7, s, o, 8)
#define FV_GI16(s, o)                                                                          \
    FV_GI(0, s, o, 16), FV_GI(1, s, o, 16), FV_GI(2, s, o, 16), FV_GI(3, s, o, 16),            \
        FV_GI(4, s, o, 16), FV_GI(5, s, o, 16), FV_GI(6, s, o, 16), FV_GI(7, s, o, 16),        \
        FV_GI(8, s, o, 16), FV_GI(9, s, o, 16), FV_GI(10, s, o, 16), FV_GI(11, s, o, 16),      \
        FV_GI(12, s, o, 16), FV_GI(13, s, o, 16), FV_GI(14, s, o, 16), FV_GI(15, s, o, 16)
/* One level of the reduction tree: n/2 vectors from n, each lane the sum of
 * two lanes of a pair. After log2(V) levels lane p holds the sum of input
 * vector bitreverse(p), so inputs go in bit-reversed order. */
#define FV_G_LEVEL(out, in, n, s, IDX)                                                         \
    for (int p_ = 0; p_ < (n) / 2; p_++)                                                       \
        (out)[p_] = __builtin_shufflevector((in)[2 * p_], (in)[2 * p_ + 1], IDX(s, 0)) +       \
                    __builtin_shufflevector((in)[2 * p_], (in)[2 * p_ + 1], IDX(s, s));

/* -- float32 ---------------------------------------------------------------- */
#define FV_T                     float
#define FV_G(name)               fv_gemm_##name##_f32
#define FV_G_V                   16
#define FV_G_MASK                __mmask16
#define FV_G_MASKZ_LOAD(m, p)    _mm512_maskz_loadu_ps((m), (p))
#define FV_G_MASK_STORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (__m512)(v))
#define FV_G_DOT_RA              4
#define FV_G_DOT_RB              4
#define FV_G_REDUCE(sums, acc)                                                                 \
    do {                                                                                       \
        static const int br_[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15};     \
        fv_gemm_vec_f32 v_[16], u_[8], w_[4], t_[2];                                           \
        for (int q_ = 0; q_ < 16; q_++)                                                        \
            v_[q_] = (acc)[br_[q_]];                                                           \
        FV_G_LEVEL(u_, v_, 16, 8, FV_GI16)                                                     \
        FV_G_LEVEL(w_, u_, 8, 4, FV_GI16)                                                      \
        FV_G_LEVEL(t_, w_, 4, 2, FV_GI16)                                                      \
        FV_G_LEVEL(&(sums), t_, 2, 1, FV_GI16)                                                 \
    } while (0)
#include "fastvae/gemm_impl.h"

/* -- float64 ---------------------------------------------------------------- */
#define FV_T                     double
#define FV_G(name)               fv_gemm_##name##_f64
#define FV_G_V                   8
#define FV_G_MASK                __mmask8
#define FV_G_MASKZ_LOAD(m, p)    _mm512_maskz_loadu_pd((m), (p))
#define FV_G_MASK_STORE(p, m, v) _mm512_mask_storeu_pd((p), (m), (__m512d)(v))
#define FV_G_DOT_RA              4
#define FV_G_DOT_RB              2
#define FV_G_REDUCE(sums, acc)                                                                 \
    do {                                                                                       \
        static const int br_[8] = {0, 4, 2, 6, 1, 5, 3, 7};                                    \
        fv_gemm_vec_f64 v_[8], u_[4], t_[2];                                                   \
        for (int q_ = 0; q_ < 8; q_++)                                                         \
            v_[q_] = (acc)[br_[q_]];                                                           \
        FV_G_LEVEL(u_, v_, 8, 4, FV_GI8)                                                       \
        FV_G_LEVEL(t_, u_, 4, 2, FV_GI8)                                                       \
        FV_G_LEVEL(&(sums), t_, 2, 1, FV_GI8)                                                  \
    } while (0)
#include "fastvae/gemm_impl.h"

/* -- AVX2 + FMA (x86-64-v3) ------------------------------------------------ */
#define FV_GEMM_TARGET_V3 __attribute__((target("arch=x86-64-v3")))
/* Outer-product register tile: 6 rows x 2 vectors = 12 accumulators of the
 * 16 ymm registers, plus 2 for the panel row and 1 for the broadcast. */
#define FV_GEMM_A_R  6
#define FV_GEMM_A_CV 2
/* A @ B^T with at most this many rows of A runs as C^T = B @ A^T. */
#define FV_GEMM_A_SWAP_ROWS 16
/* Row groups up to which NN and TN read full panels of B unpacked. */
#ifndef FV_GEMM_A_DIRECT_GROUPS
#define FV_GEMM_A_DIRECT_GROUPS 3
#endif
/* ... and for any rows when the sum is this short: k rows of B are too few
 * to evict each other (128x400x20 float32, CPU time: 81 -> 85 GFLOP/s). */
#ifndef FV_GEMM_A_DIRECT_K
#define FV_GEMM_A_DIRECT_K 32
#endif
/* Bytes of op(A) rows kept in L2 while the panels of B pass over them. */
#ifndef FV_GEMM_A_L2_BYTES
#define FV_GEMM_A_L2_BYTES 196608
#endif
/* Largest packed copy of A for A^T @ B, and of all B panels. */
/* Columns of C from which A^T @ B packs A even where its rows are not a
 * multiple of 1 kB apart (gemm_avx2_impl.h). */
#ifndef FV_GEMM_A_PACK_MIN_N
#define FV_GEMM_A_PACK_MIN_N 128
#endif
#ifndef FV_GEMM_A_PACK_BYTES
#define FV_GEMM_A_PACK_BYTES (8 << 20)
#endif

static const int32_t fv_gemm_masks_f32[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                              0,  0,  0,  0,  0,  0,  0,  0};
static const int64_t fv_gemm_masks_f64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

#define FV_T           float
#define FV_A(name)     fv_gemm_avx2_##name##_f32
#define FV_A_V         8
#define FV_A_VEC       __m256
#define FV_A_SET1      _mm256_set1_ps
#define FV_A_FMA       _mm256_fmadd_ps
#define FV_A_MUL       _mm256_mul_ps
#define FV_A_LOAD      _mm256_load_ps
#define FV_A_LOADU     _mm256_loadu_ps
#define FV_A_STOREU    _mm256_storeu_ps
#define FV_A_MASKLOAD  _mm256_maskload_ps
#define FV_A_MASKSTORE _mm256_maskstore_ps
#define FV_A_SFMA      __builtin_fmaf
#define FV_A_MASKS     fv_gemm_masks_f32
#include "fastvae/gemm_avx2_impl.h"

#define FV_T           double
#define FV_A(name)     fv_gemm_avx2_##name##_f64
#define FV_A_V         4
#define FV_A_VEC       __m256d
#define FV_A_SET1      _mm256_set1_pd
#define FV_A_FMA       _mm256_fmadd_pd
#define FV_A_MUL       _mm256_mul_pd
#define FV_A_LOAD      _mm256_load_pd
#define FV_A_LOADU     _mm256_loadu_pd
#define FV_A_STOREU    _mm256_storeu_pd
#define FV_A_MASKLOAD  _mm256_maskload_pd
#define FV_A_MASKSTORE _mm256_maskstore_pd
#define FV_A_SFMA      __builtin_fma
#define FV_A_MASKS     fv_gemm_masks_f64
#include "fastvae/gemm_avx2_impl.h"
#endif /* FV_GEMM_BUILT */

/* C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major, at `level`;
 * 1 if done. */
#if FV_GEMM_BUILT
#define FV_GEMM_CALLS(S)                                                                       \
    if (level >= FV_ISA_AVX512) {                                                              \
        if (!trans_b)                                                                          \
            fv_gemm_outer_##S(trans_a, 0, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);       \
        else if (m < FV_GEMM_NT_PACK_MIN_ROWS ||                                               \
                 !fv_gemm_outer_##S(0, 1, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))       \
            fv_gemm_dot_##S(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);                     \
        return 1;                                                                              \
    }                                                                                          \
    if (level >= FV_ISA_AVX2)                                                                  \
        return fv_gemm_avx2_gemm_##S(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta,   \
                                     C, ldc);
#else
#define FV_GEMM_CALLS(S)                                                                       \
    (void)level, (void)m, (void)n, (void)k, (void)alpha, (void)A, (void)lda, (void)B,          \
        (void)ldb, (void)beta, (void)C, (void)ldc;
#endif
#define FV_GEMM_DEFINE(T, S)                                                                   \
    static inline __attribute__((unused)) int fv_gemm_at_##S(                                  \
        int level, int trans_a, int trans_b, int m, int n, int k, T alpha, const T *A,         \
        int64_t lda, const T *B, int64_t ldb, T beta, T *C, int64_t ldc)                       \
    {                                                                                          \
        if (trans_a && trans_b)                                                                \
            return 0;                                                                          \
        FV_GEMM_CALLS(S)                                                                       \
        return 0;                                                                              \
    }
FV_GEMM_DEFINE(float, f32)
FV_GEMM_DEFINE(double, f64)
#undef FV_GEMM_DEFINE
#undef FV_GEMM_CALLS

#endif /* FASTVAE_GEMM_H */
