/*
 * The instruction-set level fastvae's kernels run at: one switch per process.
 *
 * Levels (x86-64 micro-architecture levels): FV_ISA_AVX512 (x86-64-v4),
 * FV_ISA_AVX2 (x86-64-v3: AVX2 + FMA) and FV_ISA_BASELINE (whatever the
 * build's -march gives, SSE2 on a plain x86-64 build, and every other
 * architecture). A kernel with several levels asks fv_isa() on each call and
 * runs the highest one that is at most the cap, so every thread of a
 * process runs the same code: results are bitwise equal for any thread count
 * and may differ in the last bits between levels.
 *
 * The cap lives in ONE int per process, owned by fastvae._core._threads (the first
 * compiled module fastvae imports; FASTVAE_ISA sets it there, and
 * fastvae.set_isa() changes it). Every extension module that includes this
 * header binds to that int when it loads (fv_isa_bind). Code that includes
 * the header without binding (a third party's extension) gets its own cap,
 * 0 = "no cap": the CPU's best level.
 */
#ifndef FASTVAE_ISA_H
#define FASTVAE_ISA_H

#define FV_ISA_BASELINE 1
#define FV_ISA_AVX2     3
#define FV_ISA_AVX512   4

/* Whether this build has the x86-64-v3/v4 code paths: GCC >= 12 on x86-64
 * Linux (the level names and the intrinsics the kernels use), unless
 * FASTVAE_NO_DISPATCH asks for the baseline build only. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) &&       \
    defined(__linux__) && !defined(FASTVAE_NO_DISPATCH)
#define FV_ISA_DISPATCH 1
#else
#define FV_ISA_DISPATCH 0
#endif

static int fv_isa_unbound_cap_ = 0;
static volatile int *fv_isa_cap_ = &fv_isa_unbound_cap_;

/* Make this module read the process's cap from `slot` (fastvae._core._threads). */
static inline __attribute__((unused)) void fv_isa_bind(int *slot)
{
    fv_isa_cap_ = slot;
}

/* The highest level this build and CPU can run (cached; the CPU does not
 * change under a process). */
static inline __attribute__((unused)) int fv_isa_cpu(void)
{
#if FV_ISA_DISPATCH
    static int level = 0;
    int lv = level;
    if (!lv) {
        __builtin_cpu_init();
        lv = __builtin_cpu_supports("x86-64-v4")   ? FV_ISA_AVX512
             : __builtin_cpu_supports("x86-64-v3") ? FV_ISA_AVX2
                                                   : FV_ISA_BASELINE;
        level = lv;
    }
    return lv;
#else
    return FV_ISA_BASELINE;
#endif
}

/* The level kernels run at now: the CPU's best, capped. */
static inline __attribute__((unused)) int fv_isa(void)
{
    int cap = *fv_isa_cap_, cpu = fv_isa_cpu();
    return cap > 0 && cap < cpu ? cap : cpu;
}

#endif /* FASTVAE_ISA_H */
