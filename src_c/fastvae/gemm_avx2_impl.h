/*
 * AVX2 + FMA (x86-64-v3) body of gemm.h, included once per floating type;
 * not a standalone header (no include guard on purpose). Needs FV_T,
 * FV_A(name) (the name with its type suffix), FV_A_V (lanes of a 32-byte
 * vector), FV_A_VEC (its intrinsic type), FV_A_SET1, FV_A_FMA(x, y, acc),
 * FV_A_MUL, FV_A_LOAD (aligned), FV_A_LOADU, FV_A_STOREU, FV_A_MASKLOAD,
 * FV_A_MASKSTORE, FV_A_SFMA (scalar fma) and FV_A_MASKS (a table of V
 * all-ones lanes then V zero lanes, lane-sized integers).
 *
 * One rule makes every result independent of how a product is cut: C[i, j]
 * is acc = 0, then acc = fma(op(A)[i, kk], op(B)[kk, j], acc) for kk = 0..k-1
 * in order, then alpha * acc (skipped for alpha == 1) and fma(beta, C, .)
 * (skipped for beta == 0). Every path below (NN, TN, NT by packed B^T, NT as
 * C^T = B @ A^T) computes exactly that chain, so which path, tile, row group
 * or column panel an element falls into never changes its bits; the paths
 * are picked by speed only.
 *
 * Compiled for x86-64-v3 only; gemm.h calls it after checking fv_isa().
 * The parameters are undefined at the end, ready for the next type.
 */

#define FV_A_TILE FV_GEMM_TARGET_V3 static inline __attribute__((always_inline))
/* Column panel: FV_GEMM_A_CV vectors; rows per tile FV_GEMM_A_R. */
#define FV_A_TW (FV_GEMM_A_CV * FV_A_V)

FV_A_TILE __m256i FV_A(mask)(int lanes)
{
    return _mm256_loadu_si256((const __m256i *)(FV_A_MASKS + FV_A_V - lanes));
}

/* out[0:lanes] = alpha * acc + beta * out; out is not read when beta == 0
 * (it may hold NaN or be uninitialised, as BLAS allows). */
FV_A_TILE void FV_A(store)(FV_T *out, FV_A_VEC acc, int lanes, FV_T alpha, FV_T beta)
{
    if (alpha != 1)
        acc = FV_A_MUL(acc, FV_A_SET1(alpha));
    if (lanes >= FV_A_V) {
        if (beta != 0)
            acc = FV_A_FMA(FV_A_SET1(beta), FV_A_LOADU(out), acc);
        FV_A_STOREU(out, acc);
    } else {
        __m256i m = FV_A(mask)(lanes);
        if (beta != 0)
            acc = FV_A_FMA(FV_A_SET1(beta), FV_A_MASKLOAD(out, m), acc);
        FV_A_MASKSTORE(out, m, acc);
    }
}

/* The same epilogue on one number: the same two roundings as a lane of
 * store (a product, then a fused multiply-add). */
FV_A_TILE void FV_A(store1)(FV_T *out, FV_T acc, FV_T alpha, FV_T beta)
{
    if (alpha != 1)
        acc = acc * alpha;
    if (beta != 0)
        acc = FV_A_SFMA(beta, *out, acc);
    *out = acc;
}

/* Register tile: acc[r][c] = the chain over kk of a[r][kk * sk] times the
 * panel P[kk * ldp + c * V ...] (packed: ldp = TW), nv vectors (a constant after
 * inlining, so acc stays in 12 of the 16 ymm registers). Stored to
 * c_rows[r] + c * V, or, when `transposed` (C^T = B @ A^T: tile rows are
 * columns of C), to c0[(c * V + q) * ldc + r]. */
