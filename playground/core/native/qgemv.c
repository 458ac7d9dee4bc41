/* Weight-only quantized matrix products with float32 activations, for CPU decoding.
 *
 * y[M][N] = x[M][K] . W[N][K]^T where W is stored as
 *   q4: 4-bit codes, two per byte, and per group of G inputs an fp16 scale d and fp16
 *       offset m: w = d*q + m (GGUF Q4_1's formula; Q4_0 is m = -8d). Within each run
 *       of 32 inputs, byte j holds element j (low nibble) and element j+16 (high), as
 *       in GGUF blocks, so a GGUF file's blocks are copied in, not re-rounded.
 *   q8: int8 codes and an fp16 scale per group of G inputs: w = d*q (GGUF Q8_0 with
 *       G = 32; one scale per output channel with G = K).
 * The weights are exactly the stored ones and the activations stay float32, so the
 * only difference from a float32 model holding the same (de-quantized) weights is
 * the order of the float additions.
 *
 * Rows of W are split across OpenMP threads (the process's libgomp: torch's own, so
 * torch.set_num_threads governs both). Rows of x are taken four at a time, so each
 * block of weights is decoded once per four rows in prefill.
 *
 * These row-layout kernels serve float32 activations and matrices whose rows are not
 * whole blocks of 8; with int16 activations the rest run in qblocks.c's layout.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define QGEMV_AVX2 1
#else
#define QGEMV_AVX2 0
#endif

#define MT 4

static inline float half_to_float(uint16_t h) {
#if QGEMV_AVX2
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) { bits = sign; }
        else { exp = 127 - 15 + 1; while (!(man & 0x400)) { man <<= 1; exp--; }
               bits = sign | (exp << 23) | ((man & 0x3ff) << 13); }
    } else if (exp == 31) { bits = sign | 0x7f800000 | (man << 13); }
    else { bits = sign | ((exp + 127 - 15) << 23) | (man << 13); }
    float f; memcpy(&f, &bits, 4); return f;
#endif
}

int qgemv_has_avx2(void) { return QGEMV_AVX2; }

#if QGEMV_AVX2
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* one row n of W against rows r0..r0+mt-1 of x */
static void q4_row(const float *x, const float *xsum, const uint8_t *qs, const uint16_t *d,
                   const uint16_t *m, float *y, int64_t n, int64_t r0, int mt, int64_t N,
                   int64_t K, int64_t G) {
    const int64_t groups = K / G, runs = G / 32;
    const uint8_t *row = qs + n * (K / 2);
    const uint16_t *dn = d + n * groups, *mn = m + n * groups;
#if QGEMV_AVX2
    __m256 acc[MT];
    for (int r = 0; r < mt; r++) acc[r] = _mm256_setzero_ps();
    float offset[MT] = {0, 0, 0, 0};
    const __m128i low4 = _mm_set1_epi8(0x0f);
    for (int64_t g = 0; g < groups; g++) {
        __m256 part[MT];
        for (int r = 0; r < mt; r++) part[r] = _mm256_setzero_ps();
        for (int64_t u = 0; u < runs; u++) {
            const int64_t k0 = (g * runs + u) * 32;
            __m128i raw = _mm_loadu_si128((const __m128i *)(row + k0 / 2));
            __m128i lo = _mm_and_si128(raw, low4);
            __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
            __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
            __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
            __m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
            __m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
            for (int r = 0; r < mt; r++) {
                const float *xr = x + (r0 + r) * K + k0;
                __m256 p = _mm256_mul_ps(w0, _mm256_loadu_ps(xr));
                p = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), p);
                p = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), p);
                p = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), p);
                part[r] = _mm256_add_ps(part[r], p);
            }
        }
        const float dg = half_to_float(dn[g]), mg = half_to_float(mn[g]);
        const __m256 dv = _mm256_set1_ps(dg);
        for (int r = 0; r < mt; r++) {
            acc[r] = _mm256_fmadd_ps(dv, part[r], acc[r]);
            offset[r] += mg * xsum[(r0 + r) * groups + g];
        }
    }
    for (int r = 0; r < mt; r++) y[(r0 + r) * N + n] = hsum(acc[r]) + offset[r];
