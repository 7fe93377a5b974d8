/*
** analyze.c — the weight-decomposition study over training runs: loading
** each checkpoint against the base model, the per-layer ΔM / ΔD, the fits
** and the CSV (see analyze.h). The figure is analyze_plot.c.
*/
#include "train/analyze.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "model/model.h"

/* ---------------------------------------------------------------------- */
/* module selection                                                       */
/* ---------------------------------------------------------------------- */

/* True when linear (path, short_name) is selected by the comma list. */
static bool module_selected(const char *list, const char *path, const char *short_name) {
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        size_t n = (size_t)(e - p);
        while (n > 0 && p[n - 1] == ' ') n--;
        size_t pl = strlen(path);
        if (n > 0 && ((strlen(short_name) == n && !strncmp(short_name, p, n)) || (pl == n && !strncmp(path, p, n)) ||
                      (pl > n && path[pl - n - 1] == '.' && !strncmp(path + pl - n, p, n))))
            return true;
        p = e;
    }
    return false;
}

/* The distinct short names of m's linears, comma-separated, for messages. */
static void linear_names(dorac_model *m, char *buf, size_t cap) {
    buf[0] = '\0';
    for (size_t i = 0; i < dorac_model_n_linears(m); i++) {
        const char *s = dorac_model_linear_at(m, i)->short_name;
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) seen = !strcmp(dorac_model_linear_at(m, k)->short_name, s);
        if (!seen) snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", buf[0] ? ", " : "", s);
    }
}

/* Fills res->modules from the user's list or the default, and checks that
** every entry selects some linear of the base model. */
static int choose_modules(dorac_analyze_result *res, dorac_model *base, const char *modules, const char *base_dir) {
    char names[512];
    linear_names(base, names, sizeof names);
    if (!modules) {
        bool qv = false, c_attn = false;
        for (size_t i = 0; i < dorac_model_n_linears(base); i++) {
            const char *s = dorac_model_linear_at(base, i)->short_name;
            qv |= !strcmp(s, "q_proj") || !strcmp(s, "v_proj");
            c_attn |= !strcmp(s, "c_attn");
        }
        if (!qv && !c_attn)
            return dorac_error(DORAC_E_INVALID, "%s: the model has neither q_proj/v_proj nor c_attn; name the layers with --modules (it has %s)",
                               base_dir, names);
        modules = qv ? "q_proj,v_proj" : "c_attn";
    }
    if (strlen(modules) >= sizeof res->modules)
        return dorac_error(DORAC_E_INVALID, "--modules: the list is longer than %zu characters", sizeof res->modules - 1);
    snprintf(res->modules, sizeof res->modules, "%s", modules);
    /* each entry on its own must select something */
    const char *p = modules;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        if (e > p) {
            char one[256];
            snprintf(one, sizeof one, "%.*s", (int)(e - p), p);
            bool any = false;
            for (size_t i = 0; i < dorac_model_n_linears(base) && !any; i++) {
                dorac_model_linear *l = dorac_model_linear_at(base, i);
                any = module_selected(one, l->path, l->short_name);
            }
            if (!any)
                return dorac_error(DORAC_E_INVALID, "--modules: '%s' names no linear layer of %s (it has %s)", one, base_dir,
                                   names);
        }
        p = e;
    }
    if (!res->modules[strspn(res->modules, ", ")]) return dorac_error(DORAC_E_INVALID, "--modules: the list is empty");
    return DORAC_OK;
}

/* ---------------------------------------------------------------------- */
/* the study                                                              */
/* ---------------------------------------------------------------------- */

typedef struct study {
    dorac_analyze_result *res;
    const dorac_analyze_params *p;
    dorac_backend *be;
    dorac_model *base;
    dorac_model *trained; /* full fine-tuning checkpoints are loaded here, created on first use */
    dorac_model *adapted; /* a copy of the base that adapter checkpoints attach to, one at a time */
    size_t cap_points;
} study;

static int add_point(study *s, size_t run, size_t ckpt, const dorac_model_linear *l, const dorac_decomp *d) {
    dorac_analyze_result *res = s->res;
    if (res->n_points == s->cap_points) {
        size_t ncap = s->cap_points ? s->cap_points * 2 : 64;
        dorac_analyze_point *pts = realloc(res->points, ncap * sizeof *pts);
        if (!pts) return dorac_error(DORAC_E_NOMEM, "analyze: out of memory for %zu points", ncap);
        res->points = pts;
        s->cap_points = ncap;
    }
    dorac_analyze_point *pt = &res->points[res->n_points++];
    memset(pt, 0, sizeof *pt);
    pt->run = run;
    pt->ckpt = ckpt;
    snprintf(pt->layer, sizeof pt->layer, "%s", l->path);
    snprintf(pt->module, sizeof pt->module, "%s", l->short_name);
    pt->d = *d;
    res->zero_rows += d->zero_rows;
    return DORAC_OK;
}