FV_A_TILE void FV_A(tile)(int k, const FV_T *const *a, int64_t sk, const FV_T *restrict P,
                          int64_t ldp, int nv, int width, int transposed, FV_T *const *c_rows,
                          FV_T *c0, int64_t ldc, int rows, FV_T alpha, FV_T beta)
{
    FV_A_VEC acc[FV_GEMM_A_R][FV_GEMM_A_CV];
    for (int r = 0; r < FV_GEMM_A_R; r++)
        for (int c = 0; c < nv; c++)
            acc[r][c] = FV_A_SET1(0);
    const FV_T *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    int64_t off = 0;
    for (int kk = 0; kk < k; kk++, off += sk) {
        FV_A_VEC b[FV_GEMM_A_CV];
        for (int c = 0; c < nv; c++)
            b[c] = FV_A_LOADU(P + (int64_t)kk * ldp + c * FV_A_V);
        FV_A_VEC x;
#define FV_A_ROW(r, ar)                                                                        \
    x = FV_A_SET1(ar[off]);                                                                    \
    for (int c = 0; c < nv; c++)                                                               \
        acc[r][c] = FV_A_FMA(x, b[c], acc[r][c]);
        FV_A_ROW(0, a0)
        FV_A_ROW(1, a1)
        FV_A_ROW(2, a2)
        FV_A_ROW(3, a3)
        FV_A_ROW(4, a4)
        FV_A_ROW(5, a5)
#undef FV_A_ROW
    }
    if (!transposed) {
        for (int r = 0; r < FV_GEMM_A_R; r++)
            if (r < rows)
                for (int c = 0; c < nv; c++)
                    FV_A(store)(c_rows[r] + c * FV_A_V, acc[r][c], width - c * FV_A_V, alpha,
                                beta);
        return;
    }
    FV_T t[FV_GEMM_A_R][FV_A_TW] __attribute__((aligned(32)));
    for (int r = 0; r < FV_GEMM_A_R; r++)
        for (int c = 0; c < nv; c++)
            FV_A_STOREU(&t[r][c * FV_A_V], acc[r][c]);
    for (int q = 0; q < width; q++)
        for (int r = 0; r < rows; r++)
            FV_A(store1)(c0 + (int64_t)q * ldc + r, t[r][q], alpha, beta);
}

/* The panel op(P)[0:k, 0:width] to buf, row stride TW, zero-padded to TW
 * columns (so the tile loads whole aligned vectors). trans: op(P)[kk, j] is
 * P[j * ldp + kk]. Packing moves numbers, never changes them. */
FV_GEMM_TARGET_V3 static void FV_A(pack)(int trans, int k, const FV_T *P, int64_t ldp,
                                         int width, FV_T *restrict buf)
{
    if (!trans) {
        /* Whole vectors by hand: written as a loop, the copy of a full row
         * became a memmove call per 64 bytes (4-5% of a 784-400/20/128
         * step in perf). */
        for (int kk = 0; kk < k; kk++) {
            const FV_T *src = P + (int64_t)kk * ldp;
            FV_T *dst = buf + (int64_t)kk * FV_A_TW;
            for (int c = 0; c < FV_GEMM_A_CV; c++) {
                int lanes = width - c * FV_A_V;
                if (lanes >= FV_A_V)
                    FV_A_STOREU(dst + c * FV_A_V, FV_A_LOADU(src + c * FV_A_V));
                else if (lanes > 0)
                    FV_A_STOREU(dst + c * FV_A_V,
                                FV_A_MASKLOAD(src + c * FV_A_V, FV_A(mask)(lanes)));
                else
                    FV_A_STOREU(dst + c * FV_A_V, FV_A_SET1(0));
            }
        }
        return;
    }
    /* Blocks of 16 kk so the reads run along rows of P and the writes stay
     * in a few lines. */
    for (int k0 = 0; k0 < k; k0 += 16) {
        int k1 = k0 + 16 < k ? k0 + 16 : k;
        for (int j = 0; j < FV_A_TW; j++) {
            if (j < width) {
                const FV_T *src = P + (int64_t)j * ldp;
                for (int kk = k0; kk < k1; kk++)
                    buf[(int64_t)kk * FV_A_TW + j] = src[kk];
            } else {
                for (int kk = k0; kk < k1; kk++)
                    buf[(int64_t)kk * FV_A_TW + j] = 0;
            }
        }
    }
}

/* Columns i0 .. i0 + R - 1 of A (A^T's rows; the last group padded with
 * copies of its last column, as the row pointers do) to buf, R numbers per
 * kk: one sequential stream instead of R numbers from each of k rows. */
