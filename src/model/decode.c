/*
** decode.c — inference with a KV cache: the forward pass of generation.
**
** Size letters: n new rows (tokens) in one call, past positions already in
** the cache, C hidden, H heads, KV kv heads, D head dim, I intermediate, V
** vocabulary, L layers, r adapter rank.
**
** This is a second forward path beside forward.c, kept apart because it
** keeps different things: forward.c keeps activations for the backward pass
** over a whole (B, T) batch; this file keeps, per layer, only the keys
** (after RoPE) and values of every position so far, and runs the new rows
** alone. A block for n new rows at positions past..past+n-1 is
**
**     ln  = norm1(res)                                  (n,C)
**     q   = q_proj(ln), rotated                         (n,H*D)
**     K[past:past+n] = k_proj(ln), rotated              cache rows (Llama)
**     V[past:past+n] = v_proj(ln)                       (GPT-2: c_attn's columns)
**     att = attention_cached(q, K[0:past+n], V[0:past+n])
**     res += o_proj(att)
**     res += down(mlp(norm2(res)))
**
** which is forward.c's block restricted to the new rows: the causal mask
** means no earlier row depends on a later one, so the new rows' outputs
** equal the full forward's at the same positions. The linears are the
** model's own dorac_linear objects, so LoRA/DoRA adapters apply un-merged.
**
** Invariants:
**   - Rows 0..len-1 of every layer's K and V hold the positions filled so
**     far; rows at or beyond len are scratch and never read.
**   - The DoRA norms (g = m/n, which depend only on the parameters) are
**     computed once when a fresh cache runs its first rows, not per token:
**     the factored norm costs O(out·in·r), r times the O(out·in) of a
**     one-row GEMM. This is why the model must not change while a cache
**     holds positions.
**   - Adapter dropout is off here (inference), whatever the adapter's
**     lora_dropout says.
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model_internal.h"

struct dorac_kv_cache {
    dorac_model *m;          /* the model it was made for (not owned) */
    int64_t max_len;         /* positions it holds */
    int64_t len;             /* positions filled: the next token goes at len */
    int64_t chunk;           /* rows per batched forward, <= max_len */
    int64_t max_rank;        /* widest adapter rank at creation; u holds chunk x max_rank */
    bool norms_ready;        /* adapters prepared (copies, DoRA norms) since creation or reset */
    dorac_tensor *k, *v;     /* (L) each (max_len, KV*D): post-RoPE keys, values */
    /* scratch for up to `chunk` rows */
    dorac_tensor res;        /* (chunk, C) residual stream */
    dorac_tensor ln;         /* (chunk, C) norm output */
    dorac_tensor mean, rstd; /* (1, chunk) norm statistics (not needed later) */
    dorac_tensor q;          /* Llama (chunk, H*D) rotated queries; GPT-2 (chunk, 3C) c_attn output */
    dorac_tensor att;        /* (chunk, H*D) attention output */
    dorac_tensor proj;       /* (chunk, C) o / down projection output */
    dorac_tensor fc1, fc2, act; /* (chunk, I) MLP: gate, up, silu(gate)*up; GPT-2 c_fc out, -, gelu */
    dorac_tensor u;          /* (1, chunk*max_rank) adapter input projections, viewed (n, r) */
    dorac_tensor ids, pos;   /* I32 (1, chunk) */
    dorac_tensor logits;     /* (1, V) */
    int32_t *pos_host;       /* (chunk) positions staged for upload */
};

/* ---------------------------------------------------------------------- */
/* the cache                                                              */
/* ---------------------------------------------------------------------- */

static dorac_tensor col_view(const dorac_tensor *t, int64_t c0, int64_t ncols) {
    dorac_tensor v = *t;
    v.data = (char *)t->data + (size_t)c0 * dorac_dtype_size(t->type);
    v.cols = ncols;
    return v;
}

/* the first n rows of a (chunk, ·) scratch tensor, or first n columns of a (1, chunk) one */
static dorac_tensor first_rows(const dorac_tensor *t, int64_t n) { return dorac_tensor_rows(t, 0, n); }
static dorac_tensor first_cols(const dorac_tensor *t, int64_t n) { return col_view(t, 0, n); }

void dorac_kv_cache_free(dorac_kv_cache *c) {
    if (!c) return;
    dorac_backend *be = c->m->be;
    for (int64_t l = 0; l < c->m->cfg.n_layers; l++) {
        if (c->k) dorac_tensor_free(be, &c->k[l]);
        if (c->v) dorac_tensor_free(be, &c->v[l]);
    }
    dorac_tensor *ts[] = {&c->res, &c->ln, &c->mean, &c->rstd, &c->q, &c->att, &c->proj, &c->fc1,
                          &c->fc2, &c->act, &c->u, &c->ids, &c->pos, &c->logits};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dorac_tensor_free(be, ts[i]);
    free(c->k);
    free(c->v);
    free(c->pos_host);
    free(c);
}

