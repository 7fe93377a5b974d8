/*
** adapter_io.c — PEFT adapter folders in and out of a model.
**
** Layout (PEFT 0.21): adapter_config.json, and adapter_model.safetensors
** with keys base_model.model.<module>.lora_A.weight (r, in),
** .lora_B.weight (out, r) and .lora_magnitude_vector (out), F32. PEFT's
** lora_A/lora_B are nn.Linear layers even on GPT-2's Conv1D modules, so
** their shapes are the same for every family; only the base weight is
** stored transposed there (fan_in_fan_out), which load.c handles.
*/
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/peft.h"
#include "io/safetensors.h"
#include "model/model_internal.h"

/* ---------------------------------------------------------------------- */
/* load                                                                   */
/* ---------------------------------------------------------------------- */

static bool peft_select(void *ctx, const char *path, const char *short_name, dorac_adapter_config *cfg) {
    (void)short_name;
    const dorac_peft_config *pc = ctx;
    if (!dorac_peft_targets_module(pc, path)) return false;
    cfg->rank = dorac_peft_rank_for(pc, path);
    cfg->alpha = dorac_peft_alpha_for(pc, path);
    cfg->use_rslora = pc->use_rslora;
    cfg->dropout = pc->lora_dropout;
    cfg->norm_grad = DORAC_NORM_GRAD_DETACH;
    return true;
}

static int read_into(dorac_model *m, const dorac_st_tensor *t, dorac_tensor *dst, const char *what) {
    int64_t rows = dst->rows, cols = dst->cols;
    bool vector = !strcmp(what, "magnitude");
    bool ok = vector ? (t->n_dims == 1 && t->shape[0] == cols) || (t->n_dims == 2 && t->shape[0] == 1 && t->shape[1] == cols)
                     : t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
    if (!ok) {
        char got[96] = "[";
        for (int i = 0; i < t->n_dims; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        snprintf(got + strlen(got), sizeof got - strlen(got), "]");
        if (vector)
            return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' has shape %s, the model needs [%lld]", t->file, t->name,
                               got, (long long)cols);
        return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' has shape %s, the model needs [%lld, %lld]", t->file,
                           t->name, got, (long long)rows, (long long)cols);
    }
    float *host = malloc((size_t)(rows * cols) * sizeof *host);
    if (!host) return dorac_error(DORAC_E_NOMEM, "%s: out of memory reading '%s'", t->file, t->name);
    int rc = dorac_st_tensor_read(t, host, DORAC_DTYPE_F32);
    if (!rc) rc = m->be->upload(m->be, dst, host, DORAC_DTYPE_F32);
    free(host);
    return rc;
}

static int load_tensors(dorac_model *m, dorac_safetensors *st, const char *file, bool dora) {
    size_t n = dorac_safetensors_count(st);
    /* which of A, B, m each linear received */
    unsigned char *seen = calloc(m->n_linears, 1);
    if (!seen) return dorac_error(DORAC_E_NOMEM, "out of memory");
    int rc = DORAC_OK;
    for (size_t i = 0; !rc && i < n; i++) {
        const dorac_st_tensor *t = dorac_safetensors_at(st, i);
        char module[128];
        dorac_peft_key_kind kind;
        rc = dorac_peft_key_parse(t->name, module, sizeof module, &kind);
        if (rc) {
            rc = dorac_error_prefix(rc, "%s", file);
            break;
        }
        dorac_model_linear *l = dorac_model_find_linear(m, module);
        if (!l) {
            rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' is for module '%s', which this %s model does not have (an adapter for another model?)",
                             file, t->name, module, m->cfg.model_type);
            break;
        }
        size_t li = (size_t)(l - m->linears);
        if (l->L.cfg.method == DORAC_METHOD_FROZEN) {
            rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' is for module '%s', which adapter_config.json does not target",
                             file, t->name, module);
        } else if (kind == DORAC_PEFT_KEY_LORA_A && l->A.data) {
            rc = read_into(m, t, &l->A, "lora_A");
            seen[li] |= 1;
        } else if (kind == DORAC_PEFT_KEY_LORA_B && l->B.data) {
            rc = read_into(m, t, &l->B, "lora_B");
            seen[li] |= 2;
        } else if (kind == DORAC_PEFT_KEY_MAGNITUDE && dora) {
            rc = read_into(m, t, &l->m, "magnitude");
            seen[li] |= 4;
        } else {
            rc = dorac_error(DORAC_E_UNSUPPORTED, "%s: tensor '%s' is of a kind this %s adapter does not use", file,
                             t->name, dora ? "DoRA" : "LoRA");
        }
    }
    for (size_t i = 0; !rc && i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        if (l->L.cfg.method == DORAC_METHOD_FROZEN) continue;
        unsigned need = (l->A.data ? 3u : 0u) | (dora ? 4u : 0u);
        if ((seen[i] & need) != need) {
            const char *what = !(seen[i] & 1) && (need & 1) ? "lora_A.weight"
                             : !(seen[i] & 2) && (need & 2) ? "lora_B.weight" : "lora_magnitude_vector";
            rc = dorac_error(DORAC_E_FORMAT, "%s: tensor 'base_model.model.%s.%s' is missing", file, l->path, what);
        }
    }
    free(seen);
    return rc;
}

