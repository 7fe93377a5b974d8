/*
** analyze_plot.c — the weight-decomposition figure, like the DoRA paper's
** Fig. 2 (see dorac_analyze_plot in analyze.h).
**
** Colour. A point's colour is its checkpoint's place in its own run
** (first = dark purple, last = yellow, viridis), so runs of different
** lengths read the same way. When every run has the same checkpoint steps
** the legend names them; otherwise it shows the scale from first to last.
** Shape. Runs of the same method share a panel and get one marker shape
** each, named under the panel.
*/
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/chart.h"
#include "train/analyze.h"

/* Geometry, pixels. */
enum { PANEL_W = 380, PANEL_H = 330, LEFT = 95, GAP = 110, TOP = 96, LEGEND_W = 190, RUN_ROW = 18 };

static const dorac_method panel_methods[3] = {DORAC_METHOD_FULL, DORAC_METHOD_LORA, DORAC_METHOD_DORA};

static const char *method_title(dorac_method m) {
    return m == DORAC_METHOD_FULL ? "FT" : m == DORAC_METHOD_LORA ? "LoRA" : m == DORAC_METHOD_DORA ? "DoRA" : "?";
}

/* Where checkpoint c sits in its run, in [0, 1]. */
static double checkpoint_t(const dorac_run_dir *rd, size_t c) {
    return rd->n_ckpts > 1 ? (double)c / (double)(rd->n_ckpts - 1) : 1.0;
}

/* True when every run lists the same checkpoint steps (all known). */
static bool same_steps(const dorac_analyze_result *res) {
    const dorac_run_dir *a = &res->runs[0];
    for (size_t r = 0; r < res->n_runs; r++) {
        const dorac_run_dir *b = &res->runs[r];
        if (b->n_ckpts != a->n_ckpts) return false;
        for (size_t c = 0; c < b->n_ckpts; c++)
            if (b->ckpts[c].step < 0 || b->ckpts[c].step != a->ckpts[c].step) return false;
    }
    return true;
}

static void draw_panel(dorac_svg *svg, const dorac_analyze_result *res, dorac_method method, const dorac_chart_panel *pp) {
    dorac_chart_panel p = *pp;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t i = 0; i < res->n_points; i++) {
        const dorac_analyze_point *pt = &res->points[i];
        if (res->runs[pt->run].method != method) continue;
        xlo = fmin(xlo, pt->d.delta_d), xhi = fmax(xhi, pt->d.delta_d);
        ylo = fmin(ylo, pt->d.delta_m), yhi = fmax(yhi, pt->d.delta_m);
    }
    double xpad = (xhi - xlo) * 0.06, ypad = (yhi - ylo) * 0.06;
    /* both are means of non-negative terms: no padding below 0 */
    dorac_chart_axis_fit(&p.ax, fmax(xlo - xpad, xlo >= 0 ? 0 : -INFINITY), xhi + xpad, 5);
    dorac_chart_axis_fit(&p.ay, fmax(ylo - ypad, ylo >= 0 ? 0 : -INFINITY), yhi + ypad, 6);
    dorac_analyze_fit fit = dorac_analyze_fit_method(res, method);
    char title[128];
    if (isnan(fit.r)) snprintf(title, sizeof title, "%s (r undefined, %zu points)", method_title(method), fit.n);
    else snprintf(title, sizeof title, "%s (r = %+.3f, %zu points)", method_title(method), fit.r, fit.n);
    dorac_chart_draw_axes(svg, &p, title, "\xce\x94" "D = mean(1 - cos(W_t, W_0))", "\xce\x94" "M = mean |m_t - m_0|");

    dorac_chart_clip_begin(svg, &p);
    if (!isnan(fit.slope)) {
        double x0 = p.ax.lo, x1 = p.ax.hi;
        dorac_svg_line(svg, dorac_chart_px(&p, x0), dorac_chart_py(&p, fit.intercept + fit.slope * x0),
                       dorac_chart_px(&p, x1), dorac_chart_py(&p, fit.intercept + fit.slope * x1),
                       "class=\"fit\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"6,4\"");
    }
    /* the runs of this method, each with its marker shape */
    size_t shape = 0;
    for (size_t r = 0; r < res->n_runs; r++) {
        if (res->runs[r].method != method) continue;
        dorac_svg_marker marker = (dorac_svg_marker)(shape++ % DORAC_SVG_MARKER_COUNT);
        for (size_t i = 0; i < res->n_points; i++) {
            const dorac_analyze_point *pt = &res->points[i];
            if (pt->run != r) continue;
            char color[8], attrs[160];
            dorac_chart_viridis(checkpoint_t(&res->runs[r], pt->ckpt), color);
            snprintf(attrs, sizeof attrs,
                     "class=\"point\" fill=\"%s\" fill-opacity=\"0.9\" stroke=\"#222222\" stroke-width=\"0.5\"", color);
            dorac_svg_marker_at(svg, marker, dorac_chart_px(&p, pt->d.delta_d), dorac_chart_py(&p, pt->d.delta_m), 8, attrs);
        }
    }
    dorac_chart_clip_end(svg);

    /* run names under the panel, with their shapes */
    shape = 0;
    double y = p.y + p.h + 58;
    for (size_t r = 0; r < res->n_runs; r++) {
        if (res->runs[r].method != method) continue;
        dorac_svg_marker marker = (dorac_svg_marker)(shape++ % DORAC_SVG_MARKER_COUNT);
        dorac_analyze_fit fr = dorac_analyze_fit_run(res, r);
        char label[300], name[256];
        dorac_analyze_run_label(res, r, name, sizeof name);
        if (isnan(fr.r)) snprintf(label, sizeof label, "%s (r undefined)", name);
        else snprintf(label, sizeof label, "%s (r = %+.3f)", name, fr.r);
        dorac_svg_marker_at(svg, marker, p.x + 6, y - 4, 8, "fill=\"#bbbbbb\" stroke=\"#222222\" stroke-width=\"0.5\"");
        dorac_svg_text(svg, p.x + 16, y, "fill=\"#222222\"", label);
        y += RUN_ROW;
    }
}

