/*
** options.c — the flag parser (see options.h).
*/
#include "cli/options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_help(const cli_opt *opts, size_t n, const char *usage) {
    printf("%s\n\noptions:\n", usage);
    for (size_t i = 0; i < n; i++) {
        const char *arg = opts[i].kind == OPT_INT ? " N" : opts[i].kind == OPT_DOUBLE ? " X"
                        : opts[i].kind == OPT_STRING ? " S" : "";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", opts[i].name, arg);
        printf("  %-24s %s\n", left, opts[i].help);
    }
    printf("  %-24s %s\n", "--help", "show this help");
}

static int set_value(cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_INT: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(stderr, "dorac: --%s expects an integer, got '%s'\n", o->name, v);
            return CLI_PARSE_ERROR;
        }
        *(int64_t *)o->dest = x;
        break;
    }
    case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) {
            fprintf(stderr, "dorac: --%s expects a finite number, got '%s'\n", o->name, v);
            return CLI_PARSE_ERROR;
        }
        *(double *)o->dest = x;
        break;
    }
    case OPT_STRING: *(const char **)o->dest = v; break;
    case OPT_FLAG: *(bool *)o->dest = true; break;
    }
    o->seen = true;
    return CLI_PARSE_OK;
}

int cli_parse(int argc, char **argv, cli_opt *opts, size_t n_opts, const char *usage) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help(opts, n_opts, usage);
            return CLI_PARSE_HELP;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "dorac: unexpected argument '%s' (flags start with --)\n", a);
            return CLI_PARSE_ERROR;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        cli_opt *o = NULL;
        for (size_t k = 0; k < n_opts; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, name, len)) o = &opts[k];
        if (!o) {
            fprintf(stderr, "dorac: unknown flag '--%.*s' (see --help)\n", (int)len, name);
            return CLI_PARSE_ERROR;
        }
        if (o->seen) {
            fprintf(stderr, "dorac: --%s given twice\n", o->name);
            return CLI_PARSE_ERROR;
        }
        const char *value;
        if (o->kind == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "dorac: --%s takes no value\n", o->name);
                return CLI_PARSE_ERROR;
            }
            value = "";
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "dorac: --%s needs a value\n", o->name);
            return CLI_PARSE_ERROR;
        }
        int rc = set_value(o, value);
        if (rc) return rc;
    }
    return CLI_PARSE_OK;
}

bool cli_opt_seen(const cli_opt *opts, size_t n_opts, const char *name) {
    for (size_t i = 0; i < n_opts; i++)
        if (!strcmp(opts[i].name, name)) return opts[i].seen;
    return false;
}
