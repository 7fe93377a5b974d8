/*
** trainer.c — the fine-tuning loop (contract in trainer.h).
**
** One optimizer step: take the next batch*accum rows from the batcher,
** count their targets (the step's loss is the mean over all of them, so
** accumulation gives exactly the large-batch gradient), run accum forward/
** backward passes with grad_scale = 1 / targets, compute the global
** gradient norm, stop on a non-finite loss or norm, clip, step AdamW at the
** scheduled learning rate, zero the gradients.
**
** Data parallel (cfg->dist with world W > 1): a step takes W times the
** rows; rank r trains on rows [r*R, (r+1)*R) of them (R = batch * accum),
** the target count and the loss are summed over ranks first, so grad_scale
** is 1 / (all targets of the step) on every rank, and after the backward
** passes the trainable gradients are summed over ranks (dist.h). Every
** rank then holds the single-process gradient of the whole step (up to
** the order of additions) and takes the same optimizer step. Rank 0 alone
** writes metrics, checkpoints and the final adapter or model; every rank
** reads the same checkpoint to resume. With adapter dropout, each rank
** draws its own masks, so runs of different world sizes differ there.
**
** Overlap (replicated state, world > 1, unless rank 0 has DORAC_DIST_OVERLAP=0): the
** gradient all-reduce runs beside the backward. The last micro-batch's
** backward hands each block's gradients over as they become final
** (dorac_model_backward_ex); they are gathered into buckets of at least
** OVERLAP_BUCKET elements in the order handed over, each bucket's
** all_reduce_start goes out at once, and the step waits for them all
** before the gradient norm. The sums are all_reduce_sum's (dist.h), so a
** run is bit for bit the same with the overlap on or off. Earlier
** micro-batches only accumulate: their gradients are not final.
**
** ZeRO-1 (zero_stage 1, the default for full fine-tuning): the optimizer
** keeps each rank's shard of the AdamW state only; the gradients are
** reduced to their owners instead of to all, the clipping norm is summed
** over the shards, and the updated parameters are gathered from their
** owners (train/optimizer.h). Saving a checkpoint is then collective:
** every rank sends its shard to rank 0, which writes the whole state in the
** unsharded format, so any world size can resume it. Its reduce-scatter
** stays after the backward, not overlapped.
*/
#define _POSIX_C_SOURCE 200809L /* clock_gettime, strdup */
#include "train/trainer.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/rng.h"
#include "dist/dist.h"
#include "io/atomic_file.h"
#include "io/fsutil.h"
#include "io/hf_config.h"
#include "train/batcher.h"
#include "train/dataset.h"
#include "train/evaluate.h"

void dorac_train_config_defaults(dorac_train_config *c) {
    memset(c, 0, sizeof *c);
    c->method = DORAC_METHOD_DORA;
    c->rank = 16;
    c->alpha = 32;
    c->targets = "all-linear";
    c->norm_grad = DORAC_NORM_GRAD_DETACH;
    c->adamw = (dorac_adamw_config){.lr = 2e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                                    .weight_decay = 0.0, .max_grad_norm = 1.0};
    c->schedule = DORAC_SCHEDULE_LINEAR;
    c->warmup = -1; /* -1: min(100, 10% of the steps) */
    c->batch_size = 8;
    c->grad_accum = 1;
    c->seq_len = 512;
    c->epochs = 3;
    c->seed = 42;
    c->pack = true;
    c->keep = 2;
    c->eval_batch_size = 8;
    c->save_dtype = DORAC_DTYPE_F32;
    c->zero_stage = -1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void note(const dorac_train_callbacks *cb, const char *fmt, ...) DORAC_PRINTF(2, 3);
static void note(const dorac_train_callbacks *cb, const char *fmt, ...) {
    if (!cb || !cb->on_note) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cb->on_note(cb->ctx, buf);
}

/* ---------------------------------------------------------------------- */
/* targets                                                                */
/* ---------------------------------------------------------------------- */

typedef struct target_spec {
    const dorac_train_config *cfg;
    char names[32][64];
    int n;
    bool all_linear;
} target_spec;

static int target_spec_parse(target_spec *t, const dorac_train_config *cfg) {
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    if (!strcmp(cfg->targets, "all-linear")) {
        t->all_linear = true;
        return DORAC_OK;
    }
    const char *p = cfg->targets;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len >= sizeof t->names[0] || t->n == 32)
            return dorac_error(DORAC_E_INVALID, "--targets: bad entry in '%s'", cfg->targets);
        memcpy(t->names[t->n], p, len);
        t->names[t->n++][len] = '\0';
        p = e ? e + 1 : p + len;
    }
    return t->n ? DORAC_OK : dorac_error(DORAC_E_INVALID, "--targets is empty");
}

