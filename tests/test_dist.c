/*
** test_dist.c — data-parallel plumbing (src/dist/): reading the launcher's
** environment, the world-of-1 collectives, and the TCP collectives run by
** real processes (fork) over loopback, including the ways a job goes wrong:
** a rank that never comes, a rank with another world size, a duplicate
** rank, a peer that dies, ranks out of step. Then ZeRO-1: the shard plan
** (dist/shard.h), the per-owner collectives and gather_host for worlds of
** 1, 2 and 3, and the sharded optimizer (train/optimizer.h) against one
** process's: the same parameters bit for bit, the same checkpoint file,
** and checkpoints that load across world sizes. The asynchronous
** all-reduce (all_reduce_start/wait) for worlds of 1, 2 and 3: bit for bit
** all_reduce_sum's, with other collectives between the starts; a rank that
** dies or closes with reductions running is an error on the others, not a
** hang.
**
** Children report through their exit status (0: every check passed); the
** parent waits for them with a deadline and kills them past it, so a hang
** is a failure, not a stuck test.
*/
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv, fork, clock_gettime, mkdtemp */

#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/error.h"
#include "dist/dist.h"
#include "dist/shard.h"
#include "train/optimizer.h"
#include "test.h"

#define MAX_CHILDREN 4

static const char *const LAUNCHER_VARS[] = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "PMI_RANK", "PMI_SIZE", "PMI_LOCAL_RANK", "MPI_LOCALRANKID", "DORAC_DIST_TIMEOUT",
};

static void clear_env(void) {
    for (size_t i = 0; i < sizeof LAUNCHER_VARS / sizeof *LAUNCHER_VARS; i++)
        unsetenv(LAUNCHER_VARS[i]);
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool error_mentions(const char *a, const char *b) {
    const char *msg = dorac_last_error();
    bool ok = strstr(msg, a) && (!b || strstr(msg, b));
    if (!ok) fprintf(stderr, "  message was: %s\n", msg);
    return ok;
}

/* ---- environment ---------------------------------------------------------- */

/* Expects dorac_dist_env_read to fail naming `var` and `value`, leaving env as is. */
static void check_env_rejected(const char *var, const char *value) {
    dorac_dist_env env;
    memset(&env, 0x5a, sizeof env);
    dorac_dist_env before = env;
    CHECK_STATUS(dorac_dist_env_read(&env), DORAC_E_INVALID);
    CHECK(error_mentions(var, value));
    CHECK(memcmp(&env, &before, sizeof env) == 0);
}

static void test_env(void) {
    dorac_dist_env env;

    clear_env();
    CHECK_OK(dorac_dist_env_read(&env));
    CHECK(env.rank == 0 && env.world == 1 && env.local_rank == 0);
    CHECK(strcmp(env.master_addr, "127.0.0.1") == 0 && env.master_port == 29500);
    CHECK(strcmp(env.source, "none") == 0);

    /* torchrun, and its precedence over Open MPI */
    setenv("RANK", "2", 1);
    setenv("WORLD_SIZE", "4", 1);
    setenv("LOCAL_RANK", "0", 1);
    setenv("MASTER_ADDR", "10.1.2.3", 1);
    setenv("MASTER_PORT", "1234", 1);
    setenv("OMPI_COMM_WORLD_RANK", "1", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    CHECK_OK(dorac_dist_env_read(&env));
    CHECK(env.rank == 2 && env.world == 4 && env.local_rank == 0);
    CHECK(strcmp(env.master_addr, "10.1.2.3") == 0 && env.master_port == 1234);
    CHECK(strcmp(env.source, "torchrun") == 0);
    unsetenv("LOCAL_RANK");
    CHECK_OK(dorac_dist_env_read(&env));
    CHECK(env.local_rank == 2);

    /* Open MPI */
    clear_env();
    setenv("OMPI_COMM_WORLD_RANK", "1", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    setenv("PMI_RANK", "0", 1);
    setenv("PMI_SIZE", "1", 1);
    CHECK_OK(dorac_dist_env_read(&env));
    CHECK(env.rank == 1 && env.world == 2 && env.local_rank == 1);
    CHECK(strcmp(env.source, "openmpi") == 0);
    CHECK(strcmp(env.master_addr, "127.0.0.1") == 0 && env.master_port == 29500);

    /* MPICH: PMI_LOCAL_RANK, else MPI_LOCALRANKID, else the rank */
    clear_env();
    setenv("PMI_RANK", "3", 1);
    setenv("PMI_SIZE", "4", 1);
    CHECK_OK(dorac_dist_env_read(&env));
    CHECK(env.rank == 3 && env.world == 4 && env.local_rank == 3);
    CHECK(strcmp(env.source, "mpich") == 0);
    setenv("MPI_LOCALRANKID", "1", 1);
    CHECK_OK(dorac_dist_env_read(&env));
    CHECK(env.local_rank == 1);
    setenv("PMI_LOCAL_RANK", "0", 1);
    CHECK_OK(dorac_dist_env_read(&env));
    CHECK(env.local_rank == 0);

    /* malformed or inconsistent values */
    clear_env();
    setenv("WORLD_SIZE", "4", 1);
    setenv("RANK", "1x", 1);
    check_env_rejected("RANK", "1x");
    setenv("RANK", "", 1);
    check_env_rejected("RANK", "empty");
    setenv("RANK", " 1", 1); /* strtol would skip the space; the whole string must be digits */
    check_env_rejected("RANK", "' 1'");
    setenv("RANK", "-1", 1);
    check_env_rejected("RANK", "-1");
    setenv("RANK", "4", 1);
    check_env_rejected("RANK=4", "WORLD_SIZE=4");
    setenv("RANK", "99999999999999999999999", 1);
    check_env_rejected("RANK", "99999999999999999999999");
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "0", 1);
    check_env_rejected("WORLD_SIZE", "'0'");
    setenv("WORLD_SIZE", "65537", 1);
    check_env_rejected("WORLD_SIZE", "65537");
    setenv("WORLD_SIZE", "4", 1);
    setenv("LOCAL_RANK", "4", 1);
    check_env_rejected("LOCAL_RANK=4", NULL);
    setenv("LOCAL_RANK", "zero", 1);
    check_env_rejected("LOCAL_RANK", "zero");
    unsetenv("LOCAL_RANK");
    unsetenv("WORLD_SIZE");
    check_env_rejected("WORLD_SIZE", "RANK"); /* RANK alone */
    setenv("WORLD_SIZE", "4", 1);
    setenv("MASTER_PORT", "0", 1);
    check_env_rejected("MASTER_PORT", "'0'");
    setenv("MASTER_PORT", "65536", 1);
    check_env_rejected("MASTER_PORT", "65536");
    setenv("MASTER_PORT", "29500abc", 1);
    check_env_rejected("MASTER_PORT", "29500abc");
    unsetenv("MASTER_PORT");
    setenv("MASTER_ADDR", "", 1);
    check_env_rejected("MASTER_ADDR", NULL);

    clear_env();
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    check_env_rejected("OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=2");
    clear_env();
    setenv("PMI_SIZE", "2", 1);
    check_env_rejected("PMI_RANK", NULL);
    setenv("PMI_RANK", "1", 1);
    setenv("MPI_LOCALRANKID", "x", 1);
    check_env_rejected("MPI_LOCALRANKID", "'x'");
    clear_env();
}

/* ---- world of 1 ------------------------------------------------------------ */

static void test_single(void) {
    dorac_dist *d = NULL;
    CHECK_OK(dorac_dist_open_single(&d));
    if (!d) return;
    CHECK(strcmp(d->name, "single") == 0 && d->rank == 0 && d->world == 1);
    double v[3] = {1.5, -2.0, 1e300};
    CHECK_OK(d->all_reduce_host(d, v, 3));
    CHECK(v[0] == 1.5 && v[1] == -2.0 && v[2] == 1e300);
    char buf[4] = "abc";
    CHECK_OK(d->broadcast_host(d, buf, sizeof buf));
    CHECK(strcmp(buf, "abc") == 0);
    CHECK_OK(d->barrier(d));
    CHECK_OK(d->all_reduce_sum(d, NULL, NULL, 0));
    CHECK_OK(d->all_reduce_start(d, NULL, NULL, 0));
    CHECK_OK(d->all_reduce_wait(d));
    CHECK_STATUS(d->all_reduce_start(d, NULL, NULL, 1), DORAC_E_INVALID);
    dorac_dist_close(d);

    dorac_dist_env env = {0, 1, 0, "127.0.0.1", 29500, "none"};
    d = NULL;
    CHECK_OK(dorac_dist_open(&env, NULL, &d));
    CHECK(d && strcmp(d->name, "single") == 0);
    dorac_dist_close(d);

    /* tcp with a world of 1 needs no socket and changes nothing */
    d = NULL;
    CHECK_OK(dorac_dist_open_tcp(&env, &d));
    if (d) {
        CHECK(strcmp(d->name, "tcp") == 0);
        CHECK_OK(d->all_reduce_host(d, v, 3));
        CHECK(v[0] == 1.5 && v[1] == -2.0 && v[2] == 1e300);
        CHECK_OK(d->barrier(d));
        dorac_dist_close(d);
    }

    /* nccl without the CUDA backend is refused either way */
    env.world = 2;
    d = NULL;
    CHECK(dorac_dist_open_nccl(&env, NULL, &d) != DORAC_OK);
    CHECK(d == NULL);
#ifndef DORAC_HAVE_CUDA
    CHECK_STATUS(dorac_dist_open_nccl(&env, NULL, &d), DORAC_E_UNSUPPORTED);
    CHECK(error_mentions("without CUDA", NULL));
#endif
}

/* ---- processes ------------------------------------------------------------- */


static dorac_dist_env make_env(int rank, int world, int port) {
    dorac_dist_env env = {rank, world, rank, "127.0.0.1", port, "test"};
    return env;
}

/* Starts a child running fn(rank, world, port); its exit status is fn's. */
static pid_t spawn(int (*fn)(int, int, int), int rank, int world, int port) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        test_failures = 0; /* the child's own checks decide its status */
        exit(fn(rank, world, port));
    }
    return pid;
}

