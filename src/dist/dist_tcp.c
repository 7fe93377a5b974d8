/*
** dist_tcp.c — the TCP rendezvous (dist_tcp.h) and the "tcp" collectives
** built on it (dist.h).
**
** Wire format. Every number is little-endian on the wire; doubles travel as
** their native bytes, so all ranks must share one float format (they do on
** any cluster dorac runs on).
**   hello    16 bytes, a joining rank to rank 0, once:
**            "DORACDP1", rank (u32), world (u32)
**   message  a 16-byte header, then `nbytes` of payload:
**            magic (u32), tag (u32), nbytes (u64)
** The receiver knows what it expects next (collectives are called in the
** same order with the same sizes on every rank) and checks the tag and the
** byte count against that before reading any payload: a size from the wire
** never decides how much is read or allocated.
**
** Messages of each collective (tensors travel as doubles, in host batches):
**   all_reduce            reduce-up from each rank, reduce-down to each rank
**   reduce_to_owner       reduce-up from each rank; owned-sums to each rank
**                         >= 1 that owns a tensor of the batch: the sums of
**                         its tensors only, packed in order
**   broadcast_from_owner  owned-up from each rank >= 1 that owns a tensor
**                         of the batch (its tensors, packed); owned-down, the
**                         whole batch, to each rank
**   gather_host           gather from each rank >= 1 (even of 0 bytes)
**   broadcast             broadcast to each rank
**
** Invariants:
**   - Every socket has SO_RCVTIMEO and SO_SNDTIMEO set to the group's
**     timeout, so a peer that dies or stops is an error, never a hang.
**   - Sends use MSG_NOSIGNAL: a peer that closes never raises SIGPIPE.
**   - Rank 0 adds the values in rank order 0, 1, ..., W-1 and sends the same
**     bytes back to every rank (or owner), so all ranks hold identical sums
**     and reduce_to_owner's sums are all_reduce's, bit for bit.
**   - The per-owner collectives check every tensor and owner before the
**     first message, so a bad list fails on every rank alike and sends
**     nothing.
**   - On any failure every socket the failing call opened is closed.
**
** The asynchronous all-reduce (all_reduce_start / all_reduce_wait). A
** communication thread, started at the first all_reduce_start, runs the
** started requests one at a time in FIFO order, each one
** dorac_tcp_group_all_reduce of its host doubles: the messages and sums of
** all_reduce_sum, so the same bits. Every backend call (the download that
** packs a request at start, the upload of its sums when it is retired)
** stays on the caller's thread; the thread touches only the sockets and the
** requests' host buffers, handed over and back under the context's mutex
** (which orders the memory). Invariants:
**   - while the thread has requests to run (next_run != NULL) the group is
**     its own: every other collective first waits for the queue to empty
**     (tcp_drain), so the order on the wire is the call order on every rank;
**   - the first failed exchange is kept (status and message), the thread
**     runs no exchange after it, and every later call of this dist returns
**     it: a broken stream is never read again;
**   - requests not yet retired hold at most PENDING_DOUBLES host doubles,
**     or one request when it alone is larger;
**   - the thread blocks every signal, so they reach the caller's threads;
**   - closing the dist with requests left to run shuts the sockets down
**     first (the peers see this rank gone), so that the thread's send or
**     receive returns at once and the thread can be joined.
** One caller thread: the collectives are not to be called concurrently.
*/
#define _POSIX_C_SOURCE 200809L /* getaddrinfo, clock_gettime, nanosleep, MSG_NOSIGNAL, pthread_sigmask */

#include "dist/dist_tcp.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

#define HELLO_MAGIC "DORACDP1"
#define HELLO_BYTES 16
#define HEADER_BYTES 16
#define HEADER_MAGIC 0x31504444u /* "DDP1" read as little-endian */
#define DEFAULT_TIMEOUT_S 600
#define MAX_TIMEOUT_S 604800 /* a week: keeps the timeout in ms within an int */
#define CONNECT_RETRY_MS 100
/* Rank 0 receives a peer's values in chunks of this many doubles (512 KiB),
** adding each chunk in, so its scratch does not grow with the message. */
#define REDUCE_CHUNK 65536
/* all_reduce_sum packs tensors into host batches of up to this many doubles
** (64 MiB), so hundreds of small gradients cost a few round trips, not
** hundreds; a larger tensor travels alone. */
#define PACK_DOUBLES ((size_t)1 << 23)
/* One send or recv call moves at most this many bytes. */
#define IO_STEP ((size_t)1 << 30)
/* The asynchronous all-reduce's requests not yet retired hold at most this
** many host doubles (256 MiB); a start beyond it first retires the oldest. */
#define PENDING_DOUBLES ((size_t)1 << 25)

enum {
    TAG_WELCOME = 1, /* rank 0 to each rank: the whole world has joined */
    TAG_REDUCE_UP,   /* a rank's values to rank 0 */
    TAG_REDUCE_DOWN, /* the sums from rank 0 */
    TAG_BROADCAST,   /* rank 0's bytes */
    TAG_OWNED_SUMS,  /* reduce_to_owner: the sums of the tensors a rank owns, from rank 0 */
    TAG_OWNED_UP,    /* broadcast_from_owner: an owner's tensors to rank 0 */
    TAG_OWNED_DOWN,  /* broadcast_from_owner: every owner's tensors, from rank 0 */
    TAG_GATHER       /* gather_host: a rank's bytes to rank 0 */
};

struct dorac_tcp_group {
    int rank, world;
    int timeout_s;   /* bounds the rendezvous and each send/recv, seconds */
    int *peer_fd;    /* rank 0: peer_fd[r], the socket of rank r (r >= 1); NULL otherwise */
    int master_fd;   /* ranks >= 1: the socket to rank 0; -1 on rank 0 */
    double *scratch; /* rank 0: REDUCE_CHUNK doubles for receiving */
};

