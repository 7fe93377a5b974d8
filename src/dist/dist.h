/*
** dist.h — data-parallel training over several processes: where a process
** stands (its rank), and the collectives the trainer needs.
**
** One process per device. Each holds the whole frozen model and trains on
** its own share of every global batch; after the backward pass the
** trainable gradients are summed over all processes, so every process
** applies the same optimizer step and the parameters stay identical.
**
** Where a process stands comes from its environment (dorac_dist_env_read),
** as torchrun and mpirun set it:
**   torchrun:  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
**   mpirun:    OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE,
**              OMPI_COMM_WORLD_LOCAL_RANK (Open MPI) or PMI_RANK, PMI_SIZE
**              (MPICH); MASTER_ADDR and MASTER_PORT are still needed for the
**              rendezvous (default 127.0.0.1:29500 when absent)
**   neither:   rank 0 of a world of 1.
** `dorac train --nproc-per-node N` sets the torchrun variables for its N
** children itself.
**
** The rendezvous is a TCP socket: rank 0 listens on MASTER_PORT, every other
** rank connects (retrying for up to DORAC_DIST_TIMEOUT, default 600 s; a
** peer that exits closes its socket and is an error at once) and announces
** its rank. Over it
** rank 0 hands out whatever every rank needs to agree on (NCCL's unique id)
** and, for CPU training, the collectives themselves run on it.
**
** Collectives (a struct of function pointers, like the backend):
**   all_reduce_sum        tensors on the backend, in place, summed over ranks
**   reduce_to_owner       tensors on the backend, each summed into one rank
**                         (its owner): ZeRO-1's gradient reduce-scatter
**   broadcast_from_owner  tensors on the backend, each copied from its
**                         owner to all: ZeRO-1's parameter all-gather
**   all_reduce_host       doubles on the host (token counts, loss sums)
**   broadcast_host        bytes from rank 0 to all
**   gather_host           bytes from every rank to rank 0 (the sharded
**                         optimizer state, for a checkpoint)
**   barrier
**   all_reduce_start/wait all_reduce_sum begun now and finished later, so
**                         that summing one layer's gradients overlaps the
**                         backward of the layers before it
** ZeRO-1 (src/dist/shard.h, train/optimizer.h) cuts the trainable tensors
** into row pieces, one owner each, and hands the pieces' views to the two
** per-owner collectives: a reduce-scatter and an all-gather, tensor by
** tensor, without a flat copy of the gradients.
** Implementations:
**   single  world size 1: every collective is a no-op
**   tcp     through the rendezvous socket: each rank sends its values to
**           rank 0, which adds them in rank order 0, 1, ..., W-1 in double
**           and sends the sums back (to every rank, or for reduce_to_owner
**           to each tensor's owner), so the result is deterministic, the
**           same on every rank, and reduce_to_owner's sums are bit for bit
**           all_reduce_sum's. all_reduce_start hands the exchange to a
**           communication thread (a FIFO of requests; every other
**           collective waits for it to empty first), so the sums are
**           all_reduce_sum's whatever the timing. For the CPU backend and
**           for tests.
**   nccl    NCCL on CUDA tensors (built with DORAC_CUDA and NCCL), its
**           unique id passed from rank 0 over the rendezvous: ncclAllReduce,
**           ncclReduce and ncclBroadcast, one NCCL group per call; the
**           host collectives over the rendezvous socket. all_reduce_start
**           queues ncclAllReduce on a communication stream that first
**           waits for the backend's stream (an event), and wait makes the
**           backend's stream wait for the communication stream: nothing
**           blocks the host.
** dorac_dist_open picks single for a world of 1, nccl for a CUDA backend,
** tcp otherwise.
**
** Every function returns DORAC_OK or an error status with a one-line
** message naming the rank; a peer that disconnects is an error, never a
** hang (sockets have a timeout). Collectives are called from one thread.
** Closing a dist with reductions started and not waited for abandons them
** (the peers see this rank gone); nccl then aborts the communicator, as it
** does after any failed collective, rather than finalising it, which would
** wait for operations that a peer gone will never match.
*/
#ifndef DORAC_DIST_H
#define DORAC_DIST_H

#include <stddef.h>

#include "backend/backend.h"