/* Waits up to `seconds` for the children; kills any still running. Returns
** how many did not exit with status 0. */
static int wait_children(const pid_t *pids, int n, double seconds) {
    int bad = 0, left = n;
    bool done[MAX_CHILDREN] = {false};
    double deadline = seconds_now() + seconds;
    while (left > 0) {
        for (int i = 0; i < n; i++) {
            if (done[i] || pids[i] <= 0) {
                if (!done[i]) {
                    done[i] = true;
                    left--;
                    bad++;
                }
                continue;
            }
            int st = 0;
            pid_t r = waitpid(pids[i], &st, WNOHANG);
            if (r == pids[i]) {
                done[i] = true;
                left--;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    fprintf(stderr, "  child %d (pid %d) failed, status 0x%x\n", i, (int)pids[i], st);
                    bad++;
                }
            }
        }
        if (left == 0) break;
        if (seconds_now() > deadline) {
            for (int i = 0; i < n; i++)
                if (!done[i]) {
                    fprintf(stderr, "  child %d (pid %d) hung; killing it\n", i, (int)pids[i]);
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], NULL, 0);
                    bad++;
                }
            break;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return bad;
}

/* The value rank r contributes at index i: inexact in binary, so the sum
** depends on the order of the additions. */
static double contribution(int r, size_t i) {
    return 0.1 * (double)(r + 1) + 1e-3 * (double)i + (r == 1 ? 1e17 : 0.0);
}

#define REDUCE_N 100003 /* more than one of rank 0's receive chunks */

/* One rank of the collectives test: every check runs on every rank. */
static int collectives_rank(int rank, int world, int port) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    CHECK(be != NULL);
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    CHECK_OK(dorac_dist_open(&env, be, &d)); /* a CPU backend picks tcp */
    if (!d) return 1;
    CHECK(d->rank == rank && d->world == world && strcmp(d->name, "tcp") == 0);

    /* all_reduce_host: bit-equal to adding in rank order 0, 1, ..., W-1 */
    double *v = malloc(REDUCE_N * sizeof *v), *want = malloc(REDUCE_N * sizeof *want);
    if (!v || !want) return 1;
    for (size_t i = 0; i < REDUCE_N; i++) {
        v[i] = contribution(rank, i);
        want[i] = contribution(0, i);
        for (int r = 1; r < world; r++) want[i] += contribution(r, i);
    }
    CHECK_OK(d->all_reduce_host(d, v, REDUCE_N));
    CHECK(memcmp(v, want, REDUCE_N * sizeof *v) == 0);
    CHECK_OK(d->all_reduce_host(d, NULL, 0));
    double small[2] = {(double)rank, 1.0};
    CHECK_OK(d->all_reduce_host(d, small, 2));
    CHECK(small[0] == (double)(world * (world - 1) / 2) && small[1] == (double)world);
    free(v);
    free(want);

    /* broadcast_host */
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = rank == 0 ? (unsigned char)(i * 7 + 3) : 0xee;
    CHECK_OK(d->broadcast_host(d, buf, sizeof buf));
    bool same = true;
    for (size_t i = 0; i < sizeof buf; i++) same = same && buf[i] == (unsigned char)(i * 7 + 3);
    CHECK(same);
    CHECK_OK(d->broadcast_host(d, NULL, 0));
    CHECK_OK(d->barrier(d));

    /* all_reduce_sum on CPU tensors: a matrix, a vector, a strided view, an empty one */
    if (be) {
        dorac_tensor a, b, wide, empty;
        CHECK_OK(dorac_tensor_alloc(be, &a, DORAC_DTYPE_F32, 3, 4, "a"));
        CHECK_OK(dorac_tensor_alloc(be, &b, DORAC_DTYPE_F32, 1, 5, "b"));
        CHECK_OK(dorac_tensor_alloc(be, &wide, DORAC_DTYPE_F32, 2, 6, "wide"));
        empty = dorac_tensor_view(NULL, DORAC_DTYPE_F32, 0, 3);
        dorac_tensor view = wide;
        view.cols = 4; /* columns 4 and 5 are padding that must stay as they are */
        float ha[12], hb[5], hw[12];
        for (int i = 0; i < 12; i++) ha[i] = (float)((rank + 1) * (i + 1));
        for (int i = 0; i < 5; i++) hb[i] = (float)rank - 0.5f;
        for (int i = 0; i < 12; i++) hw[i] = (float)(100 * rank + i);
        CHECK_OK(be->upload(be, &a, ha, DORAC_DTYPE_F32));
        CHECK_OK(be->upload(be, &b, hb, DORAC_DTYPE_F32));
        CHECK_OK(be->upload(be, &wide, hw, DORAC_DTYPE_F32));
        const dorac_tensor *ts[4] = {&a, &empty, &b, &view};
        CHECK_OK(d->all_reduce_sum(d, be, ts, 4));
        CHECK_OK(be->download(be, ha, DORAC_DTYPE_F32, &a));
        CHECK_OK(be->download(be, hb, DORAC_DTYPE_F32, &b));
        CHECK_OK(be->download(be, hw, DORAC_DTYPE_F32, &wide));
        int rank_sum = world * (world - 1) / 2, w_sum = world * (world + 1) / 2;
        for (int i = 0; i < 12; i++) CHECK(ha[i] == (float)(w_sum * (i + 1)));
        for (int i = 0; i < 5; i++) CHECK(hb[i] == (float)rank_sum - 0.5f * (float)world);
        for (int i = 0; i < 12; i++) {
            bool pad = i % 6 >= 4;
            float expect = pad ? (float)(100 * rank + i) : (float)(100 * rank_sum + world * i);
            CHECK(hw[i] == expect);
        }
        /* a non-float tensor is refused before anything is sent */
        dorac_tensor ids = dorac_tensor_view(NULL, DORAC_DTYPE_I32, 1, 1);
        const dorac_tensor *bad[1] = {&ids};
        CHECK_STATUS(d->all_reduce_sum(d, be, bad, 1), DORAC_E_UNSUPPORTED);
        dorac_tensor_free(be, &a);
        dorac_tensor_free(be, &b);
        dorac_tensor_free(be, &wide);
    }
    CHECK_OK(d->barrier(d));
    dorac_dist_close(d);
    dorac_backend_destroy(be);
    return test_failures ? 1 : 0;
}

static void test_collectives(void) {
    enum { W = 3 };
    int port = dorac_dist_free_port();
    CHECK(port > 0);
    pid_t pids[W];
    for (int r = 0; r < W; r++) pids[r] = spawn(collectives_rank, r, W, port);
    CHECK(wait_children(pids, W, 30.0) == 0);
}

/* A rank whose open must fail (rejected, or rank 0 gone): exits 0 if it did. */
static int rejected_rank(int rank, int world, int port) {
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    int rc = dorac_dist_open_tcp(&env, &d);
    dorac_dist_close(d);
    return rc != DORAC_OK ? 0 : 1;
}

