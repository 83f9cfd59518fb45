# Cython declarations of src_c/fastvae/partition.h; must match the header.

from libc.stdint cimport int64_t

cdef extern from "fastvae/partition.h" nogil:
    int FV_BLOCK_ALIGN
    int FV_MAX_BLOCKS
    int fv_n_col_blocks(int n, int rows, int k, int parts)
    int fv_block_start(int n, int nb, int b)
    void fv_split_range(int64_t n, int parts, int p, int64_t align,
                        int64_t* lo, int64_t* hi)