/* A model of the base's config holding a copy of its weights (no method). */
static int clone_base(study *s, dorac_model **out) {
    dorac_model *m;
    DORAC_TRY(dorac_model_create(&m, s->be, dorac_model_get_config(s->base)));
    int rc = DORAC_OK;
    for (size_t i = 0; !rc && i < dorac_model_n_params(s->base); i++)
        rc = s->be->copy(s->be, &dorac_model_param_at(m, i)->w, &dorac_model_param_at(s->base, i)->w);
    if (rc) {
        dorac_model_free(m);
        return rc;
    }
    *out = m;
    return DORAC_OK;
}

static int analyze_full(study *s, size_t run, size_t ckpt) {
    const dorac_run_checkpoint *ck = &s->res->runs[run].ckpts[ckpt];
    if (!s->trained) DORAC_TRY(dorac_model_create(&s->trained, s->be, dorac_model_get_config(s->base)));
    DORAC_TRY(dorac_model_load_weights(s->trained, ck->path));
    for (size_t i = 0; i < dorac_model_n_linears(s->base); i++) {
        dorac_model_linear *bl = dorac_model_linear_at(s->base, i), *tl = dorac_model_linear_at(s->trained, i);
        if (!module_selected(s->res->modules, bl->path, bl->short_name)) continue;
        dorac_decomp d;
        int rc = dorac_decomp_linear(&d, &tl->L, &bl->L.t.W);
        if (rc) return dorac_error_prefix(rc, "%s: %s", ck->path, bl->path);
        DORAC_TRY(add_point(s, run, ckpt, bl, &d));
    }
    return DORAC_OK;
}

static int analyze_adapter(study *s, size_t run, size_t ckpt) {
    const dorac_run_dir *rd = &s->res->runs[run];
    const dorac_run_checkpoint *ck = &rd->ckpts[ckpt];
    if (!s->adapted) DORAC_TRY(clone_base(s, &s->adapted));
    dorac_model *m = s->adapted;
    int rc = dorac_model_load_adapter(m, ck->path);
    if (!rc && dorac_model_method(m) != rd->method)
        rc = dorac_error(DORAC_E_FORMAT, "%s: the adapter is %s, the run's other folders are %s", ck->path,
                         dorac_method_name(dorac_model_method(m)), dorac_method_name(rd->method));
    size_t n_before = s->res->n_points;
    for (size_t i = 0; !rc && i < dorac_model_n_linears(m); i++) {
        dorac_model_linear *l = dorac_model_linear_at(m, i);
        if (l->L.cfg.method == DORAC_METHOD_FROZEN || !module_selected(s->res->modules, l->path, l->short_name)) continue;
        dorac_decomp d;
        rc = dorac_decomp_linear(&d, &l->L, &l->L.t.W);
        if (rc) rc = dorac_error_prefix(rc, "%s: %s", ck->path, l->path);
        else rc = add_point(s, run, ckpt, l, &d);
    }
    if (!rc && s->res->n_points == n_before) {
        char adapted[512] = "";
        for (size_t i = 0; i < dorac_model_n_linears(m); i++) {
            dorac_model_linear *l = dorac_model_linear_at(m, i);
            if (l->L.cfg.method == DORAC_METHOD_FROZEN || strstr(adapted, l->short_name)) continue;
            snprintf(adapted + strlen(adapted), sizeof adapted - strlen(adapted), "%s%s", adapted[0] ? ", " : "", l->short_name);
        }
        rc = dorac_error(DORAC_E_FORMAT, "%s: the adapter adapts none of the modules %s (it adapts %s); choose others with --modules",
                         ck->path, s->res->modules, adapted);
    }
    /* back to the base for the next checkpoint; a failure to clear leaves a
    ** model that must not be reused */
    int crc = dorac_model_clear_adapters(m);
    if (crc) {
        dorac_model_free(m);
        s->adapted = NULL;
    }
    return rc ? rc : crc;
}

int dorac_analyze_runs(dorac_analyze_result *res, const dorac_analyze_params *p) {
    memset(res, 0, sizeof *res);
    if (!p || !p->be || !p->base_dir || !p->run_dirs || p->n_runs == 0)
        return dorac_error(DORAC_E_INVALID, "analyze: a backend, a base model and at least one run are needed");
    study s = {.res = res, .p = p, .be = p->be};
    res->runs = calloc(p->n_runs, sizeof *res->runs);
    if (!res->runs) return dorac_error(DORAC_E_NOMEM, "analyze: out of memory");
    /* scan every run first: a wrong folder fails before any model loads */
    int rc = DORAC_OK;
    for (size_t r = 0; !rc && r < p->n_runs; r++) {
        rc = dorac_run_dir_scan(&res->runs[r], p->run_dirs[r]);
        if (!rc) res->n_runs++;
    }
    if (!rc) rc = dorac_model_load(&s.base, s.be, p->base_dir);
    if (!rc) rc = choose_modules(res, s.base, p->modules, p->base_dir);
    for (size_t r = 0; !rc && r < res->n_runs; r++) {
        const dorac_run_dir *rd = &res->runs[r];
        for (size_t c = 0; !rc && c < rd->n_ckpts; c++) {
            if (p->on_checkpoint) p->on_checkpoint(p->ctx, rd, c);
            rc = rd->method == DORAC_METHOD_FULL ? analyze_full(&s, r, c) : analyze_adapter(&s, r, c);
        }
    }
    dorac_model_free(s.trained);
    dorac_model_free(s.adapted);
    dorac_model_free(s.base);
    if (rc) dorac_analyze_result_free(res);
    return rc;
}

