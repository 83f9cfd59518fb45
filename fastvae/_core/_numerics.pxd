# Declarations of src_c/fastvae/numerics.h; must match that header.

cdef extern from "fastvae/numerics.h" nogil:
    int FV_ACT_IDENTITY
    int FV_ACT_RELU
    int FV_ACT_TANH
    int FV_ACT_SIGMOID
    int FV_LIK_BERNOULLI
    int FV_LIK_GAUSSIAN
    int FV_LIK_GAUSSIAN_LEARNED
    int FV_LIK_COLUMNS
    int FV_KIND_VAE
    int FV_KIND_AE
    double FV_LOGSIGMA_MIN
    double FV_LOGSIGMA_MAX
    int FV_OPT_SGD
    int FV_OPT_MOMENTUM
    int FV_OPT_ADAM
    double FV_LOGVAR_MIN
    double FV_LOGVAR_MAX
    double FV_LOG_2PI
    enum: FV_SUM_LANES
    float fv_exp_f32(float x)
    float fv_log1p_f32(float x)
    float fv_tanh_f32(float v)
    double fv_clamp_logvar(double lv)
    double fv_logvar_grad_mask(double lv)
    float fv_bce_logits_f32(float l, float x, float* prob)
    double fv_bce_logits_f64(double l, double x, double* prob)
    float fv_sigmoid_f32(float l)
    double fv_sigmoid_f64(double l)
