/*
 * Run-time dispatch of fastvae's SIMD kernels, driven by the process's ISA
 * cap (isa.h: fv_isa(), FASTVAE_ISA, fastvae.set_isa), without building for
 * one machine (-march=native would make a wheel crash with SIGILL on an
 * older CPU).
 *
 * Why not target_clones (what this header used before): its ifunc resolver
 * picks a clone from the CPU once, at load, so FASTVAE_ISA=baseline could not
 * cap those kernels and one machine could not test every code path.
 *
 * The scheme, the only one fastvae uses (elementwise.h, row_hash.h,
 * dense_rows.h):
 *
 * 1. A kernel body lives once in an *_impl.h (no include guard) that names
 *    its functions FV_K(name) (name + level suffix _base, _v3 or _v4; the
 *    includer may fold a type suffix in first) and declares them FV_KERNEL.
 *    The includer defines FV_DISPATCH_IMPL as that file's name and includes
 *    fastvae/dispatch_each.h, which includes the body once per level with
 *    FV_LEVEL (an FV_ISA_* value), FV_LEVEL_SUFFIX and FV_LEVEL_TARGET set:
 *    __attribute__((target("arch=x86-64-v4"))), ("arch=x86-64-v3") or none.
 * 2. FV_DISPATCH / FV_DISPATCH_VOID(name, (params), (args)) define
 *      name(params)              runs at fv_isa(), read on every call;
 *      name##_at(level, params)  runs at `level`, which must be at most
 *                                fv_isa_cpu() (tests, and a caller that
 *                                must run several kernels at one level).
 *    The switch costs two loads and a compare per call; kernels are called
 *    per block of rows or parameters, never per element, so a training
 *    step does not notice it (784-400-20 VAE, batch 128: within the noise).
 *
 * What the levels buy, measured on the Bernoulli loss of a 128 x 784 batch
 * (float32, one thread): baseline SSE2 0.80 ms, AVX2 0.33 ms, AVX-512
 * 0.17 ms (libm's scalar expf/log1pf: 2.4 ms).
 *
 * Elsewhere (GCC < 12, clang, other architectures or OSes, FASTVAE_NO_DISPATCH
 * defined: FV_ISA_DISPATCH is 0) only the baseline copy is compiled and
 * name##_at ignores `level`.
 *
 * Determinism: every thread of a process reads the same cap, so all run the
 * same level and results stay bitwise equal for any thread count; they can
 * differ in the last bits between levels (vector widths, FMA contraction).
 * Changing the cap (fastvae.set_isa) while another thread is inside a fit or
 * a step can mix levels within that step: callers must not do that.
 *
 * Each extension module has its own copy of these static functions and so
 * its own pointer to the cap: a module binds it with
 * fv_isa_bind(fv_isa_slot()) when it loads (fastvae's modules do; see
 * fastvae/_core/_dense.pyx; a third party's Cython module does through
 * fastvae.check_c_api_version(), fastvae/__init__.pxd). One that includes
 * these headers without binding runs the header kernels it compiles in at
 * the CPU's best level, whatever FASTVAE_ISA says.
 */
#ifndef FASTVAE_DISPATCH_H
#define FASTVAE_DISPATCH_H

#include "fastvae/isa.h"

#define FV_CAT_(a, b)   a##b
#define FV_CAT(a, b)    FV_CAT_(a, b)
#define FV_UNPAREN(...) __VA_ARGS__

/* Name of the current level's copy of a kernel (inside an *_impl.h). */
#define FV_K(name) FV_CAT(name, FV_LEVEL_SUFFIX)

/* The copies are `static` (header-only: no link step for users), so a
 * translation unit that does not call one would warn. */
#if defined(__GNUC__)
#define FV_KERNEL     static FV_LEVEL_TARGET __attribute__((unused))
#define FV_DISPATCHER static inline __attribute__((unused))
#else
#define FV_KERNEL     static
#define FV_DISPATCHER static inline
#endif

#if FV_ISA_DISPATCH
#define FV_DISPATCH_CASES_(name, args, ret)                                                    \
    case FV_ISA_AVX512:                                                                        \
        ret FV_CAT(name, _v4) args;                                                            \
        break;                                                                                 \
    case FV_ISA_AVX2:                                                                          \
        ret FV_CAT(name, _v3) args;                                                            \
        break;
#else
#define FV_DISPATCH_CASES_(name, args, ret)
#endif

/* `ret_type name params` (and name##_at) over the level copies of `name`. */
#define FV_DISPATCH(ret_type, name, params, args)                                              \
    FV_DISPATCHER ret_type FV_CAT(name, _at)(int level, FV_UNPAREN params)                     \
    {                                                                                          \
        ret_type result_;                                                                      \
        switch (level) {                                                                       \
            FV_DISPATCH_CASES_(name, args, result_ =)                                          \
        default:                                                                               \
            result_ = FV_CAT(name, _base) args;                                                \
        }                                                                                      \
        return result_;                                                                        \
    }                                                                                          \
    FV_DISPATCHER ret_type name params                                                         \
    {                                                                                          \
        return FV_CAT(name, _at)(fv_isa(), FV_UNPAREN args);                                   \
    }

#define FV_DISPATCH_VOID(name, params, args)                                                   \
    FV_DISPATCHER void FV_CAT(name, _at)(int level, FV_UNPAREN params)                         \
    {                                                                                          \
        switch (level) {                                                                       \
            FV_DISPATCH_CASES_(name, args, )                                                   \
        default:                                                                               \
            FV_CAT(name, _base) args;                                                          \
        }                                                                                      \
    }                                                                                          \
    FV_DISPATCHER void name params                                                             \
    {                                                                                          \
        FV_CAT(name, _at)(fv_isa(), FV_UNPAREN args);                                          \
    }

/* fv_dispatch_probe(x) returns the level of the copy that ran (x is unused:
 * FV_DISPATCH needs a parameter): tests call it in each module to check
 * that the module is bound to the process's cap. */
#define FV_DISPATCH_IMPL "fastvae/dispatch_probe_impl.h"
#include "fastvae/dispatch_each.h"
#undef FV_DISPATCH_IMPL
FV_DISPATCH(int, fv_dispatch_probe, (int x), (x))

#endif /* FASTVAE_DISPATCH_H */