#else
    for (int r = 0; r < mt; r++) {
        const float *xr = x + (r0 + r) * K;
        float total = 0;
        for (int64_t g = 0; g < groups; g++) {
            float dot = 0;
            for (int64_t u = 0; u < runs; u++) {
                const int64_t k0 = (g * runs + u) * 32;
                for (int j = 0; j < 16; j++) {
                    uint8_t b = row[k0 / 2 + j];
                    dot += (float)(b & 0x0f) * xr[k0 + j] + (float)(b >> 4) * xr[k0 + 16 + j];
                }
            }
            total += half_to_float(dn[g]) * dot + half_to_float(mn[g]) * xsum[(r0 + r) * groups + g];
        }
        y[(r0 + r) * N + n] = total;
    }
#endif
}

static void q8_row(const float *x, const int8_t *qs, const uint16_t *d, float *y, int64_t n,
                   int64_t r0, int mt, int64_t N, int64_t K, int64_t G) {
    const int64_t groups = K / G, runs = G / 32;
    const int8_t *row = qs + n * K;
    const uint16_t *dn = d + n * groups;
#if QGEMV_AVX2
    __m256 acc[MT];
    for (int r = 0; r < mt; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < groups; g++) {
        __m256 part[MT];
        for (int r = 0; r < mt; r++) part[r] = _mm256_setzero_ps();
        for (int64_t u = 0; u < runs; u++) {
            const int64_t k0 = (g * runs + u) * 32;
            __m256i raw = _mm256_loadu_si256((const __m256i *)(row + k0));
            __m128i a = _mm256_castsi256_si128(raw), b = _mm256_extracti128_si256(raw, 1);
            __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a));
            __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)));
            __m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
            __m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
            for (int r = 0; r < mt; r++) {
                const float *xr = x + (r0 + r) * K + k0;
                __m256 p = _mm256_mul_ps(w0, _mm256_loadu_ps(xr));
                p = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), p);
                p = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), p);
                p = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), p);
                part[r] = _mm256_add_ps(part[r], p);
            }
        }
        const __m256 dv = _mm256_set1_ps(half_to_float(dn[g]));
        for (int r = 0; r < mt; r++) acc[r] = _mm256_fmadd_ps(dv, part[r], acc[r]);
    }
    for (int r = 0; r < mt; r++) y[(r0 + r) * N + n] = hsum(acc[r]);
#else
    for (int r = 0; r < mt; r++) {
        const float *xr = x + (r0 + r) * K;
        float total = 0;
        for (int64_t g = 0; g < groups; g++) {
            float dot = 0;
            for (int64_t k = g * G; k < (g + 1) * G; k++) dot += (float)row[k] * xr[k];
            total += half_to_float(dn[g]) * dot;
        }
        y[(r0 + r) * N + n] = total;
    }
#endif
}

#if QGEMV_AVX2
/* The decode case (one row of x), kept in registers. Four independent accumulators
 * (one per 8-lane slice of a 32-run), so no FMA waits on the one before it: with one
 * chained accumulator this ran at the FMA latency, 3x slower. */
#define RUN4(W0, W1, W2, W3, XR)                                             \
    do {                                                                     \
        p0 = _mm256_fmadd_ps(W0, _mm256_loadu_ps(XR), p0);                   \
        p1 = _mm256_fmadd_ps(W1, _mm256_loadu_ps((XR) + 8), p1);             \
        p2 = _mm256_fmadd_ps(W2, _mm256_loadu_ps((XR) + 16), p2);            \
        p3 = _mm256_fmadd_ps(W3, _mm256_loadu_ps((XR) + 24), p3);            \
    } while (0)
#define SCALE4(DV)                                                           \
    do {                                                                     \
        a0 = _mm256_fmadd_ps(DV, p0, a0); a1 = _mm256_fmadd_ps(DV, p1, a1);  \
        a2 = _mm256_fmadd_ps(DV, p2, a2); a3 = _mm256_fmadd_ps(DV, p3, a3);  \
    } while (0)