/* Joins, then dies before the first collective. */
static int dying_rank(int rank, int world, int port) {
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    int rc = dorac_dist_open_tcp(&env, &d);
    dorac_dist_close(d);
    return rc == DORAC_OK ? 0 : 1;
}

/* Joins, then reduces two values where rank 0 reduces one; its call must
** fail once rank 0 gives up. */
static int out_of_step_rank(int rank, int world, int port) {
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    if (dorac_dist_open_tcp(&env, &d) != DORAC_OK) return 1;
    double x[2] = {1.0, 2.0};
    int rc = d->all_reduce_host(d, x, 2);
    dorac_dist_close(d);
    return rc != DORAC_OK ? 0 : 1;
}

static void test_failures_are_errors(void) {
    clear_env();
    setenv("DORAC_DIST_TIMEOUT", "2", 1);
    dorac_dist *d = NULL;

    /* rank 0 waits for a rank that never comes: an error after ~2 s */
    dorac_dist_env env = make_env(0, 2, dorac_dist_free_port());
    double t0 = seconds_now();
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_IO);
    double waited = seconds_now() - t0;
    CHECK(d == NULL);
    CHECK(error_mentions("timed out", "rank 1 missing"));
    CHECK(waited >= 1.5 && waited < 5.0);

    /* a rank with no rank 0 to reach */
    env = make_env(1, 2, dorac_dist_free_port());
    t0 = seconds_now();
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_IO);
    waited = seconds_now() - t0;
    CHECK(error_mentions("cannot reach rank 0", NULL));
    CHECK(waited >= 1.5 && waited < 5.0);

    /* a rank announcing another world size */
    int port = dorac_dist_free_port();
    pid_t pid = spawn(rejected_rank, 1, 3, port);
    env = make_env(0, 2, port);
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_INVALID);
    CHECK(error_mentions("world size 3", NULL));
    CHECK(wait_children(&pid, 1, 10.0) == 0);

    /* two processes claiming rank 1 */
    port = dorac_dist_free_port();
    pid_t two[2] = {spawn(rejected_rank, 1, 3, port), spawn(rejected_rank, 1, 3, port)};
    env = make_env(0, 3, port);
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_INVALID);
    CHECK(error_mentions("rank 1 joined twice", NULL));
    CHECK(wait_children(two, 2, 10.0) == 0);

    /* a peer that dies after joining: rank 0's collective fails, promptly */
    port = dorac_dist_free_port();
    pid = spawn(dying_rank, 1, 2, port);
    env = make_env(0, 2, port);
    CHECK_OK(dorac_dist_open_tcp(&env, &d));
    if (d) {
        double x = 1.0;
        t0 = seconds_now();
        CHECK_STATUS(d->all_reduce_host(d, &x, 1), DORAC_E_IO);
        CHECK(error_mentions("rank 1", NULL));
        CHECK(seconds_now() - t0 < 1.5);
        dorac_dist_close(d);
        d = NULL;
    }
    CHECK(wait_children(&pid, 1, 10.0) == 0);

    /* ranks calling different collectives: the mismatch is named */
    port = dorac_dist_free_port();
    pid = spawn(out_of_step_rank, 1, 2, port);
    env = make_env(0, 2, port);
    CHECK_OK(dorac_dist_open_tcp(&env, &d));
    if (d) {
        double x = 1.0;
        CHECK_STATUS(d->all_reduce_host(d, &x, 1), DORAC_E_FORMAT);
        CHECK(error_mentions("out of step", NULL));
        dorac_dist_close(d);
        d = NULL;
    }
    CHECK(wait_children(&pid, 1, 10.0) == 0);

    /* a malformed timeout */
    setenv("DORAC_DIST_TIMEOUT", "soon", 1);
    env = make_env(0, 2, dorac_dist_free_port());
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_INVALID);
    CHECK(error_mentions("DORAC_DIST_TIMEOUT", "soon"));
    unsetenv("DORAC_DIST_TIMEOUT");
}

/* ---- ZeRO-1: the shard plan ------------------------------------------------ */

/* Checks the plan p for t[0..n) against shard.h's contract: boundaries in
** order and within about a row of the even share, pieces that tile every
** tensor's rows in flat order, each inside its owner's range, and owned
** counts that add up. */
static void check_plan(const dorac_shard_plan *p, const dorac_tensor *const *t, size_t n, int world) {
    CHECK(p->world == world && p->n_tensors == n);
    uint64_t total = 0, max_cols = 1;
    for (size_t i = 0; i < n; i++) {
        total += (uint64_t)t[i]->rows * (uint64_t)t[i]->cols;
        if ((uint64_t)t[i]->cols > max_cols) max_cols = (uint64_t)t[i]->cols;
    }
    CHECK(p->total == total && p->begin[0] == 0 && p->begin[world] == total);
    CHECK(p->n_pieces <= n + (size_t)world - 1);
    bool balanced = true;
    for (int r = 0; r < world; r++) {
        CHECK(p->begin[r] <= p->begin[r + 1]);
        double off = fabs((double)dorac_shard_plan_count(p, r) - (double)total / world);
        balanced = balanced && off <= (double)max_cols + 2.0;
    }
    CHECK(balanced);
    uint64_t *owned = calloc((size_t)world, sizeof *owned);
    bool ok = owned != NULL;
    size_t k = 0;
    uint64_t flat = 0;
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t cols = (uint64_t)t[i]->cols, e = (uint64_t)t[i]->rows * cols;
        if (e == 0) { /* one piece of all its rows, owned by rank 0 */
            ok = k < p->n_pieces && p->pieces[k].tensor == i && p->pieces[k].owner == 0 && p->pieces[k].row0 == 0 &&
                 p->pieces[k].n_rows == t[i]->rows;
            k++;
            continue;
        }
        int64_t next_row = 0;
        while (ok && next_row < t[i]->rows) {
            ok = k < p->n_pieces && p->pieces[k].tensor == i && p->pieces[k].row0 == next_row &&
                 p->pieces[k].n_rows > 0 && p->pieces[k].owner >= 0 && p->pieces[k].owner < world;
            if (!ok) break;
            const dorac_shard_piece *pc = &p->pieces[k++];
            uint64_t first = flat + (uint64_t)pc->row0 * cols, last = first + (uint64_t)pc->n_rows * cols;
            ok = p->begin[pc->owner] <= first && last <= p->begin[pc->owner + 1];
            owned[pc->owner] += last - first;
            next_row += pc->n_rows;
        }
        ok = ok && next_row == t[i]->rows;
        flat += e;
    }
    CHECK(ok && k == p->n_pieces);
    for (int r = 0; ok && r < world; r++) CHECK(owned[r] == dorac_shard_plan_count(p, r));
    free(owned);
}

#define ZN 6 /* the trainables of the ZeRO tests: a matrix, a vector, an empty one, ... */
static const int64_t ZERO_SHAPES[ZN][2] = {{5, 7}, {1, 13}, {0, 4}, {64, 3}, {3, 1}, {17, 9}};

