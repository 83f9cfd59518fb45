/*
 * Body of elementwise.h, included once per (floating type, SIMD level) by
 * dispatch_each.h; not a standalone header (no include guard on purpose).
 * Needs FV_T, FV_F(name) (type suffix), FV_KF(name) (type and level
 * suffix), FV_EXP, FV_TANH and FV_SQRT. Signatures here must match the
 * FV_EW_DISPATCHERS list in elementwise.h.
 */

/* Sum of the FV_SUM_LANES partial sums, in lane order. */
FV_LEVEL_TARGET static inline double FV_KF(fv_sum_lanes)(const double *acc)
{
    double s = 0.0;
    for (int j = 0; j < FV_SUM_LANES; j++)
        s += acc[j];
    return s;
}

/* Bernoulli with logits, rows [r0, r1) of L and X (D columns):
 *   loss_out[i] = sum_d softplus(L) - X * L      (in double)
 *   grad        = scale * (sigmoid(L) - X)       (skipped when grad is NULL)
 * Element terms come from fv_bce_logits (numerics.h). */
FV_KERNEL void FV_KF(fv_bernoulli_rows)(const FV_T *restrict L, int64_t ldl,
                                        const FV_T *restrict X, int64_t ldx, int D, FV_T scale,
                                        FV_T *restrict grad, int64_t ldg,
                                        double *restrict loss_out, int64_t r0, int64_t r1)
{
    const int d_end = D - D % FV_SUM_LANES;
    for (int64_t i = r0; i < r1; i++) {
        const FV_T *l = L + i * ldl, *x = X + i * ldx;
        FV_T *g = grad ? grad + i * ldg : NULL;
        double acc[FV_SUM_LANES] = {0.0};
        FV_T p;
        /* Full lanes, with and without gradient as separate constant-trip
         * loops (what vectorises best), then the tail. */
        for (int d = 0; d < d_end; d += FV_SUM_LANES) {
            if (g) {
                for (int j = 0; j < FV_SUM_LANES; j++) {
                    acc[j] += FV_F(fv_bce_logits)(l[d + j], x[d + j], &p);
                    g[d + j] = scale * (p - x[d + j]);
                }
            } else {
                for (int j = 0; j < FV_SUM_LANES; j++)
                    acc[j] += FV_F(fv_bce_logits)(l[d + j], x[d + j], &p);
            }
        }
        for (int d = d_end; d < D; d++) {
            acc[d - d_end] += FV_F(fv_bce_logits)(l[d], x[d], &p);
            if (g)
                g[d] = scale * (p - x[d]);
        }
        loss_out[i] = FV_KF(fv_sum_lanes)(acc);
    }
}

/* Gaussian with fixed sigma and mean M, rows [r0, r1):
 *   loss_out[i] = sum_d (X - M)^2 / (2 sigma^2) + D * (log sigma + log(2 pi) / 2)
 *   grad        = scale * (M - X) / sigma^2      (skipped when grad is NULL) */
FV_KERNEL void FV_KF(fv_gaussian_rows)(const FV_T *restrict M, int64_t ldm,
                                       const FV_T *restrict X, int64_t ldx, int D, double sigma,
                                       FV_T scale, FV_T *restrict grad, int64_t ldg,
                                       double *restrict loss_out, int64_t r0, int64_t r1)
{
    const int d_end = D - D % FV_SUM_LANES;
    const double inv_var = 1.0 / (sigma * sigma);
    const double const_term = D * (log(sigma) + 0.5 * FV_LOG_2PI);
    const FV_T gsc = (FV_T)(scale * inv_var);
    for (int64_t i = r0; i < r1; i++) {
        const FV_T *m = M + i * ldm, *x = X + i * ldx;
        FV_T *g = grad ? grad + i * ldg : NULL;
        double acc[FV_SUM_LANES] = {0.0};
        for (int d = 0; d < d_end; d += FV_SUM_LANES) {
            if (g) {
                for (int j = 0; j < FV_SUM_LANES; j++) {
                    FV_T r = m[d + j] - x[d + j];
                    acc[j] += (double)r * r;
                    g[d + j] = gsc * r;
                }
            } else {
                for (int j = 0; j < FV_SUM_LANES; j++) {
                    FV_T r = m[d + j] - x[d + j];
                    acc[j] += (double)r * r;
                }
            }
        }
        for (int d = d_end; d < D; d++) {
            FV_T r = m[d] - x[d];
            acc[d - d_end] += (double)r * r;
            if (g)
                g[d] = gsc * r;
        }
        loss_out[i] = 0.5 * inv_var * FV_KF(fv_sum_lanes)(acc) + const_term;
    }
}

