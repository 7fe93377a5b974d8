/*
** options.h — a table-driven flag parser shared by the subcommands.
**
** Every flag is "--name value" or "--name=value" (booleans: "--name").
** An unknown flag, a missing or malformed value, or a positional argument is
** a usage error naming the flag; nothing is silently ignored.
*/
#ifndef DORAC_CLI_OPTIONS_H
#define DORAC_CLI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { OPT_INT, OPT_DOUBLE, OPT_STRING, OPT_FLAG } cli_opt_kind;

typedef struct cli_opt {
    const char *name;  /* without the leading "--" */
    cli_opt_kind kind;
    void *dest;        /* int64_t*, double*, const char**, bool* */
    const char *help;  /* one line, shown by --help */
    bool seen;         /* set by the parser */
} cli_opt;

enum { CLI_PARSE_OK = 0, CLI_PARSE_HELP = 1, CLI_PARSE_ERROR = 2 };

/* Parses argv[1..argc) against opts. Prints help to stdout and returns
** CLI_PARSE_HELP for --help; prints one error line to stderr and returns
** CLI_PARSE_ERROR on a bad flag. */
int cli_parse(int argc, char **argv, cli_opt *opts, size_t n_opts, const char *usage);

/* True when the flag `name` was given on the command line. */
bool cli_opt_seen(const cli_opt *opts, size_t n_opts, const char *name);

#endif