static void test_shard_plan(void) {
    dorac_tensor shapes[ZN + 1];
    const dorac_tensor *t[ZN + 1];
    for (int i = 0; i < ZN; i++) shapes[i] = dorac_tensor_view(NULL, DORAC_DTYPE_F32, ZERO_SHAPES[i][0], ZERO_SHAPES[i][1]);
    shapes[ZN] = dorac_tensor_view(NULL, DORAC_DTYPE_F32, 2, 0); /* rows but no columns */
    for (int i = 0; i <= ZN; i++) t[i] = &shapes[i];
    dorac_shard_plan p;
    for (int world = 1; world <= 7; world++) {
        CHECK_OK(dorac_shard_plan_init(&p, t, ZN + 1, world));
        check_plan(&p, t, ZN + 1, world);
        if (world == 1) { /* one whole piece per tensor */
            CHECK(p.n_pieces == ZN + 1);
            for (size_t k = 0; k < p.n_pieces && k <= ZN; k++)
                CHECK(p.pieces[k].tensor == k && p.pieces[k].row0 == 0 && p.pieces[k].n_rows == t[k]->rows);
        }
        dorac_shard_plan_free(&p);
    }
    /* boundaries go to the nearest row: 2 ranks over (5,7) + (1,13) = 48 split at 21, not 24 or 28 */
    CHECK_OK(dorac_shard_plan_init(&p, t, 2, 2));
    CHECK(p.begin[1] == 21 && p.n_pieces == 3);
    dorac_shard_plan_free(&p);
    /* a row larger than the share: one rank owns nothing */
    dorac_tensor row = dorac_tensor_view(NULL, DORAC_DTYPE_F32, 1, 100);
    const dorac_tensor *rows[1] = {&row};
    CHECK_OK(dorac_shard_plan_init(&p, rows, 1, 2));
    check_plan(&p, rows, 1, 2);
    CHECK(p.n_pieces == 1 && dorac_shard_plan_count(&p, 0) + dorac_shard_plan_count(&p, 1) == 100);
    dorac_shard_plan_free(&p);
    /* 2^40 elements over the most ranks: no overflow, exact shares */
    dorac_tensor big = dorac_tensor_view(NULL, DORAC_DTYPE_F32, (int64_t)1 << 20, (int64_t)1 << 20);
    const dorac_tensor *bigs[1] = {&big};
    CHECK_OK(dorac_shard_plan_init(&p, bigs, 1, 65536));
    check_plan(&p, bigs, 1, 65536);
    CHECK(p.n_pieces == 65536 && dorac_shard_plan_count(&p, 65535) == (uint64_t)1 << 24);
    dorac_shard_plan_free(&p);
    /* nothing to share (no tensors, or only empty ones) over several ranks:
    ** every rank owns nothing, an empty tensor is rank 0's */
    CHECK_OK(dorac_shard_plan_init(&p, t + 2, 1, 3)); /* (0, 4) */
    check_plan(&p, t + 2, 1, 3);
    CHECK(p.n_pieces == 1 && p.begin[1] == 0 && p.begin[2] == 0 && p.begin[3] == 0);
    dorac_shard_plan_free(&p);
    CHECK_OK(dorac_shard_plan_init(&p, t + ZN, 1, 2)); /* (2, 0) */
    check_plan(&p, t + ZN, 1, 2);
    dorac_shard_plan_free(&p);
    CHECK_OK(dorac_shard_plan_init(&p, NULL, 0, 4));
    CHECK(p.n_pieces == 0 && p.total == 0 && p.begin[2] == 0 && p.begin[4] == 0);
    dorac_shard_plan_free(&p);
    /* refused */
    CHECK_STATUS(dorac_shard_plan_init(&p, t, ZN, 0), DORAC_E_INVALID);
    CHECK(p.pieces == NULL && p.begin == NULL);
    CHECK_STATUS(dorac_shard_plan_init(&p, t, ZN, 65537), DORAC_E_INVALID);
    const dorac_tensor *with_null[2] = {&shapes[0], NULL};
    CHECK_STATUS(dorac_shard_plan_init(&p, with_null, 2, 2), DORAC_E_INVALID);
    CHECK(error_mentions("tensor 1", NULL));
    dorac_tensor negative = dorac_tensor_view(NULL, DORAC_DTYPE_F32, 3, 3);
    negative.rows = -3;
    const dorac_tensor *neg[1] = {&negative};
    CHECK_STATUS(dorac_shard_plan_init(&p, neg, 1, 2), DORAC_E_INVALID);
    dorac_tensor huge = dorac_tensor_view(NULL, DORAC_DTYPE_F32, (int64_t)1 << 40, (int64_t)1 << 30);
    const dorac_tensor *huges[1] = {&huge};
    CHECK_STATUS(dorac_shard_plan_init(&p, huges, 1, 2), DORAC_E_UNSUPPORTED);
    dorac_tensor quarter = dorac_tensor_view(NULL, DORAC_DTYPE_F32, (int64_t)1 << 31, (int64_t)1 << 31);
    const dorac_tensor *quarters[4] = {&quarter, &quarter, &quarter, &quarter}; /* 2^64 in all */
    CHECK_STATUS(dorac_shard_plan_init(&p, quarters, 4, 2), DORAC_E_UNSUPPORTED);
    CHECK(p.pieces == NULL);
    dorac_shard_plan_free(&p); /* a zeroed plan is fine */
}

/* ---- ZeRO-1: the per-owner collectives --------------------------------------- */

/* Rank r's element e of tensor i: summing these in another order than
** rank order changes the float result. */
static float owned_value(int r, size_t i, size_t e) {
    double x = 0.1 * (double)(r + 1) + 1e-3 * (double)e + 0.01 * (double)i;
    return (float)(r == 1 ? x * 1000.0 : x);
}

#define OWNED_N 6

/* One rank of the per-owner collectives test, on tensors with rank-dependent
** values: a matrix, an empty tensor, a vector, a strided view whose padding
** must stay as it is, one longer than rank 0's receive chunk, and one with
** rows but no columns. */
static int owned_rank(int rank, int world, int port) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    CHECK_OK(dorac_dist_open(&env, be, &d));
    if (!be || !d) return 1;
    static const int64_t shape[OWNED_N][2] = {{3, 4}, {0, 3}, {1, 5}, {2, 6}, {1, REDUCE_N}, {2, 0}};
    dorac_tensor mem[OWNED_N], view[OWNED_N];
    const dorac_tensor *ts[OWNED_N];
    int owner[OWNED_N];
    float *host[OWNED_N], *keep[OWNED_N];
    for (int i = 0; i < OWNED_N; i++) {
        CHECK_OK(dorac_tensor_alloc(be, &mem[i], DORAC_DTYPE_F32, shape[i][0], shape[i][1], "owned"));
        view[i] = mem[i];
        ts[i] = &view[i];
        owner[i] = (i + 1) % world;
        size_t count = (size_t)(shape[i][0] * shape[i][1]);
        host[i] = malloc(count * sizeof(float) + 1);
        keep[i] = malloc(count * sizeof(float) + 1);
        if (!host[i] || !keep[i]) return 1;
    }
    view[3].cols = 4; /* columns 4 and 5 are padding */
#define FILL_ALL(r)                                                                          \
    for (int i = 0; i < OWNED_N; i++) {                                                      \
        size_t count_ = (size_t)(shape[i][0] * shape[i][1]);                                 \
        for (size_t e = 0; e < count_; e++) host[i][e] = owned_value(r, (size_t)i, e);       \
        if (count_) CHECK_OK(be->upload(be, &mem[i], host[i], DORAC_DTYPE_F32));             \
    }

    /* reduce_to_owner: the owner gets the rank-order sum, the others keep their values */
    FILL_ALL(rank);
    CHECK_OK(d->reduce_to_owner(d, be, ts, owner, OWNED_N));
    bool same = true;
    for (int i = 0; i < OWNED_N; i++) {
        size_t count = (size_t)(shape[i][0] * shape[i][1]);
        if (count) CHECK_OK(be->download(be, host[i], DORAC_DTYPE_F32, &mem[i]));
        for (size_t e = 0; e < count; e++) {
            bool pad = i == 3 && e % 6 >= 4;
            double sum = owned_value(0, (size_t)i, e);
            for (int r = 1; r < world; r++) sum += owned_value(r, (size_t)i, e);
            float want = owner[i] == rank && !pad ? (float)sum : owned_value(rank, (size_t)i, e);
            same = same && host[i][e] == want;
        }
        if (count) memcpy(keep[i], host[i], count * sizeof(float));
    }
    CHECK(same);
    /* ... and those sums are all_reduce_sum's, bit for bit */
    FILL_ALL(rank);
    CHECK_OK(d->all_reduce_sum(d, be, ts, OWNED_N));
    same = true;
    for (int i = 0; i < OWNED_N; i++) {
        size_t count = (size_t)(shape[i][0] * shape[i][1]);
        if (count) CHECK_OK(be->download(be, host[i], DORAC_DTYPE_F32, &mem[i]));
        if (owner[i] == rank && count) same = same && memcmp(host[i], keep[i], count * sizeof(float)) == 0;
    }
    CHECK(same);

    /* broadcast_from_owner: every rank ends with the owner's values */
    FILL_ALL(rank);
    CHECK_OK(d->broadcast_from_owner(d, be, ts, owner, OWNED_N));
    same = true;
    for (int i = 0; i < OWNED_N; i++) {
        size_t count = (size_t)(shape[i][0] * shape[i][1]);
        if (count) CHECK_OK(be->download(be, host[i], DORAC_DTYPE_F32, &mem[i]));
        for (size_t e = 0; e < count; e++) {
            bool pad = i == 3 && e % 6 >= 4;
            same = same && host[i][e] == owned_value(pad ? rank : owner[i], (size_t)i, e);
        }
    }
    CHECK(same);
