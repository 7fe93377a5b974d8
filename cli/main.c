/*
** main.c — the `dorac` command: parses the subcommand and hands over.
**
** Exit codes: 0 success; 1 bad input (file contents, data); 2 usage error
** (flags); 3 I/O or resource failure. A failure prints one line,
** "dorac: <message>", on stderr. Library code never prints; this file does.
*/
#define _POSIX_C_SOURCE 200809L /* setenv, execv */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dorac.h"

static const cli_command commands[] = {
    {"train", "fine-tune with DoRA, LoRA or full fine-tuning (or pretrain from scratch)", cli_train},
    {"eval", "mean next-token loss of a model (+ adapter) on a data file", cli_eval},
    {"merge", "merge a PEFT adapter into its base model and write an HF folder", cli_merge},
    {"inspect", "print a model's architecture and an adapter's targets", cli_inspect},
    {"layer-demo", "fit one DoRA layer to a target with the raw-array API", cli_layer_demo},
    {"tokenize", "text to token ids and back with a tokenizer.json", cli_tokenize},
    {"generate", "continue a prompt with a model (+ adapter), streaming tokens, with a KV cache", cli_generate},
    {"plot", "draw a run's loss and learning-rate curves (metrics.jsonl) as an SVG", cli_plot},
    {"analyze", "magnitude/direction updates of runs' checkpoints (DoRA paper Fig. 2)", cli_analyze},
};

static void usage(FILE *f) {
    fprintf(f, "usage: dorac <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`dorac <command> --help` describes a command's options.\n");
}

/* OpenMP threads that spin-wait between parallel regions take the cores
** from the threads doing work whenever the machine is shared (measured:
** 7x slower training steps on a loaded 2-core machine). The wait policy is
** read when the OpenMP runtime loads, before main, so the only way to
** default it to PASSIVE is to re-execute once with it set. A value the user
** sets is kept; if the re-exec fails, dorac runs on as it is. */
static void default_omp_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    default_omp_wait_policy(argv);
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("dorac %s\n", DORAC_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dorac: unknown command '%s' (see dorac --help)\n", argv[1]);
    return CLI_EXIT_USAGE;
}
