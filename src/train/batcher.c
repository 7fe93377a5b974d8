/*
** batcher.c — epoch layouts and rows (see batcher.h).
*/
#include "train/batcher.h"

#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/error.h"
#include "core/rng.h"

/* rows an example takes without packing */
static int64_t example_rows(const dorac_batcher *b, int64_t n) {
    if (b->truncate || n <= b->T + 1) return 1;
    return (n - 1 + b->T - 1) / b->T; /* each row predicts T targets */
}

static int64_t example_len(const dorac_batcher *b, int64_t n) {
    return b->truncate && n > b->T + 1 ? b->T + 1 : n;
}

/* Fisher-Yates with the counter-based generator: a pure function of
** (seed, epoch). */
static void permutation(size_t *perm, size_t n, uint64_t seed, int64_t epoch) {
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(dorac_rng_bits(seed, 0x5eed0000u + (uint64_t)epoch, i) % i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

static int layout_epoch(dorac_batcher *b, int64_t epoch) {
    const dorac_dataset *ds = b->ds;
    size_t *perm = malloc(ds->n * sizeof *perm);
    if (!perm) return dorac_error(DORAC_E_NOMEM, "batcher: out of memory");
    permutation(perm, ds->n, b->seed, epoch);
    int64_t at = 0;
    for (size_t k = 0; k < ds->n; k++) {
        const dorac_example *e = &ds->ex[perm[k]];
        int64_t len = example_len(b, e->n);
        if (b->pack) {
            memcpy(b->ids + at, e->ids, (size_t)len * sizeof(int32_t));
            memcpy(b->labels + at, e->labels, (size_t)len * sizeof(int32_t));
            at += len;
            continue;
        }
        /* rows of T+1 slots: row j holds tokens [j*T, j*T + T + 1) of the example */
        int64_t nr = example_rows(b, e->n);
        for (int64_t j = 0; j < nr; j++) {
            int32_t *ri = b->ids + at * (b->T + 1), *rl = b->labels + at * (b->T + 1);
            for (int64_t t = 0; t <= b->T; t++) {
                int64_t src = j * b->T + t;
                bool in = src < len;
                ri[t] = in ? e->ids[src] : 0;
                rl[t] = in ? e->labels[src] : DORAC_IGNORE_INDEX;
            }
            at++;
        }
    }
    free(perm);
    b->epoch = epoch;
    return DORAC_OK;
}

int dorac_batcher_init(dorac_batcher *b, const dorac_dataset *ds, int64_t T, bool pack, bool truncate,
                       uint64_t seed) {
    memset(b, 0, sizeof *b);
    if (T < 1) return dorac_error(DORAC_E_INVALID, "batcher: sequence length %lld must be positive", (long long)T);
    b->ds = ds, b->T = T, b->pack = pack, b->truncate = truncate, b->seed = seed;
    int64_t total = 0, rows = 0;
    for (size_t i = 0; i < ds->n; i++) {
        total += example_len(b, ds->ex[i].n);
        rows += example_rows(b, ds->ex[i].n);
    }
    size_t slots;
    if (pack) {
        b->stream_len = total;
        b->rows_per_epoch = total > 1 ? (total - 1 + T - 1) / T : 0;
        slots = (size_t)total;
    } else {
        b->rows_per_epoch = rows;
        slots = (size_t)(rows * (T + 1));
    }
    if (b->rows_per_epoch < 1)
        return dorac_error(DORAC_E_INVALID, "batcher: the data has fewer than 2 tokens, nothing to predict");
    b->ids = malloc(slots * sizeof *b->ids);
    b->labels = malloc(slots * sizeof *b->labels);
    if (!b->ids || !b->labels) {
        dorac_batcher_free(b);
        return dorac_error(DORAC_E_NOMEM, "batcher: out of memory for %zu tokens", slots);
    }
    int rc = layout_epoch(b, 0);
    if (rc) dorac_batcher_free(b);
    return rc;
}

void dorac_batcher_free(dorac_batcher *b) {
    free(b->ids);
    free(b->labels);
    memset(b, 0, sizeof *b);
}

int dorac_batcher_row(dorac_batcher *b, int64_t g, int32_t *ids, int32_t *targets, int64_t *n_targets) {
    int64_t epoch = g / b->rows_per_epoch, r = g % b->rows_per_epoch, T = b->T;
    if (epoch != b->epoch) DORAC_TRY(layout_epoch(b, epoch));
    int64_t count = 0;
    for (int64_t t = 0; t < T; t++) {
        int32_t id, tg;
        if (b->pack) {
            int64_t i = r * T + t;
            id = i < b->stream_len ? b->ids[i] : 0;
            tg = i + 1 < b->stream_len ? b->labels[i + 1] : DORAC_IGNORE_INDEX;
        } else {
            const int32_t *ri = b->ids + r * (T + 1), *rl = b->labels + r * (T + 1);
            id = ri[t];
            tg = rl[t + 1];
        }
        ids[t] = id;
        targets[t] = tg;
        count += tg != DORAC_IGNORE_INDEX;
    }
    *n_targets = count;
    return DORAC_OK;
}
