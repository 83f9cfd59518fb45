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

/* Two regimes, by the work of the whole GEMM (n columns x rows x depth k):
 *
 * Large GEMMs: `parts` blocks (rounded up to even, so two threads share
 * evenly), each at least FV_MIN_BLOCK_COLS wide. Every block is one BLAS call
 * that packs the shared operand again, so fewer blocks are faster: on 2 cores,
 * 2 blocks instead of ~384-column ones made the 784-1024-1024/64/512 step 7%
 * faster (784-400/20/128 the same). `parts` is the number of cores the
 * process may use (fastvae._core.threads.partition_count()), fixed for a process,
 * so results do not depend on the number of threads.
 *
 * Small GEMMs (work <= FV_SMALL_GEMM_WORK): blocks of about
 * FV_SMALL_BLOCK_WORK multiply-adds. OpenBLAS multiplies those without
 * packing (its small-matrix kernels take m * n * k <= 1e6), and packing
 * dominated small-batch steps: 16x784 @ 784x400 took 0.31 ms in 2 wide
 * blocks and 0.21 ms in 8 narrow ones (one thread). The target stays below
 * 1e6 because aligned cuts make some blocks up to 16 columns wider: at 1e6,
 * the last of six blocks of 16x784 @ 784x400 was 80 columns (1.003e6) and
 * took twice as long as the others. */
#define FV_MIN_BLOCK_COLS   128
#define FV_SMALL_GEMM_WORK  8000000
#define FV_SMALL_BLOCK_WORK 800000
#define FV_MAX_BLOCKS       64
/* Block starts are rounded down to this many columns (one 64-byte line of
 * float32) when every block stays at least this wide. */
#define FV_BLOCK_ALIGN 16

/* Number of column blocks of a GEMM with n output columns, `rows` output rows
 * and inner dimension k. Always even (two threads share evenly), at least 2. */
static inline int fv_n_col_blocks(int n, int rows, int k, int parts)
{
    int64_t work = (int64_t)n * rows * k;
    int64_t nb;
    if (work <= FV_SMALL_GEMM_WORK) {
        nb = (work + FV_SMALL_BLOCK_WORK - 1) / FV_SMALL_BLOCK_WORK;
    } else {
        int64_t widest = n / FV_MIN_BLOCK_COLS;
        nb = parts < widest ? parts : widest;
    }
    nb += nb & 1;
    if (nb < 2)
        nb = 2;
    return nb > FV_MAX_BLOCKS ? FV_MAX_BLOCKS : (int)nb;
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
static inline void fv_split_range(int64_t n, int parts, int p, int64_t align, int64_t *lo,
                                  int64_t *hi)
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