FV_GEMM_TARGET_V3 static void FV_A(pack_at)(int m, int k, const FV_T *A, int64_t lda,
                                            FV_T *restrict buf)
{
    /* Blocks of 8 rows of A: read along rows while they stay in L1, rather
     * than 6 numbers from each of k rows again per group (the conflicts
     * the packing is there to avoid). */
    for (int k0 = 0; k0 < k; k0 += 8) {
        int k1 = k0 + 8 < k ? k0 + 8 : k;
        for (int i0 = 0; i0 < m; i0 += FV_GEMM_A_R) {
            int rows = m - i0 < FV_GEMM_A_R ? m - i0 : FV_GEMM_A_R;
            FV_T *dst = buf + (int64_t)i0 * k;
            for (int kk = k0; kk < k1; kk++) {
                const FV_T *src = A + (int64_t)kk * lda + i0;
                for (int r = 0; r < FV_GEMM_A_R; r++)
                    dst[(int64_t)kk * FV_GEMM_A_R + r] = src[r < rows ? r : rows - 1];
            }
        }
    }
}

/* C (m x n) = alpha * op(A) @ op(B) + beta * C, row-major (see gemm.h).
 * Column panels of TW are packed, then groups of FV_GEMM_A_R rows (the last
 * padded with copies of its last row, not stored) pass over each panel.
 * A @ B^T runs as C^T = B @ A^T when A has few rows or a long sum (few
 * panels of A^T to pack against many of B^T), otherwise on packed B^T.
 * Returns 0, having done nothing, when the panel buffer cannot be had. */