static void q4_row1(const float *x, const float *xsum, const uint8_t *qs, const uint16_t *d,
                    const uint16_t *m, float *y, int64_t n, int64_t K, int64_t G) {
    const int64_t groups = K / G, runs = G / 32;
    const uint8_t *row = qs + n * (K / 2);
    const uint16_t *dn = d + n * groups, *mn = m + n * groups;
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float offset = 0;
    for (int64_t g = 0; g < groups; g++) {
        __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0;
        for (int64_t u = 0; u < runs; u++) {
            const int64_t k0 = (g * runs + u) * 32;
            const __m128i raw = _mm_loadu_si128((const __m128i *)(row + k0 / 2));
            const __m128i lo = _mm_and_si128(raw, low4);
            const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), low4);
            RUN4(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)),
                 _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))),
                 _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)),
                 _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), x + k0);
        }
        const __m256 dv = _mm256_set1_ps(_cvtsh_ss(dn[g]));
        SCALE4(dv);
        offset += _cvtsh_ss(mn[g]) * xsum[g];
    }
    y[n] = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + offset;
}

static void q8_row1(const float *x, const int8_t *qs, const uint16_t *d, float *y, int64_t n,
                    int64_t K, int64_t G) {
    const int64_t groups = K / G, runs = G / 32;
    const int8_t *row = qs + n * K;
    const uint16_t *dn = d + n * groups;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t g = 0; g < groups; g++) {
        __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0;
        for (int64_t u = 0; u < runs; u++) {
            const int64_t k0 = (g * runs + u) * 32;
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(row + k0));
            const __m128i a = _mm256_castsi256_si128(raw), b = _mm256_extracti128_si256(raw, 1);
            RUN4(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a)),
                 _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8))),
                 _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)),
                 _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8))), x + k0);
        }
        const __m256 dv = _mm256_set1_ps(_cvtsh_ss(dn[g]));
        SCALE4(dv);
    }
    y[n] = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}
#endif

#if QGEMV_AVX2
/* The fast path: x is quantized to int16 per run of 32 (one float scale each: a
 * relative error below 2^-16 of the run's largest value, finer than bfloat16), and
 * each run's dot product is done in integers (madd: i16 x i16 -> i32 pairs), then
 * scaled once. About a third of the instructions of turning every weight into a
 * float, and, unlike llama.cpp's int8 activations, no visible change to the output
 * (measured: KL to float32 activations 0.0000 where int8 gave 0.015 on the default
 * model). Overflow: |q4| <= 15, |q8| <= 127, |x| <= 32767: a pair sums to < 2^24. */
static void quantize_runs(const float *x, int16_t *xq, float *xd, int64_t K) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < K / 32; b++) {
        const float *xr = x + b * 32;
        __m256 mx = _mm256_setzero_ps(), nan = mx;
        for (int j = 0; j < 32; j += 8) {
            const __m256 v = _mm256_loadu_ps(xr + j);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v));
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        /* max drops a NaN and the conversion saturates: a NaN input would come out as a
         * finite product. The run's scale carries it instead (an infinity gives d = inf
         * with codes 0, so NaN too), so a broken activation is never hidden. */
        const float amax = _mm256_movemask_ps(nan) ? NAN : _mm_cvtss_f32(m4);
        const float d = amax / 32767.0f, inv = d > 0 && d <= 3.4e38f ? 1.0f / d : 0.0f;
        xd[b] = d;
        const __m256 iv = _mm256_set1_ps(inv);
        for (int j = 0; j < 32; j += 16) {
            __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xr + j), iv));
            __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xr + j + 8), iv));
            /* packs works per 128-bit lane: put the 16 values back in order */
            __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xd8);
            _mm256_storeu_si256((__m256i *)(xq + b * 32 + j), w);
        }
    }
}

/* the integer dot product of one 32-run of int4 codes (as 16-bit) with x */
#define Q4_CODES(ROW, B, WLO, WHI)                                                     \
    const __m128i raw_ = _mm_loadu_si128((const __m128i *)((ROW) + (B) * 16));        \
    const __m256i WLO = _mm256_cvtepu8_epi16(_mm_and_si128(raw_, low4));              \
    const __m256i WHI = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw_, 4), low4))
