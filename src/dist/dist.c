/*
** dist.c — picking the collectives for a job, and the world-of-1
** implementation (see dist.h).
**
** single: every collective leaves its values as they are (the sum over one
** rank is the value itself, started or not; every owner must be rank 0;
** gather_host copies rank 0's part into place), so a trainer calls the same
** collectives whether or not it runs distributed.
*/
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "dist/dist.h"

static void single_destroy(dorac_dist *d) {
    free(d);
}

static int single_all_reduce_sum(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                                 size_t n) {
    (void)d;
    (void)be;
    if (!t && n > 0) return dorac_error(DORAC_E_INVALID, "dist: all_reduce_sum: tensors are NULL");
    return DORAC_OK;
}

/* Over one rank a started sum is already done. */
static int single_all_reduce_start(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                                   size_t n) {
    (void)d;
    (void)be;
    if (!t && n > 0) return dorac_error(DORAC_E_INVALID, "dist: all_reduce_start: tensors are NULL");
    return DORAC_OK;
}

static int single_all_reduce_wait(dorac_dist *d) {
    (void)d;
    return DORAC_OK;
}

static int single_all_reduce_host(dorac_dist *d, double *v, size_t n) {
    (void)d;
    if (!v && n > 0) return dorac_error(DORAC_E_INVALID, "dist: all_reduce_host: values are NULL");
    return DORAC_OK;
}

static int single_broadcast_host(dorac_dist *d, void *buf, size_t nbytes) {
    (void)d;
    if (!buf && nbytes > 0) return dorac_error(DORAC_E_INVALID, "dist: broadcast_host: buf is NULL");
    return DORAC_OK;
}

static int single_barrier(dorac_dist *d) {
    (void)d;
    return DORAC_OK;
}

/* reduce_to_owner and broadcast_from_owner over one rank: every owner must
** be rank 0, and the values are already where they belong. */
static int single_owned(const char *op, const dorac_tensor *const *t, const int *owner, size_t n) {
    if ((!t || !owner) && n > 0) return dorac_error(DORAC_E_INVALID, "dist: %s: NULL argument", op);
    for (size_t i = 0; i < n; i++) {
        if (!t[i]) return dorac_error(DORAC_E_INVALID, "dist: %s: tensor %zu is NULL", op, i);
        if (owner[i] != 0)
            return dorac_error(DORAC_E_INVALID, "dist: %s: tensor %zu's owner is rank %d, the world has 1 rank",
                               op, i, owner[i]);
    }
    return DORAC_OK;
}

static int single_reduce_to_owner(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                                  const int *owner, size_t n) {
    (void)d;
    (void)be;
    return single_owned("reduce_to_owner", t, owner, n);
}

static int single_broadcast_from_owner(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                                       const int *owner, size_t n) {
    (void)d;
    (void)be;
    return single_owned("broadcast_from_owner", t, owner, n);
}

static int single_gather_host(dorac_dist *d, const void *part, void *all, const size_t *part_bytes) {
    (void)d;
    if (!part_bytes) return dorac_error(DORAC_E_INVALID, "dist: gather_host: part_bytes is NULL");
    if ((!part || !all) && part_bytes[0] > 0)
        return dorac_error(DORAC_E_INVALID, "dist: gather_host: NULL buffer");
    if (part_bytes[0] > 0 && part != all) memmove(all, part, part_bytes[0]);
    return DORAC_OK;
}

int dorac_dist_open_single(dorac_dist **out) {
    if (!out) return dorac_error(DORAC_E_INVALID, "dist: open single: out is NULL");
    *out = NULL;
    dorac_dist *d = calloc(1, sizeof *d);
    if (!d) return dorac_error(DORAC_E_NOMEM, "dist: open single: out of memory");
    *d = (dorac_dist){
        /* .name            = */ "single",
        /* .rank            = */ 0,
        /* .world           = */ 1,
        /* .local_rank      = */ 0,
        /* .context         = */ NULL,
        /* .destroy         = */ single_destroy,
        /* .all_reduce_sum  = */ single_all_reduce_sum,
        /* .all_reduce_host = */ single_all_reduce_host,
        /* .broadcast_host  = */ single_broadcast_host,
        /* .barrier         = */ single_barrier,
        /* .reduce_to_owner      = */ single_reduce_to_owner,
        /* .broadcast_from_owner = */ single_broadcast_from_owner,
        /* .gather_host          = */ single_gather_host,
        /* .all_reduce_start     = */ single_all_reduce_start,
        /* .all_reduce_wait      = */ single_all_reduce_wait,
    };
    *out = d;
    return DORAC_OK;
}

int dorac_dist_open(const dorac_dist_env *env, dorac_backend *be, dorac_dist **out) {
    if (!env || !out) return dorac_error(DORAC_E_INVALID, "dist: open: NULL argument");
    *out = NULL;
    if (env->world == 1) return dorac_dist_open_single(out);
    if (be && be->name && strcmp(be->name, "cuda") == 0) return dorac_dist_open_nccl(env, be, out);
    return dorac_dist_open_tcp(env, out);
}

#ifndef DORAC_HAVE_CUDA
int dorac_dist_open_nccl(const dorac_dist_env *env, dorac_backend *be, dorac_dist **out) {
    (void)env;
    (void)be;
    if (out) *out = NULL;
    return dorac_error(DORAC_E_UNSUPPORTED, "dist: nccl: dorac was built without CUDA/NCCL");
}
#endif
