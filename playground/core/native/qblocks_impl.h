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
/* x's row pointers (X_ROWS) pass through an empty asm at every pair, so GCC cannot load a
 * pair's broadcasts before the pair is due: with the scheduling pragma in qblocks.c it had loaded a whole run's ahead and
 * spilled them (a 2,048 x 2,048 int4 matrix, 64 rows of x, one thread on a Zen 3: 30.8
 * -> 45.1 G products a second with both, 35.7 with the pragma alone). */
#define PAIRS_INTO(ACC, W, KP)                                                        \
    do {                                                                             \
        for (int t = 0; t < T; t++) __asm__("" : "+r"(xr_[t]));                      \
        for (int t = 0; t < T; t++)                                                  \
            ACC[((KP) & (SETS - 1)) * T + t] =                                       \
                MADD_ADD(ACC[((KP) & (SETS - 1)) * T + t], W, XPAIR(t, KP));          \
    } while (0)
#define PAIRS(W, KP) PAIRS_INTO(acc, W, KP)
/* each row of x's pointer to run b, in its own register: a pair's broadcasts then address
 * (row + 4 KP), with no address arithmetic between the multiply-adds (with one pointer
 * per pair and rows K/2 apart, GCC formed rows 1-3's addresses with two leaq a pair, or
 * loaded precomputed offsets from the stack) */
#define X_ROWS(XR)                                                                    \
    const int32_t *XR[TMAX];                                                         \
    for (int t = 0; t < T; t++) XR[t] = xq32 + t * (K / 2) + b * 16
#define XPAIR(t, KP) _mm256_set1_epi32(xr_[t][KP])

/* A run's pairs go into SETS independent integer sums per row, added at the run's end
 * (integers: the same sum, the same bits): with one sum, one or two rows of x make every
 * multiply-add wait for the one before (vpdpwssd's latency, 16 in a chain a run), and a
 * decode step (one row) ran at that latency instead of the units' throughput. */
#define SETS (T == 1 ? 4 : T == 2 ? 2 : 1)
#define ZERO_SETS(ACC)                                                                \
    for (int i = 0; i < SETS * T; i++) ACC[i] = _mm256_setzero_si256()
#define ADD_SETS(ACC)                                                                 \
    for (int s = 1; s < SETS; s++)                                                   \
        for (int t = 0; t < T; t++) ACC[t] = _mm256_add_epi32(ACC[t], ACC[s * T + t])

/* every run of 32 inputs: BODY adds each row's products into acc (with PAIRS), in
 * integers; at the run's end they are scaled by the 8 rows' d and the row's x scale */
#define FOR_RUNS(BODY)                                                                \
    __m256 accf[TMAX];                                                               \
    for (int t = 0; t < T; t++) accf[t] = _mm256_setzero_ps();                       \
    for (int64_t b = 0, g = 0, u = 0; b < nb;                                        \
         b++, u = u + 1 == runs ? 0 : u + 1, g += u == 0) {                          \
        PREFETCH_CODES(blk + b * RUN_BYTES, RUN_BYTES);                                \
        X_ROWS(xr_);                                                                 \
        __m256i acc[4 * TMAX];                                                       \
        ZERO_SETS(acc);                                                              \
        BODY;                                                                        \
        ADD_SETS(acc);                                                               \
        const __m256 d8 = scale8(db, ds, g, gshift, fmt);                            \
        for (int t = 0; t < T; t++)                                                  \
            accf[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(xd[t * nb + b])), \
                                      _mm256_cvtepi32_ps(acc[t]), accf[t]);           \
    }

/* the offsets after the runs, so their sums do not hold registers through them; then the
 * 8 rows' results of each row of x */
static inline __attribute__((always_inline)) void
NAME(finish)(const __m256 *accf, const float *xsum, const void *db, const void *mb,
             const uint16_t *ds, const uint16_t *ms, float *y, int64_t N, int64_t groups, int gshift,
             int fmt, const int T) {
    for (int t = 0; t < T; t++) {
        __m256 off = _mm256_setzero_ps();
        if (fmt & FMT_MINUS8D) /* Q4_0: m = -8d, read from d (no offsets stored) */
            for (int64_t g = 0; g < groups; g++)
                off = _mm256_fmadd_ps(scale8(db, ds, g, gshift, fmt),
                                      _mm256_set1_ps(-8.0f * xsum[t * groups + g]), off);
        else if (mb)
            for (int64_t g = 0; g < groups; g++)
                off = _mm256_fmadd_ps(scale8(mb, ms, g, gshift, fmt),
                                      _mm256_set1_ps(xsum[t * groups + g]), off);
        _mm256_storeu_ps(y + t * N, (mb || (fmt & FMT_MINUS8D)) ? _mm256_add_ps(accf[t], off)
                                                                : accf[t]);
    }
}
#define ADD_OFFSETS_AND_STORE() \
    NAME(finish)(accf, xsum, db, mb, ds, ms, y, N, groups, (int)gshift, fmt, T)

