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
** reduce_to_owner and broadcast_from_owner (ZeRO-1) are ncclReduce and
** ncclBroadcast per tensor with the tensor's owner as root, grouped the
** same way; gather_host (the sharded AdamW state, for a checkpoint) goes
** over the rendezvous socket, since that state is on the host by then.
**
** all_reduce_start (the all-reduce overlapped with the backward) queues
** its ncclAllReduce group on a communication stream of its own, after an
** event recorded on the backend's stream at the call, so it reads the
** gradients once the ops queued before it have written them and runs
** beside the ops queued after it; all_reduce_wait records an event on the
** communication stream and makes the backend's stream wait for it, so the
** ops queued after wait (the gradient norm, the optimizer step) read the
** sums. Nothing waits on the host. The synchronous device collectives join
** the communication stream the same way first, so the communicator's calls
** run one after another, in the order every rank issued them. The sums are
** all_reduce_sum's (the same NCCL call on the same data).
**
** NCCL's sums are deterministic for a fixed world and topology but need
** not add in rank order as the tcp implementation does, and ncclReduce's
** need not equal ncclAllReduce's bit for bit.
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
    /* the asynchronous all-reduce: created at the first all_reduce_start */
    cudaStream_t comm_stream; /* NULL until then */
    cudaEvent_t grads_ready;  /* recorded on stream by each start */
    cudaEvent_t comm_done;    /* recorded on comm_stream by wait */
    bool in_flight;           /* reductions started and not yet joined */
    /* a collective of this dist failed: a peer may be gone, so closing
    ** aborts the communicator (ncclCommFinalize would wait for operations
    ** no peer will match, for ever) */
    bool broken;
} nccl_context;

static int nccl_status(ncclResult_t r, int rank, const char *what) {
    if (r == ncclSuccess) return DORAC_OK;
    return dorac_error(DORAC_E_BACKEND, "dist rank %d: %s failed: %s", rank, what,
                       ncclGetErrorString(r));
}

static int cuda_status(cudaError_t e, int rank, const char *what) {
    if (e == cudaSuccess) return DORAC_OK;
    return dorac_error(DORAC_E_BACKEND, "dist rank %d: %s failed: %s", rank, what, cudaGetErrorString(e));
}

/* Makes the backend's stream wait for everything queued on the
** communication stream so far (nothing to do when nothing is in flight). */
static int nccl_join(dorac_dist *d) {
    nccl_context *ctx = (nccl_context *)d->context;
    if (!ctx->in_flight) return DORAC_OK;
    ctx->in_flight = false;
    DORAC_TRY(cuda_status(cudaEventRecord(ctx->comm_done, ctx->comm_stream), d->rank, "cudaEventRecord"));
    return cuda_status(cudaStreamWaitEvent(ctx->stream, ctx->comm_done, 0), d->rank, "cudaStreamWaitEvent");
}

/* Notes a failed collective (see broken); returns rc. A list refused by
** its checks is not one: it fails on every rank alike before anything is
** queued, and the communicator stays in step. */
static int nccl_checked(dorac_dist *d, int rc) {
    if (rc != DORAC_OK) ((nccl_context *)d->context)->broken = true;
    return rc;
}

/* Closing after a failure, or with reductions started and not waited for
** (abandoned, dist.h), aborts the communicator, so that neither this rank
** nor its peers wait on operations that will never be matched; else the
** communicator is finalised (its queued operations complete) first. */
static void nccl_destroy(dorac_dist *d) {
    if (!d) return;
    nccl_context *ctx = (nccl_context *)d->context;
    if (ctx) {
        if (ctx->comm) {
            (void)cudaSetDevice(ctx->device);
            if (ctx->broken || ctx->in_flight) {
                (void)ncclCommAbort(ctx->comm);
            } else {
                (void)ncclCommFinalize(ctx->comm);
                (void)ncclCommDestroy(ctx->comm);
            }
        }
        if (ctx->comm_stream) {
            (void)cudaStreamSynchronize(ctx->comm_stream);
            (void)cudaEventDestroy(ctx->grads_ready);
            (void)cudaEventDestroy(ctx->comm_done);
            (void)cudaStreamDestroy(ctx->comm_stream);
        }
        dorac_tcp_group_close(ctx->group);
        free(ctx);
    }
    free(d);
}

