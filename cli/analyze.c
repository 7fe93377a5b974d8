/*
** analyze.c — `dorac analyze --base DIR --runs OUT1 [OUT2 ...]
** [--modules q_proj,v_proj] [--out DIR]`: the DoRA paper's
** weight-decomposition study (§3.2, Fig. 2) over training runs.
**
** Writes OUT/decomposition.csv (one row per run, checkpoint and layer) and
** OUT/decomposition.svg (the Fig. 2-like scatter), each atomically, and
** prints the Pearson r of ΔD vs ΔM per run and per method. Progress goes
** to stderr. The study itself is src/train/analyze.c.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "train/analyze.h"

#define ANALYZE_USAGE                                                                                  \
    "usage: dorac analyze --base DIR --runs OUT1 [OUT2 ...] [--modules q_proj,v_proj] [--out DIR]\n" \
    "\n"                                                                                               \
    "For every checkpoint of each training output folder (dorac train --out) and every\n"             \
    "selected layer: dM = mean |m_t - m_0| and dD = mean (1 - cos(W_t, W_0)) per output\n"            \
    "row, as the DoRA paper's Fig. 2. The method (full, lora, dora) is read from each\n"             \
    "run's files. --modules defaults to q_proj,v_proj, or c_attn for GPT-2. --runs takes\n"            \
    "every folder up to the next flag."

static void on_checkpoint(void *ctx, const dorac_run_dir *run, size_t ckpt) {
    (void)ctx;
    fprintf(stderr, "dorac: analyze: %s/%s (%s, %zu of %zu)\n", run->path, run->ckpts[ckpt].name,
            dorac_method_name(run->method), ckpt + 1, run->n_ckpts);
}

static void print_r(double r) {
    if (isnan(r)) printf("  %7s", "n/a");
    else printf("  %+7.3f", r);
}

static void print_table(const dorac_analyze_result *res) {
    printf("Pearson r of dD vs dM (modules %s)\n\n", res->modules);
    size_t w = 3;
    char label[256];
    for (size_t r = 0; r < res->n_runs; r++) {
        size_t len = strlen(dorac_analyze_run_label(res, r, label, sizeof label));
        if (len > w) w = len;
    }
    if (w > 60) w = 60;
    printf("%-*s  %-6s  %5s  %6s  %7s\n", (int)w, "run", "method", "ckpts", "points", "r");
    for (size_t r = 0; r < res->n_runs; r++) {
        dorac_analyze_fit f = dorac_analyze_fit_run(res, r);
        printf("%-*s  %-6s  %5zu  %6zu", (int)w, dorac_analyze_run_label(res, r, label, sizeof label),
               dorac_method_name(res->runs[r].method), res->runs[r].n_ckpts, f.n);
        print_r(f.r);
        printf("\n");
    }
    static const struct {
        dorac_method method;
        const char *name;
        double paper;
    } methods[3] = {{DORAC_METHOD_FULL, "FT", -0.62}, {DORAC_METHOD_LORA, "LoRA", 0.83}, {DORAC_METHOD_DORA, "DoRA", -0.31}};
    printf("\n%-6s  %4s  %6s  %7s  %7s\n", "method", "runs", "points", "r", "paper");
    for (size_t k = 0; k < 3; k++) {
        size_t runs = 0;
        for (size_t r = 0; r < res->n_runs; r++) runs += res->runs[r].method == methods[k].method;
        if (!runs) continue;
        dorac_analyze_fit f = dorac_analyze_fit_method(res, methods[k].method);
        printf("%-6s  %4zu  %6zu", methods[k].name, runs, f.n);
        print_r(f.r);
        printf("  %+7.2f\n", methods[k].paper);
    }
}

int cli_analyze(int argc, char **argv) {
    const char *base = NULL, *modules = NULL, *out = "analysis";
    int64_t threads = 0;
    cli_opt opts[] = {
        {"base", OPT_STRING, &base, "base HF model folder every run started from", false},
        {"modules", OPT_STRING, &modules, "comma list of layers (q_proj,v_proj; c_attn for GPT-2)", false},
        {"out", OPT_STRING, &out, "output folder for decomposition.csv/.svg (analysis)", false},
        {"threads", OPT_INT, &threads, "CPU threads (all cores)", false},
    };
    /* --runs takes every argument up to the next flag; the rest goes to cli_parse */
    char **rest = malloc((size_t)(argc + 1) * sizeof *rest);
    const char **runs = malloc((size_t)(argc + 1) * sizeof *runs);
    if (!rest || !runs) {
        free(rest), free(runs);
        return cli_fail(dorac_error(DORAC_E_NOMEM, "out of memory"));
    }
    int n_rest = 0;
    size_t n_runs = 0;
    rest[n_rest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) runs[n_runs++] = argv[++i];
        } else if (!strncmp(argv[i], "--runs=", 7)) {
            runs[n_runs++] = argv[i] + 7;
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    int pr = cli_parse(n_rest, rest, opts, sizeof opts / sizeof opts[0], ANALYZE_USAGE);
    int code = CLI_EXIT_OK;
    if (pr) code = pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
    else if (!base) code = cli_usage_error("analyze needs --base DIR");
    else if (n_runs == 0) code = cli_usage_error("analyze needs --runs OUT1 [OUT2 ...]");
    if (pr || code) {
        free(rest), free(runs);
        return code;
    }
    for (size_t i = 0; i < n_runs; i++)
        if (!runs[i][0]) {
            free(rest), free(runs);
            return cli_usage_error("--runs: an empty folder name");
        }

    dorac_set_num_threads((int)threads);
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    if (!be) {
        free(rest), free(runs);
        return cli_fail(DORAC_E_NOMEM);
    }
    dorac_analyze_params p = {.be = be, .base_dir = base, .run_dirs = runs, .n_runs = n_runs, .modules = modules,
                              .on_checkpoint = on_checkpoint};
    dorac_analyze_result res;
    int rc = dorac_analyze_runs(&res, &p);
    char csv[4200], svg_path[4200];
    snprintf(csv, sizeof csv, "%s/decomposition.csv", out);
    snprintf(svg_path, sizeof svg_path, "%s/decomposition.svg", out);
    if (!rc) rc = dorac_mkdir_p(out);
    if (!rc) rc = dorac_analyze_write_csv(&res, csv);
    dorac_svg svg = {0};
    if (!rc) rc = dorac_analyze_plot(&svg, &res);
    if (!rc) rc = dorac_atomic_write(svg_path, svg.buf, svg.len);
    if (!rc) {
        print_table(&res);
        if (res.zero_rows)
            printf("\nnote: %lld rows had an all-zero weight (no direction); they count 0 towards dD\n",
                   (long long)res.zero_rows);
        fprintf(stderr, "dorac: wrote %s and %s\n", csv, svg_path);
    }
    dorac_svg_free(&svg);
    dorac_analyze_result_free(&res);
    dorac_backend_destroy(be);
    free(rest), free(runs);
    return rc ? cli_fail(rc) : CLI_EXIT_OK;
}