static inline __attribute__((always_inline)) void
NAME(q4_block)(const int32_t *xq32, const float *xd, const float *xsum, const uint8_t *blk,
               const void *db, const void *mb, const uint16_t *ds, const uint16_t *ms, float *y,
               int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, runs = G / 32, nb = K / 32, gshift = super_shift(G);
    const __m256i low = _mm256_set1_epi16(0x0f);
    enum { RUN_BYTES = 128 };
    FOR_RUNS(_Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
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
               const void *db, const void *mb, const uint16_t *ds, const uint16_t *ms, float *y,
               int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, nb = K / 32, gshift = super_shift(G);
    if (G == 16) {
        /* GGUF Q6_K: a scale per 16 inputs, so each run keeps two integer sums (pairs
         * 0-7 are its inputs 0-15, pairs 8-15 inputs 16-31), each scaled by its own d */
        __m256 accf[TMAX];
        for (int t = 0; t < T; t++) accf[t] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            __m256i lo[4 * TMAX], hi[4 * TMAX];
            ZERO_SETS(lo);
            ZERO_SETS(hi);
            PREFETCH_CODES(blk + b * 256, 256);
            X_ROWS(xr_);
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) PAIRS_INTO(lo, Q8_VEC(p), p);
            _Pragma("GCC unroll 8") for (int p = 8; p < 16; p++) PAIRS_INTO(hi, Q8_VEC(p), p);
            ADD_SETS(lo);
            ADD_SETS(hi);
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
    FOR_RUNS(_Pragma("GCC unroll 16") for (int p = 0; p < 16; p++) PAIRS(Q8_VEC(p), p))
    ADD_OFFSETS_AND_STORE();
}

/* GGUF Q5_0 at its own 5 bits a weight (FMT_Q5, fp16 scales per 32): per run, the low
 * nibbles in the int4 order (128 bytes), then one 32-byte vector of fifth bits (lane 2c+e,
 * bit p: pair p); a pair's codes are (low | bit << 4) - 16, the int8 form's values, so the
 * same sums and bits from 160 bytes a run where the int8 form reads 256. */
#define Q5_BIT(T5, P)                                                                 \
    _mm256_and_si256((P) <= 4 ? _mm256_slli_epi16(T5, 4 - (P))                       \
                              : _mm256_srli_epi16(T5, (P) - 4), five)
#define Q5_VEC(V, S, T5, P)                                                           \
    _mm256_sub_epi16(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(V, 4 * (S)), low), \
                                     Q5_BIT(T5, P)), off16)

static inline __attribute__((always_inline)) void
NAME(q5_block)(const int32_t *xq32, const float *xd, const float *xsum, const uint8_t *blk,
               const void *db, const void *mb, const uint16_t *ds, const uint16_t *ms, float *y,
               int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, runs = G / 32, nb = K / 32, gshift = super_shift(G);
    const __m256i low = _mm256_set1_epi16(0x0f), five = _mm256_set1_epi16(0x10),
                  off16 = _mm256_set1_epi16(16);
    enum { RUN_BYTES = 160 };
    FOR_RUNS(const __m256i t5 = _mm256_loadu_si256((const __m256i *)(blk + b * 160 + 128));
             _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
                 const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + b * 160 + j * 32));
                 PAIRS(Q5_VEC(v, 0, t5, 4 * j), 4 * j);
                 PAIRS(Q5_VEC(v, 1, t5, 4 * j + 1), 4 * j + 1);
                 PAIRS(Q5_VEC(v, 2, t5, 4 * j + 2), 4 * j + 2);
                 PAIRS(Q5_VEC(v, 3, t5, 4 * j + 3), 4 * j + 3);
             })
    ADD_OFFSETS_AND_STORE();
}

/* GGUF Q6_K at its own 6 bits a weight (FMT_Q6, G = 16): per run of 32 inputs, 128 bytes of
 * low nibbles in the int4 order (vector j, lane 2c+e, nibble s: pair 4j+s), then 64 bytes
 * of top bits (vector h, lane 2c+e, 2-bit field k: pair 8h+k). A pair's int16 codes are
 * (low | top << 4) - 32, the int8 form's very values, so the same sums and the same bits,
 * from 192 bytes a run where the int8 form reads 256 (and holds them in memory). */
#define Q6_TOP(H, K)                                                                  \
    _mm256_and_si256((K) <= 2 ? _mm256_slli_epi16(H, 4 - 2 * (K))                    \
                              : _mm256_srli_epi16(H, 2 * (K) - 4), top)
