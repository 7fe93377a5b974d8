/*
** dist_nccl.cu — the "nccl" collectives (dist.h): gradients summed by NCCL
** on the CUDA backend's stream; host values, broadcasts and barriers over
** the TCP rendezvous (dist_tcp.h), which also hands out NCCL's unique id.
**
** The caller opened the backend on cuda:local_rank; the communicator is
** created on that backend's device. all_reduce_sum queues its reductions
** on the backend's one stream inside one NCCL group, so they are ordered
** after the backward pass that produced the gradients and before the
** optimizer step that reads them, without waiting on the host.
**
** NCCL's sums are deterministic for a fixed world and topology but need
** not add in rank order as the tcp implementation does.
*/
#include <nccl.h>

#include "backend/cuda/cuda_impl.cuh"

extern "C" {
#include "dist/dist.h"
#include "dist/dist_tcp.h"
}

/* The context of an "nccl" dorac_dist. */
typedef struct nccl_context {
    ncclComm_t comm;        /* NULL until initialised */
    cudaStream_t stream;    /* the backend's stream */
    int device;             /* the backend's CUDA device */
    dorac_tcp_group *group; /* host-side collectives */
} nccl_context;

static int nccl_status(ncclResult_t r, int rank, const char *what) {
    if (r == ncclSuccess) return DORAC_OK;
    return dorac_error(DORAC_E_BACKEND, "dist rank %d: %s failed: %s", rank, what,
                       ncclGetErrorString(r));
}

static void nccl_destroy(dorac_dist *d) {
    if (!d) return;
    nccl_context *ctx = (nccl_context *)d->context;
    if (ctx) {
        if (ctx->comm) {
            (void)cudaSetDevice(ctx->device);
            (void)ncclCommFinalize(ctx->comm);
            (void)ncclCommDestroy(ctx->comm);
        }
        dorac_tcp_group_close(ctx->group);
        free(ctx);
    }
    free(d);
}

/* The NCCL type of t, which must be a contiguous F32 or BF16 tensor. */
static int nccl_tensor_type(const dorac_tensor *t, size_t i, int rank, ncclDataType_t *type) {
    if (!t)
        return dorac_error(DORAC_E_INVALID, "dist rank %d: all_reduce_sum: tensor %zu is NULL", rank, i);
    if (t->type == DORAC_DTYPE_F32)
        *type = ncclFloat32;
    else if (t->type == DORAC_DTYPE_BF16)
        *type = ncclBfloat16;
    else
        return dorac_error(DORAC_E_UNSUPPORTED, "dist rank %d: all_reduce_sum: tensor %zu is %s, not F32 or BF16",
                           rank, i, dorac_dtype_name(t->type));
    if (t->rows < 0 || t->cols < 0 || t->ld < t->cols)
        return dorac_error(DORAC_E_INVALID, "dist rank %d: all_reduce_sum: tensor %zu has shape (%lld, %lld) ld %lld",
                           rank, i, (long long)t->rows, (long long)t->cols, (long long)t->ld);
    /* one row is contiguous whatever its stride */
    if (t->ld != t->cols && t->rows > 1)
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "dist rank %d: all_reduce_sum: tensor %zu is a strided view (%lld, %lld) "
                           "ld %lld; NCCL needs contiguous tensors",
                           rank, i, (long long)t->rows, (long long)t->cols, (long long)t->ld);
    return DORAC_OK;
}

