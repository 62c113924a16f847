/* A minimal HTTP/1.1 client for plain-http targets given by an IP literal:
 * non-blocking connects on the caller's libev loop, a keep-alive pool per
 * target, a response parser. Private to replay.c, which builds the request
 * head and applies the header rules. */
#ifndef MIFFY_H1_H
#define MIFFY_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <ev.h>

#include "http.h"

struct h1_pool;
struct h1_req;

struct h1_limits {
	double connect_timeout;      /* seconds */
	double timeout;              /* seconds, from the request's t_start */
	size_t max_body;             /* body bytes kept; the rest drained */
	unsigned max_conns;          /* open connections to the target */
};

enum h1_flags {
	H1_HEAD = 1 << 0,            /* the response has no body */
	H1_IDEMPOTENT = 1 << 1,      /* may be retried once on a fresh connection */
};

/* Called once per request unless cancelled, never from inside h1_start().
 * *resp holds the response (latency_ms not set) or resp->error; the callee
 * takes ownership of its contents. The request is gone when this runs. */
typedef void (*h1_done_fn)(void *arg, struct http_response *resp);

/* Fills *ss for host (an IPv4 or IPv6 literal, brackets allowed, or
 * "localhost", which is 127.0.0.1) and port without any name lookup.
 * Returns 0, or -1 when host is a name that would need DNS. */
int h1_literal_addr(const char *host, unsigned port, struct sockaddr_storage *ss, socklen_t *len);

/* Creates the pool of one target; name ("127.0.0.1:8080") is used in error
 * details. Returns NULL on allocation failure. */
struct h1_pool *h1_pool_new(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
			    const char *name, const struct h1_limits *lim);

/* Cancels every request (no callbacks), closes every connection, frees p. */
void h1_pool_free(struct h1_pool *p);

/* Sends head (the complete request head, ending with the blank line) and
 * body[0..body_len) to p's target. Takes ownership of head and body (both
 * malloc'd, body may be NULL) in every case. Returns the request, or NULL
 * on allocation failure. */
struct h1_req *h1_start(struct h1_pool *p, char *head, size_t head_len, uint8_t *body, size_t body_len,
			unsigned flags, ev_tstamp t_start, h1_done_fn done, void *arg);

/* Stops q without a callback; a connection in the middle of q's exchange is
 * closed, never reused. */
void h1_cancel(struct h1_req *q);

#endif