/* Gaussian with a learned log-sigma s_d per feature (clamped to
 * [FV_LOGSIGMA_MIN, FV_LOGSIGMA_MAX]) and mean M, rows [r0, r1):
 *   loss_out[i] = sum_d (X - M)^2 exp(-2 s_d) / 2 + s_d + log(2 pi) / 2
 *   grad        = scale * (M - X) exp(-2 s_d)        (NULL: skipped)
 *   sgrad       = scale * (1 - (X - M)^2 exp(-2 s_d)) (0 where s_d is clamped),
 * the per-row terms of d loss / d s_d, summed over rows by the caller in a
 * fixed order. inv_var is scratch of D elements. */
FV_KERNEL void
FV_KF(fv_gaussian_learned_rows)(const FV_T *restrict M, int64_t ldm, const FV_T *restrict X,
                                int64_t ldx, int D, const FV_T *restrict logsigma, FV_T scale,
                                FV_T *restrict grad, int64_t ldg, FV_T *restrict sgrad,
                                int64_t ldsg, FV_T *restrict inv_var, double *restrict loss_out,
                                int64_t r0, int64_t r1)
{
    double const_term = 0.5 * FV_LOG_2PI * D;
    for (int d = 0; d < D; d++) {
        double s = logsigma[d];
        double sc =
            s < FV_LOGSIGMA_MIN ? FV_LOGSIGMA_MIN : (s > FV_LOGSIGMA_MAX ? FV_LOGSIGMA_MAX : s);
        inv_var[d] = (FV_T)exp(-2.0 * sc);
        const_term += sc;
    }
    for (int64_t i = r0; i < r1; i++) {
        const FV_T *m = M + i * ldm, *x = X + i * ldx;
        double acc[FV_SUM_LANES] = {0.0};
        for (int d0 = 0; d0 < D; d0 += FV_SUM_LANES) {
            int n = D - d0 < FV_SUM_LANES ? D - d0 : FV_SUM_LANES;
            for (int j = 0; j < n; j++) {
                FV_T r = m[d0 + j] - x[d0 + j];
                acc[j] += (double)(r * r * inv_var[d0 + j]);
            }
        }
        loss_out[i] = 0.5 * FV_KF(fv_sum_lanes)(acc) + const_term;
        if (grad) {
            FV_T *g = grad + i * ldg, *sg = sgrad + i * ldsg;
            for (int d = 0; d < D; d++) {
                FV_T r = m[d] - x[d];
                FV_T inside = logsigma[d] < FV_LOGSIGMA_MIN || logsigma[d] > FV_LOGSIGMA_MAX
                                  ? (FV_T)0
                                  : (FV_T)1;
                g[d] = scale * r * inv_var[d];
                sg[d] = scale * ((FV_T)1 - r * r * inv_var[d]) * inside;
            }
        }
    }
}

/* The terms of n count columns of one row that every entry has, as if its
 * count were 0 plus those linear in it (src_c/fastvae/columns.h adds the
 * log-gamma and digamma terms of the nonzero counts): element-wise with
 * selects only, so it vectorises. NaN counts are missing (zero terms).
 * Negative binomial, outputs o = log mean, tail = log dispersion clamped to
 * [FV_LOGDISP_MIN, FV_LOGDISP_MAX] (columns.h), r = o - lt, sp = softplus(r),
 * sig = sigmoid(r):
 *   returned sum  theta sp - x (r - sp)
 *   g = scale * (theta sig - x (1 - sig))
 *   t = scale * (theta (sp - sig) + x (1 - sig))    (0 outside the clamp)
 * Poisson, o = log rate: sum exp(o) - x o, g = scale * (exp(o) - x). g and t
 * are both written or both NULL. */
