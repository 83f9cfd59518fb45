/*
 * Body of row_hash.h, included once per SIMD level by dispatch_each.h; not a
 * standalone header (no include guard on purpose). Integer arithmetic: every
 * level gives the same key, only the speed differs.
 */

FV_KERNEL uint64_t FV_K(fv_row_key_f32)(const float *x, int n)
{
    uint32_t h[FV_ROW_HASH_LANES], w[FV_ROW_HASH_LANES];
    for (int l = 0; l < FV_ROW_HASH_LANES; l++)
        h[l] = (uint32_t)l;
    int i = 0;
    for (; i + FV_ROW_HASH_LANES <= n; i += FV_ROW_HASH_LANES) {
        for (int l = 0; l < FV_ROW_HASH_LANES; l++) {
            float v = x[i + l] + 0.0f;
            memcpy(&w[l], &v, 4);
        }
        for (int l = 0; l < FV_ROW_HASH_LANES; l++)
            h[l] = (h[l] ^ w[l]) * FV_ROW_HASH_MUL;
    }
    for (int l = 0; i + l < n; l++) {
        float v = x[i + l] + 0.0f;
        uint32_t word;
        memcpy(&word, &v, 4);
        h[l] = (h[l] ^ word) * FV_ROW_HASH_MUL;
    }
    return fv_row_hash_fold(h, n);
}

FV_KERNEL uint64_t FV_K(fv_row_key_f64)(const double *x, int n)
{
    /* element e gives words 2e and 2e + 1: its low then high half */
    uint32_t h[FV_ROW_HASH_LANES], w[FV_ROW_HASH_LANES];
    const int half = FV_ROW_HASH_LANES / 2;
    for (int l = 0; l < FV_ROW_HASH_LANES; l++)
        h[l] = (uint32_t)l;
    int i = 0;
    for (; i + half <= n; i += half) {
        for (int e = 0; e < half; e++) {
            double v = x[i + e] + 0.0;
            uint64_t bits;
            memcpy(&bits, &v, 8);
            w[2 * e] = (uint32_t)bits;
            w[2 * e + 1] = (uint32_t)(bits >> 32);
        }
        for (int l = 0; l < FV_ROW_HASH_LANES; l++)
            h[l] = (h[l] ^ w[l]) * FV_ROW_HASH_MUL;
    }
    for (int e = 0; i + e < n; e++) {
        double v = x[i + e] + 0.0;
        uint64_t bits;
        memcpy(&bits, &v, 8);
        h[2 * e] = (h[2 * e] ^ (uint32_t)bits) * FV_ROW_HASH_MUL;
        h[2 * e + 1] = (h[2 * e + 1] ^ (uint32_t)(bits >> 32)) * FV_ROW_HASH_MUL;
    }
    return fv_row_hash_fold(h, 2 * (int64_t)n);
}