int dorac_model_load_adapter(dorac_model *m, const char *dir) {
    if (m->method != DORAC_METHOD_FROZEN)
        return dorac_error(DORAC_E_INVALID, "%s: the model already has a training method (%s)", dir,
                           dorac_method_name(m->method));
    dorac_peft_config pc;
    DORAC_TRY(dorac_peft_config_load(&pc, dir));
    char file[4096];
    snprintf(file, sizeof file, "%s/adapter_model.safetensors", dir);
    dorac_safetensors *st = NULL;
    dorac_method method = pc.use_dora ? DORAC_METHOD_DORA : DORAC_METHOD_LORA;
    int rc = dorac_safetensors_open(&st, file);
    /* before attaching anything: every tensor must name a linear of this model */
    for (size_t i = 0; !rc && i < dorac_safetensors_count(st); i++) {
        const dorac_st_tensor *t = dorac_safetensors_at(st, i);
        char module[128];
        dorac_peft_key_kind kind;
        rc = dorac_peft_key_parse(t->name, module, sizeof module, &kind);
        if (rc) rc = dorac_error_prefix(rc, "%s", file);
        else if (!dorac_model_find_linear(m, module))
            rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' is for module '%s', which this %s model does not have (an adapter for another model?)",
                             file, t->name, module, m->cfg.model_type);
    }
    if (!rc) {
        rc = dorac_model_set_method(m, method, peft_select, &pc, 0);
        if (rc) rc = dorac_error_prefix(rc, "%s/adapter_config.json", dir);
    }
    if (!rc) rc = load_tensors(m, st, file, pc.use_dora);
    dorac_safetensors_close(st);
    dorac_peft_config_free(&pc);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* save                                                                   */
/* ---------------------------------------------------------------------- */

/* target_modules: a short name when every linear of that name is adapted
** (PEFT matches it as a ".name" suffix), else the full module paths. */
static int build_targets(dorac_model *m, dorac_peft_targets *tg) {
    tg->kind = DORAC_PEFT_TARGETS_LIST;
    tg->names = calloc(m->n_linears, sizeof *tg->names);
    tg->n_names = 0;
    if (!tg->names) return dorac_error(DORAC_E_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        if (l->L.cfg.method == DORAC_METHOD_FROZEN) continue;
        bool all = true, listed = false;
        for (size_t k = 0; k < m->n_linears; k++)
            if (!strcmp(m->linears[k].short_name, l->short_name) && m->linears[k].L.cfg.method == DORAC_METHOD_FROZEN)
                all = false;
        const char *name = all ? l->short_name : l->path;
        for (size_t k = 0; k < tg->n_names; k++) listed |= !strcmp(tg->names[k], name);
        if (listed) continue;
        tg->names[tg->n_names] = strdup(name);
        if (!tg->names[tg->n_names]) return dorac_error(DORAC_E_NOMEM, "out of memory");
        tg->n_names++;
    }
    return DORAC_OK;
}

/* adapter_config.json: the first adapted linear's rank and alpha are the
** defaults; any other linear that differs gets a rank_pattern /
** alpha_pattern entry keyed by its full path. */
static int build_config(dorac_model *m, dorac_peft_config *pc, const char *base_model) {
    memset(pc, 0, sizeof *pc);
    dorac_model_linear *first = NULL;
    for (size_t i = 0; i < m->n_linears && !first; i++)
        if (m->linears[i].L.cfg.method != DORAC_METHOD_FROZEN) first = &m->linears[i];
    if (!first) return dorac_error(DORAC_E_INVALID, "save adapter: the model has no adapters");
    pc->r = first->L.cfg.rank > 0 ? first->L.cfg.rank : 1;
    pc->lora_alpha = first->L.cfg.alpha;
    pc->use_dora = m->method == DORAC_METHOD_DORA;
    pc->use_rslora = first->L.cfg.use_rslora;
    pc->lora_dropout = first->L.cfg.dropout;
    pc->fan_in_fan_out = m->cfg.family == DORAC_FAMILY_GPT2;
    pc->base_model_name_or_path = base_model ? strdup(base_model) : NULL;
    pc->task_type = strdup("CAUSAL_LM");
    pc->rank_pattern = calloc(m->n_linears, sizeof *pc->rank_pattern);
    pc->alpha_pattern = calloc(m->n_linears, sizeof *pc->alpha_pattern);
    if (!pc->task_type || !pc->rank_pattern || !pc->alpha_pattern) return dorac_error(DORAC_E_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        if (l->L.cfg.method == DORAC_METHOD_FROZEN) continue;
        if (l->L.cfg.use_rslora != pc->use_rslora || l->L.cfg.dropout != pc->lora_dropout)
            return dorac_error(DORAC_E_UNSUPPORTED, "save adapter: PEFT needs one use_rslora and lora_dropout for all modules");
        if (l->L.cfg.rank != pc->r) {
            if (l->L.cfg.rank == 0)
                return dorac_error(DORAC_E_UNSUPPORTED, "save adapter: PEFT cannot express rank 0 (magnitude-only DoRA) on '%s'", l->path);
            pc->rank_pattern[pc->n_rank_pattern].pattern = strdup(l->path);
            pc->rank_pattern[pc->n_rank_pattern++].rank = l->L.cfg.rank;
        }
        if (l->L.cfg.alpha != pc->lora_alpha) {
            pc->alpha_pattern[pc->n_alpha_pattern].pattern = strdup(l->path);
            pc->alpha_pattern[pc->n_alpha_pattern++].alpha = l->L.cfg.alpha;
        }
    }
    if (first->L.cfg.rank == 0)
        return dorac_error(DORAC_E_UNSUPPORTED, "save adapter: PEFT cannot express rank 0 (magnitude-only DoRA)");
    return build_targets(m, &pc->target_modules);
}