static const char *tag_name(uint32_t tag) {
    switch (tag) {
    case TAG_WELCOME: return "welcome";
    case TAG_REDUCE_UP: return "reduce-up";
    case TAG_REDUCE_DOWN: return "reduce-down";
    case TAG_BROADCAST: return "broadcast";
    case TAG_OWNED_SUMS: return "owned-sums";
    case TAG_OWNED_UP: return "owned-up";
    case TAG_OWNED_DOWN: return "owned-down";
    case TAG_GATHER: return "gather";
    default: return "unknown";
    }
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* *out = DORAC_DIST_TIMEOUT in seconds, or the default when unset. */
static int read_timeout(int *out) {
    const char *s = getenv("DORAC_DIST_TIMEOUT");
    *out = DEFAULT_TIMEOUT_S;
    if (!s) return DORAC_OK;
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!isdigit((unsigned char)s[0]) || end == s || *end != '\0' || errno == ERANGE || v < 1 ||
        v > MAX_TIMEOUT_S)
        return dorac_error(DORAC_E_INVALID,
                           "dist: DORAC_DIST_TIMEOUT='%s' is not a whole number of seconds in "
                           "[1, %d]", s, MAX_TIMEOUT_S);
    *out = (int)v;
    return DORAC_OK;
}

static int set_timeouts(int fd, int seconds) {
    struct timeval tv = {seconds, 0};
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        return -1;
    /* collectives are small request/reply exchanges: do not wait to batch */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Sends buf[0..n) to `peer` (a rank, for messages). */
static int send_all(const dorac_tcp_group *g, int fd, int peer, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t r = send(fd, p, n < IO_STEP ? n : IO_STEP, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return dorac_error(DORAC_E_IO, "dist rank %d: timed out after %d s sending to rank %d",
                                   g->rank, g->timeout_s, peer);
            return dorac_error(DORAC_E_IO, "dist rank %d: sending to rank %d: %s", g->rank, peer,
                               strerror(errno));
        }
        p += r;
        n -= (size_t)r;
    }
    return DORAC_OK;
}

/* Receives exactly buf[0..n) from `peer` (-1: a rank not yet known). */
static int recv_all(const dorac_tcp_group *g, int fd, int peer, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n < IO_STEP ? n : IO_STEP, 0);
        if (r == 0) {
            if (peer < 0)
                return dorac_error(DORAC_E_IO, "dist rank %d: a joining peer closed the connection",
                                   g->rank);
            return dorac_error(DORAC_E_IO, "dist rank %d: rank %d closed the connection", g->rank,
                               peer);
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) && peer < 0)
                return dorac_error(DORAC_E_IO,
                                   "dist rank %d: timed out after %d s waiting for a joining "
                                   "peer's hello", g->rank, g->timeout_s);
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return dorac_error(DORAC_E_IO, "dist rank %d: timed out after %d s waiting for rank %d",
                                   g->rank, g->timeout_s, peer);
            return dorac_error(DORAC_E_IO, "dist rank %d: receiving from rank %d: %s", g->rank, peer,
                               strerror(errno));
        }
        p += r;
        n -= (size_t)r;
    }
    return DORAC_OK;
}

/* Sends the header of a message of nbytes; the payload follows in one or
** more send_all calls. */
static int send_header(const dorac_tcp_group *g, int fd, int peer, uint32_t tag, size_t nbytes) {
    unsigned char h[HEADER_BYTES];
    put_u32(h, HEADER_MAGIC);
    put_u32(h + 4, tag);
    put_u64(h + 8, (uint64_t)nbytes);
    return send_all(g, fd, peer, h, sizeof h);
}

static int send_msg(const dorac_tcp_group *g, int fd, int peer, uint32_t tag, const void *payload,
                    size_t nbytes) {
    DORAC_TRY(send_header(g, fd, peer, tag, nbytes));
    return send_all(g, fd, peer, payload, nbytes);
}

/* Reads a header from `peer` and checks it announces `tag` with exactly
** `nbytes` of payload; the payload is left for the caller to read. */
static int recv_header(const dorac_tcp_group *g, int fd, int peer, uint32_t tag, size_t nbytes) {
    unsigned char h[HEADER_BYTES];
    DORAC_TRY(recv_all(g, fd, peer, h, sizeof h));
    if (get_u32(h) != HEADER_MAGIC)
        return dorac_error(DORAC_E_FORMAT, "dist rank %d: rank %d sent a malformed message header",
                           g->rank, peer);
    uint32_t got_tag = get_u32(h + 4);
    uint64_t got_bytes = get_u64(h + 8);
    if (got_tag != tag || got_bytes != (uint64_t)nbytes)
        return dorac_error(DORAC_E_FORMAT,
                           "dist rank %d: rank %d sent %s of %llu bytes, expected %s of %zu bytes "
                           "(ranks out of step)",
                           g->rank, peer, tag_name(got_tag), (unsigned long long)got_bytes,
                           tag_name(tag), nbytes);
    return DORAC_OK;
}

/* Resolves env's MASTER_ADDR:MASTER_PORT; the caller frees *out. */
static int resolve_master(const dorac_dist_env *env, int rank, bool passive, struct addrinfo **out) {
    char port[16];
    snprintf(port, sizeof port, "%d", env->master_port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int rc = getaddrinfo(env->master_addr, port, &hints, out);
    if (rc != 0)
        return dorac_error(DORAC_E_INVALID, "dist rank %d: cannot resolve MASTER_ADDR '%s': %s", rank,
                           env->master_addr, gai_strerror(rc));
    return DORAC_OK;
}

static bool is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        return memcmp(a, &in6addr_loopback, sizeof *a) == 0;
    }
    return false;
}

