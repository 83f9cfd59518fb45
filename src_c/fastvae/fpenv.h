/*
 * Flush-to-zero for the kernel threads. Subnormal floats (below 1.2e-38 in
 * float32) make every arithmetic instruction that touches them 50-100x
 * slower, and training produces them: after five epochs on the shapes data,
 * 67k of Adam's 650k first moments were subnormal (gradients of pixels that
 * are always 0 decay geometrically) and a 784-400-20 step ran 1.8x slower.
 * With FTZ and DAZ set, subnormal results and inputs count as 0, a change
 * far below any tolerance the model has.
 *
 * Each compiled entry point sets the mode on every thread of its parallel
 * region and restores the thread's previous state (flags included) before
 * returning, so the caller's floating-point environment is unchanged.
 */
#ifndef FASTVAE_FPENV_H
#define FASTVAE_FPENV_H

#include <stdint.h>

#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>

typedef uint64_t fv_fpenv;

static inline fv_fpenv fv_flush_denormals_begin(void)
{
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) and DAZ (bit 6) */
    return old;
}

static inline void fv_flush_denormals_end(fv_fpenv old)
{
    _mm_setcsr((unsigned int)old);
}

#elif defined(__aarch64__)

typedef uint64_t fv_fpenv;

static inline fv_fpenv fv_flush_denormals_begin(void)
{
    uint64_t old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | (UINT64_C(1) << 24))); /* FZ */
    return old;
}

static inline void fv_flush_denormals_end(fv_fpenv old)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old));
}

#else

typedef uint64_t fv_fpenv;

static inline fv_fpenv fv_flush_denormals_begin(void)
{
    return 0;
}

static inline void fv_flush_denormals_end(fv_fpenv old)
{
    (void)old;
}

#endif

#endif /* FASTVAE_FPENV_H */