typedef struct saved_tensors {
    dorac_st_write_tensor *t;
    char (*names)[160];
    float **data;
    size_t n;
} saved_tensors;

static int collect(dorac_model *m, saved_tensors *s) {
    size_t cap = 3 * m->n_linears;
    s->t = calloc(cap, sizeof *s->t);
    s->names = calloc(cap, sizeof *s->names);
    s->data = calloc(cap, sizeof *s->data);
    s->n = 0;
    if (!s->t || !s->names || !s->data) return dorac_error(DORAC_E_NOMEM, "out of memory");
    for (size_t i = 0; i < m->n_linears; i++) {
        dorac_model_linear *l = &m->linears[i];
        struct { dorac_tensor *t; dorac_peft_key_kind kind; } parts[] = {
            {&l->A, DORAC_PEFT_KEY_LORA_A}, {&l->B, DORAC_PEFT_KEY_LORA_B}, {&l->m, DORAC_PEFT_KEY_MAGNITUDE}};
        for (size_t k = 0; k < 3; k++) {
            dorac_tensor *t = parts[k].t;
            if (!t->data) continue;
            size_t j = s->n++;
            DORAC_TRY(dorac_peft_key(s->names[j], sizeof s->names[j], l->path, parts[k].kind));
            s->data[j] = malloc((size_t)(t->rows * t->cols) * sizeof(float));
            if (!s->data[j]) return dorac_error(DORAC_E_NOMEM, "out of memory");
            DORAC_TRY(m->be->download(m->be, s->data[j], DORAC_DTYPE_F32, t));
            s->t[j].name = s->names[j];
            s->t[j].dtype = DORAC_DTYPE_F32;
            s->t[j].data = s->data[j];
            if (parts[k].kind == DORAC_PEFT_KEY_MAGNITUDE) {
                s->t[j].n_dims = 1;
                s->t[j].shape[0] = t->cols;
            } else {
                s->t[j].n_dims = 2;
                s->t[j].shape[0] = t->rows;
                s->t[j].shape[1] = t->cols;
            }
        }
    }
    return DORAC_OK;
}

static void saved_free(saved_tensors *s) {
    for (size_t i = 0; s->data && i < s->n; i++) free(s->data[i]);
    free(s->t), free(s->names), free(s->data);
}

int dorac_model_write_adapter(dorac_model *m, const char *dir, const char *base_model) {
    dorac_peft_config pc;
    saved_tensors s = {0};
    char file[4200];
    int rc = build_config(m, &pc, base_model);
    if (!rc) rc = collect(m, &s);
    if (!rc) rc = dorac_peft_config_save(&pc, dir);
    if (!rc) {
        snprintf(file, sizeof file, "%s/adapter_model.safetensors", dir);
        const char *meta[] = {"format", "pt"};
        rc = dorac_safetensors_write(file, s.t, s.n, meta, 1);
    }
    saved_free(&s);
    dorac_peft_config_free(&pc);
    return rc;
}

int dorac_model_save_adapter(dorac_model *m, const char *dir, const char *base_model) {
    char tmp[4096];
    DORAC_TRY(dorac_atomic_dir_begin(tmp, sizeof tmp, dir));
    int rc = dorac_model_write_adapter(m, tmp, base_model);
    if (!rc) rc = dorac_atomic_dir_commit(tmp, dir);
    else dorac_atomic_dir_abort(tmp);
    return rc;
}