typedef struct dorac_dist_env {
    int rank;       /* 0 .. world-1 */
    int world;      /* >= 1 */
    int local_rank; /* rank on this host: picks the GPU */
    char master_addr[256];
    int master_port;
    const char *source; /* "torchrun", "openmpi", "mpich" or "none" */
} dorac_dist_env;

/* Reads the environment. DORAC_E_INVALID naming the variable when a value
** is malformed or inconsistent (RANK >= WORLD_SIZE, a port out of range). */
int dorac_dist_env_read(dorac_dist_env *env);

typedef struct dorac_dist dorac_dist;

struct dorac_dist {
    const char *name; /* "single", "tcp", "nccl" */
    int rank, world, local_rank;
    void *context;
    void (*destroy)(dorac_dist *d);
    /* Each of the n tensors (on be, F32 or BF16) becomes the elementwise sum
    ** of that tensor over all ranks. Tensors must have the same shapes on
    ** every rank, in the same order. */
    int (*all_reduce_sum)(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t, size_t n);
    /* v[0..n) becomes the sum over ranks, added in rank order. */
    int (*all_reduce_host)(dorac_dist *d, double *v, size_t n);
    /* buf[0..nbytes) on every rank becomes rank 0's. */
    int (*broadcast_host)(dorac_dist *d, void *buf, size_t nbytes);
    int (*barrier)(dorac_dist *d);
    /* For each i < n, tensor t[i] on rank owner[i] becomes the elementwise
    ** sum of t[i] over all ranks (the sum all_reduce_sum would give); on
    ** the other ranks t[i] is left as it was. Shapes and owners must be the
    ** same on every rank, in the same order; an owner outside [0, world) is
    ** DORAC_E_INVALID before anything is sent. */
    int (*reduce_to_owner)(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                           const int *owner, size_t n);
    /* For each i < n, t[i] on every rank becomes rank owner[i]'s t[i].
    ** Same rules as reduce_to_owner. */
    int (*broadcast_from_owner)(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                                const int *owner, size_t n);
    /* Rank r sends part[0..part_bytes[r]); rank 0 receives them all, in rank
    ** order, into all[0 .. sum of part_bytes): rank r's bytes at offset
    ** part_bytes[0] + ... + part_bytes[r-1]. part_bytes (world entries) must
    ** be the same on every rank. all is used on rank 0 only (NULL elsewhere);
    ** rank 0's part may be all itself (its bytes are at offset 0). */
    int (*gather_host)(dorac_dist *d, const void *part, void *all, const size_t *part_bytes);
    /* all_reduce_sum in two halves. start begins summing t[0..n) (checked
    ** as all_reduce_sum checks them, before anything is sent) and returns;
    ** the list may go away then, the tensors may not. wait returns once
    ** every reduction started since the last wait is done: each tensor
    ** then holds all_reduce_sum's result, bit for bit. Until then the
    ** caller neither writes nor reads those tensors (their contents are
    ** unspecified). Every rank starts the same lists in the same order;
    ** other collectives may come between start and wait, in the same order
    ** on every rank, and act after the reductions started before them. A
    ** failure of a started reduction (a peer gone) is returned by wait, or
    ** by whichever call of this dist comes first. */
    int (*all_reduce_start)(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t, size_t n);
    int (*all_reduce_wait)(dorac_dist *d);
};

/* Opens the collectives for env on backend be (see above for the choice). */
int dorac_dist_open(const dorac_dist_env *env, dorac_backend *be, dorac_dist **out);

/* The world-of-1 implementation (also what dorac_dist_open gives for it). */
int dorac_dist_open_single(dorac_dist **out);

/* The TCP implementation, for any backend (tensors go through the host). */
int dorac_dist_open_tcp(const dorac_dist_env *env, dorac_dist **out);

/* NCCL (DORAC_E_UNSUPPORTED when dorac was built without CUDA/NCCL). */
int dorac_dist_open_nccl(const dorac_dist_env *env, dorac_backend *be, dorac_dist **out);

/* A TCP port on 127.0.0.1 that is free now (the kernel picks it), for a
** local rendezvous (`--nproc-per-node`); -1 when none can be had. Another
** process may take it before it is used. */
int dorac_dist_free_port(void);

static inline void dorac_dist_close(dorac_dist *d) {
    if (d) d->destroy(d);
}

#endif
