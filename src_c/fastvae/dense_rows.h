/*
 * Row-invariant dense layer Y = act(X @ W + b) for inference, float32 (_f32)
 * and float64 (_f64) from one source (dense_rows_impl.h).
 *
 * Why not BLAS: OpenBLAS rounds a row of a GEMM differently depending on the
 * row's position inside the call (its tile and tail kernels; measured:
 * sgemm on X and on X[::-1] differ in ~5% of the elements by ~1 ulp), so
 * encoding a subset or a permutation of a batch would not give bitwise the
 * rows of the whole. Here every output element is one lane of a register
 * tile that sums x[k] * W[k, j] over k in order with the same instruction,
 * whatever the row's position, the number of rows, the split across threads
 * or the chunk it comes in: a row's output is a pure function of that row.
 *
 * Layout: X (rows, n_in) with leading dimension ldx, W (n_in, n_out)
 * contiguous row-major, b (n_out,), Y (rows, n_out) with ldy; Y must not
 * overlap X, W or b. fv_dense_rows_* computes rows [r0, r1) on the calling
 * thread; callers split rows across threads.
 *
 * Dispatch (like dispatch.h, without its target_clones: each level has its
 * own register tile): x86-64-v4 (AVX-512, 4 rows x 4 vectors of 16 float32 or
 * 8 float64), x86-64-v3 (AVX2 + FMA, 4 x 2 vectors of 32 bytes) or the
 * baseline (4 x 2 vectors of 16 bytes), chosen from the CPU on every call, so
 * all threads of a process run the same code. Results can differ in the last
 * bits between levels (FMA or not), not between rows, calls or threads.
 *
 * The Cython declarations in fastvae/_dense.pxd mirror this header and must
 * match it.
 */
#ifndef FASTVAE_DENSE_ROWS_H
#define FASTVAE_DENSE_ROWS_H

#include <stdint.h>

#include "fastvae/elementwise.h"

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && \
    defined(__linux__) && !defined(FASTVAE_NO_DISPATCH)
#define FV_RD_DISPATCH 1
#endif

#define FV_RD_R 4
/* Rows of X per block: 128 kB stay in a 512 kB-1 MB L2 beside one column
 * tile of W (n_in x 64 float32); without blocks a 512-row chunk of 784
 * features (1.6 MB) streamed from L3 once per tile (AVX2, 16-column tiles:
 * 43 GFLOP/s instead of 99). */
#define FV_RD_BLOCK_BYTES 131072

/* -- float32 ---------------------------------------------------------------- */
#define FV_T float

#define FV_RD(name) fv_rd_##name##_f32_base
#define FV_RD_TARGET
#define FV_RD_VBYTES 16
#define FV_RD_C 2
#include "fastvae/dense_rows_impl.h"
#undef FV_RD
#undef FV_RD_TARGET
#undef FV_RD_VBYTES
#undef FV_RD_C

#ifdef FV_RD_DISPATCH
#define FV_RD(name) fv_rd_##name##_f32_v3
#define FV_RD_TARGET __attribute__((target("arch=x86-64-v3")))
#define FV_RD_VBYTES 32
#define FV_RD_C 2
#include "fastvae/dense_rows_impl.h"
#undef FV_RD
#undef FV_RD_TARGET
#undef FV_RD_VBYTES
#undef FV_RD_C

#define FV_RD(name) fv_rd_##name##_f32_v4
#define FV_RD_TARGET __attribute__((target("arch=x86-64-v4")))
#define FV_RD_VBYTES 64
#define FV_RD_C 4
#include "fastvae/dense_rows_impl.h"
#undef FV_RD
#undef FV_RD_TARGET
#undef FV_RD_VBYTES
#undef FV_RD_C
#endif
#undef FV_T

/* -- float64 ---------------------------------------------------------------- */
#define FV_T double

#define FV_RD(name) fv_rd_##name##_f64_base
#define FV_RD_TARGET
#define FV_RD_VBYTES 16
#define FV_RD_C 2
#include "fastvae/dense_rows_impl.h"
#undef FV_RD
#undef FV_RD_TARGET
#undef FV_RD_VBYTES
#undef FV_RD_C

#ifdef FV_RD_DISPATCH
#define FV_RD(name) fv_rd_##name##_f64_v3
#define FV_RD_TARGET __attribute__((target("arch=x86-64-v3")))
#define FV_RD_VBYTES 32
#define FV_RD_C 2
#include "fastvae/dense_rows_impl.h"
#undef FV_RD
#undef FV_RD_TARGET
#undef FV_RD_VBYTES
#undef FV_RD_C

#define FV_RD(name) fv_rd_##name##_f64_v4
#define FV_RD_TARGET __attribute__((target("arch=x86-64-v4")))
#define FV_RD_VBYTES 64
#define FV_RD_C 4
#include "fastvae/dense_rows_impl.h"
#undef FV_RD
#undef FV_RD_TARGET
#undef FV_RD_VBYTES
#undef FV_RD_C
#endif
#undef FV_T