static void alloc_t(dorac_backend *be, int *rc, dorac_tensor *t, dorac_dtype type, int64_t rows, int64_t cols,
                    const char *what) {
    *t = dorac_tensor_none(type);
    if (!*rc && rows * cols > 0) *rc = dorac_tensor_alloc(be, t, type, rows, cols, what);
}

static int64_t widest_rank(dorac_model *m) {
    int64_t r = 0;
    for (size_t i = 0; i < m->n_linears; i++) {
        const dorac_linear *L = &m->linears[i].L;
        if (m->linears[i].active && dorac_linear_has_adapter(L) && L->cfg.rank > r) r = L->cfg.rank;
    }
    return r;
}

int dorac_kv_cache_create(dorac_kv_cache **out, dorac_model *m, dorac_kv_cache_params params) {
    *out = NULL;
    const dorac_model_config *cfg = &m->cfg;
    if (params.max_len <= 0 || params.max_len > cfg->max_positions)
        return dorac_error(DORAC_E_INVALID,
                           "kv cache: %lld positions requested, the model's max_position_embeddings is %lld",
                           (long long)params.max_len, (long long)cfg->max_positions);
    if (cfg->sliding_window > 0 && params.max_len > cfg->sliding_window)
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "kv cache: %lld positions exceed sliding_window %lld, which dorac does not implement",
                           (long long)params.max_len, (long long)cfg->sliding_window);
    if (!m->be->attention_cached)
        return dorac_error(DORAC_E_UNSUPPORTED, "kv cache: backend %s has no attention_cached op", m->be->name);
    if (params.chunk_rows < 0)
        return dorac_error(DORAC_E_INVALID, "kv cache: chunk_rows %lld is negative", (long long)params.chunk_rows);
    dorac_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return dorac_error(DORAC_E_NOMEM, "kv cache: out of memory");
    c->m = m;
    c->max_len = params.max_len;
    c->chunk = params.chunk_rows ? params.chunk_rows : DORAC_KV_CACHE_CHUNK;
    if (c->chunk > c->max_len) c->chunk = c->max_len;
    c->max_rank = widest_rank(m);
    int64_t L = cfg->n_layers, C = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    int64_t HD = cfg->n_heads * cfg->head_dim, KVD = cfg->n_kv_heads * cfg->head_dim, N = c->chunk;
    bool gpt2 = cfg->family == DORAC_FAMILY_GPT2;
    c->k = calloc((size_t)L, sizeof *c->k);
    c->v = calloc((size_t)L, sizeof *c->v);
    c->pos_host = malloc((size_t)N * sizeof *c->pos_host);
    if (!c->k || !c->v || !c->pos_host) {
        dorac_kv_cache_free(c);
        return dorac_error(DORAC_E_NOMEM, "kv cache: out of memory");
    }
    dorac_backend *be = m->be;
    dorac_dtype at = be->act_type, pt = be->param_type;
    int rc = DORAC_OK;
    for (int64_t l = 0; l < L; l++) {
        alloc_t(be, &rc, &c->k[l], at, c->max_len, KVD, "kv cache keys");
        alloc_t(be, &rc, &c->v[l], at, c->max_len, KVD, "kv cache values");
    }
    alloc_t(be, &rc, &c->res, at, N, C, "decode residual");
    alloc_t(be, &rc, &c->ln, at, N, C, "decode norm");
    alloc_t(be, &rc, &c->mean, pt, 1, N, "decode norm mean");
    alloc_t(be, &rc, &c->rstd, pt, 1, N, "decode norm rstd");
    alloc_t(be, &rc, &c->q, at, N, gpt2 ? 3 * C : HD, "decode q");
    alloc_t(be, &rc, &c->att, at, N, HD, "decode attention");
    alloc_t(be, &rc, &c->proj, at, N, C, "decode projection");
    alloc_t(be, &rc, &c->fc1, at, N, I, "decode mlp");
    if (!gpt2) alloc_t(be, &rc, &c->fc2, at, N, I, "decode mlp up");
    alloc_t(be, &rc, &c->act, at, N, I, "decode mlp act");
    alloc_t(be, &rc, &c->u, at, 1, N * c->max_rank, "decode adapter u");
    alloc_t(be, &rc, &c->ids, DORAC_DTYPE_I32, 1, N, "decode ids");
    alloc_t(be, &rc, &c->pos, DORAC_DTYPE_I32, 1, N, "decode positions");
    alloc_t(be, &rc, &c->logits, at, 1, V, "decode logits");
    if (rc) {
        dorac_kv_cache_free(c);
        return dorac_error_prefix(rc, "kv cache for %lld positions", (long long)params.max_len);
    }
    *out = c;
    return DORAC_OK;
}

