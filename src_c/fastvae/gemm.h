/*
 * fastvae's own GEMM for the training step on AVX-512 CPUs (x86-64-v4),
 * float32 (_f32) and float64 (_f64) from one source (gemm_impl.h).
 *
 * Why: the BLAS that scipy ships picks its kernels from the CPU or from
 * OPENBLAS_CORETYPE, and on machines that pin an older core type (ours sets
 * Haswell on an AVX-512 EPYC) every GEMM of a step runs AVX2 code at about
 * half the core's rate (sgemm 107 against 203 GFLOP/s, one thread). These
 * kernels use the CPU's own vector width whatever BLAS was told, the way
 * XLA brings its own GEMMs. They cover the three products of a dense layer:
 *   forward        Y  = X @ W        NN, outer-product tiles
 *   weight grad    dW = X^T @ dA     TN, the same tiles with A read by column
 *   input grad     dX = dA @ W^T     NT, dot-product tiles (both operands
 *                                    contiguous along the sum, no packing);
 *                                    from 192 rows, outer-product tiles on
 *                                    panels of W^T packed per call
 * Each output element is a fixed sequence of fused multiply-adds that
 * depends only on (m, n, k) and the element's position in C: results are
 * deterministic, independent of the thread count and of alignment.
 *
 * fv_gemm_own_f32 / _f64 return 1 after computing C, 0 when they do not
 * apply (not built with dispatch, CPU without AVX-512, both operands
 * transposed, or disabled by fv_gemm_set_own(0)): the caller then uses BLAS.
 */
#ifndef FASTVAE_GEMM_H
#define FASTVAE_GEMM_H

#include <stdint.h>
#include <stdlib.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && \
    defined(__linux__) && !defined(FASTVAE_NO_DISPATCH)
#define FV_GEMM_BUILT 1
#else
#define FV_GEMM_BUILT 0
#endif

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

static void fv_gemm_scratch_make_key(void) { pthread_key_create(&fv_gemm_scratch_key, free); }

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
#define FV_GEMM_R 6
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
#define FV_GI(p, s, o, V) ((((p) / (s)) % 2) * (V) + ((p) / (s) / 2) * 2 * (s) + (p) % (s) + (o))
#define FV_GI8(s, o)                                                                    \
    FV_GI(0, s, o, 8), FV_GI(1, s, o, 8), FV_GI(2, s, o, 8), FV_GI(3, s, o, 8),         \
        FV_GI(4, s, o, 8), FV_GI(5, s, o, 8), FV_GI(6, s, o, 8), FV_GI(7, s, o, 8)
#define FV_GI16(s, o)                                                                   \
    FV_GI(0, s, o, 16), FV_GI(1, s, o, 16), FV_GI(2, s, o, 16), FV_GI(3, s, o, 16),     \
        FV_GI(4, s, o, 16), FV_GI(5, s, o, 16), FV_GI(6, s, o, 16), FV_GI(7, s, o, 16), \
        FV_GI(8, s, o, 16), FV_GI(9, s, o, 16), FV_GI(10, s, o, 16),                    \
        FV_GI(11, s, o, 16), FV_GI(12, s, o, 16), FV_GI(13, s, o, 16),                  \
        FV_GI(14, s, o, 16), FV_GI(15, s, o, 16)
/* One level of the reduction tree: n/2 vectors from n, each lane the sum of
 * two lanes of a pair. After log2(V) levels lane p holds the sum of input
 * vector bitreverse(p), so inputs go in bit-reversed order. */
#define FV_G_LEVEL(out, in, n, s, IDX)                                                  \
    for (int p_ = 0; p_ < (n) / 2; p_++)                                                \
        (out)[p_] = __builtin_shufflevector((in)[2 * p_], (in)[2 * p_ + 1], IDX(s, 0)) + \
                    __builtin_shufflevector((in)[2 * p_], (in)[2 * p_ + 1], IDX(s, s));

/* -- float32 ---------------------------------------------------------------- */
#define FV_T float
#define FV_G(name) fv_gemm_##name##_f32
#define FV_G_V 16
#define FV_G_MASK __mmask16
#define FV_G_MASKZ_LOAD(m, p) _mm512_maskz_loadu_ps((m), (p))
#define FV_G_MASK_STORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (__m512)(v))
#define FV_G_DOT_RA 4
#define FV_G_DOT_RB 4
#define FV_G_REDUCE(sums, acc)                                                          \
    do {                                                                                \
        static const int br_[16] = {0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15}; \
        fv_gemm_vec_f32 v_[16], u_[8], w_[4], t_[2];                                    \
        for (int q_ = 0; q_ < 16; q_++)                                                 \
            v_[q_] = (acc)[br_[q_]];                                                    \
        FV_G_LEVEL(u_, v_, 16, 8, FV_GI16)                                              \
        FV_G_LEVEL(w_, u_, 8, 4, FV_GI16)                                               \
        FV_G_LEVEL(t_, w_, 4, 2, FV_GI16)                                               \
        FV_G_LEVEL(&(sums), t_, 2, 1, FV_GI16)                                          \
    } while (0)