#undef FILL_ALL

    /* gather_host: parts of different sizes, rank 1's empty; then rank 0's in place */
    size_t part_bytes[MAX_CHILDREN], total = 0;
    for (int r = 0; r < world; r++) total += part_bytes[r] = r == 1 ? 0 : (size_t)(5 + 7 * r);
    unsigned char part[64], all[256];
    for (size_t k = 0; k < sizeof part; k++) part[k] = (unsigned char)(rank * 31 + (int)k);
    memset(all, 0xee, sizeof all);
    for (int pass = 0; pass < 2; pass++) {
        const void *mine = part;
        if (pass == 1 && rank == 0) { /* rank 0's bytes already at the front of all */
            memcpy(all, part, part_bytes[0]);
            memset(all + part_bytes[0], 0xee, sizeof all - part_bytes[0]);
            mine = all;
        }
        CHECK_OK(d->gather_host(d, mine, rank == 0 ? all : NULL, part_bytes));
        if (rank == 0) {
            bool ok = true;
            size_t off = 0;
            for (int r = 0; r < world; r++)
                for (size_t k = 0; k < part_bytes[r]; k++) ok = ok && all[off++] == (unsigned char)(r * 31 + (int)k);
            CHECK(ok && off == total && all[total] == 0xee);
        }
    }

    /* refused before anything is sent, so the ranks stay in step */
    int bad_owner[1] = {world};
    CHECK_STATUS(d->reduce_to_owner(d, be, ts, bad_owner, 1), DORAC_E_INVALID);
    CHECK(error_mentions("owner", NULL));
    bad_owner[0] = -1;
    CHECK_STATUS(d->broadcast_from_owner(d, be, ts, bad_owner, 1), DORAC_E_INVALID);
    CHECK_STATUS(d->reduce_to_owner(d, be, ts, NULL, 1), DORAC_E_INVALID);
    if (world > 1) { /* a world of 1 moves nothing and checks no types */
        dorac_tensor ids = dorac_tensor_view(NULL, DORAC_DTYPE_I32, 1, 1);
        const dorac_tensor *bad[1] = {&ids};
        int zero[1] = {0};
        CHECK_STATUS(d->broadcast_from_owner(d, be, bad, zero, 1), DORAC_E_UNSUPPORTED);
    }
    CHECK_OK(d->barrier(d));
    for (int i = 0; i < OWNED_N; i++) {
        dorac_tensor_free(be, &mem[i]);
        free(host[i]);
        free(keep[i]);
    }
    dorac_dist_close(d);
    dorac_backend_destroy(be);
    return test_failures ? 1 : 0;
}

/* Three tensors of 3M elements: more than one host batch of the tcp
** collectives (8M doubles), with owners that change inside a batch. The
** values are small integers, so every sum is exact. */
static int big_owned_rank(int rank, int world, int port) {
    enum { BIG_ROWS = 1000, BIG_COLS = 3000, BIG_N = 3 };
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    CHECK_OK(dorac_dist_open(&env, be, &d));
    size_t count = (size_t)BIG_ROWS * BIG_COLS;
    float *h = malloc(count * sizeof *h);
    if (!be || !d || !h) return 1;
    dorac_tensor t[BIG_N];
    const dorac_tensor *ts[BIG_N];
    int owner[BIG_N] = {1, 0, world - 1};
    for (int i = 0; i < BIG_N; i++) {
        CHECK_OK(dorac_tensor_alloc(be, &t[i], DORAC_DTYPE_F32, BIG_ROWS, BIG_COLS, "big"));
        ts[i] = &t[i];
    }
    for (int op = 0; op < 2; op++) {
        for (int i = 0; i < BIG_N; i++) {
            for (size_t e = 0; e < count; e++) h[e] = (float)(rank * 4096 + i * 1024 + (int)(e % 1000));
            CHECK_OK(be->upload(be, &t[i], h, DORAC_DTYPE_F32));
        }
        if (op == 0) CHECK_OK(d->reduce_to_owner(d, be, ts, owner, BIG_N));
        else CHECK_OK(d->broadcast_from_owner(d, be, ts, owner, BIG_N));
        bool ok = true;
        for (int i = 0; i < BIG_N; i++) {
            CHECK_OK(be->download(be, h, DORAC_DTYPE_F32, &t[i]));
            for (size_t e = 0; e < count && ok; e++) {
                float base = (float)(i * 1024 + (int)(e % 1000)), want;
                if (op == 1) want = (float)(owner[i] * 4096) + base;
                else if (owner[i] == rank) want = (float)(4096 * world * (world - 1) / 2) + (float)world * base;
                else want = (float)(rank * 4096) + base;
                ok = h[e] == want;
            }
        }
        CHECK(ok);
    }
    for (int i = 0; i < BIG_N; i++) dorac_tensor_free(be, &t[i]);
    free(h);
    dorac_dist_close(d);
    dorac_backend_destroy(be);
    return test_failures ? 1 : 0;
}

static void test_owned_collectives(void) {
    for (int world = 1; world <= 3; world++) {
        int port = dorac_dist_free_port();
        CHECK(port > 0);
        pid_t pids[MAX_CHILDREN];
        for (int r = 0; r < world; r++) pids[r] = spawn(owned_rank, r, world, port);
        CHECK(wait_children(pids, world, 60.0) == 0);
    }
    int port = dorac_dist_free_port();
    pid_t pids[2] = {spawn(big_owned_rank, 0, 2, port), spawn(big_owned_rank, 1, 2, port)};
    CHECK(wait_children(pids, 2, 120.0) == 0);
}

/* ---- the asynchronous all-reduce ------------------------------------------- */

#define ASYNC_N 6     /* tensors, in ASYNC_LISTS lists */
#define ASYNC_LISTS 4
#define ASYNC_SMALL 20 /* one-tensor starts before a single wait */

