/*
 * One type's per-column kernels: included by columns.h with FV_T (float or
 * double) and FV_F(name) (the type's suffix) defined. Values are computed in
 * double and rounded once to FV_T.
 */

/* The level of a categorical entry, or -1 when the code is not an integer
 * in [0, width) (the loss of such a row is NaN, so the step refuses it). */
static inline int FV_F(fv_column_level)(FV_T x, int width)
{
    double v = (double)x;
    if (!(v >= 0.0 && v < (double)width) || v != floor(v))
        return -1;
    return (int)v;
}

/* The encoder's view of one data row x (D values) into xin: per column its
 * value, the one-hot row of a level, log1p of a count, zeros for a missing
 * entry; then, when mask_offset >= 0, at xin[mask_offset + d] 1 for a missing
 * entry of column d and 0 for an observed one. */
static inline void FV_F(fv_columns_expand)(const FV_T *restrict x, const fv_column *cols, int D,
                                           int mask_offset, FV_T *restrict xin)
{
    for (int d = 0; d < D; d++) {
        const fv_column *c = &cols[d];
        FV_T v = x[d];
        int missing = isnan(v);
        FV_T *in = xin + c->in_offset;
        if (c->kind == FV_COL_CATEGORICAL) {
            for (int j = 0; j < c->width; j++)
                in[j] = (FV_T)0;
            int level = missing ? -1 : FV_F(fv_column_level)(v, c->width);
            if (level >= 0)
                in[level] = (FV_T)1;
        } else if (missing) {
            in[0] = (FV_T)0;
        } else if (c->kind == FV_COL_POISSON || c->kind == FV_COL_NEGBIN ||
                   c->kind == FV_COL_ZINB) {
            /* most counts are 0: skip libm's log1p for them */
            in[0] = v == (FV_T)0 ? (FV_T)0 : (FV_T)log1p((double)v);
        } else {
            in[0] = v;
        }
        if (mask_offset >= 0)
            xin[mask_offset + d] = missing ? (FV_T)1 : (FV_T)0;
    }
}

/* A run of n count columns of one kind of one row (outputs o, zero-inflation
 * logits pi for FV_COL_ZINB, values x, tails tail; NaN values are missing),
 * in two passes: the terms every entry has, as if its count were 0,
 * element-wise without branches (this vectorises; most counts of a count
 * matrix are 0), then the log-gamma and digamma terms of the nonzero counts.
 * Returns the run's -log p; writes scale times the gradients into g, gpi
 * and t when given. Negative binomial: with r = e - lt, u = exp(-|r|),
 * sp = softplus(r), sig = sigmoid(r),
 *   -log p = theta sp - x (r - sp) - [lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)]
 *   d/de   = theta sig - x (1 - sig)
 *   d/dlt  = theta (sp - sig) + x (1 - sig) - theta [psi(x + theta) - psi(theta)]
 * (zero gradient for lt outside the clamp); the zero-inflated terms are in
 * elementwise_impl.h (fv_zinb_terms). Poisson: exp(e) - x e + lgamma(x + 1). */
static inline double FV_F(fv_counts_run)(int kind, const FV_T *restrict o,
                                         const FV_T *restrict pi, const FV_T *restrict x,
                                         const FV_T *restrict tail, int n, double scale,
                                         FV_T *restrict g, FV_T *restrict gpi, FV_T *restrict t)
{
    double run_loss;
    if (kind == FV_COL_POISSON) {
        run_loss = FV_F(fv_poisson_terms)(o, x, n, (FV_T)scale, g);
        if (t)
            for (int j = 0; j < n; j++)
                t[j] = (FV_T)0;
        for (int j = 0; j < n; j++)
            if (x[j] > (FV_T)1)
                run_loss += lgamma((double)x[j] + 1.0);
        return run_loss;
    }
    if (g && !t) { /* never in a step (a negative binomial has a tail) */
        run_loss = FV_F(fv_counts_run)(kind, o, pi, x, tail, n, scale, 0, 0, 0);
        for (int j = 0; j < n; j++)
            g[j] = (FV_T)0;
        if (gpi)
            for (int j = 0; j < n; j++)
                gpi[j] = (FV_T)0;
        return run_loss;
    }
    if (kind == FV_COL_ZINB)
        run_loss =
            FV_F(fv_zinb_terms)(o, pi, x, tail, n, (FV_T)scale, g, g ? gpi : 0, g ? t : 0);
    else
        run_loss = FV_F(fv_negbin_terms)(o, x, tail, n, (FV_T)scale, g, g ? t : 0);
    for (int j = 0; j < n; j++) {
        double xd = (double)x[j];
        if (!(xd > 0.0))
            continue; /* 0 or missing: done above */
        double lt = fv_clamp((double)tail[j], FV_LOGDISP_MIN, FV_LOGDISP_MAX);
        double theta = exp(lt);
        run_loss -= lgamma(xd + theta) - lgamma(theta) - lgamma(xd + 1.0);
        if (t && !((double)tail[j] < FV_LOGDISP_MIN || (double)tail[j] > FV_LOGDISP_MAX))
            t[j] -= (FV_T)(scale * theta * (fv_digamma(xd + theta) - fv_digamma(theta)));
    }
    return run_loss;
}

