/*
 * Run-time dispatch of the element-wise kernels to the widest SIMD the CPU
 * has, without building for one machine (-march=native would make a wheel
 * crash with SIGILL on an older CPU).
 *
 * FV_CLONES marks a function that GCC (>= 11) compiles three
 * times: for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline;
 * an ifunc resolver picks one when the module loads. Measured on the Bernoulli
 * loss of a 128 x 784 batch (float32, one thread): baseline SSE2 0.80 ms,
 * AVX2 0.33 ms, AVX-512 0.17 ms (libm's scalar expf/log1pf: 2.4 ms).
 *
 * Elsewhere (other architectures, no ifunc, FASTVAE_NO_DISPATCH defined) the
 * functions are compiled once for the baseline. All threads of a process run
 * the same clone, so results stay bitwise equal for any thread count; they
 * may differ in the last bits between CPUs (FMA contraction in the clones).
 */
#ifndef FASTVAE_DISPATCH_H
#define FASTVAE_DISPATCH_H

/* GCC >= 11 knows the x86-64-v3/v4 level names; other compilers get the
 * baseline build rather than a guess at their dialect. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && \
    defined(__linux__) && !defined(FASTVAE_NO_DISPATCH)
#define FV_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

#ifndef FV_CLONES
#define FV_CLONES
#endif

/* The cloned functions are `static` (header-only: no link step for users),
 * so a translation unit that does not call one would warn. */
#if defined(__GNUC__)
#define FV_KERNEL static FV_CLONES __attribute__((unused))
#else
#define FV_KERNEL static
#endif

#endif /* FASTVAE_DISPATCH_H */