#define DOT16(WLO, WHI, XP)                                                            \
    _mm256_cvtepi32_ps(_mm256_add_epi32(                                               \
        _mm256_madd_epi16(WLO, _mm256_loadu_si256((const __m256i *)(XP))),             \
        _mm256_madd_epi16(WHI, _mm256_loadu_si256((const __m256i *)((XP) + 16)))))

static void q4_row1_int(const int16_t *xq, const float *xd, const float *xsum, const uint8_t *qs,
                        const uint16_t *d, const uint16_t *m, float *y, int64_t n, int64_t K,
                        int64_t G) {
    const int64_t groups = K / G, runs = G / 32;
    const uint8_t *row = qs + n * (K / 2);
    const uint16_t *dn = d + n * groups, *mn = m + n * groups;
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    float offset = 0;
    for (int64_t g = 0; g < groups; g++) {
        offset += _cvtsh_ss(mn[g]) * xsum[g];
        const float dg = _cvtsh_ss(dn[g]);
        for (int64_t b = g * runs; b < (g + 1) * runs; b++) {
            Q4_CODES(row, b, wlo, whi);
            const __m256 dot = DOT16(wlo, whi, xq + b * 32);
            const __m256 scale = _mm256_set1_ps(dg * xd[b]);
            if (b & 1) a1 = _mm256_fmadd_ps(scale, dot, a1);
            else a0 = _mm256_fmadd_ps(scale, dot, a0);
        }
    }
    y[n] = hsum(_mm256_add_ps(a0, a1)) + offset;
}

static void q8_row1_int(const int16_t *xq, const float *xd, const int8_t *qs, const uint16_t *d,
                        float *y, int64_t n, int64_t K, int64_t G) {
    const int64_t runs = G / 32;
    const int8_t *row = qs + n * K;
    const uint16_t *dn = d + n * (K / G);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t g = 0; g < K / G; g++) {
        const float dg = _cvtsh_ss(dn[g]);
        for (int64_t b = g * runs; b < (g + 1) * runs; b++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(row + b * 32));
            const __m256i wlo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w));
            const __m256i whi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1));
            const __m256 dot = DOT16(wlo, whi, xq + b * 32);
            const __m256 scale = _mm256_set1_ps(dg * xd[b]);
            if (b & 1) a1 = _mm256_fmadd_ps(scale, dot, a1);
            else a0 = _mm256_fmadd_ps(scale, dot, a0);
        }
    }
    y[n] = hsum(_mm256_add_ps(a0, a1));
}

/* Four rows of x against one row of W: the weights are decoded once for the four. Each
 * row keeps q4_row1_int's two accumulators (even and odd runs) and its order of
 * additions, so a row's result is bit for bit the same alone or in a tile: a request's
 * greedy reply must not depend on what else is in the batch (serve --batching on). */
/* T rows of x (T = 2 or 4, a constant after inlining, so the accumulators stay in
 * registers) against one row of W: the weights are decoded once for the T rows. Each
 * row keeps the row1 kernel's two accumulators (even runs, odd runs) and its order of
 * additions, so a row's result is bit for bit the same alone or in a tile: a request's
 * greedy reply must not depend on what else is in the batch (serve --batching on). */
#define TILE_RUN(ACC, WLO, WHI, D, B)                                                     \
    for (int t = 0; t < T; t++)                                                          \
        ACC[t] = _mm256_fmadd_ps(_mm256_set1_ps((D) * xd[t * nb + (B)]),                 \
                                 DOT16(WLO, WHI, xq + t * K + (B) * 32), ACC[t])

