/*
 * Includes FV_DISPATCH_IMPL (a file name) once per SIMD level with FV_LEVEL,
 * FV_LEVEL_SUFFIX and FV_LEVEL_TARGET set (see dispatch.h); the baseline
 * only when the build has no dispatch. No include guard on purpose. The
 * includer has included fastvae/dispatch.h (not included here: the two
 * would include each other).
 */

#define FV_LEVEL        FV_ISA_BASELINE
#define FV_LEVEL_SUFFIX _base
#define FV_LEVEL_TARGET
#include FV_DISPATCH_IMPL
#undef FV_LEVEL
#undef FV_LEVEL_SUFFIX
#undef FV_LEVEL_TARGET

#if FV_ISA_DISPATCH
#define FV_LEVEL        FV_ISA_AVX2
#define FV_LEVEL_SUFFIX _v3
#define FV_LEVEL_TARGET __attribute__((target("arch=x86-64-v3")))
#include FV_DISPATCH_IMPL
#undef FV_LEVEL
#undef FV_LEVEL_SUFFIX
#undef FV_LEVEL_TARGET

#define FV_LEVEL        FV_ISA_AVX512
#define FV_LEVEL_SUFFIX _v4
#define FV_LEVEL_TARGET __attribute__((target("arch=x86-64-v4")))
#include FV_DISPATCH_IMPL
#undef FV_LEVEL
#undef FV_LEVEL_SUFFIX
#undef FV_LEVEL_TARGET
#endif