FV_GEMM_TARGET_V3 static int FV_A(gemm)(int trans_a, int trans_b, int m, int n, int k,
                                        FV_T alpha, const FV_T *A, int64_t lda, const FV_T *B,
                                        int64_t ldb, FV_T beta, FV_T *C, int64_t ldc)
{
    const int swap = trans_b && (m <= FV_GEMM_A_SWAP_ROWS || k > 2 * m);
    /* Q: the operand broadcast by rows; P: the one packed into panels. */
    const int q_n = swap ? n : m, p_n = swap ? m : n;
    const FV_T *Q = swap ? B : A, *P = swap ? A : B;
    const int64_t ldq = swap ? ldb : lda, ldp = swap ? lda : ldb;
    const int64_t sr = (!swap && trans_a) ? 1 : ldq, sk = (!swap && trans_a) ? ldq : 1;
    const int ptrans = swap ? 1 : trans_b;
    /* A^T @ B reads R numbers from each of k rows of A per row group; rows
     * a multiple of 1 kB apart share few cache sets and evict each other,
     * so there A is packed first, and also where the copy is spread over
     * enough columns. Measured, one thread, CPU time, GFLOP/s unpacked /
     * packed: 1024x1024x512 61 / 89, 1024x64x512 65 / 75, 784x400x128
     * 85 / 91, but 784x64x128 (the step's weight-gradient block) 88 / 76. */
    const int64_t groups = (q_n + FV_GEMM_A_R - 1) / FV_GEMM_A_R;
    const int pack_a =
        !swap && trans_a && m > FV_GEMM_A_R &&
        ((lda * sizeof(FV_T)) % 1024 == 0 ? n > FV_A_V : n > FV_GEMM_A_PACK_MIN_N) &&
        groups * FV_GEMM_A_R * (int64_t)k * sizeof(FV_T) <= FV_GEMM_A_PACK_BYTES;
    const int64_t kk1 = k > 0 ? k : 1;
    const int64_t panels = (p_n + FV_A_TW - 1) / FV_A_TW;
    /* Rows of C per chunk: their rows of op(A) (chunk x k) stay in L2 while
     * every panel of B passes; with more than one chunk all panels of B are
     * packed once up front (else each panel is packed once, just before its
     * use). Without chunks a product whose A outgrows L2 streams all of A
     * from L3 once per panel (one thread, CPU time: 512x1024x1024 NN 84-85
     * GFLOP/s unchunked, 85-89 chunked; no shape measured got slower). */
    int64_t chunk = FV_GEMM_A_L2_BYTES / (kk1 * (int64_t)sizeof(FV_T));
    chunk = chunk < FV_GEMM_A_R ? FV_GEMM_A_R : chunk - chunk % FV_GEMM_A_R;
    const int pack_all = chunk < q_n && panels > 1 &&
                         panels * kk1 * FV_A_TW * (int64_t)sizeof(FV_T) <= FV_GEMM_A_PACK_BYTES;
    if (!pack_all)
        chunk = q_n > 0 ? q_n : 1;
    const size_t panel_len = (size_t)kk1 * FV_A_TW * (pack_all ? panels : 1);
    FV_T *buf = (FV_T *)fv_gemm_scratch(
        (panel_len + (pack_a ? (size_t)groups * FV_GEMM_A_R * k : 0)) * sizeof(FV_T));
    if (!buf)
        return 0;
    FV_T *abuf = buf + panel_len;
    if (pack_a)
        FV_A(pack_at)(m, k, A, ldq, abuf);
    if (pack_all)
        for (int64_t p = 0; p < panels; p++) {
            int64_t j0 = p * FV_A_TW;
            int width = p_n - j0 < FV_A_TW ? (int)(p_n - j0) : FV_A_TW;
            FV_A(pack)(ptrans, k, ptrans ? P + j0 * ldp : P + j0, ldp, width,
                       buf + p * kk1 * FV_A_TW);
        }
    const int64_t ska = pack_a ? FV_GEMM_A_R : sk;
    const FV_T *a[FV_GEMM_A_R];
    FV_T *c_rows[FV_GEMM_A_R];
    for (int64_t ic = 0; ic < q_n; ic += chunk) {
        const int ie = q_n - ic < chunk ? q_n : (int)(ic + chunk);
        for (int j0 = 0; j0 < p_n; j0 += FV_A_TW) {
            int width = p_n - j0 < FV_A_TW ? p_n - j0 : FV_A_TW;
            int nv = (width + FV_A_V - 1) / FV_A_V;
            /* A few row groups, or a short sum, read a whole panel of B
             * straight from B: the copy would cost about as much as the work
             * (16x400x784). */
            const int direct = !ptrans && width == FV_A_TW &&
                               (groups <= FV_GEMM_A_DIRECT_GROUPS || k <= FV_GEMM_A_DIRECT_K);
            const FV_T *panel = direct     ? P + j0
                                : pack_all ? buf + (int64_t)(j0 / FV_A_TW) * kk1 * FV_A_TW
                                           : buf;
            const int64_t ldpanel = direct ? ldp : FV_A_TW;
            if (!direct && !pack_all)
                FV_A(pack)(ptrans, k, ptrans ? P + (int64_t)j0 * ldp : P + j0, ldp, width, buf);
            for (int i0 = (int)ic; i0 < ie; i0 += FV_GEMM_A_R) {
                int rows = q_n - i0 < FV_GEMM_A_R ? q_n - i0 : FV_GEMM_A_R;
                for (int r = 0; r < FV_GEMM_A_R; r++) {
                    int64_t i = i0 + (r < rows ? r : rows - 1);
                    a[r] = pack_a ? abuf + (int64_t)i0 * k + r : Q + i * sr;
                    c_rows[r] = C + i * ldc + j0;
                }
                FV_T *c0 = C + (int64_t)j0 * ldc + i0;
#define FV_A_CALL(NV, TR)                                                                      \
    FV_A(tile)(k, a, ska, panel, ldpanel, NV, width, TR, c_rows, c0, ldc, rows, alpha, beta)
                if (swap) {
                    if (nv == 2)
                        FV_A_CALL(2, 1);
                    else
                        FV_A_CALL(1, 1);
                } else {
                    if (nv == 2)
                        FV_A_CALL(2, 0);
                    else
                        FV_A_CALL(1, 0);
                }
#undef FV_A_CALL
            }
        }
    }
    return 1;
}

#undef FV_A_TILE
#undef FV_A_TW
#undef FV_T
#undef FV_A
#undef FV_A_V
#undef FV_A_VEC
#undef FV_A_SET1
#undef FV_A_FMA
#undef FV_A_MUL
#undef FV_A_LOAD
#undef FV_A_LOADU
#undef FV_A_STOREU
#undef FV_A_MASKLOAD
#undef FV_A_MASKSTORE
#undef FV_A_SFMA
#undef FV_A_MASKS