void dorac_kv_cache_reset(dorac_kv_cache *c) {
    c->len = 0;
    c->norms_ready = false;
}

int64_t dorac_kv_cache_length(const dorac_kv_cache *c) { return c->len; }
int64_t dorac_kv_cache_capacity(const dorac_kv_cache *c) { return c->max_len; }

/* ---------------------------------------------------------------------- */
/* forward over the new rows                                              */
/* ---------------------------------------------------------------------- */

/* y (n,out) = the linear applied to x (n,in) for inference: no dropout,
** the copies of A and B and DoRA norms from dorac_model_prepare_adapters, u
** in the cache's scratch. */
static int linear_infer(dorac_kv_cache *c, dorac_model_linear *ml, const dorac_tensor *y, const dorac_tensor *x) {
    dorac_linear *L = &ml->L;
    dorac_tensor u = dorac_tensor_none(c->m->be->act_type);
    if (dorac_linear_has_adapter(L)) {
        if (L->cfg.rank > c->max_rank)
            return dorac_error(DORAC_E_INVALID, "decode: %s has rank %d, but the kv cache was made for rank <= %lld "
                               "(attach adapters before creating the cache)", ml->path, L->cfg.rank,
                               (long long)c->max_rank);
        u = dorac_tensor_view(c->u.data, c->u.type, x->rows, L->cfg.rank);
    }
    double dropout = L->cfg.dropout;
    L->cfg.dropout = 0.0; /* inference: the adapter input is not dropped */
    int rc = dorac_linear_forward_ex(L, y, &u, x, 0, false);
    L->cfg.dropout = dropout;
    return rc;
}

static int norm_forward(dorac_kv_cache *c, const dorac_tensor *out, const dorac_tensor *x, dorac_model_param *w,
                        dorac_model_param *b) {
    dorac_model *m = c->m;
    dorac_backend *be = m->be;
    dorac_tensor mean = first_cols(&c->mean, x->rows), rstd = first_cols(&c->rstd, x->rows);
    if (m->cfg.family == DORAC_FAMILY_GPT2)
        return be->layernorm_forward(be, out, &mean, &rstd, x, &w->w, &b->w, m->cfg.norm_eps);
    return be->rmsnorm_forward(be, out, &rstd, x, &w->w, m->cfg.norm_eps);
}

/* One block over rows res (n,C) at positions past..past+n-1, in place. */
static int block_decode(dorac_kv_cache *c, int64_t l, int64_t n, int64_t past) {
    dorac_model *m = c->m;
    dorac_backend *be = m->be;
    const dorac_model_config *cfg = &m->cfg;
    block_params *p = &m->blocks[l];
    int64_t H = cfg->n_heads, KV = cfg->n_kv_heads, D = cfg->head_dim, C = cfg->hidden_size;
    dorac_tensor res = first_rows(&c->res, n), ln = first_rows(&c->ln, n), att = first_rows(&c->att, n);
    dorac_tensor proj = first_rows(&c->proj, n), act = first_rows(&c->act, n), fc1 = first_rows(&c->fc1, n);
    dorac_tensor pos = first_cols(&c->pos, n);
    dorac_tensor k_new = dorac_tensor_rows(&c->k[l], past, n), v_new = dorac_tensor_rows(&c->v[l], past, n);
    dorac_tensor k_all = dorac_tensor_rows(&c->k[l], 0, past + n), v_all = dorac_tensor_rows(&c->v[l], 0, past + n);
    dorac_tensor q;

    /* attention: res += o(attn(norm1(res))), new keys and values into the cache */
    DORAC_TRY(norm_forward(c, &ln, &res, p->ln1_w, p->ln1_b));
    if (cfg->family == DORAC_FAMILY_GPT2) {
        dorac_tensor qkv = first_rows(&c->q, n); /* (n,3C) */
        DORAC_TRY(linear_infer(c, p->lin[LIN_QKV], &qkv, &ln));
        dorac_tensor kc = col_view(&qkv, C, C), vc = col_view(&qkv, 2 * C, C);
        DORAC_TRY(be->copy(be, &k_new, &kc));
        DORAC_TRY(be->copy(be, &v_new, &vc));
        q = col_view(&qkv, 0, C);
    } else {
        q = first_rows(&c->q, n); /* (n,H*D) */
        DORAC_TRY(linear_infer(c, p->lin[LIN_Q], &q, &ln));
        DORAC_TRY(linear_infer(c, p->lin[LIN_K], &k_new, &ln));
        DORAC_TRY(linear_infer(c, p->lin[LIN_V], &v_new, &ln));
        DORAC_TRY(be->rope(be, &q, &pos, &m->rope_cos, &m->rope_sin, H, D, false));
        DORAC_TRY(be->rope(be, &k_new, &pos, &m->rope_cos, &m->rope_sin, KV, D, false));
    }
    DORAC_TRY(be->attention_cached(be, &att, &q, &k_all, &v_all, past, H, KV, D));
    DORAC_TRY(linear_infer(c, p->lin[LIN_O], &proj, &att));
    DORAC_TRY(be->axpby(be, &res, &proj, 1.0, 1.0));

    /* MLP: res += down(mlp(norm2(res))) */
    DORAC_TRY(norm_forward(c, &ln, &res, p->ln2_w, p->ln2_b));
    if (cfg->family == DORAC_FAMILY_GPT2) {
        DORAC_TRY(linear_infer(c, p->lin[LIN_UP], &fc1, &ln));
        DORAC_TRY(be->gelu_forward(be, &act, &fc1));
    } else {
        dorac_tensor fc2 = first_rows(&c->fc2, n);
        DORAC_TRY(linear_infer(c, p->lin[LIN_GATE], &fc1, &ln));
        DORAC_TRY(linear_infer(c, p->lin[LIN_UP], &fc2, &ln));
        DORAC_TRY(be->swiglu_forward(be, &act, &fc1, &fc2));
    }
    DORAC_TRY(linear_infer(c, p->lin[LIN_DOWN], &proj, &act));
    return be->axpby(be, &res, &proj, 1.0, 1.0);
}

