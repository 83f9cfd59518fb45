/*
 * Scalar numerics shared by the kernels: codes for activations, likelihoods
 * and optimizers, the log-variance clamp, and numerically stable logistic
 * functions. Float variants end in _f32, double variants in _f64.
 *
 * The Cython declarations in fastvae/_core/_numerics.pxd mirror this header and
 * must match it.
 */
#ifndef FASTVAE_NUMERICS_H
#define FASTVAE_NUMERICS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Activation codes (stable: they are stored in model files). */
#define FV_ACT_IDENTITY 0
#define FV_ACT_RELU     1
#define FV_ACT_TANH     2
#define FV_ACT_SIGMOID  3

/* Likelihood codes (stable: they are stored in model files). */
#define FV_LIK_BERNOULLI        0
#define FV_LIK_GAUSSIAN         1 /* fixed scalar sigma */
#define FV_LIK_GAUSSIAN_LEARNED 2 /* one learned log-sigma per feature */
#define FV_LIK_COLUMNS          3 /* one likelihood per column (columns.h) */

/* Model kinds: VAE (stochastic encoder, KL term) or a plain autoencoder
 * (deterministic code z = encoder(x), no KL). */
#define FV_KIND_VAE 0
#define FV_KIND_AE  1

/* Optimizer codes. */
#define FV_OPT_SGD      0
#define FV_OPT_MOMENTUM 1
#define FV_OPT_ADAM     2

/* The encoder's log-variance is clamped to [MIN, MAX] before exp(): exp(20)
 * ~ 4.9e8 stays far from float32 overflow (3.4e38) even squared-free, and
 * exp(-30) ~ 9.4e-14 keeps sigma = 3e-7 a normal float32. Outside the range
 * the gradient with respect to the raw log-variance is zero, as for any clamp. */
#define FV_LOGVAR_MIN (-30.0)
#define FV_LOGVAR_MAX (20.0)

/* Row sums of loss terms accumulate in double into FV_SUM_LANES partial
 * sums (element d into lane d % FV_SUM_LANES, lanes added in order at the
 * end): a fixed order, so results are the same for any thread count, that
 * still vectorises (a single running sum is a serial dependency chain). */
#define FV_SUM_LANES 16

/* A learned Gaussian log-sigma is clamped to [MIN, MAX] (sigma in [9.1e-4,
 * 148]): a feature the decoder predicts exactly (pixels that are always 0)
 * would otherwise drive sigma to 0 and the likelihood to infinity. Outside
 * the range its gradient is zero, as for the log-variance. */
#define FV_LOGSIGMA_MIN (-7.0)
#define FV_LOGSIGMA_MAX (5.0)

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

/* Branch-free float32 exp and log1p for the hot loss loops. Only selects
 * and bit operations, no calls and no branches, so gcc turns a loop over
 * them into SIMD code (libm's expf/log1pf are scalar calls: log1pf alone
 * took 15% of a 784-400-20 training step). Polynomials from Cephes expf.c
 * and logf.c (S. L. Moshier), about 1 ulp over the ranges used. Rounding
 * to an integer uses the 1.5 * 2^23 trick: rintf is a libm call on
 * baseline x86-64 (roundps needs SSE4.1). */
#define FV_EXP_F32_MAX 88.3762626647949f    /* log(FLT_MAX) */
#define FV_EXP_F32_MIN (-87.3365447504019f) /* log(FLT_MIN) */

static inline float fv_bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint32_t fv_f32_to_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

/* exp(x); 0 below FV_EXP_F32_MIN (no subnormal results), inf above the max,
 * NaN for NaN. */
static inline float fv_exp_f32(float x)
{
    const float round = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x > FV_EXP_F32_MAX ? FV_EXP_F32_MAX : x;
    xc = xc < FV_EXP_F32_MIN ? FV_EXP_F32_MIN : xc;
    float n = (xc * 1.44269504088896341f + round) - round;
    /* x - n log 2 with log 2 in two parts, so r is exact enough */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    /* n is in [-126, 127] here (NaN converts to some int; p is NaN then) */
    float y = p * fv_bits_to_f32((uint32_t)((int32_t)n + 127) << 23);
    y = x < FV_EXP_F32_MIN ? 0.0f : y;
    return x > FV_EXP_F32_MAX ? INFINITY : y;
}

/* log(1 + x) for x in [-0.5, 1] (1 + x in [0.5, 2], so 1 + x - 1 is exact
 * and the rounding of 1 + x can be corrected); tiny x give x. */
static inline float fv_log1p_f32(float x)
{
    float u = 1.0f + x;
    float c = (x - (u - 1.0f)) / u; /* log(1 + x) = log(u) + c to first order */
    uint32_t bits = fv_f32_to_bits(u);
    float k = (float)((int32_t)(bits >> 23) - 127);
    float m = fv_bits_to_f32((bits & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    /* m in [sqrt(1/2), sqrt(2)) keeps the polynomial's argument small */
    int big = m > 1.41421356237f;
    m = big ? 0.5f * m : m;
    k = big ? k + 1.0f : k;
    float f = m - 1.0f;
    float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += k * -2.12194440e-4f;
    y += -0.5f * z;
    return (f + y) + k * 0.693359375f + c;
}

/* Bernoulli negative log-likelihood of target x in [0, 1] under logit l,
 * softplus(l) - x * l, written with e = exp(-|l|) so nothing overflows:
 *   softplus(l) = max(l, 0) + log1p(e),  sigmoid(l) = l >= 0 ? 1/(1+e) : e/(1+e).
 * Returns the loss and stores sigmoid(l) (the mean) in *prob. The float
 * version is branch-free for vectorisation. */
static inline float fv_bce_logits_f32(float l, float x, float *prob)
{
    float e = fv_exp_f32(-fabsf(l));
    float inv = 1.0f / (1.0f + e);
    *prob = l >= 0.0f ? inv : e * inv;
    return (l > 0.0f ? l : 0.0f) - x * l + fv_log1p_f32(e);
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
    float e = fv_exp_f32(-fabsf(l));
    return l >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static inline double fv_sigmoid_f64(double l)
{
    double e = exp(-fabs(l));
    return l >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/* Branch-free float32 tanh: an odd polynomial below |v| = 0.625 (Cephes
 * tanhf), 1 - 2 / (exp(2|v|) + 1) with the sign of v above (exact 1 once
 * exp overflows), NaN for NaN. */
static inline float fv_tanh_f32(float v)
{
    float a = fabsf(v);
    float z = v * v;
    float small = -5.70498872745e-3f;
    small = small * z + 2.06390887954e-2f;
    small = small * z - 5.37397155531e-2f;
    small = small * z + 1.33314422036e-1f;
    small = small * z - 3.33332819422e-1f;
    small = small * z * v + v;
    float big = copysignf(1.0f - 2.0f / (fv_exp_f32(2.0f * a) + 1.0f), v);
    return a < 0.625f ? small : big;
}

#endif /* FASTVAE_NUMERICS_H */
