/*
** model.c — the model's parameter table, its linear layers, the training
** method (frozen / full / LoRA / DoRA), trainable lists, random init and
** merge. Forward and backward are in forward.c.
**
** Invariants:
**   - params[] holds every base tensor once, named as in the HF state dict;
**     a tied lm_head has no entry of its own (its linear points at the
**     embedding).
**   - Every linear is always initialised (dorac_linear_init ran): FROZEN
**     until a method is set.
**   - Adapter tensors (A, B, m and their gradients) are owned by the
**     dorac_model_linear and exist only for adapted linears.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "core/size.h"
#include "model/model_internal.h"

/* Upper bounds that keep every product in this file and forward.c within
** int64 and size_t: generous for real models (Llama-405B has C = 16384,
** V = 128256, I = 53248). */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 1024

int dorac_model_config_check(const dorac_model_config *c) {
    struct { const char *name; int64_t v; int64_t max; } f[] = {
        {"vocab_size", c->vocab_size, 1 << 24}, {"hidden_size", c->hidden_size, MAX_DIM},
        {"intermediate_size", c->intermediate_size, MAX_DIM}, {"num_hidden_layers", c->n_layers, MAX_LAYERS},
        {"num_attention_heads", c->n_heads, 4096}, {"num_key_value_heads", c->n_kv_heads, 4096},
        {"head_dim", c->head_dim, 4096}, {"max_position_embeddings", c->max_positions, 1 << 24},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0 || f[i].v > f[i].max)
            return dorac_error(DORAC_E_INVALID, "model config: %s = %lld is outside [1, %lld]", f[i].name,
                               (long long)f[i].v, (long long)f[i].max);
    if (c->n_heads % c->n_kv_heads)
        return dorac_error(DORAC_E_INVALID, "model config: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                           (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->n_heads * c->head_dim > MAX_DIM)
        return dorac_error(DORAC_E_INVALID, "model config: heads x head_dim = %lld is too large",
                           (long long)(c->n_heads * c->head_dim));
    if (c->family == DORAC_FAMILY_LLAMA && c->head_dim % 2)
        return dorac_error(DORAC_E_INVALID, "model config: head_dim %lld must be even for RoPE", (long long)c->head_dim);
    if (c->family == DORAC_FAMILY_GPT2 && (c->n_heads * c->head_dim != c->hidden_size || c->n_kv_heads != c->n_heads))
        return dorac_error(DORAC_E_INVALID, "model config: gpt2 needs n_head x head_dim == n_embd and no GQA");
    if (!(c->norm_eps > 0 && c->norm_eps < 1))
        return dorac_error(DORAC_E_INVALID, "model config: norm epsilon %g is not in (0, 1)", c->norm_eps);
    if (c->family == DORAC_FAMILY_LLAMA && !(c->rope_theta > 0))
        return dorac_error(DORAC_E_INVALID, "model config: rope_theta %g must be positive", c->rope_theta);
    if (c->rope_type != DORAC_MODEL_ROPE_DEFAULT && !(c->rope_factor > 0))
        return dorac_error(DORAC_E_INVALID, "model config: rope factor %g must be positive", c->rope_factor);
    if (c->rope_type == DORAC_MODEL_ROPE_LLAMA3 &&
        (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_positions <= 0))
        return dorac_error(DORAC_E_INVALID, "model config: llama3 rope needs high_freq_factor > low_freq_factor and original_max_position_embeddings > 0");
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* building the tables                                                    */
/* ---------------------------------------------------------------------- */

typedef struct builder {
    dorac_model *m;
    size_t cap_params, cap_linears;
    int rc;
} builder;

static dorac_model_param *add_param(builder *b, const char *name, int64_t rows, int64_t cols,
                                    bool transposed) {
    if (b->rc) return NULL;
    dorac_model *m = b->m;
    if (m->n_params == b->cap_params) {
        b->rc = dorac_error(DORAC_E_INVALID, "model: parameter table overflow");
        return NULL;
    }
    dorac_model_param *p = &m->params[m->n_params++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->transposed_at_load = transposed;
    p->grad = dorac_tensor_none(m->be->param_type);
    b->rc = dorac_tensor_alloc(m->be, &p->w, m->be->weight_type, rows, cols, name);
    return p;
}

/* A linear whose weight (and bias, when has_bias) are new params named
** "<path>.weight" / "<path>.bias". W is (out, in). */
static dorac_model_linear *add_linear(builder *b, const char *path, const char *short_name,
                                      int64_t in, int64_t out, bool has_bias, bool conv1d,
                                      dorac_model_param *shared_weight) {
    if (b->rc) return NULL;
    dorac_model *m = b->m;
    if (m->n_linears == b->cap_linears) {
        b->rc = dorac_error(DORAC_E_INVALID, "model: linear table overflow");
        return NULL;
    }
    char name[160];
    dorac_model_param *w = shared_weight, *bias = NULL;
    if (!w) {
        snprintf(name, sizeof name, "%s.weight", path);
        w = add_param(b, name, out, in, conv1d);
    }
    if (has_bias) {
        snprintf(name, sizeof name, "%s.bias", path);
        bias = add_param(b, name, 1, out, false);
    }
    if (b->rc) return NULL;
    dorac_model_linear *l = &m->linears[m->n_linears];
    size_t len = strlen(path);
    if (len >= sizeof l->path) {
        b->rc = dorac_error(DORAC_E_INVALID, "model: module path %.40s... is longer than %zu bytes", path,
                            sizeof l->path - 1);
        return NULL;
    }
    m->n_linears++;
    memset(l, 0, sizeof *l);
    memcpy(l->path, path, len + 1);
    l->short_name = short_name;
    l->in = in;
    l->out = out;
    dorac_dtype pt = m->be->param_type;
    l->A = l->B = l->m = l->dA = l->dB = l->dm = l->dW = l->dbias = dorac_tensor_none(pt);
    l->A_w = l->B_w = dorac_tensor_none(w->w.type);
    dorac_adapter_config frozen = {.method = DORAC_METHOD_FROZEN};
    dorac_tensor none = dorac_tensor_none(pt);
    dorac_linear_tensors t = {.W = w->w, .bias = bias ? bias->w : dorac_tensor_none(m->be->weight_type),
                              .A = none, .B = none, .m = none, .dA = none, .dB = none, .dm = none,
                              .dW = none, .dbias = none};
    b->rc = dorac_linear_init(&l->L, m->be, &frozen, in, out, &t, path);
    l->active = b->rc == DORAC_OK;
    return l;
}

static void build_llama(builder *b) {
    dorac_model *m = b->m;
    const dorac_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size, HD = c->n_heads * c->head_dim;
    int64_t KVD = c->n_kv_heads * c->head_dim;
    char name[128], path[128];
    m->embed = add_param(b, "model.embed_tokens.weight", c->vocab_size, C, false);
    for (int64_t l = 0; l < c->n_layers && !b->rc; l++) {
        block_params *bp = &m->blocks[l];
        snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
        bp->ln1_w = add_param(b, name, 1, C, false);
        struct { int slot; const char *sub, *short_name; int64_t in, out; bool bias; } lins[] = {
            {LIN_Q, "self_attn.q_proj", "q_proj", C, HD, c->qkv_bias},
            {LIN_K, "self_attn.k_proj", "k_proj", C, KVD, c->qkv_bias},
            {LIN_V, "self_attn.v_proj", "v_proj", C, KVD, c->qkv_bias},
            {LIN_O, "self_attn.o_proj", "o_proj", HD, C, c->o_bias},
            {LIN_GATE, "mlp.gate_proj", "gate_proj", C, I, c->mlp_bias},
            {LIN_UP, "mlp.up_proj", "up_proj", C, I, c->mlp_bias},
            {LIN_DOWN, "mlp.down_proj", "down_proj", I, C, c->mlp_bias},
        };
        for (size_t k = 0; k < sizeof lins / sizeof lins[0]; k++) {
            if (k == 4) { /* the MLP's norm sits between o_proj and gate_proj */
                snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
                bp->ln2_w = add_param(b, name, 1, C, false);
            }
            snprintf(path, sizeof path, "model.layers.%lld.%s", (long long)l, lins[k].sub);
            bp->lin[lins[k].slot] = add_linear(b, path, lins[k].short_name, lins[k].in, lins[k].out,
                                               lins[k].bias, false, NULL);
        }
    }
    m->final_w = add_param(b, "model.norm.weight", 1, C, false);
    m->head_w = c->tie_embeddings ? m->embed : NULL;
    m->head = add_linear(b, "lm_head", "lm_head", C, c->vocab_size, false, false, m->head_w);
    if (!b->rc && !c->tie_embeddings) m->head_w = dorac_model_find_param(m, "lm_head.weight");
}

static void build_gpt2(builder *b) {
    dorac_model *m = b->m;
    const dorac_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, I = c->intermediate_size;
    char name[128], path[128];
    m->embed = add_param(b, "transformer.wte.weight", c->vocab_size, C, false);
    m->pos_embed = add_param(b, "transformer.wpe.weight", c->max_positions, C, false);
    for (int64_t l = 0; l < c->n_layers && !b->rc; l++) {
        block_params *bp = &m->blocks[l];
        const char *h = "transformer.h";
        snprintf(name, sizeof name, "%s.%lld.ln_1.weight", h, (long long)l);
        bp->ln1_w = add_param(b, name, 1, C, false);
        snprintf(name, sizeof name, "%s.%lld.ln_1.bias", h, (long long)l);
        bp->ln1_b = add_param(b, name, 1, C, false);
        snprintf(path, sizeof path, "%s.%lld.attn.c_attn", h, (long long)l);
        bp->lin[LIN_QKV] = add_linear(b, path, "c_attn", C, 3 * C, true, true, NULL);
        snprintf(path, sizeof path, "%s.%lld.attn.c_proj", h, (long long)l);
        bp->lin[LIN_O] = add_linear(b, path, "c_proj", C, C, true, true, NULL);
        snprintf(name, sizeof name, "%s.%lld.ln_2.weight", h, (long long)l);
        bp->ln2_w = add_param(b, name, 1, C, false);
        snprintf(name, sizeof name, "%s.%lld.ln_2.bias", h, (long long)l);
        bp->ln2_b = add_param(b, name, 1, C, false);
        snprintf(path, sizeof path, "%s.%lld.mlp.c_fc", h, (long long)l);
        bp->lin[LIN_UP] = add_linear(b, path, "c_fc", C, I, true, true, NULL);
        snprintf(path, sizeof path, "%s.%lld.mlp.c_proj", h, (long long)l);
        bp->lin[LIN_DOWN] = add_linear(b, path, "c_proj", I, C, true, true, NULL);
    }
    m->final_w = add_param(b, "transformer.ln_f.weight", 1, C, false);
    m->final_b = add_param(b, "transformer.ln_f.bias", 1, C, false);
    m->head_w = m->embed; /* GPT-2 ties lm_head to wte */
    m->head = add_linear(b, "lm_head", "lm_head", C, c->vocab_size, false, false, m->head_w);
}

int dorac_model_create(dorac_model **out, dorac_backend *be, const dorac_model_config *cfg) {
    *out = NULL;
    DORAC_TRY(dorac_model_config_check(cfg));
    dorac_model *m = calloc(1, sizeof *m);
    if (!m) return dorac_error(DORAC_E_NOMEM, "model: out of memory");
    m->be = be;
    m->cfg = *cfg;
    m->method = DORAC_METHOD_FROZEN;
    m->rope_cos = m->rope_sin = dorac_tensor_none(be->param_type);
    size_t L = (size_t)cfg->n_layers;
    /* at most 16 params a layer (Llama with attention_bias and mlp_bias: 7
    ** weights, 7 biases, 2 norms; GPT-2 has 12) and 8 outside the blocks */
    builder b = {m, 16 * L + 8, 8 * L + 2, DORAC_OK};
    m->params = calloc(b.cap_params, sizeof *m->params);
    m->linears = calloc(b.cap_linears, sizeof *m->linears);
    m->blocks = calloc(L, sizeof *m->blocks);
    if (!m->params || !m->linears || !m->blocks) {
        dorac_model_free(m);
        return dorac_error(DORAC_E_NOMEM, "model: out of memory for tables");
    }
    if (cfg->family == DORAC_FAMILY_GPT2)
        build_gpt2(&b);
    else
        build_llama(&b);
    if (!b.rc && cfg->family == DORAC_FAMILY_LLAMA) b.rc = dorac_model_rope_tables(m);
    if (b.rc) {
        dorac_model_free(m);
        return b.rc;
    }
    *out = m;
    return DORAC_OK;
}

static void linear_free_adapter(dorac_backend *be, dorac_model_linear *l) {
    dorac_tensor *ts[] = {&l->A, &l->B, &l->m, &l->dA, &l->dB, &l->dm, &l->dW, &l->dbias, &l->B_w};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dorac_tensor_free(be, ts[i]);
    if (l->a_w_owned) dorac_tensor_free(be, &l->A_w);
    l->A_w = dorac_tensor_none(l->A_w.type); /* else a view into the weight's allocation */
    l->a_w_owned = false;
}

void dorac_model_free(dorac_model *m) {
    if (!m) return;
    dorac_model_acts_free(m);
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        if (l->active) dorac_linear_free(&l->L);
        /* FULL gradients belong to params, not to the linear */
        l->dW = l->dbias = dorac_tensor_none(m->be->param_type);
        linear_free_adapter(m->be, l);
    }
    for (size_t i = 0; i < m->n_params; i++) {
        dorac_tensor_free(m->be, &m->params[i].w);
        dorac_tensor_free(m->be, &m->params[i].grad);
    }
    dorac_tensor_free(m->be, &m->rope_cos);
    dorac_tensor_free(m->be, &m->rope_sin);
    free(m->params);
    free(m->linears);
    free(m->blocks);
    free(m);
}

const dorac_model_config *dorac_model_get_config(const dorac_model *m) { return &m->cfg; }
dorac_backend *dorac_model_backend(const dorac_model *m) { return m->be; }
size_t dorac_model_n_params(const dorac_model *m) { return m->n_params; }
dorac_model_param *dorac_model_param_at(dorac_model *m, size_t i) { return i < m->n_params ? &m->params[i] : NULL; }
size_t dorac_model_n_linears(const dorac_model *m) { return m->n_linears; }
dorac_model_linear *dorac_model_linear_at(dorac_model *m, size_t i) { return i < m->n_linears ? &m->linears[i] : NULL; }
dorac_method dorac_model_method(const dorac_model *m) { return m->method; }

dorac_model_param *dorac_model_find_param(dorac_model *m, const char *name) {
    for (size_t i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

dorac_model_linear *dorac_model_find_linear(dorac_model *m, const char *path) {
    for (size_t i = 0; i < m->n_linears; i++)
        if (!strcmp(m->linears[i].path, path)) return &m->linears[i];
    return NULL;
}

int64_t dorac_model_param_count(const dorac_model *m) {
    int64_t n = 0;
    for (size_t i = 0; i < m->n_params; i++) n += m->params[i].w.rows * m->params[i].w.cols;
    return n;
}

/* ---------------------------------------------------------------------- */
/* methods                                                                */
/* ---------------------------------------------------------------------- */

/* Re-initialises linear l with cfg and the tensors it now needs. */
static int linear_reinit(dorac_model *m, dorac_model_linear *l, const dorac_adapter_config *cfg) {
    dorac_linear_tensors t = l->L.t;
    t.A = l->A, t.B = l->B, t.m = l->m, t.dA = l->dA, t.dB = l->dB, t.dm = l->dm;
    t.A_w = l->A_w, t.B_w = l->B_w;
    t.dW = l->dW, t.dbias = l->dbias;
    if (l->active) dorac_linear_free(&l->L);
    l->active = false;
    DORAC_TRY(dorac_linear_init(&l->L, m->be, cfg, l->in, l->out, &t, l->path));
    l->active = true;
    l->L.dropout_stream = (uint64_t)(l - m->linears) + 1;
    return DORAC_OK;
}

/* Gives linear l's weight r more rows in a new allocation (W's values
** copied, the old one freed) and makes l->A_w those rows: A in W's type
** right after W0, so that the backward reads [W0 ; A] as one operand
** (dorac_linear_tensors). The param table's view and every linear's view
** of the old weight (a tied lm_head's) are repointed, as promote_weights
** does. A weight that is not a whole param of the table keeps its rows
** and gets no A_w (the backward then runs the adapter's dx on its own). */
static int extend_weight(dorac_model *m, dorac_model_linear *l, int64_t r) {
    dorac_backend *be = m->be;
    dorac_tensor W = l->L.t.W;
    dorac_model_param *p = NULL;
    for (size_t i = 0; i < m->n_params && !p; i++)
        if (m->params[i].w.data == W.data && m->params[i].w.rows == W.rows && m->params[i].w.ld == W.ld)
            p = &m->params[i];
    if (!p || W.ld != W.cols) return DORAC_OK;
    dorac_tensor ext;
    DORAC_TRY(dorac_tensor_alloc(be, &ext, W.type, W.rows + r, W.cols, l->path));
    dorac_tensor top = dorac_tensor_rows(&ext, 0, W.rows);
    int rc = be->copy(be, &top, &W);
    if (rc) {
        dorac_tensor_free(be, &ext);
        return rc;
    }
    for (size_t k = 0; k < m->n_linears; k++) {
        dorac_linear_tensors *t = &m->linears[k].L.t;
        if (t->W.data == W.data) t->W = top;
    }
    dorac_tensor_free(be, &p->w);
    p->w = top;
    l->A_w = dorac_tensor_rows(&ext, W.rows, r);
    return DORAC_OK;
}

static int attach_adapter(dorac_model *m, dorac_model_linear *l, const dorac_adapter_config *cfg,
                          uint64_t seed) {
    dorac_backend *be = m->be;
    dorac_dtype pt = be->param_type;
    DORAC_TRY(dorac_adapter_config_check(cfg, l->in, l->out, l->path));
    int64_t r = cfg->rank;
    int rc = DORAC_OK;
    linear_free_adapter(be, l); /* one left by a set_method that failed half-way */
    if (r > 0) {
        rc = dorac_tensor_alloc(be, &l->A, pt, r, l->in, "lora_A");
        if (!rc) rc = dorac_tensor_alloc(be, &l->B, pt, l->out, r, "lora_B");
        if (!rc) rc = dorac_tensor_alloc(be, &l->dA, pt, r, l->in, "lora_A grad");
        if (!rc) rc = dorac_tensor_alloc(be, &l->dB, pt, l->out, r, "lora_B grad");
        /* A's copy after W's rows only where the backward can use it there:
        ** not the head (its dz, the chunk's dlogits, has no spare columns)
        ** nor a layer with dropout (its adapter dx runs on its own); those
        ** get a copy of their own, which u = x A^T and P still read */
        if (!rc && l != m->head && cfg->dropout == 0.0) rc = extend_weight(m, l, r);
        if (!rc && !l->A_w.data) {
            rc = dorac_tensor_alloc(be, &l->A_w, l->L.t.W.type, r, l->in, "lora_A copy");
            l->a_w_owned = rc == DORAC_OK;
        }
        if (!rc) rc = dorac_tensor_alloc(be, &l->B_w, l->L.t.W.type, l->out, r, "lora_B copy");
    }
    if (!rc && cfg->method == DORAC_METHOD_DORA) {
        rc = dorac_tensor_alloc(be, &l->m, pt, 1, l->out, "magnitude");
        if (!rc) rc = dorac_tensor_alloc(be, &l->dm, pt, 1, l->out, "magnitude grad");
    }
    if (!rc) rc = linear_reinit(m, l, cfg);
    if (!rc) rc = dorac_linear_init_adapter(&l->L, seed, (uint64_t)(l - m->linears) + 1);
    if (rc) {
        linear_free_adapter(be, l);
        return rc;
    }
    return DORAC_OK;
}

/* Full fine-tuning trains every weight in param_type. Where the backend
** keeps frozen weights narrower (CUDA: BF16 weights, F32 params), each
** weight becomes an F32 master copy here; GEMMs then meet BF16 activations
** through the backend's autocast rule (backend.h). Linears hold copies of
** their weight and bias views, so those are repointed too. */
static int promote_weights(dorac_model *m) {
    dorac_backend *be = m->be;
    for (size_t i = 0; i < m->n_params; i++) {
        dorac_model_param *p = &m->params[i];
        if (p->w.type == be->param_type) continue;
        dorac_tensor master;
        DORAC_TRY(dorac_tensor_alloc(be, &master, be->param_type, p->w.rows, p->w.cols, p->name));
        int rc = be->copy(be, &master, &p->w);
        if (rc) {
            dorac_tensor_free(be, &master);
            return rc;
        }
        for (size_t k = 0; k < m->n_linears; k++) {
            dorac_linear_tensors *t = &m->linears[k].L.t;
            if (t->W.data == p->w.data) t->W = master;
            if (t->bias.data == p->w.data) t->bias = master;
        }
        dorac_tensor_free(be, &p->w);
        p->w = master;
    }
    return DORAC_OK;
}

static int set_full(dorac_model *m) {
    dorac_backend *be = m->be;
    DORAC_TRY(promote_weights(m));
    for (size_t i = 0; i < m->n_params; i++) {
        dorac_model_param *p = &m->params[i];
        DORAC_TRY(dorac_tensor_alloc(be, &p->grad, be->param_type, p->w.rows, p->w.cols, p->name));
    }
    dorac_adapter_config full = {.method = DORAC_METHOD_FULL};
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        /* the linear's dW/dbias are views of its params' gradients */
        for (size_t k = 0; k < m->n_params; k++) {
            if (m->params[k].w.data == l->L.t.W.data) l->dW = m->params[k].grad;
            if (l->L.t.bias.data && m->params[k].w.data == l->L.t.bias.data) l->dbias = m->params[k].grad;
        }
        DORAC_TRY(linear_reinit(m, l, &full));
    }
    return dorac_model_zero_grad(m);
}

int dorac_model_set_method(dorac_model *m, dorac_method method, dorac_target_fn select,
                           void *ctx, uint64_t seed) {
    if (m->method != DORAC_METHOD_FROZEN)
        return dorac_error(DORAC_E_INVALID, "model: a training method (%s) is already set",
                           dorac_method_name(m->method));
    if (method == DORAC_METHOD_FROZEN) return DORAC_OK;
    dorac_model_acts_free(m); /* their adapter scratch depends on the method */
    if (method == DORAC_METHOD_FULL) {
        int rc = set_full(m);
        m->method = method;
        return rc;
    }
    if (method != DORAC_METHOD_LORA && method != DORAC_METHOD_DORA)
        return dorac_error(DORAC_E_INVALID, "model: unknown method %d", (int)method);
    if (!select) return dorac_error(DORAC_E_INVALID, "model: no target selector for %s", dorac_method_name(method));
    size_t n_adapted = 0;
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        dorac_adapter_config cfg = {.method = method, .rank = 8, .alpha = 16, .norm_grad = DORAC_NORM_GRAD_DETACH};
        if (!select(ctx, l->path, l->short_name, &cfg)) continue;
        cfg.method = method;
        DORAC_TRY(attach_adapter(m, l, &cfg, seed));
        n_adapted++;
    }
    if (n_adapted == 0)
        return dorac_error(DORAC_E_INVALID, "model: the target list matched none of the model's %zu linear layers",
                           m->n_linears);
    m->method = method;
    return dorac_model_zero_grad(m);
}

int dorac_model_clear_adapters(dorac_model *m) {
    if (m->method == DORAC_METHOD_FULL)
        return dorac_error(DORAC_E_INVALID, "model: only LoRA/DoRA adapters can be cleared, not full fine-tuning (its weights changed)");
    dorac_model_acts_free(m); /* their adapter scratch depends on the method */
    dorac_adapter_config frozen = {.method = DORAC_METHOD_FROZEN};
    /* every linear, not only when a method is set: a load that failed
    ** half-way leaves some adapters attached and the method unset */
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        if (!l->active || (l->L.cfg.method != DORAC_METHOD_LORA && l->L.cfg.method != DORAC_METHOD_DORA)) continue;
        linear_free_adapter(m->be, l);
        DORAC_TRY(linear_reinit(m, l, &frozen));
    }
    m->method = DORAC_METHOD_FROZEN;
    return DORAC_OK;
}

size_t dorac_model_trainables(dorac_model *m, dorac_trainable *out, size_t cap) {
    size_t n = 0;
#define PUSH(nm, val, gr, dec)                                        \
    do {                                                              \
        if (n < cap) {                                                \
            snprintf(out[n].name, sizeof out[n].name, "%s", nm);      \
            out[n].value = (val);                                     \
            out[n].grad = (gr);                                       \
            out[n].decay = (dec);                                     \
        }                                                             \
        n++;                                                          \
    } while (0)
    if (m->method == DORAC_METHOD_FULL) {
        for (size_t i = 0; i < m->n_params; i++) {
            dorac_model_param *p = &m->params[i];
            bool matrix = p->w.rows > 1; /* no decay on norms and biases */
            PUSH(p->name, &p->w, &p->grad, matrix);
        }
        return n;
    }
    char key[160];
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        if (l->A.data) {
            snprintf(key, sizeof key, "base_model.model.%s.lora_A.weight", l->path);
            PUSH(key, &l->A, &l->dA, true);
            snprintf(key, sizeof key, "base_model.model.%s.lora_B.weight", l->path);
            PUSH(key, &l->B, &l->dB, true);
        }
        if (l->m.data) {
            snprintf(key, sizeof key, "base_model.model.%s.lora_magnitude_vector", l->path);
            PUSH(key, &l->m, &l->dm, false);
        }
    }
#undef PUSH
    return n;
}

