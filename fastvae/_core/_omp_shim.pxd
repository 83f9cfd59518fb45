# Cython declarations of src_c/fastvae/omp_shim.h; must match the header.

cdef extern from "fastvae/omp_shim.h" nogil:
    int fv_openmp_enabled()
    int fv_omp_get_max_threads()
    int fv_omp_get_num_threads()
    int fv_omp_get_thread_num()
    void fv_omp_barrier()
