/*
 * Body of sparse_rows.h, included once per (floating type, SIMD level) by
 * dispatch_each.h; not a standalone header (no include guard on purpose).
 * Needs FV_T, FV_SR(name) and the level macros of dispatch_each.h.
 */

/* Bytes per vector and vectors per block of outputs: eight independent
 * accumulators per block hide the add latency (x86-64-v4: 8 x 16 float32,
 * x86-64-v3: 8 x 8, the baseline: 8 x 4). */
#if FV_LEVEL == FV_ISA_AVX512
#define FV_SR_VBYTES 64
#elif FV_LEVEL == FV_ISA_AVX2
#define FV_SR_VBYTES 32
#else
#define FV_SR_VBYTES 16
#endif
#define FV_SR_C 8

typedef FV_T FV_SR(vec) __attribute__((vector_size(FV_SR_VBYTES)));

#define FV_SR_V ((int)(FV_SR_VBYTES / sizeof(FV_T)))

/* Outputs [h0, h0 + nv * FV_SR_V) of the row; nv a constant after
 * inlining, so the accumulators live in registers. */
FV_LEVEL_TARGET static inline __attribute__((always_inline)) void
FV_SR(block)(const FV_T *restrict vals, const int32_t *restrict idx, int64_t nk,
             const FV_T *restrict cond, int n_cond, int n_in, const FV_T *restrict W, int H,
             int accumulate, FV_T *restrict out, int h0, int nv)
{
    FV_SR(vec) acc[FV_SR_C], w;
    for (int c = 0; c < nv; c++) {
        if (accumulate)
            __builtin_memcpy(&acc[c], out + h0 + c * FV_SR_V, sizeof(FV_SR(vec)));
        else
            acc[c] = (FV_SR(vec)){0};
    }
    for (int64_t k = 0; k < nk; k++) {
        const FV_T *wk = W + (int64_t)idx[k] * H + h0;
        FV_T v = vals[k];
        for (int c = 0; c < nv; c++) {
            __builtin_memcpy(&w, wk + c * FV_SR_V, sizeof(FV_SR(vec)));
            acc[c] += v * w;
        }
    }
    for (int q = 0; q < n_cond; q++) {
        const FV_T *wq = W + (int64_t)(n_in + q) * H + h0;
        FV_T v = cond[q];
        for (int c = 0; c < nv; c++) {
            __builtin_memcpy(&w, wq + c * FV_SR_V, sizeof(FV_SR(vec)));
            acc[c] += v * w;
        }
    }
    for (int c = 0; c < nv; c++)
        __builtin_memcpy(out + h0 + c * FV_SR_V, &acc[c], sizeof(FV_SR(vec)));
}

FV_KERNEL void FV_SR(row)(const FV_T *restrict vals, const int32_t *restrict idx, int64_t nk,
                          const FV_T *restrict cond, int n_cond, int n_in,
                          const FV_T *restrict W, int H, int accumulate, FV_T *restrict out)
{
    int h0 = 0;
    for (; h0 + FV_SR_C * FV_SR_V <= H; h0 += FV_SR_C * FV_SR_V)
        FV_SR(block)(vals, idx, nk, cond, n_cond, n_in, W, H, accumulate, out, h0, FV_SR_C);
    for (; h0 + FV_SR_V <= H; h0 += FV_SR_V)
        FV_SR(block)(vals, idx, nk, cond, n_cond, n_in, W, H, accumulate, out, h0, 1);
    /* fewer outputs than one vector: one at a time, the same order */
    for (; h0 < H; h0++) {
        FV_T acc = accumulate ? out[h0] : (FV_T)0;
        for (int64_t k = 0; k < nk; k++)
            acc += vals[k] * W[(int64_t)idx[k] * H + h0];
        for (int q = 0; q < n_cond; q++)
            acc += cond[q] * W[(int64_t)(n_in + q) * H + h0];
        out[h0] = acc;
    }
}

#undef FV_SR_V
#undef FV_SR_C
#undef FV_SR_VBYTES
