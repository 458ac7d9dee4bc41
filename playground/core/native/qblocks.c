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
 * p, byte 2c+e is row c's input 2p+e. Scales and offsets: per group, the 8 rows' values
 * in a row, stored as the FMT_* below say (fp16; float32; or a K-quant's sub-scales, int8
 * or 6-bit, with an fp16 per super-block of 256, as the file holds them). int8 codes may carry
 * offsets too (Q5_K, Q5_1: w = d*q + m) and groups of 16 (Q6_K). A file's Q6_K and Q5_0
 * codes may stay at their 6 and 5 bits (FMT_Q6, FMT_Q5): per run, the int4 layout's 128
 * bytes of low nibbles, then the top bits (qblocks_impl.h's q6_block, q5_block), 192 and
 * 160 bytes where int8 takes 256; unpacked in registers to the int8 form's very values.
 * (weight_quant.py's _native_pack and packed_codes write it.)
 *
 * A row's result does not depend on the other rows of the tile, or on the tile's size:
 * integer sums are exact, and each output's float sum runs over the runs in order, so a
 * greedy reply is bit for bit the same alone or batched.
 */
#define _GNU_SOURCE /* syscall(), for AMX's tile state */
#include <stdint.h>
#include <stdlib.h>
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
/* GCC's -O3 loaded a run's x pairs (and made its products) well ahead of their use,
 * more than 16 registers hold, and spilled them to the stack and back: register-pressure
 * aware scheduling before allocation keeps them in registers (see PAIRS_INTO). */
#pragma GCC optimize("schedule-insns", "sched-pressure")
#include <immintrin.h>

void qgemv_int16_rows(const float *x, int16_t *xq, float *xd, int64_t M, int64_t K);
void qgemv_group_sums(const float *x, float *xsum, int64_t M, int64_t K, int64_t G);

#define TMAX 4

/* the codes a few runs ahead (they run on into the next block of rows, which follows in
 * memory): the hardware prefetcher alone left a thread's stream at ~8 GB/s from DRAM */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 2048
#endif
#define PREFETCH_CODES(P, BYTES)                                                      \
    for (int pf = 0; pf < (BYTES); pf += 64)                                         \
        _mm_prefetch((const char *)(P) + PREFETCH_AHEAD + pf, _MM_HINT_T0)

/* How a matrix's scales (and offsets) are stored, per group of 8 rows: */
#define FMT_FP16 0    /* fp16 (GGUF's own d and m; our int4/int8 quantizers) */
#define FMT_F32 1     /* float32 */
#define FMT_SUPER 2   /* int8 sub-scales times an fp16 per super-block of 256 inputs (the
                       * file's d; d*sc is exact in float32, where the kernels form it) */
#define FMT_MINUS8D 4 /* flag: offsets are -8*d (Q4_0), computed, not stored */
#define FMT_Q6 8      /* flag: int8 codes are Q6_K's, kept at 6 bits (qblocks_impl.h's q6_block) */
#define FMT_Q5 16     /* flag: int8 codes are Q5_0's, kept at 5 bits (q5_block) */
#define FMT_SC6 32    /* flag with FMT_SUPER: the sub-scales (and mins) are Q4_K's and Q5_K's
                       * 6-bit ones, in the file's 12 bytes a super-block per row (a byte each
                       * made a 3B Q4_K_M file's weights 38 MB bigger than the file). Per block
                       * of 8 rows and super-block, its 64 values v (group-major, 8 rows a
                       * group) in 48 bytes: byte k < 32 holds v[k] & 15 and (v[k + 32] & 15)
                       * << 4; byte 32 + k (k < 16), field f of 2 bits, holds v[k + 16f] >> 4.
                       * Every kernel expands a block's to the int8 form once (sc6_expand),
                       * before scale8 reads it.
                       * Groups of 32 only (8 a super-block): weight_quant packs it for no other */

/* bytes of one group's scales for a block of 8 rows */
static inline int64_t scale_bytes8(int fmt) {
    if ((fmt & 3) == FMT_SUPER) return fmt & FMT_SC6 ? 6 : 8;
    return (fmt & 3) == FMT_F32 ? 32 : 16;
}

/* log2 of the groups in a super-block of 256 inputs (FMT_SUPER's G is 16 or 32): a shift,
 * since a 64-bit division each run cost more than the run's multiply-adds */
static inline int super_shift(int64_t G) {
    return G <= 256 && 256 % G == 0 ? __builtin_ctzll((unsigned long long)(256 / G)) : 0;
}

/* the 8 rows' scales of group g */
static inline __attribute__((always_inline)) __m256
scale8(const void *p, const uint16_t *sup, int64_t g, int gshift, int fmt) {
    if ((fmt & 3) == FMT_FP16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + g * 8)));
    if ((fmt & 3) == FMT_F32) return _mm256_loadu_ps((const float *)p + g * 8);
    /* FMT_SC6 never reaches here: the kernels expand it to this int8 form first */
    const __m256i sub = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)p + g * 8)));
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sup + (g >> gshift) * 8)));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(sub));
}

