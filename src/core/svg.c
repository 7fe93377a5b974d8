/*
** svg.c — the in-memory SVG writer (see svg.h).
**
** Coordinates are written with two decimals: a hundredth of a pixel is
** below anything a browser renders, and it keeps long polylines small.
*/
#include "core/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/size.h"

/* Makes room for `more` bytes plus the NUL; false (status set) on failure. */
static bool reserve(dorac_svg *s, size_t more) {
    if (s->status) return false;
    size_t need;
    if (!dorac_size_add(s->len, more, &need) || !dorac_size_add(need, 1, &need)) {
        s->status = dorac_error(DORAC_E_NOMEM, "svg: document size overflows");
        return false;
    }
    if (need <= s->cap) return true;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *b = realloc(s->buf, cap);
    if (!b) {
        s->status = dorac_error(DORAC_E_NOMEM, "svg: out of memory growing the document to %zu bytes", cap);
        return false;
    }
    s->buf = b;
    s->cap = cap;
    return true;
}

static void append(dorac_svg *s, const char *p, size_t n) {
    if (!reserve(s, n)) return;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

static void vappendf(dorac_svg *s, const char *fmt, va_list ap) {
    if (s->status) return;
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        s->status = dorac_error(DORAC_E_INVALID, "svg: bad format '%s'", fmt);
        return;
    }
    if ((size_t)n < sizeof small) {
        append(s, small, (size_t)n);
        return;
    }
    if (!reserve(s, (size_t)n)) return;
    vsnprintf(s->buf + s->len, (size_t)n + 1, fmt, ap);
    s->len += (size_t)n;
}

static void appendf(dorac_svg *s, const char *fmt, ...) DORAC_PRINTF(2, 3);
static void appendf(dorac_svg *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vappendf(s, fmt, ap);
    va_end(ap);
}

static bool finite2(double a, double b) { return isfinite(a) && isfinite(b); }

void dorac_svg_begin(dorac_svg *s, double width, double height) {
    memset(s, 0, sizeof *s);
    if (!finite2(width, height) || width <= 0 || height <= 0) width = 100, height = 100;
    appendf(s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
            "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n",
            width, height, width, height, width, height);
}

int dorac_svg_finish(dorac_svg *s) {
    while (s->depth > 0) dorac_svg_group_end(s);
    append(s, "</svg>\n", 7);
    return s->status;
}

void dorac_svg_free(dorac_svg *s) {
    if (!s) return;
    free(s->buf);
    memset(s, 0, sizeof *s);
}

void dorac_svg_raw(dorac_svg *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vappendf(s, fmt, ap);
    va_end(ap);
}

void dorac_svg_group_begin(dorac_svg *s, const char *attrs) {
    appendf(s, "<g %s>\n", attrs ? attrs : "");
    if (!s->status) s->depth++;
}

void dorac_svg_group_end(dorac_svg *s) {
    if (s->depth <= 0) return;
    append(s, "</g>\n", 5);
    s->depth--;
}

void dorac_svg_line(dorac_svg *s, double x1, double y1, double x2, double y2, const char *attrs) {
    if (!finite2(x1, y1) || !finite2(x2, y2)) return;
    appendf(s, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" %s/>\n", x1, y1, x2, y2, attrs ? attrs : "");
}

void dorac_svg_rect(dorac_svg *s, double x, double y, double w, double h, const char *attrs) {
    if (!finite2(x, y) || !finite2(w, h) || w < 0 || h < 0) return;
    appendf(s, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" %s/>\n", x, y, w, h, attrs ? attrs : "");
}

void dorac_svg_circle(dorac_svg *s, double cx, double cy, double r, const char *attrs) {
    if (!finite2(cx, cy) || !isfinite(r) || r < 0) return;
    appendf(s, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" %s/>\n", cx, cy, r, attrs ? attrs : "");
}

void dorac_svg_polyline(dorac_svg *s, const double *x, const double *y, size_t n, const char *attrs) {
    size_t i = 0;
    while (i < n) {
        while (i < n && !finite2(x[i], y[i])) i++;
        size_t start = i;
        while (i < n && finite2(x[i], y[i])) i++;
        if (i - start < 2) continue;
        append(s, "<polyline points=\"", 18);
        for (size_t k = start; k < i; k++) appendf(s, k > start ? " %.2f,%.2f" : "%.2f,%.2f", x[k], y[k]);
        appendf(s, "\" fill=\"none\" %s/>\n", attrs ? attrs : "");
    }
}

void dorac_svg_marker_at(dorac_svg *s, dorac_svg_marker shape, double x, double y, double size,
                         const char *attrs) {
    if (!finite2(x, y) || !isfinite(size) || size <= 0) return;
    double h = size / 2;
    const char *a = attrs ? attrs : "";
    switch (shape) {
    case DORAC_SVG_MARKER_SQUARE: dorac_svg_rect(s, x - h * 0.9, y - h * 0.9, size * 0.9, size * 0.9, a); break;
    case DORAC_SVG_MARKER_TRIANGLE:
        appendf(s, "<polygon points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f\" %s/>\n", x, y - h * 1.15, x - h * 1.1,
                y + h * 0.85, x + h * 1.1, y + h * 0.85, a);
        break;
    case DORAC_SVG_MARKER_DIAMOND:
        appendf(s, "<polygon points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f %.2f,%.2f\" %s/>\n", x, y - h * 1.2, x + h,
                y, x, y + h * 1.2, x - h, y, a);
        break;
    case DORAC_SVG_MARKER_CIRCLE:
    default: dorac_svg_circle(s, x, y, h, a); break;
    }
}

/* Length of the well-formed UTF-8 sequence at p (1..4), or 0 if the bytes
** there are not one (overlong forms, surrogates and > U+10FFFF included). */
static size_t utf8_len(const unsigned char *p) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

void dorac_svg_escaped(dorac_svg *s, const char *text) {
    const unsigned char *p = (const unsigned char *)(text ? text : "");
    while (*p) {
        unsigned c = *p;
        switch (c) {
        case '&': append(s, "&amp;", 5); p++; continue;
        case '<': append(s, "&lt;", 4); p++; continue;
        case '>': append(s, "&gt;", 4); p++; continue;
        case '"': append(s, "&quot;", 6); p++; continue;
        case '\'': append(s, "&apos;", 6); p++; continue;
        default: break;
        }
        if (c < 0x20 || c == 0x7F) { /* XML 1.0 forbids most control characters */
            append(s, "?", 1);
            p++;
            continue;
        }
        /* utf8_len reads at most up to the first byte that fails, and the NUL
        ** terminator fails every continuation test, so it never reads past it */
        size_t k = utf8_len(p);
        if (k == 0) {
            append(s, "?", 1);
            p++;
        } else {
            append(s, (const char *)p, k);
            p += k;
        }
    }
}

void dorac_svg_text(dorac_svg *s, double x, double y, const char *attrs, const char *text) {
    if (!finite2(x, y)) return;
    appendf(s, "<text x=\"%.2f\" y=\"%.2f\" %s>", x, y, attrs ? attrs : "");
    dorac_svg_escaped(s, text);
    append(s, "</text>\n", 8);
}