#define Q6_VEC(V, S, H, K)                                                            \
    _mm256_sub_epi16(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(V, 4 * (S)), low), \
                                     Q6_TOP(H, K)), off32)
#define Q6_HALF(ACC, H, J0)                                                           \
    _Pragma("GCC unroll 2") for (int j = (J0); j < (J0) + 2; j++) {                  \
        const __m256i v = _mm256_loadu_si256((const __m256i *)(run + 32 * j));       \
        const int k0 = 4 * (j - (J0));                                               \
        PAIRS_INTO(ACC, Q6_VEC(v, 0, H, k0), 4 * j);                                 \
        PAIRS_INTO(ACC, Q6_VEC(v, 1, H, k0 + 1), 4 * j + 1);                         \
        PAIRS_INTO(ACC, Q6_VEC(v, 2, H, k0 + 2), 4 * j + 2);                         \
        PAIRS_INTO(ACC, Q6_VEC(v, 3, H, k0 + 3), 4 * j + 3);                         \
    }

static inline __attribute__((always_inline)) void
NAME(q6_block)(const int32_t *xq32, const float *xd, const float *xsum, const uint8_t *blk,
               const void *db, const void *mb, const uint16_t *ds, const uint16_t *ms, float *y,
               int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, nb = K / 32, gshift = super_shift(G);
    const __m256i low = _mm256_set1_epi16(0x0f), top = _mm256_set1_epi16(0x30),
                  off32 = _mm256_set1_epi16(32);
    __m256 accf[TMAX];
    for (int t = 0; t < T; t++) accf[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *run = blk + b * 192;
        __m256i lo[4 * TMAX], hi[4 * TMAX];
        ZERO_SETS(lo);
        ZERO_SETS(hi);
        PREFETCH_CODES(run, 192);
        X_ROWS(xr_);
        const __m256i h0 = _mm256_loadu_si256((const __m256i *)(run + 128));
        const __m256i h1 = _mm256_loadu_si256((const __m256i *)(run + 160));
        Q6_HALF(lo, h0, 0)
        Q6_HALF(hi, h1, 2)
        ADD_SETS(lo);
        ADD_SETS(hi);
        const __m256 dlo = scale8(db, ds, 2 * b, gshift, fmt);
        const __m256 dhi = scale8(db, ds, 2 * b + 1, gshift, fmt);
        for (int t = 0; t < T; t++) {
            const __m256 xs = _mm256_set1_ps(xd[t * nb + b]);
            accf[t] = _mm256_fmadd_ps(_mm256_mul_ps(dlo, xs), _mm256_cvtepi32_ps(lo[t]), accf[t]);
            accf[t] = _mm256_fmadd_ps(_mm256_mul_ps(dhi, xs), _mm256_cvtepi32_ps(hi[t]), accf[t]);
        }
    }
    ADD_OFFSETS_AND_STORE();
}
#undef Q6_HALF

#ifdef WIDE
/* 16 rows at once in 512-bit registers: two neighbouring blocks of 8 rows, A in the low
 * half, B in the high half, against the same broadcast pair of x (x's layout and the
 * blocks' stay as they are). Half the multiply-adds and broadcasts a weight of the 8-row
 * form; each row's integer sums and float steps are the 8-row form's, so the same bits. */
#define PAIRS16(W, KP)                                                                \
    for (int t = 0; t < T; t++)                                                      \
        acc[((KP) & (SETS - 1)) * T + t] = _mm512_dpwssd_epi32(                      \
            acc[((KP) & (SETS - 1)) * T + t], W,                                     \
            _mm512_set1_epi32(xq32[(t) * (K / 2) + b * 16 + (KP)]))
#define PAIRS16_INTO(ACC, W, KP)                                                      \
    for (int t = 0; t < T; t++)                                                      \
        ACC[((KP) & (SETS - 1)) * T + t] = _mm512_dpwssd_epi32(                      \
            ACC[((KP) & (SETS - 1)) * T + t], W,                                     \
            _mm512_set1_epi32(xq32[(t) * (K / 2) + b * 16 + (KP)]))
#define ZERO_SETS16(ACC)                                                              \
    for (int i = 0; i < SETS * T; i++) ACC[i] = _mm512_setzero_si512()
#define ADD_SETS16(ACC)                                                               \
    for (int s = 1; s < SETS; s++)                                                   \
        for (int t = 0; t < T; t++) ACC[t] = _mm512_add_epi32(ACC[t], ACC[s * T + t])