static inline __attribute__((always_inline)) void
q4_tile_int(const int16_t *xq, const float *xd, const float *xsum, const uint8_t *qs,
            const uint16_t *d, const uint16_t *m, float *y, int64_t n, int64_t N, int64_t K,
            int64_t G, const int T) {
    const int64_t groups = K / G, runs = G / 32, nb = K / 32;
    const uint8_t *row = qs + n * (K / 2);
    const uint16_t *dn = d + n * groups, *mn = m + n * groups;
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m256 even[4], odd[4];
    float off[4];
    for (int t = 0; t < T; t++) { even[t] = odd[t] = _mm256_setzero_ps(); off[t] = 0; }
    for (int64_t g = 0; g < groups; g++) {
        const float mg = _cvtsh_ss(mn[g]);
        for (int t = 0; t < T; t++) off[t] += mg * xsum[t * groups + g];
    }
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        Q4_CODES(row, b, w0lo, w0hi);
        const __m128i raw1 = _mm_loadu_si128((const __m128i *)(row + (b + 1) * 16));
        const __m256i w1lo = _mm256_cvtepu8_epi16(_mm_and_si128(raw1, low4));
        const __m256i w1hi = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw1, 4), low4));
        const float d0 = _cvtsh_ss(dn[b / runs]), d1 = _cvtsh_ss(dn[(b + 1) / runs]);
        TILE_RUN(even, w0lo, w0hi, d0, b);
        TILE_RUN(odd, w1lo, w1hi, d1, b + 1);
    }
    if (b < nb) {
        Q4_CODES(row, b, wlo, whi);
        const float d0 = _cvtsh_ss(dn[b / runs]);
        TILE_RUN(even, wlo, whi, d0, b);
    }
    for (int t = 0; t < T; t++) y[t * N + n] = hsum(_mm256_add_ps(even[t], odd[t])) + off[t];
}

static inline __attribute__((always_inline)) void
q8_tile_int(const int16_t *xq, const float *xd, const int8_t *qs, const uint16_t *d, float *y,
            int64_t n, int64_t N, int64_t K, int64_t G, const int T) {
    const int64_t runs = G / 32, nb = K / 32;
    const int8_t *row = qs + n * K;
    const uint16_t *dn = d + n * (K / G);
    __m256 even[4], odd[4];
    for (int t = 0; t < T; t++) even[t] = odd[t] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(row + b * 32));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(row + b * 32 + 32));
        const __m256i w0lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w0));
        const __m256i w0hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w0, 1));
        const __m256i w1lo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w1));
        const __m256i w1hi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w1, 1));
        const float d0 = _cvtsh_ss(dn[b / runs]), d1 = _cvtsh_ss(dn[(b + 1) / runs]);
        TILE_RUN(even, w0lo, w0hi, d0, b);
        TILE_RUN(odd, w1lo, w1hi, d1, b + 1);
    }
    if (b < nb) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(row + b * 32));
        const __m256i wlo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w));
        const __m256i whi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(w, 1));
        const float d0 = _cvtsh_ss(dn[b / runs]);
        TILE_RUN(even, wlo, whi, d0, b);
    }
    for (int t = 0; t < T; t++) y[t * N + n] = hsum(_mm256_add_ps(even[t], odd[t]));
}
#endif

/* Sums of x over each group (the offset m multiplies them), [M][K/G]. */
static void group_sums(const float *x, float *xsum, int64_t M, int64_t K, int64_t G) {
    for (int64_t r = 0; r < M; r++)
        for (int64_t g = 0; g < K / G; g++) {
            float s = 0;
            for (int64_t k = g * G; k < (g + 1) * G; k++) s += x[r * K + k];
            xsum[r * (K / G) + g] = s;
        }
}

/* scratch: caller-provided, at least M*(K/G + K/32 + K/2) floats. int_act: every row of x
 * is quantized to int16 per run of 32 and dotted in integers (see quantize_runs), in
 * decode, prefill and quality scoring alike; else float32 activations (exact weights). */