/* Rank 0's listening socket. A loopback MASTER_ADDR is bound as is (a
** single-host job listens on loopback only); any other address binds the
** wildcard of its family, so peers reach rank 0 by whatever interface
** MASTER_ADDR names even when the host name resolves to another local
** address here (as /etc/hosts often makes it). */
static int listen_master(const dorac_tcp_group *g, const dorac_dist_env *env, int *out_fd) {
    struct addrinfo *ai_list = NULL;
    DORAC_TRY(resolve_master(env, g->rank, true, &ai_list));
    int fd = -1, last_errno = 0;
    for (struct addrinfo *ai = ai_list; ai && fd < 0; ai = ai->ai_next) {
        struct sockaddr_storage ss;
        socklen_t len = (socklen_t)ai->ai_addrlen;
        if (ai->ai_addrlen > sizeof ss) continue;
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        if (!is_loopback(ai->ai_addr)) {
            if (ss.ss_family == AF_INET)
                ((struct sockaddr_in *)(void *)&ss)->sin_addr.s_addr = htonl(INADDR_ANY);
            else if (ss.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)(void *)&ss)->sin6_addr = in6addr_any;
        }
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
            last_errno = errno;
            close_fd(&fd);
        }
    }
    freeaddrinfo(ai_list);
    if (fd < 0)
        return dorac_error(DORAC_E_IO, "dist rank 0: cannot listen on %s:%d (MASTER_ADDR:MASTER_PORT): %s",
                           env->master_addr, env->master_port,
                           last_errno ? strerror(last_errno) : "no usable address");
    *out_fd = fd;
    return DORAC_OK;
}

/* Reads and checks one joining rank's hello on fd; *rank = its rank. */
static int read_hello(dorac_tcp_group *g, int fd, int *rank) {
    unsigned char h[HELLO_BYTES];
    DORAC_TRY(recv_all(g, fd, -1, h, sizeof h));
    if (memcmp(h, HELLO_MAGIC, 8) != 0)
        return dorac_error(DORAC_E_FORMAT,
                           "dist rank 0: a connection to MASTER_PORT sent no dorac hello "
                           "(another program on the port?)");
    uint32_t r = get_u32(h + 8), w = get_u32(h + 12);
    if (w != (uint32_t)g->world)
        return dorac_error(DORAC_E_INVALID,
                           "dist rank 0: rank %u joined with world size %u, this job has %d",
                           r, w, g->world);
    if (r == 0 || r >= (uint32_t)g->world)
        return dorac_error(DORAC_E_INVALID, "dist rank 0: a peer joined as rank %u, expected 1..%d%s",
                           r, g->world - 1, r == 0 ? " (two processes are rank 0)" : "");
    if (g->peer_fd[r] >= 0)
        return dorac_error(DORAC_E_INVALID, "dist rank 0: rank %u joined twice", r);
    *rank = (int)r;
    return DORAC_OK;
}

/* Rank 0's half of the rendezvous: accept world-1 hellos, then welcome all. */
static int rendezvous_master(dorac_tcp_group *g, const dorac_dist_env *env) {
    int lfd = -1;
    DORAC_TRY(listen_master(g, env, &lfd));
    int64_t deadline = now_ms() + (int64_t)g->timeout_s * 1000;
    int joined = 0, status = DORAC_OK;
    while (joined < g->world - 1) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            int missing = 1;
            while (missing < g->world && g->peer_fd[missing] >= 0) missing++;
            status = dorac_error(DORAC_E_IO,
                                 "dist rank 0: timed out after %d s waiting for ranks to join on "
                                 "port %d (%d of %d joined; rank %d missing)",
                                 g->timeout_s, env->master_port, joined + 1, g->world, missing);
            break;
        }
        struct pollfd pfd = {lfd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno != EINTR) {
            status = dorac_error(DORAC_E_IO, "dist rank 0: poll: %s", strerror(errno));
            break;
        }
        if (pr <= 0) continue;
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
            status = dorac_error(DORAC_E_IO, "dist rank 0: accept: %s", strerror(errno));
            break;
        }
        int rank = -1;
        if (set_timeouts(cfd, g->timeout_s) != 0)
            status = dorac_error(DORAC_E_IO, "dist rank 0: setsockopt: %s", strerror(errno));
        else
            status = read_hello(g, cfd, &rank);
        if (status != DORAC_OK) {
            close(cfd);
            break;
        }
        g->peer_fd[rank] = cfd;
        joined++;
    }
    close_fd(&lfd);
    for (int r = 1; r < g->world && status == DORAC_OK; r++)
        status = send_msg(g, g->peer_fd[r], r, TAG_WELCOME, NULL, 0);
    return status;
}

/* A joining rank's half: connect (retrying), say hello, await the welcome. */
static int rendezvous_peer(dorac_tcp_group *g, const dorac_dist_env *env) {
    struct addrinfo *ai_list = NULL;
    DORAC_TRY(resolve_master(env, g->rank, false, &ai_list));
    int64_t deadline = now_ms() + (int64_t)g->timeout_s * 1000;
    int fd = -1, last_errno = 0;
    for (;;) {
        for (struct addrinfo *ai = ai_list; ai && fd < 0; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
            if (fd < 0) {
                last_errno = errno;
                continue;
            }
            /* SO_SNDTIMEO also bounds connect() on Linux */
            int64_t left_s = (deadline - now_ms() + 999) / 1000;
            if (set_timeouts(fd, left_s < 1 ? 1 : (int)left_s) != 0 ||
                connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
                last_errno = errno;
                close_fd(&fd);
            }
        }
        if (fd >= 0) break;
        if (now_ms() + CONNECT_RETRY_MS > deadline) break;
        sleep_ms(CONNECT_RETRY_MS);
    }
    freeaddrinfo(ai_list);
    if (fd < 0)
        return dorac_error(DORAC_E_IO, "dist rank %d: cannot reach rank 0 at %s:%d within %d s: %s",
                           g->rank, env->master_addr, env->master_port, g->timeout_s,
                           last_errno ? strerror(last_errno) : "no usable address");
    g->master_fd = fd;
    if (set_timeouts(fd, g->timeout_s) != 0)
        return dorac_error(DORAC_E_IO, "dist rank %d: setsockopt: %s", g->rank, strerror(errno));
    unsigned char h[HELLO_BYTES];
    memcpy(h, HELLO_MAGIC, 8);
    put_u32(h + 8, (uint32_t)g->rank);
    put_u32(h + 12, (uint32_t)g->world);
    DORAC_TRY(send_all(g, fd, 0, h, sizeof h));
    int status = recv_header(g, fd, 0, TAG_WELCOME, 0);
    if (status != DORAC_OK) {
        /* rank 0 closes every socket when it rejects a hello: say so */
        char why[512];
        snprintf(why, sizeof why, "%s", dorac_last_error());
        return dorac_error(status, "%s (while joining: did rank 0 reject this rank? see its error)",
                           why);
    }
    return DORAC_OK;
}

