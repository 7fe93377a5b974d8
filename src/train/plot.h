/*
** plot.h — the training curves of a run as an SVG (`dorac plot`).
**
** The figure has two panels sharing the step axis:
**   - loss: the train loss of every step as a thin line, a smoothed line
**     over it, and the eval loss (points joined by a line) where evaluated;
**   - learning rate: the schedule as recorded.
** Axes have ticks and labels; a legend names the series. Elements carry a
** class ("train-loss", "train-loss-smoothed", "eval-loss", "eval-loss-line",
** "lr") so a reader or a test can find them.
**
** Smoothing is TensorBoard's: an exponential moving average with weight
** beta = 1 - 1/window, debiased (divided by 1 - beta^k) so that it starts at
** the first value instead of at 0. The window grows with the run:
** dorac_plot_smoothing_window(n) = clamp(n / 20, 1, 200) records.
**
** Size. Series of more than DORAC_PLOT_MAX_POINTS records are reduced, per
** pixel-wide bucket, to the bucket's first, lowest, highest and last points,
** which keeps every spike visible in a file of bounded size. Eval points
** are drawn as markers only while there are at most that many of them.
*/
#ifndef DORAC_TRAIN_PLOT_H
#define DORAC_TRAIN_PLOT_H

#include <stddef.h>

#include "core/svg.h"
#include "train/metrics.h"

#define DORAC_PLOT_MAX_POINTS 4000

/* The smoothing window, in records, for a run of n records. */
double dorac_plot_smoothing_window(size_t n);

/* out[i] = the debiased exponential moving average of x[0..i] with weight
** 1 - 1/window (window >= 1; 1 gives out = x). out may alias x. */
void dorac_plot_ema(double *out, const double *x, size_t n, double window);

/* Renders m (n >= 1) into svg, which this function begins and finishes;
** title is shown above the figure (NULL: none). Returns the SVG writer's
** status (DORAC_E_NOMEM) or DORAC_E_INVALID for an empty m. On failure the
** caller still frees svg. */
int dorac_plot_metrics(dorac_svg *svg, const dorac_metrics *m, const char *title);

#endif
