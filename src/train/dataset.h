/*
** dataset.h — training and evaluation data: JSONL (or plain text) into
** token sequences with per-token labels.
**
** Each JSONL line is one JSON object of one of these forms:
**   {"text": S}                      language modelling: every token is a label
**   {"prompt": P, "completion": C}   loss on the completion only
**   {"messages": [{"role", "content"}, ...]}
**                                    chat; loss on assistant turns only
**   {"input_ids": [...], "labels": [...]}  pre-tokenized; labels optional
**                                    (default: the ids), -100 = no loss
** A .txt file is split into paragraphs at blank lines, each one {"text"}.
**
** Labels follow Hugging Face: labels[t] is the label of token t, and the
** loss at position t predicts labels[t+1] (the batcher shifts). So an
** example contributes n-1 predictions at most.
**
** Special tokens. With add_special, text is encoded with the tokenizer's
** post-processor (BOS/EOS as tokenizer.json and tokenizer_config.json
** declare). prompt/completion: ids = encode(P, add_special's BOS side) ++
** encode(C) ++ [EOS]; labels are -100 over the prompt. The default chat
** format renders every message as
**     "<|" role "|>\n" content "\n"
** in plain text (the markers are ordinary tokens), preceded by BOS when the
** tokenizer has one, with EOS appended after each assistant content; labels
** cover each assistant content and its EOS, nothing else.
**
** Errors name the file, the line and the reason ("data.jsonl:12: 'labels'
** has 7 entries, 'input_ids' has 8"). With skip_bad_lines a bad line is
** counted in n_skipped instead.
*/
#ifndef DORAC_TRAIN_DATASET_H
#define DORAC_TRAIN_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct dorac_example {
    int32_t *ids;    /* (n) token ids */
    int32_t *labels; /* (n) label per token, DORAC_IGNORE_INDEX = none */
    int64_t n;
    int64_t line;    /* 1-based line (JSONL) or paragraph start line (.txt) */
} dorac_example;

typedef struct dorac_dataset_options {
    const dorac_tokenizer *tok; /* needed for text, prompt/completion, messages; may be NULL */
    int64_t vocab_size;         /* ids must be < this (0: not checked here) */
    bool add_special;           /* BOS/EOS per the tokenizer (default formats) */
    bool skip_bad_lines;        /* count malformed lines instead of failing */
} dorac_dataset_options;

typedef struct dorac_dataset {
    dorac_example *ex;
    size_t n, cap;
    size_t n_skipped;   /* lines skipped with skip_bad_lines */
    int64_t n_tokens;   /* total tokens */
    int64_t n_labels;   /* total tokens with a label */
} dorac_dataset;

/* Reads path (JSONL, or .txt by extension) into ds, which is zeroed first.
** On failure ds holds nothing to free. Empty lines are ignored; a file with
** no examples is an error. */
int dorac_dataset_load(dorac_dataset *ds, const char *path, const dorac_dataset_options *opt);

/* Parses one JSONL line (len bytes) into ex; `where` ("file:line") prefixes
** messages. Exposed for tests and fuzzing. */
int dorac_example_parse(dorac_example *ex, const char *line, size_t len,
                        const dorac_dataset_options *opt, const char *where);

/* Cuts every example longer than max_len tokens to its first max_len;
** returns how many were cut (n_tokens and n_labels are updated). */
size_t dorac_dataset_truncate(dorac_dataset *ds, int64_t max_len);

void dorac_example_free(dorac_example *ex);
void dorac_dataset_free(dorac_dataset *ds);

#endif
