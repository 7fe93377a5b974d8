/*
** optimizer.c — AdamW with global-norm clipping, its checkpoint state, and
** ZeRO-1 sharding of that state over a data-parallel job (see optimizer.h).
**
** One code path for both cases: the trainables are cut into pieces by a
** shard plan (dist/shard.h) over W ranks when sharded, over 1 otherwise,
** and this process keeps the moments of the pieces it owns. Unsharded,
** every piece is a whole tensor owned here, so the lists the backend's
** batched entries take are exactly the n tensors in order: the sums of
** squares and AdamW updates are the same calls, bit for bit, as without a
** plan.
**
** Invariants:
**   - the pieces' views point into the model's parameter and gradient
**     memory, which does not move while the optimizer lives;
**   - a whole-tensor piece uses the model's own tensor struct, a partial one
**     a row view (dorac_tensor_rows) kept in piece_value / piece_grad;
**   - state_bytes is exactly what m and v were allocated with.
*/
#include "train/optimizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/safetensors.h"

void dorac_optimizer_free(dorac_optimizer *o) {
    for (size_t j = 0; o->m && j < o->n_owned; j++) dorac_tensor_free(o->be, &o->m[j]);
    for (size_t j = 0; o->v && j < o->n_owned; j++) dorac_tensor_free(o->be, &o->v[j]);
    free(o->m), free(o->v), free(o->params), free(o->grads), free(o->items), free(o->all_grads);
    free(o->piece_value), free(o->piece_grad), free(o->piece_values), free(o->piece_grads), free(o->piece_owner);
    dorac_shard_plan_free(&o->plan);
    memset(o, 0, sizeof *o);
}

/* calloc of n (at least 1) elements of size, or NULL. */
static void *alloc_array(size_t n, size_t size) {
    return calloc(n ? n : 1, size);
}

int dorac_optimizer_init(dorac_optimizer *o, dorac_backend *be, const dorac_trainable *params, size_t n) {
    return dorac_optimizer_init_dist(o, be, params, n, NULL, false);
}

int dorac_optimizer_init_dist(dorac_optimizer *o, dorac_backend *be, const dorac_trainable *params, size_t n,
                              dorac_dist *dist, bool shard) {
    memset(o, 0, sizeof *o);
    o->be = be;
    o->dist = dist;
    o->n = n;
    o->sharded = shard && dist && dist->world > 1;
    o->self = o->sharded ? dist->rank : 0;
    o->params = alloc_array(n, sizeof *o->params);
    o->all_grads = alloc_array(n, sizeof *o->all_grads);
    if (!o->params || !o->all_grads) {
        dorac_optimizer_free(o);
        return dorac_error(DORAC_E_NOMEM, "optimizer: out of memory");
    }
    if (n) memcpy(o->params, params, n * sizeof *params);
    for (size_t i = 0; i < n; i++) o->all_grads[i] = params[i].grad;
    /* a gradient has its parameter's shape: plan over the gradients */
    int rc = dorac_shard_plan_init(&o->plan, o->all_grads, n, o->sharded ? dist->world : 1);
    if (rc) {
        dorac_optimizer_free(o);
        return rc;
    }
    size_t P = o->plan.n_pieces;
    for (size_t k = 0; k < P; k++) o->n_owned += o->plan.pieces[k].owner == o->self;
    o->piece_value = alloc_array(P, sizeof *o->piece_value);
    o->piece_grad = alloc_array(P, sizeof *o->piece_grad);
    o->piece_values = alloc_array(P, sizeof *o->piece_values);
    o->piece_grads = alloc_array(P, sizeof *o->piece_grads);
    o->piece_owner = alloc_array(P, sizeof *o->piece_owner);
    o->m = alloc_array(o->n_owned, sizeof *o->m);
    o->v = alloc_array(o->n_owned, sizeof *o->v);
    o->grads = alloc_array(o->n_owned, sizeof *o->grads);
    o->items = alloc_array(o->n_owned, sizeof *o->items);
    if (!o->piece_value || !o->piece_grad || !o->piece_values || !o->piece_grads || !o->piece_owner || !o->m ||
        !o->v || !o->grads || !o->items) {
        dorac_optimizer_free(o);
        return dorac_error(DORAC_E_NOMEM, "optimizer: out of memory");
    }
    size_t j = 0;
    for (size_t k = 0; k < P && !rc; k++) {
        const dorac_shard_piece *pc = &o->plan.pieces[k];
        const dorac_trainable *tr = &params[pc->tensor];
        bool whole = pc->row0 == 0 && pc->n_rows == tr->value->rows;
        o->piece_value[k] = dorac_tensor_rows(tr->value, pc->row0, pc->n_rows);
        o->piece_grad[k] = dorac_tensor_rows(tr->grad, pc->row0, pc->n_rows);
        o->piece_values[k] = whole ? tr->value : &o->piece_value[k];
        o->piece_grads[k] = whole ? tr->grad : &o->piece_grad[k];
        o->piece_owner[k] = pc->owner;
        if (pc->owner != o->self) continue;
        const dorac_tensor *p = o->piece_values[k];
        rc = dorac_tensor_alloc(be, &o->m[j], be->param_type, p->rows, p->cols, "exp_avg");
        if (!rc) rc = dorac_tensor_alloc(be, &o->v[j], be->param_type, p->rows, p->cols, "exp_avg_sq");
        if (!rc) rc = be->fill(be, &o->m[j], 0.0);
        if (!rc) rc = be->fill(be, &o->v[j], 0.0);
        o->grads[j] = o->piece_grads[k];
        o->items[j] = (dorac_adamw_item){p, o->piece_grads[k], &o->m[j], &o->v[j], tr->decay};
        o->state_bytes += 2 * dorac_tensor_nbytes(be->param_type, p->rows, p->cols);
        j++;
    }
    if (rc) {
        dorac_optimizer_free(o);
        return rc;
    }
    return DORAC_OK;
}

