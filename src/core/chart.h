/*
** chart.h — axes, ticks, legends and colours for the plots dorac draws,
** on top of the SVG writer (svg.h).
**
** A panel is a rectangle of pixels showing a data range on each axis. Data
** values map linearly onto it (x grows right, y grows up); ticks fall on
** "nice" values, 1, 2 or 5 times a power of ten, as every plotting library
** chooses them. Elements drawn inside a panel are clipped to it by the
** caller with dorac_chart_clip_begin/end.
*/
#ifndef DORAC_CORE_CHART_H
#define DORAC_CORE_CHART_H

#include <stdbool.h>
#include <stddef.h>

#include "core/svg.h"

typedef struct dorac_chart_axis {
    double lo, hi; /* data range shown, lo < hi, both finite */
    double step;   /* tick spacing, > 0; ticks at the multiples of step in [lo, hi] */
} dorac_chart_axis;

/* Fits an axis to data in [lo, hi]: a range that covers it, extended to
** whole ticks, with about n_ticks ticks (2..20). A degenerate range
** (lo == hi) is widened around the value; non-finite input (or a span that
** overflows) gives [0, 1]. */
void dorac_chart_axis_fit(dorac_chart_axis *ax, double lo, double hi, int n_ticks);

/* The tick label of v on ax: as many decimals as the spacing needs, or
** scientific notation for very small or large spacings; "0" for zero. */
void dorac_chart_tick_label(char *buf, size_t cap, const dorac_chart_axis *ax, double v);

typedef struct dorac_chart_panel {
    double x, y, w, h;     /* plotting area in pixels: top-left corner and size, w, h > 0 */
    dorac_chart_axis ax;   /* horizontal data axis */
    dorac_chart_axis ay;   /* vertical data axis */
    int id;                /* distinguishes this panel's clip path in the document */
} dorac_chart_panel;

/* Pixel coordinates of data values. */
double dorac_chart_px(const dorac_chart_panel *p, double x);
double dorac_chart_py(const dorac_chart_panel *p, double y);

/* Draws the panel: light grid lines at the ticks, the frame, tick marks
** with labels, the title above and the axis labels (any may be NULL). */
void dorac_chart_draw_axes(dorac_svg *s, const dorac_chart_panel *p, const char *title, const char *xlabel,
                           const char *ylabel);

/* Opens a group clipped to the panel's rectangle; close it with
** dorac_chart_clip_end. */
void dorac_chart_clip_begin(dorac_svg *s, const dorac_chart_panel *p);
void dorac_chart_clip_end(dorac_svg *s);

/* How a legend entry shows its series. */
typedef enum dorac_chart_key {
    DORAC_CHART_KEY_LINE = 0,   /* a solid line */
    DORAC_CHART_KEY_THIN = 1,   /* a thin, faint line */
    DORAC_CHART_KEY_DASHED = 2, /* a dashed line */
    DORAC_CHART_KEY_MARKER = 3, /* a marker of shape `marker` */
    DORAC_CHART_KEY_LINE_MARKER = 4 /* a line with a marker on it */
} dorac_chart_key;

typedef struct dorac_chart_legend_entry {
    const char *label;
    const char *color;       /* "#rrggbb" */
    dorac_chart_key key;
    dorac_svg_marker marker; /* MARKER and LINE_MARKER only */
} dorac_chart_legend_entry;

/* The legend's box size in pixels (labels measured at ~6.5 px a character). */
void dorac_chart_legend_size(const dorac_chart_legend_entry *e, size_t n, double *w, double *h);

/* A boxed legend whose top-right corner is at (right, top). */
void dorac_chart_legend(dorac_svg *s, double right, double top, const dorac_chart_legend_entry *e, size_t n);

/* The viridis colour map at t in [0, 1] (clamped) as "#rrggbb" into out. */
void dorac_chart_viridis(double t, char out[8]);

/* A qualitative colour (the Tableau 10 palette), cycling after 10. */
const char *dorac_chart_color(size_t i);

#endif
