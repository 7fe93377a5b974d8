/*
** dist.c — picking the collectives for a job, and the world-of-1
** implementation (see dist.h).
**
** single: every collective leaves its values as they are (the sum over one
** rank is the value itself), so a trainer calls the same collectives
** whether or not it runs distributed.
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