/* SIMD level the row kernels use on this CPU: 4 (x86-64-v4), 3 (x86-64-v3)
 * or 1 (the baseline build). */
static inline int fv_dense_rows_level(void)
{
#ifdef FV_RD_DISPATCH
    if (__builtin_cpu_supports("x86-64-v4"))
        return 4;
    if (__builtin_cpu_supports("x86-64-v3"))
        return 3;
#endif
    return 1;
}

/* Layers narrower than one vector: one row and one column at a time, k in
 * order (a row's numbers still depend on that row alone). */
#define FV_RD_NARROW(T)                                                                  \
    for (int64_t i = r0; i < r1; i++) {                                                  \
        const T *x = X + i * ldx;                                                        \
        T *y = Y + i * ldy;                                                              \
        for (int j = 0; j < n_out; j++) {                                                \
            T acc = 0;                                                                   \
            for (int k = 0; k < n_in; k++)                                               \
                acc += x[k] * W[(int64_t)k * n_out + j];                                 \
            y[j] = acc;                                                                  \
        }                                                                                \
    }

/* Y[i, :] = act(X[i, :] @ W + b) for rows i in [r0, r1) with the kernels of
 * SIMD level `level` (one that fv_dense_rows_level() allows: tests compare
 * the levels; everything else calls fv_dense_rows_f32/_f64). */
static inline __attribute__((unused)) void
fv_dense_rows_at_f32(int level, int64_t r0, int64_t r1, int n_in, int n_out, const float *X,
                     int64_t ldx, const float *W, const float *b, float *Y, int64_t ldy,
                     int activation)
{
    if (r1 <= r0 || n_out <= 0)
        return;
#ifndef FV_RD_DISPATCH
    level = 1;
#endif
    if (n_out < (level == 4 ? 16 : level == 3 ? 8 : 4)) {
        FV_RD_NARROW(float)
    }
#ifdef FV_RD_DISPATCH
    else if (level == 4)
        fv_rd_tiles_f32_v4(r0, r1, n_in, n_out, X, ldx, W, Y, ldy);
    else if (level == 3)
        fv_rd_tiles_f32_v3(r0, r1, n_in, n_out, X, ldx, W, Y, ldy);
#endif
    else
        fv_rd_tiles_f32_base(r0, r1, n_in, n_out, X, ldx, W, Y, ldy);
    fv_bias_activation_f32(Y + r0 * ldy, ldy, (int)(r1 - r0), n_out, b, activation);
}

static inline __attribute__((unused)) void
fv_dense_rows_at_f64(int level, int64_t r0, int64_t r1, int n_in, int n_out,
                     const double *X, int64_t ldx, const double *W, const double *b,
                     double *Y, int64_t ldy, int activation)
{
    if (r1 <= r0 || n_out <= 0)
        return;
#ifndef FV_RD_DISPATCH
    level = 1;
#endif
    if (n_out < (level == 4 ? 8 : level == 3 ? 4 : 2)) {
        FV_RD_NARROW(double)
    }
#ifdef FV_RD_DISPATCH
    else if (level == 4)
        fv_rd_tiles_f64_v4(r0, r1, n_in, n_out, X, ldx, W, Y, ldy);
    else if (level == 3)
        fv_rd_tiles_f64_v3(r0, r1, n_in, n_out, X, ldx, W, Y, ldy);
#endif
    else
        fv_rd_tiles_f64_base(r0, r1, n_in, n_out, X, ldx, W, Y, ldy);
    fv_bias_activation_f64(Y + r0 * ldy, ldy, (int)(r1 - r0), n_out, b, activation);
}

/* Y[i, :] = act(X[i, :] @ W + b) for rows i in [r0, r1). */
static inline __attribute__((unused)) void
fv_dense_rows_f32(int64_t r0, int64_t r1, int n_in, int n_out, const float *X, int64_t ldx,
                  const float *W, const float *b, float *Y, int64_t ldy, int activation)
{
    fv_dense_rows_at_f32(fv_dense_rows_level(), r0, r1, n_in, n_out, X, ldx, W, b, Y, ldy,
                         activation);
}

static inline __attribute__((unused)) void
fv_dense_rows_f64(int64_t r0, int64_t r1, int n_in, int n_out, const double *X,
                  int64_t ldx, const double *W, const double *b, double *Y, int64_t ldy,
                  int activation)
{
    fv_dense_rows_at_f64(fv_dense_rows_level(), r0, r1, n_in, n_out, X, ldx, W, b, Y, ldy,
                         activation);
}

#undef FV_RD_NARROW

#endif /* FASTVAE_DENSE_ROWS_H */