#define FV_NB_LO ((FV_T) - 12.0)
#define FV_NB_HI ((FV_T)12.0)
#define FV_NB_ELEMENT(j)                                                                       \
    FV_T seen = x[j] == x[j] ? (FV_T)1 : (FV_T)0;                                              \
    FV_T xv = x[j] == x[j] ? x[j] : (FV_T)0;                                                   \
    FV_T lt = tail[j] < FV_NB_LO ? FV_NB_LO : (tail[j] > FV_NB_HI ? FV_NB_HI : tail[j]);       \
    FV_T theta = FV_EXP(lt);                                                                   \
    FV_T r = o[j] - lt;                                                                        \
    FV_T u = FV_EXP(r < (FV_T)0 ? r : -r);                                                     \
    FV_T sp = (r > (FV_T)0 ? r : (FV_T)0) + FV_LOG1P(u);                                       \
    FV_T sig = (r >= (FV_T)0 ? (FV_T)1 : u) / ((FV_T)1 + u);                                   \
    FV_T term = seen * (theta * sp - xv * (r - sp))

FV_KERNEL double FV_KF(fv_negbin_terms)(const FV_T *restrict o, const FV_T *restrict x,
                                        const FV_T *restrict tail, int n, FV_T scale,
                                        FV_T *restrict g, FV_T *restrict t)
{
    double acc[FV_SUM_LANES] = {0.0};
    const int n_end = n - n % FV_SUM_LANES;
    for (int j0 = 0; j0 < n_end; j0 += FV_SUM_LANES) {
        if (g) {
            for (int l = 0; l < FV_SUM_LANES; l++) {
                int j = j0 + l;
                FV_NB_ELEMENT(j);
                FV_T inside = tail[j] < FV_NB_LO || tail[j] > FV_NB_HI ? (FV_T)0 : (FV_T)1;
                acc[l] += (double)term;
                g[j] = seen * scale * (theta * sig - xv * ((FV_T)1 - sig));
                t[j] = seen * inside * scale * (theta * (sp - sig) + xv * ((FV_T)1 - sig));
            }
        } else {
            for (int l = 0; l < FV_SUM_LANES; l++) {
                int j = j0 + l;
                FV_NB_ELEMENT(j);
                acc[l] += (double)term;
            }
        }
    }
    for (int j = n_end; j < n; j++) {
        FV_NB_ELEMENT(j);
        acc[j - n_end] += (double)term;
        if (g) {
            FV_T inside = tail[j] < FV_NB_LO || tail[j] > FV_NB_HI ? (FV_T)0 : (FV_T)1;
            g[j] = seen * scale * (theta * sig - xv * ((FV_T)1 - sig));
            t[j] = seen * inside * scale * (theta * (sp - sig) + xv * ((FV_T)1 - sig));
        }
    }
    return FV_KF(fv_sum_lanes)(acc);
}
/* Zero-inflated negative binomial: the negative binomial above (log mean o,
 * log dispersion tail) mixed with a point mass at 0 of probability
 * sigmoid(pi), pi a second decoder output. With a = -theta sp, the log
 * probability of a 0 under the negative binomial:
 *   x = 0: -log p = softplus(-pi) - softplus(a - pi)
 *          g = scale * s theta sig, t = scale * s theta (sp - sig),
 *          gpi = scale * (s - sigmoid(-pi)), s = sigmoid(a - pi)
 *   x > 0: -log p = softplus(pi) + the negative binomial's terms (g and t
 *          its own), gpi = scale * sigmoid(pi)
 * (scvi-tools' ZINB, without its eps). g, gpi and t are all written or all
 * NULL. */
