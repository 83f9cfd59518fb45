/*
 * OpenMP queries that also compile without OpenMP (FASTVAE_NO_OPENMP=1 or a
 * compiler without -fopenmp): then there is one thread and barriers are no-ops.
 */
#ifndef FASTVAE_OMP_SHIM_H
#define FASTVAE_OMP_SHIM_H

#ifdef _OPENMP
#include <omp.h>
#endif

static inline int fv_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static inline int fv_omp_get_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static inline int fv_omp_get_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static inline int fv_omp_get_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* An orphaned barrier: binds to the innermost enclosing parallel region, so
 * code called from inside `with parallel()` can separate its phases. Every
 * thread of the team must reach the same sequence of barriers. */
static inline void fv_omp_barrier(void)
{
#ifdef _OPENMP
#pragma omp barrier
#endif
}

#endif /* FASTVAE_OMP_SHIM_H */
