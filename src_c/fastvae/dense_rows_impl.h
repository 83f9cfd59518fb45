/*
 * Body of dense_rows.h, included once per (floating type, SIMD level) by
 * dispatch_each.h; not a standalone header (no include guard on purpose).
 * Needs FV_T, FV_RD(name) (the name with its type and level suffix), FV_RD_R
 * and the level macros of dispatch_each.h (FV_LEVEL, FV_LEVEL_TARGET).
 *
 * Every output element is y = sum over k = 0, 1, ..., n_in - 1 of
 * x[k] * W[k, j], accumulated in that order in one vector lane by the same
 * instruction (a fused multiply-add where the level has one, a multiply and
 * an add where it has not), then bias and activation: a row's numbers do
 * not depend on which other rows share the call or where it sits in it.
 */

/* The register tile of each level: FV_RD_R rows x FV_RD_C vectors of
 * FV_RD_VBYTES bytes (x86-64-v4: 4 of 64 bytes; x86-64-v3: 2 of 32; the
 * baseline: 2 of 16, SSE2). */
#if FV_LEVEL == FV_ISA_AVX512
#define FV_RD_VBYTES 64
#define FV_RD_C      4
#elif FV_LEVEL == FV_ISA_AVX2
#define FV_RD_VBYTES 32
#define FV_RD_C      2
#else
#define FV_RD_VBYTES 16
#define FV_RD_C      2
#endif

typedef FV_T FV_RD(vec) __attribute__((vector_size(FV_RD_VBYTES)));

/* Elements per vector. */
#define FV_RD_V ((int)(FV_RD_VBYTES / sizeof(FV_T)))

/* acc[r][c] over all k for the FV_RD_R rows x[r] and the nv vectors of
 * columns starting at off[c]; stored to y[r] + off[c]. nv is a constant
 * after inlining (the switch in FV_RD(tiles)), so the accumulators live in
 * registers. Rows may repeat (the same row in two slots computes the same
 * numbers) and vectors may overlap (lanes compute independently). */
FV_LEVEL_TARGET static inline __attribute__((always_inline)) void
FV_RD(tile)(int n_in, const FV_T *const *x, const FV_T *restrict W, int64_t ldw, const int *off,
            int nv, FV_T *const *y)
{
    FV_RD(vec) acc[FV_RD_R][FV_RD_C];
    FV_RD(vec) w[FV_RD_C];
    for (int r = 0; r < FV_RD_R; r++)
        for (int c = 0; c < nv; c++)
            acc[r][c] = (FV_RD(vec)){0};
    for (int k = 0; k < n_in; k++) {
        const FV_T *wk = W + (int64_t)k * ldw;
        for (int c = 0; c < nv; c++)
            __builtin_memcpy(&w[c], wk + off[c], sizeof(FV_RD(vec)));
        for (int r = 0; r < FV_RD_R; r++) {
            const FV_T xk = x[r][k];
            for (int c = 0; c < nv; c++)
                acc[r][c] += xk * w[c];
        }
    }
    for (int r = 0; r < FV_RD_R; r++)
        for (int c = 0; c < nv; c++)
            __builtin_memcpy(y[r] + off[c], &acc[r][c], sizeof(FV_RD(vec)));
}

/* Y[i, :] = X[i, :] @ W (no bias) for rows [r0, r1), n_out >= FV_RD_V.
 * Rows go in blocks of about FV_RD_BLOCK_BYTES of X (kept in L2 while the
 * column tiles pass over them), within a block in groups of FV_RD_R, the
 * last group padded with copies of its last row. Columns go in tiles of
 * FV_RD_C vectors; the last tile has fewer vectors, its last one shifted
 * left to end at n_out. */
FV_LEVEL_TARGET static __attribute__((unused)) void
FV_RD(tiles)(int64_t r0, int64_t r1, int n_in, int n_out, const FV_T *X, int64_t ldx,
             const FV_T *W, FV_T *Y, int64_t ldy)
{
    const int V = FV_RD_V, tw = FV_RD_C * FV_RD_V;
    int64_t block = FV_RD_BLOCK_BYTES / ((int64_t)(n_in > 0 ? n_in : 1) * sizeof(FV_T));
    block = block < FV_RD_R ? FV_RD_R : block - block % FV_RD_R;
    const FV_T *x[FV_RD_R];
    FV_T *y[FV_RD_R];
    int off[FV_RD_C];
    for (int64_t b0 = r0; b0 < r1; b0 += block) {
        int64_t b1 = b0 + block < r1 ? b0 + block : r1;
        for (int j0 = 0; j0 < n_out; j0 += tw) {
            int width = n_out - j0 < tw ? n_out - j0 : tw;
            int nv = (width + V - 1) / V;
            for (int c = 0; c < nv; c++) {
                int o = j0 + c * V;
                off[c] = o + V > n_out ? n_out - V : o;
            }
            for (int64_t i = b0; i < b1; i += FV_RD_R) {
                for (int r = 0; r < FV_RD_R; r++) {
                    int64_t row = i + r < b1 ? i + r : b1 - 1;
                    x[r] = X + row * ldx;
                    y[r] = Y + row * ldy;
                }
                switch (nv) {
#if FV_RD_C >= 4
                case 4:
                    FV_RD(tile)(n_in, x, W, n_out, off, 4, y);
                    break;
#endif
#if FV_RD_C >= 3
                case 3:
                    FV_RD(tile)(n_in, x, W, n_out, off, 3, y);
                    break;
#endif
#if FV_RD_C >= 2
                case 2:
                    FV_RD(tile)(n_in, x, W, n_out, off, 2, y);
                    break;
#endif
                default:
                    FV_RD(tile)(n_in, x, W, n_out, off, 1, y);
                }
            }
        }
    }
}

#undef FV_RD_V
#undef FV_RD_VBYTES
#undef FV_RD_C