#define FV_ZINB_ELEMENT(j)                                                                     \
    FV_NB_ELEMENT(j);                                                                          \
    FV_T zero = xv == (FV_T)0 ? (FV_T)1 : (FV_T)0;                                             \
    FV_T p = pi[j];                                                                            \
    FV_T y = -theta * sp - p; /* log NB(0) - pi */                                             \
    FV_T uy = FV_EXP(y < (FV_T)0 ? y : -y);                                                    \
    FV_T sp_y = (y > (FV_T)0 ? y : (FV_T)0) + FV_LOG1P(uy);                                    \
    FV_T up = FV_EXP(p < (FV_T)0 ? p : -p);                                                    \
    FV_T lup = FV_LOG1P(up);                                                                   \
    FV_T sp_p = (p > (FV_T)0 ? p : (FV_T)0) + lup;   /* softplus(pi) */                        \
    FV_T sp_np = (p < (FV_T)0 ? -p : (FV_T)0) + lup; /* softplus(-pi) */                       \
    FV_T zterm = seen * (zero * (sp_np - sp_y) + ((FV_T)1 - zero) * (term + sp_p))

#define FV_ZINB_GRADS(j)                                                                       \
    {                                                                                          \
        FV_T s = (y >= (FV_T)0 ? (FV_T)1 : uy) / ((FV_T)1 + uy);                               \
        FV_T sig_p = (p >= (FV_T)0 ? (FV_T)1 : up) / ((FV_T)1 + up);                           \
        FV_T inside = tail[j] < FV_NB_LO || tail[j] > FV_NB_HI ? (FV_T)0 : (FV_T)1;            \
        FV_T w = zero * s + ((FV_T)1 - zero);                                                  \
        g[j] = seen * scale * (w * theta * sig - xv * ((FV_T)1 - sig));                        \
        t[j] = seen * inside * scale * (w * theta * (sp - sig) + xv * ((FV_T)1 - sig));        \
        gpi[j] = seen * scale * (zero * (s - ((FV_T)1 - sig_p)) + ((FV_T)1 - zero) * sig_p);   \
    }

FV_KERNEL double FV_KF(fv_zinb_terms)(const FV_T *restrict o, const FV_T *restrict pi,
                                      const FV_T *restrict x, const FV_T *restrict tail, int n,
                                      FV_T scale, FV_T *restrict g, FV_T *restrict gpi,
                                      FV_T *restrict t)
{
    double acc[FV_SUM_LANES] = {0.0};
    const int n_end = n - n % FV_SUM_LANES;
    for (int j0 = 0; j0 < n_end; j0 += FV_SUM_LANES) {
        if (g) {
            for (int l = 0; l < FV_SUM_LANES; l++) {
                int j = j0 + l;
                FV_ZINB_ELEMENT(j);
                acc[l] += (double)zterm;
                FV_ZINB_GRADS(j);
            }
        } else {
            for (int l = 0; l < FV_SUM_LANES; l++) {
                int j = j0 + l;
                FV_ZINB_ELEMENT(j);
                acc[l] += (double)zterm;
            }
        }
    }
    for (int j = n_end; j < n; j++) {
        FV_ZINB_ELEMENT(j);
        acc[j - n_end] += (double)zterm;
        if (g)
            FV_ZINB_GRADS(j);
    }
    return FV_KF(fv_sum_lanes)(acc);
}
#undef FV_ZINB_ELEMENT
#undef FV_ZINB_GRADS
#undef FV_NB_ELEMENT
#undef FV_NB_LO
#undef FV_NB_HI

