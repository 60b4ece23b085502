/* ms_plot.c: ECDF plots and grouped bar charts with cairo (see ms_plot.h). Figures are drawn
 * on an ARGB image surface with cairo's toy text API (DejaVu Sans through fontconfig) and
 * encoded to PNG in memory. Layout constants are in pixels of an 800 x 480 canvas. */
#include "analysis/ms_plot.h"

#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { W = 800, H = 480 };
static const double ML = 78, MR = 24, MT = 62, MB = 62; /* plot-area margins */

/* Colour-blind-safe palette (Okabe-Ito). */
static const double palette[8][3] = {
    {0.000, 0.447, 0.698}, {0.902, 0.624, 0.000}, {0.000, 0.620, 0.451}, {0.800, 0.475, 0.655},
    {0.337, 0.706, 0.914}, {0.835, 0.369, 0.000}, {0.941, 0.894, 0.259}, {0.3, 0.3, 0.3},
};

void ms_png_free(ms_png *p) {
    free(p->data);
    memset(p, 0, sizeof *p);
}

static cairo_status_t png_append(void *closure, const unsigned char *data, unsigned int len) {
    ms_png *p = closure;
    if (p->n + len > p->cap) {
        size_t cap = p->cap ? p->cap : 65536;
        while (cap < p->n + len) cap *= 2;
        p->data = ms_xrealloc(p->data, cap);
        p->cap = cap;
    }
    memcpy(p->data + p->n, data, len);
    p->n += len;
    return CAIRO_STATUS_SUCCESS;
}

double ms_plot_nice_step(double lo, double hi, int max_ticks) {
    MS_CHECK(hi > lo && max_ticks >= 2);
    double raw = (hi - lo) / (max_ticks - 1);
    double e = pow(10.0, floor(log10(raw)));
    static const double mult[] = {1, 2, 5, 10};
    for (int i = 0; i < 4; i++)
        if (mult[i] * e >= raw && floor(hi / (mult[i] * e)) - ceil(lo / (mult[i] * e)) + 1 <= max_ticks)
            return mult[i] * e;
    return 20 * e;
}

static void tick_label(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-9) v = 0; /* no "-0" */
    double a = fabs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-4)) {
        snprintf(buf, n, "%.3g", v);
        return;
    }
    int dec = (int)ceil(-log10(step) - 1e-9);
    if (dec < 0) dec = 0;
    if (dec > 6) dec = 6;
    snprintf(buf, n, "%.*f", dec, v);
}

typedef struct {
    cairo_surface_t *surf;
    cairo_t *cr;
    double x0, x1, y0, y1; /* data ranges */
    double px0, px1, py0, py1; /* plot area in pixels (py0 bottom, py1 top) */
} canvas;

static double map_x(const canvas *c, double x) { return c->px0 + (x - c->x0) / (c->x1 - c->x0) * (c->px1 - c->px0); }
static double map_y(const canvas *c, double y) { return c->py0 - (y - c->y0) / (c->y1 - c->y0) * (c->py0 - c->py1); }