/* A rank-dependent pause of 0-3 ms, so the ranks reach each call at
** different moments and the thread's timing varies. */
static void jitter(int rank, int k) {
    struct timespec ts = {0, (long)((rank * 7 + k * 3) % 4) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Downloads the whole allocation mem (a strided view's padding included). */
static void download_all(dorac_backend *be, const dorac_tensor *mem, float *h) {
    if (mem->rows > 0 && mem->cols > 0) CHECK_OK(be->download(be, h, DORAC_DTYPE_F32, mem));
}

/* One rank of the asynchronous all-reduce test: lists of tensors started
** one by one with host all-reduces, barriers, broadcasts and a
** reduce_to_owner between them, then one wait; the results must be
** all_reduce_sum's on the same values, bit for bit, and the collectives
** between must have their own results. The shapes are owned_rank's, plus
** one larger matrix. */
static int async_rank(int rank, int world, int port) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    CHECK_OK(dorac_dist_open(&env, be, &d));
    if (!be || !d) return 1;
    static const int64_t shape[ASYNC_N][2] = {{3, 4}, {0, 3}, {1, 5}, {2, 6}, {1, REDUCE_N}, {40, 50}};
    static const size_t list_start[ASYNC_LISTS + 1] = {0, 2, 3, 5, 6};
    dorac_tensor mem_a[ASYNC_N], mem_s[ASYNC_N], view_a[ASYNC_N], view_s[ASYNC_N], owned;
    const dorac_tensor *ta[ASYNC_N], *ts[ASYNC_N], *to[1] = {&owned};
    float *ha = malloc(REDUCE_N * sizeof *ha), *hs = malloc(REDUCE_N * sizeof *hs);
    if (!ha || !hs) return 1;
    for (int i = 0; i < ASYNC_N; i++) {
        CHECK_OK(dorac_tensor_alloc(be, &mem_a[i], DORAC_DTYPE_F32, shape[i][0], shape[i][1], "async"));
        CHECK_OK(dorac_tensor_alloc(be, &mem_s[i], DORAC_DTYPE_F32, shape[i][0], shape[i][1], "sync"));
        view_a[i] = mem_a[i], view_s[i] = mem_s[i];
        ta[i] = &view_a[i], ts[i] = &view_s[i];
    }
    view_a[3].cols = view_s[3].cols = 4; /* columns 4 and 5 are padding */
    CHECK_OK(dorac_tensor_alloc(be, &owned, DORAC_DTYPE_F32, 2, 3, "owned"));
    int owner[1] = {world - 1};

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < ASYNC_N; i++) {
            size_t count = (size_t)(shape[i][0] * shape[i][1]);
            for (size_t e = 0; e < count; e++) ha[e] = owned_value(rank, (size_t)(i + 10 * round), e);
            if (count) CHECK_OK(be->upload(be, &mem_a[i], ha, DORAC_DTYPE_F32));
            if (count) CHECK_OK(be->upload(be, &mem_s[i], ha, DORAC_DTYPE_F32));
        }
        for (size_t e = 0; e < 6; e++) ha[e] = owned_value(rank, 99, e);
        CHECK_OK(be->upload(be, &owned, ha, DORAC_DTYPE_F32));
        double x[2] = {rank + 0.5, (double)round};
        unsigned char buf[64];
        for (size_t k = 0; k < sizeof buf; k++) buf[k] = rank == 0 ? (unsigned char)(k + round) : 0;

        /* the lists go out between other collectives, in the same order on every rank */
        const dorac_tensor *const *lists = ta;
        for (int k = 0; k < ASYNC_LISTS; k++) {
            CHECK_OK(d->all_reduce_start(d, be, lists + list_start[k], list_start[k + 1] - list_start[k]));
            jitter(rank, k + round);
            if (k == 0) CHECK_OK(d->all_reduce_host(d, x, 2));
            if (k == 1) CHECK_OK(d->barrier(d));
            if (k == 2) CHECK_OK(d->broadcast_host(d, buf, sizeof buf));
            if (k == 2) CHECK_OK(d->reduce_to_owner(d, be, to, owner, 1));
        }
        CHECK_OK(d->all_reduce_wait(d));
        CHECK_OK(d->all_reduce_sum(d, be, ts, ASYNC_N));

        CHECK(x[0] == (double)world * (world - 1) / 2 + 0.5 * world && x[1] == (double)(world * round));
        bool same = true;
        for (size_t k = 0; k < sizeof buf; k++) same = same && buf[k] == (unsigned char)(k + round);
        CHECK(same);
        CHECK_OK(be->download(be, ha, DORAC_DTYPE_F32, &owned));
        for (size_t e = 0; e < 6; e++) {
            double sum = owned_value(0, 99, e);
            for (int r = 1; r < world; r++) sum += owned_value(r, 99, e);
            same = same && ha[e] == (owner[0] == rank ? (float)sum : owned_value(rank, 99, e));
        }
        CHECK(same);
        /* the same bits as all_reduce_sum, which are the rank-order sums */
        for (int i = 0; i < ASYNC_N; i++) {
            size_t count = (size_t)(shape[i][0] * shape[i][1]);
            download_all(be, &mem_a[i], ha);
            download_all(be, &mem_s[i], hs);
            CHECK(memcmp(ha, hs, count * sizeof *ha) == 0);
            for (size_t e = 0; e < count; e++) {
                bool pad = i == 3 && e % 6 >= 4;
                size_t id = (size_t)(i + 10 * round);
                double sum = owned_value(0, id, e);
                for (int r = 1; r < world; r++) sum += owned_value(r, id, e);
                same = same && ha[e] == (pad ? owned_value(rank, id, e) : (float)sum);
            }
            CHECK(same);
        }
    }

    /* nothing started, or nothing to sum: wait returns at once */
    CHECK_OK(d->all_reduce_wait(d));
    CHECK_OK(d->all_reduce_start(d, be, NULL, 0));
    CHECK_OK(d->all_reduce_wait(d));
    /* a bad list is refused before anything is sent: the ranks stay in step */
    dorac_tensor ids = dorac_tensor_view(NULL, DORAC_DTYPE_I32, 1, 1);
    const dorac_tensor *bad[1] = {&ids};
    if (world > 1) CHECK_STATUS(d->all_reduce_start(d, be, bad, 1), DORAC_E_UNSUPPORTED);
    CHECK_STATUS(d->all_reduce_start(d, be, NULL, 1), DORAC_E_INVALID);
    CHECK_OK(d->barrier(d));

    /* many one-tensor starts before a single wait (the earlier ones are
    ** retired by the later starts) */
    dorac_tensor small[ASYNC_SMALL];
    for (int k = 0; k < ASYNC_SMALL; k++) {
        CHECK_OK(dorac_tensor_alloc(be, &small[k], DORAC_DTYPE_F32, 1, 7, "small"));
        for (size_t e = 0; e < 7; e++) ha[e] = owned_value(rank, (size_t)(50 + k), e);
        CHECK_OK(be->upload(be, &small[k], ha, DORAC_DTYPE_F32));
        const dorac_tensor *one[1] = {&small[k]};
        CHECK_OK(d->all_reduce_start(d, be, one, 1));
        if (k % 5 == 0) jitter(rank, k);
    }
    CHECK_OK(d->all_reduce_wait(d));
    bool same = true;
    for (int k = 0; k < ASYNC_SMALL; k++) {
        CHECK_OK(be->download(be, ha, DORAC_DTYPE_F32, &small[k]));
        for (size_t e = 0; e < 7; e++) {
            double sum = owned_value(0, (size_t)(50 + k), e);
            for (int r = 1; r < world; r++) sum += owned_value(r, (size_t)(50 + k), e);
            same = same && ha[e] == (float)sum;
        }
        dorac_tensor_free(be, &small[k]);
    }
    CHECK(same);
    /* started and never waited for: closing abandons it, promptly, whatever
    ** the other ranks' threads are doing */
    CHECK_OK(d->barrier(d));
    CHECK_OK(d->all_reduce_start(d, be, ta + 4, 2));
    double t0 = seconds_now();
    dorac_dist_close(d);
    CHECK(seconds_now() - t0 < 2.0);

    for (int i = 0; i < ASYNC_N; i++) dorac_tensor_free(be, &mem_a[i]), dorac_tensor_free(be, &mem_s[i]);
    dorac_tensor_free(be, &owned);
    free(ha), free(hs);
    dorac_backend_destroy(be);
    return test_failures ? 1 : 0;
}

static bool async_close_instead; /* set by the parent before forking: the leaving rank closes, or exits */

/* Rank 1 starts two all-reduces and leaves while they may still run: it
** exits (a crash), or closes its dist, which must return promptly. The
** others start three: the first failure must come back (from a start or
** from wait) within a few seconds, far below the timeout, and every later
** call must return it too. */
static int async_dying_rank(int rank, int world, int port) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    CHECK_OK(dorac_dist_open(&env, be, &d));
    if (!be || !d) return 1;
    dorac_tensor t[3];
    float h[1000];
    for (int k = 0; k < 3; k++) {
        CHECK_OK(dorac_tensor_alloc(be, &t[k], DORAC_DTYPE_F32, 1, 1000, "t"));
        for (int e = 0; e < 1000; e++) h[e] = (float)(rank + k + e);
        CHECK_OK(be->upload(be, &t[k], h, DORAC_DTYPE_F32));
    }
    CHECK_OK(d->barrier(d));
    double t0 = seconds_now();
    if (rank == 1) {
        for (int k = 0; k < 2; k++) {
            const dorac_tensor *one[1] = {&t[k]};
            CHECK_OK(d->all_reduce_start(d, be, one, 1));
        }
        if (!async_close_instead) _exit(test_failures ? 1 : 0);
        dorac_dist_close(d);
        CHECK(seconds_now() - t0 < 2.0);
        for (int k = 0; k < 3; k++) dorac_tensor_free(be, &t[k]);
        dorac_backend_destroy(be);
        return test_failures ? 1 : 0;
    }
    int rc = DORAC_OK;
    for (int k = 0; k < 3 && rc == DORAC_OK; k++) {
        const dorac_tensor *one[1] = {&t[k]};
        rc = d->all_reduce_start(d, be, one, 1);
    }
    if (rc == DORAC_OK) rc = d->all_reduce_wait(d);
    char me[32];
    snprintf(me, sizeof me, "dist rank %d: ", rank);
    CHECK(rc == DORAC_E_IO);
    CHECK(error_mentions(me, NULL));
    CHECK(seconds_now() - t0 < 4.0);
    /* the failure sticks: the stream is never read again */
    CHECK_STATUS(d->barrier(d), rc);
    CHECK_STATUS(d->all_reduce_wait(d), rc);
    dorac_dist_close(d);
    for (int k = 0; k < 3; k++) dorac_tensor_free(be, &t[k]);
    dorac_backend_destroy(be);
    return test_failures ? 1 : 0;
}

static void test_async_all_reduce(void) {
    for (int world = 1; world <= 3; world++) {
        int port = dorac_dist_free_port();
        CHECK(port > 0);
        pid_t pids[MAX_CHILDREN];
        for (int r = 0; r < world; r++) pids[r] = spawn(async_rank, r, world, port);
        CHECK(wait_children(pids, world, 60.0) == 0);
    }
    clear_env();
    setenv("DORAC_DIST_TIMEOUT", "5", 1);
    for (int variant = 0; variant < 2; variant++) {
        async_close_instead = variant == 1;
        int port = dorac_dist_free_port();
        pid_t pids[3];
        for (int r = 0; r < 3; r++) pids[r] = spawn(async_dying_rank, r, 3, port);
        CHECK(wait_children(pids, 3, 20.0) == 0);
    }
    unsetenv("DORAC_DIST_TIMEOUT");
}

