/* The blocked products of many rows on AMX tiles (Intel Sapphire Rapids and later),
 * included by qblocks.c after its AVX-512 VNNI copy; chosen at run time for passes of
 * AMX_MIN_ROWS rows or more (prompts, batches) where the CPU and the kernel allow it.
 *
 * Why: with int16 activations (exact to the float model) vpdpwssd gives 32 products an
 * instruction, and the prompt kernels ran at ~23 a cycle a core, against llama.cpp's int8
 * activations at twice that. AMX multiplies int8 tiles only, so x's int16 values are split
 * into a signed high byte and an unsigned low byte, x = 256*hi + lo: two exact tile
 * products (tdpbssd for hi x codes, tdpbusd for lo x codes) give, per run of 32 inputs,
 * 256*sum_hi + sum_lo = the very integer sum the VNNI kernels make. Each output's float
 * steps are then theirs, in their order (per run: d*xd, one fused multiply-add; the
 * offsets after the runs, as finish() adds them), so the bits are the same, alone or in a
 * tile, on either path (tests compare them).
 *
 * Tiles: x's high and low bytes, 16 rows x one run (each tile's 512 bytes together);
 * W's codes for 16 output rows x one run in AMX's layout (8 rows of 64 bytes: 4 inputs
 * of each output); two 16 x 16 int32 sums. A thread unpacks a block of 16 output rows'
 * codes for every run once, and their scales for every group, then takes x's rows 16 at
 * a time through them with 16 float sums in registers; a run's sums go through memory
 * (tiles have no other way to the vector registers), two runs' buffers in turn so the
 * tile unit works on one run while the float sums take the one before. Measured on this
 * Xeon, 2 threads, 512 rows of x: a 8192 x 2048 Q4_K matrix 1.6-1.9x the VNNI kernel's
 * speed, Q8_0 1.7x (benchmarks/BENCHMARKS.md). Q6_K's groups of 16 take each run in two
 * halves of 16 inputs (tiles of 16 bytes a row of x, 4 rows of codes), two sums a run
 * scaled in the VNNI kernel's order.
 */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__linux__)
#define QBLOCKS_AMX 1
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define AMX_MIN_ROWS 16

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,amx-tile,amx-int8")

/* Linux hands out the tile state only on request, once a process (else SIGILL) */
static int amx_permitted(void) {
    unsigned long bitmask = 0;
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */))
        return 0;
    return syscall(SYS_arch_prctl, 0x1022 /* ARCH_GET_XCOMP_PERM */, &bitmask) == 0
           && (bitmask & (1UL << 18));
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

/* half: groups of 16 (Q6_K), each run in two halves: tiles 0-2 then take 16 inputs, 5 and
 * 6 are the second half's sums and 7 its codes */
static void amx_configure(int half) {
    TileConfig c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    const int inputs = half ? 16 : 32;
    c.rows[0] = 16, c.colsb[0] = inputs;    /* x's high bytes */
    c.rows[1] = 16, c.colsb[1] = inputs;    /* x's low bytes */
    c.rows[2] = inputs / 4, c.colsb[2] = 64; /* codes: 16 outputs x 4 inputs a row */
    c.rows[3] = 16, c.colsb[3] = 64;        /* sums of the high bytes */
    c.rows[4] = 16, c.colsb[4] = 64;        /* sums of the low bytes */
    if (half) {
        c.rows[5] = 16, c.colsb[5] = 64, c.rows[6] = 16, c.colsb[6] = 64;
        c.rows[7] = 4, c.colsb[7] = 64;
    }
    _tile_loadconfig(&c);
}

/* a run of the 16 output rows n0.. (blocks A and A + 8 rows) in AMX's layout: row kk of
 * the tile, 4 bytes for output n, holds n's inputs 4kk .. 4kk + 3 */
static inline void amx_codes_q4(const uint8_t *blkA, const uint8_t *blkB, int64_t b, int8_t *out) {
    /* vector j, 32-bit lane c = bytes p0..p3: c's inputs 8j + [lo p0, lo p2, hi p0, hi p2]
     * and 8j + 4 + [lo p1, lo p3, hi p1, hi p3] (qblocks.c's int4 layout) */
    const __m512i low = _mm512_set1_epi8(0x0f);
    const __m512i order = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15));
    const __m512i words = _mm512_set1_epi32(0xffff);
    for (int j = 0; j < 4; j++) {
        const __m512i v = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(blkA + b * 128 + j * 32))),
            _mm256_loadu_si256((const __m256i *)(blkB + b * 128 + j * 32)), 1);
        const __m512i L = _mm512_shuffle_epi8(_mm512_and_si512(v, low), order);
        const __m512i H = _mm512_shuffle_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), low), order);
        _mm512_storeu_si512(out + (2 * j) * 64,
                            _mm512_or_si512(_mm512_and_si512(L, words), _mm512_slli_epi32(H, 16)));
        _mm512_storeu_si512(out + (2 * j + 1) * 64,
                            _mm512_or_si512(_mm512_srli_epi32(L, 16), _mm512_andnot_si512(words, H)));
    }
}