void dorac_tcp_group_shutdown(dorac_tcp_group *g) {
    if (!g) return;
    if (g->peer_fd)
        for (int r = 1; r < g->world; r++)
            if (g->peer_fd[r] >= 0) (void)shutdown(g->peer_fd[r], SHUT_RDWR);
    if (g->master_fd >= 0) (void)shutdown(g->master_fd, SHUT_RDWR);
}

void dorac_tcp_group_close(dorac_tcp_group *g) {
    if (!g) return;
    if (g->peer_fd)
        for (int r = 1; r < g->world; r++) close_fd(&g->peer_fd[r]);
    close_fd(&g->master_fd);
    free(g->peer_fd);
    free(g->scratch);
    free(g);
}

int dorac_tcp_group_open(const dorac_dist_env *env, dorac_tcp_group **out) {
    if (!env || !out) return dorac_error(DORAC_E_INVALID, "dist: tcp open: NULL argument");
    *out = NULL;
    if (env->world < 1 || env->rank < 0 || env->rank >= env->world)
        return dorac_error(DORAC_E_INVALID, "dist: tcp open: rank %d of world %d", env->rank,
                           env->world);
    if (env->master_port < 1 || env->master_port > 65535)
        return dorac_error(DORAC_E_INVALID, "dist: tcp open: MASTER_PORT %d outside [1, 65535]",
                           env->master_port);
    if (memchr(env->master_addr, '\0', sizeof env->master_addr) == NULL)
        return dorac_error(DORAC_E_INVALID, "dist: tcp open: MASTER_ADDR is not terminated");
    dorac_tcp_group *g = calloc(1, sizeof *g);
    if (!g) return dorac_error(DORAC_E_NOMEM, "dist: tcp open: out of memory");
    g->rank = env->rank;
    g->world = env->world;
    g->master_fd = -1;
    int status = read_timeout(&g->timeout_s);
    if (status == DORAC_OK && g->rank == 0) {
        g->peer_fd = malloc((size_t)g->world * sizeof *g->peer_fd);
        g->scratch = malloc(REDUCE_CHUNK * sizeof *g->scratch);
        if (!g->peer_fd || !g->scratch)
            status = dorac_error(DORAC_E_NOMEM, "dist: tcp open: out of memory");
        else
            for (int r = 0; r < g->world; r++) g->peer_fd[r] = -1;
    }
    if (status == DORAC_OK && g->world > 1)
        status = g->rank == 0 ? rendezvous_master(g, env) : rendezvous_peer(g, env);
    if (status != DORAC_OK) {
        dorac_tcp_group_close(g);
        return status;
    }
    *out = g;
    return DORAC_OK;
}

/* The first half of every sum: ranks >= 1 send v[0..n) to rank 0, whose v
** becomes the sum, added in rank order (rank 0's values, then rank 1's,
** ...); the others' v is left as it was. n * 8 must not overflow. */
static int reduce_up(dorac_tcp_group *g, double *v, size_t n) {
    size_t nbytes = n * sizeof(double);
    if (g->rank != 0) return send_msg(g, g->master_fd, 0, TAG_REDUCE_UP, v, nbytes);
    for (int r = 1; r < g->world; r++) {
        DORAC_TRY(recv_header(g, g->peer_fd[r], r, TAG_REDUCE_UP, nbytes));
        for (size_t off = 0; off < n; off += REDUCE_CHUNK) {
            size_t len = n - off < REDUCE_CHUNK ? n - off : REDUCE_CHUNK;
            DORAC_TRY(recv_all(g, g->peer_fd[r], r, g->scratch, len * sizeof(double)));
            for (size_t i = 0; i < len; i++) v[off + i] += g->scratch[i];
        }
    }
    return DORAC_OK;
}

int dorac_tcp_group_all_reduce(dorac_tcp_group *g, double *v, size_t n) {
    if (!g || (!v && n > 0)) return dorac_error(DORAC_E_INVALID, "dist: all_reduce: NULL argument");
    if (n > SIZE_MAX / sizeof(double))
        return dorac_error(DORAC_E_INVALID, "dist rank %d: all_reduce of %zu doubles overflows",
                           g->rank, n);
    if (g->world == 1) return DORAC_OK;
    size_t nbytes = n * sizeof(double);
    DORAC_TRY(reduce_up(g, v, n));
    if (g->rank != 0) {
        DORAC_TRY(recv_header(g, g->master_fd, 0, TAG_REDUCE_DOWN, nbytes));
        return recv_all(g, g->master_fd, 0, v, nbytes);
    }
    for (int r = 1; r < g->world; r++)
        DORAC_TRY(send_msg(g, g->peer_fd[r], r, TAG_REDUCE_DOWN, v, nbytes));
    return DORAC_OK;
}

int dorac_tcp_group_broadcast(dorac_tcp_group *g, void *buf, size_t nbytes) {
    if (!g || (!buf && nbytes > 0))
        return dorac_error(DORAC_E_INVALID, "dist: broadcast: NULL argument");
    if (g->world == 1) return DORAC_OK;
    if (g->rank != 0) {
        DORAC_TRY(recv_header(g, g->master_fd, 0, TAG_BROADCAST, nbytes));
        return recv_all(g, g->master_fd, 0, buf, nbytes);
    }
    for (int r = 1; r < g->world; r++)
        DORAC_TRY(send_msg(g, g->peer_fd[r], r, TAG_BROADCAST, buf, nbytes));
    return DORAC_OK;
}

