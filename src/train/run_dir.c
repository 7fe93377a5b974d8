/*
** run_dir.c — listing a training output folder's checkpoints (see run_dir.h).
*/
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "train/run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/fsutil.h"
#include "io/peft.h"
#include "train/metrics.h"

int dorac_run_dir_method(const char *weights_dir, dorac_method *method) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", weights_dir);
    if (dorac_is_file(path)) {
        dorac_peft_config pc;
        DORAC_TRY(dorac_peft_config_load(&pc, path));
        *method = pc.use_dora ? DORAC_METHOD_DORA : DORAC_METHOD_LORA;
        dorac_peft_config_free(&pc);
        return DORAC_OK;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", weights_dir);
    bool full = dorac_is_file(path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", weights_dir);
    full = full || dorac_is_file(path);
    if (!full)
        return dorac_error(DORAC_E_FORMAT, "%s: holds neither adapter_config.json (LoRA/DoRA) nor model.safetensors (full fine-tuning)",
                           weights_dir);
    *method = DORAC_METHOD_FULL;
    return DORAC_OK;
}

/* The N of "checkpoint-N" (digits only), or -1. */
static int64_t checkpoint_step(const char *name) {
    const char *p = name + 11;
    if (strncmp(name, "checkpoint-", 11) != 0 || !*p || strlen(p) > 18) return -1;
    int64_t s = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        s = s * 10 + (*p - '0');
    }
    return s;
}

static int add(dorac_run_dir *run, size_t *cap, const char *dir, const char *name, int64_t step, bool final) {
    if (run->n_ckpts == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        dorac_run_checkpoint *c = realloc(run->ckpts, ncap * sizeof *c);
        if (!c) return dorac_error(DORAC_E_NOMEM, "%s: out of memory listing checkpoints", dir);
        run->ckpts = c;
        *cap = ncap;
    }
    dorac_run_checkpoint *c = &run->ckpts[run->n_ckpts];
    memset(c, 0, sizeof *c);
    DORAC_TRY(dorac_path_join(&c->path, dir, name));
    snprintf(c->name, sizeof c->name, "%s", name);
    c->step = step;
    c->final = final;
    run->n_ckpts++;
    return DORAC_OK;
}

static int by_step(const void *a, const void *b) {
    const dorac_run_checkpoint *x = a, *y = b;
    return x->step < y->step ? -1 : x->step > y->step;
}

/* The last step in dir/metrics.jsonl, or -1 when it cannot be read. */
static int64_t last_recorded_step(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (!dorac_is_file(path)) return -1;
    dorac_metrics m;
    if (dorac_metrics_load(&m, path) != DORAC_OK) {
        dorac_error_clear(); /* best effort: the step is then unknown */
        return -1;
    }
    int64_t s = m.records[m.n - 1].step;
    dorac_metrics_free(&m);
    return s;
}

int dorac_run_dir_scan(dorac_run_dir *run, const char *dir) {
    memset(run, 0, sizeof *run);
    DIR *d = opendir(dir);
    if (!d) return dorac_error(DORAC_E_IO, "%s: cannot read the training output folder: %s", dir, strerror(errno));
    run->path = strdup(dir);
    size_t cap = 0;
    int rc = run->path ? DORAC_OK : dorac_error(DORAC_E_NOMEM, "out of memory");
    struct dirent *e;
    char path[4200];
    while (!rc && (e = readdir(d))) {
        int64_t step = checkpoint_step(e->d_name);
        if (step < 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!dorac_is_dir(path)) continue;
        rc = add(run, &cap, dir, e->d_name, step, false);
    }
    closedir(d);
    if (!rc && run->n_ckpts > 1) qsort(run->ckpts, run->n_ckpts, sizeof *run->ckpts, by_step);

    /* every checkpoint's method, which must agree */
    bool known = false;
    for (size_t i = 0; !rc && i < run->n_ckpts; i++) {
        dorac_method m;
        rc = dorac_run_dir_method(run->ckpts[i].path, &m);
        if (!rc && known && m != run->method)
            rc = dorac_error(DORAC_E_FORMAT, "%s: %s is %s but %s is %s; one run must use one method", dir,
                             run->ckpts[0].name, dorac_method_name(run->method), run->ckpts[i].name, dorac_method_name(m));
        run->method = m, known = true;
    }

    /* the final folder: adapter/ or model/, whichever the method writes */
    if (!rc) {
        char adapter[4200], model[4200];
        snprintf(adapter, sizeof adapter, "%s/adapter", dir);
        snprintf(model, sizeof model, "%s/model", dir);
        bool has_adapter = dorac_is_dir(adapter), has_model = dorac_is_dir(model);
        const char *final = NULL;
        if (known) final = run->method == DORAC_METHOD_FULL ? (has_model ? "model" : NULL) : (has_adapter ? "adapter" : NULL);
        else if (has_adapter && has_model)
            rc = dorac_error(DORAC_E_FORMAT, "%s: holds both adapter/ and model/ and no checkpoint to tell the method", dir);
        else final = has_adapter ? "adapter" : has_model ? "model" : NULL;
        if (!rc && final) {
            dorac_method m;
            snprintf(path, sizeof path, "%s/%s", dir, final);
            rc = dorac_run_dir_method(path, &m);
            if (!rc && known && m != run->method)
                rc = dorac_error(DORAC_E_FORMAT, "%s: the checkpoints are %s but %s/ is %s; one run must use one method", dir,
                                 dorac_method_name(run->method), final, dorac_method_name(m));
            if (!rc) run->method = m, known = true;
            int64_t step = last_recorded_step(dir);
            bool same = false;
            for (size_t i = 0; i < run->n_ckpts; i++) same |= step >= 0 && run->ckpts[i].step == step;
            if (!rc && !same) rc = add(run, &cap, dir, final, step, true);
        }
    }
    if (!rc && run->n_ckpts == 0)
        rc = dorac_error(DORAC_E_FORMAT, "%s: no checkpoint-N folder and no final adapter/ or model/ (not a dorac train output folder?)", dir);
    if (rc) dorac_run_dir_free(run);
    return rc;
}

void dorac_run_dir_free(dorac_run_dir *run) {
    if (!run) return;
    for (size_t i = 0; i < run->n_ckpts; i++) free(run->ckpts[i].path);
    free(run->ckpts);
    free(run->path);
    memset(run, 0, sizeof *run);
}
