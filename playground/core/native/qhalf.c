/* F16 and BF16 weights multiplied as they are stored: each weight widened to float32 as
 * it is read (F16C's vcvtph2ps; a BF16 is the top half of a float32, so a shift), times
 * float32 activations, summed in float32. A GGUF's F16/BF16 matrices then take 2 bytes a
 * weight in memory and in bandwidth instead of the 4 of a float32 copy, and give the same
 * products (the sums' order differs from torch's matmul: equal to rounding).
 *
 * y[m, n] = sum_k x[m, k] * w[n, k]: x float32 [M, K], w [N, K] half, y [M, N]; two
 * shapes of the work, one order of sums each (half_run below). */
#include <stdint.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

static inline __attribute__((always_inline)) __m256 load8(const uint16_t *w, int bf16) {
    const __m128i h = _mm_loadu_si128((const __m128i *)w);
    if (bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

static inline float widen1(uint16_t h, int bf16) {
    if (bf16) {
        union { uint32_t u; float f; } v = {(uint32_t)h << 16};
        return v.f;
    }
    return _cvtsh_ss(h);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* TN output rows (from n) against TM rows of x (from m): the float sums of every pair */
static inline __attribute__((always_inline)) void
tile(const float *x, const uint16_t *w, float *y, int64_t m, int64_t n, int64_t N, int64_t K,
     int bf16, const int TN, const int TM) {
    __m256 acc[4][3];
    for (int i = 0; i < TN; i++)
        for (int j = 0; j < TM; j++) acc[i][j] = _mm256_setzero_ps();
    const int64_t K8 = K & ~(int64_t)7;
    for (int64_t k = 0; k < K8; k += 8) {
        __m256 xv[3];
        for (int j = 0; j < TM; j++) xv[j] = _mm256_loadu_ps(x + (m + j) * K + k);
        for (int i = 0; i < TN; i++) {
            const __m256 wv = load8(w + (n + i) * K + k, bf16);
            for (int j = 0; j < TM; j++) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < TN; i++)
        for (int j = 0; j < TM; j++) {
            float s = hsum(acc[i][j]);
            for (int64_t k = K8; k < K; k++)
                s += widen1(w[(n + i) * K + k], bf16) * x[(m + j) * K + k];
            y[(m + j) * N + n + i] = s;
        }
}

/* one output row against one row of x with 8 independent sums, so a thread reads one
 * stream of weights and both FMA units stay busy. Measured on the Zen 5 here, 2 threads,
 * 268 MB of F16 weights from DRAM, alternating in one process: 4 rows at once (four
 * streams) 29.7 GB/s, this 36.9; software prefetch 2 KB ahead made it slower. Its sums'
 * order depends on nothing but K, so a row of x gets the same bits alone or batched. */
static inline __attribute__((always_inline)) void
row_one_x(const float *x, const uint16_t *w, float *y, int64_t n, int64_t K, int bf16) {
    __m256 a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_setzero_ps();
    const uint16_t *row = w + n * K;
    const int64_t K64 = K & ~(int64_t)63;
    for (int64_t k = 0; k < K64; k += 64) {
        for (int i = 0; i < 8; i++)
            a[i] = _mm256_fmadd_ps(load8(row + k + 8 * i, bf16), _mm256_loadu_ps(x + k + 8 * i), a[i]);
    }
    for (int i = 1; i < 8; i++) a[0] = _mm256_add_ps(a[0], a[i]);
    float s = hsum(a[0]);
    for (int64_t k = K64; k < K; k++) s += widen1(row[k], bf16) * x[k];
    y[n] = s;
}

#define ROWS_OF_X(TN)                                                                 \
    do {                                                                              \
        int64_t m = m0;                                                               \
        for (; m + 3 <= m1; m += 3) tile(x, w, y, m, n, N, K, bf16, TN, 3);            \
        if (m1 - m == 2) tile(x, w, y, m, n, N, K, bf16, TN, 2);                       \
        else if (m1 - m == 1) tile(x, w, y, m, n, N, K, bf16, TN, 1);                  \
    } while (0)

/* output rows in chunks of 64 shared among the threads, rows of x in panels of 48 (a
 * chunk's weights stay in L2 while a panel streams past them). ``each_row``: every row
 * of x as row_one_x alone (the one-call step, decode and the server's batches: a
 * sequence's logits have the same bits whatever shares its pass, an output row's weights
 * read once from memory and again from L1 for the other rows of x); else the tiles (a
 * prompt through transformers' forward: each weight loaded once for 3 rows of x). */
static void half_run(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N,
                     int64_t K, int threads, int bf16, int each_row) {
    enum { CHUNK = 64, PANEL = 48 };
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t c = 0; c < chunks; c++) {
        const int64_t n0 = c * CHUNK, n1 = n0 + CHUNK < N ? n0 + CHUNK : N;
        for (int64_t m0 = 0; m0 < M; m0 += PANEL) {
            const int64_t m1 = m0 + PANEL < M ? m0 + PANEL : M;
            int64_t n = n0;
            if (each_row || M == 1) {
                for (; n < n1; n++)
                    for (int64_t m = m0; m < m1; m++) row_one_x(x + m * K, w, y + m * N, n, K, bf16);
                continue;
            }
            for (; n + 4 <= n1; n += 4) ROWS_OF_X(4);
            for (; n < n1; n++) ROWS_OF_X(1);
        }
    }
}

void half_matmul(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K,
                 int threads, int bf16) {
    half_run(x, w, y, M, N, K, threads, bf16, 0);
}

void half_rows(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K,
               int threads, int bf16) {
    half_run(x, w, y, M, N, K, threads, bf16, 1);
}
#endif
