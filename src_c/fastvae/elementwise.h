/*
 * The element-wise loops of a training step, in float32 (_f32) and float64
 * (_f64) from one source: elementwise_impl.h is included once per type and
 * SIMD level with FV_T (the type), FV_F (name suffix) and its scalar math
 * functions defined.
 *
 * Every function runs at the process's SIMD level, fv_isa(), read on each
 * call (dispatch.h); fv_<name>_<type>_at(level, ...) runs one level. Matrices are row-major
 * with a leading dimension (elements between row starts). Pointers marked restrict must not
 * overlap. Row sums accumulate in double in a fixed order (FV_SUM_LANES, numerics.h), so any
 * split of rows or elements across threads gives bitwise the same results.
 *
 * The Cython declarations in fastvae/_core/_elementwise.pxd mirror this header and
 * must match it.
 */
#ifndef FASTVAE_ELEMENTWISE_H
#define FASTVAE_ELEMENTWISE_H

#include <math.h>
#include <stdint.h>

#include "fastvae/dispatch.h"
#include "fastvae/numerics.h"
#include "fastvae/philox.h"

#define FV_KF(name)      FV_K(FV_F(name))
#define FV_DISPATCH_IMPL "fastvae/elementwise_impl.h"

/* The dispatchers of one type; parameter lists must match
 * elementwise_impl.h. */
