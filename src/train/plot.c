/*
** plot.c — training curves as SVG (see plot.h for the figure and its rules).
*/
#include "train/plot.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chart.h"
#include "core/error.h"

/* Figure geometry, pixels. */
enum { FIG_W = 960, FIG_H = 670, LEFT = 90, PANEL_W = 820, LOSS_TOP = 96, LOSS_H = 330, LR_TOP = 496, LR_H = 120 };

double dorac_plot_smoothing_window(size_t n) {
    double w = (double)n / 20.0;
    return w < 1 ? 1 : w > 200 ? 200 : w;
}

void dorac_plot_ema(double *out, const double *x, size_t n, double window) {
    double beta = window > 1 ? 1.0 - 1.0 / window : 0.0;
    double acc = 0, debias = 1; /* debias = beta^k after k values */
    for (size_t i = 0; i < n; i++) {
        acc = beta * acc + (1 - beta) * x[i];
        debias *= beta;
        out[i] = acc / (1 - debias);
    }
}

/* Copies the finite points of (x, y), reduced when there are more than
** DORAC_PLOT_MAX_POINTS: per bucket of equal x-width, the first, lowest,
** highest and last point, in x order. x is sorted. Returns the count
** written to ox, oy (capacity n). */
static size_t reduce(const double *x, const double *y, size_t n, double *ox, double *oy) {
    size_t k = 0, n_finite = 0;
    for (size_t i = 0; i < n; i++) n_finite += isfinite(y[i]) ? 1 : 0;
    if (n_finite <= DORAC_PLOT_MAX_POINTS) {
        for (size_t i = 0; i < n; i++)
            if (isfinite(y[i])) ox[k] = x[i], oy[k] = y[i], k++;
        return k;
    }
    const size_t n_buckets = DORAC_PLOT_MAX_POINTS / 4;
    double x0 = x[0], span = x[n - 1] - x[0];
    size_t i = 0;
    while (i < n) {
        size_t b = span > 0 ? (size_t)((x[i] - x0) / span * (double)(n_buckets - 1)) : 0;
        size_t first = SIZE_MAX, lo = SIZE_MAX, hi = SIZE_MAX, last = SIZE_MAX;
        for (; i < n && (span > 0 ? (size_t)((x[i] - x0) / span * (double)(n_buckets - 1)) : 0) == b; i++) {
            if (!isfinite(y[i])) continue;
            if (first == SIZE_MAX) first = i;
            if (lo == SIZE_MAX || y[i] < y[lo]) lo = i;
            if (hi == SIZE_MAX || y[i] > y[hi]) hi = i;
            last = i;
        }
        if (first == SIZE_MAX) continue;
        size_t pick[4] = {first, lo < hi ? lo : hi, lo < hi ? hi : lo, last};
        for (int p = 0; p < 4; p++) {
            if (p > 0 && pick[p] <= pick[p - 1]) continue; /* already emitted */
            ox[k] = x[pick[p]], oy[k] = y[pick[p]], k++;
        }
    }
    return k;
}

/* Maps data points to pixels in place. */
static void to_pixels(const dorac_chart_panel *p, double *x, double *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        x[i] = dorac_chart_px(p, x[i]);
        y[i] = dorac_chart_py(p, y[i]);
    }
}

/* The top-right corner, inside panel p, for a legend of size (w, h) that
** covers the fewest data points (the n_series series of n values at x):
** top-right, top-left, bottom-right or bottom-left, in that order of
** preference. */
static void legend_corner(const dorac_chart_panel *p, double w, double h, const double *x, const double *const *series,
                          size_t n_series, size_t n, double *right, double *top) {
    const double margin = 8;
    size_t best_count = SIZE_MAX;
    for (int c = 0; c < 4; c++) {
        double r = (c % 2 == 0) ? p->x + p->w - margin : p->x + margin + w;
        double t = (c < 2) ? p->y + margin : p->y + p->h - margin - h;
        size_t count = 0;
        for (size_t i = 0; i < n; i++) {
            double px = dorac_chart_px(p, x[i]);
            if (px < r - w - 4 || px > r + 4) continue;
            for (size_t j = 0; j < n_series; j++) {
                double py = dorac_chart_py(p, series[j][i]);
                count += isfinite(py) && py >= t - 4 && py <= t + h + 4;
            }
        }
        if (count < best_count) best_count = count, *right = r, *top = t;
    }
}