/* a run's integer sums of A's and B's rows into their float sums, as the 8-row form does */
#define SCALE_INTO16(ACC, DA, DB)                                                     \
    for (int t = 0; t < T; t++) {                                                    \
        const __m256 xs = _mm256_set1_ps(xd[t * nb + b]);                            \
        accA[t] = _mm256_fmadd_ps(_mm256_mul_ps(DA, xs),                             \
                                  _mm256_cvtepi32_ps(_mm512_castsi512_si256(ACC[t])), accA[t]); \
        accB[t] = _mm256_fmadd_ps(_mm256_mul_ps(DB, xs),                             \
                                  _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(ACC[t], 1)), accB[t]); \
    }
/* B's scales, offsets and outputs: the next block of 8 rows */
#define B_ARGS16                                                                      \
    const void *dbB = (const char *)db + groups * scale_bytes8(fmt);             \
    const void *mbB = mb ? (const char *)mb + groups * scale_bytes8(fmt) : NULL; \
    const uint16_t *dsB = ds ? ds + 8 * (K / 256) : NULL, *msB = ms ? ms + 8 * (K / 256) : NULL
#define FINISH16()                                                                    \
    NAME(finish)(accA, xsum, db, mb, ds, ms, y, N, groups, (int)gshift, fmt, T);    \
    NAME(finish)(accB, xsum, dbB, mbB, dsB, msB, y + 8, N, groups, (int)gshift, fmt, T)

static inline __attribute__((always_inline)) void
NAME(q4_block16)(const int32_t *xq32, const float *xd, const float *xsum, const uint8_t *blk,
                 const void *db, const void *mb, const uint16_t *ds, const uint16_t *ms, float *y,
                 int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, runs = G / 32, nb = K / 32, gshift = super_shift(G);
    const uint8_t *blkB = blk + 8 * (K / 2);
    B_ARGS16;
    const __m512i low = _mm512_set1_epi16(0x0f);
    __m256 accA[TMAX], accB[TMAX];
    for (int t = 0; t < T; t++) accA[t] = accB[t] = _mm256_setzero_ps();
    for (int64_t b = 0, g = 0, u = 0; b < nb; b++, u = u + 1 == runs ? 0 : u + 1, g += u == 0) {
        PREFETCH_CODES(blk + b * 128, 128);
        PREFETCH_CODES(blkB + b * 128, 128);
        __m512i acc[4 * TMAX];
        ZERO_SETS16(acc);
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            const __m512i v = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blk + b * 128 + j * 32))),
                _mm256_loadu_si256((const __m256i *)(blkB + b * 128 + j * 32)), 1);
            PAIRS16(_mm512_and_si512(v, low), 4 * j);
            PAIRS16(_mm512_and_si512(_mm512_srli_epi16(v, 4), low), 4 * j + 1);
            PAIRS16(_mm512_and_si512(_mm512_srli_epi16(v, 8), low), 4 * j + 2);
            PAIRS16(_mm512_srli_epi16(v, 12), 4 * j + 3);
        }
        ADD_SETS16(acc);
        const __m256 dA = scale8(db, ds, g, gshift, fmt), dB = scale8(dbB, dsB, g, gshift, fmt);
        SCALE_INTO16(acc, dA, dB);
    }
    FINISH16();
}

#define Q8_VEC16(P)                                                                   \
    _mm512_cvtepi8_epi16(_mm256_inserti128_si256(                                    \
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(blk + b * 256 + (P) * 16))), \
        _mm_loadu_si128((const __m128i *)(blkB + b * 256 + (P) * 16)), 1))

static inline __attribute__((always_inline)) void
NAME(q8_block16)(const int32_t *xq32, const float *xd, const float *xsum, const int8_t *blk,
                 const void *db, const void *mb, const uint16_t *ds, const uint16_t *ms, float *y,
                 int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, nb = K / 32, gshift = super_shift(G);
    const int64_t runs = G == 16 ? 1 : G / 32;
    const int8_t *blkB = blk + 8 * K;
    B_ARGS16;
    __m256 accA[TMAX], accB[TMAX];
    for (int t = 0; t < T; t++) accA[t] = accB[t] = _mm256_setzero_ps();
    for (int64_t b = 0, g = 0, u = 0; b < nb; b++, u = u + 1 == runs ? 0 : u + 1, g += u == 0) {
        PREFETCH_CODES(blk + b * 256, 256);
        PREFETCH_CODES(blkB + b * 256, 256);
        if (G == 16) { /* Q6_K: two sums a run, as the 8-row form */
            __m512i lo[4 * TMAX], hi[4 * TMAX];
            ZERO_SETS16(lo);
            ZERO_SETS16(hi);
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) PAIRS16_INTO(lo, Q8_VEC16(p), p);
            _Pragma("GCC unroll 8") for (int p = 8; p < 16; p++) PAIRS16_INTO(hi, Q8_VEC16(p), p);
            ADD_SETS16(lo);
            ADD_SETS16(hi);
            SCALE_INTO16(lo, scale8(db, ds, 2 * b, gshift, fmt), scale8(dbB, dsB, 2 * b, gshift, fmt));
            SCALE_INTO16(hi, scale8(db, ds, 2 * b + 1, gshift, fmt),
                         scale8(dbB, dsB, 2 * b + 1, gshift, fmt));
        } else {
            __m512i acc[4 * TMAX];
            ZERO_SETS16(acc);
            _Pragma("GCC unroll 16") for (int p = 0; p < 16; p++) PAIRS16(Q8_VEC16(p), p);
            ADD_SETS16(acc);
            SCALE_INTO16(acc, scale8(db, ds, g, gshift, fmt), scale8(dbB, dsB, g, gshift, fmt));
        }
    }
    FINISH16();
}
/* Q6_K's 6-bit form, 16 rows: A's and B's vectors side by side, as q4_block16 */
#define LOAD16(P, PB)                                                                 \
    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(P))), \
                       _mm256_loadu_si256((const __m256i *)(PB)), 1)
