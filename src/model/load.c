/*
** load.c — a model from a Hugging Face folder: config.json mapped onto
** dorac_model_config, then every parameter read from the safetensors file
** (or shards), checked for shape, converted to the backend's weight type,
** and, for GPT-2's Conv1D weights, transposed from (in, out) to (out, in).
**
** A checkpoint must hold every tensor the model needs; a tensor the model
** does not know is an error naming it (a wrong architecture or a head dorac
** does not have), except buffers transformers itself regenerates (GPT-2's
** attn.bias / attn.masked_bias, rotary inv_freq) and a tied lm_head.weight.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/model_internal.h"

int dorac_model_config_from_hf(dorac_model_config *mc, const dorac_hf_config *hc, const char *file) {
    memset(mc, 0, sizeof *mc);
    snprintf(mc->model_type, sizeof mc->model_type, "%s", hc->model_type);
    bool gpt2 = hc->arch == DORAC_ARCH_GPT2;
    mc->family = gpt2 ? DORAC_FAMILY_GPT2 : DORAC_FAMILY_LLAMA;
    if (gpt2 && hc->hidden_act != DORAC_ACT_GELU_TANH)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: gpt2 with activation_function '%s' is not supported (only gelu_new)",
                           file, hc->hidden_act_name);
    if (!gpt2 && hc->hidden_act != DORAC_ACT_SILU)
        return dorac_error(DORAC_E_UNSUPPORTED, "%s: %s with hidden_act '%s' is not supported (only silu)", file,
                           hc->model_type, hc->hidden_act_name);
    mc->vocab_size = hc->vocab_size;
    mc->hidden_size = hc->hidden_size;
    mc->intermediate_size = hc->intermediate_size;
    mc->n_layers = hc->num_hidden_layers;
    mc->n_heads = hc->num_attention_heads;
    mc->n_kv_heads = hc->num_key_value_heads;
    mc->head_dim = hc->head_dim;
    mc->max_positions = hc->max_position_embeddings;
    mc->norm_eps = hc->norm_eps;
    mc->tie_embeddings = gpt2 ? true : hc->tie_word_embeddings;
    mc->qkv_bias = !gpt2 && hc->qkv_bias;
    mc->o_bias = !gpt2 && hc->o_bias;
    mc->mlp_bias = !gpt2 && hc->mlp_bias;
    mc->sliding_window = hc->sliding_window;
    mc->rope_theta = hc->rope.theta;
    mc->rope_factor = hc->rope.factor;
    mc->rope_low_freq_factor = hc->rope.low_freq_factor;
    mc->rope_high_freq_factor = hc->rope.high_freq_factor;
    mc->rope_original_max_positions = hc->rope.original_max_position_embeddings;
    switch (hc->rope.type) {
    case DORAC_ROPE_LINEAR: mc->rope_type = DORAC_MODEL_ROPE_LINEAR; break;
    case DORAC_ROPE_LLAMA3: mc->rope_type = DORAC_MODEL_ROPE_LLAMA3; break;
    default: mc->rope_type = DORAC_MODEL_ROPE_DEFAULT; break;
    }
    int rc = dorac_model_config_check(mc);
    return rc ? dorac_error_prefix(rc, "%s", file) : DORAC_OK;
}

/* The file's name for a parameter: GPT-2 checkpoints exist with and without
** the "transformer." prefix. */
static const dorac_st_tensor *find_tensor(const dorac_safetensors *st, const dorac_model_param *p) {
    const dorac_st_tensor *t = dorac_safetensors_find(st, p->name);
    if (!t && !strncmp(p->name, "transformer.", 12)) t = dorac_safetensors_find(st, p->name + 12);
    return t;
}