int dorac_tcp_group_gather(dorac_tcp_group *g, const void *part, void *all, const size_t *part_bytes) {
    if (!g || !part_bytes) return dorac_error(DORAC_E_INVALID, "dist: gather_host: NULL argument");
    /* every rank checks the whole layout, so a bad one fails everywhere before any traffic */
    size_t total = 0;
    for (int r = 0; r < g->world; r++) {
        if (part_bytes[r] > SIZE_MAX - total)
            return dorac_error(DORAC_E_INVALID, "dist rank %d: gather_host: the parts' sizes overflow", g->rank);
        total += part_bytes[r];
    }
    if (!part && part_bytes[g->rank] > 0)
        return dorac_error(DORAC_E_INVALID, "dist rank %d: gather_host: part is NULL", g->rank);
    if (g->rank != 0) return send_msg(g, g->master_fd, 0, TAG_GATHER, part, part_bytes[g->rank]);
    if (!all && total > 0) return dorac_error(DORAC_E_INVALID, "dist rank 0: gather_host: all is NULL");
    if (part_bytes[0] > 0 && part != all) memmove(all, part, part_bytes[0]);
    size_t off = part_bytes[0];
    for (int r = 1; r < g->world; r++) {
        DORAC_TRY(recv_header(g, g->peer_fd[r], r, TAG_GATHER, part_bytes[r]));
        DORAC_TRY(recv_all(g, g->peer_fd[r], r, (char *)all + off, part_bytes[r]));
        off += part_bytes[r];
    }
    return DORAC_OK;
}

int dorac_tcp_group_barrier(dorac_tcp_group *g) {
    double zero = 0.0;
    return dorac_tcp_group_all_reduce(g, &zero, 1);
}

/* ---- the "tcp" collectives ---------------------------------------------- */

/* One started asynchronous all-reduce. */
typedef struct tcp_request {
    struct tcp_request *next; /* the next one started, or NULL */
    dorac_backend *be;        /* where the tensors live */
    dorac_tensor *tensors;    /* (n_tensors) copies of the caller's structs */
    size_t n_tensors;
    double *host;             /* (n_doubles) the values packed in order; the sums once exchanged */
    size_t n_doubles;         /* >= 1 */
} tcp_request;

/* The context of a "tcp" dorac_dist. */
typedef struct tcp_context {
    dorac_tcp_group *group;
    /* the asynchronous all-reduce; mu guards the fields below it once the
    ** thread runs (thread_started is the caller's alone) */
    bool thread_started;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;     /* a request was queued, or stop was set */
    pthread_cond_t done;     /* the thread finished a request */
    tcp_request *first;      /* started and not yet retired, in start order */
    tcp_request *last;
    tcp_request *next_run;   /* the first not yet exchanged (in first's list); NULL: none */
    size_t pending_doubles;  /* host doubles held by the requests not yet retired */
    bool stop;               /* the thread is to exit (the dist is closing) */
    int failed;              /* DORAC_OK, or the status of the first failed exchange */
    char failure[1024];      /* and its message */
} tcp_context;

static dorac_tcp_group *tcp_group(dorac_dist *d) {
    return ((tcp_context *)d->context)->group;
}

/* *count = elements of t, checked: a float tensor with a sane shape. */
static int tensor_count(const dorac_tensor *t, const char *op, size_t i, size_t *count) {
    if (!t) return dorac_error(DORAC_E_INVALID, "dist: %s: tensor %zu is NULL", op, i);
    if (t->type != DORAC_DTYPE_F32 && t->type != DORAC_DTYPE_BF16 && t->type != DORAC_DTYPE_F16 &&
        t->type != DORAC_DTYPE_F64)
        return dorac_error(DORAC_E_UNSUPPORTED, "dist: %s: tensor %zu is %s, not a float type", op, i,
                           dorac_dtype_name(t->type));
    if (t->rows < 0 || t->cols < 0 || t->ld < t->cols)
        return dorac_error(DORAC_E_INVALID, "dist: %s: tensor %zu has shape (%lld, %lld) ld %lld", op, i,
                           (long long)t->rows, (long long)t->cols, (long long)t->ld);
    if (t->cols > 0 && (uint64_t)t->rows > (uint64_t)(SIZE_MAX / sizeof(double)) / (uint64_t)t->cols)
        return dorac_error(DORAC_E_INVALID, "dist: %s: tensor %zu is too large", op, i);
    *count = (size_t)t->rows * (size_t)t->cols;
    return DORAC_OK;
}

static size_t elems(const dorac_tensor *t) {
    return (size_t)t->rows * (size_t)t->cols;
}

/* Checks a collective's tensor list (and, for the owned collectives, the
** owners: each in [0, world)); *cap = the doubles of the host batch its calls need: the
** largest tensor or PACK_DOUBLES, whichever is larger, but no more than all
** of them; 0 when there is nothing to move. */
static int check_list(const dorac_dist *d, const char *op, dorac_backend *be, const dorac_tensor *const *t,
                      bool owned, const int *owner, size_t n, size_t *cap) {
    if (!be || (!t && n > 0) || (owned && !owner && n > 0))
        return dorac_error(DORAC_E_INVALID, "dist rank %d: %s: NULL argument", d->rank, op);
    size_t total = 0, largest = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = 0;
        DORAC_TRY(tensor_count(t[i], op, i, &c));
        if (owner && (owner[i] < 0 || owner[i] >= d->world))
            return dorac_error(DORAC_E_INVALID, "dist rank %d: %s: tensor %zu's owner is rank %d, outside [0, %d)",
                               d->rank, op, i, owner[i], d->world);
        total = total + c < total ? SIZE_MAX : total + c;
        if (c > largest) largest = c;
    }
    size_t c = largest > PACK_DOUBLES ? largest : PACK_DOUBLES;
    *cap = c > total ? total : c;
    return DORAC_OK;
}

