/*
** metrics.h — reading a training run's metrics.jsonl back.
**
** The trainer (trainer.h) writes one JSON object per optimizer step:
** {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s",
** "elapsed_s"[, "eval_loss"]}. This reader accepts any JSONL whose records
** have an integer "step" >= 0 and a numeric "loss"; the other fields are
** optional, and unknown fields are ignored, so files written by other tools
** in the same shape load too.
**
** Damage rules. The trainer rewrites the file atomically, but a file
** copied while another tool appended to it, or written by such a tool, can
** end in a torn record. So:
**   - a LAST line that does not end in a newline and does not parse as JSON
**     is a torn write: it is skipped, and torn_tail says so;
**   - blank lines are skipped;
**   - any other bad line (bad JSON, not an object, a missing or mistyped
**     field) is DORAC_E_FORMAT naming "file:line" and the reason.
** Records are returned sorted by step (stable: records of equal step keep
** their file order).
*/
#ifndef DORAC_TRAIN_METRICS_H
#define DORAC_TRAIN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest metrics file read: a record is ~200 bytes, so this is millions of steps. */
#define DORAC_METRICS_MAX_BYTES ((size_t)1 << 30)

typedef struct dorac_metrics_record {
    int64_t step;         /* optimizer step, >= 0 */
    double loss;          /* mean train token loss of the step, finite */
    double lr;            /* learning rate used; NAN when absent */
    double grad_norm;     /* global gradient norm before clipping; NAN when absent */
    double tokens_per_s;  /* NAN when absent */
    double eval_loss;     /* NAN unless evaluated at this step */
    size_t line;          /* 1-based line number in the file */
} dorac_metrics_record;

typedef struct dorac_metrics {
    dorac_metrics_record *records; /* n records sorted by step; owned */
    size_t n;
    size_t n_eval;                 /* records with a finite eval_loss */
    bool torn_tail;                /* a torn last line was skipped */
} dorac_metrics;

/* Parses n bytes of JSONL; name is the file name used in messages. *m is
** zeroed first and holds nothing to free on failure. Zero records (an empty
** file) is DORAC_E_FORMAT: there is nothing to plot. */
int dorac_metrics_parse(dorac_metrics *m, const char *text, size_t n, const char *name);

/* Reads path (at most DORAC_METRICS_MAX_BYTES) and parses it. */
int dorac_metrics_load(dorac_metrics *m, const char *path);

/* Frees what m owns and zeroes it. m may be NULL. */
void dorac_metrics_free(dorac_metrics *m);

#endif
