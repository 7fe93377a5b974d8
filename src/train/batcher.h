/*
** batcher.h — rows of token ids and next-token targets, in a deterministic
** order that a resumed run can reproduce from a single counter.
**
** Each epoch the examples are shuffled by a permutation that is a pure
** function of (seed, epoch). Then, with packing (the default), their ids
** and labels are concatenated into one stream and cut into rows of T:
**     ids[t] = stream[r*T + t],  target[t] = label_stream[r*T + t + 1]
** so every token but the stream's first is predicted once, and attention
** runs across document boundaries inside a row (as in llm.c and HF's
** group_texts: the model sees the previous document as context; the first
** token of each document carries the tokenizer's BOS when add_special).
** Without packing, each example gets rows of its own, right-padded (no
** attention to padding is possible: attention is causal and padding comes
** last), and an example longer than T+1 tokens is split into consecutive
** rows (long = split, the default) or cut to its first T+1 (truncate).
**
** Rows are numbered globally: row g is row g mod R of epoch g / R, where R
** rows make one epoch. A step takes the next batch*accum rows; the cursor
** (the next g) is all a checkpoint needs to store.
*/
#ifndef DORAC_TRAIN_BATCHER_H
#define DORAC_TRAIN_BATCHER_H

#include <stdbool.h>
#include <stdint.h>

#include "train/dataset.h"

typedef struct dorac_batcher {
    const dorac_dataset *ds;
    int64_t T;
    bool pack, truncate;
    uint64_t seed;
    int64_t rows_per_epoch;     /* R */
    /* the epoch currently laid out */
    int64_t epoch;
    int32_t *ids, *labels;      /* packed: the stream; else rows (R, T+1) */
    int64_t stream_len;
} dorac_batcher;

int dorac_batcher_init(dorac_batcher *b, const dorac_dataset *ds, int64_t T, bool pack, bool truncate,
                       uint64_t seed);
void dorac_batcher_free(dorac_batcher *b);

/* Row g into ids (T) and targets (T); returns the number of targets that are
** not DORAC_IGNORE_INDEX. */
int dorac_batcher_row(dorac_batcher *b, int64_t g, int32_t *ids, int32_t *targets, int64_t *n_targets);

#endif