FV_KERNEL double FV_KF(fv_poisson_terms)(const FV_T *restrict o, const FV_T *restrict x, int n,
                                         FV_T scale, FV_T *restrict g)
{
    double acc[FV_SUM_LANES] = {0.0};
    for (int j0 = 0; j0 < n; j0 += FV_SUM_LANES) {
        int m = n - j0 < FV_SUM_LANES ? n - j0 : FV_SUM_LANES;
        for (int l = 0; l < m; l++) {
            int j = j0 + l;
            FV_T seen = x[j] == x[j] ? (FV_T)1 : (FV_T)0;
            FV_T xv = x[j] == x[j] ? x[j] : (FV_T)0;
            FV_T rate = FV_EXP(o[j]);
            acc[l] += (double)(seen * (rate - xv * o[j]));
            if (g)
                g[j] = seen * scale * (rate - xv);
        }
    }
    return FV_KF(fv_sum_lanes)(acc);
}

/* Noise of training rows, uniforms u_e from fv_uniform4 of (seed, stream,
 * row, step) (element e: lane e % 4 of block e / 4), so a row's noise depends
 * only on its global position and the step:
 *   fv_bernoulli_draw: dst = u < p ? 1 : 0   (dynamic binarization)
 *   fv_mask:           dst = u < rate ? 0 : src (masking noise) */
FV_KERNEL void FV_KF(fv_bernoulli_draw)(const FV_T *restrict p, FV_T *restrict dst, int n,
                                        uint64_t seed, uint64_t stream, uint64_t row,
                                        uint64_t step)
{
    double u[4];
    for (int b = 0; 4 * b < n; b++) {
        fv_uniform4(seed, stream, (uint64_t)b, row, step, 0, u);
        for (int l = 0; l < 4 && 4 * b + l < n; l++)
            dst[4 * b + l] = u[l] < p[4 * b + l] ? (FV_T)1 : (FV_T)0;
    }
}

FV_KERNEL void FV_KF(fv_mask)(const FV_T *restrict src, FV_T *restrict dst, int n, double rate,
                              uint64_t seed, uint64_t stream, uint64_t row, uint64_t step)
{
    double u[4];
    for (int b = 0; 4 * b < n; b++) {
        fv_uniform4(seed, stream, (uint64_t)b, row, step, 0, u);
        for (int l = 0; l < 4 && 4 * b + l < n; l++)
            dst[4 * b + l] = u[l] < rate ? (FV_T)0 : src[4 * b + l];
    }
}

/* In place, rows [0, n_rows), columns [0, n_cols): Y = act(Y + b). */
FV_KERNEL void FV_KF(fv_bias_activation)(FV_T *restrict Y, int64_t ldy, int n_rows, int n_cols,
                                         const FV_T *restrict b, int activation)
{
    for (int i = 0; i < n_rows; i++) {
        FV_T *y = Y + i * ldy;
        switch (activation) {
        case FV_ACT_RELU:
            for (int j = 0; j < n_cols; j++) {
                FV_T v = y[j] + b[j];
                y[j] = v > 0 ? v : (FV_T)0;
            }
            break;
        case FV_ACT_TANH:
            for (int j = 0; j < n_cols; j++)
                y[j] = FV_TANH(y[j] + b[j]);
            break;
        case FV_ACT_SIGMOID:
            /* exp overflow gives 1 / inf = 0, the correct limit, never NaN */
            for (int j = 0; j < n_cols; j++)
                y[j] = (FV_T)1 / ((FV_T)1 + FV_EXP(-(y[j] + b[j])));
            break;
        default:
            for (int j = 0; j < n_cols; j++)
                y[j] += b[j];
        }
    }
}

/* In place: D *= act'(a), written through the activation's output Y = act(a). */
FV_KERNEL void FV_KF(fv_mul_activation_grad)(FV_T *restrict Dm, int64_t ldd,
                                             const FV_T *restrict Y, int64_t ldy, int n_rows,
                                             int n_cols, int activation)
{
    if (activation == FV_ACT_IDENTITY)
        return;
    for (int i = 0; i < n_rows; i++) {
        FV_T *d = Dm + i * ldd;
        const FV_T *y = Y + i * ldy;
        switch (activation) {
        case FV_ACT_RELU:
            for (int j = 0; j < n_cols; j++)
                d[j] = y[j] > 0 ? d[j] : (FV_T)0;
            break;
        case FV_ACT_TANH:
            for (int j = 0; j < n_cols; j++)
                d[j] *= (FV_T)1 - y[j] * y[j];
            break;
        case FV_ACT_SIGMOID:
            for (int j = 0; j < n_cols; j++)
                d[j] *= y[j] * ((FV_T)1 - y[j]);
            break;
        }
    }
}

