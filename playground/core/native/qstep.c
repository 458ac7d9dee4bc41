/* One decode step of a decoder-only model whose Linear layers are all qgemv layers,
 * in one call: at one token per step a 135M model's ~1,000 small torch operations
 * (norms, rotary, cache update, attention, residuals) cost more than its matrix
 * products, a few microseconds of dispatch each. The arithmetic is transformers'
 * (float32 RMSNorm, rotate-half rotary, softmax attention over the cache, SiLU gate),
 * and the keys and values go into the same cache buffers that transformers' forward
 * fills in prefill (playground/core/native/step.py), so the two interleave freely.
 * Families differ only in data (playground/core/decode/family.py): q/k norms, Gemma's
 * sandwich norms, GeLU-tanh, an embedding scale, soft-capping, a sliding window and a
 * rotary table per layer, partial rotary, longrope's long factors past a position.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

void q4_matmul(const float *x, const uint8_t *qs, const uint16_t *d, const uint16_t *m,
               float *y, float *scratch, int64_t M, int64_t N, int64_t K, int64_t G, int threads,
               int int_act);
void q8_matmul(const float *x, const int8_t *qs, const uint16_t *d, float *y, float *scratch,
               int64_t M, int64_t N, int64_t K, int64_t G, int threads, int int_act);
void q4_blocks_matmul(const float *x, const uint8_t *qs, const void *d, const void *m,
                      const uint16_t *dsup, const uint16_t *msup, float *y, float *scratch, int64_t M,
                      int64_t N, int64_t K, int64_t G, int threads, int fmt);
void q8_blocks_matmul(const float *x, const int8_t *qs, const void *d, const void *m,
                      const uint16_t *dsup, const uint16_t *msup, float *y, float *scratch, int64_t M,
                      int64_t N, int64_t K, int64_t G, int threads, int fmt);
void half_rows(const float *x, const uint16_t *w, float *y, int64_t M, int64_t N, int64_t K,
               int threads, int bf16);

/* kinds: 4: int4 codes + scale + offset, 8: int8 codes + scale, in rows (fp16 scales);
 * 14 and 18: the same in qblocks.c's blocks of 8 rows (int16 activations only), where
 * scales are stored as fmt says (qblocks.c: fp16, float32, or int8 or 6-bit sub-scales
 * times an fp16 per super-block dsup/msup), int8 codes may have offsets (m), groups may be 16;
 * 16 and 17: F16 and BF16 weights as stored (qhalf.c), no scales */
typedef struct {
    int64_t kind;
    const void *codes;
    const void *d, *m;
    int64_t N, K, G, fmt;
    const uint16_t *dsup, *msup;
    const float *bias;  /* NULL, or N floats added to every row (Qwen2's q/k/v bias) */
} QMat;

/* qkv and gate_up are fused matrices; where a file's q, k and v (or gate and up) differ
 * in block type they cannot be one matrix, so qkv.codes (gate_up.codes) is NULL and the
 * parts are multiplied one by one into the same places */
typedef struct {
    const float *norm1, *norm2;
    QMat qkv, o, gate_up, down;
    QMat q, k, v, gate, up;
    /* NULL where the family has none: per-head norms of q and k before the rotary
     * (Qwen3, Gemma 3), and norms of the attention's and the MLP's outputs before
     * each residual add (Gemma 2/3; norm2 is then the pre-feedforward norm) */
    const float *q_norm, *k_norm, *post_attn, *post_ffn;
    int64_t window;  /* keys a query sees, itself included (0: all) */
    int64_t rope;    /* rotary table: 0 the model's, 1 the alternative (Gemma 3 local) */
} QLayer;

typedef struct {
    int64_t n_layers, hidden, heads, kv_heads, head_dim, inter;
    float eps, attn_scale, rope_scale, pad;
    const float *embed, *final_norm, *inv_freq;
    QMat head;
    const QLayer *layers;
    int64_t act;      /* 0: SiLU, 1: GeLU (tanh approximation) */
    int64_t rot_dim;  /* leading dims of a head that rotate (partial rotary) */
    int64_t long_from;  /* positions from here use inv_freq_long (longrope); -1: never */
    float embed_scale, attn_softcap, final_softcap, rope_scale_alt;  /* softcap 0: none */
    const float *inv_freq_alt, *inv_freq_long;
    /* 1: embed holds this call's rows in order (a table kept in blocks is de-quantized
     * row by row by the caller), 0: embed is the whole table, indexed by token */
    int64_t embed_rows;
} QModel;

