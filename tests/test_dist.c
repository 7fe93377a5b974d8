/*
** test_dist.c — data-parallel plumbing (src/dist/): reading the launcher's
** environment, the world-of-1 collectives, and the TCP collectives run by
** real processes (fork) over loopback, including the ways a job goes wrong:
** a rank that never comes, a rank with another world size, a duplicate
** rank, a peer that dies, ranks out of step.
**
** Children report through their exit status (0: every check passed); the
** parent waits for them with a deadline and kills them past it, so a hang
** is a failure, not a stuck test.
*/
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv, fork, clock_gettime */

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

/* A TCP port on 127.0.0.1 that was free a moment ago. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t len = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

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
    int port = free_port();
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
    dorac_dist_env env = make_env(0, 2, free_port());
    double t0 = seconds_now();
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_IO);
    double waited = seconds_now() - t0;
    CHECK(d == NULL);
    CHECK(error_mentions("timed out", "rank 1 missing"));
    CHECK(waited >= 1.5 && waited < 5.0);

    /* a rank with no rank 0 to reach */
    env = make_env(1, 2, free_port());
    t0 = seconds_now();
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_IO);
    waited = seconds_now() - t0;
    CHECK(error_mentions("cannot reach rank 0", NULL));
    CHECK(waited >= 1.5 && waited < 5.0);

    /* a rank announcing another world size */
    int port = free_port();
    pid_t pid = spawn(rejected_rank, 1, 3, port);
    env = make_env(0, 2, port);
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_INVALID);
    CHECK(error_mentions("world size 3", NULL));
    CHECK(wait_children(&pid, 1, 10.0) == 0);

    /* two processes claiming rank 1 */
    port = free_port();
    pid_t two[2] = {spawn(rejected_rank, 1, 3, port), spawn(rejected_rank, 1, 3, port)};
    env = make_env(0, 3, port);
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_INVALID);
    CHECK(error_mentions("rank 1 joined twice", NULL));
    CHECK(wait_children(two, 2, 10.0) == 0);

    /* a peer that dies after joining: rank 0's collective fails, promptly */
    port = free_port();
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
    port = free_port();
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
    env = make_env(0, 2, free_port());
    CHECK_STATUS(dorac_dist_open_tcp(&env, &d), DORAC_E_INVALID);
    CHECK(error_mentions("DORAC_DIST_TIMEOUT", "soon"));
    unsetenv("DORAC_DIST_TIMEOUT");
}

/* NCCL on one GPU (a world of 1 through the nccl path): the communicator
** starts, sums over one rank leave F32 and BF16 tensors as they were, the
** host collectives run over the rendezvous, and strided views are refused.
** Runs only where a CUDA device is present. */
static void test_nccl_one_gpu(void) {
    if (!dorac_cuda_available()) return;
    dorac_backend *be = dorac_backend_cuda_create((dorac_cuda_params){0});
    CHECK(be != NULL);
    if (!be) return;
    dorac_dist_env env = make_env(0, 1, free_port());
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
    test_nccl_one_gpu();
    return test_report();
}
