/*
** chart.c — axes, ticks, legends and colours (see chart.h).
*/
#include "core/chart.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dorac_chart_axis_fit(dorac_chart_axis *ax, double lo, double hi, int n_ticks) {
    if (!isfinite(lo) || !isfinite(hi) || !isfinite(hi - lo)) lo = 0, hi = 1; /* nothing sensible to show */
    if (lo > hi) {
        double t = lo;
        lo = hi, hi = t;
    }
    if (n_ticks < 2) n_ticks = 2;
    if (n_ticks > 20) n_ticks = 20;
    if (hi - lo <= 1e-12 * fmax(fabs(lo), fabs(hi)) || hi == lo) {
        double pad = lo != 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= pad, hi += pad;
    }
    /* a step of 1, 2 or 5 x 10^k giving at most n_ticks intervals */
    double raw = (hi - lo) / n_ticks;
    double mag = pow(10.0, floor(log10(raw)));
    double step = mag;
    const double mult[] = {1, 2, 2.5, 5, 10};
    for (size_t i = 0; i < sizeof mult / sizeof mult[0]; i++) {
        step = mult[i] * mag;
        if (step >= raw) break;
    }
    ax->lo = floor(lo / step + 1e-9) * step;
    ax->hi = ceil(hi / step - 1e-9) * step;
    if (ax->hi <= ax->lo) ax->hi = ax->lo + step;
    ax->step = step;
}

void dorac_chart_tick_label(char *buf, size_t cap, const dorac_chart_axis *ax, double v) {
    if (fabs(v) < ax->step * 1e-6) {
        snprintf(buf, cap, "0");
        return;
    }
    double big = fmax(fabs(ax->lo), fabs(ax->hi));
    if (ax->step < 1e-3 || big >= 1e6) {
        /* scientific, with enough digits to tell neighbouring ticks apart */
        int digits = (int)ceil(log10(fabs(v) / ax->step + 1e-9)) + 1;
        if (digits < 1) digits = 1;
        if (digits > 6) digits = 6;
        char tmp[64], mant[32];
        snprintf(tmp, sizeof tmp, "%.*e", digits - 1, v); /* "7.50e-04" -> "7.5e-4" */
        char *e = strchr(tmp, 'e');
        if (!e) {
            snprintf(buf, cap, "%s", tmp);
            return;
        }
        snprintf(mant, sizeof mant, "%.*s", (int)(e - tmp), tmp);
        if (strchr(mant, '.')) {
            size_t n = strlen(mant);
            while (n > 0 && mant[n - 1] == '0') mant[--n] = '\0';
            if (n > 0 && mant[n - 1] == '.') mant[--n] = '\0';
        }
        int ex = atoi(e + 1);
        snprintf(buf, cap, "%se%d", mant, ex);
        return;
    }
    int decimals = (int)ceil(-log10(ax->step) - 1e-9);
    if (decimals < 0) decimals = 0;
    if (fabs(ax->step * pow(10.0, decimals) - round(ax->step * pow(10.0, decimals))) > 1e-6) decimals++; /* 2.5 */
    snprintf(buf, cap, "%.*f", decimals, v);
}

double dorac_chart_px(const dorac_chart_panel *p, double x) {
    return p->x + (x - p->ax.lo) / (p->ax.hi - p->ax.lo) * p->w;
}

double dorac_chart_py(const dorac_chart_panel *p, double y) {
    return p->y + p->h - (y - p->ay.lo) / (p->ay.hi - p->ay.lo) * p->h;
}

void dorac_chart_draw_axes(dorac_svg *s, const dorac_chart_panel *p, const char *title, const char *xlabel,
                           const char *ylabel) {
    char label[64];
    dorac_svg_group_begin(s, "class=\"axes\"");
    /* grid and ticks; at most 64 per axis whatever the step says */
    for (int axis = 0; axis < 2; axis++) {
        const dorac_chart_axis *a = axis == 0 ? &p->ax : &p->ay;
        double first = ceil(a->lo / a->step - 1e-9) * a->step;
        for (int k = 0; k < 64; k++) {
            double v = first + k * a->step;
            if (v > a->hi + a->step * 1e-9) break;
            dorac_chart_tick_label(label, sizeof label, a, v);
            if (axis == 0) {
                double x = dorac_chart_px(p, v);
                dorac_svg_line(s, x, p->y, x, p->y + p->h, "stroke=\"#e6e6e6\" stroke-width=\"1\"");
                dorac_svg_line(s, x, p->y + p->h, x, p->y + p->h + 5, "stroke=\"#333333\" stroke-width=\"1\"");
                dorac_svg_text(s, x, p->y + p->h + 18, "text-anchor=\"middle\" fill=\"#333333\"", label);
            } else {
                double y = dorac_chart_py(p, v);
                dorac_svg_line(s, p->x, y, p->x + p->w, y, "stroke=\"#e6e6e6\" stroke-width=\"1\"");
                dorac_svg_line(s, p->x - 5, y, p->x, y, "stroke=\"#333333\" stroke-width=\"1\"");
                dorac_svg_text(s, p->x - 8, y + 4, "text-anchor=\"end\" fill=\"#333333\"", label);
            }
        }
    }
    dorac_svg_rect(s, p->x, p->y, p->w, p->h, "fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"");
    if (title)
        dorac_svg_text(s, p->x + p->w / 2, p->y - 10, "text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\"",
                       title);
    if (xlabel) dorac_svg_text(s, p->x + p->w / 2, p->y + p->h + 38, "text-anchor=\"middle\"", xlabel);
    if (ylabel) {
        double x = p->x - 62, y = p->y + p->h / 2;
        char attrs[128];
        snprintf(attrs, sizeof attrs, "text-anchor=\"middle\" transform=\"rotate(-90 %.2f %.2f)\"", x, y);
        dorac_svg_text(s, x, y, attrs, ylabel);
    }
    dorac_svg_group_end(s);
}

void dorac_chart_clip_begin(dorac_svg *s, const dorac_chart_panel *p) {
    dorac_svg_raw(s, "<defs><clipPath id=\"panel%d\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/>"
                     "</clipPath></defs>\n",
                  p->id, p->x, p->y, p->w, p->h);
    char attrs[48];
    snprintf(attrs, sizeof attrs, "clip-path=\"url(#panel%d)\"", p->id);
    dorac_svg_group_begin(s, attrs);
}

void dorac_chart_clip_end(dorac_svg *s) { dorac_svg_group_end(s); }

enum { LEGEND_ROW = 18 };

void dorac_chart_legend_size(const dorac_chart_legend_entry *e, size_t n, double *w, double *h) {
    /* width from the longest label, at about 6.5 px per character of 12 px text */
    size_t longest = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = e[i].label ? strlen(e[i].label) : 0;
        if (len > longest) longest = len;
    }
    *w = 44 + 6.5 * (double)longest;
    *h = 8 + LEGEND_ROW * (double)n;
}