void dorac_analyze_result_free(dorac_analyze_result *res) {
    if (!res) return;
    for (size_t r = 0; r < res->n_runs; r++) dorac_run_dir_free(&res->runs[r]);
    free(res->runs);
    free(res->points);
    memset(res, 0, sizeof *res);
}

/* ---------------------------------------------------------------------- */
/* fits                                                                   */
/* ---------------------------------------------------------------------- */

/* The fit over points whose run is `run` (when run < n_runs) or whose
** run used `method` (otherwise). */
static dorac_analyze_fit fit_where(const dorac_analyze_result *res, size_t run, dorac_method method) {
    dorac_analyze_fit f = {.n = 0, .r = NAN, .intercept = NAN, .slope = NAN};
    double *x = malloc((res->n_points + 1) * sizeof *x), *y = malloc((res->n_points + 1) * sizeof *y);
    if (x && y) {
        for (size_t i = 0; i < res->n_points; i++) {
            const dorac_analyze_point *pt = &res->points[i];
            bool in = run < res->n_runs ? pt->run == run : res->runs[pt->run].method == method;
            if (!in) continue;
            x[f.n] = pt->d.delta_d, y[f.n] = pt->d.delta_m, f.n++;
        }
        f.r = dorac_stats_pearson(x, y, f.n);
        if (!dorac_stats_fit_line(x, y, f.n, &f.intercept, &f.slope)) f.intercept = f.slope = NAN;
    }
    free(x), free(y);
    return f;
}

dorac_analyze_fit dorac_analyze_fit_run(const dorac_analyze_result *res, size_t run) {
    if (run >= res->n_runs) return (dorac_analyze_fit){.n = 0, .r = NAN, .intercept = NAN, .slope = NAN};
    return fit_where(res, run, DORAC_METHOD_FROZEN);
}

dorac_analyze_fit dorac_analyze_fit_method(const dorac_analyze_result *res, dorac_method method) {
    return fit_where(res, SIZE_MAX, method);
}

/* ---------------------------------------------------------------------- */
/* labels and CSV                                                         */
/* ---------------------------------------------------------------------- */

static const char *last_component(const char *path, size_t *len) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/') start--;
    *len = n - start;
    return path + start;
}

const char *dorac_analyze_run_label(const dorac_analyze_result *res, size_t i, char *buf, size_t cap) {
    size_t len, len2;
    const char *name = last_component(res->runs[i].path, &len);
    bool clash = false;
    for (size_t k = 0; k < res->n_runs && !clash; k++) {
        if (k == i) continue;
        const char *other = last_component(res->runs[k].path, &len2);
        clash = len2 == len && !strncmp(other, name, len);
    }
    if (clash) snprintf(buf, cap, "%s", res->runs[i].path);
    else snprintf(buf, cap, "%.*s", (int)len, name);
    return buf;
}

/* Appends s to the CSV line, quoted when it needs to be (RFC 4180). */
static void csv_field(char *line, size_t cap, const char *s) {
    size_t n = strlen(line);
    if (!strpbrk(s, ",\"\r\n")) {
        snprintf(line + n, cap - n, "%s", s);
        return;
    }
    if (n + 1 < cap) line[n++] = '"';
    for (const char *p = s; *p && n + 2 < cap; p++) {
        if (*p == '"') line[n++] = '"';
        line[n++] = *p;
    }
    if (n + 1 < cap) line[n++] = '"';
    line[n < cap ? n : cap - 1] = '\0';
}

int dorac_analyze_write_csv(const dorac_analyze_result *res, const char *path) {
    dorac_atomic_file *f;
    DORAC_TRY(dorac_atomic_file_open(&f, path));
    const char *header = "run,method,checkpoint,step,layer,module,delta_m,delta_d\n";
    dorac_atomic_file_write(f, header, strlen(header));
    char line[12288];
    for (size_t i = 0; i < res->n_points; i++) {
        const dorac_analyze_point *pt = &res->points[i];
        const dorac_run_dir *rd = &res->runs[pt->run];
        const dorac_run_checkpoint *ck = &rd->ckpts[pt->ckpt];
        line[0] = '\0';
        csv_field(line, sizeof line, rd->path);
        size_t n = strlen(line);
        snprintf(line + n, sizeof line - n, ",%s,", dorac_method_name(rd->method));
        csv_field(line, sizeof line, ck->name);
        n = strlen(line);
        snprintf(line + n, sizeof line - n, ",%lld,", (long long)ck->step);
        csv_field(line, sizeof line, pt->layer);
        n = strlen(line);
        snprintf(line + n, sizeof line - n, ",%s,%.10g,%.10g\n", pt->module, pt->d.delta_m, pt->d.delta_d);
        dorac_atomic_file_write(f, line, strlen(line));
    }
    return dorac_atomic_file_commit(f); /* reports any failed write */
}