#define FV_EW_DISPATCHERS                                                                      \
    FV_DISPATCH_VOID(FV_F(fv_bernoulli_rows),                                                  \
                     (const FV_T *restrict L, int64_t ldl, const FV_T *restrict X,             \
                      int64_t ldx, int D, FV_T scale, FV_T *restrict grad, int64_t ldg,        \
                      double *restrict loss_out, int64_t r0, int64_t r1),                      \
                     (L, ldl, X, ldx, D, scale, grad, ldg, loss_out, r0, r1))                  \
    FV_DISPATCH_VOID(FV_F(fv_gaussian_rows),                                                   \
                     (const FV_T *restrict M, int64_t ldm, const FV_T *restrict X,             \
                      int64_t ldx, int D, double sigma, FV_T scale, FV_T *restrict grad,       \
                      int64_t ldg, double *restrict loss_out, int64_t r0, int64_t r1),         \
                     (M, ldm, X, ldx, D, sigma, scale, grad, ldg, loss_out, r0, r1))           \
    FV_DISPATCH_VOID(FV_F(fv_gaussian_learned_rows),                                           \
                     (const FV_T *restrict M, int64_t ldm, const FV_T *restrict X,             \
                      int64_t ldx, int D, const FV_T *restrict logsigma, FV_T scale,           \
                      FV_T *restrict grad, int64_t ldg, FV_T *restrict sgrad, int64_t ldsg,    \
                      FV_T *restrict inv_var, double *restrict loss_out, int64_t r0,           \
                      int64_t r1),                                                             \
                     (M, ldm, X, ldx, D, logsigma, scale, grad, ldg, sgrad, ldsg, inv_var,     \
                      loss_out, r0, r1))                                                       \
    FV_DISPATCH(double, FV_F(fv_negbin_terms),                                                 \
                (const FV_T *restrict o, const FV_T *restrict x, const FV_T *restrict tail,    \
                 int n, FV_T scale, FV_T *restrict g, FV_T *restrict t),                       \
                (o, x, tail, n, scale, g, t))                                                  \
    FV_DISPATCH(double, FV_F(fv_zinb_terms),                                                   \
                (const FV_T *restrict o, const FV_T *restrict pi, const FV_T *restrict x,      \
                 const FV_T *restrict tail, int n, FV_T scale, FV_T *restrict g,               \
                 FV_T *restrict gpi, FV_T *restrict t),                                        \
                (o, pi, x, tail, n, scale, g, gpi, t))                                         \
    FV_DISPATCH(                                                                               \
        double, FV_F(fv_poisson_terms),                                                        \
        (const FV_T *restrict o, const FV_T *restrict x, int n, FV_T scale, FV_T *restrict g), \
        (o, x, n, scale, g))                                                                   \
    FV_DISPATCH_VOID(FV_F(fv_bernoulli_draw),                                                  \
                     (const FV_T *restrict p, FV_T *restrict dst, int n, uint64_t seed,        \
                      uint64_t stream, uint64_t row, uint64_t step),                           \
                     (p, dst, n, seed, stream, row, step))                                     \
    FV_DISPATCH_VOID(FV_F(fv_mask),                                                            \
                     (const FV_T *restrict src, FV_T *restrict dst, int n, double rate,        \
                      uint64_t seed, uint64_t stream, uint64_t row, uint64_t step),            \
                     (src, dst, n, rate, seed, stream, row, step))                             \
    FV_DISPATCH_VOID(FV_F(fv_bias_activation),                                                 \
                     (FV_T *restrict Y, int64_t ldy, int n_rows, int n_cols,                   \
                      const FV_T *restrict b, int activation),                                 \
                     (Y, ldy, n_rows, n_cols, b, activation))                                  \
    FV_DISPATCH_VOID(FV_F(fv_mul_activation_grad),                                             \
                     (FV_T *restrict Dm, int64_t ldd, const FV_T *restrict Y, int64_t ldy,     \
                      int n_rows, int n_cols, int activation),                                 \
                     (Dm, ldd, Y, ldy, n_rows, n_cols, activation))                            \
    FV_DISPATCH_VOID(                                                                          \
        FV_F(fv_column_sums),                                                                  \
        (const FV_T *restrict A, int64_t lda, int n_rows, int n_cols, FV_T *restrict out),     \
        (A, lda, n_rows, n_cols, out))                                                         \
    FV_DISPATCH(int64_t, FV_F(fv_count_nonfinite),                                             \
                (const FV_T *restrict A, int64_t lda, int n_rows, int n_cols),                 \
                (A, lda, n_rows, n_cols))                                                      \
    FV_DISPATCH_VOID(FV_F(fv_sgd_update),                                                      \
                     (FV_T *restrict p, const FV_T *restrict g, int64_t n, FV_T lr),           \
                     (p, g, n, lr))                                                            \
    FV_DISPATCH_VOID(FV_F(fv_momentum_update),                                                 \
                     (FV_T *restrict p, const FV_T *restrict g, FV_T *restrict v, int64_t n,   \
                      FV_T lr, FV_T momentum),                                                 \
                     (p, g, v, n, lr, momentum))                                               \
    FV_DISPATCH_VOID(FV_F(fv_adam_update),                                                     \
                     (FV_T *restrict p, const FV_T *restrict g, FV_T *restrict m,              \
                      FV_T *restrict v, int64_t n, FV_T beta1, FV_T one_minus_beta1,           \
                      FV_T beta2, FV_T one_minus_beta2, FV_T step_size, FV_T inv_sqrt_bc2,     \
                      FV_T eps),                                                               \
                     (p, g, m, v, n, beta1, one_minus_beta1, beta2, one_minus_beta2,           \
                      step_size, inv_sqrt_bc2, eps))

#define FV_T       float
#define FV_F(name) name##_f32
#define FV_EXP     fv_exp_f32
#define FV_LOG1P   fv_log1p_f32
#define FV_TANH    fv_tanh_f32
#define FV_SQRT    sqrtf
#include "fastvae/dispatch_each.h"
FV_EW_DISPATCHERS
#undef FV_T
#undef FV_F
#undef FV_EXP
#undef FV_LOG1P
#undef FV_TANH
#undef FV_SQRT

#define FV_T       double
#define FV_F(name) name##_f64
#define FV_EXP     exp
#define FV_LOG1P   log1p
#define FV_TANH    tanh
#define FV_SQRT    sqrt
#include "fastvae/dispatch_each.h"
FV_EW_DISPATCHERS
#undef FV_T
#undef FV_F
#undef FV_EXP
#undef FV_LOG1P
#undef FV_TANH
#undef FV_SQRT

#undef FV_EW_DISPATCHERS
#undef FV_DISPATCH_IMPL
#undef FV_KF

#endif /* FASTVAE_ELEMENTWISE_H */
