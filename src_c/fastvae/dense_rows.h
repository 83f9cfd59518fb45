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
 * Dispatch: dispatch.h's scheme, like every SIMD kernel of fastvae (each
 * level has its own register tile, dense_rows_impl.h): x86-64-v4 (AVX-512,
 * 4 rows x 4 vectors of 16 float32 or 8 float64), x86-64-v3 (AVX2 + FMA,
 * 4 x 2 vectors of 32 bytes) or the baseline (4 x 2 vectors of 16 bytes), at
 * fv_isa() read on every call, so all threads of a process run the same
 * code. Results can differ in the last bits between levels (FMA or not),
 * not between rows, calls or threads.
 *
 * The Cython declarations in fastvae/_core/_dense.pxd mirror this header and must
 * match it.
 */
#ifndef FASTVAE_DENSE_ROWS_H
#define FASTVAE_DENSE_ROWS_H

#include <stdint.h>

#include "fastvae/elementwise.h"

#define FV_RD_R 4
/* Rows of X per block: 128 kB stay in a 512 kB-1 MB L2 beside one column
 * tile of W (n_in x 64 float32); without blocks a 512-row chunk of 784
 * features (1.6 MB) streamed from L3 once per tile (AVX2, 16-column tiles:
 * 43 GFLOP/s instead of 99). */
#define FV_RD_BLOCK_BYTES 131072

#define FV_DISPATCH_IMPL "fastvae/dense_rows_impl.h"

/* -- float32 ---------------------------------------------------------------- */
#define FV_T        float
#define FV_RD(name) FV_K(fv_rd_##name##_f32)
#include "fastvae/dispatch_each.h"
#undef FV_RD
#undef FV_T

/* -- float64 ---------------------------------------------------------------- */
#define FV_T        double
#define FV_RD(name) FV_K(fv_rd_##name##_f64)
#include "fastvae/dispatch_each.h"
#undef FV_RD
#undef FV_T

#undef FV_DISPATCH_IMPL

/* Layers narrower than one vector: one row and one column at a time, k in
 * order (a row's numbers still depend on that row alone). */
#define FV_RD_NARROW(T)                                                                        \
    for (int64_t i = r0; i < r1; i++) {                                                        \
        const T *x = X + i * ldx;                                                              \
        T *y = Y + i * ldy;                                                                    \
        for (int j = 0; j < n_out; j++) {                                                      \
            T acc = 0;                                                                         \
            for (int k = 0; k < n_in; k++)                                                     \
                acc += x[k] * W[(int64_t)k * n_out + j];                                       \
            y[j] = acc;                                                                        \
        }                                                                                      \
    }

/* Y[i, :] = act(X[i, :] @ W + b) for rows i in [r0, r1) with the kernels of
 * SIMD level `level` (at most fv_isa_cpu(): tests compare the levels;
 * everything else calls fv_dense_rows_f32/_f64, which run at fv_isa()). The
 * bias and activation run at the same level as the tiles, so a call never
 * mixes levels. One definition for both precisions: T the type, S its
 * suffix, V the elements of one AVX2 vector (the narrowest layer a level's
 * tiles take is V, 2V at v4). */
#define FV_RD_DEFINE(T, S, V)                                                                  \
    FV_DISPATCH_VOID(fv_rd_tiles_##S,                                                          \
                     (int64_t r0, int64_t r1, int n_in, int n_out, const T *X, int64_t ldx,    \
                      const T *W, T *Y, int64_t ldy),                                          \
                     (r0, r1, n_in, n_out, X, ldx, W, Y, ldy))                                 \
                                                                                               \
    static inline __attribute__((unused)) void fv_dense_rows_at_##S(                           \
        int level, int64_t r0, int64_t r1, int n_in, int n_out, const T *X, int64_t ldx,       \
        const T *W, const T *b, T *Y, int64_t ldy, int activation)                             \
    {                                                                                          \
        if (r1 <= r0 || n_out <= 0)                                                            \
            return;                                                                            \
        if (!FV_ISA_DISPATCH || (level != FV_ISA_AVX512 && level != FV_ISA_AVX2))              \
            level = FV_ISA_BASELINE;                                                           \
        if (n_out < (level == FV_ISA_AVX512 ? 2 * (V)                                          \
                     : level == FV_ISA_AVX2 ? (V)                                              \
                                            : (V) / 2)) {                                      \
            FV_RD_NARROW(T)                                                                    \
        } else {                                                                               \
            fv_rd_tiles_##S##_at(level, r0, r1, n_in, n_out, X, ldx, W, Y, ldy);               \
        }                                                                                      \
        fv_bias_activation_##S##_at(level, Y + r0 * ldy, ldy, (int)(r1 - r0), n_out, b,        \
                                    activation);                                               \
    }                                                                                          \
                                                                                               \
    /* Y[i, :] = act(X[i, :] @ W + b) for rows i in [r0, r1). */                               \
    static inline __attribute__((unused)) void fv_dense_rows_##S(                              \
        int64_t r0, int64_t r1, int n_in, int n_out, const T *X, int64_t ldx, const T *W,      \
        const T *b, T *Y, int64_t ldy, int activation)                                         \
    {                                                                                          \
        fv_dense_rows_at_##S(fv_isa(), r0, r1, n_in, n_out, X, ldx, W, b, Y, ldy, activation); \
    }

FV_RD_DEFINE(float, f32, 8)
FV_RD_DEFINE(double, f64, 4)
#undef FV_RD_DEFINE

#undef FV_RD_NARROW

#endif /* FASTVAE_DENSE_ROWS_H */