/* The NCCL type of t, which must be a contiguous F32 or BF16 tensor. */
static int nccl_tensor_type(const dorac_tensor *t, const char *op, size_t i, int rank, ncclDataType_t *type) {
    if (!t)
        return dorac_error(DORAC_E_INVALID, "dist rank %d: %s: tensor %zu is NULL", rank, op, i);
    if (t->type == DORAC_DTYPE_F32)
        *type = ncclFloat32;
    else if (t->type == DORAC_DTYPE_BF16)
        *type = ncclBfloat16;
    else
        return dorac_error(DORAC_E_UNSUPPORTED, "dist rank %d: %s: tensor %zu is %s, not F32 or BF16",
                           rank, op, i, dorac_dtype_name(t->type));
    if (t->rows < 0 || t->cols < 0 || t->ld < t->cols)
        return dorac_error(DORAC_E_INVALID, "dist rank %d: %s: tensor %zu has shape (%lld, %lld) ld %lld",
                           rank, op, i, (long long)t->rows, (long long)t->cols, (long long)t->ld);
    /* one row is contiguous whatever its stride */
    if (t->ld != t->cols && t->rows > 1)
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "dist rank %d: %s: tensor %zu is a strided view (%lld, %lld) "
                           "ld %lld; NCCL needs contiguous tensors",
                           rank, op, i, (long long)t->rows, (long long)t->cols, (long long)t->ld);
    return DORAC_OK;
}

/* The three device collectives: one NCCL call per tensor, all in one group. */
enum nccl_op { NCCL_ALL_REDUCE, NCCL_REDUCE_TO_OWNER, NCCL_BROADCAST_FROM_OWNER };

static const char *nccl_op_name(nccl_op op) {
    switch (op) {
    case NCCL_ALL_REDUCE: return "all_reduce_sum";
    case NCCL_REDUCE_TO_OWNER: return "reduce_to_owner";
    case NCCL_BROADCAST_FROM_OWNER: return "broadcast_from_owner";
    }
    return "?";
}

/* Checks every tensor (and owner) of a device collective: the same list
** fails the same way on every rank, before anything is queued. */
static int nccl_check(dorac_dist *d, dorac_backend *be, nccl_op op, const dorac_tensor *const *t,
                      const int *owner, size_t n, const char *name) {
    nccl_context *ctx = (nccl_context *)d->context;
    if (!be || (!t && n > 0) || (op != NCCL_ALL_REDUCE && !owner && n > 0))
        return dorac_error(DORAC_E_INVALID, "dist rank %d: %s: NULL argument", d->rank, name);
    if (!be->name || strcmp(be->name, "cuda") != 0 ||
        ((cuda_context *)be->context)->stream != ctx->stream)
        return dorac_error(DORAC_E_INVALID,
                           "dist rank %d: %s: tensors must be on the CUDA backend the "
                           "communicator was opened with", d->rank, name);
    for (size_t i = 0; i < n; i++) {
        ncclDataType_t type;
        DORAC_TRY(nccl_tensor_type(t[i], name, i, d->rank, &type));
        if (op != NCCL_ALL_REDUCE && (owner[i] < 0 || owner[i] >= d->world))
            return dorac_error(DORAC_E_INVALID, "dist rank %d: %s: tensor %zu's owner is rank %d, outside [0, %d)",
                               d->rank, name, i, owner[i], d->world);
    }
    return DORAC_OK;
}

/* Checks the list (nccl_check), then queues the calls on `stream` in one
** NCCL group, in place. NCCL's in-place reduce leaves a non-root's buffer
** as it was, which is reduce_to_owner's contract. */
static int nccl_tensors(dorac_dist *d, dorac_backend *be, nccl_op op, const dorac_tensor *const *t,
                        const int *owner, size_t n, const char *name, cudaStream_t stream) {
    nccl_context *ctx = (nccl_context *)d->context;
    DORAC_TRY(nccl_check(d, be, op, t, owner, n, name));
    DORAC_TRY(nccl_status(ncclGroupStart(), d->rank, "ncclGroupStart"));
    ncclResult_t first_error = ncclSuccess;
    for (size_t i = 0; i < n && first_error == ncclSuccess; i++) {
        ncclDataType_t type = ncclFloat32;
        (void)nccl_tensor_type(t[i], name, i, d->rank, &type);
        size_t count = (size_t)t[i]->rows * (size_t)t[i]->cols;
        if (count == 0) continue;
        void *buf = t[i]->data;
        if (op == NCCL_ALL_REDUCE)
            first_error = ncclAllReduce(buf, buf, count, type, ncclSum, ctx->comm, stream);
        else if (op == NCCL_REDUCE_TO_OWNER)
            first_error = ncclReduce(buf, buf, count, type, ncclSum, owner[i], ctx->comm, stream);
        else
            first_error = ncclBroadcast(buf, buf, count, type, owner[i], ctx->comm, stream);
    }
    /* the group must be closed even when a call inside it failed */
    ncclResult_t end = ncclGroupEnd();
    DORAC_TRY(nccl_status(first_error, d->rank, name));
    return nccl_status(end, d->rank, "ncclGroupEnd");
}

