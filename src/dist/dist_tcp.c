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
** Invariants:
**   - Every socket has SO_RCVTIMEO and SO_SNDTIMEO set to the group's
**     timeout, so a peer that dies or stops is an error, never a hang.
**   - Sends use MSG_NOSIGNAL: a peer that closes never raises SIGPIPE.
**   - Rank 0 adds the values in rank order 0, 1, ..., W-1 and sends the same
**     bytes back to every rank, so all ranks hold identical sums.
**   - On any failure every socket the failing call opened is closed.
*/
#define _POSIX_C_SOURCE 200809L /* getaddrinfo, clock_gettime, nanosleep, MSG_NOSIGNAL */

#include "dist/dist_tcp.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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

enum {
    TAG_WELCOME = 1, /* rank 0 to each rank: the whole world has joined */
    TAG_REDUCE_UP,   /* a rank's values to rank 0 */
    TAG_REDUCE_DOWN, /* the sums from rank 0 */
    TAG_BROADCAST    /* rank 0's bytes */
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

static int send_msg(const dorac_tcp_group *g, int fd, int peer, uint32_t tag, const void *payload,
                    size_t nbytes) {
    unsigned char h[HEADER_BYTES];
    put_u32(h, HEADER_MAGIC);
    put_u32(h + 4, tag);
    put_u64(h + 8, (uint64_t)nbytes);
    DORAC_TRY(send_all(g, fd, peer, h, sizeof h));
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

int dorac_tcp_group_all_reduce(dorac_tcp_group *g, double *v, size_t n) {
    if (!g || (!v && n > 0)) return dorac_error(DORAC_E_INVALID, "dist: all_reduce: NULL argument");
    if (n > SIZE_MAX / sizeof(double))
        return dorac_error(DORAC_E_INVALID, "dist rank %d: all_reduce of %zu doubles overflows",
                           g->rank, n);
    if (g->world == 1) return DORAC_OK;
    size_t nbytes = n * sizeof(double);
    if (g->rank != 0) {
        DORAC_TRY(send_msg(g, g->master_fd, 0, TAG_REDUCE_UP, v, nbytes));
        DORAC_TRY(recv_header(g, g->master_fd, 0, TAG_REDUCE_DOWN, nbytes));
        return recv_all(g, g->master_fd, 0, v, nbytes);
    }
    /* v holds rank 0's values; add rank 1's, then rank 2's, ... */
    for (int r = 1; r < g->world; r++) {
        DORAC_TRY(recv_header(g, g->peer_fd[r], r, TAG_REDUCE_UP, nbytes));
        for (size_t off = 0; off < n; off += REDUCE_CHUNK) {
            size_t len = n - off < REDUCE_CHUNK ? n - off : REDUCE_CHUNK;
            DORAC_TRY(recv_all(g, g->peer_fd[r], r, g->scratch, len * sizeof(double)));
            for (size_t i = 0; i < len; i++) v[off + i] += g->scratch[i];
        }
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

int dorac_tcp_group_barrier(dorac_tcp_group *g) {
    double zero = 0.0;
    return dorac_tcp_group_all_reduce(g, &zero, 1);
}

/* ---- the "tcp" collectives ---------------------------------------------- */

/* *count = elements of t, checked: a float tensor with a sane shape. */
static int tensor_count(const dorac_tensor *t, size_t i, size_t *count) {
    if (!t) return dorac_error(DORAC_E_INVALID, "dist: all_reduce_sum: tensor %zu is NULL", i);
    if (t->type != DORAC_DTYPE_F32 && t->type != DORAC_DTYPE_BF16 && t->type != DORAC_DTYPE_F16 &&
        t->type != DORAC_DTYPE_F64)
        return dorac_error(DORAC_E_UNSUPPORTED, "dist: all_reduce_sum: tensor %zu is %s, not a float type",
                           i, dorac_dtype_name(t->type));
    if (t->rows < 0 || t->cols < 0 || t->ld < t->cols)
        return dorac_error(DORAC_E_INVALID, "dist: all_reduce_sum: tensor %zu has shape (%lld, %lld) ld %lld",
                           i, (long long)t->rows, (long long)t->cols, (long long)t->ld);
    if (t->cols > 0 && (uint64_t)t->rows > (uint64_t)(SIZE_MAX / sizeof(double)) / (uint64_t)t->cols)
        return dorac_error(DORAC_E_INVALID, "dist: all_reduce_sum: tensor %zu is too large", i);
    *count = (size_t)t->rows * (size_t)t->cols;
    return DORAC_OK;
}

/* Downloads the tensors as doubles into host batches of up to PACK_DOUBLES
** (a larger tensor alone), sums each batch over ranks and uploads it back.
** Shapes match on every rank, so every rank forms the same batches. */
static int tcp_all_reduce_sum(dorac_dist *d, dorac_backend *be, const dorac_tensor *const *t,
                              size_t n) {
    if (!be || (!t && n > 0))
        return dorac_error(DORAC_E_INVALID, "dist: all_reduce_sum: NULL argument");
    size_t total = 0, largest = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = 0;
        DORAC_TRY(tensor_count(t[i], i, &c));
        total = total + c < total ? SIZE_MAX : total + c;
        if (c > largest) largest = c;
    }
    if (d->world == 1 || total == 0) return DORAC_OK;
    size_t cap = largest > PACK_DOUBLES ? largest : PACK_DOUBLES;
    if (cap > total) cap = total;
    double *host = malloc(cap * sizeof *host);
    if (!host)
        return dorac_error(DORAC_E_NOMEM, "dist rank %d: all_reduce_sum: no memory for %zu doubles",
                           d->rank, cap);
    int status = DORAC_OK;
    for (size_t i = 0; i < n && status == DORAC_OK;) {
        size_t j = i, used = 0;
        while (j < n && status == DORAC_OK) {
            size_t c = (size_t)t[j]->rows * (size_t)t[j]->cols;
            if (used > 0 && used + c > cap) break;
            if (c > 0) status = be->download(be, host + used, DORAC_DTYPE_F64, t[j]);
            used += c;
            j++;
        }
        if (status == DORAC_OK) status = dorac_tcp_group_all_reduce(d->context, host, used);
        for (size_t k = i, off = 0; k < j && status == DORAC_OK; k++) {
            size_t c = (size_t)t[k]->rows * (size_t)t[k]->cols;
            if (c > 0) status = be->upload(be, t[k], host + off, DORAC_DTYPE_F64);
            off += c;
        }
        /* the host batch is reused or freed next: let uploads finish reading it */
        if (status == DORAC_OK && be->synchronize) status = be->synchronize(be);
        i = j;
    }
    free(host);
    return status;
}

static int tcp_all_reduce_host(dorac_dist *d, double *v, size_t n) {
    return dorac_tcp_group_all_reduce(d->context, v, n);
}

static int tcp_broadcast_host(dorac_dist *d, void *buf, size_t nbytes) {
    return dorac_tcp_group_broadcast(d->context, buf, nbytes);
}

static int tcp_barrier(dorac_dist *d) {
    return dorac_tcp_group_barrier(d->context);
}

static void tcp_destroy(dorac_dist *d) {
    if (!d) return;
    dorac_tcp_group_close(d->context);
    free(d);
}

int dorac_dist_open_tcp(const dorac_dist_env *env, dorac_dist **out) {
    if (!out) return dorac_error(DORAC_E_INVALID, "dist: tcp open: out is NULL");
    *out = NULL;
    dorac_tcp_group *g = NULL;
    DORAC_TRY(dorac_tcp_group_open(env, &g));
    dorac_dist *d = calloc(1, sizeof *d);
    if (!d) {
        dorac_tcp_group_close(g);
        return dorac_error(DORAC_E_NOMEM, "dist: tcp open: out of memory");
    }
    *d = (dorac_dist){
        /* .name            = */ "tcp",
        /* .rank            = */ env->rank,
        /* .world           = */ env->world,
        /* .local_rank      = */ env->local_rank,
        /* .context         = */ g,
        /* .destroy         = */ tcp_destroy,
        /* .all_reduce_sum  = */ tcp_all_reduce_sum,
        /* .all_reduce_host = */ tcp_all_reduce_host,
        /* .broadcast_host  = */ tcp_broadcast_host,
        /* .barrier         = */ tcp_barrier,
    };
    *out = d;
    return DORAC_OK;
}
