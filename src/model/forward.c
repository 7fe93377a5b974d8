/*
** forward.c — the model's forward and backward passes, as flat lists of
** backend op calls (llm.c style), and the activations they keep.
**
** Size letters: B batch, T time, N = B*T rows, C hidden, H heads, KV kv
** heads, D head dim, I intermediate, V vocabulary, r adapter rank.
**
** Gradient flow through a block (Llama; GPT-2 is the same shape):
**     out = res2 + down(mlp(norm2(res2))),  res2 = res + o(attn(norm1(res)))
** dres holds d(out) on entry; the skip connections are the norm
** backwards accumulating (+=) into dres, so that dres holds d(res) on exit.
** DoRA's o/down projections read dres and write their dz to a shared
** scratch; every other adapted linear writes dz over its own dy buffer.
**
** dorac_model_backward_ex hands each block's trainable gradients to a
** callback once the block's backward is done (they are not written again
** in that pass), so a data-parallel trainer can start summing them over the
** ranks while the earlier blocks' backward runs.
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/model_internal.h"

/* ---------------------------------------------------------------------- */
/* activations                                                            */
/* ---------------------------------------------------------------------- */

static dorac_tensor col_view(const dorac_tensor *t, int64_t c0, int64_t ncols) {
    dorac_tensor v = *t;
    v.data = (char *)t->data + (size_t)c0 * dorac_dtype_size(t->type);
    v.cols = ncols;
    return v;
}

static void tensors_free(dorac_backend *be, dorac_tensor *ts, size_t n) {
    for (size_t i = 0; i < n; i++) dorac_tensor_free(be, &ts[i]);
}

void dorac_model_acts_free(dorac_model *m) {
    model_acts *a = &m->acts;
    dorac_backend *be = m->be;
    for (int64_t s = 0; a->blocks && s < a->n_sets; s++) {
        block_acts *b = &a->blocks[s];
        if (m->cfg.family == DORAC_FAMILY_GPT2) b->q = b->k = b->v = b->qr = b->kr = dorac_tensor_none(be->act_type);
        dorac_tensor *ts[] = {&b->res, &b->ln1, &b->ln1_mean, &b->ln1_rstd, &b->qkv, &b->q, &b->k, &b->v,
                              &b->qr, &b->kr, &b->att, &b->lse, &b->o, &b->res2, &b->ln2, &b->ln2_mean,
                              &b->ln2_rstd, &b->fc1, &b->fc2, &b->act, &b->down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dorac_tensor_free(be, ts[i]);
        tensors_free(be, b->u, LIN_PER_BLOCK);
    }
    free(a->blocks);
    dorac_tensor *g[] = {&a->ids, &a->pos, &a->targets, &a->res_final, &a->lnf, &a->lnf_mean, &a->lnf_rstd,
                         &a->dlnf, &a->logits, &a->dlogits, &a->loss, &a->u_head, &a->dres, &a->dln,
                         &a->dq, &a->dk, &a->dv, &a->dqkv, &a->datt, &a->dfc1, &a->dfc2, &a->dact,
                         &a->dscratch};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) dorac_tensor_free(be, g[i]);
    memset(a, 0, sizeof *a);
}

typedef struct allocator {
    dorac_backend *be;
    int rc;
} allocator;

static void alloc_t(allocator *al, dorac_tensor *t, dorac_dtype type, int64_t rows, int64_t cols,
                    const char *what) {
    if (al->rc) {
        *t = dorac_tensor_none(type);
        return;
    }
    al->rc = dorac_tensor_alloc(al->be, t, type, rows, cols, what);
}

/* A (rows, cols) view whose rows start every round_up(cols, 64) elements:
** the vocabulary-wide logits, so that each row of a product into them (or
** out of them) starts 128-byte aligned whatever the vocabulary size (GPT-2's
** 50257), as the GPU's fast GEMM kernels require. */
static void alloc_padded(allocator *al, dorac_tensor *t, dorac_dtype type, int64_t rows, int64_t cols,
                         const char *what) {
    int64_t ld = cols <= INT64_MAX - 63 ? (cols + 63) / 64 * 64 : cols;
    alloc_t(al, t, type, rows, ld, what);
    if (t->data) t->cols = cols;
}

/* A (rows, cols) view with `spare` more columns in each row (ld = cols +
** spare): the gradients that block linears take as dz, whose spare columns
** let the adapter's dx run in the base GEMM (dorac_linear_backward_ex). */
static void alloc_wide(allocator *al, dorac_tensor *t, dorac_dtype type, int64_t rows, int64_t cols,
                       int64_t spare, const char *what) {
    alloc_t(al, t, type, rows, cols + spare, what);
    if (t->data) t->cols = cols;
}