/* PEFT's matching: a short name matches the module's last component; a
** dotted entry matches a path suffix. "all-linear" is every linear but lm_head. */
static bool select_target(void *ctx, const char *path, const char *short_name, dorac_adapter_config *c) {
    target_spec *t = ctx;
    bool hit = t->all_linear && strcmp(short_name, "lm_head");
    for (int i = 0; !hit && i < t->n; i++) {
        size_t pl = strlen(path), nl = strlen(t->names[i]);
        hit = !strcmp(path, t->names[i]) || (pl > nl && path[pl - nl - 1] == '.' && !strcmp(path + pl - nl, t->names[i]));
    }
    if (!hit) return false;
    c->rank = t->cfg->rank;
    c->alpha = t->cfg->alpha;
    c->use_rslora = t->cfg->use_rslora;
    c->dropout = t->cfg->dropout;
    c->norm_grad = t->cfg->norm_grad;
    return true;
}

/* ---------------------------------------------------------------------- */
/* metrics                                                                */
/* ---------------------------------------------------------------------- */

typedef struct metrics {
    char **lines;
    size_t n, cap;
    double last_write;
} metrics;

static int metrics_add(metrics *m, const char *line) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        char **l = realloc(m->lines, cap * sizeof *l);
        if (!l) return dorac_error(DORAC_E_NOMEM, "metrics: out of memory");
        m->lines = l, m->cap = cap;
    }
    m->lines[m->n] = strdup(line);
    if (!m->lines[m->n]) return dorac_error(DORAC_E_NOMEM, "metrics: out of memory");
    m->n++;
    return DORAC_OK;
}

/* Writes every record to dir/metrics.jsonl, atomically. */
static int metrics_write(metrics *m, const char *dir) {
    size_t total = 1;
    for (size_t i = 0; i < m->n; i++) total += strlen(m->lines[i]) + 1;
    char *buf = malloc(total), *p = buf;
    if (!buf) return dorac_error(DORAC_E_NOMEM, "metrics: out of memory");
    for (size_t i = 0; i < m->n; i++) p += sprintf(p, "%s\n", m->lines[i]);
    char path[4400];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    int rc = dorac_atomic_write(path, buf, (size_t)(p - buf));
    free(buf);
    m->last_write = now_s();
    return rc;
}

static void metrics_free(metrics *m) {
    for (size_t i = 0; i < m->n; i++) free(m->lines[i]);
    free(m->lines);
    memset(m, 0, sizeof *m);
}

/* Keeps the records of steps <= step from dir/metrics.jsonl (resume). */
static int metrics_load(metrics *m, const char *dir, int64_t step) {
    char path[4400];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return DORAC_OK;
    char line[4096];
    int rc = DORAC_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        json_t *j = json_loads(line, 0, NULL);
        json_t *s = j ? json_object_get(j, "step") : NULL;
        if (json_is_integer(s) && json_integer_value(s) <= step) rc = metrics_add(m, line);
        json_decref(j);
    }
    fclose(f);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* checkpoints                                                            */
/* ---------------------------------------------------------------------- */

static int64_t checkpoint_step(const char *name) {
    if (strncmp(name, "checkpoint-", 11) != 0) return -1;
    char *end;
    long long s = strtoll(name + 11, &end, 10);
    return (*end || s < 0 || end == name + 11) ? -1 : s;
}

int dorac_find_latest_checkpoint(const char *out_dir, char *path, size_t cap) {
    DIR *d = opendir(out_dir);
    if (!d) return dorac_error(DORAC_E_IO, "%s: cannot open the output folder to resume", out_dir);
    int64_t best = -1;
    struct dirent *e;
    char state[4400];
    while ((e = readdir(d))) {
        int64_t s = checkpoint_step(e->d_name);
        if (s <= best) continue;
        snprintf(state, sizeof state, "%s/%s/trainer_state.json", out_dir, e->d_name);
        if (dorac_is_file(state)) best = s;
    }
    closedir(d);
    if (best < 0) return dorac_error(DORAC_E_IO, "%s: no complete checkpoint to resume from", out_dir);
    snprintf(path, cap, "%s/checkpoint-%lld", out_dir, (long long)best);
    return DORAC_OK;
}

/* Removes all but the newest `keep` checkpoints. */
static void prune_checkpoints(const char *out_dir, int64_t keep) {
    if (keep <= 0) return;
    DIR *d = opendir(out_dir);
    if (!d) return;
    int64_t steps[4096];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        int64_t s = checkpoint_step(e->d_name);
        if (s >= 0) steps[n++] = s;
    }
    closedir(d);
    for (size_t i = 0; i < n; i++) {
        size_t newer = 0;
        for (size_t j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer < (size_t)keep) continue;
        char dir[4200], tmp[4300];
        snprintf(dir, sizeof dir, "%s/checkpoint-%lld", out_dir, (long long)steps[i]);
        /* rename to a temp name first, so a half-deleted folder never looks complete */
        snprintf(tmp, sizeof tmp, "%s/.checkpoint-%lld.tmp-prune", out_dir, (long long)steps[i]);
        if (rename(dir, tmp) == 0) dorac_atomic_dir_abort(tmp);
    }
}

typedef struct run_state {
    int64_t step;        /* optimizer steps done */
    int64_t cursor;      /* next global row */
    int64_t tokens_seen;
} run_state;