#define Q6_TOP16(H, K)                                                                \
    _mm512_and_si512((K) <= 2 ? _mm512_slli_epi16(H, 4 - 2 * (K))                    \
                              : _mm512_srli_epi16(H, 2 * (K) - 4), top)
#define Q6_VEC16(V, S, H, K)                                                          \
    _mm512_sub_epi16(_mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(V, 4 * (S)), low), \
                                     Q6_TOP16(H, K)), off32)
#define Q6_HALF16(ACC, H, J0)                                                         \
    _Pragma("GCC unroll 2") for (int j = (J0); j < (J0) + 2; j++) {                  \
        const __m512i v = LOAD16(run + 32 * j, runB + 32 * j);                       \
        const int k0 = 4 * (j - (J0));                                               \
        PAIRS16_INTO(ACC, Q6_VEC16(v, 0, H, k0), 4 * j);                             \
        PAIRS16_INTO(ACC, Q6_VEC16(v, 1, H, k0 + 1), 4 * j + 1);                     \
        PAIRS16_INTO(ACC, Q6_VEC16(v, 2, H, k0 + 2), 4 * j + 2);                     \
        PAIRS16_INTO(ACC, Q6_VEC16(v, 3, H, k0 + 3), 4 * j + 3);                     \
    }

static inline __attribute__((always_inline)) void
NAME(q6_block16)(const int32_t *xq32, const float *xd, const float *xsum, const uint8_t *blk,
                 const void *db, const void *mb, const uint16_t *ds, const uint16_t *ms, float *y,
                 int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, nb = K / 32, gshift = super_shift(G);
    const uint8_t *blkB = blk + 6 * K;
    B_ARGS16;
    const __m512i low = _mm512_set1_epi16(0x0f), top = _mm512_set1_epi16(0x30),
                  off32 = _mm512_set1_epi16(32);
    __m256 accA[TMAX], accB[TMAX];
    for (int t = 0; t < T; t++) accA[t] = accB[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *run = blk + b * 192, *runB = blkB + b * 192;
        PREFETCH_CODES(run, 192);
        PREFETCH_CODES(runB, 192);
        __m512i lo[4 * TMAX], hi[4 * TMAX];
        ZERO_SETS16(lo);
        ZERO_SETS16(hi);
        const __m512i h0 = LOAD16(run + 128, runB + 128), h1 = LOAD16(run + 160, runB + 160);
        Q6_HALF16(lo, h0, 0)
        Q6_HALF16(hi, h1, 2)
        ADD_SETS16(lo);
        ADD_SETS16(hi);
        SCALE_INTO16(lo, scale8(db, ds, 2 * b, gshift, fmt), scale8(dbB, dsB, 2 * b, gshift, fmt));
        SCALE_INTO16(hi, scale8(db, ds, 2 * b + 1, gshift, fmt),
                     scale8(dbB, dsB, 2 * b + 1, gshift, fmt));
    }
    FINISH16();
}
/* Q5_0's 5-bit form, 16 rows */
#define Q5_BIT16(T5, P)                                                               \
    _mm512_and_si512((P) <= 4 ? _mm512_slli_epi16(T5, 4 - (P))                       \
                              : _mm512_srli_epi16(T5, (P) - 4), five)
#define Q5_VEC16(V, S, T5, P)                                                         \
    _mm512_sub_epi16(_mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(V, 4 * (S)), low), \
                                     Q5_BIT16(T5, P)), off16)

