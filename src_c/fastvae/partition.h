/*
 * How work is cut into blocks. The cuts depend only on the problem size,
 * never on the number of threads: a BLAS call on a block of columns does not
 * give bitwise the same numbers as the same columns inside a wider call
 * (measured with OpenBLAS SkylakeX kernels: most split points change the
 * rounding), so thread-count independent blocks are what makes results
 * bitwise equal for any thread count. Threads then take whole blocks.
 */
#ifndef FASTVAE_PARTITION_H
#define FASTVAE_PARTITION_H

#include <stdint.h>

/* Columns per GEMM block is about 64: wide enough that packing overhead per
 * BLAS call stays small, and an even count so two threads get equal shares. */
#define FV_COLS_PER_BLOCK 64
#define FV_MAX_BLOCKS 64
/* Block starts are rounded down to this many columns (one 64-byte line of
 * float32) when every block stays at least this wide. */
#define FV_BLOCK_ALIGN 16

static inline int fv_n_col_blocks(int n)
{
    int nb = 2 * ((n + 2 * FV_COLS_PER_BLOCK - 1) / (2 * FV_COLS_PER_BLOCK));
    if (nb < 1)
        nb = 1;
    return nb > FV_MAX_BLOCKS ? FV_MAX_BLOCKS : nb;
}

/* Start of block b of nb over [0, n); block b is [start(b), start(b + 1)). */
static inline int fv_block_start(int n, int nb, int b)
{
    if (b >= nb)
        return n;
    int64_t s = (int64_t)n * b / nb;
    if (n >= FV_BLOCK_ALIGN * nb)
        s -= s % FV_BLOCK_ALIGN;
    return (int)s;
}

/* Even split of [0, n) into `parts` contiguous ranges, for work whose result
 * does not depend on the cut (row-wise and element-wise kernels). Starts are
 * multiples of `align` so threads never share a cache line. */
static inline void fv_split_range(int64_t n, int parts, int p, int64_t align,
                                  int64_t *lo, int64_t *hi)
{
    int64_t a = n * p / parts, b = n * (p + 1) / parts;
    if (align > 1) {
        a -= a % align;
        b = (p + 1 == parts) ? n : b - b % align;
    }
    *lo = a;
    *hi = b;
}

#endif /* FASTVAE_PARTITION_H */