/* The end of the host batch that starts at tensor i: tensors i..end-1 hold
** *used <= cap doubles (a tensor larger than cap would travel alone, but cap
** is never below the largest). Shapes match on every rank, so every rank
** forms the same batches. */
static size_t batch_end(const dorac_tensor *const *t, size_t n, size_t i, size_t cap, size_t *used) {
    size_t j = i, u = 0;
    while (j < n && (u == 0 || u + elems(t[j]) <= cap)) u += elems(t[j++]);
    *used = u;
    return j;
}

/* Downloads (or uploads) tensors [i, j) of the batch between the backend
** and host, as doubles at their offsets; with `only_owner` >= 0 just the
** tensors that rank owns, with `skip_owner` >= 0 all but those. */
static int batch_copy(dorac_backend *be, bool upload, const dorac_tensor *const *t, const int *owner, size_t i,
                      size_t j, double *host, int only_owner, int skip_owner) {
    size_t off = 0;
    for (size_t k = i; k < j; k++) {
        size_t c = elems(t[k]);
        bool take = c > 0 && (only_owner < 0 || owner[k] == only_owner) && (skip_owner < 0 || owner[k] != skip_owner);
        if (take) DORAC_TRY(upload ? be->upload(be, t[k], host + off, DORAC_DTYPE_F64)
                                   : be->download(be, host + off, DORAC_DTYPE_F64, t[k]));
        off += c;
    }
    return DORAC_OK;
}

/* Moves the tensors of the batch [i, j) that rank r owns, packed in
** order, between host (at their offsets) and rank 0 or rank r: sends them
** (send) or receives them (!send) over fd, as one message with `tag`.
** Both ends compute the same byte count, and a rank that owns nothing in
** the batch exchanges no message. */
static int move_owned(dorac_tcp_group *g, bool send, int fd, int peer, uint32_t tag, const dorac_tensor *const *t,
                      const int *owner, size_t i, size_t j, double *host, int r) {
    size_t bytes = 0;
    for (size_t k = i; k < j; k++)
        if (owner[k] == r) bytes += elems(t[k]) * sizeof(double);
    if (bytes == 0) return DORAC_OK;
    if (send) DORAC_TRY(send_header(g, fd, peer, tag, bytes));
    else DORAC_TRY(recv_header(g, fd, peer, tag, bytes));
    size_t off = 0;
    for (size_t k = i; k < j; k++) {
        size_t c = elems(t[k]);
        if (owner[k] == r && c > 0)
            DORAC_TRY(send ? send_all(g, fd, peer, host + off, c * sizeof(double))
                           : recv_all(g, fd, peer, host + off, c * sizeof(double)));
        off += c;
    }
    return DORAC_OK;
}

/* The three device collectives, one host batch at a time. */
enum tcp_op { OP_ALL_REDUCE, OP_REDUCE_TO_OWNER, OP_BROADCAST_FROM_OWNER };

static int tcp_batch(dorac_dist *d, dorac_backend *be, enum tcp_op op, const dorac_tensor *const *t,
                     const int *owner, size_t i, size_t j, size_t used, double *host) {
    dorac_tcp_group *g = tcp_group(d);
    int me = d->rank;
    size_t nbytes = used * sizeof(double);
    switch (op) {
    case OP_ALL_REDUCE:
        DORAC_TRY(batch_copy(be, false, t, NULL, i, j, host, -1, -1));
        DORAC_TRY(dorac_tcp_group_all_reduce(g, host, used));
        return batch_copy(be, true, t, NULL, i, j, host, -1, -1);
    case OP_REDUCE_TO_OWNER:
        /* rank 0 sums everything (as all_reduce would), then each rank gets
        ** the sums of what it owns */
        DORAC_TRY(batch_copy(be, false, t, owner, i, j, host, -1, -1));
        DORAC_TRY(reduce_up(g, host, used));
        if (me == 0)
            for (int r = 1; r < d->world; r++)
                DORAC_TRY(move_owned(g, true, g->peer_fd[r], r, TAG_OWNED_SUMS, t, owner, i, j, host, r));
        else
            DORAC_TRY(move_owned(g, false, g->master_fd, 0, TAG_OWNED_SUMS, t, owner, i, j, host, me));
        return batch_copy(be, true, t, owner, i, j, host, me, -1);
    case OP_BROADCAST_FROM_OWNER:
        /* owners send theirs to rank 0, which sends the whole batch to all */
        DORAC_TRY(batch_copy(be, false, t, owner, i, j, host, me, -1));
        if (me == 0) {
            for (int r = 1; r < d->world; r++)
                DORAC_TRY(move_owned(g, false, g->peer_fd[r], r, TAG_OWNED_UP, t, owner, i, j, host, r));
            for (int r = 1; r < d->world; r++)
                DORAC_TRY(send_msg(g, g->peer_fd[r], r, TAG_OWNED_DOWN, host, nbytes));
        } else {
            DORAC_TRY(move_owned(g, true, g->master_fd, 0, TAG_OWNED_UP, t, owner, i, j, host, me));
            DORAC_TRY(recv_header(g, g->master_fd, 0, TAG_OWNED_DOWN, nbytes));
            DORAC_TRY(recv_all(g, g->master_fd, 0, host, nbytes));
        }
        return batch_copy(be, true, t, owner, i, j, host, -1, me);
    }
    return dorac_error(DORAC_E_INVALID, "dist rank %d: unknown collective %d", me, (int)op);
}

