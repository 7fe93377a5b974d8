/*
** optimizer.h — AdamW over a model's trainable tensors, with global-norm
** gradient clipping, and its state in and out of a checkpoint; in a
** data-parallel job, optionally sharded over the ranks (ZeRO-1).
**
** The update is torch.optim.AdamW's (backend.h, adamw), with
** torch.nn.utils.clip_grad_norm_'s clipping: the global L2 norm over every
** gradient, and scale = min(1, max_norm / (norm + 1e-6)) when max_norm > 0.
** State (exp_avg, exp_avg_sq) is kept in the backend's param type (fp32),
** zero at step 0.
**
** Who keeps what. Without sharding, this process keeps the state of every
** trainable tensor (m[i], v[i] belong to params[i]). With ZeRO-1 over a
** dist of W ranks, the tensors are cut into row pieces (dist/shard.h) and
** this rank keeps m, v for its own pieces only, about 1/W of the state:
**   sync_grads  reduces each piece's gradient to its owner (reduce-scatter)
**   grad_norm   each rank sums the squares of its pieces' gradients, then
**               the sums are added over ranks: the norm of the full
**               reduced gradient, the same on every rank
**   step        AdamW on the owned pieces, then every piece's new values
**               are copied from its owner to all ranks (all-gather), so the
**               parameters stay identical everywhere
** Gradients themselves stay whole on every rank (that would be ZeRO-2).
** The schedule, weight decay and clipping are those of one process.
**
** Checkpoints hold the whole state whatever the sharding ("<name>.exp_avg"
** and "<name>.exp_avg_sq" per trainable, F32, of the tensor's shape,
** metadata "step"), so a run saved with W ranks resumes with any other W,
** sharded or not.
*/
#ifndef DORAC_TRAIN_OPTIMIZER_H
#define DORAC_TRAIN_OPTIMIZER_H

#include <stdbool.h>

#include "dist/dist.h"
#include "dist/shard.h"
#include "model/model.h"

typedef struct dorac_adamw_config {
    double lr;            /* base learning rate (the schedule multiplies it) */
    double beta1, beta2, eps;
    double weight_decay;  /* decoupled; applied to tensors marked decay */
    double max_grad_norm; /* <= 0: no clipping */
} dorac_adamw_config;

typedef struct dorac_optimizer {
    dorac_backend *be;
    dorac_dist *dist;        /* borrowed; NULL: one process */
    bool sharded;            /* ZeRO-1: m, v of this rank's pieces only */
    dorac_trainable *params; /* owned copy of the list */
    size_t n;
    dorac_shard_plan plan;   /* over dist's ranks when sharded, else over 1: one piece per tensor */
    int self;                /* this process's owner id in plan: its rank when sharded, else 0 */
    /* every piece of the plan (plan.n_pieces): row views of its parameter
    ** and gradient, pointer lists of them and the owners, as the
    ** collectives take them */
    dorac_tensor *piece_value, *piece_grad;
    const dorac_tensor **piece_values, **piece_grads;
    int *piece_owner;
    /* the pieces this process owns (n_owned, in plan order): their moments
    ** (owned tensors), gradients and AdamW quadruples. Unsharded, these
    ** are the n tensors themselves: m[i] is params[i]'s. */
    size_t n_owned;
    dorac_tensor *m, *v;
    const dorac_tensor **grads;
    dorac_adamw_item *items;
    const dorac_tensor **all_grads; /* (n) every whole gradient: the unsharded all-reduce */
    size_t state_bytes;      /* bytes of m and v held by this process */
    int64_t step;            /* optimizer steps taken */
} dorac_optimizer;

/* One process, or a rank that keeps the whole state: same as
** dorac_optimizer_init_dist(o, be, params, n, NULL, false). */
int dorac_optimizer_init(dorac_optimizer *o, dorac_backend *be, const dorac_trainable *params, size_t n);

/* params as every rank of dist lists them (same names, shapes, order).
** dist may be NULL (one process); shard asks for ZeRO-1 and is ignored
** for a world of 1. Zero state. On failure *o is freed and zeroed. */
int dorac_optimizer_init_dist(dorac_optimizer *o, dorac_backend *be, const dorac_trainable *params, size_t n,
                              dorac_dist *dist, bool shard);
void dorac_optimizer_free(dorac_optimizer *o);

/* Collective when dist has W > 1: sums the gradients over the ranks,
** every gradient onto every rank (unsharded) or each piece onto its owner
** (sharded). A no-op for one process. */
int dorac_optimizer_sync_grads(dorac_optimizer *o);

/* The global L2 norm of every gradient (on the host); after sync_grads,
** the norm of the summed gradient. Collective when sharded. */
int dorac_optimizer_grad_norm(dorac_optimizer *o, double *norm);

/* One step at learning rate lr, clipping with grad_norm as computed above.
** Increments step. Collective when sharded (the parameters are gathered). */
int dorac_optimizer_step(dorac_optimizer *o, const dorac_adamw_config *c, double lr, double grad_norm);

/* Writes the whole state to path as safetensors (see above). Atomic.
** Collective when sharded: every rank calls it, each sends its shard to
** rank 0, and rank 0 alone writes; the other ranks pass path NULL, and so
** may rank 0 to take part without writing; when any rank fails to read
** its shard, every rank returns an error and nothing is written. Unsharded,
** it writes path when given and does nothing for NULL. */
int dorac_optimizer_save(dorac_optimizer *o, const char *path);

/* Reads what save wrote (with any world size, sharded or not), keeping
** this process's pieces; every tensor must be present with its shape. Each
** rank reads the file itself: not collective. */
int dorac_optimizer_load(dorac_optimizer *o, const char *path);

#endif