static inline void amx_codes_q8(const int8_t *blkA, const int8_t *blkB, int64_t b, int8_t *out) {
    /* vector p, bytes 2c, 2c+1: c's inputs 2p, 2p + 1 (qblocks.c's int8 layout) */
    for (int kk = 0; kk < 8; kk++) {
        const int8_t *src[2] = {blkA + b * 256, blkB + b * 256};
        for (int h = 0; h < 2; h++) {
            const __m128i v0 = _mm_loadu_si128((const __m128i *)(src[h] + (2 * kk) * 16));
            const __m128i v1 = _mm_loadu_si128((const __m128i *)(src[h] + (2 * kk + 1) * 16));
            _mm_storeu_si128((__m128i *)(out + kk * 64 + h * 32), _mm_unpacklo_epi16(v0, v1));
            _mm_storeu_si128((__m128i *)(out + kk * 64 + h * 32 + 16), _mm_unpackhi_epi16(v0, v1));
        }
    }
}

/* Q5_0's (bits 5) or Q6_K's (bits 6) packed run: each block's run as the int8 layout (the
 * VNNI kernels' unpack8), then as int8's */
static inline void amx_codes_packed(const uint8_t *blkA, const uint8_t *blkB, int64_t b, int bits,
                                    int8_t *out) {
    int8_t runA[256], runB[256];
    const int64_t run_bytes = bits == 6 ? 192 : 160;
    unpack8_vnni(blkA + b * run_bytes, runA, 1, bits);
    unpack8_vnni(blkB + b * run_bytes, runB, 1, bits);
    amx_codes_q8(runA, runB, 0, out);
}

/* the 16 rows' scales of group g, as two scale8() */
static inline __m512 amx_scale16(const void *pA, const uint16_t *supA, const void *pB,
                                 const uint16_t *supB, int64_t g, int gshift, int fmt) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(scale8(pA, supA, g, gshift, fmt)),
                              scale8(pB, supB, g, gshift, fmt), 1);
}

/* x's 16 rows' high and low bytes from offset XO of run b (tiles 0, 1) times the code
 * tile CT loaded from CP: the high and low bytes' sums (tiles SH, SL), stored at OUT and
 * OUT + 256 (the tile numbers are instructions' immediates, hence a macro) */
#define AMX_PRODUCT(XO, CT, CP, SH, SL, OUT) do {                                    \
        _tile_loadd(0, xhi + r0 * K + b * 512 + (XO), 32);                          \
        _tile_loadd(1, xlo + r0 * K + b * 512 + (XO), 32);                          \
        _tile_loadd(CT, (CP), 64);                                                  \
        _tile_zero(SH);                                                             \
        _tile_zero(SL);                                                             \
        _tile_dpbssd(SH, 0, CT);                                                    \
        _tile_dpbusd(SL, 1, CT);                                                    \
        _tile_stored(SH, (OUT), 64);                                                \
        _tile_stored(SL, (OUT) + 256, 64);                                          \
    } while (0)

/* row t's integer sums of a run as floats: 256 * (high bytes') + (low bytes') */
static inline __m512 amx_sum(const int32_t *sums, int t) {
    return _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(sums + t * 16), 8),
                                               _mm512_load_si512(sums + 256 + t * 16)));
}

/* y = x . W^T for codes in qblocks.c's layout (q4: 1 int4, 5 Q5_0's 5 bits, 6 Q6_K's 6 bits,
 * 0 int8), G a multiple of 32 or 16 without offsets, N a multiple of 16; scratch as the
 * VNNI kernels' (x's int16 rows, their scales, group sums) */