/* The spare columns of the wide gradients: the largest rank of the blocks'
** adapters, rounded up to 8 (rows stay 16-byte aligned); 0 without any. */
static int64_t dz_spare_cols(const dorac_model *m) {
    int64_t r = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < LIN_PER_BLOCK; k++) {
            dorac_model_linear *lin = m->blocks[l].lin[k];
            if (lin && dorac_linear_has_adapter(&lin->L) && lin->L.cfg.rank > r) r = lin->L.cfg.rank;
        }
    return (r + 7) / 8 * 8;
}

static void alloc_block(dorac_model *m, allocator *al, block_acts *b, int64_t l) {
    const dorac_model_config *c = &m->cfg;
    dorac_dtype at = m->be->act_type, pt = m->be->param_type;
    int64_t N = m->acts.N, C = c->hidden_size, I = c->intermediate_size;
    int64_t HD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim;
    bool gpt2 = c->family == DORAC_FAMILY_GPT2;
    alloc_t(al, &b->res, at, N, C, "res");
    alloc_t(al, &b->ln1, at, N, C, "ln1");
    alloc_t(al, &b->ln1_mean, pt, 1, N, "ln1 mean");
    alloc_t(al, &b->ln1_rstd, pt, 1, N, "ln1 rstd");
    if (gpt2) {
        alloc_t(al, &b->qkv, at, N, 3 * C, "qkv");
        if (!al->rc) {
            b->q = b->qr = col_view(&b->qkv, 0, C);
            b->k = b->kr = col_view(&b->qkv, C, C);
            b->v = col_view(&b->qkv, 2 * C, C);
        }
    } else {
        b->qkv = dorac_tensor_none(at);
        alloc_t(al, &b->q, at, N, HD, "q");
        alloc_t(al, &b->k, at, N, KVD, "k");
        alloc_t(al, &b->v, at, N, KVD, "v");
        alloc_t(al, &b->qr, at, N, HD, "q rotated");
        alloc_t(al, &b->kr, at, N, KVD, "k rotated");
    }
    alloc_t(al, &b->att, at, N, HD, "attention out");
    alloc_t(al, &b->lse, pt, 1, m->acts.B * c->n_heads * m->acts.T, "attention lse");
    alloc_t(al, &b->o, at, N, C, "o");
    alloc_t(al, &b->res2, at, N, C, "res2");
    alloc_t(al, &b->ln2, at, N, C, "ln2");
    alloc_t(al, &b->ln2_mean, pt, 1, N, "ln2 mean");
    alloc_t(al, &b->ln2_rstd, pt, 1, N, "ln2 rstd");
    alloc_t(al, &b->fc1, at, N, I, "fc1");
    if (gpt2) b->fc2 = dorac_tensor_none(at);
    else alloc_t(al, &b->fc2, at, N, I, "fc2");
    alloc_t(al, &b->act, at, N, I, "mlp act");
    alloc_t(al, &b->down, at, N, C, "down");
    /* adapter inputs: this layer's rank when every layer keeps its own set,
    ** else the largest rank of the slot over all layers (see u_of) */
    for (int k = 0; k < LIN_PER_BLOCK; k++) {
        int64_t r = 0;
        for (int64_t j = m->acts.train ? l : 0; j < (m->acts.train ? l + 1 : c->n_layers); j++) {
            dorac_model_linear *lin = m->blocks[j].lin[k];
            if (lin && dorac_linear_has_adapter(&lin->L) && lin->L.cfg.rank > r) r = lin->L.cfg.rank;
        }
        if (r > 0) alloc_t(al, &b->u[k], at, N, r, "adapter u");
        else b->u[k] = dorac_tensor_none(at);
    }
}

/* The (N, r) adapter input of linear slot k of layer l, as a contiguous
** view of the block's u buffer (which may be wider when layers differ in
** rank and share one activation set). */
static dorac_tensor u_of(const dorac_model *m, const block_acts *b, int64_t l, int k) {
    dorac_model_linear *lin = m->blocks[l].lin[k];
    if (!lin || !dorac_linear_has_adapter(&lin->L) || !b->u[k].data) return dorac_tensor_none(b->u[k].type);
    return dorac_tensor_view(b->u[k].data, b->u[k].type, b->u[k].rows, lin->L.cfg.rank);
}