static int write_state(const char *dir, const dorac_train_config *c, const run_state *s, int64_t total_steps,
                       double lr) {
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:s, s:s, s:i, s:f, s:I, s:I, s:I, s:s, s:s}",
                          "step", (json_int_t)s->step, "data_cursor", (json_int_t)s->cursor, "tokens_seen",
                          (json_int_t)s->tokens_seen, "total_steps", (json_int_t)total_steps, "seed",
                          (json_int_t)c->seed, "learning_rate", lr, "schedule", dorac_schedule_name(c->schedule),
                          "method", dorac_method_name(c->method), "rank", c->rank, "alpha", c->alpha,
                          "batch_size", (json_int_t)c->batch_size, "grad_accum", (json_int_t)c->grad_accum,
                          "seq_len", (json_int_t)c->seq_len, "rng", "counter-based: (seed, step) determines every draw",
                          "data", c->data_path);
    if (!j) return dorac_error(DORAC_E_NOMEM, "trainer_state: out of memory");
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    if (!text) return dorac_error(DORAC_E_NOMEM, "trainer_state: out of memory");
    char path[4400];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    int rc = dorac_atomic_write(path, text, strlen(text));
    free(text);
    return rc;
}

static int read_state(const char *dir, run_state *s, uint64_t *seed) {
    char path[4400];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) return dorac_error(DORAC_E_FORMAT, "%s: %s", path, e.text);
    json_t *step = json_object_get(j, "step"), *cur = json_object_get(j, "data_cursor");
    json_t *tok = json_object_get(j, "tokens_seen"), *sd = json_object_get(j, "seed");
    int rc = DORAC_OK;
    if (!json_is_integer(step) || !json_is_integer(cur) || !json_is_integer(tok) || !json_is_integer(sd) ||
        json_integer_value(step) < 0 || json_integer_value(cur) < 0)
        rc = dorac_error(DORAC_E_FORMAT, "%s: step, data_cursor, tokens_seen and seed must be integers", path);
    else {
        s->step = json_integer_value(step);
        s->cursor = json_integer_value(cur);
        s->tokens_seen = json_integer_value(tok);
        *seed = (uint64_t)json_integer_value(sd);
    }
    json_decref(j);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* the gradient all-reduce overlapped with the backward                   */
/* ---------------------------------------------------------------------- */

/* A bucket's all-reduce starts once it holds this many elements (64 KiB of
** fp32): a block of LoRA/DoRA gradients at a small rank fills one, and
** tiny tensors (norms, biases) ride along with the next block's. */
#define OVERLAP_BUCKET ((size_t)1 << 14)

typedef struct grad_overlap {
    dorac_dist *dist;             /* NULL: overlap off */
    dorac_backend *be;
    const dorac_tensor **bucket;  /* (cap) handed over, not yet started */
    size_t n, cap;                /* cap: the trainable tensors, all of which may wait here */
    size_t elems;                 /* elements in the bucket */
    size_t handed;                /* gradients handed over in this backward */
} grad_overlap;

/* DORAC_DIST_OVERLAP: unset or "1" on, "0" off. */
static int overlap_wanted(bool *on) {
    const char *s = getenv("DORAC_DIST_OVERLAP");
    *on = !s || !strcmp(s, "1");
    if (s && strcmp(s, "0") && strcmp(s, "1"))
        return dorac_error(DORAC_E_INVALID, "DORAC_DIST_OVERLAP='%s' must be 0 or 1", s);
    return DORAC_OK;
}

static int overlap_flush(grad_overlap *o) {
    int rc = o->n ? o->dist->all_reduce_start(o->dist, o->be, o->bucket, o->n) : DORAC_OK;
    o->n = o->elems = 0;
    return rc;
}

/* dorac_grads_ready_fn: adds the gradients to the bucket, starting its
** all-reduce once it is full. */
static int overlap_ready(void *ctx, const dorac_tensor *const *grads, size_t n) {
    grad_overlap *o = ctx;
    for (size_t i = 0; i < n; i++) {
        if (o->handed == o->cap)
            return dorac_error(DORAC_E_INVALID, "train: the backward handed over more than the %zu trainable gradients",
                               o->cap);
        o->bucket[o->n++] = grads[i];
        o->elems += (size_t)grads[i]->rows * (size_t)grads[i]->cols;
        o->handed++;
    }
    return o->elems >= OVERLAP_BUCKET ? overlap_flush(o) : DORAC_OK;
}

/* After the hooked backward: starts the last bucket and waits for every
** sum. Every trainable gradient must have been handed over. */
static int overlap_finish(grad_overlap *o) {
    int rc = overlap_flush(o);
    int wrc = o->dist->all_reduce_wait(o->dist);
    if (!rc) rc = wrc;
    if (!rc && o->handed != o->cap)
        rc = dorac_error(DORAC_E_INVALID, "train: the backward handed over %zu of the %zu trainable gradients",
                         o->handed, o->cap);
    return rc;
}

typedef struct trainer {
    const dorac_train_config *cfg;
    const dorac_train_callbacks *cb;
    dorac_backend *be;
    dorac_model *model;
    dorac_tokenizer *tok;
    dorac_dataset train, eval;
    bool have_eval;
    dorac_batcher batcher;
    dorac_optimizer opt;
    metrics met;
    dorac_dist *dist;     /* world 1: the "single" no-op implementation */
    grad_overlap overlap; /* overlap.dist NULL: the all-reduce follows the backward */
    run_state st;
    int64_t total_steps, warmup;
    const char *weights_src; /* folder whose config/tokenizer files go with saved weights */
} trainer;

