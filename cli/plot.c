/*
** plot.c — `dorac plot OUT_DIR [--out FILE.svg]`: the training curves of a
** run (train loss, smoothed, eval loss, learning rate) from its
** metrics.jsonl, as an SVG written atomically (default OUT_DIR/loss.svg).
** The figure itself is src/train/plot.c.
*/
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/options.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/fsutil.h"
#include "train/metrics.h"
#include "train/plot.h"

#define PLOT_USAGE "usage: dorac plot OUT_DIR [--out FILE.svg] [--title TEXT]"

int cli_plot(int argc, char **argv) {
    const char *out = NULL, *title = NULL;
    cli_opt opts[] = {
        {"out", OPT_STRING, &out, "SVG file to write (OUT_DIR/loss.svg)", false},
        {"title", OPT_STRING, &title, "figure title (the folder's name)", false},
    };
    /* OUT_DIR is the one positional argument: take it out, parse the rest */
    const char *dir = NULL;
    char *rest[64];
    int n_rest = 0;
    if (argc > 64) return cli_usage_error("plot: too many arguments");
    rest[n_rest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "--", 2) || !strcmp(a, "-h")) {
            rest[n_rest++] = argv[i];
            /* a value flag without '=' takes the next argument with it */
            if (!strchr(a, '=') && strcmp(a, "--help") && strcmp(a, "-h") && i + 1 < argc) rest[n_rest++] = argv[++i];
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "dorac: plot takes one folder, got '%s' and '%s'\n", dir, a);
            return CLI_EXIT_USAGE;
        }
    }
    int pr = cli_parse(n_rest, rest, opts, sizeof opts / sizeof opts[0],
                       PLOT_USAGE "\n\nWrites the train loss (and a smoothed line), the eval loss and the\n"
                                  "learning rate recorded in OUT_DIR/metrics.jsonl as an SVG.");
    if (pr) return pr == CLI_PARSE_HELP ? 0 : CLI_EXIT_USAGE;
    if (!dir) return cli_usage_error("plot needs the training output folder: " PLOT_USAGE);
    if (!dorac_is_dir(dir)) return cli_fail(dorac_error(DORAC_E_IO, "%s: no such folder", dir));

    char metrics_path[4200], svg_path[4200], name[256];
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", dir);
    if (!out) {
        snprintf(svg_path, sizeof svg_path, "%s/loss.svg", dir);
        out = svg_path;
    }
    if (!title) { /* the folder's own name, without trailing slashes */
        size_t len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/') len--;
        size_t start = len;
        while (start > 0 && dir[start - 1] != '/') start--;
        snprintf(name, sizeof name, "%.*s", (int)(len - start), dir + start);
        title = name;
    }
    dorac_metrics m;
    int rc = dorac_metrics_load(&m, metrics_path);
    if (rc) return cli_fail(rc);
    dorac_svg svg;
    rc = dorac_plot_metrics(&svg, &m, title);
    if (!rc) rc = dorac_atomic_write(out, svg.buf, svg.len);
    if (!rc)
        fprintf(stderr, "dorac: wrote %s (%zu steps, %zu eval points)\n", out, m.n, m.n_eval);
    dorac_svg_free(&svg);
    dorac_metrics_free(&m);
    return rc ? cli_fail(rc) : CLI_EXIT_OK;
}
