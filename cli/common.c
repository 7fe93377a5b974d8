/*
** common.c — helpers shared by the subcommands.
*/
#include <stdio.h>

#include "cli/cli.h"
#include "dorac.h"

int cli_fail(int status) {
    fprintf(stderr, "dorac: %s\n", dorac_last_error()[0] ? dorac_last_error() : dorac_status_name(status));
    switch (status) {
    case DORAC_E_IO:
    case DORAC_E_NOMEM: return CLI_EXIT_IO;
    case DORAC_OK: return CLI_EXIT_OK;
    default: return CLI_EXIT_INPUT;
    }
}
