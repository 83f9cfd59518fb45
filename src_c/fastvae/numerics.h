/*
 * Scalar numerics shared by the kernels: codes for activations, likelihoods
 * and optimizers, the log-variance clamp, and numerically stable logistic
 * functions. Float variants end in _f32, double variants in _f64.
 *
 * The Cython declarations in fastvae/_numerics.pxd mirror this header and
 * must match it.
 */
#ifndef FASTVAE_NUMERICS_H
#define FASTVAE_NUMERICS_H

#include <math.h>

/* Activation codes (stable: they are stored in model files). */
#define FV_ACT_IDENTITY 0
#define FV_ACT_RELU 1
#define FV_ACT_TANH 2
#define FV_ACT_SIGMOID 3

/* Likelihood codes (stable: they are stored in model files). */
#define FV_LIK_BERNOULLI 0
#define FV_LIK_GAUSSIAN 1

/* Optimizer codes. */
#define FV_OPT_SGD 0
#define FV_OPT_MOMENTUM 1
#define FV_OPT_ADAM 2

/* The encoder's log-variance is clamped to [MIN, MAX] before exp(): exp(20)
 * ~ 4.9e8 stays far from float32 overflow (3.4e38) even squared-free, and
 * exp(-30) ~ 9.4e-14 keeps sigma = 3e-7 a normal float32. Outside the range
 * the gradient with respect to the raw log-variance is zero, as for any clamp. */
#define FV_LOGVAR_MIN (-30.0)
#define FV_LOGVAR_MAX (20.0)

/* log(2 * pi), for the Gaussian normalising constants. */
#define FV_LOG_2PI 1.8378770664093454835606594728112

static inline double fv_clamp_logvar(double lv)
{
    return lv < FV_LOGVAR_MIN ? FV_LOGVAR_MIN : (lv > FV_LOGVAR_MAX ? FV_LOGVAR_MAX : lv);
}

/* 1 where the clamp passes the gradient, else 0. NaN passes (stays visible). */
static inline double fv_logvar_grad_mask(double lv)
{
    return (lv < FV_LOGVAR_MIN || lv > FV_LOGVAR_MAX) ? 0.0 : 1.0;
}

/* Bernoulli negative log-likelihood of target x in [0, 1] under logit l,
 * softplus(l) - x * l, written with e = exp(-|l|) so nothing overflows:
 *   softplus(l) = max(l, 0) + log1p(e),  sigmoid(l) = l >= 0 ? 1/(1+e) : e/(1+e).
 * Returns the loss and stores sigmoid(l) (the mean) in *prob. */
static inline float fv_bce_logits_f32(float l, float x, float *prob)
{
    float e = expf(-fabsf(l));
    float inv = 1.0f / (1.0f + e);
    *prob = l >= 0.0f ? inv : e * inv;
    return fmaxf(l, 0.0f) - x * l + log1pf(e);
}

static inline double fv_bce_logits_f64(double l, double x, double *prob)
{
    double e = exp(-fabs(l));
    double inv = 1.0 / (1.0 + e);
    *prob = l >= 0.0 ? inv : e * inv;
    return fmax(l, 0.0) - x * l + log1p(e);
}

static inline float fv_sigmoid_f32(float l)
{
    float e = expf(-fabsf(l));
    return l >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static inline double fv_sigmoid_f64(double l)
{
    double e = exp(-fabs(l));
    return l >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

#endif /* FASTVAE_NUMERICS_H */
