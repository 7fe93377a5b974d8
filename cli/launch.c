/*
** launch.c — `dorac train --nproc-per-node N`: starts N copies of the same
** command on this host, one per GPU, with the variables torchrun would set
** (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1, MASTER_PORT a free
** port), and waits for them. Each copy finds its rank in the environment
** (src/dist/dist.h) and trains its share of every batch.
**
** If one copy fails, the others are stopped (SIGTERM), so a crashed rank
** never leaves the rest waiting for it until their socket timeout; the
** launcher then exits with the failed copy's status, naming its rank.
*/
#define _POSIX_C_SOURCE 200809L /* setenv, kill, sigaction */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dist/dist.h"


int cli_launch_local(int argc, char **argv, int nproc) {
    /* the children's command line: "train" and every argument but
    ** --nproc-per-node (both spellings) */
    char **child = calloc((size_t)argc + 2, sizeof *child);
    pid_t *pids = calloc((size_t)nproc, sizeof *pids);
    if (!child || !pids) {
        free(child), free(pids);
        fprintf(stderr, "dorac: out of memory\n");
        return CLI_EXIT_IO;
    }
    int n = 0;
    child[n++] = "dorac";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--nproc-per-node")) {
            i++;
            continue;
        }
        if (!strncmp(argv[i], "--nproc-per-node=", 17)) continue;
        child[n++] = argv[i];
    }
    child[n] = NULL;
    int port = dorac_dist_free_port();
    if (port < 0) {
        free(child), free(pids);
        fprintf(stderr, "dorac: --nproc-per-node: no free TCP port on 127.0.0.1: %s\n", strerror(errno));
        return CLI_EXIT_IO;
    }
    char world[16], port_s[16];
    snprintf(world, sizeof world, "%d", nproc);
    snprintf(port_s, sizeof port_s, "%d", port);
    fflush(NULL);
    int started = 0, status = CLI_EXIT_OK;
    for (int r = 0; r < nproc; r++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "dorac: --nproc-per-node: cannot start rank %d: %s\n", r, strerror(errno));
            status = CLI_EXIT_IO;
            break;
        }
        if (pid == 0) {
            char rank[16];
            snprintf(rank, sizeof rank, "%d", r);
            setenv("RANK", rank, 1);
            setenv("LOCAL_RANK", rank, 1);
            setenv("WORLD_SIZE", world, 1);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", port_s, 1);
            execv("/proc/self/exe", child);
            fprintf(stderr, "dorac: rank %d: cannot run /proc/self/exe: %s\n", r, strerror(errno));
            _exit(127);
        }
        pids[started++] = pid;
    }
    /* wait for all; the first failure stops the rest */
    int live = started, failed_rank = -1;
    if (status != CLI_EXIT_OK)
        for (int r = 0; r < started; r++) kill(pids[r], SIGTERM);
    while (live > 0) {
        int ws;
        pid_t pid = waitpid(-1, &ws, 0);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        int r = 0;
        while (r < started && pids[r] != pid) r++;
        if (r == started) continue;
        pids[r] = -pids[r]; /* reaped */
        live--;
        int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
        if (code != 0 && failed_rank < 0 && status == CLI_EXIT_OK) {
            failed_rank = r;
            status = code;
            for (int k = 0; k < started; k++)
                if (pids[k] > 0) kill(pids[k], SIGTERM);
        }
    }
    if (failed_rank >= 0)
        fprintf(stderr, "dorac: rank %d of %d failed (exit status %d); the other ranks were stopped\n", failed_rank,
                nproc, status);
    free(child), free(pids);
    return status;
}
