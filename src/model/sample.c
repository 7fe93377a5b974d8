/*
** sample.c — next-token sampling: temperature, top-k, top-p, greedy (see
** sample.h for the contract).
**
** With logits l (V) and temperature T, each token's unnormalised weight is
** w_i = exp((l_i - max l) / T), in double. Then, as transformers' logits
** warpers in their default order:
**   top-k  keeps the k tokens of largest logit (a heap, O(V log k));
**   top-p  ranks the kept tokens by logit and keeps the shortest prefix
**          whose weight reaches top_p times the kept total, i.e. token j
**          stays iff the tokens ranked above it hold less than top_p of the
**          mass (HF: sorted ascending, drop where cumsum <= 1 - top_p, keep
**          at least one). Only the tokens above a weight threshold that
**          already holds top_p of the mass are sorted, not the whole
**          vocabulary: the nucleus is a prefix of them.
** The draw is u = uniform(seed, stream, position) in [0, 1), and the token
** is the first whose running weight, in rank order (id order when nothing
** was cut), exceeds u times the kept total.
*/
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/sample.h"

/* the rng stream of sampling draws ("sample" in ASCII) */
#define SAMPLE_STREAM 0x73616d706c65ull

typedef struct candidate {
    double w;      /* exp((logit - max) / T) */
    float logit;
    int32_t id;
} candidate;

struct dorac_sampler {
    dorac_sampler_params p;
    int64_t V;
    candidate *cand; /* (V) scratch */
};

int dorac_sampler_params_check(const dorac_sampler_params *p) {
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return dorac_error(DORAC_E_INVALID, "sampler: temperature %g must be a finite number >= 0", p->temperature);
    if (p->top_k < 0) return dorac_error(DORAC_E_INVALID, "sampler: top_k %lld must be >= 0", (long long)p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return dorac_error(DORAC_E_INVALID, "sampler: top_p %g must be in (0, 1]", p->top_p);
    return DORAC_OK;
}

int dorac_sampler_create(dorac_sampler **out, dorac_sampler_params params, int64_t vocab_size) {
    *out = NULL;
    DORAC_TRY(dorac_sampler_params_check(&params));
    if (vocab_size <= 0 || vocab_size > INT32_MAX)
        return dorac_error(DORAC_E_INVALID, "sampler: vocabulary size %lld is out of range", (long long)vocab_size);
    dorac_sampler *s = calloc(1, sizeof *s);
    if (s) s->cand = malloc((size_t)vocab_size * sizeof *s->cand);
    if (!s || !s->cand) {
        dorac_sampler_free(s);
        return dorac_error(DORAC_E_NOMEM, "sampler: out of memory for %lld candidates", (long long)vocab_size);
    }
    s->p = params;
    s->V = vocab_size;
    *out = s;
    return DORAC_OK;
}

void dorac_sampler_free(dorac_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s);
}

int32_t dorac_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* a ranks above b: larger logit, then smaller id */
static int ranks_above(const candidate *a, const candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_rank(const void *pa, const void *pb) {
    const candidate *a = pa, *b = pb;
    return ranks_above(a, b) ? -1 : ranks_above(b, a) ? 1 : 0;
}

static void swap(candidate *a, candidate *b) {
    candidate t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k best-ranked of c[0..n) to c[0..k) (unordered), 1 <= k < n:
** c[0..k) is a heap of the best so far whose root is the worst of them. */
static void select_top_k(candidate *c, int64_t n, int64_t k) {
    for (int64_t i = 1; i < k; i++) /* build: sift each new element up */
        for (int64_t j = i; j > 0 && ranks_above(&c[(j - 1) / 2], &c[j]); j = (j - 1) / 2)
            swap(&c[j], &c[(j - 1) / 2]);
    for (int64_t i = k; i < n; i++) {
        if (!ranks_above(&c[i], &c[0])) continue;
        c[0] = c[i]; /* replaces the worst, which then sifts down */
        for (int64_t j = 0;;) {
            int64_t l = 2 * j + 1, r = l + 1, worst = j;
            if (l < k && ranks_above(&c[worst], &c[l])) worst = l;
            if (r < k && ranks_above(&c[worst], &c[r])) worst = r;
            if (worst == j) break;
            swap(&c[j], &c[worst]);
            j = worst;
        }
    }
}

/* c[0..n) ranked; returns the nucleus size: the shortest prefix whose
** weight reaches top_p * total (at least 1). */
static int64_t nucleus(candidate *c, int64_t n, double top_p, double total) {
    double target = top_p * total;
    /* find a threshold t such that the tokens with w >= t already hold the
    ** target; they rank above every other token, so the nucleus is a
    ** prefix of them and only they need sorting */
    int64_t m = n;
    for (double t = 1.0; t > 1e-300; t *= 1.0 / 16) {
        double held = 0;
        int64_t count = 0;
        for (int64_t i = 0; i < n; i++)
            if (c[i].w >= t) held += c[i].w, count++;
        if (held >= target) {
            /* partition: those with w >= t first */
            int64_t j = 0;
            for (int64_t i = 0; i < n; i++)
                if (c[i].w >= t) swap(&c[j++], &c[i]);
            m = count;
            break;
        }
    }
    qsort(c, (size_t)m, sizeof *c, cmp_rank);
    double cum = 0;
    for (int64_t i = 0; i < m; i++) {
        cum += c[i].w;
        if (cum >= target) return i + 1;
    }
    return m; /* rounding: the whole sorted set */
}

int dorac_sampler_sample(dorac_sampler *s, const float *logits, int64_t position, int32_t *id) {
    int64_t V = s->V;
    float mx = -INFINITY;
    for (int64_t i = 0; i < V; i++) {
        float x = logits[i];
        if (isnan(x) || x == INFINITY)
            return dorac_error(DORAC_E_INVALID, "sampler: logit of token %lld is %g at position %lld", (long long)i,
                               (double)x, (long long)position);
        if (x > mx) mx = x;
    }
    if (mx == -INFINITY)
        return dorac_error(DORAC_E_INVALID, "sampler: every logit is -inf at position %lld", (long long)position);
    double inv_t = s->p.temperature > 0 ? 1.0 / s->p.temperature : INFINITY;
    if (!isfinite(inv_t)) { /* greedy: temperature 0 (or one so small that 1/T overflows) */
        *id = dorac_argmax(logits, V);
        return DORAC_OK;
    }
    candidate *c = s->cand;
    for (int64_t i = 0; i < V; i++) c[i] = (candidate){0, logits[i], (int32_t)i};
    int64_t n = V;
    if (s->p.top_k > 0 && s->p.top_k < V) {
        select_top_k(c, V, s->p.top_k);
        n = s->p.top_k;
    }
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += (c[i].w = exp(((double)c[i].logit - (double)mx) * inv_t));
    if (s->p.top_p < 1) {
        n = nucleus(c, n, s->p.top_p, total);
        total = 0;
        for (int64_t i = 0; i < n; i++) total += c[i].w;
    }
    double u = dorac_rng_uniform_f64(s->p.seed, SAMPLE_STREAM, (uint64_t)position) * total, cum = 0;
    for (int64_t i = 0; i < n; i++) {
        cum += c[i].w;
        if (u < cum) {
            *id = c[i].id;
            return DORAC_OK;
        }
    }
    /* u rounded up to the total: the last token with weight */
    for (int64_t i = n - 1; i >= 0; i--)
        if (c[i].w > 0) {
            *id = c[i].id;
            return DORAC_OK;
        }
    *id = c[0].id;
    return DORAC_OK;
}
