# Cython declarations of src_c/fastvae/fpenv.h; must match the header.

cdef extern from "fastvae/fpenv.h" nogil:
    ctypedef unsigned long long fv_fpenv
    fv_fpenv fv_flush_denormals_begin()
    void fv_flush_denormals_end(fv_fpenv old)
