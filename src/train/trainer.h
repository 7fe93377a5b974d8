/*
** trainer.h — the fine-tuning loop: data, method, AdamW with a schedule,
** gradient accumulation and clipping, evaluation, checkpoints and resume.
**
** Output folder (out):
**   metrics.jsonl        one JSON record per optimizer step: step, loss, lr,
**                        grad_norm, tokens, tokens_per_s, elapsed_s, and
**                        eval_loss on evaluation steps. Rewritten atomically
**                        (at most once a second, at every checkpoint and at
**                        the end), so it is never torn.
**   checkpoint-STEP/     adapter (PEFT files) or, for full fine-tuning,
**                        model.safetensors; optimizer.safetensors;
**                        trainer_state.json (step, data cursor, seed,
**                        learning rate, the run's settings); metrics.jsonl
**                        up to STEP (what a resume continues from). Written as a
**                        whole under a temporary name, then renamed; the
**                        last `keep` are kept.
**   adapter/ | model/    the final adapter (PEFT) or model (HF folder)
**   merged/              with merge_at_end: the merged HF folder
**
** Determinism: every random choice (adapter init, data order, dropout) is a
** function of the seed and a counter, so a run with the same settings and
** thread count repeats bit for bit, and a resumed run continues exactly as
** the uninterrupted one would have (same per-step losses).
**
** Errors: a non-finite loss or gradient norm stops the run with
** DORAC_E_NUMERIC naming the step; checkpoints already written stay intact.
*/
#ifndef DORAC_TRAIN_TRAINER_H
#define DORAC_TRAIN_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "adapter/linear.h"
#include "core/dtype.h"
#include "dist/dist.h"
#include "train/optimizer.h"
#include "train/schedule.h"

typedef struct dorac_train_config {
    /* model and data */
    const char *model_dir;      /* HF folder; NULL with init_random */
    const char *config_path;    /* config.json for init_random */
    const char *tokenizer_dir;  /* folder with tokenizer.json (default: model_dir) */
    bool init_random;           /* train from scratch (method must be FULL) */
    const char *data_path;
    const char *eval_path;      /* may be NULL */
    const char *out_dir;
    const char *device;         /* "cpu", "cuda", "cuda:N" or "auto"/NULL (cuda if present) */
    const dorac_dist_env *dist; /* data parallel: this process's rank and world (NULL: world 1).
                                ** batch_size and grad_accum are per process, as HF's
                                ** per_device_train_batch_size: a step takes
                                ** batch_size * grad_accum * world rows; rank r trains on the
                                ** r-th share of them; only rank 0 writes to out_dir.
                                ** With zero_stage 0 the gradient all-reduce overlaps the
                                ** backward (the same bits) unless the environment has
                                ** DORAC_DIST_OVERLAP=0; another value than 0 or 1 is
                                ** DORAC_E_INVALID. */
    int zero_stage;             /* with a world > 1: 1 shards the AdamW state over the ranks
                                ** (ZeRO-1, train/optimizer.h), 0 keeps all of it on every
                                ** rank; -1 (default): 1 for FULL, 0 for adapters, whose
                                ** state is small. Stages 2 and 3 are not implemented. */
    /* method */
    dorac_method method;        /* LORA, DORA or FULL */
    int rank;
    double alpha;
    bool use_rslora;
    const char *targets;        /* comma list of module names, or "all-linear" */
    double dropout;
    int norm_grad;
    /* optimisation */
    dorac_adamw_config adamw;
    dorac_schedule schedule;
    int64_t warmup;
    int64_t batch_size, grad_accum, seq_len;
    int64_t epochs, steps;      /* steps > 0 overrides epochs */
    uint64_t seed;
    bool pack, truncate, skip_bad_lines;
    /* bookkeeping */
    int64_t eval_every, save_every, keep;
    int64_t eval_batch_size;
    const char *resume;         /* NULL, "auto" or a checkpoint folder */
    bool merge_at_end;
    dorac_dtype save_dtype;     /* dtype of model/ and merged/ weights (F32 default) */
} dorac_train_config;

/* Fills every field with the defaults of the DoRA paper's recipe (DoRA,
** r 16, alpha 32, all-linear, AdamW lr 2e-4, linear schedule, warmup 100
** capped at 10% of the steps, batch 8, seq 512, 3 epochs, ...). */
void dorac_train_config_defaults(dorac_train_config *c);

typedef struct dorac_train_progress {
    int64_t step, total_steps;
    double loss;          /* this step's mean token loss */
    double eval_loss;     /* NAN unless evaluated at this step */
    double lr, grad_norm;
    double tokens_per_s;  /* this step */
    double elapsed_s, eta_s;
    bool checkpointed;    /* a checkpoint was written at this step */
} dorac_train_progress;

typedef struct dorac_train_callbacks {
    void *ctx;
    /* after every optimizer step; return false to stop there (metrics written,
    ** no final save: resume from the last checkpoint) */
    bool (*on_step)(void *ctx, const dorac_train_progress *p);
    /* messages worth showing the user (resumed from, eval loss before training, ...) */
    void (*on_note)(void *ctx, const char *msg);
} dorac_train_callbacks;

typedef struct dorac_train_result {
    int64_t steps_done;
    double first_loss, last_loss;
    double eval_loss_before, eval_loss_after; /* NAN without eval data */
    int64_t tokens_seen;
    double seconds;
    size_t peak_bytes;        /* high-water mark of memory held through the backend */
    size_t optimizer_bytes;   /* AdamW state (m and v) held by this process, bytes */
    const char *device;       /* the backend's name: "cpu" or "cuda" */
} dorac_train_result;

int dorac_train(const dorac_train_config *cfg, const dorac_train_callbacks *cb, dorac_train_result *res);

/* The newest complete checkpoint folder under out_dir ("checkpoint-N" with
** the largest N and a trainer_state.json) into path; DORAC_E_IO if none. */
int dorac_find_latest_checkpoint(const char *out_dir, char *path, size_t cap);

#endif