void dorac_chart_legend(dorac_svg *s, double right, double top, const dorac_chart_legend_entry *e, size_t n) {
    if (n == 0) return;
    double w, h, row = LEGEND_ROW;
    dorac_chart_legend_size(e, n, &w, &h);
    double x = right - w, y = top;
    dorac_svg_group_begin(s, "class=\"legend\"");
    dorac_svg_rect(s, x, y, w, h, "fill=\"#ffffff\" fill-opacity=\"0.85\" stroke=\"#999999\" stroke-width=\"1\"");
    char attrs[160];
    for (size_t i = 0; i < n; i++) {
        double cy = y + 4 + row * ((double)i + 0.5), x0 = x + 8, x1 = x + 32;
        const char *c = e[i].color ? e[i].color : "#333333";
        switch (e[i].key) {
        case DORAC_CHART_KEY_THIN:
            snprintf(attrs, sizeof attrs, "stroke=\"%s\" stroke-width=\"1\" stroke-opacity=\"0.45\"", c);
            dorac_svg_line(s, x0, cy, x1, cy, attrs);
            break;
        case DORAC_CHART_KEY_DASHED:
            snprintf(attrs, sizeof attrs, "stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"5,3\"", c);
            dorac_svg_line(s, x0, cy, x1, cy, attrs);
            break;
        case DORAC_CHART_KEY_MARKER:
            snprintf(attrs, sizeof attrs, "fill=\"%s\" stroke=\"#333333\" stroke-width=\"0.5\"", c);
            dorac_svg_marker_at(s, e[i].marker, (x0 + x1) / 2, cy, 8, attrs);
            break;
        case DORAC_CHART_KEY_LINE_MARKER:
            snprintf(attrs, sizeof attrs, "stroke=\"%s\" stroke-width=\"1.5\"", c);
            dorac_svg_line(s, x0, cy, x1, cy, attrs);
            snprintf(attrs, sizeof attrs, "fill=\"%s\"", c);
            dorac_svg_marker_at(s, e[i].marker, (x0 + x1) / 2, cy, 7, attrs);
            break;
        case DORAC_CHART_KEY_LINE:
        default:
            snprintf(attrs, sizeof attrs, "stroke=\"%s\" stroke-width=\"2\"", c);
            dorac_svg_line(s, x0, cy, x1, cy, attrs);
            break;
        }
        dorac_svg_text(s, x1 + 6, cy + 4, "fill=\"#222222\"", e[i].label ? e[i].label : "");
    }
    dorac_svg_group_end(s);
}

void dorac_chart_viridis(double t, char out[8]) {
    /* matplotlib's viridis at t = 0, 1/8, ..., 1, interpolated linearly */
    static const unsigned char stops[9][3] = {
        {68, 1, 84},    {71, 44, 122},  {59, 81, 139},   {44, 113, 142}, {33, 144, 141},
        {39, 173, 129}, {92, 200, 99},  {170, 220, 50},  {253, 231, 37}};
    if (!(t >= 0)) t = 0; /* NaN too */
    if (t > 1) t = 1;
    double f = t * 8;
    int i = (int)f;
    if (i >= 8) i = 7;
    double u = f - i;
    int rgb[3];
    for (int c = 0; c < 3; c++) rgb[c] = (int)lround(stops[i][c] + u * (stops[i + 1][c] - stops[i][c]));
    snprintf(out, 8, "#%02x%02x%02x", rgb[0] & 0xff, rgb[1] & 0xff, rgb[2] & 0xff);
}

const char *dorac_chart_color(size_t i) {
    static const char *tab10[10] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    return tab10[i % 10];
}