static void matmul(const QMat *w, const float *x, float *y, int64_t rows, float *scratch,
                   int threads, int int_act) {
    const uint8_t *q4 = (const uint8_t *)w->codes;
    const int8_t *q8 = (const int8_t *)w->codes;
    switch (w->kind) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)  /* as qblocks.c is built */
    case 14:
        q4_blocks_matmul(x, q4, w->d, w->m, w->dsup, w->msup, y, scratch, rows, w->N, w->K, w->G,
                         threads, (int)w->fmt);
        break;
    case 18:
        q8_blocks_matmul(x, q8, w->d, w->m, w->dsup, w->msup, y, scratch, rows, w->N, w->K, w->G,
                         threads, (int)w->fmt);
        break;
    case 16:
    case 17:
        half_rows(x, (const uint16_t *)w->codes, y, rows, w->N, w->K, threads, w->kind == 17);
        break;
#endif
    case 4:
        q4_matmul(x, q4, (const uint16_t *)w->d, (const uint16_t *)w->m, y, scratch, rows, w->N,
                  w->K, w->G, threads, int_act);
        break;
    default:
        q8_matmul(x, q8, (const uint16_t *)w->d, y, scratch, rows, w->N, w->K, w->G, threads,
                  int_act);
    }
    if (w->bias)  /* after the product, as transformers' Linear adds it */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < w->N; i++) y[r * w->N + i] += w->bias[i];
}

/* the widest input of any product: hidden (q/k/v, gate/up, head), intermediate (down) or
 * heads x head_dim (o_proj, wider than both when head_dim > hidden / heads) */
static int64_t widest_input(const QModel *md) {
    const int64_t a = md->hidden, b = md->inter, c = md->heads * md->head_dim;
    const int64_t ab = a > b ? a : b;
    return ab > c ? ab : c;
}

/* y[r] = x[r] . [A; B; C]^T for fused parts given separately: each part into a scratch
 * of its own width, then copied into its columns of y's rows */
static void matmul_parts(const QMat *const *parts, int n, const float *x, float *y, int64_t rows,
                         float *part_out, float *scratch, int threads, int int_act) {
    int64_t width = 0;
    for (int i = 0; i < n; i++) width += parts[i]->N;
    int64_t col = 0;
    for (int i = 0; i < n; i++) {
        const int64_t w = parts[i]->N;
        if (rows == 1) {
            matmul(parts[i], x, y + col, 1, scratch, threads, int_act);
        } else {
            matmul(parts[i], x, part_out, rows, scratch, threads, int_act);
            for (int64_t r = 0; r < rows; r++)
                memcpy(y + r * width + col, part_out + r * w, w * sizeof(float));
        }
        col += w;
    }
}