static int nccl_all_reduce_sum(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                               size_t n) {
    nccl_context *ctx = (nccl_context *)d->context;
    if (!be || (!t && n > 0))
        return dorac_error(DORAC_E_INVALID, "dist rank %d: all_reduce_sum: NULL argument", d->rank);
    if (!be->name || strcmp(be->name, "cuda") != 0 ||
        ((cuda_context *)be->context)->stream != ctx->stream)
        return dorac_error(DORAC_E_INVALID,
                           "dist rank %d: all_reduce_sum: tensors must be on the CUDA backend the "
                           "communicator was opened with", d->rank);
    for (size_t i = 0; i < n; i++) {
        ncclDataType_t type;
        DORAC_TRY(nccl_tensor_type(t[i], i, d->rank, &type));
    }
    DORAC_TRY(nccl_status(ncclGroupStart(), d->rank, "ncclGroupStart"));
    ncclResult_t first_error = ncclSuccess;
    for (size_t i = 0; i < n && first_error == ncclSuccess; i++) {
        ncclDataType_t type = ncclFloat32;
        (void)nccl_tensor_type(t[i], i, d->rank, &type);
        size_t count = (size_t)t[i]->rows * (size_t)t[i]->cols;
        if (count == 0) continue;
        first_error = ncclAllReduce(t[i]->data, t[i]->data, count, type, ncclSum, ctx->comm,
                                    ctx->stream);
    }
    /* the group must be closed even when a call inside it failed */
    ncclResult_t end = ncclGroupEnd();
    DORAC_TRY(nccl_status(first_error, d->rank, "ncclAllReduce"));
    return nccl_status(end, d->rank, "ncclGroupEnd");
}

static int nccl_all_reduce_host(dorac_dist *d, double *v, size_t n) {
    return dorac_tcp_group_all_reduce(((nccl_context *)d->context)->group, v, n);
}

static int nccl_broadcast_host(dorac_dist *d, void *buf, size_t nbytes) {
    return dorac_tcp_group_broadcast(((nccl_context *)d->context)->group, buf, nbytes);
}

static int nccl_barrier(dorac_dist *d) {
    return dorac_tcp_group_barrier(((nccl_context *)d->context)->group);
}

int dorac_dist_open_nccl(const dorac_dist_env *env, dorac_backend *be, dorac_dist **out) {
    if (!env || !out) return dorac_error(DORAC_E_INVALID, "dist: nccl open: NULL argument");
    *out = NULL;
    if (!be || !be->name || strcmp(be->name, "cuda") != 0 || !be->context)
        return dorac_error(DORAC_E_INVALID, "dist rank %d: nccl needs the CUDA backend, got %s",
                           env->rank, be && be->name ? be->name : "none");
    const cuda_context *cctx = (const cuda_context *)be->context;

    dorac_dist *d = (dorac_dist *)calloc(1, sizeof *d);
    nccl_context *ctx = (nccl_context *)calloc(1, sizeof *ctx);
    if (!d || !ctx) {
        free(d);
        free(ctx);
        return dorac_error(DORAC_E_NOMEM, "dist rank %d: nccl open: out of memory", env->rank);
    }
    ctx->stream = cctx->stream;
    ctx->device = cctx->device;
    d->name = "nccl";
    d->rank = env->rank;
    d->world = env->world;
    d->local_rank = env->local_rank;
    d->context = ctx;
    d->destroy = nccl_destroy;
    d->all_reduce_sum = nccl_all_reduce_sum;
    d->all_reduce_host = nccl_all_reduce_host;
    d->broadcast_host = nccl_broadcast_host;
    d->barrier = nccl_barrier;

    int status = dorac_tcp_group_open(env, &ctx->group);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (status == DORAC_OK && env->rank == 0)
        status = nccl_status(ncclGetUniqueId(&id), env->rank, "ncclGetUniqueId");
    /* when rank 0 fails above it closes its sockets, and the others'
    ** broadcast fails at once instead of waiting for an id */
    if (status == DORAC_OK) status = dorac_tcp_group_broadcast(ctx->group, &id, sizeof id);
    if (status == DORAC_OK) {
        cudaError_t e = cudaSetDevice(ctx->device);
        if (e != cudaSuccess)
            status = dorac_error(DORAC_E_BACKEND, "dist rank %d: cudaSetDevice(%d): %s", env->rank,
                                 ctx->device, cudaGetErrorString(e));
    }
    if (status == DORAC_OK) {
        ncclComm_t comm = NULL;
        status = nccl_status(ncclCommInitRank(&comm, env->world, id, env->rank), env->rank,
                             "ncclCommInitRank");
        if (status == DORAC_OK) ctx->comm = comm;
    }
    if (status != DORAC_OK) {
        nccl_destroy(d);
        return status;
    }
    *out = d;
    return DORAC_OK;
}
