/*
** svg.h — an SVG document built in memory, element by element.
**
** The plots dorac draws (training curves, the weight-decomposition scatter)
** are written with these few primitives; chart.h adds axes and legends on
** top. The writer only builds text: the caller saves the finished buffer
** (atomically, with io/atomic_file.h), so core/ stays free of file I/O.
**
** Invariants:
**   - the buffer always holds a NUL-terminated prefix of a well-formed
**     document; dorac_svg_finish closes it;
**   - text content is escaped for XML (& < > " ') and made valid UTF-8
**     without control characters (each bad byte becomes '?'), so a user's
**     folder name can never break the document;
**   - a coordinate that is NaN or infinite is never written: the element is
**     dropped (a polyline is split at such points instead);
**   - errors are sticky: after an allocation fails every call is a no-op and
**     dorac_svg_finish returns the status, so callers check only once.
**
** `attrs` arguments are attribute text written verbatim (e.g.
** `stroke="#1f77b4" stroke-width="1"`): they come from the program, never
** from user data.
*/
#ifndef DORAC_CORE_SVG_H
#define DORAC_CORE_SVG_H

#include <stddef.h>

#include "core/error.h"

typedef struct dorac_svg {
    char *buf;   /* the document so far, NUL-terminated; owned */
    size_t len;  /* bytes in buf, without the NUL */
    size_t cap;  /* bytes allocated for buf */
    int status;  /* DORAC_OK, or the first failure (sticky) */
    int depth;   /* open <g> groups, closed by dorac_svg_finish if left open */
} dorac_svg;

/* Starts a document of width x height pixels with a white background and
** a sans-serif default font. *s need not be initialised. */
void dorac_svg_begin(dorac_svg *s, double width, double height);

/* Closes any open groups and the document. Returns DORAC_OK, or the sticky
** failure (DORAC_E_NOMEM) with the error message set; the buffer is kept
** until dorac_svg_free either way. */
int dorac_svg_finish(dorac_svg *s);

/* Frees the buffer and zeroes *s. s may be NULL. */
void dorac_svg_free(dorac_svg *s);

/* Appends printf-formatted markup verbatim (for the caller's own elements,
** e.g. <defs>). The caller is responsible for its well-formedness. */
void dorac_svg_raw(dorac_svg *s, const char *fmt, ...) DORAC_PRINTF(2, 3);

/* <g attrs> ... </g> */
void dorac_svg_group_begin(dorac_svg *s, const char *attrs);
void dorac_svg_group_end(dorac_svg *s);

void dorac_svg_line(dorac_svg *s, double x1, double y1, double x2, double y2, const char *attrs);
void dorac_svg_rect(dorac_svg *s, double x, double y, double w, double h, const char *attrs);
void dorac_svg_circle(dorac_svg *s, double cx, double cy, double r, const char *attrs);

/* A polyline through (x[i], y[i]), i < n, in pixels. Non-finite points
** split it into several <polyline> elements, each with attrs (runs of a
** single point are dropped). */
void dorac_svg_polyline(dorac_svg *s, const double *x, const double *y, size_t n, const char *attrs);

/* Marker shapes for scatter plots, centred at (x, y), about `size` pixels
** across. */
typedef enum dorac_svg_marker {
    DORAC_SVG_MARKER_CIRCLE = 0,
    DORAC_SVG_MARKER_SQUARE = 1,
    DORAC_SVG_MARKER_TRIANGLE = 2,
    DORAC_SVG_MARKER_DIAMOND = 3,
    DORAC_SVG_MARKER_COUNT
} dorac_svg_marker;
void dorac_svg_marker_at(dorac_svg *s, dorac_svg_marker shape, double x, double y, double size,
                         const char *attrs);

/* <text x y attrs>escaped text</text>. */
void dorac_svg_text(dorac_svg *s, double x, double y, const char *attrs, const char *text);

/* Appends text escaped for XML character data or attribute values (see the
** invariants above). */
void dorac_svg_escaped(dorac_svg *s, const char *text);

#endif