static inline __attribute__((always_inline)) void
NAME(q5_block16)(const int32_t *xq32, const float *xd, const float *xsum, const uint8_t *blk,
                 const void *db, const void *mb, const uint16_t *ds, const uint16_t *ms, float *y,
                 int64_t N, int64_t K, int64_t G, int fmt, const int T) {
    const int64_t groups = K / G, runs = G / 32, nb = K / 32, gshift = super_shift(G);
    const uint8_t *blkB = blk + 5 * K;
    B_ARGS16;
    const __m512i low = _mm512_set1_epi16(0x0f), five = _mm512_set1_epi16(0x10),
                  off16 = _mm512_set1_epi16(16);
    __m256 accA[TMAX], accB[TMAX];
    for (int t = 0; t < T; t++) accA[t] = accB[t] = _mm256_setzero_ps();
    for (int64_t b = 0, g = 0, u = 0; b < nb; b++, u = u + 1 == runs ? 0 : u + 1, g += u == 0) {
        const uint8_t *run = blk + b * 160, *runB = blkB + b * 160;
        PREFETCH_CODES(run, 160);
        PREFETCH_CODES(runB, 160);
        __m512i acc[4 * TMAX];
        ZERO_SETS16(acc);
        const __m512i t5 = LOAD16(run + 128, runB + 128);
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            const __m512i v = LOAD16(run + 32 * j, runB + 32 * j);
            PAIRS16(Q5_VEC16(v, 0, t5, 4 * j), 4 * j);
            PAIRS16(Q5_VEC16(v, 1, t5, 4 * j + 1), 4 * j + 1);
            PAIRS16(Q5_VEC16(v, 2, t5, 4 * j + 2), 4 * j + 2);
            PAIRS16(Q5_VEC16(v, 3, t5, 4 * j + 3), 4 * j + 3);
        }
        ADD_SETS16(acc);
        SCALE_INTO16(acc, scale8(db, ds, g, gshift, fmt), scale8(dbB, dsB, g, gshift, fmt));
    }
    FINISH16();
}
#undef Q5_BIT16
#undef Q5_VEC16
#undef LOAD16
#undef Q6_TOP16
#undef Q6_VEC16
#undef Q6_HALF16
#undef PAIRS16
#undef PAIRS16_INTO
#undef ZERO_SETS16
#undef ADD_SETS16
#undef SCALE_INTO16
#undef B_ARGS16
#undef FINISH16
#undef Q8_VEC16
#define ROW_STEP 16
#define CALL16(CALL, T) CALL(16, T)
#else
#define ROW_STEP 8
#define CALL16(CALL, T) CALL(, T) /* never reached: ROW_STEP is 8 */
#endif

/* Within one parallel region: the threads prepare x's rows between them (int16 runs,
 * their scales, group sums where there are offsets), then take blocks of 8 rows of W, each against x's rows
 * in tiles of up to 4 (T a constant in each case, so the accumulators stay in registers:
 * with 8, sixteen of them do not fit in AVX2's 16 registers and spill). */
#define PREPARE_AND_TILE(CALL)                                                        \
    const int64_t step = M > 2 ? ROW_STEP : 8;                                       \
    _Pragma("omp parallel num_threads(threads) if (threads > 1)")                    \
    {                                                                                \
        /* a block's scales as the tiles read them (block_scales): FMT_SC6's 6-bit      \
         * sub-scales as int8 (in the inner loops a group's unpacking made decode 1.5x   \
         * slower); with more than one tile of x's rows, float32 */                      \
        const int many_ = M > TMAX;                                                  \
        int8_t sc6d_[(fmt & FMT_SC6) ? 16 * gs : 1], sc6m_[(fmt & FMT_SC6) && m ? 16 * gs : 1]; \
        float f32d_[many_ ? 16 * gs : 1], f32m_[many_ && m ? 16 * gs : 1];           \
        _Pragma("omp for schedule(static)")                                          \
        for (int64_t r = 0; r < M; r++) {                                            \
            if (m || (fmt & FMT_MINUS8D)) qgemv_group_sums(x + r * K, xsum + r * gs, 1, K, G); \
            qgemv_int16_rows(x + r * K, xq + r * K, xd + r * nb, 1, K);              \
        }                                                                            \
        _Pragma("omp for schedule(static)")                                          \
        for (int64_t n0 = 0; n0 < N; n0 += step) {                                   \
            const int wide_ = step == 16 && n0 + 16 <= N;                            \
            const void *dN = (const char *)d + n0 / 8 * gs * ss;                     \
            const void *mN = m ? (const char *)m + n0 / 8 * gs * ss : NULL;          \
            const int fmtN = block_scales(&dN, &mN, dsup ? dsup + n0 * sups : NULL,   \
                                          msup ? msup + n0 * sups : NULL, fmt, wide_ ? 2 : 1, \
                                          gs, sups, super_shift(G), sc6d_, sc6m_,     \
                                          many_ ? f32d_ : NULL, f32m_);               \
            for (int64_t r0 = 0; r0 < M; r0 += TMAX) {                               \
                if (wide_)                                                           \
                    switch (M - r0 < TMAX ? M - r0 : TMAX) {                         \
                    case 1: CALL16(CALL, 1); break; case 2: CALL16(CALL, 2); break;          \
                    case 3: CALL16(CALL, 3); break; default: CALL16(CALL, 4); break;         \
                    }                                                                \
                else                                                                 \
                    switch (M - r0 < TMAX ? M - r0 : TMAX) {                         \
                    case 1: CALL(, 1); break; case 2: CALL(, 2); break;              \
                    case 3: CALL(, 3); break; default: CALL(, 4); break;             \
                    }                                                                \
            }                                                                        \
        }                                                                            \
    }

