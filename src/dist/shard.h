/*
** shard.h — ZeRO-1's partition of the trainable tensors over the ranks of
** a data-parallel job: which rank keeps the AdamW state of, and updates,
** which rows of which tensor.
**
** The n tensors are laid end to end in the order given (each row-major,
** rows x cols), as one flat vector of E elements. Rank r owns the flat range
** [begin[r], begin[r+1]): begin[0] = 0, begin[W] = E, and for 0 < r < W
** begin[r] is the row boundary nearest to floor(r*E/W) (a tie goes to the
** lower one), a row boundary being the start or the end of a row of the
** tensor the position falls in. So:
**   - every rank owns one contiguous stretch of the flat vector, and the
**     stretches in rank order are the whole vector: concatenating the ranks'
**     shards in rank order gives the tensors in order (a checkpoint needs
**     no reordering);
**   - a tensor is cut only between rows, so each piece is a row view of
**     its tensor (dorac_tensor_rows), contiguous when the tensor is;
**   - each rank owns E/W elements give or take one row at each end: a
**     rank may own nothing when one row is larger than E/W.
** The plan depends only on the shapes and W, so every rank computes the
** same one without talking to the others.
**
** A piece is the part of one tensor that one rank owns. Pieces are listed in
** flat order (by tensor, then by row); a rank's pieces are consecutive and
** a tensor has at most one piece per rank. A tensor with no elements is one
** piece of all its rows, owned by rank 0, so that a plan for a world of 1
** has exactly one piece per tensor.
*/
#ifndef DORAC_DIST_SHARD_H
#define DORAC_DIST_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

typedef struct dorac_shard_piece {
    size_t tensor;  /* index into the list the plan was made for */
    int64_t row0;   /* first row of the piece */
    int64_t n_rows; /* rows [row0, row0 + n_rows), all columns */
    int owner;      /* the rank that owns them, 0 .. world-1 */
} dorac_shard_piece;

typedef struct dorac_shard_plan {
    int world;                 /* ranks, >= 1 */
    size_t n_tensors;          /* the list's length */
    uint64_t total;            /* E: elements of all tensors */
    uint64_t *begin;           /* (world + 1) flat boundaries, see above */
    dorac_shard_piece *pieces; /* (n_pieces) in flat order */
    size_t n_pieces;           /* <= n_tensors + world - 1 */
} dorac_shard_plan;

/* Makes the plan for tensors t[0..n) (only their shapes are read) over
** `world` ranks into *p. DORAC_E_INVALID for a NULL tensor, a negative
** shape or world < 1; DORAC_E_UNSUPPORTED when the total number of
** elements overflows; DORAC_E_NOMEM. *p is zeroed on failure. */
int dorac_shard_plan_init(dorac_shard_plan *p, const dorac_tensor *const *t, size_t n, int world);

/* Frees what init allocated and zeroes *p (a zeroed plan is fine). */
void dorac_shard_plan_free(dorac_shard_plan *p);

/* Elements rank r owns: begin[r+1] - begin[r]. */
static inline uint64_t dorac_shard_plan_count(const dorac_shard_plan *p, int r) {
    return p->begin[r + 1] - p->begin[r];
}

#endif