/* out[j] = sum over rows i in order of A[i, j], j in [0, n_cols), in double.
 * Rows outer and columns inner keep the per-column order while the column
 * loop vectorises; columns go in chunks so the partial sums stay in registers
 * or L1. */
FV_KERNEL void FV_KF(fv_column_sums)(const FV_T *restrict A, int64_t lda, int n_rows,
                                     int n_cols, FV_T *restrict out)
{
    enum { CHUNK = 128 };
    double acc[CHUNK];
    for (int c0 = 0; c0 < n_cols; c0 += CHUNK) {
        int n = n_cols - c0 < CHUNK ? n_cols - c0 : CHUNK;
        for (int j = 0; j < n; j++)
            acc[j] = 0.0;
        for (int i = 0; i < n_rows; i++) {
            const FV_T *a = A + i * lda + c0;
            for (int j = 0; j < n; j++)
                acc[j] += a[j];
        }
        for (int j = 0; j < n; j++)
            out[c0 + j] = (FV_T)acc[j];
    }
}

/* Number of NaN or infinite values in rows [0, n_rows), columns [0, n_cols).
 * v - v is 0 for every finite v and NaN otherwise; the comparison
 * vectorises where isfinite() may not, and an int counter per row keeps the
 * reduction in 32-bit lanes. */
FV_KERNEL int64_t FV_KF(fv_count_nonfinite)(const FV_T *restrict A, int64_t lda, int n_rows,
                                            int n_cols)
{
    int64_t bad = 0;
    for (int i = 0; i < n_rows; i++) {
        const FV_T *a = A + i * lda;
        int row_bad = 0;
        for (int j = 0; j < n_cols; j++)
            row_bad += !(a[j] - a[j] == 0);
        bad += row_bad;
    }
    return bad;
}

/* Optimizer updates of elements [0, n) of flat buffers.
 * SGD:      p -= lr * g
 * Momentum: v = momentum * v + g;  p -= lr * v
 * Adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *           p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
 *           with step_size = lr / (1 - b1^t), inv_sqrt_bc2 = 1 / sqrt(1 - b2^t)
 *           (PyTorch's placement of eps). The caller passes 1 - b1 and
 *           1 - b2 rounded from double: 1 - 0.999f in float is 1.3e-5 off. */
FV_KERNEL void FV_KF(fv_sgd_update)(FV_T *restrict p, const FV_T *restrict g, int64_t n,
                                    FV_T lr)
{
    for (int64_t i = 0; i < n; i++)
        p[i] -= lr * g[i];
}

FV_KERNEL void FV_KF(fv_momentum_update)(FV_T *restrict p, const FV_T *restrict g,
                                         FV_T *restrict v, int64_t n, FV_T lr, FV_T momentum)
{
    for (int64_t i = 0; i < n; i++) {
        FV_T vi = momentum * v[i] + g[i];
        v[i] = vi;
        p[i] -= lr * vi;
    }
}

FV_KERNEL void FV_KF(fv_adam_update)(FV_T *restrict p, const FV_T *restrict g, FV_T *restrict m,
                                     FV_T *restrict v, int64_t n, FV_T beta1,
                                     FV_T one_minus_beta1, FV_T beta2, FV_T one_minus_beta2,
                                     FV_T step_size, FV_T inv_sqrt_bc2, FV_T eps)
{
    for (int64_t i = 0; i < n; i++) {
        FV_T gi = g[i];
        FV_T mi = beta1 * m[i] + one_minus_beta1 * gi;
        FV_T vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (FV_SQRT(vi) * inv_sqrt_bc2 + eps);
    }
}
