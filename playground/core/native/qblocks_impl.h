/* The blocked kernels' bodies, included twice by qblocks.c: once for AVX2 and once under
 * an AVX-512 VNNI target, where a pair's multiply-add and its add into the integer sum are
 * one instruction (vpdpwssd: the same exact int32 sum, so the same bits). NAME() gives each
 * copy its own symbols; MADD_ADD(acc, w, x) is acc + madd(w, x). */

/* vpmaddwd of a weight vector W (8 rows x input pair KP) with row t's input pair, into
 * ACC[t]: |code| <= 127 and |x| <= 32767, so 16 pairs of a run stay far inside int32.
 * The pair is broadcast from x's int16 row itself (4 bytes a pair): a buffer of pairs
 * broadcast ahead of time (32 bytes a pair) was re-read for every block of 8 rows and,
 * at 16 bytes an input, fell out of L1 on every matrix of a 1B model (its decode step
 * went 41 -> 24 ms a token without it; Zen 2 had measured 1.0 against 1.15 cycles a
 * pair for the buffer when all of it sat in L1). */
#define PAIRS_INTO(ACC, W, KP)                                                        \
    for (int t = 0; t < T; t++)                                                      \
        ACC[t] = MADD_ADD(ACC[t], W, XPAIR(t, KP))
#define PAIRS(W, KP) PAIRS_INTO(acc, W, KP)
#define XPAIR(t, KP) _mm256_set1_epi32(xq32[(t) * (K / 2) + b * 16 + (KP)])

/* every run of 32 inputs: BODY adds each row's products into acc (with PAIRS), in
 * integers; at the run's end they are scaled by the 8 rows' d and the row's x scale */
#define FOR_RUNS(BODY)                                                                \
    __m256 accf[TMAX];                                                               \
    for (int t = 0; t < T; t++) accf[t] = _mm256_setzero_ps();                       \
    for (int64_t b = 0, g = 0, u = 0; b < nb;                                        \
         b++, u = u + 1 == runs ? 0 : u + 1, g += u == 0) {                          \
        PREFETCH_CODES(blk + b * RUN_BYTES, RUN_BYTES);                                \
        __m256i acc[TMAX];                                                           \
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_si256();                 \
        BODY;                                                                        \
        const __m256 d8 = scale8(db, ds, g, gshift, fmt);                            \
        for (int t = 0; t < T; t++)                                                  \
            accf[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(xd[t * nb + b])), \
                                      _mm256_cvtepi32_ps(acc[t]), accf[t]);           \
    }

/* the offsets after the runs, so their sums do not hold registers through them */
#define ADD_OFFSETS_AND_STORE()                                                       \
    for (int t = 0; t < T; t++) {                                                    \
        __m256 off = _mm256_setzero_ps();                                            \
        if (fmt & FMT_MINUS8D) /* Q4_0: m = -8d, read from d (no offsets stored) */   \
            for (int64_t g = 0; g < groups; g++)                                     \
                off = _mm256_fmadd_ps(scale8(db, ds, g, gshift, fmt),                   \
                                      _mm256_set1_ps(-8.0f * xsum[t * groups + g]), off); \
        else if (mb)                                                                 \
            for (int64_t g = 0; g < groups; g++)                                     \
                off = _mm256_fmadd_ps(scale8(mb, ms, g, gshift, fmt),                   \
                                      _mm256_set1_ps(xsum[t * groups + g]), off);    \
        _mm256_storeu_ps(y + t * N, (mb || (fmt & FMT_MINUS8D)) ? _mm256_add_ps(accf[t], off) \
                                                                : accf[t]);          \
    }

static inline __attribute__((always_inline)) void
NAME(q4_block)(const int32_t *xq32, const float *xd, const float *xsum, const uint8_t *blk,
               const void *db, const void *mb, const float *ds, const float *ms, float *y,
               int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, runs = G / 32, nb = K / 32, gshift = super_shift(G);
    const __m256i low = _mm256_set1_epi16(0x0f);
    enum { RUN_BYTES = 128 };
    FOR_RUNS(for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + b * 128 + j * 32));
        PAIRS(_mm256_and_si256(v, low), 4 * j);
        PAIRS(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), 4 * j + 1);
        PAIRS(_mm256_and_si256(_mm256_srli_epi16(v, 8), low), 4 * j + 2);
        PAIRS(_mm256_srli_epi16(v, 12), 4 * j + 3);
    })
    ADD_OFFSETS_AND_STORE();
}

#define Q8_VEC(P) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + b * 256 + (P) * 16)))