int dorac_optimizer_sync_grads(dorac_optimizer *o) {
    dorac_dist *d = o->dist;
    if (!d || d->world == 1) return DORAC_OK;
    if (o->sharded) return d->reduce_to_owner(d, o->be, o->piece_grads, o->piece_owner, o->plan.n_pieces);
    return d->all_reduce_sum(d, o->be, o->all_grads, o->n);
}

int dorac_optimizer_grad_norm(dorac_optimizer *o, double *norm) {
    double total = 0;
    DORAC_TRY(dorac_sum_squares_many(o->be, o->grads, o->n_owned, &total));
    /* each rank holds the reduced gradient of its pieces only */
    if (o->sharded) DORAC_TRY(o->dist->all_reduce_host(o->dist, &total, 1));
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
    DORAC_TRY(dorac_adamw_many(o->be, o->items, o->n_owned, lr, c->beta1, c->beta2, c->eps, c->weight_decay,
                               o->step, scale));
    if (!o->sharded) return DORAC_OK;
    return o->dist->broadcast_from_owner(o->dist, o->be, o->piece_values, o->piece_owner, o->plan.n_pieces);
}

/* Downloads the owned moments (which = 0: m, 1: v) into host, packed in
** plan order: this process's stretch of the flat vector. */
static int download_owned(dorac_optimizer *o, int which, float *host) {
    size_t off = 0;
    for (size_t j = 0; j < o->n_owned; j++) {
        const dorac_tensor *src = which ? &o->v[j] : &o->m[j];
        size_t count = (size_t)src->rows * (size_t)src->cols;
        if (count) DORAC_TRY(o->be->download(o->be, host + off, DORAC_DTYPE_F32, src));
        off += count;
    }
    return DORAC_OK;
}

/* Writes the whole state, m and v each the flat vector of all tensors in
** order (E floats), to path. */
static int write_state(dorac_optimizer *o, const float *all_m, const float *all_v, const char *path) {
    size_t n = 2 * o->n;
    dorac_st_write_tensor *t = alloc_array(n, sizeof *t);
    char (*names)[192] = alloc_array(n, sizeof *names);
    int rc = (!t || !names) ? dorac_error(DORAC_E_NOMEM, "optimizer: out of memory") : DORAC_OK;
    size_t start = 0;
    for (size_t i = 0; !rc && i < o->n; i++) {
        const dorac_tensor *p = o->params[i].value;
        for (int k = 0; k < 2; k++) {
            size_t j = 2 * i + (size_t)k;
            snprintf(names[j], sizeof names[j], "%s.%s", o->params[i].name, k ? "exp_avg_sq" : "exp_avg");
            t[j] = (dorac_st_write_tensor){.name = names[j], .dtype = DORAC_DTYPE_F32, .n_dims = 2,
                                           .shape = {p->rows, p->cols}, .data = (k ? all_v : all_m) + start};
        }
        start += (size_t)p->rows * (size_t)p->cols;
    }
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)o->step);
    const char *meta[] = {"step", step, "optimizer", "adamw"};
    if (!rc) rc = dorac_safetensors_write(path, t, n, meta, 2);
    free(names), free(t);
    return rc;
}

