# Cython declarations of src_c/fastvae/pool.h: fastvae's thread pool, which
# runs a job of phases of fixed blocks on whichever threads run. Must match
# the header.


cdef extern from "fastvae/pool.h" nogil:
    # must match src_c/fastvae/pool.h
    ctypedef void (*fv_pool_fn)(void* ctx, int phase, int block,
                                int tid) noexcept nogil
    int FV_POOL_MAX_PHASES
    void fv_pool_run(fv_pool_fn fn, void* ctx, int n_phases,
                     const int* n_blocks, int n_threads)