/* Per-row -log p(x | decoder outputs) over the observed entries of rows
 * [r0, r1) into loss_out[i]; with grad, scale times its gradient with
 * respect to the outputs (grad rows, leading dimension ldg; 0 for missing
 * entries) and, at tgrad[i * ldt + d], scale times its gradient with
 * respect to tail[d] for learned-Gaussian and negative-binomial columns (0
 * elsewhere). X may have leading dimension 0 (one target for every row). */
static inline double FV_F(fv_columns_row)(const FV_T *restrict o_row,
                                          const FV_T *restrict x_row, int D,
                                          const fv_column *cols, const FV_T *restrict tail,
                                          double scale, FV_T *restrict g_row,
                                          FV_T *restrict t_row)
{
    const double half_log_2pi = 0.5 * FV_LOG_2PI;
    {
        double loss = 0.0;
        for (int d = 0; d < D; d++) {
            const fv_column *c = &cols[d];
            if (fv_column_counts(c->kind)) {
                int d1 = d + 1; /* a run of one count kind: one output each */
                while (d1 < D && cols[d1].kind == c->kind)
                    d1++;
                int zi = c->kind == FV_COL_ZINB;
                loss += FV_F(fv_counts_run)(
                    c->kind, o_row + c->out_offset, zi ? o_row + c->aux_offset : 0, x_row + d,
                    tail ? tail + d : 0, d1 - d, scale, g_row ? g_row + c->out_offset : 0,
                    g_row && zi ? g_row + c->aux_offset : 0, t_row ? t_row + d : 0);
                d = d1 - 1;
                continue;
            }
            const FV_T *o = o_row + c->out_offset;
            FV_T *g = g_row ? g_row + c->out_offset : 0;
            double x = (double)x_row[d];
            double t = 0.0; /* d loss / d tail_d */
            if (t_row)
                t_row[d] = (FV_T)0;
            if (isnan(x)) {
                if (g)
                    for (int j = 0; j < c->width; j++)
                        g[j] = (FV_T)0;
                continue;
            }
            switch (c->kind) {
            case FV_COL_GAUSSIAN: {
                double iv = 1.0 / (c->sigma * c->sigma), r = (double)o[0] - x;
                loss += 0.5 * r * r * iv + log(c->sigma) + half_log_2pi;
                if (g)
                    g[0] = (FV_T)(scale * r * iv);
                break;
            }
            case FV_COL_GAUSSIAN_LEARNED: {
                double raw = (double)tail[d];
                double s = fv_clamp(raw, FV_LOGSIGMA_MIN, FV_LOGSIGMA_MAX);
                double inside = raw < FV_LOGSIGMA_MIN || raw > FV_LOGSIGMA_MAX ? 0.0 : 1.0;
                double iv = exp(-2.0 * s), r = (double)o[0] - x;
                loss += 0.5 * r * r * iv + s + half_log_2pi;
                if (g)
                    g[0] = (FV_T)(scale * r * iv);
                t = (1.0 - r * r * iv) * inside;
                break;
            }
            case FV_COL_BERNOULLI: {
                double l = (double)o[0];
                /* softplus(l) - x l, stable for large |l| */
                loss += (l > 0 ? l + log1p(exp(-l)) : log1p(exp(l))) - x * l;
                if (g) {
                    double p = l >= 0 ? 1.0 / (1.0 + exp(-l)) : exp(l) / (1.0 + exp(l));
                    g[0] = (FV_T)(scale * (p - x));
                }
                break;
            }
            case FV_COL_CATEGORICAL: {
                int level = FV_F(fv_column_level)(x_row[d], c->width);
                if (level < 0) {
                    loss = NAN; /* a code that is not a level: refuse the row */
                    if (g)
                        for (int j = 0; j < c->width; j++)
                            g[j] = (FV_T)0;
                    break;
                }
                /* One exp per level (FV_CEXP: the branch-free float exp for
                 * float32, which vectorises), kept in g for the gradient; a
                 * column of 1,000 levels made libm's exp the step's cost. */
                FV_T top = o[0];
                for (int j = 1; j < c->width; j++)
                    top = o[j] > top ? o[j] : top;
                double total = 0.0;
                if (g) {
                    for (int j = 0; j < c->width; j++) {
                        g[j] = FV_CEXP(o[j] - top);
                        total += (double)g[j];
                    }
                    FV_T norm = (FV_T)(scale / total);
                    for (int j = 0; j < c->width; j++)
                        g[j] *= norm;
                    g[level] -= (FV_T)scale;
                } else {
                    for (int j = 0; j < c->width; j++)
                        total += (double)FV_CEXP(o[j] - top);
                }
                loss += (double)top + log(total) - (double)o[level];
                break;
            }
            default:
                loss = NAN;
            }
            if (t_row)
                t_row[d] = (FV_T)(scale * t);
        }
        return loss;
    }
}

