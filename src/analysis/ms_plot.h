/* ms_plot.h: the analysis module's small plotting layer (internal): ECDF line plots and
 * grouped bar charts with error bars, drawn with cairo and encoded as PNG into memory, so
 * that the caller can write every figure atomically (or none). */
#ifndef MS_PLOT_H
#define MS_PLOT_H

#include "medselect/common.h"

/* A PNG file's bytes, owned (free with ms_png_free). */
typedef struct {
    unsigned char *data;
    size_t n, cap;
} ms_png;

void ms_png_free(ms_png *p);

/* Empirical CDFs of n_series samples as step lines (series 0 solid, later ones dashed, so
 * that identical curves stay visible), with axes, "nice" ticks, axis labels, a legend
 * (labels[i]) and a title plus an optional subtitle (NULL: none). x[i] is (n[i]) values,
 * unsorted, n[i] >= 1; 1 <= n_series <= 4. MS_ERR_IO when cairo fails. */
ms_status ms_plot_ecdf(ms_png *out, const char *title, const char *subtitle, const char *xlabel,
                       const double *const *x, const int *n, const char *const *labels,
                       int n_series);

/* Grouped bars: n_groups groups along x (group_labels), n_series bars per group
 * (series_labels, 1..8), heights mean[g * n_series + s] with error bars [lo, hi] (same
 * layout; NAN: no bar / no error bar). The y axis covers the bars and error bars (with
 * ylabel). MS_ERR_IO when cairo fails. */
ms_status ms_plot_bars(ms_png *out, const char *title, const char *ylabel,
                       const char *const *group_labels, int n_groups,
                       const char *const *series_labels, int n_series, const double *mean,
                       const double *lo, const double *hi);

/* Plain helper, exposed for tests: the tick step 1, 2 or 5 x 10^e that gives at most
 * `max_ticks` ticks over [lo, hi] (hi > lo). */
double ms_plot_nice_step(double lo, double hi, int max_ticks);

#endif
