/*
** dist_tcp.h — the TCP rendezvous as a group of sockets, for the dist
** implementations (dist_tcp.c builds the "tcp" collectives on it; the
** NCCL implementation uses it to hand out NCCL's unique id and for its
** host-side collectives). Internal to src/dist/.
**
** A group is a star: rank 0 holds one connected socket per other rank,
** every other rank one socket to rank 0. Opening it returns on every rank
** only once the whole world has joined. Every call is collective: all ranks
** make the same calls in the same order with the same sizes, and a
** mismatch is an error (messages carry a tag and a byte count that the
** receiver checks), never a misread.
**
** Timeouts: DORAC_DIST_TIMEOUT (whole seconds, default 600: long enough for
** rank 0 to write a full fine-tuning checkpoint while the others wait) bounds the
** rendezvous and every single send or receive afterwards.
*/
#ifndef DORAC_DIST_TCP_H
#define DORAC_DIST_TCP_H

#include <stddef.h>

#include "dist/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dorac_tcp_group dorac_tcp_group;

/* Runs the rendezvous for env (rank 0 listens on MASTER_PORT, the others
** connect) and returns the group in *out. DORAC_E_INVALID for a bad env, a
** malformed DORAC_DIST_TIMEOUT, or a peer announcing another world size or
** a rank already taken; DORAC_E_IO when a socket fails or the timeout
** passes; DORAC_E_NOMEM. */
int dorac_tcp_group_open(const dorac_dist_env *env, dorac_tcp_group **out);

/* Shuts every socket down (both directions) without closing it, so that a
** send or receive blocked on it in another thread returns at once; the
** peers see this rank gone. Then close g. NULL is fine. */
void dorac_tcp_group_shutdown(dorac_tcp_group *g);

/* Closes every socket and frees g (NULL is fine). */
void dorac_tcp_group_close(dorac_tcp_group *g);

/* v[0..n) on every rank becomes the sum over ranks, added in rank order
** 0, 1, ..., W-1 by rank 0, so every rank gets the same bits. */
int dorac_tcp_group_all_reduce(dorac_tcp_group *g, double *v, size_t n);

/* buf[0..nbytes) on every rank becomes rank 0's. */
int dorac_tcp_group_broadcast(dorac_tcp_group *g, void *buf, size_t nbytes);

/* Rank r sends part[0..part_bytes[r]); rank 0 receives every rank's part
** into all, in rank order (dist.h, gather_host). part_bytes has world
** entries, the same on every rank; all is read on rank 0 only. */
int dorac_tcp_group_gather(dorac_tcp_group *g, const void *part, void *all, const size_t *part_bytes);

/* Returns on each rank once every rank has called it. */
int dorac_tcp_group_barrier(dorac_tcp_group *g);

#ifdef __cplusplus
}
#endif

#endif
