/*
 * The first layer of one row given by its stored values, for the CSR paths
 * of fastvae/_core/_step.pyx (training and inference), float32 (_f32) and
 * float64 (_f64) from one source (sparse_rows_impl.h):
 *
 *     out[j] (+)= sum over k < nk of vals[k] * W[idx[k], j]
 *                 + sum over q < n_cond of cond[q] * W[n_in + q, j]
 *
 * each output summed in that order (values, then conditions) in one vector
 * lane, so a row's numbers depend on that row alone: not on the thread
 * that runs it nor on the rows beside it. W is (n_in + n_cond, H) row-major;
 * with accumulate the sums start from out (a row handed over in pieces
 * gives the numbers of one call), else from 0. No bias or activation.
 *
 * Why not a plain loop in Cython: gcc interleaved two values of the loop
 * over k and left it scalar: 50-90 ns per stored value with 128 outputs,
 * 20-30 ns here (AVX2, one thread, on this project's busy 2-core machine).
 * With the dense kernel's order and instruction (dense_rows.h), a row's
 * outputs are those of the dense row: its zeros add nothing.
 *
 * Dispatch: dispatch.h's scheme. Results can differ in the last bits
 * between levels (FMA or not), not between rows, calls or threads.
 */
#ifndef FASTVAE_SPARSE_ROWS_H
#define FASTVAE_SPARSE_ROWS_H

#include <stdint.h>

#include "fastvae/dispatch.h"

#define FV_DISPATCH_IMPL "fastvae/sparse_rows_impl.h"

#define FV_T        float
#define FV_SR(name) FV_K(fv_sr_##name##_f32)
#include "fastvae/dispatch_each.h"
#undef FV_SR
#undef FV_T

#define FV_T        double
#define FV_SR(name) FV_K(fv_sr_##name##_f64)
#include "fastvae/dispatch_each.h"
#undef FV_SR
#undef FV_T

#undef FV_DISPATCH_IMPL

FV_DISPATCH_VOID(fv_sr_row_f32,
                 (const float *vals, const int32_t *idx, int64_t nk, const float *cond,
                  int n_cond, int n_in, const float *W, int H, int accumulate, float *out),
                 (vals, idx, nk, cond, n_cond, n_in, W, H, accumulate, out))
FV_DISPATCH_VOID(fv_sr_row_f64,
                 (const double *vals, const int32_t *idx, int64_t nk, const double *cond,
                  int n_cond, int n_in, const double *W, int H, int accumulate, double *out),
                 (vals, idx, nk, cond, n_cond, n_in, W, H, accumulate, out))

#endif /* FASTVAE_SPARSE_ROWS_H */