/* Allocates activations for (B, T) unless those already held fit. Adapter
** ranks are read from the linears, so call after the method is set. */
static int acts_ensure(dorac_model *m, int64_t B, int64_t T, bool train) {
    model_acts *a = &m->acts;
    if (a->blocks && a->B == B && a->T == T && a->train == train) return DORAC_OK;
    dorac_model_acts_free(m);
    const dorac_model_config *c = &m->cfg;
    int64_t N = B * T, C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    int64_t HD = c->n_heads * c->head_dim, KVD = c->n_kv_heads * c->head_dim;
    a->B = B, a->T = T, a->N = N, a->train = train;
    a->n_sets = train ? c->n_layers : 1;
    a->blocks = calloc((size_t)a->n_sets, sizeof *a->blocks);
    if (!a->blocks) return dorac_error(DORAC_E_NOMEM, "model: out of memory for activations");
    dorac_backend *be = m->be;
    dorac_dtype at = be->act_type, pt = be->param_type;
    allocator al = {be, DORAC_OK};
    for (int64_t s = 0; s < a->n_sets; s++) alloc_block(m, &al, &a->blocks[s], s);
    alloc_t(&al, &a->ids, DORAC_DTYPE_I32, 1, N, "ids");
    alloc_t(&al, &a->pos, DORAC_DTYPE_I32, 1, N, "positions");
    alloc_t(&al, &a->targets, DORAC_DTYPE_I32, 1, N, "targets");
    alloc_t(&al, &a->res_final, at, N, C, "final residual");
    alloc_t(&al, &a->lnf, at, N, C, "final norm");
    alloc_t(&al, &a->lnf_mean, pt, 1, N, "final norm mean");
    alloc_t(&al, &a->lnf_rstd, pt, 1, N, "final norm rstd");
    int64_t chunk = DORAC_MODEL_HEAD_ELEMS / ((V + 63) / 64 * 64);
    chunk = chunk < DORAC_MODEL_HEAD_CHUNK ? DORAC_MODEL_HEAD_CHUNK : chunk / DORAC_MODEL_HEAD_CHUNK * DORAC_MODEL_HEAD_CHUNK;
    if (m->head_chunk > 0) chunk = m->head_chunk;
    if (chunk > N) chunk = N;
    alloc_padded(&al, &a->logits, at, chunk, V, "logits chunk");
    alloc_t(&al, &a->loss, pt, 1, N, "token losses"); /* read back once per pass, not per chunk */
    if (dorac_linear_has_adapter(&m->head->L)) alloc_t(&al, &a->u_head, at, chunk, m->head->L.cfg.rank, "head u");
    if (train) {
        bool gpt2 = c->family == DORAC_FAMILY_GPT2;
        int64_t sp = dz_spare_cols(m); /* every buffer a block linear takes as dz */
        alloc_padded(&al, &a->dlogits, at, chunk, V, "dlogits chunk");
        alloc_t(&al, &a->dlnf, at, N, C, "d final norm");
        alloc_wide(&al, &a->dres, at, N, C, sp, "d residual");
        alloc_t(&al, &a->dln, at, N, C, "d norm");
        if (gpt2) {
            alloc_wide(&al, &a->dqkv, at, N, 3 * C, sp, "d qkv");
        } else {
            alloc_wide(&al, &a->dq, at, N, HD, sp, "dq");
            alloc_wide(&al, &a->dk, at, N, KVD, sp, "dk");
            alloc_wide(&al, &a->dv, at, N, KVD, sp, "dv");
        }
        alloc_t(&al, &a->datt, at, N, HD, "d attention");
        alloc_wide(&al, &a->dfc1, at, N, I, sp, "d fc1");
        if (!gpt2) alloc_wide(&al, &a->dfc2, at, N, I, sp, "d fc2");
        alloc_t(&al, &a->dact, at, N, I, "d act");
        if (m->method == DORAC_METHOD_DORA) alloc_wide(&al, &a->dscratch, at, N, C, sp, "dz scratch");
        a->dz_spare = sp > 0;
    }
    if (al.rc) {
        dorac_model_acts_free(m);
        return dorac_error_prefix(al.rc, "model activations for B=%lld T=%lld", (long long)B, (long long)T);
    }
    return DORAC_OK;
}

int dorac_model_prepare_adapters(dorac_model *m) {
    dorac_linear **Ls = malloc((m->n_linears ? m->n_linears : 1) * sizeof *Ls);
    if (!Ls) return dorac_error(DORAC_E_NOMEM, "model: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        dorac_method method = l->L.cfg.method;
        if (l->active && (method == DORAC_METHOD_LORA || method == DORAC_METHOD_DORA)) Ls[n++] = &l->L;
    }
    int rc = dorac_linear_prepare(Ls, n);
    free(Ls);
    return rc;
}

