/*
** cli.h — what the subcommands of the `dorac` binary share.
*/
#ifndef DORAC_CLI_H
#define DORAC_CLI_H

#include <stdio.h>

#define DORAC_VERSION_STRING "0.1.0"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_INPUT = 1, /* bad input data or file contents */
    CLI_EXIT_USAGE = 2, /* bad flags */
    CLI_EXIT_IO = 3     /* I/O or resources */
};

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command;

/* Maps a library status to an exit code and prints "dorac: <message>". */
int cli_fail(int status);

int cli_layer_demo(int argc, char **argv);

#endif
