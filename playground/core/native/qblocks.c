/* Weight-only matrix products on weights repacked in blocks of 8 output rows, for
 * batched decoding (serve --batching on) and prefill; int16 activations as in
 * qgemv.c's fast path (quantize_runs: one float scale per run of 32 inputs).
 *
 * Why a second layout: qgemv.c's row kernels take an inner product per output, so a row
 * of x pays, per 32 weights, two integer multiply-adds plus an add, a conversion, a
 * broadcast scale and a float multiply-add, and the tile of 4 rows shares only the
 * decoding of the weights. Here the 8 lanes of a register are 8 outputs: a pair of
 * inputs of a row is broadcast to all lanes and one multiply-add (vpmaddwd) covers 8
 * outputs x 2 inputs, accumulating in integers over the whole run of 32, then one
 * conversion and one float multiply-add per run for 8 outputs. Measured on a gate/up
 * sized matrix (3072 x 576), one thread: 70 us a row alone against 160, 48 us a row in
 * a tile of 4 against 89 (benchmarks/batch_kernels.py for the whole model).
 *
 * Layout, per block of 8 rows (N must be a multiple of 8, so a slice of whole blocks is
 * still a matrix): per run b of 32 inputs, int4 codes take 128 bytes, four 32-byte
 * vectors; in vector j, 16-bit lane 2c+e holds four codes, nibble s being row c's input
 * 2(4j+s)+e of the run. int8 codes take 256 bytes, sixteen 16-byte vectors; in vector
 * p, byte 2c+e is row c's input 2p+e. Scales and offsets: per group, the 8 rows' fp16
 * values in a row. (weight_quant.py's _native_pack writes it.)
 *
 * A row's result does not depend on the other rows of the tile, or on the tile's size:
 * integer sums are exact, and each output's float sum runs over the runs in order, so a
 * greedy reply is bit for bit the same alone or batched.
 */
#include <stdint.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

void qgemv_int16_rows(const float *x, int16_t *xq, float *xd, int64_t M, int64_t K);
void qgemv_group_sums(const float *x, float *xsum, int64_t M, int64_t K, int64_t G);

#define TMAX 4

/* vpmaddwd of a weight vector W (8 rows x input pair KP) with row t's input pair, into
 * acc[t]: |code| <= 127 and |x| <= 32767, so 16 pairs of a run stay far inside int32.
 * The pair comes ready broadcast from memory (see broadcast_pairs), folded into the
 * multiply-add as its memory operand: measured 1.0 cycle a pair against 1.15 with a
 * broadcast instruction each time. */
#define PAIRS(W, KP)                                                                  \
    for (int t = 0; t < T; t++)                                                      \
        acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(W, _mm256_load_si256(xp + t * (K / 2) + (KP))))

/* every run of 32 inputs: BODY adds each row's products into acc (with PAIRS), in
 * integers; at the run's end they are scaled by the 8 rows' d and the row's x scale */
#define FOR_RUNS(BODY)                                                                \
    __m256 accf[TMAX];                                                               \
    for (int t = 0; t < T; t++) accf[t] = _mm256_setzero_ps();                       \
    for (int64_t b = 0; b < nb; b++) {                                               \
        const __m256i *xp = xb + b * 16;                                              \
        __m256i acc[TMAX];                                                           \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_si256();                 \
        BODY;                                                                        \
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(db + (b / runs) * 8))); \
        for (int t = 0; t < T; t++)                                                  \
            accf[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(xd[t * nb + b])), \
                                      _mm256_cvtepi32_ps(acc[t]), accf[t]);           \
    }

static inline __attribute__((always_inline)) void
q4_block(const __m256i *xb, const float *xd, const float *xsum, const uint8_t *blk,
         const uint16_t *db, const uint16_t *mb, float *y, int64_t N, int64_t K, int64_t G,
         const int T) {
    const int64_t groups = K / G, runs = G / 32, nb = K / 32;
    const __m256i low = _mm256_set1_epi16(0x0f);
    FOR_RUNS(for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + b * 128 + j * 32));
        PAIRS(_mm256_and_si256(v, low), 4 * j);
        PAIRS(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), 4 * j + 1);
        PAIRS(_mm256_and_si256(_mm256_srli_epi16(v, 8), low), 4 * j + 2);
        PAIRS(_mm256_srli_epi16(v, 12), 4 * j + 3);
    })
    /* the offsets after the runs, so their sums do not hold registers through them */
    for (int t = 0; t < T; t++) {
        __m256 off = _mm256_setzero_ps();
        for (int64_t g = 0; g < groups; g++)
            off = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(mb + g * 8))),
                                  _mm256_set1_ps(xsum[t * groups + g]), off);
        _mm256_storeu_ps(y + t * N, _mm256_add_ps(accf[t], off));
    }
}