#include "fastvae/gemm_impl.h"

/* -- float64 ---------------------------------------------------------------- */
#define FV_T double
#define FV_G(name) fv_gemm_##name##_f64
#define FV_G_V 8
#define FV_G_MASK __mmask8
#define FV_G_MASKZ_LOAD(m, p) _mm512_maskz_loadu_pd((m), (p))
#define FV_G_MASK_STORE(p, m, v) _mm512_mask_storeu_pd((p), (m), (__m512d)(v))
#define FV_G_DOT_RA 4
#define FV_G_DOT_RB 2
#define FV_G_REDUCE(sums, acc)                                                          \
    do {                                                                                \
        static const int br_[8] = {0, 4, 2, 6, 1, 5, 3, 7};                             \
        fv_gemm_vec_f64 v_[8], u_[4], t_[2];                                            \
        for (int q_ = 0; q_ < 8; q_++)                                                  \
            v_[q_] = (acc)[br_[q_]];                                                    \
        FV_G_LEVEL(u_, v_, 8, 4, FV_GI8)                                                \
        FV_G_LEVEL(t_, u_, 4, 2, FV_GI8)                                                \
        FV_G_LEVEL(&(sums), t_, 2, 1, FV_GI8)                                           \
    } while (0)
#include "fastvae/gemm_impl.h"
#endif /* FV_GEMM_BUILT */

/* 1 when this build and CPU can run the kernels (a property of the process). */
static inline __attribute__((unused)) int fv_gemm_own_available(void)
{
#if FV_GEMM_BUILT
    return __builtin_cpu_supports("x86-64-v4");
#else
    return 0;
#endif
}

/* Whether the training step uses these kernels: set once by fastvae._blas
 * when it loads (FASTVAE_GEMM) and by tests; static, so one flag per
 * extension module, and only fastvae._blas includes this header. */
static int fv_gemm_own_enabled = 0;

static inline __attribute__((unused)) void fv_gemm_set_own(int on)
{
    fv_gemm_own_enabled = on && fv_gemm_own_available();
}

static inline __attribute__((unused)) int fv_gemm_get_own(void) { return fv_gemm_own_enabled; }

/* C (m x n) = alpha * op(A) @ op(B) + beta * C, all row-major; 1 if done. */
#if FV_GEMM_BUILT
#define FV_GEMM_CALLS(S)                                                                 \
    if (!trans_b)                                                                        \
        fv_gemm_outer_##S(trans_a, 0, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);     \
    else if (m < FV_GEMM_NT_PACK_MIN_ROWS ||                                             \
             !fv_gemm_outer_##S(0, 1, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))     \
        fv_gemm_dot_##S(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#else
#define FV_GEMM_CALLS(S)                                                                 \
    (void)m, (void)n, (void)k, (void)alpha, (void)A, (void)lda, (void)B, (void)ldb,      \
        (void)beta, (void)C, (void)ldc;
#endif
#define FV_GEMM_DEFINE(T, S)                                                             \
    static inline __attribute__((unused)) int fv_gemm_kernels_##S(                       \
        int trans_a, int trans_b, int m, int n, int k, T alpha, const T *A, int64_t lda, \
        const T *B, int64_t ldb, T beta, T *C, int64_t ldc)                              \
    {                                                                                    \
        if (trans_a && trans_b)                                                          \
            return 0;                                                                    \
        FV_GEMM_CALLS(S)                                                                 \
        return 1;                                                                        \
    }                                                                                    \
                                                                                         \
    /* The kernels whatever the flag, where the CPU has them (tests). */                 \
    static inline __attribute__((unused)) int fv_gemm_run_##S(                           \
        int trans_a, int trans_b, int m, int n, int k, T alpha, const T *A, int64_t lda, \
        const T *B, int64_t ldb, T beta, T *C, int64_t ldc)                              \
    {                                                                                    \
        return fv_gemm_own_available() && fv_gemm_kernels_##S(trans_a, trans_b, m, n, k, \
                                                              alpha, A, lda, B, ldb,     \
                                                              beta, C, ldc);             \
    }                                                                                    \
                                                                                         \
    /* The training step's call: the flag implies the CPU has the kernels. */            \
    static inline __attribute__((unused)) int fv_gemm_own_##S(                           \
        int trans_a, int trans_b, int m, int n, int k, T alpha, const T *A, int64_t lda, \
        const T *B, int64_t ldb, T beta, T *C, int64_t ldc)                              \
    {                                                                                    \
        return fv_gemm_own_enabled && fv_gemm_kernels_##S(trans_a, trans_b, m, n, k,     \
                                                          alpha, A, lda, B, ldb, beta,   \
                                                          C, ldc);                       \
    }
FV_GEMM_DEFINE(float, f32)
FV_GEMM_DEFINE(double, f64)
#undef FV_GEMM_DEFINE
#undef FV_GEMM_CALLS

#endif /* FASTVAE_GEMM_H */