static void range(const double *v, size_t n, double *lo, double *hi) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        if (v[i] < *lo) *lo = v[i];
        if (v[i] > *hi) *hi = v[i];
    }
}

int dorac_plot_metrics(dorac_svg *svg, const dorac_metrics *m, const char *title) {
    memset(svg, 0, sizeof *svg);
    if (!m || m->n == 0) return dorac_error(DORAC_E_INVALID, "plot: no metrics records to plot");
    size_t n = m->n;
    if (n > SIZE_MAX / (6 * sizeof(double))) return dorac_error(DORAC_E_NOMEM, "plot: %zu records is too many", n);
    double *mem = malloc(6 * n * sizeof(double));
    if (!mem) return dorac_error(DORAC_E_NOMEM, "plot: out of memory for %zu records", n);
    double *step = mem, *loss = mem + n, *smooth = mem + 2 * n, *lr = mem + 3 * n, *ox = mem + 4 * n, *oy = mem + 5 * n;
    const dorac_metrics_record *best = NULL, *last_eval = NULL;
    size_t n_lr = 0;
    for (size_t i = 0; i < n; i++) {
        const dorac_metrics_record *r = &m->records[i];
        step[i] = (double)r->step;
        loss[i] = r->loss;
        lr[i] = r->lr;
        n_lr += isfinite(r->lr) ? 1 : 0;
        if (isfinite(r->eval_loss)) {
            last_eval = r;
            if (!best || r->eval_loss < best->eval_loss) best = r;
        }
    }
    double window = dorac_plot_smoothing_window(n);
    dorac_plot_ema(smooth, loss, n, window);

    dorac_svg_begin(svg, FIG_W, FIG_H);
    char text[512];
    if (title) dorac_svg_text(svg, FIG_W / 2.0, 28, "text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\"", title);
    int len = snprintf(text, sizeof text, "%zu steps (%lld to %lld), last train loss %.4f", n,
                       (long long)m->records[0].step, (long long)m->records[n - 1].step, loss[n - 1]);
    if (last_eval && len > 0 && (size_t)len < sizeof text)
        snprintf(text + len, sizeof text - (size_t)len, ", eval loss %.4f at step %lld (best %.4f at step %lld)",
                 last_eval->eval_loss, (long long)last_eval->step, best->eval_loss, (long long)best->step);
    dorac_svg_text(svg, FIG_W / 2.0, 50, "text-anchor=\"middle\" fill=\"#555555\"", text);

    /* ---- loss panel ---- */
    dorac_chart_panel lp = {.x = LEFT, .y = LOSS_TOP, .w = PANEL_W, .h = LOSS_H, .id = 0};
    dorac_chart_axis_fit(&lp.ax, step[0], step[n - 1], 10);
    double lo = INFINITY, hi = -INFINITY;
    range(loss, n, &lo, &hi);
    for (size_t i = 0; i < n; i++)
        if (isfinite(m->records[i].eval_loss)) range(&m->records[i].eval_loss, 1, &lo, &hi);
    double pad = (hi - lo) * 0.03;
    dorac_chart_axis_fit(&lp.ay, lo - pad, hi + pad, 8);
    dorac_chart_draw_axes(svg, &lp, "loss", "step", "loss");
    /* the legend goes where it hides the fewest points (raw loss, smoothed, eval) */
    char smooth_label[64];
    snprintf(smooth_label, sizeof smooth_label, "smoothed (EMA, %.3g-step window)", window);
    dorac_chart_legend_entry legend[3] = {
        {"train loss", "#1f77b4", DORAC_CHART_KEY_THIN, DORAC_SVG_MARKER_CIRCLE},
        {smooth_label, "#1f77b4", DORAC_CHART_KEY_LINE, DORAC_SVG_MARKER_CIRCLE},
        {"eval loss", "#ff7f0e", DORAC_CHART_KEY_LINE_MARKER, DORAC_SVG_MARKER_CIRCLE}};
    size_t n_legend = m->n_eval > 0 ? 3 : 2;
    double leg_w, leg_h, leg_right = lp.x + lp.w - 8, leg_top = lp.y + 8;
    dorac_chart_legend_size(legend, n_legend, &leg_w, &leg_h);
    for (size_t i = 0; i < n; i++) ox[i] = m->records[i].eval_loss;
    const double *series[3] = {loss, smooth, ox};
    legend_corner(&lp, leg_w, leg_h, step, series, 3, n, &leg_right, &leg_top);

    dorac_chart_clip_begin(svg, &lp);
    size_t k = reduce(step, loss, n, ox, oy);
    to_pixels(&lp, ox, oy, k);
    dorac_svg_polyline(svg, ox, oy, k, "class=\"train-loss\" stroke=\"#1f77b4\" stroke-width=\"1\" stroke-opacity=\"0.45\"");
    if (k == 1) dorac_svg_circle(svg, ox[0], oy[0], 3, "class=\"train-loss\" fill=\"#1f77b4\"");
    k = reduce(step, smooth, n, ox, oy);
    to_pixels(&lp, ox, oy, k);
    dorac_svg_polyline(svg, ox, oy, k, "class=\"train-loss-smoothed\" stroke=\"#1f77b4\" stroke-width=\"2\"");
    if (m->n_eval > 0) {
        /* loss and smooth are drawn: reuse them for the evaluated (step, eval_loss) pairs */
        double *ex = loss, *ey = smooth;
        size_t n_eval = 0;
        for (size_t i = 0; i < n; i++)
            if (isfinite(m->records[i].eval_loss)) ex[n_eval] = step[i], ey[n_eval] = m->records[i].eval_loss, n_eval++;
        k = reduce(ex, ey, n_eval, ox, oy);
        to_pixels(&lp, ox, oy, k);
        dorac_svg_polyline(svg, ox, oy, k, "class=\"eval-loss-line\" stroke=\"#ff7f0e\" stroke-width=\"1.5\"");
        for (size_t i = 0; n_eval <= DORAC_PLOT_MAX_POINTS && i < k; i++) /* markers only while they fit */
            dorac_svg_circle(svg, ox[i], oy[i], 3.5, "class=\"eval-loss\" fill=\"#ff7f0e\" stroke=\"#ffffff\" stroke-width=\"0.8\"");
    }
    dorac_chart_clip_end(svg);
    dorac_chart_legend(svg, leg_right, leg_top, legend, n_legend);

    /* ---- learning-rate panel ---- */
    dorac_chart_panel rp = {.x = LEFT, .y = LR_TOP, .w = PANEL_W, .h = LR_H, .id = 1};
    rp.ax = lp.ax;
    lo = 0, hi = -INFINITY;
    range(lr, n, &lo, &hi);
    dorac_chart_axis_fit(&rp.ay, lo, n_lr ? hi : 1, 4);
    dorac_chart_draw_axes(svg, &rp, "learning rate", "step", "learning rate");
    if (n_lr) {
        dorac_chart_clip_begin(svg, &rp);
        k = reduce(step, lr, n, ox, oy);
        to_pixels(&rp, ox, oy, k);
        dorac_svg_polyline(svg, ox, oy, k, "class=\"lr\" stroke=\"#2ca02c\" stroke-width=\"1.5\"");
        if (k == 1) dorac_svg_circle(svg, ox[0], oy[0], 3, "class=\"lr\" fill=\"#2ca02c\"");
        dorac_chart_clip_end(svg);
    } else {
        dorac_svg_text(svg, rp.x + rp.w / 2, rp.y + rp.h / 2, "text-anchor=\"middle\" fill=\"#999999\"",
                       "no learning rate recorded");
    }
    free(mem);
    return dorac_svg_finish(svg);
}
