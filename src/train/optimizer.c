/*
** optimizer.c — AdamW with global-norm clipping, and its checkpoint state
** (see optimizer.h).
*/
#include "train/optimizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/safetensors.h"

void dorac_optimizer_free(dorac_optimizer *o) {
    for (size_t i = 0; o->m && i < o->n; i++) {
        dorac_tensor_free(o->be, &o->m[i]);
        dorac_tensor_free(o->be, &o->v[i]);
    }
    free(o->m), free(o->v), free(o->params), free(o->grads), free(o->items);
    memset(o, 0, sizeof *o);
}

int dorac_optimizer_init(dorac_optimizer *o, dorac_backend *be, const dorac_trainable *params, size_t n) {
    memset(o, 0, sizeof *o);
    o->be = be;
    o->n = n;
    o->params = malloc((n ? n : 1) * sizeof *o->params);
    o->m = calloc(n ? n : 1, sizeof *o->m);
    o->v = calloc(n ? n : 1, sizeof *o->v);
    o->grads = malloc((n ? n : 1) * sizeof *o->grads);
    o->items = malloc((n ? n : 1) * sizeof *o->items);
    if (!o->params || !o->m || !o->v || !o->grads || !o->items) {
        dorac_optimizer_free(o);
        return dorac_error(DORAC_E_NOMEM, "optimizer: out of memory");
    }
    memcpy(o->params, params, n * sizeof *params);
    for (size_t i = 0; i < n; i++) {
        const dorac_tensor *p = params[i].value;
        int rc = dorac_tensor_alloc(be, &o->m[i], be->param_type, p->rows, p->cols, "exp_avg");
        if (!rc) rc = dorac_tensor_alloc(be, &o->v[i], be->param_type, p->rows, p->cols, "exp_avg_sq");
        if (!rc) rc = be->fill(be, &o->m[i], 0.0);
        if (!rc) rc = be->fill(be, &o->v[i], 0.0);
        if (rc) {
            dorac_optimizer_free(o);
            return rc;
        }
        o->grads[i] = params[i].grad;
        o->items[i] = (dorac_adamw_item){params[i].value, params[i].grad, &o->m[i], &o->v[i], params[i].decay};
    }
    return DORAC_OK;
}

int dorac_optimizer_grad_norm(dorac_optimizer *o, double *norm) {
    double total = 0;
    DORAC_TRY(dorac_sum_squares_many(o->be, o->grads, o->n, &total));
    *norm = sqrt(total);
    return DORAC_OK;
}

int dorac_optimizer_step(dorac_optimizer *o, const dorac_adamw_config *c, double lr, double grad_norm) {
    double scale = 1.0;
    if (c->max_grad_norm > 0) {
        double coef = c->max_grad_norm / (grad_norm + 1e-6);
        scale = coef < 1.0 ? coef : 1.0;
    }
    o->step++;
    return dorac_adamw_many(o->be, o->items, o->n, lr, c->beta1, c->beta2, c->eps, c->weight_decay, o->step, scale);
}

int dorac_optimizer_save(dorac_optimizer *o, const char *path) {
    size_t n = 2 * o->n;
    dorac_st_write_tensor *t = calloc(n ? n : 1, sizeof *t);
    char (*names)[192] = calloc(n ? n : 1, sizeof *names);
    float **bufs = calloc(n ? n : 1, sizeof *bufs);
    int rc = (!t || !names || !bufs) ? dorac_error(DORAC_E_NOMEM, "optimizer: out of memory") : DORAC_OK;
    for (size_t i = 0; !rc && i < o->n; i++) {
        for (int k = 0; k < 2 && !rc; k++) {
            size_t j = 2 * i + (size_t)k;
            const dorac_tensor *src = k ? &o->v[i] : &o->m[i];
            snprintf(names[j], sizeof names[j], "%s.%s", o->params[i].name, k ? "exp_avg_sq" : "exp_avg");
            bufs[j] = malloc((size_t)(src->rows * src->cols) * sizeof(float) + 1);
            if (!bufs[j]) rc = dorac_error(DORAC_E_NOMEM, "optimizer: out of memory");
            else rc = o->be->download(o->be, bufs[j], DORAC_DTYPE_F32, src);
            t[j] = (dorac_st_write_tensor){.name = names[j], .dtype = DORAC_DTYPE_F32, .n_dims = 2,
                                           .shape = {src->rows, src->cols}, .data = bufs[j]};
        }
    }
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)o->step);
    const char *meta[] = {"step", step, "optimizer", "adamw"};
    if (!rc) rc = dorac_safetensors_write(path, t, n, meta, 2);
    for (size_t j = 0; bufs && j < n; j++) free(bufs[j]);
    free(bufs), free(names), free(t);
    return rc;
}

int dorac_optimizer_load(dorac_optimizer *o, const char *path) {
    dorac_safetensors *st;
    DORAC_TRY(dorac_safetensors_open(&st, path));
    const char *step = dorac_safetensors_metadata(st, "step");
    char *end = NULL;
    long long s = step ? strtoll(step, &end, 10) : -1;
    int rc = (!step || *end || s < 0) ? dorac_error(DORAC_E_FORMAT, "%s: missing or bad 'step' metadata", path) : DORAC_OK;
    float *buf = NULL;
    for (size_t i = 0; !rc && i < o->n; i++) {
        for (int k = 0; k < 2 && !rc; k++) {
            char name[192];
            snprintf(name, sizeof name, "%s.%s", o->params[i].name, k ? "exp_avg_sq" : "exp_avg");
            const dorac_tensor *dst = k ? &o->v[i] : &o->m[i];
            const dorac_st_tensor *t = dorac_safetensors_find(st, name);
            if (!t) {
                rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' is missing", path, name);
                break;
            }
            if (t->n_dims != 2 || t->shape[0] != dst->rows || t->shape[1] != dst->cols) {
                rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' does not have shape [%lld, %lld]", path, name,
                                 (long long)dst->rows, (long long)dst->cols);
                break;
            }
            free(buf);
            buf = malloc(dorac_st_tensor_numel(t) * sizeof *buf + 1);
            if (!buf) rc = dorac_error(DORAC_E_NOMEM, "optimizer: out of memory");
            if (!rc) rc = dorac_st_tensor_read(t, buf, DORAC_DTYPE_F32);
            if (!rc) rc = o->be->upload(o->be, dst, buf, DORAC_DTYPE_F32);
        }
    }
    free(buf);
    if (!rc) o->step = s;
    dorac_safetensors_close(st);
    return rc;
}