/* FMT_SC6's sub-scales of `supers` super-blocks (48 bytes each) as int8 (64 each): the
 * form scale8 reads a byte a value, so the kernels' inner loops stay as they are */
static inline __attribute__((always_inline)) void
sc6_expand(const void *p, int8_t *out, int64_t supers) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
    const uint8_t *in = p;
    for (int64_t s = 0; s < supers; s++, in += 48, out += 64) {
        const __m256i lo = _mm256_loadu_si256((const __m256i *)in);
        const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(in + 32)));
        /* fields 0 and 1 (values 0..15, 16..31), then 2 and 3, to each byte's low bits */
        const __m256i h01 = _mm256_srlv_epi32(hi, _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2));
        const __m256i h23 = _mm256_srlv_epi32(hi, _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6));
        _mm256_storeu_si256((__m256i *)out, _mm256_or_si256(
            _mm256_and_si256(lo, m4), _mm256_slli_epi16(_mm256_and_si256(h01, m2), 4)));
        _mm256_storeu_si256((__m256i *)(out + 32), _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4),
            _mm256_slli_epi16(_mm256_and_si256(h23, m2), 4)));
    }
}

/* a block's (or two neighbouring blocks') scales of every group as float32, each group's 8
 * formed by scale8 itself, so the kernels read the very floats they would form (the same
 * bits): a pass of many rows of x formed them again in every tile of 4 rows (a K-quant
 * group's: its sub-scales' conversion and the super-block's fp16, five instructions a run
 * of 32 inputs, beside the run's 8 multiply-adds a row of x) */
static inline void scales_f32(const void *p, const uint16_t *sup, float *out, int64_t groups,
                              int64_t sups, int gshift, int fmt, int blocks) {
    for (int k = 0; k < blocks; k++)
        for (int64_t g = 0; g < groups; g++)
            _mm256_storeu_ps(out + (k * groups + g) * 8,
                             scale8((const char *)p + k * groups * scale_bytes8(fmt),
                                    sup ? sup + k * 8 * sups : NULL, g, gshift, fmt));
}

/* A block's (or two neighbouring blocks') scales and offsets as the kernels will read them;
 * returns their fmt. FMT_SC6 is expanded to int8 (sc6d, sc6m: 8 * groups bytes a block),
 * and where f32d is given, every group's to float32 (f32d, f32m: 8 * groups floats a block),
 * once for all the tiles of x's rows. */
static inline int block_scales(const void **d, const void **m, const uint16_t *ds,
                               const uint16_t *ms, int fmt, int blocks, int64_t groups,
                               int64_t sups, int gshift, int8_t *sc6d, int8_t *sc6m,
                               float *f32d, float *f32m) {
    if (fmt & FMT_SC6) {
        sc6_expand(*d, sc6d, blocks * groups / 8);
        *d = sc6d;
        if (*m) sc6_expand(*m, sc6m, blocks * groups / 8), *m = sc6m;
        fmt &= ~FMT_SC6;
    }
    if (f32d && (fmt & 3) != FMT_F32) {
        scales_f32(*d, ds, f32d, groups, sups, gshift, fmt, blocks);
        *d = f32d;
        if (*m) scales_f32(*m, ms, f32m, groups, sups, gshift, fmt, blocks), *m = f32m;
        fmt = (fmt & ~3) | FMT_F32;
    }
    return fmt;
}

#pragma GCC push_options
#pragma GCC target("tune=znver3")
#define NAME(f) f##_avx2
#define MADD_ADD(acc, w, x) _mm256_add_epi32(acc, _mm256_madd_epi16(w, x))
#include "qblocks_impl.h"
#undef NAME
#undef MADD_ADD
#pragma GCC pop_options

/* The same bodies for CPUs with AVX-512 VNNI (Zen 4/5, Ice Lake and later), chosen at run
 * time: one build (the packaged app's too) carries both, and an AVX2-only CPU never runs
 * an instruction it lacks. */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512vnni")
#define NAME(f) f##_vnni
#define MADD_ADD(acc, w, x) _mm256_dpwssd_epi32(acc, w, x)
#define WIDE
#include "qblocks_impl.h"
#undef WIDE
#undef NAME
#undef MADD_ADD

#pragma GCC pop_options

#include <cpuid.h>

#include "qblocks_amx.h"

