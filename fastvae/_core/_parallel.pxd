# Declarations of src_c/fastvae/omp_shim.h, partition.h and fpenv.h; must
# match them.

from libc.stdint cimport int64_t

cdef extern from "fastvae/omp_shim.h" nogil:
    int fv_openmp_enabled()
    int fv_omp_get_max_threads()
    int fv_omp_get_num_threads()
    int fv_omp_get_thread_num()
    void fv_omp_barrier()

cdef extern from "fastvae/partition.h" nogil:
    int FV_BLOCK_ALIGN
    int FV_MAX_BLOCKS
    int fv_n_col_blocks(int n, int rows, int k, int parts)
    int fv_block_start(int n, int nb, int b)
    void fv_split_range(int64_t n, int parts, int p, int64_t align,
                        int64_t* lo, int64_t* hi)

cdef extern from "fastvae/fpenv.h" nogil:
    ctypedef unsigned long long fv_fpenv
    fv_fpenv fv_flush_denormals_begin()
    void fv_flush_denormals_end(fv_fpenv old)