static void NAME(q4_blocks_matmul)(const float *x, const uint8_t *qs, const void *d,
                                   const void *m, const uint16_t *dsup, const uint16_t *msup, float *y,
                                   float *scratch, int64_t M, int64_t N, int64_t K, int64_t G,
                                   int threads, int fmt) {
    const int64_t gs = K / G, nb = K / 32, sups = K / 256, ss = scale_bytes8(fmt);
    float *xsum = scratch, *xd = scratch + M * gs;
    int16_t *xq = (int16_t *)(xd + M * nb);
#define Q4_CALL(W, T) NAME(q4_block##W)((const int32_t *)(xq + r0 * K), xd + r0 * nb, xsum + r0 * gs,            \
                                  qs + n0 * (K / 2), dN, mN, dsup ? dsup + n0 * sups : NULL,  \
                                  msup ? msup + n0 * sups : NULL, y + r0 * N + n0, N, K, G,   \
                                  fmtN, T)
    PREPARE_AND_TILE(Q4_CALL)
#undef Q4_CALL
}

static void NAME(q8_blocks_matmul)(const float *x, const int8_t *qs, const void *d,
                                   const void *m, const uint16_t *dsup, const uint16_t *msup, float *y,
                                   float *scratch, int64_t M, int64_t N, int64_t K, int64_t G,
                                   int threads, int fmt) {
    const int64_t gs = K / G, nb = K / 32, sups = K / 256, ss = scale_bytes8(fmt);
    float *xsum = scratch, *xd = scratch + M * gs;
    int16_t *xq = (int16_t *)(xd + M * nb);
#define Q8_CALL(W, T) NAME(q8_block##W)((const int32_t *)(xq + r0 * K), xd + r0 * nb, xsum + r0 * gs, qs + n0 * K, \
                                  dN, mN, dsup ? dsup + n0 * sups : NULL,                      \
                                  msup ? msup + n0 * sups : NULL, y + r0 * N + n0,             \
                                  N, K, G, fmtN, T)
    PREPARE_AND_TILE(Q8_CALL)
#undef Q8_CALL
}

/* One block of 8 rows of Q6_K's (bits 6) or Q5_0's (bits 5) packed runs as the int8
 * layout (256 bytes a run), the values the packed kernels make in registers */
static void NAME(unpack8)(const uint8_t *blk, int8_t *out, int64_t nb, int bits) {
    const __m256i low = _mm256_set1_epi16(0x0f), top = _mm256_set1_epi16(0x30),
                  five = _mm256_set1_epi16(0x10), off32 = _mm256_set1_epi16(32),
                  off16 = _mm256_set1_epi16(16);
    const int64_t run_bytes = bits == 6 ? 192 : 160;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *run = blk + b * run_bytes;
        _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(run + 32 * j));
            const __m256i h = _mm256_loadu_si256(  /* Q6_K: two vectors of top bits; Q5_0: one */
                (const __m256i *)(run + 128 + (bits == 6 ? 32 * (j / 2) : 0)));
            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) {
                const int p = 4 * j + s;
                const __m256i w = bits == 6 ? Q6_VEC(v, s, h, p % 8) : Q5_VEC(v, s, h, p);
                _mm_storeu_si128((__m128i *)(out + b * 256 + p * 16),
                                 _mm_packs_epi16(_mm256_castsi256_si128(w),
                                                 _mm256_extracti128_si256(w, 1)));
            }
        }
    }
}

/* as q8_blocks_matmul, on Q6_K's (bits 6: 6K bytes a block of 8 rows) or Q5_0's (bits 5:
 * 5K) packed codes. A pass of a few rows unpacks in registers (decode reads 6 or 5 bits a
 * weight from memory); one of many rows would unpack each block once per tile of x's
 * rows (a 512-token prompt: 128 times), so there each block is unpacked once into the
 * int8 layout and the int8 kernels take it: the same values, the same bits. */