static void rms_norm(const float *x, const float *w, float *out, int64_t n, float eps) {
    float ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

/* dot product and y += a*x over n floats: vectorized by hand, since without
 * -ffast-math the compiler keeps a float reduction scalar (the attention over a
 * 1,000-token cache took 13 ms a token that way). */
static inline float dot(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float s = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

/* o += (w[t] * inv) * V[t] over n rows of V, in order: axpy row by row, but for 64-wide
 * heads the sum stays in eight registers instead of going through memory each row (the
 * same operations in the same order, so the same bits) */
static inline void weighted_sum(float *o, const float *w, float inv, const float *V, int64_t n,
                                int64_t hd) {
#if defined(__AVX2__) && defined(__FMA__)
    if (hd == 64) {
        __m256 acc[8];
        for (int k = 0; k < 8; k++) acc[k] = _mm256_loadu_ps(o + 8 * k);
        for (int64_t t = 0; t < n; t++) {
            const __m256 a = _mm256_set1_ps(w[t] * inv);
            for (int k = 0; k < 8; k++)
                acc[k] = _mm256_fmadd_ps(a, _mm256_loadu_ps(V + t * 64 + 8 * k), acc[k]);
        }
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(o + 8 * k, acc[k]);
        return;
    }
#endif
    for (int64_t t = 0; t < n; t++) axpy(o, w[t] * inv, V + t * hd, hd);
}

/* the first rot dims of a head, rotate-half style; the rest pass through */
static void rotate(float *v, const float *cos_, const float *sin_, int64_t rot) {
    const int64_t half = rot / 2;
    for (int64_t i = 0; i < half; i++) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos_[i] - b * sin_[i];
        v[i + half] = b * cos_[i + half] + a * sin_[i + half];
    }
}

/* SiLU, or GeLU's tanh approximation as torch computes it (gelu_pytorch_tanh) */
static inline float activation(float g, int64_t act) {
    if (act == 1) {
        const float inner = 0.7978845608028654f * (g + 0.044715f * g * g * g);
        return 0.5f * g * (1.0f + tanhf(inner));
    }
    return g / (1.0f + expf(-g));
}

/* the row-by-row work between matrix products (norms, rotary, SiLU, residuals) split
 * across the threads once a pass has rows enough to pay for the fork; the arithmetic of
 * each row is unchanged */
#define ROWS_PARALLEL \
    _Pragma("omp parallel for num_threads(threads) schedule(static) if (threads > 1 && R >= 4)")

/* R rows in one pass: row r feeds token tok[r] at position pos[r] of sequence seq[r],
 * whose layer-l key/value buffers ([kv_heads][cap[seq]][head_dim]) are kc[seq * L + l],
 * vc[seq * L + l]. Every row's keys and values are written before any row attends, so
 * several rows of one sequence (a prompt, in order) attend causally to each other:
 * decode steps of many requests and chunks of new prompts share one pass, and each
 * weight matrix is read once for all of them. The arithmetic of a row does not depend
 * on the other rows (the matrix kernels give a row the same bits alone or in a tile),
 * so a greedy reply is the same alone or batched. Logits are computed for the rows
 * listed in out[0..n_out-1] only, into logits[n_out][vocab]. scratch: see
 * qrows_scratch_floats. */
void qstep_rows(const QModel *md, int64_t R, const int64_t *tok, const int64_t *pos,
                const int64_t *seq, float *const *kc, float *const *vc, const int64_t *cap,
                const int64_t *out, int64_t n_out, float *logits, float *scratch, int threads,
                int int_act) {
    const int64_t H = md->hidden, nh = md->heads, nkv = md->kv_heads, hd = md->head_dim;
    const int64_t I = md->inter, group = nh / nkv, L = md->n_layers, W = (nh + 2 * nkv) * hd;
    const int64_t X = widest_input(md);
    int64_t maxcap = 0, work = 0;
    for (int64_t r = 0; r < R; r++) {
        if (cap[seq[r]] > maxcap) maxcap = cap[seq[r]];
        work += pos[r] + 1;
    }
    float *h = scratch, *x = h + R * H, *qkv = x + R * X, *att = qkv + R * W;
    /* cos and sin per row for both rotary tables: [row][table][rot] */
    const int64_t rot = md->rot_dim;
    float *gu = att + R * nh * hd, *cs = gu + R * 2 * I, *sn = cs + R * 2 * rot;
    float *scores = sn + R * 2 * rot, *part_out = scores + R * nh * maxcap;
    float *mscratch = part_out + R * (W > 2 * I ? W : 2 * I);
    for (int64_t r = 0; r < R; r++) {
        memcpy(h + r * H, md->embed + (md->embed_rows ? r : tok[r]) * H, H * sizeof(float));
        if (md->embed_scale != 1.0f)
            for (int64_t i = 0; i < H; i++) h[r * H + i] *= md->embed_scale;
        const float *tables[2] = {
            md->long_from >= 0 && pos[r] >= md->long_from ? md->inv_freq_long : md->inv_freq,
            md->inv_freq_alt};
        const float scales[2] = {md->rope_scale, md->rope_scale_alt};
        for (int t = 0; t < 2; t++)
            for (int64_t i = 0; i < rot; i++) {
                const float f = (float)pos[r] * tables[t][i % (rot / 2)];
                cs[(r * 2 + t) * rot + i] = cosf(f) * scales[t];
                sn[(r * 2 + t) * rot + i] = sinf(f) * scales[t];
            }
    }
    for (int64_t l = 0; l < L; l++) {
        const QLayer *Ly = md->layers + l;
        ROWS_PARALLEL
        for (int64_t r = 0; r < R; r++) rms_norm(h + r * H, Ly->norm1, x + r * H, H, md->eps);
        if (Ly->qkv.codes) {
            matmul(&Ly->qkv, x, qkv, R, mscratch, threads, int_act);
        } else {
            const QMat *parts[3] = {&Ly->q, &Ly->k, &Ly->v};
            matmul_parts(parts, 3, x, qkv, R, part_out, mscratch, threads, int_act);
        }
        ROWS_PARALLEL
        for (int64_t r = 0; r < R; r++) {
            float *q = qkv + r * W, *k = q + nh * hd, *v = k + nkv * hd;
            const int64_t s = seq[r], c = cap[s];
            const float *cr = cs + (r * 2 + Ly->rope) * rot, *sr = sn + (r * 2 + Ly->rope) * rot;
            if (Ly->q_norm) {
                for (int64_t j = 0; j < nh; j++) rms_norm(q + j * hd, Ly->q_norm, q + j * hd, hd, md->eps);
                for (int64_t j = 0; j < nkv; j++) rms_norm(k + j * hd, Ly->k_norm, k + j * hd, hd, md->eps);
            }
            for (int64_t j = 0; j < nh; j++) rotate(q + j * hd, cr, sr, rot);
            for (int64_t j = 0; j < nkv; j++) {
                rotate(k + j * hd, cr, sr, rot);
                memcpy(kc[s * L + l] + (j * c + pos[r]) * hd, k + j * hd, hd * sizeof(float));
                memcpy(vc[s * L + l] + (j * c + pos[r]) * hd, v + j * hd, hd * sizeof(float));
            }
        }
        /* rows x heads in parallel once there is enough cache to pay for the fork */
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static) if (threads > 1 && work >= 128)
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < nh; j++) {
                const int64_t s = seq[r], c = cap[s], p = pos[r];
                /* a sliding window: keys p - window + 1 .. p (transformers' overlay) */
                const int64_t t0 = Ly->window > 0 && p + 1 > Ly->window ? p + 1 - Ly->window : 0;
                const float *qj = qkv + r * W + j * hd;
                const float cap_ = md->attn_softcap;
                const float *K = kc[s * L + l] + (j / group) * c * hd;
                const float *V = vc[s * L + l] + (j / group) * c * hd;
                float *sc = scores + (r * nh + j) * maxcap;
                float top = -INFINITY;
                for (int64_t t = t0; t <= p; t++) {
                    sc[t] = dot(qj, K + t * hd, hd) * md->attn_scale;
                    if (cap_ > 0) sc[t] = tanhf(sc[t] / cap_) * cap_;
                    if (sc[t] > top) top = sc[t];
                }
                float sum = 0;
                for (int64_t t = t0; t <= p; t++) sum += (sc[t] = expf(sc[t] - top));
                float *o = att + (r * nh + j) * hd;
                memset(o, 0, hd * sizeof(float));
                const float inv = 1.0f / sum;
                weighted_sum(o, sc + t0, inv, V + t0 * hd, p + 1 - t0, hd);
            }
        matmul(&Ly->o, att, x, R, mscratch, threads, int_act);
        ROWS_PARALLEL
        for (int64_t r = 0; r < R; r++) {
            if (Ly->post_attn) rms_norm(x + r * H, Ly->post_attn, x + r * H, H, md->eps);
            for (int64_t i = r * H; i < (r + 1) * H; i++) h[i] += x[i];
            rms_norm(h + r * H, Ly->norm2, x + r * H, H, md->eps);
        }
        if (Ly->gate_up.codes) {
            matmul(&Ly->gate_up, x, gu, R, mscratch, threads, int_act);
        } else {
            const QMat *parts[2] = {&Ly->gate, &Ly->up};
            matmul_parts(parts, 2, x, gu, R, part_out, mscratch, threads, int_act);
        }
        ROWS_PARALLEL
        for (int64_t r = 0; r < R; r++)
            for (int64_t i = 0; i < I; i++) {
                const float g = gu[r * 2 * I + i];
                x[r * I + i] = activation(g, md->act) * gu[r * 2 * I + I + i];
            }
        matmul(&Ly->down, x, gu, R, mscratch, threads, int_act);
        ROWS_PARALLEL
        for (int64_t r = 0; r < R; r++) {
            if (Ly->post_ffn) rms_norm(gu + r * H, Ly->post_ffn, gu + r * H, H, md->eps);
            for (int64_t i = r * H; i < (r + 1) * H; i++) h[i] += gu[i];
        }
    }
    for (int64_t i = 0; i < n_out; i++)
        rms_norm(h + out[i] * H, md->final_norm, x + i * H, H, md->eps);
    matmul(&md->head, x, logits, n_out, mscratch, threads, int_act);
    if (md->final_softcap > 0) {
        const int64_t n = n_out * md->head.N;
        const float c = md->final_softcap;
        for (int64_t i = 0; i < n; i++) logits[i] = tanhf(logits[i] / c) * c;
    }
}

