/*
** cli.h — what the subcommands of the `dorac` binary share.
*/
#ifndef DORAC_CLI_H
#define DORAC_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "backend/backend.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

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

/* Prints "dorac: <msg>" and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *msg);

/* A CPU backend, a model loaded from model_dir, an optional adapter, and
** the folder's tokenizer (when want_tokenizer and tokenizer.json exists). */
typedef struct cli_session {
    dorac_backend *be;
    dorac_model *model;
    dorac_tokenizer *tok; /* NULL when the folder has none */
} cli_session;
/* device: "cpu", "cuda", "cuda:N", "auto" or NULL (auto), as --device. */
int cli_session_open(cli_session *s, const char *model_dir, const char *adapter_dir, int threads,
                     const char *device, bool want_tokenizer);
void cli_session_close(cli_session *s);

/* `train --nproc-per-node N` (launch.c): runs N copies of `dorac train
** argv...` (without that flag) with torchrun's variables set, waits for
** them; returns the first failed copy's exit status, or 0. */
int cli_launch_local(int argc, char **argv, int nproc);


int cli_layer_demo(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_merge(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_plot(int argc, char **argv);
int cli_analyze(int argc, char **argv);

#endif