static bool is_writer(const trainer *t) { return t->dist->rank == 0; }

/* Full fine-tuning's weights as an HF folder's files, into an existing dir:
** the weights, plus config.json and the tokenizer files from the source
** model folder, or (init_random) from --config and --tokenizer. */
static int write_full_model(trainer *t, const char *dir, dorac_dtype dtype) {
    const dorac_train_config *c = t->cfg;
    DORAC_TRY(dorac_model_write(t->model, dir, dtype, t->weights_src, (size_t)5000 * 1000 * 1000));
    if (t->weights_src) return DORAC_OK;
    char dst[4400], src[4400];
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    DORAC_TRY(dorac_atomic_copy_file(c->config_path, dst));
    const char *tok_files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; c->tokenizer_dir && i < sizeof tok_files / sizeof tok_files[0]; i++) {
        snprintf(src, sizeof src, "%s/%s", c->tokenizer_dir, tok_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, tok_files[i]);
        if (dorac_is_file(src)) DORAC_TRY(dorac_atomic_copy_file(src, dst));
    }
    return DORAC_OK;
}

/* Called on every rank; rank 0 alone writes. The optimizer state goes
** first: with ZeRO-1 every rank sends its shard to rank 0 there, and rank 0
** takes part even when it could not start the folder, so that no rank is
** left waiting. */
static int save_checkpoint(trainer *t, double lr) {
    const dorac_train_config *c = t->cfg;
    char final[4200], tmp[4200], path[4400];
    bool writer = is_writer(t);
    snprintf(final, sizeof final, "%s/checkpoint-%lld", c->out_dir, (long long)t->st.step);
    int begun = writer ? dorac_atomic_dir_begin(tmp, sizeof tmp, final) : DORAC_E_INVALID;
    if (begun == DORAC_OK) snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    int rc = dorac_optimizer_save(&t->opt, begun == DORAC_OK ? path : NULL);
    if (!writer) return rc;
    if (begun != DORAC_OK) return begun;
    if (!rc) rc = c->method == DORAC_METHOD_FULL ? write_full_model(t, tmp, DORAC_DTYPE_F32)
                                                 : dorac_model_write_adapter(t->model, tmp, c->model_dir);
    if (!rc) rc = write_state(tmp, c, &t->st, t->total_steps, lr);
    if (!rc) rc = metrics_write(&t->met, tmp); /* the history up to this step travels with it */
    if (!rc) rc = dorac_atomic_dir_commit(tmp, final);
    else dorac_atomic_dir_abort(tmp);
    if (!rc) rc = metrics_write(&t->met, c->out_dir);
    if (!rc) prune_checkpoints(c->out_dir, c->keep);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* setup                                                                  */
/* ---------------------------------------------------------------------- */

static int check_config(const dorac_train_config *c) {
    if (!c->data_path || !c->out_dir) return dorac_error(DORAC_E_INVALID, "train: --data and --out are required");
    if (c->init_random ? !c->config_path : !c->model_dir)
        return dorac_error(DORAC_E_INVALID, c->init_random ? "train: --init random needs --config FILE"
                                                           : "train: --model is required");
    if (c->init_random && c->method != DORAC_METHOD_FULL)
        return dorac_error(DORAC_E_INVALID, "train: --init random trains every weight, so it needs --method full");
    if (c->method != DORAC_METHOD_FULL && c->method != DORAC_METHOD_LORA && c->method != DORAC_METHOD_DORA)
        return dorac_error(DORAC_E_INVALID, "train: method must be dora, lora or full");
    if (c->batch_size < 1 || c->grad_accum < 1 || c->seq_len < 1 || c->batch_size * c->grad_accum > (1 << 20))
        return dorac_error(DORAC_E_INVALID, "train: batch size, grad accumulation and sequence length must be positive");
    if (c->steps <= 0 && c->epochs <= 0) return dorac_error(DORAC_E_INVALID, "train: give --steps or --epochs");
    if (!(c->adamw.lr > 0) || !(c->adamw.beta1 >= 0 && c->adamw.beta1 < 1) || !(c->adamw.beta2 >= 0 && c->adamw.beta2 < 1) ||
        !(c->adamw.eps > 0) || !(c->adamw.weight_decay >= 0))
        return dorac_error(DORAC_E_INVALID, "train: lr and eps must be positive, betas in [0, 1), weight decay >= 0");
    if (c->keep < 0 || c->eval_every < 0 || c->save_every < 0)
        return dorac_error(DORAC_E_INVALID, "train: --keep, --eval-every and --save-every must be >= 0");
    if (c->zero_stage < -1 || c->zero_stage > 1)
        return dorac_error(DORAC_E_UNSUPPORTED,
                           "train: --zero %d is not supported: 0 (every rank keeps the whole optimizer state) or "
                           "1 (ZeRO-1, sharded AdamW state); stages 2 and 3 are not implemented", c->zero_stage);
    return DORAC_OK;
}

/* The model. Full fine-tuning from files gets its shape here and its
** weights in attach_method, after the method: where the backend keeps
** frozen weights narrower (CUDA: BF16), the method gives every weight an
** F32 master copy, and an F32 checkpoint's values must land there, not pass
** through BF16 first. */
static int load_model(trainer *t) {
    const dorac_train_config *c = t->cfg;
    if (!c->init_random) t->weights_src = c->model_dir;
    if (!c->init_random && c->method != DORAC_METHOD_FULL) return dorac_model_load(&t->model, t->be, c->model_dir);
    const char *config = c->init_random ? c->config_path : c->model_dir;
    dorac_hf_config hc;
    DORAC_TRY(dorac_hf_config_load(&hc, config));
    dorac_model_config mc;
    DORAC_TRY(dorac_model_config_from_hf(&mc, &hc, config));
    DORAC_TRY(dorac_model_create(&t->model, t->be, &mc));
    return c->init_random ? dorac_model_init_random(t->model, c->seed) : DORAC_OK;
}

static int load_tokenizer(trainer *t) {
    const char *dir = t->cfg->tokenizer_dir ? t->cfg->tokenizer_dir : t->cfg->model_dir;
    if (!dir) return DORAC_OK;
    char tj[4200], tc[4200];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", dir);
    if (!dorac_is_file(tj)) return DORAC_OK; /* pre-tokenized data still works */
    return dorac_tokenizer_load(&t->tok, tj, dorac_is_file(tc) ? tc : NULL);
}

static int load_data(trainer *t) {
    const dorac_train_config *c = t->cfg;
    dorac_dataset_options o = {.tok = t->tok, .vocab_size = dorac_model_get_config(t->model)->vocab_size,
                               .add_special = true, .skip_bad_lines = c->skip_bad_lines};
    DORAC_TRY(dorac_dataset_load(&t->train, c->data_path, &o));
    if (t->train.n_skipped) note(t->cb, "skipped %zu malformed lines of %s", t->train.n_skipped, c->data_path);
    if (c->eval_path) {
        DORAC_TRY(dorac_dataset_load(&t->eval, c->eval_path, &o));
        t->have_eval = true;
        size_t cut = dorac_dataset_truncate(&t->eval, c->seq_len); /* evaluate at the training length */
        if (cut) note(t->cb, "%zu eval sequences longer than --seq-len %lld are cut to it", cut, (long long)c->seq_len);
    }
    return dorac_batcher_init(&t->batcher, &t->train, c->seq_len, c->pack, c->truncate, c->seed);
}

static int resume(trainer *t, const char *dir) {
    const dorac_train_config *c = t->cfg;
    uint64_t seed = 0;
    DORAC_TRY(read_state(dir, &t->st, &seed));
    if (seed != c->seed)
        return dorac_error(DORAC_E_INVALID, "%s: the checkpoint was made with --seed %llu, this run has %llu", dir,
                           (unsigned long long)seed, (unsigned long long)c->seed);
    char path[4300];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    DORAC_TRY(dorac_optimizer_load(&t->opt, path));
    if (t->opt.step != t->st.step)
        return dorac_error(DORAC_E_FORMAT, "%s: optimizer step %lld does not match trainer step %lld", dir,
                           (long long)t->opt.step, (long long)t->st.step);
    /* the checkpoint's own copy of the metrics: out_dir's may be older if the
    ** run died between committing the checkpoint and rewriting it */
    return metrics_load(&t->met, dir, t->st.step);
}

/* Sets the method, or for a resume restores the adapter / weights first. */
static int attach_method(trainer *t, const char *resume_dir) {
    const dorac_train_config *c = t->cfg;
    if (c->method == DORAC_METHOD_FULL) {
        /* the method first, then the weights into its F32 masters (load_model) */
        DORAC_TRY(dorac_model_set_method(t->model, DORAC_METHOD_FULL, NULL, NULL, c->seed));
        const char *from = resume_dir ? resume_dir : t->weights_src; /* NULL: --init random */
        return from ? dorac_model_load_weights(t->model, from) : DORAC_OK;
    }
    if (resume_dir) {
        DORAC_TRY(dorac_model_load_adapter(t->model, resume_dir));
        if (dorac_model_method(t->model) != c->method)
            return dorac_error(DORAC_E_INVALID, "%s: the checkpoint holds a %s adapter, this run asks for %s", resume_dir,
                               dorac_method_name(dorac_model_method(t->model)), dorac_method_name(c->method));
        return DORAC_OK;
    }
    target_spec ts;
    DORAC_TRY(target_spec_parse(&ts, c));
    return dorac_model_set_method(t->model, c->method, select_target, &ts, c->seed);
}

/* The dist closes first: on a failure mid-step, NCCL reductions started on
** the communication stream may still be writing the gradients, and closing
** ends them before the model's memory is released. */
static void trainer_free(trainer *t) {
    dorac_dist_close(t->dist);
    metrics_free(&t->met);
    free(t->overlap.bucket);
    dorac_optimizer_free(&t->opt);
    dorac_batcher_free(&t->batcher);
    dorac_dataset_free(&t->train);
    if (t->have_eval) dorac_dataset_free(&t->eval);
    dorac_tokenizer_free(t->tok);
    dorac_model_free(t->model);
    dorac_backend_destroy(t->be);
}

/* Collective: rank 0 notes the AdamW state each rank holds, e.g.
**   optimizer state (ZeRO-1, sharded): bytes per rank 21901312 21903360 of 43804672
** so that the sharding can be seen (and is checked by the tests). */
static int note_optimizer_bytes(trainer *t) {
    int W = t->dist->world;
    double *bytes = calloc((size_t)W, sizeof *bytes);
    if (!bytes) return dorac_error(DORAC_E_NOMEM, "train: out of memory");
    bytes[t->dist->rank] = (double)t->opt.state_bytes;
    int rc = t->dist->all_reduce_host(t->dist, bytes, (size_t)W);
    if (!rc && is_writer(t)) {
        char line[1024];
        size_t len = (size_t)snprintf(line, sizeof line, "optimizer state (%s): bytes per rank",
                                      t->opt.sharded ? "ZeRO-1, sharded" : "replicated");
        double total = 0;
        for (int r = 0; r < W; r++) {
            total += bytes[r];
            if (len < sizeof line - 64) len += (size_t)snprintf(line + len, sizeof line - len, " %.0f", bytes[r]);
            else if (r == W - 1) len += (size_t)snprintf(line + len, sizeof line - len, " ...");
        }
        if (!t->opt.sharded) total = bytes[0]; /* each holds all of it */
        snprintf(line + len, sizeof line - len, " of %.0f", total);
        note(t->cb, "%s", line);
    }
    free(bytes);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* the loop                                                               */
/* ---------------------------------------------------------------------- */

/* One optimizer step; fills loss, tokens and grad_norm. */
static int train_step(trainer *t, int32_t *ids, int32_t *tg, double lr, double *loss, int64_t *tokens,
                      double *grad_norm) {
    const dorac_train_config *c = t->cfg;
    dorac_dist *d = t->dist;
    int64_t B = c->batch_size, T = c->seq_len, accum = c->grad_accum, rows = B * accum;
    int64_t first = t->st.cursor + (int64_t)d->rank * rows; /* this rank's share of the step */
    int64_t count = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t n;
        DORAC_TRY(dorac_batcher_row(&t->batcher, first + r, ids + r * T, tg + r * T, &n));
        count += n;
    }
    double global_count = (double)count;
    DORAC_TRY(d->all_reduce_host(d, &global_count, 1));
    double sum = 0;
    uint64_t seed = dorac_mix64(c->seed ^ dorac_mix64((uint64_t)t->st.step + 1));
    grad_overlap *o = &t->overlap;
    bool overlapped = false; /* the gradients' all-reduce was started by the backward */
    o->n = o->elems = o->handed = 0;
    for (int64_t a = 0; a < accum && global_count > 0; a++) {
        dorac_batch b = {ids + a * B * T, tg + a * B * T, B, T};
        dorac_forward_result r;
        uint64_t mb = (uint64_t)a + (uint64_t)d->rank * (uint64_t)accum; /* rank 0: as a single process */
        DORAC_TRY(dorac_model_forward(t->model, &b, true, 1.0 / global_count, dorac_mix64(seed + mb), &r, NULL));
        /* a non-finite loss is caught below, after the sum over ranks, so
        ** that every rank stops at the same step */
        if (o->dist && a == accum - 1) { /* the gradients become final in this pass */
            DORAC_TRY(dorac_model_backward_ex(t->model, overlap_ready, o));
            overlapped = true;
        } else {
            DORAC_TRY(dorac_model_backward(t->model));
        }
        sum += r.loss_sum;
    }
    if (overlapped) DORAC_TRY(overlap_finish(o));
    if (d->world > 1) DORAC_TRY(d->all_reduce_host(d, &sum, 1));
    /* to every rank, or with ZeRO-1 to each owner */
    if (!overlapped) DORAC_TRY(dorac_optimizer_sync_grads(&t->opt));
    if (!isfinite(sum))
        return dorac_error(DORAC_E_NUMERIC, "non-finite loss at step %lld", (long long)t->st.step + 1);
    count = (int64_t)global_count;
    rows *= d->world;
    DORAC_TRY(dorac_optimizer_grad_norm(&t->opt, grad_norm)); /* the same on every rank */
    if (!isfinite(*grad_norm))
        return dorac_error(DORAC_E_NUMERIC, "non-finite gradient norm at step %lld", (long long)t->st.step + 1);
    if (count > 0) DORAC_TRY(dorac_optimizer_step(&t->opt, &c->adamw, lr, *grad_norm));
    else t->opt.step++;
    DORAC_TRY(dorac_model_zero_grad(t->model));
    t->st.cursor += rows;
    t->st.step++;
    t->st.tokens_seen += count;
    *loss = count ? sum / (double)count : NAN;
    *tokens = count;
    return DORAC_OK;
}

static int run_loop(trainer *t, dorac_train_result *res) {
    const dorac_train_config *c = t->cfg;
    int64_t rows = c->batch_size * c->grad_accum, T = c->seq_len;
    int32_t *ids = malloc((size_t)(rows * T) * sizeof *ids), *tg = malloc((size_t)(rows * T) * sizeof *tg);
    if (!ids || !tg) {
        free(ids), free(tg);
        return dorac_error(DORAC_E_NOMEM, "train: out of memory for the batch");
    }
    double t0 = now_s();
    int64_t steps_here = 0;
    int rc = DORAC_OK;
    res->first_loss = NAN;
    while (!rc && t->st.step < t->total_steps) {
        double lr = c->adamw.lr * dorac_schedule_factor(c->schedule, t->st.step, t->warmup, t->total_steps);
        double ts = now_s(), loss = 0, gnorm = 0;
        int64_t tokens = 0;
        rc = train_step(t, ids, tg, lr, &loss, &tokens, &gnorm);
        if (rc) break;
        double dt = now_s() - ts;
        steps_here++;
        if (isnan(res->first_loss)) res->first_loss = loss;
        res->last_loss = loss;
        dorac_train_progress p = {.step = t->st.step, .total_steps = t->total_steps, .loss = loss, .eval_loss = NAN,
                                  .lr = lr, .grad_norm = gnorm,
                                  .tokens_per_s = (double)(rows * T * t->dist->world) / dt,
                                  .elapsed_s = now_s() - t0};
        p.eta_s = p.elapsed_s / (double)steps_here * (double)(t->total_steps - t->st.step);
        bool last = t->st.step == t->total_steps;
        if (t->have_eval && c->eval_every > 0 && (t->st.step % c->eval_every == 0 || last)) {
            int64_t n;
            rc = dorac_evaluate(t->model, &t->eval, c->eval_batch_size, &p.eval_loss, &n);
            if (rc) break;
        }
        char line[512];
        int len = snprintf(line, sizeof line,
                           "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6e, \"grad_norm\": %.6f, \"tokens\": %lld, "
                           "\"tokens_per_s\": %.1f, \"elapsed_s\": %.3f",
                           (long long)p.step, loss, lr, gnorm, (long long)tokens, p.tokens_per_s, p.elapsed_s);
        if (!isnan(p.eval_loss)) len += snprintf(line + len, sizeof line - (size_t)len, ", \"eval_loss\": %.6f", p.eval_loss);
        snprintf(line + len, sizeof line - (size_t)len, "}");
        rc = metrics_add(&t->met, line);
        if (!rc && c->save_every > 0 && t->st.step % c->save_every == 0) {
            rc = save_checkpoint(t, lr); /* rank 0 writes; with ZeRO-1 all send it their shards */
            /* the others wait, so that a resume finds the checkpoint complete */
            if (!rc) rc = t->dist->barrier(t->dist);
            p.checkpointed = true;
        }
        if (!rc && is_writer(t) && now_s() - t->met.last_write > 1.0) rc = metrics_write(&t->met, c->out_dir);
        bool go_on = !t->cb || !t->cb->on_step || t->cb->on_step(t->cb->ctx, &p);
        if (!rc && t->dist->world > 1) { /* stop together: any rank asked to stop */
            double stop = go_on ? 0.0 : 1.0;
            rc = t->dist->all_reduce_host(t->dist, &stop, 1);
            go_on = stop == 0.0;
        }
        if (!rc && !go_on) {
            if (is_writer(t)) rc = metrics_write(&t->met, c->out_dir);
            res->steps_done = t->st.step;
            free(ids), free(tg);
            return rc ? rc : 1; /* 1: stopped early, no final save */
        }
    }
    res->steps_done = t->st.step;
    res->seconds = now_s() - t0;
    free(ids), free(tg);
    return rc;
}

static int finish(trainer *t, dorac_train_result *res) {
    const dorac_train_config *c = t->cfg;
    char path[4200];
    res->tokens_seen = t->st.tokens_seen;
    if (!is_writer(t)) return t->dist->barrier(t->dist); /* rank 0 writes; wait for it */
    DORAC_TRY(metrics_write(&t->met, c->out_dir));
    if (c->method == DORAC_METHOD_FULL) {
        snprintf(path, sizeof path, "%s/model", c->out_dir);
        char tmp[4400];
        DORAC_TRY(dorac_atomic_dir_begin(tmp, sizeof tmp, path));
        int rc = write_full_model(t, tmp, c->save_dtype);
        if (!rc) rc = dorac_atomic_dir_commit(tmp, path);
        else dorac_atomic_dir_abort(tmp);
        DORAC_TRY(rc);
        note(t->cb, "model written to %s", path);
    } else {
        snprintf(path, sizeof path, "%s/adapter", c->out_dir);
        DORAC_TRY(dorac_model_save_adapter(t->model, path, c->model_dir));
        note(t->cb, "adapter written to %s", path);
        if (c->merge_at_end) {
            DORAC_TRY(dorac_model_merge_adapters(t->model));
            snprintf(path, sizeof path, "%s/merged", c->out_dir);
            DORAC_TRY(dorac_model_save(t->model, path, c->save_dtype, c->model_dir, (size_t)5000 * 1000 * 1000));
            note(t->cb, "merged model written to %s", path);
        }
    }
    return t->dist->barrier(t->dist);
}

int dorac_train(const dorac_train_config *cfg, const dorac_train_callbacks *cb, dorac_train_result *res) {
    memset(res, 0, sizeof *res);
    res->eval_loss_before = res->eval_loss_after = NAN;
    DORAC_TRY(check_config(cfg));
    bool overlap = false;
    DORAC_TRY(overlap_wanted(&overlap));
    trainer t = {.cfg = cfg, .cb = cb};
    DORAC_TRY(dorac_backend_open(cfg->device, &t.be));
    int rc = cfg->dist && cfg->dist->world > 1 ? dorac_dist_open(cfg->dist, t.be, &t.dist) : dorac_dist_open_single(&t.dist);
    if (rc) {
        dorac_backend_destroy(t.be);
        return rc;
    }
    /* every rank must reduce the same way: rank 0's DORAC_DIST_OVERLAP decides */
    unsigned char overlap_byte = overlap;
    rc = t.dist->broadcast_host(t.dist, &overlap_byte, 1);
    overlap = overlap_byte != 0;
    char resume_dir[4200] = "";
    if (!rc) rc = dorac_mkdir_p(cfg->out_dir);
    if (!rc && cfg->resume) {
        if (!strcmp(cfg->resume, "auto")) rc = dorac_find_latest_checkpoint(cfg->out_dir, resume_dir, sizeof resume_dir);
        else snprintf(resume_dir, sizeof resume_dir, "%s", cfg->resume);
    }
    if (!rc) rc = load_model(&t);
    if (!rc) rc = load_tokenizer(&t);
    if (!rc) rc = load_data(&t);
    if (!rc) rc = attach_method(&t, resume_dir[0] ? resume_dir : NULL);
    dorac_trainable tr[4096];
    size_t n_tr = 0;
    if (!rc) {
        n_tr = dorac_model_trainables(t.model, tr, 4096);
        if (n_tr > 4096) rc = dorac_error(DORAC_E_UNSUPPORTED, "train: more than 4096 trainable tensors");
    }
    bool shard = cfg->zero_stage == 1 || (cfg->zero_stage < 0 && cfg->method == DORAC_METHOD_FULL);
    if (!rc) rc = dorac_optimizer_init_dist(&t.opt, t.be, tr, n_tr, t.dist, shard);
    if (!rc) res->optimizer_bytes = t.opt.state_bytes;
    if (!rc && overlap && t.dist->world > 1 && !t.opt.sharded) {
        t.overlap = (grad_overlap){.dist = t.dist, .be = t.be, .cap = n_tr};
        t.overlap.bucket = calloc(n_tr ? n_tr : 1, sizeof *t.overlap.bucket);
        if (!t.overlap.bucket) rc = dorac_error(DORAC_E_NOMEM, "train: out of memory");
    }
    if (!rc) {
        int64_t step_rows = cfg->batch_size * cfg->grad_accum * t.dist->world;
        int64_t steps_per_epoch = (t.batcher.rows_per_epoch + step_rows - 1) / step_rows;
        t.total_steps = cfg->steps > 0 ? cfg->steps : steps_per_epoch * cfg->epochs;
        t.warmup = cfg->warmup >= 0 ? cfg->warmup : (t.total_steps / 10 < 100 ? t.total_steps / 10 : 100);
    }
    if (!rc && resume_dir[0]) {
        rc = resume(&t, resume_dir);
        if (!rc) note(cb, "resumed from %s at step %lld", resume_dir, (long long)t.st.step);
    }
    if (!rc && t.have_eval && !resume_dir[0]) {
        int64_t n;
        rc = dorac_evaluate(t.model, &t.eval, cfg->eval_batch_size, &res->eval_loss_before, &n);
        if (!rc) note(cb, "eval loss before training: %.4f (%lld tokens)", res->eval_loss_before, (long long)n);
    }
    if (!rc) {
        note(cb, "%s on %lld rows of %lld tokens per epoch; %lld steps of %lld x %lld rows%s (warmup %lld)",
             dorac_method_name(cfg->method), (long long)t.batcher.rows_per_epoch, (long long)cfg->seq_len,
             (long long)t.total_steps, (long long)cfg->batch_size, (long long)cfg->grad_accum,
             t.dist->world > 1 ? " per process" : "", (long long)t.warmup);
        if (t.dist->world > 1) {
            note(cb, "data parallel: %d processes (%s collectives), this is rank %d; gradient all-reduce %s",
                 t.dist->world, t.dist->name, t.dist->rank,
                 t.overlap.dist ? "overlapped with the backward" : "after the backward");
            rc = note_optimizer_bytes(&t);
        }
        if (!rc) rc = run_loop(&t, res);
    }
    if (rc == 1) { /* stopped early on request */
        trainer_free(&t);
        return DORAC_OK;
    }
    if (!rc && t.have_eval) {
        int64_t n;
        rc = dorac_evaluate(t.model, &t.eval, cfg->eval_batch_size, &res->eval_loss_after, &n);
    }
    if (!rc) rc = finish(&t, res);
    dorac_mem_stats ms;
    t.be->mem_stats(t.be, &ms);
    res->peak_bytes = ms.peak_bytes;
    res->device = t.be->name; /* a string literal: outlives the backend */
    trainer_free(&t);
    return rc;
}