/* Every gradient zeroed by one fill_many (a launch or two on the GPU
** instead of one per tensor; fill_many skips absent ones). */
int dorac_model_zero_grad(dorac_model *m) {
    size_t cap = m->n_params + 3 * m->n_linears, n = 0;
    const dorac_tensor **list = malloc((cap ? cap : 1) * sizeof *list);
    if (!list) return dorac_error(DORAC_E_NOMEM, "model: out of memory listing the gradients");
    for (size_t i = 0; i < m->n_params; i++) list[n++] = &m->params[i].grad;
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        list[n++] = &l->dA, list[n++] = &l->dB, list[n++] = &l->dm;
    }
    int rc = dorac_fill_many(m->be, list, n, 0.0);
    free(list);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* random init and merge                                                  */
/* ---------------------------------------------------------------------- */

int dorac_model_init_random(dorac_model *m, uint64_t seed) {
    double resid_scale = 1.0 / sqrt(2.0 * (double)m->cfg.n_layers);
    for (size_t i = 0; i < m->n_params; i++) {
        dorac_model_param *p = &m->params[i];
        size_t n = (size_t)(p->w.rows * p->w.cols);
        double *h = malloc((n ? n : 1) * sizeof *h);
        if (!h) return dorac_error(DORAC_E_NOMEM, "init: out of memory for %s", p->name);
        const char *nm = p->name;
        bool is_norm = strstr(nm, "norm") || strstr(nm, "ln_");
        bool is_bias = strlen(nm) > 5 && !strcmp(nm + strlen(nm) - 5, ".bias");
        bool resid = strstr(nm, "o_proj") || strstr(nm, "down_proj") || strstr(nm, "c_proj");
        for (size_t k = 0; k < n; k++) {
            if (is_bias) h[k] = 0.0;
            else if (is_norm) h[k] = 1.0;
            else h[k] = 0.02 * (resid ? resid_scale : 1.0) * dorac_rng_normal(seed, 1000 + i, k);
        }
        int rc = m->be->upload(m->be, &p->w, h, DORAC_DTYPE_F64);
        free(h);
        DORAC_TRY(rc);
    }
    /* the DoRA caches hold ||W0 row||^2 of the old weights: refresh them */
    for (size_t i = 0; i < m->n_linears; i++)
        if (m->linears[i].L.c.data) DORAC_TRY(m->be->row_sumsq(m->be, &m->linears[i].L.c, &m->linears[i].L.t.W));
    return DORAC_OK;
}

