/*
** analyze.h — the DoRA paper's weight-decomposition study (§3.2, Fig. 2)
** over training runs: `dorac analyze`.
**
** For every run (a training output folder, run_dir.h), every checkpoint
** in step order, and every selected linear layer, the layer's ΔM and ΔD
** against the base model (adapter/analysis.h, DESIGN.md §1):
**   LoRA, DoRA  the base model with the checkpoint's adapter attached
**               (dorac_model_load_adapter); W0 is the layer's frozen weight.
**               Only layers the adapter adapts are analysed.
**   full FT     the checkpoint's weights loaded into a model of the base's
**               config; W0 is the base model's weight.
** Each checkpoint contributes one (ΔD, ΔM) point per layer; the paper plots
** these per method and reports the Pearson r of ΔD against ΔM (FT -0.62,
** DoRA -0.31, LoRA +0.83).
**
** Modules. A comma list of names; an entry selects a linear whose short
** name equals it (q_proj), whose path equals it, or whose path ends with
** "." + entry (layers.0.self_attn.q_proj), as PEFT's target_modules. The
** default is the paper's q_proj,v_proj; a model without them (GPT-2, whose
** attention is one fused c_attn) gets c_attn, which holds q, k and v.
**
** Memory: the base model, plus one model of the same size at a time (the
** checkpoint's), plus the analysis's chunk (analysis.h).
*/
#ifndef DORAC_TRAIN_ANALYZE_H
#define DORAC_TRAIN_ANALYZE_H

#include <stddef.h>
#include <stdint.h>

#include "adapter/analysis.h"
#include "backend/backend.h"
#include "core/svg.h"
#include "train/run_dir.h"

typedef struct dorac_analyze_point {
    size_t run;        /* index into the result's runs */
    size_t ckpt;       /* index into that run's ckpts */
    char layer[96];    /* module path, e.g. "model.layers.0.self_attn.q_proj" */
    char module[32];   /* short name, e.g. "q_proj" */
    dorac_decomp d;    /* ΔM, ΔD */
} dorac_analyze_point;

typedef struct dorac_analyze_result {
    dorac_run_dir *runs;          /* n_runs scanned runs, in the order given; owned */
    size_t n_runs;
    dorac_analyze_point *points;  /* n_points, by run, then checkpoint, then layer; owned */
    size_t n_points;
    char modules[256];            /* the module list used (the default filled in) */
    int64_t zero_rows;            /* rows without a direction, summed over the points */
} dorac_analyze_result;

typedef struct dorac_analyze_params {
    dorac_backend *be;            /* where the models are loaded */
    const char *base_dir;         /* HF folder of the base model every run started from */
    const char *const *run_dirs;  /* n_runs training output folders, n_runs >= 1 */
    size_t n_runs;
    const char *modules;          /* comma list (see above), or NULL for the default */
    /* (optional) called before checkpoint `ckpt` of run `run` is analysed */
    void (*on_checkpoint)(void *ctx, const dorac_run_dir *run, size_t ckpt);
    void *ctx;
} dorac_analyze_params;

/* Runs the study. *res is zeroed first and holds nothing to free on
** failure. Errors name the run, checkpoint and file: DORAC_E_INVALID for a
** module list that selects no layer of the base model, DORAC_E_FORMAT for a
** run whose adapter adapts none of the selected modules, and whatever
** loading the base model, a checkpoint or an adapter returns. */
int dorac_analyze_runs(dorac_analyze_result *res, const dorac_analyze_params *p);

/* Frees what res owns and zeroes it. res may be NULL. */
void dorac_analyze_result_free(dorac_analyze_result *res);

/* A correlation and its least-squares line over a set of points. */
typedef struct dorac_analyze_fit {
    size_t n;          /* points in the set */
    double r;          /* Pearson r of (ΔD, ΔM); NAN when undefined (n < 2, a constant) */
    double intercept;  /* ΔM = intercept + slope * ΔD; both NAN when undefined */
    double slope;
} dorac_analyze_fit;

/* Over the points of run `run`. */
dorac_analyze_fit dorac_analyze_fit_run(const dorac_analyze_result *res, size_t run);
/* Over the points of every run that used `method`. */
dorac_analyze_fit dorac_analyze_fit_method(const dorac_analyze_result *res, dorac_method method);

/* A short, unique label for run i: the folder's last path component, or
** the whole path when two runs share that name. Written into buf (cap
** bytes), which is returned. */
const char *dorac_analyze_run_label(const dorac_analyze_result *res, size_t i, char *buf, size_t cap);

/* Writes the points as CSV, atomically: a header, then one row per point:
** run,method,checkpoint,step,layer,module,delta_m,delta_d (fields quoted as
** RFC 4180 when they hold a comma, quote or newline; step -1 = unknown). */
int dorac_analyze_write_csv(const dorac_analyze_result *res, const char *path);

/* Renders the paper's Fig. 2 into svg (begun and finished here): one
** scatter panel per method present (FT, LoRA, DoRA, in the paper's order),
** ΔD on x and ΔM on y, points coloured by training step (viridis, later is
** brighter) with one marker shape per run, the least-squares line, and
** the method's Pearson r in the panel's title. analyze_plot.c. */
int dorac_analyze_plot(dorac_svg *svg, const dorac_analyze_result *res);

#endif
