/*
** shard.c — ZeRO-1's partition of the trainable tensors over the ranks
** (contract in shard.h).
**
** Two passes over the list, both O(n + W): the first finds each rank's
** flat boundary (the targets floor(r*E/W) grow with r, so one walk over the
** tensors finds the tensor each falls in); the second cuts every tensor at
** the boundaries inside it. Flat positions are uint64_t and every sum is
** checked, so a list of any size either fits or is refused.
*/
#include "dist/shard.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void dorac_shard_plan_free(dorac_shard_plan *p) {
    if (!p) return;
    free(p->begin);
    free(p->pieces);
    memset(p, 0, sizeof *p);
}

/* Elements of t (rows x cols), checked to fit uint64_t. */
static int tensor_elems(const dorac_tensor *t, size_t i, uint64_t *out) {
    if (!t) return dorac_error(DORAC_E_INVALID, "shard plan: tensor %zu is NULL", i);
    if (t->rows < 0 || t->cols < 0)
        return dorac_error(DORAC_E_INVALID, "shard plan: tensor %zu has shape (%lld, %lld)", i,
                           (long long)t->rows, (long long)t->cols);
    if (t->cols > 0 && (uint64_t)t->rows > UINT64_MAX / (uint64_t)t->cols)
        return dorac_error(DORAC_E_UNSUPPORTED, "shard plan: tensor %zu has too many elements", i);
    *out = (uint64_t)t->rows * (uint64_t)t->cols;
    return DORAC_OK;
}

/* floor(r * total / world) without overflow: r < world <= 65536 keeps
** (total % world) * r below 2^32. */
static uint64_t share_target(uint64_t total, int r, int world) {
    uint64_t w = (uint64_t)world, rr = (uint64_t)r;
    return total / w * rr + total % w * rr / w;
}

int dorac_shard_plan_init(dorac_shard_plan *p, const dorac_tensor *const *t, size_t n, int world) {
    if (!p) return dorac_error(DORAC_E_INVALID, "shard plan: plan is NULL");
    memset(p, 0, sizeof *p);
    if (!t && n > 0) return dorac_error(DORAC_E_INVALID, "shard plan: tensors are NULL");
    if (world < 1 || world > 65536)
        return dorac_error(DORAC_E_INVALID, "shard plan: world %d outside [1, 65536]", world);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t e = 0;
        DORAC_TRY(tensor_elems(t[i], i, &e));
        if (e > UINT64_MAX - total)
            return dorac_error(DORAC_E_UNSUPPORTED, "shard plan: the %zu tensors have too many elements", n);
        total += e;
    }
    size_t max_pieces = n + (size_t)world; /* n + W - 1, plus one so that 0 tensors allocate */
    if (max_pieces < n || max_pieces > SIZE_MAX / sizeof *p->pieces)
        return dorac_error(DORAC_E_UNSUPPORTED, "shard plan: %zu tensors are too many", n);
    p->begin = malloc(((size_t)world + 1) * sizeof *p->begin);
    p->pieces = malloc(max_pieces * sizeof *p->pieces);
    if (!p->begin || !p->pieces) {
        dorac_shard_plan_free(p);
        return dorac_error(DORAC_E_NOMEM, "shard plan: out of memory for %zu tensors over %d ranks", n, world);
    }
    p->world = world;
    p->n_tensors = n;
    p->total = total;

    /* boundaries: walk the tensors once, as the targets grow with r */
    p->begin[0] = 0;
    p->begin[world] = total;
    size_t i = 0;
    uint64_t start = 0; /* flat position of tensor i */
    /* with nothing to share every boundary is 0 (the walk below needs a
    ** tensor holding each target, which only a non-empty list has) */
    for (int r = 1; r < world && total == 0; r++) p->begin[r] = 0;
    for (int r = 1; r < world && total > 0; r++) {
        uint64_t target = share_target(total, r, world), e = 0;
        /* the tensor holding flat position target (< total, so one exists) */
        for (;;) {
            (void)tensor_elems(t[i], i, &e);
            if (target < start + e) break;
            start += e;
            i++;
        }
        uint64_t cols = (uint64_t)t[i]->cols; /* > 0: the tensor has elements */
        uint64_t lo = start + (target - start) / cols * cols, hi = lo + cols;
        uint64_t b = target - lo <= hi - target ? lo : hi;
        p->begin[r] = b < p->begin[r - 1] ? p->begin[r - 1] : b; /* never decreases; kept explicit */
    }

    /* pieces: cut each tensor at the boundaries inside it */
    int r = 0;
    start = 0;
    for (i = 0; i < n; i++) {
        uint64_t e = 0;
        (void)tensor_elems(t[i], i, &e);
        if (e == 0) {
            p->pieces[p->n_pieces++] = (dorac_shard_piece){i, 0, t[i]->rows, 0};
            continue;
        }
        uint64_t end = start + e, cols = (uint64_t)t[i]->cols;
        for (uint64_t pos = start; pos < end;) {
            while (p->begin[r + 1] <= pos) r++; /* the rank whose range holds pos */
            uint64_t stop = p->begin[r + 1] < end ? p->begin[r + 1] : end;
            p->pieces[p->n_pieces++] =
                (dorac_shard_piece){i, (int64_t)((pos - start) / cols), (int64_t)((stop - pos) / cols), r};
            pos = stop;
        }
        start = end;
    }
    return DORAC_OK;
}