static bool ignorable(const char *name, const dorac_model *m) {
    size_t n = strlen(name);
    const char *suffixes[] = {".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && !strcmp(name + n - k, suffixes[i])) return true;
    }
    return m->cfg.tie_embeddings && !strcmp(name, "lm_head.weight");
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int n) {
    size_t at = 0;
    at += (size_t)snprintf(buf + at, cap - at, "[");
    for (int i = 0; i < n && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

/* Reads one tensor into p->w, checking its shape. */
static int load_param(dorac_model *m, dorac_model_param *p, const dorac_st_tensor *t, float *host,
                      float *scratch) {
    int64_t rows = p->w.rows, cols = p->w.cols;
    int64_t want[2];
    int want_dims;
    if (rows == 1) want[0] = cols, want_dims = 1;          /* vectors: norms, biases */
    else if (p->transposed_at_load) want[0] = cols, want[1] = rows, want_dims = 2;
    else want[0] = rows, want[1] = cols, want_dims = 2;
    bool ok = t->n_dims == want_dims;
    for (int i = 0; ok && i < want_dims; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char got_s[96], want_s[96];
        shape_str(got_s, sizeof got_s, t->shape, t->n_dims);
        shape_str(want_s, sizeof want_s, want, want_dims);
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' has shape %s, expected %s for this config", t->file,
                           t->name, got_s, want_s);
    }
    DORAC_TRY(dorac_st_tensor_read(t, p->transposed_at_load ? scratch : host, DORAC_DTYPE_F32));
    if (p->transposed_at_load) /* file (in=cols, out=rows) -> ours (out, in) */
        for (int64_t i = 0; i < cols; i++)
            for (int64_t o = 0; o < rows; o++) host[o * cols + i] = scratch[i * rows + o];
    return m->be->upload(m->be, &p->w, host, DORAC_DTYPE_F32);
}

int dorac_model_load_weights(dorac_model *m, const char *path) {
    dorac_safetensors *st;
    DORAC_TRY(dorac_safetensors_open(&st, path));
    size_t max_elems = 1;
    for (size_t i = 0; i < m->n_params; i++) {
        size_t n = (size_t)(m->params[i].w.rows * m->params[i].w.cols);
        if (n > max_elems) max_elems = n;
    }
    float *host = malloc(max_elems * sizeof *host), *scratch = malloc(max_elems * sizeof *scratch);
    int rc = (!host || !scratch) ? dorac_error(DORAC_E_NOMEM, "%s: out of memory staging tensors", path) : DORAC_OK;
    for (size_t i = 0; !rc && i < m->n_params; i++) {
        dorac_model_param *p = &m->params[i];
        const dorac_st_tensor *t = find_tensor(st, p);
        if (!t) {
            rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' is missing (the checkpoint does not match its config.json)",
                             path, p->name);
            break;
        }
        rc = load_param(m, p, t, host, scratch);
    }
    /* every tensor of the file must be one the model knows */
    for (size_t i = 0; !rc && i < dorac_safetensors_count(st); i++) {
        const dorac_st_tensor *t = dorac_safetensors_at(st, i);
        if (ignorable(t->name, m)) continue;
        char prefixed[160];
        snprintf(prefixed, sizeof prefixed, "transformer.%s", t->name);
        if (!dorac_model_find_param(m, t->name) &&
            !(m->cfg.family == DORAC_FAMILY_GPT2 && dorac_model_find_param(m, prefixed)))
            rc = dorac_error(DORAC_E_UNSUPPORTED, "%s: tensor '%s' is not part of a %s model as dorac builds it",
                             t->file, t->name, m->cfg.model_type);
    }
    free(host);
    free(scratch);
    dorac_safetensors_close(st);
    if (rc) return rc;
    /* DoRA caches of any adapted linear hold ||W0 row||^2 of the old weights */
    for (size_t i = 0; i < m->n_linears; i++)
        if (m->linears[i].L.c.data) DORAC_TRY(m->be->row_sumsq(m->be, &m->linears[i].L.c, &m->linears[i].L.t.W));
    return DORAC_OK;
}

int dorac_model_load(dorac_model **out, dorac_backend *be, const char *dir) {
    *out = NULL;
    dorac_hf_config hc;
    DORAC_TRY(dorac_hf_config_load(&hc, dir));
    dorac_model_config mc;
    DORAC_TRY(dorac_model_config_from_hf(&mc, &hc, dir));
    dorac_model *m;
    DORAC_TRY(dorac_model_create(&m, be, &mc));
    int rc = dorac_model_load_weights(m, dir);
    if (rc) {
        dorac_model_free(m);
        return rc;
    }
    *out = m;
    return DORAC_OK;
}
