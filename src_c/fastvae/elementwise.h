/*
 * The element-wise loops of a training step, in float32 (_f32) and float64
 * (_f64) from one source: elementwise_impl.h is included once per type with
 * FV_T (the type), FV_F (name suffix) and its scalar math functions defined.
 *
 * Every function is dispatched at run time to the CPU's widest SIMD
 * (dispatch.h). Matrices are row-major with a leading dimension (elements
 * between row starts). Pointers marked restrict must not overlap. Row sums
 * accumulate in double in a fixed order (FV_SUM_LANES, numerics.h), so any
 * split of rows or elements across threads gives bitwise the same results.
 *
 * The Cython declarations in fastvae/_elementwise.pxd mirror this header and
 * must match it.
 */
#ifndef FASTVAE_ELEMENTWISE_H
#define FASTVAE_ELEMENTWISE_H

#include <math.h>
#include <stdint.h>

#include "fastvae/dispatch.h"
#include "fastvae/numerics.h"
#include "fastvae/philox.h"

#define FV_T float
#define FV_F(name) name##_f32
#define FV_EXP fv_exp_f32
#define FV_TANH fv_tanh_f32
#define FV_SQRT sqrtf
#include "fastvae/elementwise_impl.h"
#undef FV_T
#undef FV_F
#undef FV_EXP
#undef FV_TANH
#undef FV_SQRT

#define FV_T double
#define FV_F(name) name##_f64
#define FV_EXP exp
#define FV_TANH tanh
#define FV_SQRT sqrt
#include "fastvae/elementwise_impl.h"
#undef FV_T
#undef FV_F
#undef FV_EXP
#undef FV_TANH
#undef FV_SQRT

#endif /* FASTVAE_ELEMENTWISE_H */