/* The synchronous device collectives: on the backend's stream, after the
** reductions started before them. */
static int nccl_sync(dorac_dist *d, dorac_backend *be, nccl_op op, const dorac_tensor *const *t,
                     const int *owner, size_t n) {
    DORAC_TRY(nccl_check(d, be, op, t, owner, n, nccl_op_name(op)));
    DORAC_TRY(nccl_checked(d, nccl_join(d)));
    return nccl_checked(d, nccl_tensors(d, be, op, t, owner, n, nccl_op_name(op),
                                        ((nccl_context *)d->context)->stream));
}

static int nccl_all_reduce_sum(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                               size_t n) {
    return nccl_sync(d, be, NCCL_ALL_REDUCE, t, NULL, n);
}

static int nccl_reduce_to_owner(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                                const int *owner, size_t n) {
    return nccl_sync(d, be, NCCL_REDUCE_TO_OWNER, t, owner, n);
}

static int nccl_broadcast_from_owner(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                                     const int *owner, size_t n) {
    return nccl_sync(d, be, NCCL_BROADCAST_FROM_OWNER, t, owner, n);
}

/* The communication stream and its two events, at the first start. */
static int nccl_comm_stream(dorac_dist *d) {
    nccl_context *ctx = (nccl_context *)d->context;
    if (ctx->comm_stream) return DORAC_OK;
    cudaStream_t s = NULL;
    cudaEvent_t ready = NULL, done = NULL;
    int rc = cuda_status(cudaSetDevice(ctx->device), d->rank, "cudaSetDevice");
    if (rc == DORAC_OK)
        rc = cuda_status(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), d->rank, "cudaStreamCreate");
    if (rc == DORAC_OK)
        rc = cuda_status(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), d->rank, "cudaEventCreate");
    if (rc == DORAC_OK)
        rc = cuda_status(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), d->rank, "cudaEventCreate");
    if (rc != DORAC_OK) {
        if (done) (void)cudaEventDestroy(done);
        if (ready) (void)cudaEventDestroy(ready);
        if (s) (void)cudaStreamDestroy(s);
        return rc;
    }
    ctx->comm_stream = s;
    ctx->grads_ready = ready;
    ctx->comm_done = done;
    return DORAC_OK;
}

static int nccl_start(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t, size_t n) {
    nccl_context *ctx = (nccl_context *)d->context;
    DORAC_TRY(nccl_comm_stream(d));
    /* the gradients are written by the ops queued on the backend's stream so far */
    DORAC_TRY(cuda_status(cudaEventRecord(ctx->grads_ready, ctx->stream), d->rank, "cudaEventRecord"));
    DORAC_TRY(cuda_status(cudaStreamWaitEvent(ctx->comm_stream, ctx->grads_ready, 0), d->rank,
                          "cudaStreamWaitEvent"));
    ctx->in_flight = true;
    return nccl_tensors(d, be, NCCL_ALL_REDUCE, t, NULL, n, "all_reduce_start", ctx->comm_stream);
}

static int nccl_all_reduce_start(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t, size_t n) {
    DORAC_TRY(nccl_check(d, be, NCCL_ALL_REDUCE, t, NULL, n, "all_reduce_start"));
    return nccl_checked(d, nccl_start(d, be, t, n));
}

static int nccl_all_reduce_wait(dorac_dist *d) {
    return nccl_checked(d, nccl_join(d));
}

static int nccl_all_reduce_host(dorac_dist *d, double *v, size_t n) {
    return nccl_checked(d, dorac_tcp_group_all_reduce(((nccl_context *)d->context)->group, v, n));
}

static int nccl_broadcast_host(dorac_dist *d, void *buf, size_t nbytes) {
    return nccl_checked(d, dorac_tcp_group_broadcast(((nccl_context *)d->context)->group, buf, nbytes));
}

static int nccl_barrier(dorac_dist *d) {
    return nccl_checked(d, dorac_tcp_group_barrier(((nccl_context *)d->context)->group));
}

/* The sharded optimizer state is on the host by the time it is gathered
** (it goes to a file), so the rendezvous socket carries it. */
static int nccl_gather_host(dorac_dist *d, const void *part, void *all, const size_t *part_bytes) {
    return nccl_checked(d, dorac_tcp_group_gather(((nccl_context *)d->context)->group, part, all, part_bytes));
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
    d->reduce_to_owner = nccl_reduce_to_owner;
    d->broadcast_from_owner = nccl_broadcast_from_owner;
    d->gather_host = nccl_gather_host;
    d->all_reduce_start = nccl_all_reduce_start;
    d->all_reduce_wait = nccl_all_reduce_wait;

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