/* Row i's tails are tail[i * ld_tail ...]: ld_tail 0 shares one row of
 * tails (one per column) between all rows, D gives each row its own. */
static inline void FV_F(fv_columns_rows)(const FV_T *restrict O, int64_t ldo,
                                         const FV_T *restrict X, int64_t ldx, int D,
                                         const fv_column *cols, const FV_T *restrict tail,
                                         int64_t ld_tail, double scale, FV_T *restrict grad,
                                         int64_t ldg, FV_T *restrict tgrad, int64_t ldt,
                                         double *restrict loss_out, int64_t r0, int64_t r1)
{
    for (int64_t i = r0; i < r1; i++)
        loss_out[i] = FV_F(fv_columns_row)(
            O + i * ldo, X + i * ldx, D, cols, tail ? tail + i * ld_tail : 0, scale,
            grad ? grad + i * ldg : 0, grad && tgrad ? tgrad + i * ldt : 0);
}

/* One row's tails from its condition c (C values) when the model keeps one
 * tail per condition column and data column, phi (C rows of D): out[d] =
 * sum_b c[b] phi[b D + d], summed in double, conditions in order, rounded
 * once; with one-hot conditions (batches) each batch has its own tails,
 * scVI's dispersion "gene-batch". The kernels clamp the combined value. */
static inline void FV_F(fv_tail_mix)(const FV_T *restrict c, int C, const FV_T *restrict phi,
                                     int D, FV_T *restrict out)
{
    for (int d = 0; d < D; d++) {
        double acc = 0.0;
        for (int b = 0; b < C; b++)
            acc += (double)c[b] * (double)phi[(int64_t)b * D + d];
        out[d] = (FV_T)acc;
    }
}

/* The gradient of fv_tail_mix's phi row b, columns [0, n): out[j] = sum over
 * rows i in order of c_i[b] t[i * ldt + j], in double. Row i's condition is
 * that of data row i / k (k latent samples per data row), read at
 * Cond[(rows ? rows[i / k] : i / k) * ldc]. */
static inline void FV_F(fv_tail_mix_grad)(const FV_T *restrict t, int64_t ldt, int64_t n_rows,
                                          int64_t k, const FV_T *restrict Cond, int64_t ldc,
                                          const int64_t *restrict rows, int b, int n,
                                          FV_T *restrict out)
{
    enum { CHUNK = 128 };
    double acc[CHUNK];
    for (int j0 = 0; j0 < n; j0 += CHUNK) {
        int m = n - j0 < CHUNK ? n - j0 : CHUNK;
        for (int j = 0; j < m; j++)
            acc[j] = 0.0;
        for (int64_t i = 0; i < n_rows; i++) {
            int64_t r = rows ? rows[i / k] : i / k;
            double c = (double)Cond[r * ldc + b];
            const FV_T *ti = t + i * ldt + j0;
            for (int j = 0; j < m; j++)
                acc[j] += c * (double)ti[j];
        }
        for (int j = 0; j < m; j++)
            out[j0 + j] = (FV_T)acc[j];
    }
}

/* log of the row's library size (the sum of its counts; at least 1, so an
 * empty row keeps finite means) and logsumexp of its first D outputs. */
static inline void FV_F(fv_library_shift)(const FV_T *restrict o, const FV_T *restrict x, int D,
                                          double *log_lib, double *lse)
{
    double total = 0.0;
    FV_T top = o[0];
    for (int d = 0; d < D; d++) {
        total += (double)x[d];
        top = o[d] > top ? o[d] : top;
    }
    double sum = 0.0;
    for (int d = 0; d < D; d++)
        sum += (double)FV_CEXP(o[d] - top);
    *log_lib = log(total > 1.0 ? total : 1.0);
    *lse = (double)top + log(sum);
}