int64_t qrows_scratch_floats(const QModel *md, int64_t R, int64_t cap);

/* qstep_rows on parts of the rows at once, one thread a part and each part on one
 * thread: parts[0..n_parts] are row bounds, each part whole sequences (a row attends to
 * its own sequence's rows of the pass, written by the same thread) and ``out`` ascending.
 * With every core on one pass, the cores meet at a barrier after each product: a thread
 * preempted by the event loop or a client stalls the others ~7 times a layer; here they
 * meet once a pass. A row's arithmetic is the same either way (one thread sums each
 * output in a fixed order), so the bits are. scratch: the sum of qrows_scratch_floats
 * over the parts, each at the cap of the widest cache in the pass. */
void qstep_rows_split(const QModel *md, int64_t R, const int64_t *tok, const int64_t *pos,
                      const int64_t *seq, float *const *kc, float *const *vc, const int64_t *cap,
                      const int64_t *out, int64_t n_out, float *logits, float *scratch,
                      const int64_t *parts, int n_parts, int int_act) {
    int64_t maxcap = 0;
    for (int64_t r = 0; r < R; r++)
        if (cap[seq[r]] > maxcap) maxcap = cap[seq[r]];
#pragma omp parallel for num_threads(n_parts) schedule(static, 1)
    for (int p = 0; p < n_parts; p++) {
        const int64_t a = parts[p], b = parts[p + 1];
        float *mine = scratch;
        for (int q = 0; q < p; q++) mine += qrows_scratch_floats(md, parts[q + 1] - parts[q], maxcap);
        int64_t i0 = 0, i1;
        while (i0 < n_out && out[i0] < a) i0++;
        for (i1 = i0; i1 < n_out && out[i1] < b; i1++) {}
        int64_t local[i1 - i0 + 1];
        for (int64_t i = i0; i < i1; i++) local[i - i0] = out[i] - a;
        QModel part = *md;
        if (part.embed_rows) part.embed += a * md->hidden;  /* this call's rows, in order */
        qstep_rows(&part, b - a, tok + a, pos + a, seq + a, kc, vc, cap, local, i1 - i0,
                   logits + i0 * md->head.N, mine, 1, int_act);
    }
}

