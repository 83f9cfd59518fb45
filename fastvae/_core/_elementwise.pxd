# Declarations of src_c/fastvae/elementwise.h; must match that header.
# Functions run at the process's SIMD level, fv_isa(), read on every call
# (src_c/fastvae/dispatch.h): a module that cimports them must bind to the
# cap when it loads, fv_isa_bind(fv_isa_slot()). Arguments the header marks
# restrict must not overlap.

from libc.stdint cimport int64_t, uint64_t

cdef extern from "fastvae/elementwise.h" nogil:
    # The level this module's kernels run at now (dispatch.h); x is unused.
    int fv_dispatch_probe(int x)
    void fv_bernoulli_rows_f32(const float* L, int64_t ldl, const float* X,
                               int64_t ldx, int D, float scale, float* grad,
                               int64_t ldg, double* loss_out, int64_t r0,
                               int64_t r1)
    void fv_bernoulli_rows_f64(const double* L, int64_t ldl, const double* X,
                               int64_t ldx, int D, double scale, double* grad,
                               int64_t ldg, double* loss_out, int64_t r0,
                               int64_t r1)
    void fv_gaussian_rows_f32(const float* M, int64_t ldm, const float* X,
                              int64_t ldx, int D, double sigma, float scale,
                              float* grad, int64_t ldg, double* loss_out,
                              int64_t r0, int64_t r1)
    void fv_gaussian_rows_f64(const double* M, int64_t ldm, const double* X,
                              int64_t ldx, int D, double sigma, double scale,
                              double* grad, int64_t ldg, double* loss_out,
                              int64_t r0, int64_t r1)
    void fv_bias_activation_f32(float* Y, int64_t ldy, int n_rows, int n_cols,
                                const float* b, int activation)
    void fv_bias_activation_f64(double* Y, int64_t ldy, int n_rows, int n_cols,
                                const double* b, int activation)
    void fv_mul_activation_grad_f32(float* D, int64_t ldd, const float* Y,
                                    int64_t ldy, int n_rows, int n_cols,
                                    int activation)
    void fv_mul_activation_grad_f64(double* D, int64_t ldd, const double* Y,
                                    int64_t ldy, int n_rows, int n_cols,
                                    int activation)
    void fv_column_sums_f32(const float* A, int64_t lda, int n_rows,
                            int n_cols, float* out)
    void fv_column_sums_f64(const double* A, int64_t lda, int n_rows,
                            int n_cols, double* out)
    void fv_sgd_update_f32(float* p, const float* g, int64_t n, float lr)
    void fv_sgd_update_f64(double* p, const double* g, int64_t n, double lr)
    void fv_momentum_update_f32(float* p, const float* g, float* v, int64_t n,
                                float lr, float momentum)
    void fv_momentum_update_f64(double* p, const double* g, double* v,
                                int64_t n, double lr, double momentum)
    void fv_adam_update_f32(float* p, const float* g, float* m, float* v,
                            int64_t n, float beta1, float one_minus_beta1,
                            float beta2, float one_minus_beta2,
                            float step_size, float inv_sqrt_bc2, float eps)
    void fv_adam_update_f64(double* p, const double* g, double* m, double* v,
                            int64_t n, double beta1, double one_minus_beta1,
                            double beta2, double one_minus_beta2,
                            double step_size, double inv_sqrt_bc2, double eps)
    int64_t fv_count_nonfinite_f32(const float* A, int64_t lda, int n_rows,
                                   int n_cols)
    int64_t fv_count_nonfinite_f64(const double* A, int64_t lda, int n_rows,
                                   int n_cols)
    void fv_gaussian_learned_rows_f32(
        const float* M, int64_t ldm, const float* X, int64_t ldx, int D,
        const float* logsigma, float scale, float* grad, int64_t ldg,
        float* sgrad, int64_t ldsg, float* inv_var, double* loss_out,
        int64_t r0, int64_t r1)
    void fv_gaussian_learned_rows_f64(
        const double* M, int64_t ldm, const double* X, int64_t ldx, int D,
        const double* logsigma, double scale, double* grad, int64_t ldg,
        double* sgrad, int64_t ldsg, double* inv_var, double* loss_out,
        int64_t r0, int64_t r1)
    void fv_bernoulli_draw_f32(const float* p, float* dst, int n,
                               uint64_t seed, uint64_t stream, uint64_t row,
                               uint64_t step)
    void fv_bernoulli_draw_f64(const double* p, double* dst, int n,
                               uint64_t seed, uint64_t stream, uint64_t row,
                               uint64_t step)
    void fv_mask_f32(const float* src, float* dst, int n, double rate,
                     uint64_t seed, uint64_t stream, uint64_t row,
                     uint64_t step)
    void fv_mask_f64(const double* src, double* dst, int n, double rate,
                     uint64_t seed, uint64_t stream, uint64_t row,
                     uint64_t step)