/* ---- ZeRO-1: the sharded optimizer ------------------------------------------- */

static char zero_dir[64]; /* made by the parent before forking */

/* One optimizer with its own parameters and gradients, on the CPU. */
typedef struct zero_side {
    dorac_tensor p[ZN], g[ZN];
    dorac_trainable tr[ZN];
    dorac_optimizer o;
} zero_side;

static size_t zero_count(size_t i) {
    return (size_t)(ZERO_SHAPES[i][0] * ZERO_SHAPES[i][1]);
}

/* The same initial parameters on every rank; o over dist d, sharded or not. */
static int zero_side_init(zero_side *z, dorac_backend *be, dorac_dist *d, bool shard) {
    memset(z, 0, sizeof *z);
    float h[256];
    for (size_t i = 0; i < ZN; i++) {
        DORAC_TRY(dorac_tensor_alloc(be, &z->p[i], DORAC_DTYPE_F32, ZERO_SHAPES[i][0], ZERO_SHAPES[i][1], "p"));
        DORAC_TRY(dorac_tensor_alloc(be, &z->g[i], DORAC_DTYPE_F32, ZERO_SHAPES[i][0], ZERO_SHAPES[i][1], "g"));
        for (size_t e = 0; e < zero_count(i); e++) h[e] = (float)(0.05 * sin(1.0 + 7.0 * (double)i + (double)e));
        if (zero_count(i)) DORAC_TRY(be->upload(be, &z->p[i], h, DORAC_DTYPE_F32));
        snprintf(z->tr[i].name, sizeof z->tr[i].name, "layers.%zu.weight", i);
        z->tr[i].value = &z->p[i];
        z->tr[i].grad = &z->g[i];
        z->tr[i].decay = i % 2 == 0;
    }
    return dorac_optimizer_init_dist(&z->o, be, z->tr, ZN, d, shard);
}

static void zero_side_free(zero_side *z, dorac_backend *be) {
    dorac_optimizer_free(&z->o);
    for (size_t i = 0; i < ZN; i++) dorac_tensor_free(be, &z->p[i]), dorac_tensor_free(be, &z->g[i]);
}

/* Step s's gradients: rank `rank`'s share, or (rank < 0) their rank-order
** sum over the world, as one process would hold it. */
static int zero_grads(zero_side *z, dorac_backend *be, int rank, int world, int s) {
    float h[256];
    for (size_t i = 0; i < ZN; i++) {
        for (size_t e = 0; e < zero_count(i); e++) {
            double sum = 0;
            for (int r = rank < 0 ? 0 : rank; r < (rank < 0 ? world : rank + 1); r++)
                sum += (double)owned_value(r, i, e + (size_t)s) * (e % 3 == 1 ? -1.0 : 1.0);
            h[e] = (float)sum;
        }
        if (zero_count(i)) DORAC_TRY(be->upload(be, &z->g[i], h, DORAC_DTYPE_F32));
    }
    return DORAC_OK;
}

/* Largest |a - b| / max(|b|, 1e-3) over the tensors (0: identical). */
static double zero_diff(dorac_backend *be, const dorac_tensor *a, const dorac_tensor *b, size_t n) {
    float ha[256], hb[256];
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        size_t count = (size_t)(a[i].rows * a[i].cols);
        if (!count) continue;
        if (be->download(be, ha, DORAC_DTYPE_F32, &a[i]) || be->download(be, hb, DORAC_DTYPE_F32, &b[i])) return INFINITY;
        for (size_t e = 0; e < count; e++)
            worst = test_worst(worst, fabs((double)ha[e] - hb[e]) / fmax(fabs((double)hb[e]), 1e-3));
    }
    return worst;
}

static bool files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* A backend download that fails, as a device error would. */
static int failing_download(dorac_backend *be, void *dst, dorac_dtype dst_type, const dorac_tensor *src) {
    (void)be, (void)dst, (void)dst_type, (void)src;
    return dorac_error(DORAC_E_BACKEND, "test: download refused");
}

/* One rank of the sharded-optimizer test. Three optimizers over the same
** gradients: `ref` one process fed the summed gradients, `zero` ZeRO-1 over
** the ranks, `rep` replicated over the ranks (all-reduce). */
static int zero_rank(int rank, int world, int port) {
    dorac_backend *be = dorac_backend_cpu_create((dorac_cpu_params){0});
    dorac_dist_env env = make_env(rank, world, port);
    dorac_dist *d = NULL;
    CHECK_OK(dorac_dist_open(&env, be, &d));
    if (!be || !d) return 1;
    zero_side ref, zero, rep;
    CHECK_OK(zero_side_init(&ref, be, NULL, false));
    CHECK_OK(zero_side_init(&zero, be, d, true));
    CHECK_OK(zero_side_init(&rep, be, d, false));
    CHECK(zero.o.sharded == (world > 1) && !rep.o.sharded && !ref.o.sharded);

    /* the AdamW state: about 1/W of it here, all of it over the ranks */
    double bytes = (double)zero.o.state_bytes;
    CHECK_OK(d->all_reduce_host(d, &bytes, 1));
    CHECK(bytes == (double)ref.o.state_bytes && rep.o.state_bytes == ref.o.state_bytes);
    CHECK(fabs((double)zero.o.state_bytes - (double)ref.o.state_bytes / world) <= 2.0 * 4 * (13 + 2));

    /* no clipping: every parameter bit for bit one process's */
    dorac_adamw_config c = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1,
                            .max_grad_norm = 0};
    for (int s = 0; s < 3; s++) {
        double n_ref = 0, n_zero = 0, n_rep = 0;
        CHECK_OK(zero_grads(&ref, be, -1, world, s));
        CHECK_OK(zero_grads(&zero, be, rank, world, s));
        CHECK_OK(zero_grads(&rep, be, rank, world, s));
        CHECK_OK(dorac_optimizer_sync_grads(&zero.o));
        CHECK_OK(dorac_optimizer_sync_grads(&rep.o));
        CHECK_OK(dorac_optimizer_grad_norm(&ref.o, &n_ref));
        CHECK_OK(dorac_optimizer_grad_norm(&zero.o, &n_zero));
        CHECK_OK(dorac_optimizer_grad_norm(&rep.o, &n_rep));
        CHECK_NEAR(n_zero, n_ref, 1e-12 * n_ref);
        CHECK(n_rep == n_ref);
        CHECK_OK(dorac_optimizer_step(&ref.o, &c, c.lr, n_ref));
        CHECK_OK(dorac_optimizer_step(&zero.o, &c, c.lr, n_zero));
        CHECK_OK(dorac_optimizer_step(&rep.o, &c, c.lr, n_rep));
        CHECK(zero_diff(be, zero.p, ref.p, ZN) == 0.0);
        CHECK(zero_diff(be, rep.p, ref.p, ZN) == 0.0);
    }

    /* the sharded state is written whole: the same file as one process's */
    char ref_path[128], zero_path[128];
    snprintf(ref_path, sizeof ref_path, "%s/ref-%d.safetensors", zero_dir, world);
    snprintf(zero_path, sizeof zero_path, "%s/zero-%d.safetensors", zero_dir, world);
    if (rank == 0) CHECK_OK(dorac_optimizer_save(&ref.o, ref_path));
    CHECK_OK(dorac_optimizer_save(&zero.o, rank == 0 ? zero_path : NULL));
    CHECK_OK(d->barrier(d));
    if (rank == 0) CHECK(files_equal(ref_path, zero_path));

    /* a rank that cannot read its shard: nobody writes a checkpoint (rank 0
    ** would otherwise write the garbage that rank sent) and all fail */
    if (world > 1) {
        char bad_path[128];
        snprintf(bad_path, sizeof bad_path, "%s/bad-%d.safetensors", zero_dir, world);
        dorac_backend failing = *be, *real = zero.o.be;
        failing.download = failing_download;
        if (rank == world - 1) zero.o.be = &failing;
        CHECK(dorac_optimizer_save(&zero.o, rank == 0 ? bad_path : NULL) != DORAC_OK);
        zero.o.be = real;
        CHECK_OK(d->barrier(d));
        if (rank == 0) CHECK(access(bad_path, F_OK) != 0);
    }

    /* resume across world sizes: one process's file into this rank's shard,
    ** the sharded file into one process */
    zero_side back, one;
    CHECK_OK(zero_side_init(&back, be, d, true));
    CHECK_OK(zero_side_init(&one, be, NULL, false));
    CHECK_OK(dorac_optimizer_load(&back.o, ref_path));
    CHECK_OK(dorac_optimizer_load(&one.o, zero_path));
    CHECK(back.o.step == 3 && one.o.step == 3 && back.o.n_owned == zero.o.n_owned);
    CHECK(zero_diff(be, back.o.m, zero.o.m, zero.o.n_owned) == 0.0);
    CHECK(zero_diff(be, back.o.v, zero.o.v, zero.o.n_owned) == 0.0);
    CHECK(zero_diff(be, one.o.m, ref.o.m, ZN) == 0.0 && zero_diff(be, one.o.v, ref.o.v, ZN) == 0.0);
    /* a state file for other tensors is refused on every rank, naming the tensor */
    snprintf(back.o.params[3].name, sizeof back.o.params[3].name, "other");
    CHECK_STATUS(dorac_optimizer_load(&back.o, ref_path), DORAC_E_FORMAT);
    CHECK(error_mentions("other.exp_avg", NULL));
    zero_side_free(&back, be);
    zero_side_free(&one, be);

    /* clipping: the global norm over the shards scales every piece alike */
    c.max_grad_norm = 0.5;
    for (int s = 3; s < 5; s++) {
        double n_ref = 0, n_zero = 0;
        CHECK_OK(zero_grads(&ref, be, -1, world, s));
        CHECK_OK(zero_grads(&zero, be, rank, world, s));
        CHECK_OK(dorac_optimizer_sync_grads(&zero.o));
        CHECK_OK(dorac_optimizer_grad_norm(&ref.o, &n_ref));
        CHECK_OK(dorac_optimizer_grad_norm(&zero.o, &n_zero));
        CHECK(n_ref > 2 * c.max_grad_norm);
        CHECK_NEAR(n_zero, n_ref, 1e-12 * n_ref);
        CHECK_OK(dorac_optimizer_step(&ref.o, &c, c.lr, n_ref));
        CHECK_OK(dorac_optimizer_step(&zero.o, &c, c.lr, n_zero));
        CHECK_LE(zero_diff(be, zero.p, ref.p, ZN), 1e-6);
    }
    CHECK_OK(d->barrier(d));
    zero_side_free(&ref, be);
    zero_side_free(&zero, be);
    zero_side_free(&rep, be);
    dorac_dist_close(d);
    dorac_backend_destroy(be);
    return test_failures ? 1 : 0;
}

