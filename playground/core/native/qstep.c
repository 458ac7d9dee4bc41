/* One decode step of a Llama-family model whose Linear layers are all qgemv layers,
 * in one call: at one token per step a 135M model's ~1,000 small torch operations
 * (norms, rotary, cache update, attention, residuals) cost more than its matrix
 * products, a few microseconds of dispatch each. The arithmetic is transformers'
 * (float32 RMSNorm, rotate-half rotary, softmax attention over the cache, SiLU gate),
 * and the keys and values go into the same cache buffers that transformers' forward
 * fills in prefill (playground/core/native/step.py), so the two interleave freely.
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

typedef struct {
    int64_t kind; /* 4: int4 codes + scale + offset, 8: int8 codes + scale */
    const void *codes;
    const uint16_t *d, *m;
    int64_t N, K, G;
} QMat;

typedef struct {
    const float *norm1, *norm2;
    QMat qkv, o, gate_up, down;
} QLayer;

typedef struct {
    int64_t n_layers, hidden, heads, kv_heads, head_dim, inter;
    float eps, attn_scale, rope_scale, pad;
    const float *embed, *final_norm, *inv_freq;
    QMat head;
    const QLayer *layers;
} QModel;

static void matmul(const QMat *w, const float *x, float *y, float *scratch, int threads,
                   int int_act) {
    if (w->kind == 4)
        q4_matmul(x, (const uint8_t *)w->codes, w->d, w->m, y, scratch, 1, w->N, w->K, w->G,
                  threads, int_act);
    else
        q8_matmul(x, (const int8_t *)w->codes, w->d, y, scratch, 1, w->N, w->K, w->G, threads,
                  int_act);
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

static void rotate(float *v, const float *cos_, const float *sin_, int64_t hd) {
    const int64_t half = hd / 2;
    for (int64_t i = 0; i < half; i++) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos_[i] - b * sin_[i];
        v[i + half] = b * cos_[i + half] + a * sin_[i + half];
    }
}

/* kc[l], vc[l]: layer l's key/value buffers, [kv_heads][cap][head_dim]; rows 0..pos-1
 * are filled, this step writes row pos. scratch: see qstep_scratch_floats. */
void qstep(const QModel *md, int64_t token, int64_t pos, float *const *kc, float *const *vc,
           int64_t cap, float *logits, float *scratch, int threads, int int_act) {
    const int64_t H = md->hidden, nh = md->heads, nkv = md->kv_heads, hd = md->head_dim;
    const int64_t I = md->inter, group = nh / nkv;
    float *h = scratch, *x = h + H, *qkv = x + I, *att = qkv + (nh + 2 * nkv) * hd;
    float *gu = att + nh * hd, *cs = gu + 2 * I, *sn = cs + hd, *scores = sn + hd;
    float *mscratch = scores + nh * cap;
    memcpy(h, md->embed + token * H, H * sizeof(float));
    for (int64_t i = 0; i < hd; i++) {
        const float f = (float)pos * md->inv_freq[i % (hd / 2)];
        cs[i] = cosf(f) * md->rope_scale;
        sn[i] = sinf(f) * md->rope_scale;
    }
    for (int64_t l = 0; l < md->n_layers; l++) {
        const QLayer *L = md->layers + l;
        rms_norm(h, L->norm1, x, H, md->eps);
        matmul(&L->qkv, x, qkv, mscratch, threads, int_act);
        float *q = qkv, *k = qkv + nh * hd, *v = k + nkv * hd;
        for (int64_t j = 0; j < nh; j++) rotate(q + j * hd, cs, sn, hd);
        for (int64_t j = 0; j < nkv; j++) {
            rotate(k + j * hd, cs, sn, hd);
            memcpy(kc[l] + (j * cap + pos) * hd, k + j * hd, hd * sizeof(float));
            memcpy(vc[l] + (j * cap + pos) * hd, v + j * hd, hd * sizeof(float));
        }
        /* heads in parallel once the cache is long enough to pay for the fork */
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && pos >= 128)
        for (int64_t j = 0; j < nh; j++) {
            const float *qj = q + j * hd;
            const float *K = kc[l] + (j / group) * cap * hd, *V = vc[l] + (j / group) * cap * hd;
            float *sc = scores + j * cap;
            float top = -INFINITY;
            for (int64_t t = 0; t <= pos; t++) {
                sc[t] = dot(qj, K + t * hd, hd) * md->attn_scale;
                if (sc[t] > top) top = sc[t];
            }
            float sum = 0;
            for (int64_t t = 0; t <= pos; t++) sum += (sc[t] = expf(sc[t] - top));
            float *out = att + j * hd;
            memset(out, 0, hd * sizeof(float));
            const float inv = 1.0f / sum;
            for (int64_t t = 0; t <= pos; t++) axpy(out, sc[t] * inv, V + t * hd, hd);
        }
        matmul(&L->o, att, x, mscratch, threads, int_act);
        for (int64_t i = 0; i < H; i++) h[i] += x[i];
        rms_norm(h, L->norm2, x, H, md->eps);
        matmul(&L->gate_up, x, gu, mscratch, threads, int_act);
        for (int64_t i = 0; i < I; i++) {
            const float g = gu[i];
            x[i] = g / (1.0f + expf(-g)) * gu[I + i];
        }
        matmul(&L->down, x, gu, mscratch, threads, int_act);
        for (int64_t i = 0; i < H; i++) h[i] += gu[i];
    }
    rms_norm(h, md->final_norm, x, H, md->eps);
    matmul(&md->head, x, logits, mscratch, threads, int_act);
}

/* floats of scratch qstep needs at cache length pos + 1 <= cap */
int64_t qstep_scratch_floats(const QModel *md, int64_t cap) {
    const int64_t H = md->hidden, I = md->inter, hd = md->head_dim;
    const int64_t widest = I > H ? I : H;
    return H + I + (md->heads + 2 * md->kv_heads) * hd + md->heads * hd + 2 * I + 2 * hd
           + md->heads * cap
           + widest + widest / 32 + widest / 2 + 64;
}