/* Runs op over the tensors in host batches of doubles (check_list's cap),
** so hundreds of small tensors cost a few round trips, not hundreds. */
static int tcp_tensors(dorac_dist *d, dorac_backend *be, enum tcp_op op, const char *name,
                       const dorac_tensor *const *t, const int *owner, size_t n) {
    size_t cap = 0;
    DORAC_TRY(check_list(d, name, be, t, op != OP_ALL_REDUCE, owner, n, &cap));
    if (d->world == 1 || cap == 0) return DORAC_OK;
    double *host = malloc(cap * sizeof *host);
    if (!host)
        return dorac_error(DORAC_E_NOMEM, "dist rank %d: %s: no memory for %zu doubles", d->rank, name, cap);
    int status = DORAC_OK;
    for (size_t i = 0; i < n && status == DORAC_OK;) {
        size_t used = 0, j = batch_end(t, n, i, cap, &used);
        status = tcp_batch(d, be, op, t, owner, i, j, used, host);
        /* the host batch is reused or freed next: let uploads finish reading it */
        if (status == DORAC_OK && be->synchronize) status = be->synchronize(be);
        i = j;
    }
    free(host);
    return status;
}

/* ---- the asynchronous all-reduce ----------------------------------------- */

/* The communication thread: exchanges the queued requests in order until
** told to stop (see the invariants at the top of this file). */
static void *comm_thread(void *arg) {
    tcp_context *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && !c->next_run) pthread_cond_wait(&c->work, &c->mu);
        if (c->stop) break;
        tcp_request *q = c->next_run;
        bool run = c->failed == DORAC_OK;
        pthread_mutex_unlock(&c->mu);
        int rc = run ? dorac_tcp_group_all_reduce(c->group, q->host, q->n_doubles) : DORAC_OK;
        pthread_mutex_lock(&c->mu);
        if (rc != DORAC_OK && c->failed == DORAC_OK) {
            /* the message is this thread's: keep a copy for the caller's */
            snprintf(c->failure, sizeof c->failure, "%s", dorac_last_error());
            c->failed = rc;
        }
        c->next_run = q->next;
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static int start_thread(dorac_dist *d, tcp_context *c) {
    if (c->thread_started) return DORAC_OK;
    /* the thread inherits this mask: it takes no signal away from the caller */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->thread, NULL, comm_thread, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return dorac_error(DORAC_E_IO, "dist rank %d: cannot start the communication thread: %s", d->rank,
                           strerror(rc));
    c->thread_started = true;
    return DORAC_OK;
}

/* The first failed exchange's status, with its message as this thread's error. */
static int tcp_failure(tcp_context *c) {
    pthread_mutex_lock(&c->mu);
    int failed = c->failed;
    pthread_mutex_unlock(&c->mu);
    /* failure is written once, before failed, under the mutex */
    return failed == DORAC_OK ? DORAC_OK : dorac_error(failed, "%s", c->failure);
}

/* Waits until the thread has exchanged every request started, so that the
** group is the caller's again; the first failed exchange's status, if any. */
static int tcp_drain(dorac_dist *d) {
    tcp_context *c = d->context;
    if (!c->thread_started) return DORAC_OK;
    pthread_mutex_lock(&c->mu);
    while (c->next_run) pthread_cond_wait(&c->done, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return tcp_failure(c);
}

static void request_free(tcp_request *q) {
    if (!q) return;
    free(q->tensors);
    free(q->host);
    free(q);
}

/* Retires the exchanged requests at the head of the list, in order: uploads
** their sums (unless an exchange failed) and frees them. With `all`, first
** waits for every request started. The first failed exchange's status, or
** the upload's. */
static int tcp_retire(dorac_dist *d, bool all) {
    tcp_context *c = d->context;
    if (!c->thread_started) return DORAC_OK;
    int rc = all ? tcp_drain(d) : tcp_failure(c);
    for (;;) {
        pthread_mutex_lock(&c->mu);
        tcp_request *q = c->first;
        bool exchanged = q && q != c->next_run;
        /* read with the request under one lock: an exchange that failed after
        ** the check above must not let its unsummed values be uploaded */
        bool failed = c->failed != DORAC_OK;
        if (exchanged) {
            c->first = q->next;
            if (!c->first) c->last = NULL;
            c->pending_doubles -= q->n_doubles;
        }
        pthread_mutex_unlock(&c->mu);
        if (!exchanged) break;
        if (failed && rc == DORAC_OK) rc = tcp_failure(c);
        size_t off = 0;
        for (size_t k = 0; k < q->n_tensors && rc == DORAC_OK; k++) {
            const dorac_tensor *t = &q->tensors[k];
            if (elems(t) > 0) rc = q->be->upload(q->be, t, q->host + off, DORAC_DTYPE_F64);
            off += elems(t);
        }
        /* the host buffer is freed next: let the uploads finish reading it */
        if (rc == DORAC_OK && q->be->synchronize) rc = q->be->synchronize(q->be);
        request_free(q);
    }
    return rc;
}

/* Waits until the oldest request not yet retired is exchanged, then retires
** what is done. */
static int tcp_retire_oldest(dorac_dist *d) {
    tcp_context *c = d->context;
    pthread_mutex_lock(&c->mu);
    while (c->first && c->first == c->next_run) pthread_cond_wait(&c->done, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return tcp_retire(d, false);
}

static int tcp_all_reduce_start(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t, size_t n) {
    tcp_context *c = d->context;
    size_t cap = 0;
    DORAC_TRY(check_list(d, "all_reduce_start", be, t, false, NULL, n, &cap));
    if (d->world == 1 || cap == 0) return DORAC_OK;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (elems(t[i]) > SIZE_MAX / sizeof(double) - total)
            return dorac_error(DORAC_E_INVALID, "dist rank %d: all_reduce_start: the tensors' sizes overflow",
                               d->rank);
        total += elems(t[i]);
    }
    /* upload what is done (and report an earlier failure); then bound what is held */
    DORAC_TRY(tcp_retire(d, false));
    while (c->first && c->pending_doubles + total > PENDING_DOUBLES) DORAC_TRY(tcp_retire_oldest(d));
    tcp_request *q = calloc(1, sizeof *q);
    if (q) q->tensors = malloc(n * sizeof *q->tensors);
    if (q && q->tensors) q->host = malloc(total * sizeof *q->host);
    if (!q || !q->tensors || !q->host) {
        request_free(q);
        return dorac_error(DORAC_E_NOMEM, "dist rank %d: all_reduce_start: no memory for %zu doubles", d->rank,
                           total);
    }
    q->be = be;
    q->n_tensors = n;
    q->n_doubles = total;
    int rc = DORAC_OK;
    size_t off = 0;
    for (size_t i = 0; i < n && rc == DORAC_OK; i++) {
        q->tensors[i] = *t[i];
        if (elems(t[i]) > 0) rc = be->download(be, q->host + off, DORAC_DTYPE_F64, t[i]);
        off += elems(t[i]);
    }
    if (rc == DORAC_OK) rc = start_thread(d, c);
    if (rc != DORAC_OK) {
        request_free(q);
        return rc;
    }
    pthread_mutex_lock(&c->mu);
    if (c->last) c->last->next = q;
    else c->first = q;
    c->last = q;
    if (!c->next_run) c->next_run = q;
    c->pending_doubles += total;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->mu);
    return DORAC_OK;
}

