/*
 * Body of gemm.h, included once per floating type; not a standalone header
 * (no include guard on purpose). Needs FV_T, FV_G(name) (the name with its
 * type suffix), FV_G_V (lanes of one 64-byte vector), FV_G_MASK (the mask
 * type), FV_G_MASKZ_LOAD(mask, p) and FV_G_MASK_STORE(p, mask, v) (AVX-512
 * masked load and store intrinsics of the type), FV_G_REDUCE (a tree that
 * turns FV_G_V vectors into one vector of their sums) and FV_G_DOT_RA /
 * FV_G_DOT_RB (the dot tile, FV_G_DOT_RA * FV_G_DOT_RB == FV_G_V).
 *
 * Every function here is compiled for x86-64-v4 only; gemm.h calls it after
 * checking the CPU. The parameters are undefined at the end, ready for the
 * next type.
 */

typedef FV_T FV_G(vec) __attribute__((vector_size(64)));

#define FV_G_TILE FV_GEMM_TARGET static inline __attribute__((always_inline))

FV_G_TILE FV_G(vec) FV_G(loadu)(const FV_T *p)
{
    FV_G(vec) v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

FV_G_TILE FV_G_MASK FV_G(mask)(int lanes)
{
    return (FV_G_MASK)(lanes >= FV_G_V ? ~0ull : (1ull << lanes) - 1);
}

/* out = alpha * acc + beta * out over the lanes of `mask`; out is not read
 * when beta == 0 (it may hold NaN or be uninitialised, as BLAS allows). */
FV_G_TILE void FV_G(store)(FV_T *out, FV_G(vec) acc, FV_G_MASK mask, FV_T alpha, FV_T beta)
{
    if (alpha != 1)
        acc *= alpha;
    if (beta != 0)
        acc += beta * (FV_G(vec))FV_G_MASKZ_LOAD(mask, out);
    FV_G_MASK_STORE(out, mask, acc);
}

/* Outer-product tile: acc[r][c] = sum over kk in order of
 * a[r][kk * sk] * B[kk, j0 + c * V ...] for FV_GEMM_R rows and nv vectors
 * of columns, the last one `mask`ed; stored to c_rows[r] for r < rows.
 * sk is 1 when A is row-major (NN) and lda when it is transposed (TN).
 * nv is a constant after inlining (the switch in outer), so the
 * accumulators live in registers. */
FV_G_TILE void FV_G(outer_tile)(int k, const FV_T *const *a, int64_t sk, const FV_T *restrict B,
                                int64_t ldb, int nv, FV_G_MASK mask, FV_T *const *c_rows,
                                int rows, FV_T alpha, FV_T beta)
{
    FV_G(vec) acc[FV_GEMM_R][FV_GEMM_CV];
    FV_G(vec) b[FV_GEMM_CV];
    for (int r = 0; r < FV_GEMM_R; r++)
        for (int c = 0; c < nv; c++)
            acc[r][c] = (FV_G(vec)){0};
    for (int kk = 0; kk < k; kk++) {
        const FV_T *bk = B + (int64_t)kk * ldb;
        for (int c = 0; c < nv; c++)
            b[c] = c < nv - 1 ? FV_G(loadu)(bk + c * FV_G_V)
                              : (FV_G(vec))FV_G_MASKZ_LOAD(mask, bk + c * FV_G_V);
        for (int r = 0; r < FV_GEMM_R; r++) {
            const FV_T x = a[r][(int64_t)kk * sk];
            for (int c = 0; c < nv; c++)
                acc[r][c] += x * b[c];
        }
    }
    /* r and c run to constants so that acc stays in registers. */
    for (int r = 0; r < FV_GEMM_R; r++)
        if (r < rows)
            for (int c = 0; c < nv; c++)
                FV_G(store)(c_rows[r] + c * FV_G_V, acc[r][c],
                            c < nv - 1 ? FV_G(mask)(FV_G_V) : mask, alpha, beta);
}

/* The panel op(B)[0:k, 0:width] copied to buf with row stride tw
 * (contiguous), zero-padded to whole vectors; B points at the panel's first
 * column of op(B), trans_b says op(B)[kk, j] is B[j * ldb + kk]. */
FV_GEMM_TARGET static void FV_G(pack_panel)(int trans_b, int k, const FV_T *B, int64_t ldb,
                                            int width, int tw, FV_T *restrict buf)
{
    if (trans_b) {
        /* Blocks of 16 kk so the reads run along rows of B. */
        for (int k0 = 0; k0 < k; k0 += 16) {
            int k1 = k0 + 16 < k ? k0 + 16 : k;
            for (int j = 0; j < tw; j++) {
                const FV_T *src = B + (int64_t)j * ldb;
                for (int kk = k0; kk < k1; kk++)
                    buf[(int64_t)kk * tw + j] = j < width ? src[kk] : 0;
            }
        }
        return;
    }
    for (int kk = 0; kk < k; kk++) {
        const FV_T *src = B + (int64_t)kk * ldb;
        FV_T *dst = buf + (int64_t)kk * tw;
        for (int j = 0; j < width; j++)
            dst[j] = src[j];
        for (int j = width; j < tw; j++)
            dst[j] = 0;
    }
}

/* C (m x n) = alpha * op(A) @ op(B) + beta * C, row-major, with
 * op(A)[i, kk] = A[i * lda + kk] (trans_a false) or A[kk * lda + i] (true)
 * and op(B)[kk, j] = B[kk * ldb + j] or, packed, B[j * ldb + kk]. Returns 0
 * (having done nothing) when trans_b is set and the panel buffer cannot be
 * allocated.
 * Column panels of FV_GEMM_CV vectors; within one, groups of FV_GEMM_R rows
 * (the last group padded with copies of its last row, not stored).
 *
 * A panel is read once per row group. Where its rows are a multiple of
 * 1 kB apart they fall into few cache sets and evict each other (a
 * 512x1024x1024 NN product ran at 170 GFLOP/s against 225 for 128x400x784),
 * so with enough row groups to pay for the copy the panel is packed into a
 * contiguous buffer first. Packing moves numbers, never changes them. */
FV_GEMM_TARGET static int FV_G(outer)(int trans_a, int trans_b, int m, int n, int k, FV_T alpha,
                                      const FV_T *A, int64_t lda, const FV_T *B, int64_t ldb,
                                      FV_T beta, FV_T *C, int64_t ldc)
{
    const int tw = FV_GEMM_CV * FV_G_V;
    const int64_t sr = trans_a ? 1 : lda, sk = trans_a ? lda : 1;
    const FV_T *a[FV_GEMM_R];
    FV_T *c_rows[FV_GEMM_R];
    FV_T *buf = NULL;
    if (k > 0 &&
        (trans_b || (m >= FV_GEMM_PACK_MIN_ROWS && (ldb * sizeof(FV_T)) % 1024 == 0))) {
        buf = (FV_T *)fv_gemm_scratch((size_t)k * tw * sizeof(FV_T));
        if (!buf && trans_b)
            return 0;
    }
    for (int j0 = 0; j0 < n; j0 += tw) {
        int width = n - j0 < tw ? n - j0 : tw;
        int nv = (width + FV_G_V - 1) / FV_G_V;
        FV_G_MASK mask = FV_G(mask)(width - (nv - 1) * FV_G_V);
        const FV_T *panel = B + j0;
        int64_t ldp = ldb;
        if (buf) {
            FV_G(pack_panel)(trans_b, k, trans_b ? B + (int64_t)j0 * ldb : B + j0, ldb, width,
                             tw, buf);
            panel = buf;
            ldp = tw;
        }
        for (int i0 = 0; i0 < m; i0 += FV_GEMM_R) {
            int rows = m - i0 < FV_GEMM_R ? m - i0 : FV_GEMM_R;
            for (int r = 0; r < FV_GEMM_R; r++) {
                int i = i0 + (r < rows ? r : rows - 1);
                a[r] = A + i * sr;
                c_rows[r] = C + i * ldc + j0;
            }
            switch (nv) {
#if FV_GEMM_CV >= 4
            case 4:
                FV_G(outer_tile)(k, a, sk, panel, ldp, 4, mask, c_rows, rows, alpha, beta);
                break;
#endif
#if FV_GEMM_CV >= 3
            case 3:
                FV_G(outer_tile)(k, a, sk, panel, ldp, 3, mask, c_rows, rows, alpha, beta);
                break;
#endif
            case 2:
                FV_G(outer_tile)(k, a, sk, panel, ldp, 2, mask, c_rows, rows, alpha, beta);
                break;
            default:
                FV_G(outer_tile)(k, a, sk, panel, ldp, 1, mask, c_rows, rows, alpha, beta);
            }
        }
    }
    return 1;
}

/* Dot tile: C[i_r, j_c] = sum over kk of A[i_r, kk] * B[j_c, kk] for
 * FV_G_DOT_RA rows of A and FV_G_DOT_RB rows of B, both contiguous along kk:
 * each accumulator holds V strided partial sums, and one reduction tree turns
 * the V accumulators into one vector of results. */
FV_G_TILE void FV_G(dot_tile)(int k, const FV_T *const *a, const FV_T *const *b,
                              FV_T *const *c_rows, int rows, int cols, FV_T alpha, FV_T beta)
{
    FV_G(vec) acc[FV_G_DOT_RA][FV_G_DOT_RB];
    FV_G(vec) x[FV_G_DOT_RA], y[FV_G_DOT_RB];
    for (int r = 0; r < FV_G_DOT_RA; r++)
        for (int c = 0; c < FV_G_DOT_RB; c++)
            acc[r][c] = (FV_G(vec)){0};
    int kk = 0;
    for (; kk + FV_G_V <= k; kk += FV_G_V) {
        for (int r = 0; r < FV_G_DOT_RA; r++)
            x[r] = FV_G(loadu)(a[r] + kk);
        for (int c = 0; c < FV_G_DOT_RB; c++)
            y[c] = FV_G(loadu)(b[c] + kk);
        for (int r = 0; r < FV_G_DOT_RA; r++)
            for (int c = 0; c < FV_G_DOT_RB; c++)
                acc[r][c] += x[r] * y[c];
    }
    if (kk < k) {
        FV_G_MASK mask = FV_G(mask)(k - kk);
        for (int r = 0; r < FV_G_DOT_RA; r++)
            x[r] = (FV_G(vec))FV_G_MASKZ_LOAD(mask, a[r] + kk);
        for (int c = 0; c < FV_G_DOT_RB; c++)
            y[c] = (FV_G(vec))FV_G_MASKZ_LOAD(mask, b[c] + kk);
        for (int r = 0; r < FV_G_DOT_RA; r++)
            for (int c = 0; c < FV_G_DOT_RB; c++)
                acc[r][c] += x[r] * y[c];
    }
    FV_G(vec) sums;
    FV_G_REDUCE(sums, &acc[0][0]);
    FV_G_MASK cmask = FV_G(mask)(cols);
    for (int r = 0; r < rows; r++) {
        FV_G(vec) row = {0};
        __builtin_memcpy(&row, (FV_T *)&sums + r * FV_G_DOT_RB, FV_G_DOT_RB * sizeof(FV_T));
        FV_G(store)(c_rows[r], row, cmask, alpha, beta);
    }
}

/* C (m x n) = alpha * A @ B^T + beta * C with A (m x k) and B (n x k)
 * row-major. B rows go in blocks that stay in L2 while every row group of A
 * passes over them. */
FV_GEMM_TARGET static void FV_G(dot)(int m, int n, int k, FV_T alpha, const FV_T *A,
                                     int64_t lda, const FV_T *B, int64_t ldb, FV_T beta,
                                     FV_T *C, int64_t ldc)
{
    const FV_T *a[FV_G_DOT_RA], *b[FV_G_DOT_RB];
    FV_T *c_rows[FV_G_DOT_RA];
    int64_t block = FV_GEMM_L2_BYTES / ((int64_t)(k > 0 ? k : 1) * sizeof(FV_T));
    block = block < FV_G_DOT_RB ? FV_G_DOT_RB : block - block % FV_G_DOT_RB;
    for (int64_t jb = 0; jb < n; jb += block) {
        int64_t je = jb + block < n ? jb + block : n;
        for (int i0 = 0; i0 < m; i0 += FV_G_DOT_RA) {
            int rows = m - i0 < FV_G_DOT_RA ? m - i0 : FV_G_DOT_RA;
            for (int r = 0; r < FV_G_DOT_RA; r++)
                a[r] = A + (int64_t)(i0 + (r < rows ? r : rows - 1)) * lda;
            for (int64_t j0 = jb; j0 < je; j0 += FV_G_DOT_RB) {
                int cols = je - j0 < FV_G_DOT_RB ? (int)(je - j0) : FV_G_DOT_RB;
                for (int c = 0; c < FV_G_DOT_RB; c++)
                    b[c] = B + (j0 + (c < cols ? c : cols - 1)) * ldb;
                for (int r = 0; r < FV_G_DOT_RA; r++)
                    c_rows[r] = C + (int64_t)(i0 + (r < rows ? r : rows - 1)) * ldc + j0;
                FV_G(dot_tile)(k, a, b, c_rows, rows, cols, alpha, beta);
            }
        }
    }
}

#undef FV_G_TILE
#undef FV_T
#undef FV_G
#undef FV_G_V
#undef FV_G_MASK
#undef FV_G_MASKZ_LOAD
#undef FV_G_MASK_STORE
#undef FV_G_DOT_RA
#undef FV_G_DOT_RB
#undef FV_G_REDUCE