/* fv_columns_rows with a library size: every column counts, its mean at
 * output d (out_offset d), and column d's log mean is o_d - logsumexp(o_0..
 * o_{D-1}) + log(library). The gradient with respect to the outputs goes
 * through the softmax: g_d - p_d sum_k g_k. e is scratch of the n_out
 * outputs of one row. */
static inline void FV_F(fv_columns_rows_library)(
    const FV_T *restrict O, int64_t ldo, int n_out, const FV_T *restrict X, int64_t ldx, int D,
    const fv_column *cols, const FV_T *restrict tail, int64_t ld_tail, double scale,
    FV_T *restrict grad, int64_t ldg, FV_T *restrict tgrad, int64_t ldt,
    double *restrict loss_out, int64_t r0, int64_t r1, FV_T *restrict e)
{
    for (int64_t i = r0; i < r1; i++) {
        const FV_T *o = O + i * ldo;
        const FV_T *x = X + i * ldx;
        FV_T *g = grad ? grad + i * ldg : 0;
        double log_lib, lse;
        FV_F(fv_library_shift)(o, x, D, &log_lib, &lse);
        FV_T shift = (FV_T)(log_lib - lse);
        for (int d = 0; d < D; d++)
            e[d] = o[d] + shift;
        for (int d = D; d < n_out; d++)
            e[d] = o[d];
        loss_out[i] = FV_F(fv_columns_row)(e, x, D, cols, tail ? tail + i * ld_tail : 0, scale,
                                           g, grad && tgrad ? tgrad + i * ldt : 0);
        if (!g)
            continue;
        double total = 0.0;
        for (int d = 0; d < D; d++)
            total += (double)g[d];
        FV_T to_lse = (FV_T)(-lse), sum_g = (FV_T)total;
        for (int d = 0; d < D; d++)
            g[d] -= FV_CEXP(o[d] + to_lse) * sum_g;
    }
}

/* The mean of p(x | outputs) per decoder output, rows [r0, r1): Gaussian
 * mean, Bernoulli probability, a categorical column's level probabilities
 * (softmax), a count's expected value exp(e) (zero-inflated: times 1 -
 * sigmoid(pi), and sigmoid(pi) at its aux output). With library set, the
 * counts' means are per unit of library size: softmax over the D columns
 * instead of exp(e). */
static inline void FV_F(fv_columns_means)(const FV_T *restrict O, int64_t ldo, int D,
                                          const fv_column *cols, int library,
                                          FV_T *restrict out, int64_t ldout, int64_t r0,
                                          int64_t r1)
{
    for (int64_t i = r0; i < r1; i++) {
        double shift = 0.0;
        if (library) {
            const FV_T *o = O + i * ldo;
            double top = (double)o[0], sum = 0.0;
            for (int d = 1; d < D; d++)
                top = (double)o[d] > top ? (double)o[d] : top;
            for (int d = 0; d < D; d++)
                sum += exp((double)o[d] - top);
            shift = -(top + log(sum));
        }
        for (int d = 0; d < D; d++) {
            const fv_column *c = &cols[d];
            const FV_T *o = O + i * ldo + c->out_offset;
            FV_T *m = out + i * ldout + c->out_offset;
            switch (c->kind) {
            case FV_COL_BERNOULLI: {
                double l = (double)o[0];
                m[0] = (FV_T)(l >= 0 ? 1.0 / (1.0 + exp(-l)) : exp(l) / (1.0 + exp(l)));
                break;
            }
            case FV_COL_CATEGORICAL: {
                double top = (double)o[0], total = 0.0;
                for (int j = 1; j < c->width; j++)
                    top = (double)o[j] > top ? (double)o[j] : top;
                for (int j = 0; j < c->width; j++)
                    total += exp((double)o[j] - top);
                for (int j = 0; j < c->width; j++)
                    m[j] = (FV_T)(exp((double)o[j] - top) / total);
                break;
            }
            case FV_COL_POISSON:
            case FV_COL_NEGBIN:
                m[0] = (FV_T)exp((double)o[0] + shift);
                break;
            case FV_COL_ZINB: {
                double p = (double)O[i * ldo + c->aux_offset];
                double drop = p >= 0 ? 1.0 / (1.0 + exp(-p)) : exp(p) / (1.0 + exp(p));
                m[0] = (FV_T)(exp((double)o[0] + shift) * (1.0 - drop));
                out[i * ldout + c->aux_offset] = (FV_T)drop;
                break;
            }
            default:
                m[0] = o[0];
            }
        }
    }
}
