# Declarations of src_c/fastvae/philox.h; must match that header.

from libc.stdint cimport int64_t, uint64_t

cdef extern from "fastvae/philox.h" nogil:
    unsigned int FV_STREAM_REPARAM
    unsigned int FV_STREAM_EVAL
    unsigned int FV_STREAM_SAMPLE
    unsigned int FV_STREAM_BINARIZE
    unsigned int FV_STREAM_CORRUPT
    unsigned int FV_STREAM_IS
    unsigned int FV_STREAM_USER
    void fv_philox4x64_10(const uint64_t* ctr, const uint64_t* key,
                          uint64_t* out)
    double fv_u64_to_unit(uint64_t x)
    void fv_uniform4(uint64_t seed, uint64_t stream, uint64_t block,
                     uint64_t row, uint64_t step, uint64_t draw, double* out)
    void fv_normal4(uint64_t seed, uint64_t stream, uint64_t block,
                    uint64_t row, uint64_t step, uint64_t draw, double* out)
    void fv_normal_fill_f64(uint64_t seed, uint64_t stream, uint64_t row,
                            uint64_t step, uint64_t draw, double* out,
                            int64_t n)
    void fv_normal_fill_f32(uint64_t seed, uint64_t stream, uint64_t row,
                            uint64_t step, uint64_t draw, float* out,
                            int64_t n)
    void fv_uniform_fill_f64(uint64_t seed, uint64_t stream, uint64_t row,
                             uint64_t step, uint64_t draw, double* out,
                             int64_t n)