int dorac_model_set_head_chunk(dorac_model *m, int64_t rows) {
    if (rows < 0) return dorac_error(DORAC_E_INVALID, "model: head chunk of %lld rows", (long long)rows);
    if (rows != m->head_chunk) dorac_model_acts_free(m);
    m->head_chunk = rows;
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* forward                                                                */
/* ---------------------------------------------------------------------- */

static int norm_forward(dorac_model *m, const dorac_tensor *out, const dorac_tensor *mean,
                        const dorac_tensor *rstd, const dorac_tensor *x, dorac_model_param *w,
                        dorac_model_param *b) {
    dorac_backend *be = m->be;
    if (m->cfg.family == DORAC_FAMILY_GPT2)
        return be->layernorm_forward(be, out, mean, rstd, x, &w->w, &b->w, m->cfg.norm_eps);
    return be->rmsnorm_forward(be, out, rstd, x, &w->w, m->cfg.norm_eps);
}

static int norm_backward(dorac_model *m, const dorac_tensor *dx, const dorac_tensor *dout,
                         const dorac_tensor *x, const dorac_tensor *mean, const dorac_tensor *rstd,
                         dorac_model_param *w, dorac_model_param *b) {
    dorac_backend *be = m->be;
    if (m->cfg.family == DORAC_FAMILY_GPT2)
        return be->layernorm_backward(be, dx, &w->grad, &b->grad, dout, x, &w->w, mean, rstd);
    return be->rmsnorm_backward(be, dx, &w->grad, dout, x, &w->w, rstd);
}

/* out = a + b, for the residual stream */
static int residual_add(dorac_backend *be, const dorac_tensor *out, const dorac_tensor *a,
                        const dorac_tensor *b) {
    if (out->data != a->data) DORAC_TRY(be->copy(be, out, a));
    return be->axpby(be, out, b, 1.0, 1.0);
}

/* A linear's forward in the model's pass, whose DoRA norms
** dorac_model_forward updated for every layer up front. */
static int linear_forward(dorac_linear *L, const dorac_tensor *y, const dorac_tensor *u, const dorac_tensor *x,
                          uint64_t seed) {
    return dorac_linear_forward_ex(L, y, u, x, seed, false);
}

static int block_forward(dorac_model *m, int64_t l, block_acts *b, const dorac_tensor *out,
                         uint64_t seed) {
    dorac_backend *be = m->be;
    const dorac_model_config *c = &m->cfg;
    block_params *p = &m->blocks[l];
    model_acts *a = &m->acts;
    int64_t B = a->B, T = a->T, H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim;
    dorac_linear *lin[LIN_PER_BLOCK];
    dorac_tensor u[LIN_PER_BLOCK];
    for (int k = 0; k < LIN_PER_BLOCK; k++) {
        lin[k] = p->lin[k] ? &p->lin[k]->L : NULL;
        u[k] = u_of(m, b, l, k);
    }

    DORAC_TRY(norm_forward(m, &b->ln1, &b->ln1_mean, &b->ln1_rstd, &b->res, p->ln1_w, p->ln1_b));
    if (c->family == DORAC_FAMILY_GPT2) {
        DORAC_TRY(linear_forward(lin[LIN_QKV], &b->qkv, &u[LIN_QKV], &b->ln1, seed));
    } else {
        DORAC_TRY(linear_forward(lin[LIN_Q], &b->q, &u[LIN_Q], &b->ln1, seed));
        DORAC_TRY(linear_forward(lin[LIN_K], &b->k, &u[LIN_K], &b->ln1, seed));
        DORAC_TRY(linear_forward(lin[LIN_V], &b->v, &u[LIN_V], &b->ln1, seed));
        /* rotated copies: the linears' outputs stay as DoRA's backward needs them */
        DORAC_TRY(dorac_rope_copy(be, &b->qr, &b->q, &a->pos, &m->rope_cos, &m->rope_sin, H, D, false));
        DORAC_TRY(dorac_rope_copy(be, &b->kr, &b->k, &a->pos, &m->rope_cos, &m->rope_sin, KV, D, false));
    }
    DORAC_TRY(be->attention_forward(be, &b->att, &b->lse, &b->qr, &b->kr, &b->v, B, T, H, KV, D));
    DORAC_TRY(linear_forward(lin[LIN_O], &b->o, &u[LIN_O], &b->att, seed));
    DORAC_TRY(residual_add(be, &b->res2, &b->res, &b->o));

    DORAC_TRY(norm_forward(m, &b->ln2, &b->ln2_mean, &b->ln2_rstd, &b->res2, p->ln2_w, p->ln2_b));
    if (c->family == DORAC_FAMILY_GPT2) {
        DORAC_TRY(linear_forward(lin[LIN_UP], &b->fc1, &u[LIN_UP], &b->ln2, seed));
        DORAC_TRY(be->gelu_forward(be, &b->act, &b->fc1));
    } else {
        DORAC_TRY(linear_forward(lin[LIN_GATE], &b->fc1, &u[LIN_GATE], &b->ln2, seed));
        DORAC_TRY(linear_forward(lin[LIN_UP], &b->fc2, &u[LIN_UP], &b->ln2, seed));
        DORAC_TRY(be->swiglu_forward(be, &b->act, &b->fc1, &b->fc2));
    }
    DORAC_TRY(linear_forward(lin[LIN_DOWN], &b->down, &u[LIN_DOWN], &b->act, seed));
    return residual_add(be, out, &b->res2, &b->down);
}

/* The lm_head and cross-entropy over row chunks; with train, also the
** head's backward into dlnf. */
static int head_forward(dorac_model *m, bool train, bool has_targets, double grad_scale,
                        uint64_t seed, dorac_forward_result *res, float *logits_out) {
    dorac_backend *be = m->be;
    model_acts *a = &m->acts;
    int64_t N = a->N, V = m->cfg.vocab_size, chunk = a->logits.rows;
    double *loss_host = malloc((size_t)N * sizeof *loss_host);
    if (!loss_host) return dorac_error(DORAC_E_NOMEM, "model: out of memory");
    int rc = DORAC_OK;
    for (int64_t i0 = 0; i0 < N && !rc; i0 += chunk) {
        int64_t rows = N - i0 < chunk ? N - i0 : chunk;
        uint64_t cseed = dorac_mix64(seed ^ (uint64_t)i0);
        dorac_tensor x_c = dorac_tensor_rows(&a->lnf, i0, rows);
        dorac_tensor logits_c = dorac_tensor_rows(&a->logits, 0, rows);
        dorac_tensor u_c = a->u_head.data ? dorac_tensor_rows(&a->u_head, 0, rows) : a->u_head;
        rc = linear_forward(&m->head->L, &logits_c, &u_c, &x_c, cseed);
        if (!rc && logits_out) rc = be->download(be, logits_out + (size_t)i0 * (size_t)V, DORAC_DTYPE_F32, &logits_c);
        if (rc || !has_targets) continue;
        dorac_tensor t_c = {(int32_t *)a->targets.data + i0, DORAC_DTYPE_I32, 1, rows, rows};
        dorac_tensor loss_c = a->loss;
        loss_c.data = (char *)a->loss.data + (size_t)i0 * dorac_dtype_size(a->loss.type);
        loss_c.cols = rows;
        dorac_tensor dlogits_c = train ? dorac_tensor_rows(&a->dlogits, 0, rows) : dorac_tensor_none(be->act_type);
        rc = be->cross_entropy(be, &loss_c, &dlogits_c, &logits_c, &t_c, grad_scale);
        if (!rc && train) {
            dorac_tensor dx_c = dorac_tensor_rows(&a->dlnf, i0, rows);
            rc = dorac_linear_backward(&m->head->L, &dx_c, false, &dlogits_c, &dlogits_c, &x_c, &logits_c,
                                       &u_c, cseed);
        }
    }
    /* the token losses, added in row order (the order the chunks ran in) */
    if (!rc && has_targets) rc = be->download(be, loss_host, DORAC_DTYPE_F64, &a->loss);
    for (int64_t i = 0; !rc && has_targets && i < N; i++) res->loss_sum += loss_host[i];
    free(loss_host);
    return rc;
}

int dorac_model_forward(dorac_model *m, const dorac_batch *batch, bool train, double grad_scale,
                        uint64_t dropout_seed, dorac_forward_result *res, float *logits_out) {
    dorac_backend *be = m->be;
    const dorac_model_config *c = &m->cfg;
    int64_t B = batch->B, T = batch->T;
    res->loss_sum = 0;
    res->n_tokens = 0;
    if (B <= 0 || T <= 0 || B > (1 << 20) || T > (1 << 24) || B * T > (1 << 28))
        return dorac_error(DORAC_E_INVALID, "model: batch shape B=%lld T=%lld is out of range", (long long)B, (long long)T);
    if (T > c->max_positions)
        return dorac_error(DORAC_E_INVALID, "model: sequence length %lld exceeds max_position_embeddings %lld",
                           (long long)T, (long long)c->max_positions);
    if (c->sliding_window > 0 && T > c->sliding_window)
        return dorac_error(DORAC_E_UNSUPPORTED, "model: sequence length %lld exceeds sliding_window %lld, which dorac does not implement",
                           (long long)T, (long long)c->sliding_window);
    if (train && !batch->targets) return dorac_error(DORAC_E_INVALID, "model: training needs targets");
    if (train && m->method == DORAC_METHOD_FROZEN)
        return dorac_error(DORAC_E_INVALID, "model: nothing to train (no method set)");
    m->acts.ready_for_backward = false;
    /* dropout on adapter inputs in training only, as PyTorch's train()/eval() */
    for (size_t i = 0; i < m->n_linears; i++) m->linears[i].L.eval_mode = !train;
    DORAC_TRY(acts_ensure(m, B, T, train));
    model_acts *a = &m->acts;
    int64_t N = B * T;

    int32_t *pos = malloc((size_t)N * sizeof *pos);
    if (!pos) return dorac_error(DORAC_E_NOMEM, "model: out of memory");
    for (int64_t i = 0; i < N; i++) pos[i] = (int32_t)(i % T);
    int rc = be->upload(be, &a->pos, pos, DORAC_DTYPE_I32);
    free(pos);
    DORAC_TRY(rc);
    DORAC_TRY(be->upload(be, &a->ids, batch->ids, DORAC_DTYPE_I32));
    if (batch->targets) {
        DORAC_TRY(be->upload(be, &a->targets, batch->targets, DORAC_DTYPE_I32));
        for (int64_t i = 0; i < N; i++) {
            int32_t t = batch->targets[i];
            if (t == DORAC_IGNORE_INDEX) continue;
            if (t < 0 || t >= c->vocab_size)
                return dorac_error(DORAC_E_INVALID, "model: target %d at row %lld is outside the vocabulary [0, %lld)",
                                   (int)t, (long long)i, (long long)c->vocab_size);
            res->n_tokens++;
        }
    }

    /* A and B in the weight type, and every DoRA norm of this pass at once,
    ** from the parameters alone */
    DORAC_TRY(dorac_model_prepare_adapters(m));

    /* embeddings into the first block's residual input */
    block_acts *b0 = &a->blocks[0];
    rc = be->embedding_forward(be, &b0->res, &a->ids, &m->embed->w, false);
    if (rc) return dorac_error_prefix(rc, "model input");
    if (c->family == DORAC_FAMILY_GPT2) DORAC_TRY(be->embedding_forward(be, &b0->res, &a->pos, &m->pos_embed->w, true));

    for (int64_t l = 0; l < c->n_layers; l++) {
        block_acts *b = &a->blocks[train ? l : 0];
        const dorac_tensor *out = l + 1 == c->n_layers ? &a->res_final
                                  : train              ? &a->blocks[l + 1].res
                                                       : &b->res;
        DORAC_TRY(block_forward(m, l, b, out, dropout_seed));
    }
    DORAC_TRY(norm_forward(m, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->res_final, m->final_w, m->final_b));
    DORAC_TRY(head_forward(m, train, batch->targets != NULL, grad_scale, dropout_seed, res, logits_out));
    a->ready_for_backward = train;
    a->dropout_seed = dropout_seed;
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* backward                                                               */
/* ---------------------------------------------------------------------- */

/* The backward of an MLP input projection (gate, up, fc) whose dy the
** activation's backward produced: with DoRA's epilogue e it holds dz and
** the layer's zsum is summed, else it is dy, overwritten with dz by DoRA. */
static int mlp_in_backward(dorac_linear *L, const dorac_dora_epilogue *e, const dorac_tensor *dx,
                           bool accumulate_dx, const dorac_tensor *dy, const dorac_tensor *x,
                           const dorac_tensor *y, const dorac_tensor *u, uint64_t seed, bool spare) {
    if (e) return dorac_linear_backward_dz_ex(L, dx, accumulate_dx, dy, x, u, seed, spare);
    return dorac_linear_backward_ex(L, dx, accumulate_dx, dy, dy, x, y, u, seed, spare);
}

static int block_backward(dorac_model *m, int64_t l, block_acts *b, uint64_t seed) {
    dorac_backend *be = m->be;
    const dorac_model_config *c = &m->cfg;
    block_params *p = &m->blocks[l];
    model_acts *a = &m->acts;
    int64_t B = a->B, T = a->T, H = c->n_heads, KV = c->n_kv_heads, D = c->head_dim, C = c->hidden_size;
    bool gpt2 = c->family == DORAC_FAMILY_GPT2;
    dorac_linear *lin[LIN_PER_BLOCK];
    dorac_tensor u[LIN_PER_BLOCK];
    for (int k = 0; k < LIN_PER_BLOCK; k++) {
        lin[k] = p->lin[k] ? &p->lin[k]->L : NULL;
        u[k] = u_of(m, b, l, k);
    }
    const dorac_tensor *dres = &a->dres, *scratch = &a->dscratch;
    bool sp = a->dz_spare; /* every dz below has the adapters' spare columns */

    /* MLP: out = res2 + down(act). The activation's backward also does the
    ** element-wise DoRA backward of the projections feeding it (one pass). */
    DORAC_TRY(dorac_linear_backward_ex(lin[LIN_DOWN], &a->dact, false, dres, scratch, &b->act, &b->down,
                                    &u[LIN_DOWN], seed, sp));
    int rc = DORAC_OK;
    dorac_dora_epilogue e_up, e_gate;
    const dorac_dora_epilogue *eu = dorac_linear_dora_epilogue(lin[LIN_UP], &e_up, &rc);
    DORAC_TRY(rc);
    if (gpt2) {
        DORAC_TRY(dorac_gelu_backward_dora(be, &a->dfc1, &a->dact, &b->fc1, eu));
        DORAC_TRY(mlp_in_backward(lin[LIN_UP], eu, &a->dln, false, &a->dfc1, &b->ln2, &b->fc1, &u[LIN_UP], seed, sp));
    } else {
        const dorac_dora_epilogue *eg = dorac_linear_dora_epilogue(lin[LIN_GATE], &e_gate, &rc);
        DORAC_TRY(rc);
        DORAC_TRY(dorac_swiglu_backward_dora(be, &a->dfc1, &a->dfc2, &a->dact, &b->fc1, &b->fc2, eg, eu));
        DORAC_TRY(mlp_in_backward(lin[LIN_GATE], eg, &a->dln, false, &a->dfc1, &b->ln2, &b->fc1, &u[LIN_GATE],
                                  seed, sp));
        DORAC_TRY(mlp_in_backward(lin[LIN_UP], eu, &a->dln, true, &a->dfc2, &b->ln2, &b->fc2, &u[LIN_UP], seed, sp));
    }
    DORAC_TRY(norm_backward(m, dres, &a->dln, &b->res2, &b->ln2_mean, &b->ln2_rstd, p->ln2_w, p->ln2_b));

    /* attention: res2 = res + o(att) */
    DORAC_TRY(dorac_linear_backward_ex(lin[LIN_O], &a->datt, false, dres, scratch, &b->att, &b->o,
                                    &u[LIN_O], seed, sp));
    if (gpt2) {
        dorac_tensor dq = col_view(&a->dqkv, 0, C), dk = col_view(&a->dqkv, C, C), dv = col_view(&a->dqkv, 2 * C, C);
        DORAC_TRY(be->attention_backward(be, &dq, &dk, &dv, &a->datt, &b->qr, &b->kr, &b->v, &b->att, &b->lse,
                                         B, T, H, KV, D));
        DORAC_TRY(dorac_linear_backward_ex(lin[LIN_QKV], &a->dln, false, &a->dqkv, &a->dqkv, &b->ln1, &b->qkv,
                                        &u[LIN_QKV], seed, sp));
    } else {
        DORAC_TRY(be->attention_backward(be, &a->dq, &a->dk, &a->dv, &a->datt, &b->qr, &b->kr, &b->v, &b->att,
                                         &b->lse, B, T, H, KV, D));
        DORAC_TRY(be->rope(be, &a->dq, &a->pos, &m->rope_cos, &m->rope_sin, H, D, true));
        DORAC_TRY(be->rope(be, &a->dk, &a->pos, &m->rope_cos, &m->rope_sin, KV, D, true));
        DORAC_TRY(dorac_linear_backward_ex(lin[LIN_Q], &a->dln, false, &a->dq, &a->dq, &b->ln1, &b->q,
                                        &u[LIN_Q], seed, sp));
        DORAC_TRY(dorac_linear_backward_ex(lin[LIN_K], &a->dln, true, &a->dk, &a->dk, &b->ln1, &b->k,
                                        &u[LIN_K], seed, sp));
        DORAC_TRY(dorac_linear_backward_ex(lin[LIN_V], &a->dln, true, &a->dv, &a->dv, &b->ln1, &b->v,
                                        &u[LIN_V], seed, sp));
    }
    return norm_backward(m, dres, &a->dln, &b->res, &b->ln1_mean, &b->ln1_rstd, p->ln1_w, p->ln1_b);
}

/* ---------------------------------------------------------------------- */
/* gradients handed to dorac_model_backward_ex's callback                 */
/* ---------------------------------------------------------------------- */

/* The most one stage hands over: a block's four norm parameters and three
** gradients per linear (LoRA's A and B and DoRA's magnitude, or full
** fine-tuning's weight and bias). */
#define READY_MAX 32
_Static_assert(READY_MAX >= 4 + 3 * LIN_PER_BLOCK, "a block's gradients fit in one ready list");

typedef struct ready_list {
    const dorac_tensor *t[READY_MAX];
    size_t n;
} ready_list;

static void ready_push(ready_list *r, const dorac_tensor *g) {
    if (g->data) r->t[r->n++] = g;
}

static void ready_param(ready_list *r, const dorac_model_param *p) {
    if (p) ready_push(r, &p->grad);
}

/* A linear's trainable gradients: its adapter's, or under full fine-tuning
** its weight's and bias's (views of its parameters' gradients), except a
** weight tied to the embedding, which the embedding stage hands over. */
static void ready_linear(ready_list *r, const dorac_model *m, const dorac_model_linear *l) {
    if (!l) return;
    if (l->A.data) ready_push(r, &l->dA), ready_push(r, &l->dB);
    if (l->m.data) ready_push(r, &l->dm);
    if (l->dW.data && l->dW.data != m->embed->grad.data) ready_push(r, &l->dW);
    if (l->dbias.data) ready_push(r, &l->dbias);
}

static int ready_call(ready_list *r, dorac_grads_ready_fn ready, void *ctx) {
    int rc = r->n && ready ? ready(ctx, r->t, r->n) : DORAC_OK;
    r->n = 0;
    return rc;
}

/* A DoRA layer whose backward sums into its zsum. */
static bool has_dora_sum(const dorac_model_linear *l) {
    return l->active && l->L.cfg.method == DORAC_METHOD_DORA && l->L.zsum.data;
}

/* Zeroes every DoRA layer's zsum with one fill_many, a launch or two
** instead of one per layer, and marks them so that their backwards skip the
** fill. */
static int zero_dora_sums(dorac_model *m) {
    size_t n = 0;
    const dorac_tensor **list = malloc((m->n_linears ? m->n_linears : 1) * sizeof *list);
    if (!list) return dorac_error(DORAC_E_NOMEM, "model: out of memory listing the DoRA sums");
    for (size_t i = 0; i < m->n_linears; i++)
        if (has_dora_sum(&m->linears[i])) list[n++] = &m->linears[i].L.zsum;
    int rc = dorac_fill_many(m->be, list, n, 0.0);
    free(list);
    for (size_t i = 0; !rc && i < m->n_linears; i++)
        if (has_dora_sum(&m->linears[i])) m->linears[i].L.zsum_zeroed = true;
    return rc;
}

int dorac_model_backward(dorac_model *m) {
    return dorac_model_backward_ex(m, NULL, NULL);
}

int dorac_model_backward_ex(dorac_model *m, dorac_grads_ready_fn ready, void *ctx) {
    dorac_backend *be = m->be;
    model_acts *a = &m->acts;
    if (!a->ready_for_backward)
        return dorac_error(DORAC_E_INVALID, "model: backward needs a training forward just before it");
    a->ready_for_backward = false;
    const dorac_model_config *c = &m->cfg;
    ready_list r = {.n = 0};
    DORAC_TRY(be->fill(be, &a->dres, 0.0));
    DORAC_TRY(zero_dora_sums(m));
    DORAC_TRY(norm_backward(m, &a->dres, &a->dlnf, &a->res_final, &a->lnf_mean, &a->lnf_rstd, m->final_w,
                            m->final_b));
    /* the head's backward ran in the forward */
    ready_param(&r, m->final_w);
    ready_param(&r, m->final_b);
    ready_linear(&r, m, m->head);
    DORAC_TRY(ready_call(&r, ready, ctx));
    for (int64_t l = c->n_layers - 1; l >= 0; l--) {
        DORAC_TRY(block_backward(m, l, &a->blocks[l], a->dropout_seed));
        const block_params *p = &m->blocks[l];
        ready_param(&r, p->ln1_w);
        ready_param(&r, p->ln1_b);
        ready_param(&r, p->ln2_w);
        ready_param(&r, p->ln2_b);
        for (int k = 0; k < LIN_PER_BLOCK; k++) ready_linear(&r, m, p->lin[k]);
        DORAC_TRY(ready_call(&r, ready, ctx));
    }
    if (m->embed->grad.data) DORAC_TRY(be->embedding_backward(be, &m->embed->grad, &a->dres, &a->ids));
    if (m->pos_embed && m->pos_embed->grad.data)
        DORAC_TRY(be->embedding_backward(be, &m->pos_embed->grad, &a->dres, &a->pos));
    ready_param(&r, m->embed);
    ready_param(&r, m->pos_embed);
    return ready_call(&r, ready, ctx);
}