static void amx_blocks_matmul(const float *x, const void *qs, int q4, const void *d,
                              const void *m, const uint16_t *dsup, const uint16_t *msup, float *y,
                              float *scratch, int64_t M, int64_t N, int64_t K, int64_t G,
                              int threads, int fmt) {
    const int64_t gs = K / G, nb = K / 32, sups = K / 256, ss = scale_bytes8(fmt);
    const int64_t runs = G / 32, gshift = super_shift(G), Mpad = (M + 15) / 16 * 16;
    const int64_t row_bytes = q4 == 1 ? K / 2 : q4 >= 5 ? K / 8 * q4 : K;
    const int half = G == 16;
    float *xsum = scratch, *xd = scratch + M * gs;
    int16_t *xq = (int16_t *)(xd + M * nb);
    /* x's bytes, then each thread's unpacked codes, two runs' tiles of sums (four a run in
     * halves) and every group's 16 scales and offsets' scales */
    const int64_t per_thread = nb * 512 + 8 * 1024 + 2 * gs * 64;
    int8_t *xhi = aligned_alloc(64, (size_t)((Mpad * K * 2 + (threads > 1 ? threads : 1) * per_thread + 63) / 64 * 64));
    if (!xhi) { /* no memory for the split: the VNNI path, same bits */
        if (q4 == 1) q4_blocks_matmul_vnni(x, qs, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt);
        else if (q4 >= 5) packed_blocks_matmul_vnni(x, qs, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt, q4);
        else q8_blocks_matmul_vnni(x, qs, d, m, dsup, msup, y, scratch, M, N, K, G, threads, fmt);
        return;
    }
    uint8_t *xlo = (uint8_t *)(xhi + Mpad * K);
    _Pragma("omp parallel num_threads(threads) if (threads > 1)")
    {
        _Pragma("omp for schedule(static)")
        for (int64_t r = 0; r < Mpad; r++) {
            if (r >= M) { /* tile padding: zeros, never stored */
                for (int64_t b = 0; b < nb; b++) {
                    memset(xhi + (r / 16) * 16 * K + b * 512 + (r % 16) * 32, 0, 32);
                    memset(xlo + (r / 16) * 16 * K + b * 512 + (r % 16) * 32, 0, 32);
                }
                continue;
            }
            if (m || (fmt & FMT_MINUS8D)) qgemv_group_sums(x + r * K, xsum + r * gs, 1, K, G);
            qgemv_int16_rows(x + r * K, xq + r * K, xd + r * nb, 1, K);
            /* each tile's bytes together: [16 rows][run][row in tile][32] */
            int8_t *hi_row = xhi + (r / 16) * 16 * K + (r % 16) * 32;
            uint8_t *lo_row = xlo + (r / 16) * 16 * K + (r % 16) * 32;
            for (int64_t b = 0; b < nb; b++)
                for (int k = 0; k < 32; k++) {
                    hi_row[b * 512 + k] = (int8_t)(xq[r * K + b * 32 + k] >> 8);
                    lo_row[b * 512 + k] = (uint8_t)(xq[r * K + b * 32 + k] & 0xff);
                }
        }
#ifdef _OPENMP
        int8_t *codes = xhi + Mpad * K * 2 + omp_get_thread_num() * per_thread;
#else
        int8_t *codes = xhi + Mpad * K * 2;
#endif
        int32_t *sums = (int32_t *)(codes + nb * 512); /* two runs' high and low sums */
        float *dsc = (float *)(sums + 2048), *msc = dsc + gs * 16; /* a group's 16 scales */
        int8_t sc6d[(fmt & FMT_SC6) ? 16 * gs : 1], sc6m[(fmt & FMT_SC6) && m ? 16 * gs : 1];
        amx_configure(half);
        _Pragma("omp for schedule(static)")
        for (int64_t n0 = 0; n0 < N; n0 += 16) {
            const char *blkA = (const char *)qs + n0 * row_bytes, *blkB = blkA + 8 * row_bytes;
            for (int64_t b = 0; b < nb; b++) {
                if (q4 == 1) amx_codes_q4((const uint8_t *)blkA, (const uint8_t *)blkB, b, codes + b * 512);
                else if (q4 >= 5) amx_codes_packed((const uint8_t *)blkA, (const uint8_t *)blkB, b, q4, codes + b * 512);
                else amx_codes_q8((const int8_t *)blkA, (const int8_t *)blkB, b, codes + b * 512);
            }
            const void *dbA = (const char *)d + n0 / 8 * gs * ss;
            const void *mbA = m ? (const char *)m + n0 / 8 * gs * ss : NULL;
            int fmtN = fmt;
            if (fmt & FMT_SC6) { /* the two blocks' 6-bit values as int8, as the VNNI kernels */
                sc6_expand(dbA, sc6d, 2 * gs / 8);
                if (mbA) sc6_expand(mbA, sc6m, 2 * gs / 8);
                dbA = sc6d, mbA = mbA ? sc6m : NULL, fmtN = fmt & ~FMT_SC6;
            }
            const int64_t sb = gs * scale_bytes8(fmtN); /* one block of 8 rows' scales */
            const void *dbB = (const char *)dbA + sb, *mbB = mbA ? (const char *)mbA + sb : NULL;
            const uint16_t *dsA = dsup ? dsup + n0 * sups : NULL, *dsB = dsup ? dsA + 8 * sups : NULL;
            const uint16_t *msA = msup ? msup + n0 * sups : NULL, *msB = msup ? msA + 8 * sups : NULL;
            /* the 16 rows' scales (and offsets' scales) of every group, once a block:
             * K-quants make each from a sub-scale and a super-block's float */
            const int offsets = m || (fmt & FMT_MINUS8D);
            for (int64_t g = 0; g < gs; g++) {
                _mm512_store_ps(dsc + g * 16, amx_scale16(dbA, dsA, dbB, dsB, g, (int)gshift, fmtN));
                if (m) _mm512_store_ps(msc + g * 16, amx_scale16(mbA, msA, mbB, msB, g, (int)gshift, fmtN));
            }
            const int minus8d = fmt & FMT_MINUS8D; /* Q4_0: the offset is -8d, as finish() */
            const float *osc = minus8d ? dsc : msc;
            const float ofactor = minus8d ? -8.0f : 1.0f;
            for (int64_t r0 = 0; r0 < M; r0 += 16) {
                const int T = M - r0 < 16 ? (int)(M - r0) : 16;
                __m512 acc[16];
                for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
                /* run b's tile products are stored while run b - 1's sums, stored the
                 * pass before into the other buffer, go into the float sums: the vector
                 * work and the tile unit overlap instead of waiting on each other */
                int64_t gp = 0;
                for (int64_t b = 0, g = 0, u = 0; b <= nb;
                     gp = g, b++, u = u + 1 == runs ? 0 : u + 1, g += u == 0) {
                    if (b < nb && half) { /* inputs 0-15 on tiles 0-4, 16-31 on 0, 1, 5-7 */
                        AMX_PRODUCT(0, 2, codes + b * 512, 3, 4, sums + (b & 1) * 1024);
                        AMX_PRODUCT(16, 7, codes + b * 512 + 256, 5, 6, sums + (b & 1) * 1024 + 512);
                    } else if (b < nb) {
                        AMX_PRODUCT(0, 2, codes + b * 512, 3, 4, sums + (b & 1) * 512);
                    }
                    if (b == 0) continue;
                    if (half) { /* the two halves' sums, each by its own d: q8_block's order */
                        const int32_t *s = sums + ((b - 1) & 1) * 1024;
                        const __m512 dlo = _mm512_load_ps(dsc + (2 * b - 2) * 16);
                        const __m512 dhi = _mm512_load_ps(dsc + (2 * b - 1) * 16);
                        for (int t = 0; t < T; t++) {
                            const __m512 xs = _mm512_set1_ps(xd[(r0 + t) * nb + b - 1]);
                            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dlo, xs), amx_sum(s, t), acc[t]);
                            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dhi, xs), amx_sum(s + 512, t), acc[t]);
                        }
                        continue;
                    }
                    const int32_t *s = sums + ((b - 1) & 1) * 512;
                    const __m512 d16 = _mm512_load_ps(dsc + gp * 16);
                    for (int t = 0; t < T; t++)
                        acc[t] = _mm512_fmadd_ps(
                            _mm512_mul_ps(d16, _mm512_set1_ps(xd[(r0 + t) * nb + b - 1])),
                            amx_sum(s, t), acc[t]);
                }
                /* the offsets after the runs, in finish()'s order, then the 16 outputs */
                for (int t = 0; t < T; t++) {
                    __m512 off = _mm512_setzero_ps();
                    if (offsets)
                        for (int64_t g = 0; g < gs; g++)
                            off = _mm512_fmadd_ps(_mm512_load_ps(osc + g * 16),
                                                  _mm512_set1_ps(ofactor * xsum[(r0 + t) * gs + g]), off);
                    _mm512_storeu_ps(y + (r0 + t) * N + n0, offsets ? _mm512_add_ps(acc[t], off) : acc[t]);
                }
            }
        }
        _tile_release();
    }
    free(xhi);
}

#undef AMX_PRODUCT
#pragma GCC pop_options
#endif
