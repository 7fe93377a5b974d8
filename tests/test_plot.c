/*
** test_plot.c — metrics.jsonl reading (train/metrics.h), the training-curve
** figure (train/plot.h) and the SVG writer under it (core/svg.h,
** core/chart.h):
**   - the reader's damage rules: a torn last line is skipped, every other
**     bad line is an error naming file:line; blank lines, CRLF, nulls,
**     sorting by step;
**   - the figure is well-formed XML (checked by a small parser below, so
**     the test needs no xmllint), has one polyline vertex per step, one
**     marker per evaluation, escapes its title, and stays bounded in size
**     for long runs;
**   - EMA smoothing against hand values; tick labels; the writer's
**     escaping and its handling of non-finite coordinates.
*/
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/chart.h"
#include "core/svg.h"
#include "test.h"
#include "train/metrics.h"
#include "train/plot.h"

/* ---------------------------------------------------------------------- */
/* a small XML well-formedness checker                                    */
/* ---------------------------------------------------------------------- */

/* Checks the parts of XML 1.0 the SVG writer produces or could get wrong:
** an optional <?xml ...?> prolog; exactly one root element; properly nested
** and matching tags; attributes name="value" or name='value' with no '<'
** and only valid references; character data with only valid references
** (&amp; &lt; &gt; &quot; &apos; &#N; &#xH;); comments; valid UTF-8 and no
** control characters other than tab, CR and LF. On failure *why says what
** and where. */
static bool is_name_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':'; }
static bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.'; }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static bool reference_ok(const char **pp) {
    const char *p = *pp; /* at '&' */
    static const char *named[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (size_t i = 0; i < 5; i++)
        if (!strncmp(p, named[i], strlen(named[i]))) {
            *pp = p + strlen(named[i]);
            return true;
        }
    if (p[1] != '#') return false;
    p += 2;
    bool hex = *p == 'x';
    if (hex) p++;
    const char *digits = p;
    while ((*p >= '0' && *p <= '9') || (hex && ((*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))) p++;
    if (p == digits || *p != ';') return false;
    *pp = p + 1;
    return true;
}

static bool utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return false;
            i++;
            continue;
        }
        size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
        if (!k || c > 0xF4 || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

static bool xml_well_formed(const char *doc, char *why, size_t cap) {
#define FAIL(...)                              \
    do {                                       \
        snprintf(why, cap, __VA_ARGS__);       \
        return false;                          \
    } while (0)
    if (!utf8_ok((const unsigned char *)doc, strlen(doc))) FAIL("invalid UTF-8 or a control character");
    const char *p = doc;
    if (!strncmp(p, "<?xml", 5)) {
        p = strstr(p, "?>");
        if (!p) FAIL("unterminated prolog");
        p += 2;
    }
    char stack[64][64];
    int depth = 0, roots = 0;
    while (*p) {
        if (*p == '<') {
            if (!strncmp(p, "<!--", 4)) {
                const char *e = strstr(p + 4, "-->");
                if (!e) FAIL("unterminated comment");
                p = e + 3;
                continue;
            }
            if (p[1] == '/') { /* closing tag */
                p += 2;
                const char *name = p;
                while (is_name_char(*p)) p++;
                size_t len = (size_t)(p - name);
                while (is_space(*p)) p++;
                if (*p != '>') FAIL("bad closing tag at offset %zu", (size_t)(p - doc));
                if (depth == 0) FAIL("closing tag </%.*s> with nothing open", (int)len, name);
                if (strlen(stack[depth - 1]) != len || strncmp(stack[depth - 1], name, len))
                    FAIL("</%.*s> closes <%.60s>", (int)(len < 60 ? len : 60), name, stack[depth - 1]);
                depth--;
                p++;
                continue;
            }
            p++;
            if (!is_name_start(*p)) FAIL("bad tag name at offset %zu", (size_t)(p - doc));
            const char *name = p;
            while (is_name_char(*p)) p++;
            size_t len = (size_t)(p - name);
            if (depth == 0 && roots++ > 0) FAIL("a second root element <%.*s>", (int)len, name);
            for (;;) { /* attributes */
                bool space = is_space(*p);
                while (is_space(*p)) p++;
                if (*p == '/' && p[1] == '>') {
                    p += 2;
                    break;
                }
                if (*p == '>') {
                    if (depth == 64 || len >= 64) FAIL("too deep");
                    snprintf(stack[depth++], 64, "%.*s", (int)len, name);
                    p++;
                    break;
                }
                if (!space || !is_name_start(*p)) FAIL("bad attribute in <%.*s> at offset %zu", (int)len, name, (size_t)(p - doc));
                while (is_name_char(*p)) p++;
                if (*p != '=') FAIL("attribute without '=' in <%.*s>", (int)len, name);
                p++;
                char q = *p;
                if (q != '"' && q != '\'') FAIL("unquoted attribute in <%.*s>", (int)len, name);
                p++;
                while (*p && *p != q) {
                    if (*p == '<') FAIL("'<' in an attribute of <%.*s>", (int)len, name);
                    if (*p == '&') {
                        if (!reference_ok(&p)) FAIL("bad reference in an attribute of <%.*s>", (int)len, name);
                    } else {
                        p++;
                    }
                }
                if (!*p) FAIL("unterminated attribute in <%.*s>", (int)len, name);
                p++;
            }
            continue;
        }
        if (depth == 0 && !is_space(*p)) FAIL("text outside the root element at offset %zu", (size_t)(p - doc));
        if (*p == '&') {
            if (!reference_ok(&p)) FAIL("bad reference at offset %zu", (size_t)(p - doc));
            continue;
        }
        if (*p == '>' && p > doc && p[-1] == ']') FAIL("']]>' in text");
        p++;
    }
    if (depth != 0) FAIL("<%.60s> is never closed", stack[depth - 1]);
    if (roots != 1) FAIL("%d root elements", roots);
    return true;
#undef FAIL
}

/* ---------------------------------------------------------------------- */
/* helpers                                                                */
/* ---------------------------------------------------------------------- */

static size_t count(const char *hay, const char *needle) {
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Vertices of every <polyline> whose attributes contain `cls`. */
static size_t polyline_points(const char *svg, const char *cls) {
    size_t n = 0;
    for (const char *p = strstr(svg, "<polyline points=\""); p; p = strstr(p + 1, "<polyline points=\"")) {
        const char *end = strstr(p, "/>");
        const char *c = strstr(p, cls);
        if (!end || !c || c > end) continue;
        const char *q = p + 18, *qe = strchr(q, '"');
        n++;
        for (; q < qe; q++) n += *q == ' ';
    }
    return n;
}

/* Vertices of the first polyline with class cls lying in the upper half of
** its own y range (smaller y is higher on the page). */
static size_t spike_vertices(const char *svg, const char *cls) {
    for (const char *p = strstr(svg, "<polyline points=\""); p; p = strstr(p + 1, "<polyline points=\"")) {
        const char *end = strstr(p, "/>"), *c = strstr(p, cls);
        if (!end || !c || c > end) continue;
        double lo = INFINITY, hi = -INFINITY, x, y;
        int used;
        for (const char *q = p + 18; sscanf(q, "%lf,%lf%n", &x, &y, &used) == 2; q += used) lo = fmin(lo, y), hi = fmax(hi, y);
        size_t n = 0;
        for (const char *q = p + 18; sscanf(q, "%lf,%lf%n", &x, &y, &used) == 2; q += used) n += y < (lo + hi) / 2;
        return n;
    }
    return 0;
}

static void check_well_formed(const char *svg, const char *what) {
    char why[256] = "";
    bool ok = xml_well_formed(svg, why, sizeof why);
    if (!ok) fprintf(stderr, "%s: not well-formed: %s\n", what, why);
    CHECK(ok);
}

static int parse(dorac_metrics *m, const char *text) { return dorac_metrics_parse(m, text, strlen(text), "m.jsonl"); }

/* Parsing fails with DORAC_E_FORMAT and a message containing needle. */
static void expect_bad(const char *text, const char *needle) {
    dorac_metrics m;
    CHECK_STATUS(parse(&m, text), DORAC_E_FORMAT);
    CHECK(m.records == NULL && m.n == 0);
    if (!strstr(dorac_last_error(), needle)) fprintf(stderr, "message '%s' lacks '%s'\n", dorac_last_error(), needle);
    CHECK(strstr(dorac_last_error(), needle) != NULL);
}

/* ---------------------------------------------------------------------- */
/* metrics.jsonl                                                          */
/* ---------------------------------------------------------------------- */

static const char *good =
    "{\"step\": 1, \"loss\": 4.5, \"lr\": 1e-4, \"grad_norm\": 2.0, \"tokens\": 64, \"tokens_per_s\": 100.0}\n"
    "{\"step\": 2, \"loss\": 4.0, \"lr\": 2e-4, \"grad_norm\": 1.5, \"tokens_per_s\": 110.0, \"eval_loss\": 4.2}\n"
    "{\"step\": 3, \"loss\": 3.5, \"lr\": 2e-4}\n"
    "{\"step\": 4, \"loss\": 3.7, \"lr\": 1e-4, \"eval_loss\": null, \"extra\": [1, 2]}\n"
    "{\"step\": 5, \"loss\": 3.2, \"lr\": 0, \"eval_loss\": 3.9}\n";

static void check_metrics(void) {
    dorac_metrics m;
    CHECK_OK(parse(&m, good));
    CHECK(m.n == 5 && m.n_eval == 2 && !m.torn_tail);
    if (m.n == 5) {
        CHECK(m.records[0].step == 1 && m.records[0].loss == 4.5 && m.records[0].lr == 1e-4);
        CHECK(m.records[0].grad_norm == 2.0 && m.records[0].tokens_per_s == 100.0 && isnan(m.records[0].eval_loss));
        CHECK(m.records[1].eval_loss == 4.2 && isnan(m.records[2].grad_norm) && isnan(m.records[3].eval_loss));
        CHECK(m.records[4].lr == 0 && m.records[4].eval_loss == 3.9 && m.records[4].line == 5);
    }
    dorac_metrics_free(&m);
    CHECK(m.records == NULL && m.n == 0);

    /* a torn last line (no newline, not JSON) is skipped silently */
    char torn[1024];
    snprintf(torn, sizeof torn, "%s{\"step\": 6, \"loss\": 3.", good);
    CHECK_OK(parse(&m, torn));
    CHECK(m.n == 5 && m.torn_tail);
    dorac_metrics_free(&m);
    snprintf(torn, sizeof torn, "%s{\"ste", good);
    CHECK_OK(parse(&m, torn));
    CHECK(m.n == 5 && m.torn_tail);
    dorac_metrics_free(&m);
    /* ... but a complete last line without a newline is a record */
    snprintf(torn, sizeof torn, "%s{\"step\": 6, \"loss\": 3.1}", good);
    CHECK_OK(parse(&m, torn));
    CHECK(m.n == 6 && !m.torn_tail);
    dorac_metrics_free(&m);

    /* every other bad line is an error naming file:line */
    snprintf(torn, sizeof torn, "%s{\"step\": 6, \"loss\": 3.\n", good); /* bad, but terminated */
    expect_bad(torn, "m.jsonl:6:");
    expect_bad("{\"step\": 1, \"loss\": 4}\n{\"step\": 2, \"loss\": \n{\"step\": 3, \"loss\": 4}\n", "m.jsonl:2:");
    expect_bad("{\"step\": 1, \"loss\": 4}\n[1, 2]\n", "m.jsonl:2: a record must be a JSON object");
    expect_bad("{\"loss\": 4}\n", "m.jsonl:1: the record has no 'step'");
    expect_bad("{\"step\": 1}\n", "m.jsonl:1: the record has no 'loss'");
    expect_bad("{\"step\": -1, \"loss\": 4}\n", "'step' must be a non-negative integer");
    expect_bad("{\"step\": 1.5, \"loss\": 4}\n", "'step' must be a non-negative integer");
    expect_bad("{\"step\": 1, \"loss\": \"4\"}\n", "m.jsonl:1: 'loss' must be a number");
    expect_bad("{\"step\": 1, \"loss\": 4, \"lr\": \"high\"}\n", "m.jsonl:1: 'lr' must be a number");
    expect_bad("{\"step\": 1, \"loss\": 4, \"eval_loss\": true}\n", "'eval_loss' must be a number");
    expect_bad("{\"step\": 1, \"loss\": 4, \"step\": 2}\n", "m.jsonl:1:"); /* duplicate key */
    expect_bad("\n{\"step\": 1, \"loss\": 4}\n\xff\n", "m.jsonl:3:");    /* invalid UTF-8 */
    expect_bad("", "no records");
    expect_bad("\n  \n", "no records");
    expect_bad("{\"st", "no records"); /* only a torn line */

    /* blank lines and CRLF are fine; records come back sorted by step, stably */
    CHECK_OK(parse(&m, "\r\n{\"step\": 3, \"loss\": 3}\r\n\n{\"step\": 1, \"loss\": 1}\r\n{\"step\": 3, \"loss\": 4}\n"
                       "{\"step\": 2, \"loss\": 2}\n"));
    CHECK(m.n == 4);
    if (m.n == 4) {
        CHECK(m.records[0].step == 1 && m.records[1].step == 2 && m.records[2].step == 3 && m.records[3].step == 3);
        CHECK(m.records[2].loss == 3 && m.records[3].loss == 4 && m.records[2].line == 2);
    }
    dorac_metrics_free(&m);

    CHECK_STATUS(dorac_metrics_load(&m, "/nonexistent/metrics.jsonl"), DORAC_E_IO);
    CHECK(strstr(dorac_last_error(), "/nonexistent/metrics.jsonl") != NULL);
}

/* ---------------------------------------------------------------------- */
/* the figure                                                             */
/* ---------------------------------------------------------------------- */

static void check_figure(void) {
    dorac_metrics m;
    CHECK_OK(parse(&m, good));
    dorac_svg svg;
    CHECK_OK(dorac_plot_metrics(&svg, &m, "run <\"a&b\">"));
    if (svg.buf) {
        check_well_formed(svg.buf, "5-step figure");
        CHECK(svg.len == strlen(svg.buf));
        CHECK(polyline_points(svg.buf, "class=\"train-loss\"") == 5);
        CHECK(polyline_points(svg.buf, "class=\"train-loss-smoothed\"") == 5);
        CHECK(polyline_points(svg.buf, "class=\"eval-loss-line\"") == 2);
        CHECK(count(svg.buf, "<circle") >= 2);
        CHECK(count(svg.buf, "class=\"eval-loss\"") == 2);
        CHECK(polyline_points(svg.buf, "class=\"lr\"") == 5);
        CHECK(strstr(svg.buf, "run &lt;&quot;a&amp;b&quot;&gt;") != NULL);
        CHECK(strstr(svg.buf, ">eval loss</text>") != NULL && strstr(svg.buf, ">learning rate</text>") != NULL);
        CHECK(strstr(svg.buf, "<?xml") == svg.buf);
    }
    dorac_svg_free(&svg);
    dorac_metrics_free(&m);

    /* no eval, no lr, one record */
    CHECK_OK(parse(&m, "{\"step\": 7, \"loss\": 2.5}\n"));
    CHECK_OK(dorac_plot_metrics(&svg, &m, NULL));
    if (svg.buf) {
        check_well_formed(svg.buf, "1-step figure");
        CHECK(count(svg.buf, "class=\"train-loss\"") == 1); /* a marker: one point makes no line */
        CHECK(count(svg.buf, "eval-loss") == 0);
        CHECK(strstr(svg.buf, "no learning rate recorded") != NULL);
        CHECK(strstr(svg.buf, "nan") == NULL && strstr(svg.buf, "inf") == NULL);
    }
    dorac_svg_free(&svg);
    dorac_metrics_free(&m);

    /* a long run: bounded output that keeps the spike */
    size_t n = 20000;
    char *text = malloc(n * 64), *p = text;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "{\"step\": %zu, \"loss\": %.4f, \"lr\": %g%s}\n", i + 1, i == 12345 ? 50.0 : 3.0 - 1e-4 * (double)i,
                     1e-4 * (1.0 - (double)i / (double)n), i % 1000 == 999 ? ", \"eval_loss\": 2.5" : "");
    CHECK_OK(dorac_metrics_parse(&m, text, (size_t)(p - text), "long.jsonl"));
    CHECK(m.n == n && m.n_eval == 20);
    CHECK_OK(dorac_plot_metrics(&svg, &m, "long"));
    if (svg.buf) {
        check_well_formed(svg.buf, "20000-step figure");
        size_t k = polyline_points(svg.buf, "class=\"train-loss\"");
        CHECK(k <= DORAC_PLOT_MAX_POINTS && k >= DORAC_PLOT_MAX_POINTS / 4);
        CHECK(count(svg.buf, "class=\"eval-loss\"") == 20);
        CHECK(svg.len < 600000);
        /* the spike (loss 50 at one step; every other loss is near 2) survives the reduction:
        ** exactly one vertex lies in the upper half of the panel */
        CHECK(spike_vertices(svg.buf, "class=\"train-loss\"") == 1);
    }
    dorac_svg_free(&svg);
    dorac_metrics_free(&m);

    /* evaluated at every step: the eval line is reduced too, and drawn without markers */
    p = text;
    for (size_t i = 0; i < n; i++) p += sprintf(p, "{\"step\": %zu, \"loss\": 3, \"eval_loss\": %g}\n", i, 3.0 - 1e-5 * (double)i);
    CHECK_OK(dorac_metrics_parse(&m, text, (size_t)(p - text), "evals.jsonl"));
    CHECK_OK(dorac_plot_metrics(&svg, &m, "evals"));
    if (svg.buf) {
        check_well_formed(svg.buf, "eval-every-step figure");
        size_t k = polyline_points(svg.buf, "class=\"eval-loss-line\"");
        CHECK(k <= DORAC_PLOT_MAX_POINTS && k > 100);
        CHECK(count(svg.buf, "class=\"eval-loss\"") == 0);
    }
    dorac_svg_free(&svg);
    dorac_metrics_free(&m);

    free(text);
    CHECK_STATUS(dorac_plot_metrics(&svg, NULL, "x"), DORAC_E_INVALID);
    dorac_svg_free(&svg);
}

static void check_smoothing(void) {
    double x[3] = {1, 3, 5}, out[3];
    dorac_plot_ema(out, x, 3, 1);
    CHECK(out[0] == 1 && out[1] == 3 && out[2] == 5);
    /* beta 0.5: acc 0.5, 1.75, 3.375; debias 0.5, 0.75, 0.875 */
    dorac_plot_ema(out, x, 3, 2);
    CHECK_NEAR(out[0], 1.0, 1e-15);
    CHECK_NEAR(out[1], 1.75 / 0.75, 1e-15);
    CHECK_NEAR(out[2], 3.375 / 0.875, 1e-15);
    double c[4] = {2, 2, 2, 2};
    dorac_plot_ema(c, c, 4, 50); /* in place; a constant stays constant */
    for (int i = 0; i < 4; i++) CHECK_NEAR(c[i], 2.0, 1e-14);
    CHECK(dorac_plot_smoothing_window(5) == 1 && dorac_plot_smoothing_window(30) == 1.5);
    CHECK(dorac_plot_smoothing_window(100000) == 200);
}

/* ---------------------------------------------------------------------- */
/* the writer and the axes                                                */
/* ---------------------------------------------------------------------- */

static void check_writer(void) {
    dorac_svg s;
    dorac_svg_begin(&s, 100, 50);
    dorac_svg_text(&s, 1, 2, "class=\"t\"", "a<b&c\"d'e\x01\xff\xce\x94\xce");
    dorac_svg_circle(&s, NAN, 2, 3, "class=\"gone\"");
    dorac_svg_line(&s, 0, INFINITY, 1, 1, "class=\"gone\"");
    double x[6] = {0, 1, 2, NAN, 4, 5}, y[6] = {0, 1, 2, 3, 4, 5};
    dorac_svg_polyline(&s, x, y, 6, "class=\"split\"");
    double x1[3] = {0, NAN, 2}, y1[3] = {1, 1, 1};
    dorac_svg_polyline(&s, x1, y1, 3, "class=\"dropped\""); /* runs of one point draw nothing */
    for (int k = 0; k < DORAC_SVG_MARKER_COUNT; k++) dorac_svg_marker_at(&s, (dorac_svg_marker)k, 10, 10, 6, "class=\"mk\"");
    dorac_svg_group_begin(&s, "class=\"open\"");
    CHECK_OK(dorac_svg_finish(&s)); /* closes the group */
    if (s.buf) {
        check_well_formed(s.buf, "writer");
        CHECK(strstr(s.buf, ">a&lt;b&amp;c&quot;d&apos;e??\xce\x94?</text>") != NULL);
        CHECK(count(s.buf, "gone") == 0 && count(s.buf, "dropped") == 0);
        CHECK(count(s.buf, "class=\"split\"") == 2);
        CHECK(polyline_points(s.buf, "class=\"split\"") == 5);
        CHECK(count(s.buf, "class=\"mk\"") == DORAC_SVG_MARKER_COUNT);
    }
    dorac_svg_free(&s);
    CHECK(s.buf == NULL);
    dorac_svg_free(NULL);

    /* the checker itself rejects what it should */
    char why[128];
    CHECK(!xml_well_formed("<a><b></a></b>", why, sizeof why));
    CHECK(!xml_well_formed("<a x=\"1<\"/>", why, sizeof why));
    CHECK(!xml_well_formed("<a>&bad;</a>", why, sizeof why));
    CHECK(!xml_well_formed("<a/><b/>", why, sizeof why));
    CHECK(!xml_well_formed("<a>", why, sizeof why));
    CHECK(!xml_well_formed("<a x=1/>", why, sizeof why));
    CHECK(xml_well_formed("<?xml version=\"1.0\"?>\n<a x='1' y=\"&amp;&#916;\"><b/>t&lt;<!-- c --></a>\n", why, sizeof why));
}

static void check_axes(void) {
    dorac_chart_axis ax;
    char label[64];
    dorac_chart_axis_fit(&ax, 0.03, 0.97, 5);
    CHECK(ax.lo == 0 && fabs(ax.hi - 1) < 1e-12 && fabs(ax.step - 0.2) < 1e-12);
    dorac_chart_tick_label(label, sizeof label, &ax, 0.4);
    CHECK(!strcmp(label, "0.4"));
    dorac_chart_tick_label(label, sizeof label, &ax, 1e-17);
    CHECK(!strcmp(label, "0"));
    dorac_chart_axis_fit(&ax, 1, 30, 10);
    CHECK(ax.lo == 0 && ax.hi == 30 && ax.step == 5);
    dorac_chart_tick_label(label, sizeof label, &ax, 25);
    CHECK(!strcmp(label, "25"));
    dorac_chart_axis_fit(&ax, 0, 0.9e-3, 4); /* step 2.5e-4: scientific */
    CHECK(fabs(ax.step - 2.5e-4) < 1e-15 && fabs(ax.hi - 1e-3) < 1e-15);
    dorac_chart_tick_label(label, sizeof label, &ax, 7.5e-4);
    CHECK(!strcmp(label, "7.5e-4"));
    dorac_chart_tick_label(label, sizeof label, &ax, 1e-3);
    CHECK(!strcmp(label, "1e-3"));
    dorac_chart_axis_fit(&ax, 0, 0.9, 4); /* step 0.25 needs two decimals */
    CHECK(fabs(ax.step - 0.25) < 1e-15);
    dorac_chart_tick_label(label, sizeof label, &ax, 0.75);
    CHECK(!strcmp(label, "0.75"));
    dorac_chart_axis_fit(&ax, 3, 3, 5); /* degenerate: widened around the value */
    CHECK(ax.lo < 3 && ax.hi > 3 && ax.step > 0);
    dorac_chart_axis_fit(&ax, NAN, 1, 5);
    CHECK(ax.lo == 0 && ax.hi == 1);
    char color[8];
    dorac_chart_viridis(0, color);
    CHECK(!strcmp(color, "#440154"));
    dorac_chart_viridis(1, color);
    CHECK(!strcmp(color, "#fde725"));
    dorac_chart_viridis(NAN, color);
    CHECK(!strcmp(color, "#440154"));
}

int main(void) {
    check_metrics();
    check_figure();
    check_smoothing();
    check_writer();
    check_axes();
    return test_report();
}