static int tcp_all_reduce_wait(dorac_dist *d) {
    return tcp_retire(d, true);
}

/* ---- the synchronous collectives: each after the requests started ------- */

static int tcp_all_reduce_sum(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t, size_t n) {
    DORAC_TRY(tcp_drain(d));
    return tcp_tensors(d, be, OP_ALL_REDUCE, "all_reduce_sum", t, NULL, n);
}

static int tcp_reduce_to_owner(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t, const int *owner,
                               size_t n) {
    DORAC_TRY(tcp_drain(d));
    return tcp_tensors(d, be, OP_REDUCE_TO_OWNER, "reduce_to_owner", t, owner, n);
}

static int tcp_broadcast_from_owner(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                                    const int *owner, size_t n) {
    DORAC_TRY(tcp_drain(d));
    return tcp_tensors(d, be, OP_BROADCAST_FROM_OWNER, "broadcast_from_owner", t, owner, n);
}

static int tcp_gather_host(dorac_dist *d, const void *part, void *all, const size_t *part_bytes) {
    DORAC_TRY(tcp_drain(d));
    return dorac_tcp_group_gather(tcp_group(d), part, all, part_bytes);
}

static int tcp_all_reduce_host(dorac_dist *d, double *v, size_t n) {
    DORAC_TRY(tcp_drain(d));
    return dorac_tcp_group_all_reduce(tcp_group(d), v, n);
}

static int tcp_broadcast_host(dorac_dist *d, void *buf, size_t nbytes) {
    DORAC_TRY(tcp_drain(d));
    return dorac_tcp_group_broadcast(tcp_group(d), buf, nbytes);
}

static int tcp_barrier(dorac_dist *d) {
    DORAC_TRY(tcp_drain(d));
    return dorac_tcp_group_barrier(tcp_group(d));
}

/* Stops the thread (shutting the sockets down first when it still has
** requests to run: they are abandoned), then frees everything. */
static void tcp_destroy(dorac_dist *d) {
    if (!d) return;
    tcp_context *c = d->context;
    if (c && c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        bool busy = c->next_run != NULL;
        pthread_cond_signal(&c->work);
        pthread_mutex_unlock(&c->mu);
        if (busy) dorac_tcp_group_shutdown(c->group);
        pthread_join(c->thread, NULL);
    }
    if (c) {
        while (c->first) {
            tcp_request *q = c->first;
            c->first = q->next;
            request_free(q);
        }
        pthread_cond_destroy(&c->done);
        pthread_cond_destroy(&c->work);
        pthread_mutex_destroy(&c->mu);
        dorac_tcp_group_close(c->group);
        free(c);
    }
    free(d);
}

int dorac_dist_open_tcp(const dorac_dist_env *env, dorac_dist **out) {
    if (!out) return dorac_error(DORAC_E_INVALID, "dist: tcp open: out is NULL");
    *out = NULL;
    dorac_dist *d = calloc(1, sizeof *d);
    tcp_context *c = calloc(1, sizeof *c);
    if (!d || !c) {
        free(d), free(c);
        return dorac_error(DORAC_E_NOMEM, "dist: tcp open: out of memory");
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(d), free(c);
        return dorac_error(DORAC_E_NOMEM, "dist: tcp open: cannot make a mutex");
    }
    if (pthread_cond_init(&c->work, NULL) != 0) {
        pthread_mutex_destroy(&c->mu);
        free(d), free(c);
        return dorac_error(DORAC_E_NOMEM, "dist: tcp open: cannot make a condition variable");
    }
    if (pthread_cond_init(&c->done, NULL) != 0) {
        pthread_cond_destroy(&c->work);
        pthread_mutex_destroy(&c->mu);
        free(d), free(c);
        return dorac_error(DORAC_E_NOMEM, "dist: tcp open: cannot make a condition variable");
    }
    *d = (dorac_dist){
        /* .name            = */ "tcp",
        /* .rank            = */ env ? env->rank : 0,
        /* .world           = */ env ? env->world : 1,
        /* .local_rank      = */ env ? env->local_rank : 0,
        /* .context         = */ c,
        /* .destroy         = */ tcp_destroy,
        /* .all_reduce_sum  = */ tcp_all_reduce_sum,
        /* .all_reduce_host = */ tcp_all_reduce_host,
        /* .broadcast_host  = */ tcp_broadcast_host,
        /* .barrier         = */ tcp_barrier,
        /* .reduce_to_owner      = */ tcp_reduce_to_owner,
        /* .broadcast_from_owner = */ tcp_broadcast_from_owner,
        /* .gather_host          = */ tcp_gather_host,
        /* .all_reduce_start     = */ tcp_all_reduce_start,
        /* .all_reduce_wait      = */ tcp_all_reduce_wait,
    };
    int rc = dorac_tcp_group_open(env, &c->group);
    if (rc != DORAC_OK) {
        tcp_destroy(d);
        return rc;
    }
    *out = d;
    return DORAC_OK;
}

int dorac_dist_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}