/* n <= chunk tokens at positions c->len..c->len+n-1 through every layer;
** the last row's logits into logits (V) when it is not NULL. Does not
** advance c->len. */
static int forward_rows(dorac_kv_cache *c, const int32_t *ids, int64_t n, float *logits) {
    dorac_model *m = c->m;
    dorac_backend *be = m->be;
    const dorac_model_config *cfg = &m->cfg;
    int64_t past = c->len;
    for (int64_t i = 0; i < n; i++) c->pos_host[i] = (int32_t)(past + i);
    dorac_tensor ids_t = first_cols(&c->ids, n), pos_t = first_cols(&c->pos, n), res = first_rows(&c->res, n);
    DORAC_TRY(be->upload(be, &ids_t, ids, DORAC_DTYPE_I32));
    DORAC_TRY(be->upload(be, &pos_t, c->pos_host, DORAC_DTYPE_I32));
    DORAC_TRY(be->embedding_forward(be, &res, &ids_t, &m->embed->w, false));
    if (cfg->family == DORAC_FAMILY_GPT2) DORAC_TRY(be->embedding_forward(be, &res, &pos_t, &m->pos_embed->w, true));
    for (int64_t l = 0; l < cfg->n_layers; l++) DORAC_TRY(block_decode(c, l, n, past));
    if (!logits) return DORAC_OK;
    /* final norm and lm_head on the last row only */
    dorac_tensor x_last = dorac_tensor_rows(&c->res, n - 1, 1), ln_last = first_rows(&c->ln, 1);
    DORAC_TRY(norm_forward(c, &ln_last, &x_last, m->final_w, m->final_b));
    DORAC_TRY(linear_infer(c, m->head, &c->logits, &ln_last));
    return be->download(be, logits, DORAC_DTYPE_F32, &c->logits);
}

int dorac_model_prefill(dorac_model *m, dorac_kv_cache *c, const int32_t *ids, int64_t n, float *logits_last) {
    if (c->m != m) return dorac_error(DORAC_E_INVALID, "decode: the kv cache was made for another model");
    if (n <= 0 || !ids) return dorac_error(DORAC_E_INVALID, "decode: %lld tokens given, need at least 1", (long long)n);
    if (n > c->max_len - c->len)
        return dorac_error(DORAC_E_INVALID,
                           "decode: %lld more tokens do not fit the kv cache (%lld of %lld positions used)",
                           (long long)n, (long long)c->len, (long long)c->max_len);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return dorac_error(DORAC_E_INVALID, "decode: token id %d at position %lld is outside the vocabulary [0, %lld)",
                               (int)ids[i], (long long)(c->len + i), (long long)m->cfg.vocab_size);
    if (!c->norms_ready) {
        DORAC_TRY(dorac_model_prepare_adapters(m)); /* once per fresh cache (see top) */
        c->norms_ready = true;
    }
    int64_t len0 = c->len;
    for (int64_t i0 = 0; i0 < n; i0 += c->chunk) {
        int64_t rows = n - i0 < c->chunk ? n - i0 : c->chunk;
        int rc = forward_rows(c, ids + i0, rows, i0 + rows == n ? logits_last : NULL);
        if (rc) {
            c->len = len0;
            return rc;
        }
        c->len += rows;
    }
    return DORAC_OK;
}

int dorac_model_decode_step(dorac_model *m, dorac_kv_cache *c, int32_t id, float *logits) {
    return dorac_model_prefill(m, c, &id, 1, logits);
}