static void NAME(packed_blocks_matmul)(const float *x, const uint8_t *qs, const void *d,
                                       const void *m, const uint16_t *dsup, const uint16_t *msup,
                                       float *y, float *scratch, int64_t M, int64_t N, int64_t K,
                                       int64_t G, int threads, int fmt, int bits) {
    const int64_t gs = K / G, nb = K / 32, sups = K / 256, ss = scale_bytes8(fmt);
    const int64_t row_bytes = K / 8 * bits;
    float *xsum = scratch, *xd = scratch + M * gs;
    int16_t *xq = (int16_t *)(xd + M * nb);
    if (M <= 2 * TMAX) {
#define PACKED_CALL(W, T) do {                                                        \
        const uint16_t *ds_ = dsup ? dsup + n0 * sups : NULL, *ms_ = msup ? msup + n0 * sups : NULL; \
        if (bits == 6)                                                               \
            NAME(q6_block##W)((const int32_t *)(xq + r0 * K), xd + r0 * nb, xsum + r0 * gs, \
                              qs + n0 * row_bytes, dN, mN, ds_, ms_, y + r0 * N + n0, N, K, G, fmtN, T); \
        else                                                                         \
            NAME(q5_block##W)((const int32_t *)(xq + r0 * K), xd + r0 * nb, xsum + r0 * gs, \
                              qs + n0 * row_bytes, dN, mN, ds_, ms_, y + r0 * N + n0, N, K, G, fmtN, T); \
    } while (0)
        PREPARE_AND_TILE(PACKED_CALL)
        return;
    }
    const int64_t step = ROW_STEP;
    _Pragma("omp parallel num_threads(threads) if (threads > 1)")
    {
        int8_t *buf = malloc((size_t)(16 * K));
        float f32d_[16 * gs], f32m_[m ? 16 * gs : 1]; /* M > 2 * TMAX here */
        _Pragma("omp for schedule(static)")
        for (int64_t r = 0; r < M; r++) {
            if (m || (fmt & FMT_MINUS8D)) qgemv_group_sums(x + r * K, xsum + r * gs, 1, K, G);
            qgemv_int16_rows(x + r * K, xq + r * K, xd + r * nb, 1, K);
        }
        _Pragma("omp for schedule(static)")
        for (int64_t n0 = 0; n0 < N; n0 += step) {
            const int wide = step == 16 && n0 + 16 <= N;
            const void *dN = (const char *)d + n0 / 8 * gs * ss;
            const void *mN = m ? (const char *)m + n0 / 8 * gs * ss : NULL;
            const int fmtN = block_scales(&dN, &mN, dsup ? dsup + n0 * sups : NULL,
                                          msup ? msup + n0 * sups : NULL, fmt, wide ? 2 : 1,
                                          gs, sups, super_shift(G), NULL, NULL, f32d_, f32m_);
            /* (no FMT_SC6 buffers: weight_quant packs 6-bit sub-scales for Q4_K/Q5_K's
             * int4/int8 codes only, never beside packed Q6_K/Q5_0 codes) */
            if (buf) {
                NAME(unpack8)(qs + n0 * row_bytes, buf, nb, bits);
                if (wide) NAME(unpack8)(qs + (n0 + 8) * row_bytes, buf + 8 * K, nb, bits);
            }
            for (int64_t r0 = 0; r0 < M; r0 += TMAX) {
                const int T = M - r0 < TMAX ? (int)(M - r0) : TMAX;
#define UNPACKED_CALL(W, T) NAME(q8_block##W)((const int32_t *)(xq + r0 * K), xd + r0 * nb, \
                              xsum + r0 * gs, buf, dN, mN,                                     \
                              dsup ? dsup + n0 * sups : NULL, msup ? msup + n0 * sups : NULL, \
                              y + r0 * N + n0, N, K, G, fmtN, T)
#define ANY_CALL(W, T) do { if (buf) UNPACKED_CALL(W, T); else PACKED_CALL(W, T); } while (0)
                if (wide)
                    switch (T) {
                    case 1: CALL16(ANY_CALL, 1); break; case 2: CALL16(ANY_CALL, 2); break;
                    case 3: CALL16(ANY_CALL, 3); break; default: CALL16(ANY_CALL, 4); break;
                    }
                else
                    switch (T) {
                    case 1: ANY_CALL(, 1); break; case 2: ANY_CALL(, 2); break;
                    case 3: ANY_CALL(, 3); break; default: ANY_CALL(, 4); break;
                    }
#undef UNPACKED_CALL
#undef ANY_CALL
            }
        }
        free(buf);
    }
#undef PACKED_CALL
}

#undef PAIRS_INTO
#undef SETS
#undef ZERO_SETS
#undef ADD_SETS
#undef XPAIR
#undef PAIRS
#undef FOR_RUNS
#undef ADD_OFFSETS_AND_STORE
#undef Q8_VEC
#undef PREPARE_AND_TILE
#undef Q6_TOP
#undef Q6_VEC
#undef Q5_BIT
#undef Q5_VEC
#undef ROW_STEP
#undef CALL16