/* One token of one sequence (the engine's single-stream decode): qstep_rows with R = 1. */
void qstep(const QModel *md, int64_t token, int64_t pos, float *const *kc, float *const *vc,
           int64_t cap, float *logits, float *scratch, int threads, int int_act) {
    const int64_t zero = 0;
    qstep_rows(md, 1, &token, &pos, &zero, kc, vc, &cap, &zero, 1, logits, scratch, threads,
               int_act);
}

/* floats of scratch qstep_rows needs for R rows whose caches hold at most cap rows */
int64_t qrows_scratch_floats(const QModel *md, int64_t R, int64_t cap) {
    const int64_t H = md->hidden, I = md->inter, hd = md->head_dim;
    const int64_t X = widest_input(md);
    const int64_t W = (md->heads + 2 * md->kv_heads) * hd, parts = W > 2 * I ? W : 2 * I;
    /* the products' own scratch last: K/G + K/32 + K/2 a row (G >= 16), qblocks.c */
    return R * (H + X + W + md->heads * hd + 2 * I + 4 * md->rot_dim + md->heads * cap + parts
                + X / 16 + X / 32 + X / 2) + 64;
}

/* floats of scratch qstep needs at cache length pos + 1 <= cap */
int64_t qstep_scratch_floats(const QModel *md, int64_t cap) {
    return qrows_scratch_floats(md, 1, cap);
}