/* The checkpoint colour legend, top-left corner at (x, y). */
static void draw_step_legend(dorac_svg *svg, const dorac_analyze_result *res, double x, double y) {
    dorac_svg_text(svg, x, y, "font-weight=\"bold\"", "checkpoint");
    const dorac_run_dir *first = &res->runs[0];
    char color[8], attrs[96], label[64];
    if (same_steps(res) && first->n_ckpts <= 12) {
        for (size_t c = 0; c < first->n_ckpts; c++) {
            double cy = y + 20 + 18 * (double)c;
            dorac_chart_viridis(checkpoint_t(first, c), color);
            snprintf(attrs, sizeof attrs, "fill=\"%s\" stroke=\"#222222\" stroke-width=\"0.5\"", color);
            dorac_svg_circle(svg, x + 6, cy - 4, 5, attrs);
            if (first->ckpts[c].final) snprintf(label, sizeof label, "step %lld (final)", (long long)first->ckpts[c].step);
            else snprintf(label, sizeof label, "step %lld", (long long)first->ckpts[c].step);
            dorac_svg_text(svg, x + 18, cy, "fill=\"#222222\"", label);
        }
        return;
    }
    /* a colour bar: first to last checkpoint of each run */
    const int n = 24;
    for (int i = 0; i < n; i++) {
        dorac_chart_viridis((double)i / (n - 1), color);
        snprintf(attrs, sizeof attrs, "fill=\"%s\" stroke=\"none\"", color);
        dorac_svg_rect(svg, x, y + 12 + 8 * i, 14, 8.5, attrs);
    }
    dorac_svg_text(svg, x + 20, y + 22, "fill=\"#222222\"", "first of its run");
    dorac_svg_text(svg, x + 20, y + 12 + 8 * n, "fill=\"#222222\"", "last of its run");
}

int dorac_analyze_plot(dorac_svg *svg, const dorac_analyze_result *res) {
    memset(svg, 0, sizeof *svg);
    if (!res || res->n_points == 0 || res->n_runs == 0)
        return dorac_error(DORAC_E_INVALID, "analyze: no points to plot");
    dorac_method present[3];
    size_t n_panels = 0, max_runs = 0;
    for (size_t k = 0; k < 3; k++) {
        size_t runs = 0;
        for (size_t r = 0; r < res->n_runs; r++) runs += res->runs[r].method == panel_methods[k];
        if (runs) present[n_panels++] = panel_methods[k];
        if (runs > max_runs) max_runs = runs;
    }
    double width = LEFT + (double)n_panels * (PANEL_W + GAP) - GAP + 40 + LEGEND_W;
    double height = TOP + PANEL_H + 66 + RUN_ROW * (double)max_runs + 10;
    if (height < TOP + 12 * 18 + 60) height = TOP + 12 * 18 + 60;
    dorac_svg_begin(svg, width, height);
    char title[400];
    snprintf(title, sizeof title, "Magnitude vs direction updates per layer and checkpoint (%s)", res->modules);
    dorac_svg_text(svg, width / 2, 28, "text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\"", title);
    dorac_svg_text(svg, width / 2, 50, "text-anchor=\"middle\" fill=\"#555555\"",
                   "Pearson r of \xce\x94" "D vs \xce\x94" "M; the DoRA paper (Fig. 2) reports FT -0.62, LoRA +0.83, DoRA -0.31. "
                   "Dashed: least-squares fit.");
    for (size_t k = 0; k < n_panels; k++) {
        dorac_chart_panel p = {.x = LEFT + (double)k * (PANEL_W + GAP), .y = TOP, .w = PANEL_W, .h = PANEL_H, .id = (int)k};
        draw_panel(svg, res, present[k], &p);
    }
    draw_step_legend(svg, res, width - LEGEND_W + 10, TOP + 8);
    return dorac_svg_finish(svg);
}