static inline __attribute__((always_inline)) void
q8_block(const __m256i *xb, const float *xd, const int8_t *blk, const uint16_t *db, float *y,
         int64_t N, int64_t K, int64_t G, const int T) {
    const int64_t runs = G / 32, nb = K / 32;
    FOR_RUNS(for (int p = 0; p < 16; p++)
        PAIRS(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + b * 256 + p * 16))), p))
    for (int t = 0; t < T; t++) _mm256_storeu_ps(y + t * N, accf[t]);
}

/* Within one parallel region: the threads prepare x's rows between them (int16 runs,
 * their scales, SUMS, and each input pair broadcast to a vector: reused by every block),
 * then take blocks of 8 rows of W, each against x's rows in tiles of up to 4 (T a
 * constant in each case, so the accumulators stay in registers: with 8, sixteen of
 * them do not fit in AVX2's 16 registers and spill). */
#define PREPARE_AND_TILE(SUMS, CALL)                                                  \
    _Pragma("omp parallel num_threads(threads) if (threads > 1)")                    \
    {                                                                                \
        _Pragma("omp for schedule(static)")                                          \
        for (int64_t r = 0; r < M; r++) {                                            \
            SUMS;                                                                    \
            qgemv_int16_rows(x + r * K, xq + r * K, xd + r * nb, 1, K);              \
            broadcast_pairs(xq + r * K, xb + r * (K / 2), K);                        \
        }                                                                            \
        _Pragma("omp for schedule(static)")                                          \
        for (int64_t n0 = 0; n0 < N; n0 += 8)                                        \
            for (int64_t r0 = 0; r0 < M; r0 += TMAX) {                               \
                switch (M - r0 < TMAX ? M - r0 : TMAX) {                             \
                case 1: CALL(1); break; case 2: CALL(2); break;                      \
                case 3: CALL(3); break; default: CALL(4); break;                     \
                }                                                                    \
            }                                                                        \
    }

static void broadcast_pairs(const int16_t *xq, __m256i *xb, int64_t K) {
    const int32_t *pairs = (const int32_t *)xq;
    for (int64_t i = 0; i < K / 2; i++) _mm256_store_si256(xb + i, _mm256_set1_epi32(pairs[i]));
}

static __m256i *aligned32(void *p) {
    return (__m256i *)(((uintptr_t)p + 31) & ~(uintptr_t)31);
}

/* scratch: at least M*(K/G + K/32 + K/2 + 4K) + 8 floats */
void q4_blocks_matmul(const float *x, const uint8_t *qs, const uint16_t *d, const uint16_t *m,
                      float *y, float *scratch, int64_t M, int64_t N, int64_t K, int64_t G,
                      int threads) {
    const int64_t gs = K / G, nb = K / 32;
    float *xsum = scratch, *xd = scratch + M * gs;
    int16_t *xq = (int16_t *)(xd + M * nb);
    __m256i *xb = aligned32(xq + M * K);
#define Q4_CALL(T) q4_block(xb + r0 * (K / 2), xd + r0 * nb, xsum + r0 * gs, qs + n0 * (K / 2), \
                            d + n0 * gs, m + n0 * gs, y + r0 * N + n0, N, K, G, T)
    PREPARE_AND_TILE(qgemv_group_sums(x + r * K, xsum + r * gs, 1, K, G), Q4_CALL)
}

/* scratch: at least M*(K/32 + K/2 + 4K) + 8 floats */
void q8_blocks_matmul(const float *x, const int8_t *qs, const uint16_t *d, float *y,
                      float *scratch, int64_t M, int64_t N, int64_t K, int64_t G, int threads) {
    const int64_t nb = K / 32;
    float *xd = scratch;
    int16_t *xq = (int16_t *)(xd + M * nb);
    __m256i *xb = aligned32(xq + M * K);
#define Q8_CALL(T) q8_block(xb + r0 * (K / 2), xd + r0 * nb, qs + n0 * K, d + n0 * (K / G), \
                            y + r0 * N + n0, N, K, G, T)
    PREPARE_AND_TILE((void)0, Q8_CALL)
}
#endif