static void canvas_open(canvas *c) {
    c->surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
    c->cr = cairo_create(c->surf);
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    cairo_select_font_face(c->cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    c->px0 = ML;
    c->px1 = W - MR;
    c->py0 = H - MB;
    c->py1 = MT;
}

static ms_status canvas_close(canvas *c, ms_png *out) {
    memset(out, 0, sizeof *out);
    cairo_status_t st = cairo_status(c->cr);
    cairo_destroy(c->cr);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png_stream(c->surf, png_append, out);
    cairo_surface_destroy(c->surf);
    if (st != CAIRO_STATUS_SUCCESS) {
        ms_png_free(out);
        return ms_fail(MS_ERR_IO, "drawing a figure: %s", cairo_status_to_string(st));
    }
    return MS_OK;
}

/* Text anchored at (x, y): ax 0 left, 0.5 centre, 1 right; ay likewise from top to bottom
 * of the ink box of a capital letter, so labels line up whatever their glyphs. */
static void text_at(cairo_t *cr, const char *s, double x, double y, double ax, double ay, double size) {
    cairo_set_font_size(cr, size);
    cairo_text_extents_t e, cap;
    cairo_text_extents(cr, s, &e);
    cairo_text_extents(cr, "H", &cap);
    /* baseline: top anchor (ay 0) -> y + cap height; centre -> y + cap/2; bottom -> y */
    cairo_move_to(cr, x - ax * e.x_advance, y + (1 - ay) * cap.height);
    cairo_show_text(cr, s);
}

static double text_width(cairo_t *cr, const char *s, double size) {
    cairo_set_font_size(cr, size);
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

static void draw_title(canvas *c, const char *title, const char *subtitle) {
    cairo_set_source_rgb(c->cr, 0.1, 0.1, 0.1);
    cairo_select_font_face(c->cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    text_at(c->cr, title, W / 2.0, subtitle ? 12 : 20, 0.5, 0, 16);
    cairo_select_font_face(c->cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    if (subtitle) {
        cairo_set_source_rgb(c->cr, 0.3, 0.3, 0.3);
        text_at(c->cr, subtitle, W / 2.0, 36, 0.5, 0, 12);
    }
}

/* Frame, grid lines, ticks and tick labels for both axes, and the axis labels. */
static void draw_axes(canvas *c, const char *xlabel, const char *ylabel, int x_ticks) {
    cairo_t *cr = c->cr;
    char buf[64];
    cairo_set_line_width(cr, 1);
    double ys = ms_plot_nice_step(c->y0, c->y1, 7);
    for (double v = ceil(c->y0 / ys - 1e-9) * ys; v <= c->y1 + ys * 1e-9; v += ys) {
        double y = floor(map_y(c, v)) + 0.5;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, c->px0, y);
        cairo_line_to(cr, c->px1, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, c->px0 - 5, y);
        cairo_line_to(cr, c->px0, y);
        cairo_stroke(cr);
        tick_label(buf, sizeof buf, v, ys);
        text_at(cr, buf, c->px0 - 8, y, 1, 0.5, 11);
    }
    if (x_ticks) {
        double xs = ms_plot_nice_step(c->x0, c->x1, 8);
        for (double v = ceil(c->x0 / xs - 1e-9) * xs; v <= c->x1 + xs * 1e-9; v += xs) {
            double x = floor(map_x(c, v)) + 0.5;
            cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
            cairo_move_to(cr, x, c->py0);
            cairo_line_to(cr, x, c->py1);
            cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
            cairo_move_to(cr, x, c->py0);
            cairo_line_to(cr, x, c->py0 + 5);
            cairo_stroke(cr);
            tick_label(buf, sizeof buf, v, xs);
            text_at(cr, buf, x, c->py0 + 9, 0.5, 0, 11);
        }
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, floor(c->px0) + 0.5, floor(c->py1) + 0.5, floor(c->px1 - c->px0), floor(c->py0 - c->py1));
    cairo_stroke(cr);
    if (xlabel) text_at(cr, xlabel, (c->px0 + c->px1) / 2, H - 22, 0.5, 0, 13);
    if (ylabel) {
        cairo_save(cr);
        cairo_translate(cr, 18, (c->py0 + c->py1) / 2);
        cairo_rotate(cr, -1.5707963267948966); /* -pi/2 */
        text_at(cr, ylabel, 0, 0, 0.5, 0, 13);
        cairo_restore(cr);
    }
}

/* Legend box with one entry per series: a line sample (dashed for i > 0) or a filled
 * square, anchored at the box's corner (ax, ay as in text_at). */
static void draw_legend(cairo_t *cr, const char *const *labels, int n, double x, double y,
                        double ax, double ay, int lines) {
    double wmax = 0;
    for (int i = 0; i < n; i++) {
        double w = text_width(cr, labels[i], 12);
        if (w > wmax) wmax = w;
    }
    double bw = wmax + 52, bh = 10 + 20.0 * n;
    double bx = x - ax * bw, by = y - ay * bh;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
    cairo_rectangle(cr, bx, by, bw, bh);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        double cy = by + 15 + 20.0 * i;
        cairo_set_source_rgb(cr, palette[i][0], palette[i][1], palette[i][2]);
        if (lines) {
            cairo_set_line_width(cr, 2.5);
            if (i > 0) {
                double dash[] = {7, 4};
                cairo_set_dash(cr, dash, 2, 0);
            }
            cairo_move_to(cr, bx + 8, cy);
            cairo_line_to(cr, bx + 38, cy);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
        } else {
            cairo_rectangle(cr, bx + 14, cy - 6, 14, 12);
            cairo_fill(cr);
        }
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, labels[i], bx + 44, cy, 0, 0.5, 12);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

ms_status ms_plot_ecdf(ms_png *out, const char *title, const char *subtitle, const char *xlabel,
                       const double *const *x, const int *n, const char *const *labels,
                       int n_series) {
    MS_CHECK(n_series >= 1 && n_series <= 4);
    double lo = INFINITY, hi = -INFINITY;
    for (int s = 0; s < n_series; s++) {
        MS_CHECK(n[s] >= 1);
        for (int i = 0; i < n[s]; i++) {
            if (x[s][i] < lo) lo = x[s][i];
            if (x[s][i] > hi) hi = x[s][i];
        }
    }
    double span = hi - lo;
    if (!(span > 1e-12 * fmax(1.0, fabs(hi)))) span = fmax(1.0, fabs(hi)) * 0.1;
    canvas c;
    canvas_open(&c);
    c.x0 = lo - 0.04 * span;
    c.x1 = hi + 0.04 * span;
    c.y0 = 0;
    c.y1 = 1.0;
    c.py1 = MT + 4; /* headroom above 1 */
    draw_title(&c, title, subtitle);
    draw_axes(&c, xlabel, "fraction of values <= x", 1);

    cairo_t *cr = c.cr;
    cairo_save(cr);
    cairo_rectangle(cr, c.px0, c.py1 - 3, c.px1 - c.px0, c.py0 - c.py1 + 6);
    cairo_clip(cr);
    for (int s = 0; s < n_series; s++) {
        double *v = ms_xmalloc(sizeof(double) * (size_t)n[s]);
        memcpy(v, x[s], sizeof(double) * (size_t)n[s]);
        qsort(v, (size_t)n[s], sizeof(double), cmp_double);
        cairo_set_source_rgb(cr, palette[s][0], palette[s][1], palette[s][2]);
        cairo_set_line_width(cr, s == 0 ? 2.5 : 2.0);
        if (s > 0) {
            double dash[] = {7, 4};
            cairo_set_dash(cr, dash, 2, 0);
        }
        cairo_set_line_join(cr, CAIRO_LINE_JOIN_MITER);
        double y = 0;
        cairo_move_to(cr, map_x(&c, c.x0), map_y(&c, 0));
        for (int i = 0; i < n[s];) {
            int j = i;
            while (j < n[s] && v[j] == v[i]) j++; /* a run of ties is one step */
            cairo_line_to(cr, map_x(&c, v[i]), map_y(&c, y));
            y = (double)j / n[s];
            cairo_line_to(cr, map_x(&c, v[i]), map_y(&c, y));
            i = j;
        }
        cairo_line_to(cr, map_x(&c, c.x1), map_y(&c, 1.0));
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        free(v);
    }
    cairo_restore(cr);
    draw_legend(cr, labels, n_series, c.px1 - 10, c.py0 - 10, 1, 1, 1);
    return canvas_close(&c, out);
}

ms_status ms_plot_bars(ms_png *out, const char *title, const char *ylabel,
                       const char *const *group_labels, int n_groups,
                       const char *const *series_labels, int n_series, const double *mean,
                       const double *lo, const double *hi) {
    MS_CHECK(n_groups >= 1 && n_series >= 1 && n_series <= 8);
    double vmin = INFINITY, vmax = -INFINITY;
    for (int i = 0; i < n_groups * n_series; i++) {
        const double v[3] = {mean[i], lo[i], hi[i]};
        for (int j = 0; j < 3; j++)
            if (!isnan(v[j])) {
                if (v[j] < vmin) vmin = v[j];
                if (v[j] > vmax) vmax = v[j];
            }
    }
    if (!(vmax >= vmin)) vmin = 0, vmax = 1;
    double span = vmax - vmin;
    if (span < 1e-9) span = 0.1;
    canvas c;
    canvas_open(&c);
    /* bars start at the axis floor: a nice value a little under the smallest number */
    double step = ms_plot_nice_step(vmin - 0.15 * span, vmax + 0.1 * span, 7);
    c.y0 = floor((vmin - 0.15 * span) / step) * step;
    c.y1 = ceil((vmax + 0.1 * span) / step) * step;
    if (vmin >= 0 && c.y0 < 0) c.y0 = 0;
    c.x0 = 0;
    c.x1 = n_groups;
    c.py1 = MT + 22 + 20.0 * ((n_series + 3) / 4) - 20; /* room for the legend rows */
    draw_title(&c, title, NULL);
    draw_axes(&c, NULL, ylabel, 0);

    cairo_t *cr = c.cr;
    double gw = (c.px1 - c.px0) / n_groups, bw = gw * 0.8 / n_series;
    for (int g = 0; g < n_groups; g++) {
        for (int s = 0; s < n_series; s++) {
            int i = g * n_series + s;
            double xl = c.px0 + g * gw + gw * 0.1 + s * bw;
            if (!isnan(mean[i])) {
                double yt = map_y(&c, mean[i]), yb = map_y(&c, c.y0);
                cairo_set_source_rgb(cr, palette[s][0], palette[s][1], palette[s][2]);
                cairo_rectangle(cr, xl + 1, yt, bw - 2, yb - yt);
                cairo_fill(cr);
            }
            if (!isnan(lo[i]) && !isnan(hi[i])) {
                double xm = xl + bw / 2, w = fmin(bw * 0.25, 8);
                cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
                cairo_set_line_width(cr, 1.3);
                cairo_move_to(cr, xm, map_y(&c, lo[i]));
                cairo_line_to(cr, xm, map_y(&c, hi[i]));
                cairo_move_to(cr, xm - w, map_y(&c, lo[i]));
                cairo_line_to(cr, xm + w, map_y(&c, lo[i]));
                cairo_move_to(cr, xm - w, map_y(&c, hi[i]));
                cairo_line_to(cr, xm + w, map_y(&c, hi[i]));
                cairo_stroke(cr);
            }
        }
        /* group label, shrunk to fit its slot */
        double size = 12;
        while (size > 7 && text_width(cr, group_labels[g], size) > gw - 4) size -= 0.5;
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, group_labels[g], c.px0 + (g + 0.5) * gw, c.py0 + 10, 0.5, 0, size);
    }
    /* legend: up to four entries per row under the title */
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    for (int s = 0; s < n_series; s++) {
        int row = s / 4, col = s % 4;
        double cx = c.px0 + col * (c.px1 - c.px0) / 4, cy = MT - 22 + 20.0 * row + 8;
        cairo_set_source_rgb(cr, palette[s][0], palette[s][1], palette[s][2]);
        cairo_rectangle(cr, cx, cy - 6, 14, 12);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        double size = 12;
        while (size > 7 && text_width(cr, series_labels[s], size) > (c.px1 - c.px0) / 4 - 24) size -= 0.5;
        text_at(cr, series_labels[s], cx + 20, cy, 0, 0.5, size);
    }
    return canvas_close(&c, out);
}