/* 0: not decided yet, 1: AVX2, 2: AVX-512 VNNI (on 256-bit registers: 512-bit ones need
 * x's pairs in two halves, and without the broadcast buffer that costs more than it saves;
 * measured 39.5 ms a token against 23.9 on a 1B Q4_K_M). qblocks_set_isa(0) decides from
 * the CPU; 1 forces AVX2 (benchmarks and tests compare them: the same bits on each). */
static int isa;

/* 3: AMX-INT8 tiles for passes of many rows (qblocks_amx.h), AVX-512 VNNI for the others;
 * only where the CPU has the tiles and Linux grants their state. qblocks_set_isa(2) keeps
 * VNNI alone (tests compare the two: the same bits). */
static int amx_usable(void) {
#ifdef QBLOCKS_AMX
    static int usable = -1;
    if (usable < 0) {
        unsigned a, b, c, d;
        const int tiles = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1) && (d >> 25 & 1);
        usable = tiles && amx_permitted();
    }
    return usable;
#else
    return 0;
#endif
}

int qblocks_set_isa(int want) {
    __builtin_cpu_init();
    const int vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl")
                     && __builtin_cpu_supports("avx512bw");
    isa = (want == 1 || !vnni) ? 1 : (want != 2 && amx_usable()) ? 3 : 2;
    return isa;
}

int qblocks_isa(void) { return isa ? isa : qblocks_set_isa(0); }

static int64_t amx_calls; /* products run on the tiles (tests check that they did) */

int64_t qblocks_amx_calls(void) { return __atomic_load_n(&amx_calls, __ATOMIC_RELAXED); }

/* the product on the tiles where they take it (1), or nothing done (0); form: 1 int4,
 * 0 int8, 5 Q5_0's 5-bit codes, 6 Q6_K's 6-bit ones */
static int amx_ran(const float *x, const void *qs, int q4, const void *d, const void *m,
                   const uint16_t *dsup, const uint16_t *msup, float *y, float *scratch, int64_t M,
                   int64_t N, int64_t K, int64_t G, int threads, int fmt) {
#ifdef QBLOCKS_AMX
    if (qblocks_isa() != 3 || M < AMX_MIN_ROWS || N % 16 || K % 32) return 0;
    if (G % 32 && !(G == 16 && !m)) return 0; /* groups of 16 only without offsets (Q6_K) */
    __atomic_fetch_add(&amx_calls, 1, __ATOMIC_RELAXED);
    amx_blocks_matmul(x, qs, q4, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt);
    return 1;
#else
    return 0; /* built without the tiles (not GCC 11+ on Linux) */
#endif
}

/* scratch: at least M*(K/G + K/32 + K/2) floats. d, m (NULL: none) as fmt says;
 * dsup, msup: FMT_SUPER's fp16 per super-block (NULL otherwise) */
void q4_blocks_matmul(const float *x, const uint8_t *qs, const void *d, const void *m,
                      const uint16_t *dsup, const uint16_t *msup, float *y, float *scratch, int64_t M,
                      int64_t N, int64_t K, int64_t G, int threads, int fmt) {
    if (amx_ran(x, qs, 1, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt)) return;
    if (qblocks_isa() >= 2)
        q4_blocks_matmul_vnni(x, qs, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt);
    else q4_blocks_matmul_avx2(x, qs, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt);
}

/* as q4_blocks_matmul, for int8 codes; G: 16 or a multiple of 32 (FMT_Q6: Q6_K's codes at
 * 6 bits, G 16; FMT_Q5: Q5_0's at 5) */
void q8_blocks_matmul(const float *x, const int8_t *qs, const void *d, const void *m,
                      const uint16_t *dsup, const uint16_t *msup, float *y, float *scratch, int64_t M,
                      int64_t N, int64_t K, int64_t G, int threads, int fmt) {
    const uint8_t *packed = (const uint8_t *)qs;
    if (fmt & (FMT_Q6 | FMT_Q5)) {
        const int bits = fmt & FMT_Q6 ? 6 : 5;
        if (amx_ran(x, qs, bits, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt))
            return;
        if (qblocks_isa() >= 2)
            packed_blocks_matmul_vnni(x, packed, d, m, dsup, msup, y, scratch, M, N, K, G,
                                      threads, fmt, bits);
        else packed_blocks_matmul_avx2(x, packed, d, m, dsup, msup, y, scratch, M, N, K, G,
                                       threads, fmt, bits);
        return;
    }
    if (amx_ran(x, qs, 0, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt)) return;
    if (qblocks_isa() >= 2)
        q8_blocks_matmul_vnni(x, qs, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt);
    else q8_blocks_matmul_avx2(x, qs, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt);
}
#else
int qblocks_set_isa(int want) { (void)want; return 0; }
int qblocks_isa(void) { return 0; }
int64_t qblocks_amx_calls(void) { return 0; }
#endif