static void test_zero_optimizer(void) {
    snprintf(zero_dir, sizeof zero_dir, "/tmp/dorac-zero-XXXXXX");
    CHECK(mkdtemp(zero_dir) != NULL);
    for (int world = 1; world <= 3; world++) {
        int port = dorac_dist_free_port();
        pid_t pids[MAX_CHILDREN];
        for (int r = 0; r < world; r++) pids[r] = spawn(zero_rank, r, world, port);
        CHECK(wait_children(pids, world, 60.0) == 0);
        char path[128];
        snprintf(path, sizeof path, "%s/ref-%d.safetensors", zero_dir, world);
        unlink(path);
        snprintf(path, sizeof path, "%s/zero-%d.safetensors", zero_dir, world);
        unlink(path);
    }
    rmdir(zero_dir);
}

/* NCCL on one GPU (a world of 1 through the nccl path): the communicator
** starts, sums (all-reduce, also started and waited for, and
** reduce-to-owner) and broadcasts over one rank leave F32 and BF16 tensors
** as they were, the host collectives run over the rendezvous, and strided
** views and bad owners are refused. Runs only where a CUDA device is
** present. */
static void test_nccl_one_gpu(void) {
    if (!dorac_cuda_available()) return;
    dorac_backend *be = dorac_backend_cuda_create((dorac_cuda_params){0});
    CHECK(be != NULL);
    if (!be) return;
    dorac_dist_env env = make_env(0, 1, dorac_dist_free_port());
    dorac_dist *d = NULL;
    CHECK_OK(dorac_dist_open_nccl(&env, be, &d));
    if (d) {
        CHECK(strcmp(d->name, "nccl") == 0);
        dorac_tensor f, h, wide;
        CHECK_OK(dorac_tensor_alloc(be, &f, DORAC_DTYPE_F32, 2, 3, "f"));
        CHECK_OK(dorac_tensor_alloc(be, &h, DORAC_DTYPE_BF16, 1, 4, "h"));
        CHECK_OK(dorac_tensor_alloc(be, &wide, DORAC_DTYPE_F32, 2, 4, "wide"));
        float hf[6] = {1, -2, 3.5f, 0.25f, 8, -16}, hh[4] = {1, 2, -3, 0.5f}, out[6];
        CHECK_OK(be->upload(be, &f, hf, DORAC_DTYPE_F32));
        CHECK_OK(be->upload(be, &h, hh, DORAC_DTYPE_F32));
        const dorac_tensor *ts[2] = {&f, &h};
        CHECK_OK(d->all_reduce_sum(d, be, ts, 2));
        CHECK_OK(be->download(be, out, DORAC_DTYPE_F32, &f));
        CHECK(memcmp(out, hf, sizeof hf) == 0);
        CHECK_OK(be->download(be, out, DORAC_DTYPE_F32, &h));
        CHECK(memcmp(out, hh, sizeof hh) == 0);
        dorac_tensor view = wide;
        view.cols = 3;
        const dorac_tensor *strided[1] = {&view};
        CHECK_STATUS(d->all_reduce_sum(d, be, strided, 1), DORAC_E_UNSUPPORTED);
        /* the asynchronous all-reduce on the communication stream, joined by
        ** wait or by the next device collective */
        CHECK_OK(d->all_reduce_wait(d));
        CHECK_OK(d->all_reduce_start(d, be, ts, 1));
        CHECK_OK(d->all_reduce_start(d, be, ts + 1, 1));
        CHECK_OK(d->all_reduce_wait(d));
        CHECK_OK(d->all_reduce_start(d, be, ts, 2));
        CHECK_OK(d->all_reduce_sum(d, be, ts, 2));
        CHECK_STATUS(d->all_reduce_start(d, be, strided, 1), DORAC_E_UNSUPPORTED);
        CHECK_OK(d->all_reduce_wait(d));
        CHECK_OK(be->download(be, out, DORAC_DTYPE_F32, &f));
        CHECK(memcmp(out, hf, sizeof hf) == 0);
        CHECK_OK(be->download(be, out, DORAC_DTYPE_F32, &h));
        CHECK(memcmp(out, hh, sizeof hh) == 0);
        /* ZeRO-1's collectives over one rank: ncclReduce and ncclBroadcast to and from rank 0 */
        int owner[2] = {0, 0};
        CHECK_OK(d->reduce_to_owner(d, be, ts, owner, 2));
        CHECK_OK(d->broadcast_from_owner(d, be, ts, owner, 2));
        CHECK_OK(be->download(be, out, DORAC_DTYPE_F32, &f));
        CHECK(memcmp(out, hf, sizeof hf) == 0);
        CHECK_OK(be->download(be, out, DORAC_DTYPE_F32, &h));
        CHECK(memcmp(out, hh, sizeof hh) == 0);
        owner[1] = 1;
        CHECK_STATUS(d->reduce_to_owner(d, be, ts, owner, 2), DORAC_E_INVALID);
        CHECK_STATUS(d->broadcast_from_owner(d, be, strided, owner, 1), DORAC_E_UNSUPPORTED);
        size_t part_bytes[1] = {sizeof hf};
        float all[6];
        CHECK_OK(d->gather_host(d, hf, all, part_bytes));
        CHECK(memcmp(all, hf, sizeof hf) == 0);
        double v = 2.5;
        CHECK_OK(d->all_reduce_host(d, &v, 1));
        CHECK(v == 2.5);
        CHECK_OK(d->barrier(d));
        dorac_tensor_free(be, &f);
        dorac_tensor_free(be, &h);
        dorac_tensor_free(be, &wide);
        dorac_dist_close(d);
    }
    dorac_backend_destroy(be);
}

int main(void) {
    test_env();
    test_single();
    test_collectives();
    test_failures_are_errors();
    test_shard_plan();
    test_owned_collectives();
    test_async_all_reduce();
    test_zero_optimizer();
    test_nccl_one_gpu();
    return test_report();
}