static inline __attribute__((always_inline)) void
NAME(q8_block)(const int32_t *xq32, const float *xd, const float *xsum, const int8_t *blk,
               const void *db, const void *mb, const float *ds, const float *ms, float *y,
               int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, nb = K / 32, gshift = super_shift(G);
    if (G == 16) {
        /* GGUF Q6_K: a scale per 16 inputs, so each run keeps two integer sums (pairs
         * 0-7 are its inputs 0-15, pairs 8-15 inputs 16-31), each scaled by its own d */
        __m256 accf[TMAX];
        for (int t = 0; t < T; t++) accf[t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            __m256i lo[TMAX], hi[TMAX];
            for (int t = 0; t < T; t++) lo[t] = hi[t] = _mm256_setzero_si256();
            PREFETCH_CODES(blk + b * 256, 256);
            for (int p = 0; p < 8; p++) PAIRS_INTO(lo, Q8_VEC(p), p);
            for (int p = 8; p < 16; p++) PAIRS_INTO(hi, Q8_VEC(p), p);
            const __m256 dlo = scale8(db, ds, 2 * b, gshift, fmt);
            const __m256 dhi = scale8(db, ds, 2 * b + 1, gshift, fmt);
            for (int t = 0; t < T; t++) {
                const __m256 xs = _mm256_set1_ps(xd[t * nb + b]);
                accf[t] = _mm256_fmadd_ps(_mm256_mul_ps(dlo, xs), _mm256_cvtepi32_ps(lo[t]), accf[t]);
                accf[t] = _mm256_fmadd_ps(_mm256_mul_ps(dhi, xs), _mm256_cvtepi32_ps(hi[t]), accf[t]);
            }
        }
        ADD_OFFSETS_AND_STORE();
        return;
    }
    const int64_t runs = G / 32;
    enum { RUN_BYTES = 256 };
    FOR_RUNS(for (int p = 0; p < 16; p++) PAIRS(Q8_VEC(p), p))
    ADD_OFFSETS_AND_STORE();
}

/* Within one parallel region: the threads prepare x's rows between them (int16 runs,
 * their scales, group sums where there are offsets), then take blocks of 8 rows of W, each against x's rows
 * in tiles of up to 4 (T a constant in each case, so the accumulators stay in registers:
 * with 8, sixteen of them do not fit in AVX2's 16 registers and spill). */
#define PREPARE_AND_TILE(CALL)                                                        \
    _Pragma("omp parallel num_threads(threads) if (threads > 1)")                    \
    {                                                                                \
        _Pragma("omp for schedule(static)")                                          \
        for (int64_t r = 0; r < M; r++) {                                            \
            if (m || (fmt & FMT_MINUS8D)) qgemv_group_sums(x + r * K, xsum + r * gs, 1, K, G); \
            qgemv_int16_rows(x + r * K, xq + r * K, xd + r * nb, 1, K);              \
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

static void NAME(q4_blocks_matmul)(const float *x, const uint8_t *qs, const void *d,
                                   const void *m, const float *dsup, const float *msup, float *y,
                                   float *scratch, int64_t M, int64_t N, int64_t K, int64_t G,
                                   int threads, int fmt) {
    const int64_t gs = K / G, nb = K / 32, sups = K / 256, ss = scale_bytes(fmt);
    float *xsum = scratch, *xd = scratch + M * gs;
    int16_t *xq = (int16_t *)(xd + M * nb);
#define Q4_CALL(T) NAME(q4_block)((const int32_t *)(xq + r0 * K), xd + r0 * nb, xsum + r0 * gs,            \
                                  qs + n0 * (K / 2), (const char *)d + n0 * gs * ss,          \
                                  m ? (const char *)m + n0 * gs * ss : NULL,                  \
                                  dsup ? dsup + n0 * sups : NULL,                             \
                                  msup ? msup + n0 * sups : NULL, y + r0 * N + n0, N, K, G,   \
                                  fmt, T)
    PREPARE_AND_TILE(Q4_CALL)
#undef Q4_CALL
}

static void NAME(q8_blocks_matmul)(const float *x, const int8_t *qs, const void *d,
                                   const void *m, const float *dsup, const float *msup, float *y,
                                   float *scratch, int64_t M, int64_t N, int64_t K, int64_t G,
                                   int threads, int fmt) {
    const int64_t gs = K / G, nb = K / 32, sups = K / 256, ss = scale_bytes(fmt);
    float *xsum = scratch, *xd = scratch + M * gs;
    int16_t *xq = (int16_t *)(xd + M * nb);
#define Q8_CALL(T) NAME(q8_block)((const int32_t *)(xq + r0 * K), xd + r0 * nb, xsum + r0 * gs, qs + n0 * K, \
                                  (const char *)d + n0 * gs * ss,                              \
                                  m ? (const char *)m + n0 * gs * ss : NULL,                   \
                                  dsup ? dsup + n0 * sups : NULL,                              \
                                  msup ? msup + n0 * sups : NULL, y + r0 * N + n0,             \
                                  N, K, G, fmt, T)
    PREPARE_AND_TILE(Q8_CALL)
#undef Q8_CALL
}

#undef PAIRS_INTO
#undef XPAIR
#undef PAIRS
#undef FOR_RUNS
#undef ADD_OFFSETS_AND_STORE
#undef Q8_VEC
#undef PREPARE_AND_TILE
