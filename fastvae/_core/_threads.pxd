# C-level services of fastvae._core._threads that other extension modules cimport.

cdef extern from "fastvae/isa.h" nogil:
    int FV_ISA_BASELINE
    int FV_ISA_AVX2
    int FV_ISA_AVX512
    int FV_ISA_DISPATCH
    void fv_isa_bind(int* slot)
    int fv_isa_cpu()
    int fv_isa()

# The process's ISA cap (src_c/fastvae/isa.h): every module that includes
# isa.h binds to it when it loads, `fv_isa_bind(fv_isa_slot())`.
cdef int* fv_isa_slot() noexcept nogil