int dorac_model_merge_adapters(dorac_model *m) {
    if (m->method != DORAC_METHOD_LORA && m->method != DORAC_METHOD_DORA)
        return dorac_error(DORAC_E_INVALID, "merge: the model has no adapters (method %s)", dorac_method_name(m->method));
    dorac_backend *be = m->be;
    dorac_adapter_config frozen = {.method = DORAC_METHOD_FROZEN};
    dorac_model_acts_free(m);
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        if (l->L.cfg.method == DORAC_METHOD_FROZEN) continue;
        if (l == m->head && m->head_w == m->embed)
            return dorac_error(DORAC_E_UNSUPPORTED,
                               "merge: lm_head is tied to the embedding; merging its adapter would change the embedding too");
        dorac_tensor merged;
        DORAC_TRY(dorac_tensor_alloc(be, &merged, be->weight_type, l->out, l->in, "merged weight"));
        int rc = dorac_linear_merge(&l->L, &merged);
        if (!rc) rc = be->copy(be, &l->L.t.W, &merged);
        dorac_tensor_free(be, &merged);
        DORAC_TRY(rc);
        linear_free_adapter(be, l);
        DORAC_TRY(linear_reinit(m, l, &frozen));
    }
    m->method = DORAC_METHOD_FROZEN;
    return DORAC_OK;
}
