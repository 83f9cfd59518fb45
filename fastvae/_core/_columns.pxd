# Declarations of src_c/fastvae/columns.h; must match that header.

from libc.stdint cimport int64_t

cdef extern from "fastvae/columns.h" nogil:
    int FV_COL_GAUSSIAN
    int FV_COL_GAUSSIAN_LEARNED
    int FV_COL_BERNOULLI
    int FV_COL_CATEGORICAL
    int FV_COL_POISSON
    int FV_COL_NEGBIN
    int FV_COL_ZINB
    double FV_LOGDISP_MIN
    double FV_LOGDISP_MAX
    ctypedef struct fv_column:
        int kind
        int width
        int in_offset
        int out_offset
        int aux_offset
        double sigma
    double fv_digamma(double x)
    void fv_columns_expand_f32(const float* x, const fv_column* cols, int D,
                               int mask_offset, float* xin)
    void fv_columns_expand_f64(const double* x, const fv_column* cols, int D,
                               int mask_offset, double* xin)
    void fv_columns_rows_f32(const float* O, int64_t ldo, const float* X,
                             int64_t ldx, int D, const fv_column* cols,
                             const float* tail, int64_t ld_tail, double scale,
                             float* grad, int64_t ldg, float* tgrad, int64_t ldt,
                             double* loss_out, int64_t r0, int64_t r1)
    void fv_columns_rows_f64(const double* O, int64_t ldo, const double* X,
                             int64_t ldx, int D, const fv_column* cols,
                             const double* tail, int64_t ld_tail, double scale,
                             double* grad, int64_t ldg, double* tgrad,
                             int64_t ldt,
                             double* loss_out, int64_t r0, int64_t r1)
    void fv_columns_rows_library_f32(
        const float* O, int64_t ldo, int n_out, const float* X, int64_t ldx,
        int D, const fv_column* cols, const float* tail, int64_t ld_tail,
        double scale, float* grad, int64_t ldg, float* tgrad, int64_t ldt,
        double* loss_out, int64_t r0, int64_t r1, float* e)
    void fv_columns_rows_library_f64(
        const double* O, int64_t ldo, int n_out, const double* X, int64_t ldx,
        int D, const fv_column* cols, const double* tail, int64_t ld_tail,
        double scale, double* grad, int64_t ldg, double* tgrad, int64_t ldt,
        double* loss_out, int64_t r0, int64_t r1, double* e)
    void fv_tail_mix_f32(const float* c, int C, const float* phi, int D,
                         float* out)
    void fv_tail_mix_f64(const double* c, int C, const double* phi, int D,
                         double* out)
    void fv_tail_mix_grad_f32(const float* t, int64_t ldt, int64_t n_rows,
                              int64_t k, const float* Cond, int64_t ldc,
                              const int64_t* rows, int b, int n, float* out)
    void fv_tail_mix_grad_f64(const double* t, int64_t ldt, int64_t n_rows,
                              int64_t k, const double* Cond, int64_t ldc,
                              const int64_t* rows, int b, int n, double* out)
    void fv_columns_means_f32(const float* O, int64_t ldo, int D,
                              const fv_column* cols, int library, float* out,
                              int64_t ldout, int64_t r0, int64_t r1)
    void fv_columns_means_f64(const double* O, int64_t ldo, int D,
                              const fv_column* cols, int library, double* out,
                              int64_t ldout, int64_t r0, int64_t r1)