void q4_matmul(const float *x, const uint8_t *qs, const uint16_t *d, const uint16_t *m,
               float *y, float *scratch, int64_t M, int64_t N, int64_t K, int64_t G, int threads,
               int int_act) {
    float *xsum = scratch;
    group_sums(x, xsum, M, K, G);
#if QGEMV_AVX2
    if (int_act) {
        float *xd = scratch + M * (K / G);
        int16_t *xq = (int16_t *)(xd + M * (K / 32));
        for (int64_t r = 0; r < M; r++) quantize_runs(x + r * K, xq + r * K, xd + r * (K / 32), K);
        const int64_t gs = K / G, nb = K / 32;
        int64_t r0 = 0;
        for (; r0 + 1 < M; r0 += MT) {  /* tiles of 4, the last of 2 or 3 */
            const int64_t t = M - r0 < MT ? M - r0 : MT;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
            for (int64_t n = 0; n < N; n++) {
                if (t == 4) q4_tile_int(xq + r0 * K, xd + r0 * nb, xsum + r0 * gs, qs, d, m, y + r0 * N, n, N, K, G, 4);
                else if (t == 3) q4_tile_int(xq + r0 * K, xd + r0 * nb, xsum + r0 * gs, qs, d, m, y + r0 * N, n, N, K, G, 3);
                else q4_tile_int(xq + r0 * K, xd + r0 * nb, xsum + r0 * gs, qs, d, m, y + r0 * N, n, N, K, G, 2);
            }
        }
        for (; r0 < M; r0++) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
            for (int64_t n = 0; n < N; n++)
                q4_row1_int(xq + r0 * K, xd + r0 * nb, xsum + r0 * gs, qs, d, m, y + r0 * N, n, K, G);
        }
        return;
    }
    if (M == 1) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (int64_t n = 0; n < N; n++) q4_row1(x, xsum, qs, d, m, y, n, K, G);
        return;
    }
#endif
    for (int64_t r0 = 0; r0 < M; r0 += MT) {
        const int mt = (int)(M - r0 < MT ? M - r0 : MT);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (int64_t n = 0; n < N; n++) q4_row(x, xsum, qs, d, m, y, n, r0, mt, N, K, G);
    }
}

void q8_matmul(const float *x, const int8_t *qs, const uint16_t *d, float *y, float *scratch,
               int64_t M, int64_t N, int64_t K, int64_t G, int threads, int int_act) {
#if QGEMV_AVX2
    if (int_act) {
        float *xd = scratch;
        int16_t *xq = (int16_t *)(xd + M * (K / 32));
        for (int64_t r = 0; r < M; r++) quantize_runs(x + r * K, xq + r * K, xd + r * (K / 32), K);
        const int64_t nb = K / 32;
        int64_t r0 = 0;
        for (; r0 + 1 < M; r0 += MT) {  /* tiles of 4, the last of 2 or 3 */
            const int64_t t = M - r0 < MT ? M - r0 : MT;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
            for (int64_t n = 0; n < N; n++) {
                if (t == 4) q8_tile_int(xq + r0 * K, xd + r0 * nb, qs, d, y + r0 * N, n, N, K, G, 4);
                else if (t == 3) q8_tile_int(xq + r0 * K, xd + r0 * nb, qs, d, y + r0 * N, n, N, K, G, 3);
                else q8_tile_int(xq + r0 * K, xd + r0 * nb, qs, d, y + r0 * N, n, N, K, G, 2);
            }
        }
        for (; r0 < M; r0++) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
            for (int64_t n = 0; n < N; n++)
                q8_row1_int(xq + r0 * K, xd + r0 * nb, qs, d, y + r0 * N, n, K, G);
        }
        return;
    }
    if (M == 1) {
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (int64_t n = 0; n < N; n++) q8_row1(x, qs, d, y, n, K, G);
        return;
    }
#endif
    for (int64_t r0 = 0; r0 < M; r0 += MT) {
        const int mt = (int)(M - r0 < MT ? M - r0 : MT);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (int64_t n = 0; n < N; n++) q8_row(x, qs, d, y, n, r0, mt, N, K, G);
    }
}

#if QGEMV_AVX2
/* for qblocks.c: the same activation preparation as the row kernels above */
void qgemv_int16_rows(const float *x, int16_t *xq, float *xd, int64_t M, int64_t K) {
    for (int64_t r = 0; r < M; r++) quantize_runs(x + r * K, xq + r * K, xd + r * (K / 32), K);
}
#endif

void qgemv_group_sums(const float *x, float *xsum, int64_t M, int64_t K, int64_t G) {
    group_sums(x, xsum, M, K, G);
}
