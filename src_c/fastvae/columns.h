/*
 * Per-column likelihoods: one model whose data columns each have their own
 * p(x_d | z) (a table of continuous, binary, categorical and count columns),
 * with missing entries (NaN) left out of the loss. Float32 (_f32) and
 * float64 (_f64) from one source, columns_impl.h, included once per type.
 *
 * A data row holds one value per column: a real number (Gaussian), a value
 * in [0, 1] (Bernoulli), a level code 0..width-1 stored as a float
 * (categorical), a count >= 0 (Poisson, negative binomial); NaN is missing.
 * The encoder reads each row expanded (fv_columns_expand): the value, a
 * one-hot row for a categorical column, log1p of a count, 0 for a missing
 * entry, then, when asked, one missingness indicator per column. The decoder
 * writes one output per column (a categorical column: `width` logits):
 *   Gaussian            mean m             -log N(x; m, sigma^2), fixed sigma
 *   Gaussian, learned   mean m             sigma = exp(tail_d), tail_d clamped
 *                                          to [FV_LOGSIGMA_MIN, FV_LOGSIGMA_MAX]
 *   Bernoulli           logit l            softplus(l) - x l
 *   categorical         logits l_0..l_w-1  logsumexp(l) - l_x
 *   Poisson             log rate e         exp(e) - x e + lgamma(x + 1)
 *   negative binomial   log mean e         mean mu = exp(e), dispersion theta =
 *                                          exp(tail_d), tail_d clamped to
 *                                          [FV_LOGDISP_MIN, FV_LOGDISP_MAX]
 *   zero-inflated NB    log mean e, and    the negative binomial mixed with a
 *                       logit pi at        point mass at 0 of probability
 *                       aux_offset         sigmoid(pi)
 * A zero-inflated column's pi outputs follow every column's `width` outputs,
 * in column order.
 *
 * With a library size (fv_columns_rows_library), every column counts and
 * column d's log mean is e_d = f_d - logsumexp(f) + log(sum of the row's
 * counts): the decoder's mean is softmax(f) times the cell's observed total
 * (scVI's generative model).
 * tail holds one value per data column (used by the learned Gaussian and the
 * negative binomial), shared by every row or, with a row stride, one row of
 * tails per data row (fv_tail_mix: tails made from the row's conditions).
 * Row losses are summed in double, columns in order, so any split of rows
 * gives the same numbers.
 *
 * The Cython declarations in fastvae/_core/_columns.pxd mirror this header
 * and must match it.
 */
#ifndef FASTVAE_COLUMNS_H
#define FASTVAE_COLUMNS_H

#include <math.h>
#include <stdint.h>

#include "fastvae/elementwise.h"
#include "fastvae/numerics.h"

/* Column kinds (stable: they are stored in model files). */
#define FV_COL_GAUSSIAN         0
#define FV_COL_GAUSSIAN_LEARNED 1
#define FV_COL_BERNOULLI        2
#define FV_COL_CATEGORICAL      3
#define FV_COL_POISSON          4
#define FV_COL_NEGBIN           5
#define FV_COL_ZINB             6

/* A negative binomial's log-dispersion is clamped to [MIN, MAX] (theta in
 * [6e-6, 1.6e5]): beyond the top it is a Poisson to float precision, and
 * theta -> 0 would put all mass at 0 and infinity. Zero gradient outside. */
#define FV_LOGDISP_MIN (-12.0)
#define FV_LOGDISP_MAX (12.0)

typedef struct fv_column {
    int kind;       /* FV_COL_* */
    int width;      /* categorical: number of levels; else 1 */
    int in_offset;  /* first encoder input of the column in an expanded row */
    int out_offset; /* first decoder output of the column */
    int aux_offset; /* FV_COL_ZINB: the output of its zero-inflation logit */
    double sigma;   /* FV_COL_GAUSSIAN: the fixed standard deviation */
} fv_column;

static inline double fv_clamp(double v, double lo, double hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* digamma(x) for x > 0: the recurrence up to x >= 6, then the asymptotic
 * series (error below 1e-15 there). */
static inline double fv_digamma(double x)
{
    double acc = 0.0;
    while (x < 6.0) {
        acc -= 1.0 / x;
        x += 1.0;
    }
    double f = 1.0 / (x * x);
    double t =
        f * (-1.0 / 12 +
             f * (1.0 / 120 +
                  f * (-1.0 / 252 + f * (1.0 / 240 + f * (-1.0 / 132 + f * (691.0 / 32760))))));
    return acc + log(x) - 0.5 / x + t;
}

/* Whether a column kind holds counts. */
static inline int fv_column_counts(int kind)
{
    return kind == FV_COL_POISSON || kind == FV_COL_NEGBIN || kind == FV_COL_ZINB;
}

/* log(exp(a) + exp(b)) without overflow. */
static inline double fv_logaddexp(double a, double b)
{
    double m = a > b ? a : b;
    return m + log1p(exp(-fabs(a - b)));
}

#define FV_T       float
#define FV_F(name) name##_f32
#define FV_CEXP    fv_exp_f32
#define FV_CLOG1P  fv_log1p_f32
#include "fastvae/columns_impl.h"
#undef FV_T
#undef FV_F
#undef FV_CEXP
#undef FV_CLOG1P

#define FV_T       double
#define FV_F(name) name##_f64
#define FV_CEXP    exp
#define FV_CLOG1P  log1p
#include "fastvae/columns_impl.h"
#undef FV_T
#undef FV_F
#undef FV_CEXP
#undef FV_CLOG1P

#endif /* FASTVAE_COLUMNS_H */
