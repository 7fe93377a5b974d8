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
**   all_reduce_sum   tensors on the backend, in place, summed over ranks
**   all_reduce_host  doubles on the host (token counts, loss sums)
**   broadcast_host   bytes from rank 0 to all
**   barrier
** Implementations:
**   single  world size 1: every collective is a no-op
**   tcp     through the rendezvous socket: each rank sends its values to
**           rank 0, which adds them in rank order 0, 1, ..., W-1 in double
**           and sends the sums back, so the result is deterministic and the
**           same on every rank. For the CPU backend and for tests.
**   nccl    NCCL on CUDA tensors (built with DORAC_CUDA and NCCL), its
**           unique id passed from rank 0 over the rendezvous.
** dorac_dist_open picks single for a world of 1, nccl for a CUDA backend,
** tcp otherwise.
**
** Every function returns DORAC_OK or an error status with a one-line
** message naming the rank; a peer that disconnects is an error, never a
** hang (sockets have a timeout).
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
};

/* Opens the collectives for env on backend be (see above for the choice). */
int dorac_dist_open(const dorac_dist_env *env, dorac_backend *be, dorac_dist **out);

/* The world-of-1 implementation (also what dorac_dist_open gives for it). */
int dorac_dist_open_single(dorac_dist **out);

/* The TCP implementation, for any backend (tensors go through the host). */
int dorac_dist_open_tcp(const dorac_dist_env *env, dorac_dist **out);

/* NCCL (DORAC_E_UNSUPPORTED when dorac was built without CUDA/NCCL). */
int dorac_dist_open_nccl(const dorac_dist_env *env, dorac_backend *be, dorac_dist **out);

static inline void dorac_dist_close(dorac_dist *d) {
    if (d) d->destroy(d);
}

#endif