int dorac_optimizer_save(dorac_optimizer *o, const char *path) {
    if (!o->sharded && !path) return DORAC_OK;
    bool root = !o->sharded || o->dist->rank == 0; /* holds the whole state once gathered */
    uint64_t total = o->plan.total, mine = dorac_shard_plan_count(&o->plan, o->self);
    /* the same on every rank, so all refuse together */
    if (total > (SIZE_MAX / sizeof(float) - 1) / 2)
        return dorac_error(DORAC_E_NOMEM, "optimizer: %llu state elements do not fit in memory",
                           (unsigned long long)total);
    uint64_t held = root ? total : mine;
    /* root: m then v, E floats each; rank 0's own stretch is their prefix */
    float *buf = malloc(((size_t)held * 2 + 1) * sizeof *buf);
    size_t *part_bytes = o->sharded ? malloc((size_t)o->plan.world * sizeof *part_bytes) : NULL;
    if (!buf || (o->sharded && !part_bytes)) {
        free(buf), free(part_bytes);
        return dorac_error(DORAC_E_NOMEM, "optimizer: no memory for %llu state elements", (unsigned long long)held);
    }
    float *m = buf, *v = buf + held;
    int rc = download_owned(o, 0, m);
    if (!rc) rc = download_owned(o, 1, v);
    if (o->sharded) {
        /* every rank takes part even after a local failure, so the others are not left waiting */
        for (int r = 0; r < o->plan.world; r++)
            part_bytes[r] = (size_t)dorac_shard_plan_count(&o->plan, r) * sizeof(float);
        int grc = o->dist->gather_host(o->dist, m, root ? m : NULL, part_bytes);
        if (!grc) grc = o->dist->gather_host(o->dist, v, root ? v : NULL, part_bytes);
        /* a rank that could not read its shard sent whatever its buffer
        ** held: then nobody writes, rather than a checkpoint that resumes
        ** from garbage */
        double failed = rc != DORAC_OK;
        if (!grc) grc = o->dist->all_reduce_host(o->dist, &failed, 1);
        if (!rc && !grc && failed > 0)
            rc = dorac_error(DORAC_E_IO, "optimizer: %.0f rank(s) could not read their AdamW state; nothing written",
                             failed);
        if (!rc) rc = grc;
    }
    if (!rc && root && path) rc = write_state(o, m, v, path);
    free(buf), free(part_bytes);
    return rc;
}

/* Uploads rows [row0, row0 + dst->rows) of the file's tensor t into dst,
** converting to F32 through the reusable host buffer *buf of *cap floats. */
static int load_rows(dorac_optimizer *o, const dorac_st_tensor *t, int64_t row0, const dorac_tensor *dst,
                     float **buf, size_t *cap) {
    size_t count = (size_t)dst->rows * (size_t)dst->cols;
    if (count == 0) return DORAC_OK;
    dorac_st_tensor rows = *t;
    if (t->dtype_supported) { /* else dorac_st_tensor_read names the dtype */
        size_t esz = dorac_dtype_size(t->dtype), row_bytes = (size_t)dst->cols * esz;
        if (t->nbytes != (size_t)t->shape[0] * row_bytes)
            return dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' holds %zu bytes, not %lld rows of %zu", t->file,
                               t->name, t->nbytes, (long long)t->shape[0], row_bytes);
        rows.data = (const char *)t->data + (size_t)row0 * row_bytes;
        rows.nbytes = count * esz;
        rows.shape[0] = dst->rows;
    }
    if (count > *cap) {
        float *b = realloc(*buf, count * sizeof *b);
        if (!b) return dorac_error(DORAC_E_NOMEM, "optimizer: out of memory");
        *buf = b, *cap = count;
    }
    DORAC_TRY(dorac_st_tensor_read(&rows, *buf, DORAC_DTYPE_F32));
    return o->be->upload(o->be, dst, *buf, DORAC_DTYPE_F32);
}

int dorac_optimizer_load(dorac_optimizer *o, const char *path) {
    dorac_safetensors *st;
    DORAC_TRY(dorac_safetensors_open(&st, path));
    const char *step = dorac_safetensors_metadata(st, "step");
    char *end = NULL;
    long long s = step ? strtoll(step, &end, 10) : -1;
    int rc = (!step || *end || s < 0) ? dorac_error(DORAC_E_FORMAT, "%s: missing or bad 'step' metadata", path) : DORAC_OK;
    float *buf = NULL;
    size_t cap = 0, j = 0; /* j: the next owned piece, in plan order */
    for (size_t k = 0; !rc && k < o->plan.n_pieces; k++) {
        const dorac_shard_piece *pc = &o->plan.pieces[k];
        const dorac_tensor *p = o->params[pc->tensor].value;
        bool first_piece = k == 0 || o->plan.pieces[k - 1].tensor != pc->tensor;
        bool owned = pc->owner == o->self;
        /* every rank checks every tensor, so a bad file fails the same way everywhere */
        for (int which = 0; which < 2 && !rc && (first_piece || owned); which++) {
            char name[192];
            snprintf(name, sizeof name, "%s.%s", o->params[pc->tensor].name, which ? "exp_avg_sq" : "exp_avg");
            const dorac_st_tensor *t = dorac_safetensors_find(st, name);
            if (!t) {
                rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' is missing", path, name);
                break;
            }
            if (t->n_dims != 2 || t->shape[0] != p->rows || t->shape[1] != p->cols) {
                rc = dorac_error(DORAC_E_FORMAT, "%s: tensor '%s' does not have shape [%lld, %lld]", path, name,
                                 (long long)p->rows, (long long)p->cols);
                break;
            }
            if (owned) rc = load_rows(o, t, pc->row0, which ? &o->v[j] : &o->m[j], &buf, &cap);
        }
        j += owned;
    }
    free(buf);
    if (!rc) o->step = s;
    dorac_safetensors_close(st);
    return rc;
}
