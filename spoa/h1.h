/* The native transport: a minimal HTTP/1.1 client for plain-http targets
 * given by an IP literal. Non-blocking connects on the caller's libev loop,
 * a keep-alive pool per target; the response head is parsed by h1parse.c.
 * Private to replay.c, which picks the transport of each target. */
#ifndef MIFFY_H1_H
#define MIFFY_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <ev.h>

#include "http-t.h"
#include "request-t.h"

struct h1_pool;
struct h1_req;

struct h1_limits {
	double connect_timeout;      /* seconds */
	double timeout;              /* seconds, from the request's t_start */
	size_t max_body;             /* body bytes kept; the rest drained (REPLAY_DRAIN_MAX) */
	unsigned max_conns;          /* open connections to the target */
};

/* Fills *ss for host (an IPv4 or IPv6 literal, brackets allowed, or
 * "localhost", which is 127.0.0.1) and port without any name lookup.
 * Returns 0, or -1 when host is a name that would need DNS. */
int h1_literal_addr(const char *host, unsigned port, struct sockaddr_storage *ss, socklen_t *len);

/* Creates the pool of one target; name ("127.0.0.1:8080") is used in error
 * details. Returns NULL with a message in err on allocation failure or an
 * address too long to keep. The caller frees with h1_pool_free(). */
struct h1_pool *h1_pool_new(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
			    const char *name, const struct h1_limits *lim, char *err, size_t errlen);

/* Cancels every request (no callbacks), closes every connection, frees p. */
void h1_pool_free(struct h1_pool *p);

/* Sends rq to p's target as to says (prefix, Host, marker). Copies what it
 * needs of rq, which may go away on return. The total timeout runs from
 * t_start. Returns the request, or NULL on allocation failure; done is
 * called once, never from inside h1_start(), unless h1_cancel() came first. */
struct h1_req *h1_start(struct h1_pool *p, const struct replay_request *rq, const struct request_dest *to,
			ev_tstamp t_start, transport_done_fn done, void *arg);

/* Stops q without a callback; a connection in the middle of q's exchange is
 * closed, never reused. */
void h1_cancel(struct h1_req *q);

#endif
