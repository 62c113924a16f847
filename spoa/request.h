/* The shadow request, built once from the client's request with the
 * forwarding rules applied (hop-by-hop headers, Host, the marker, framing
 * headers the transport writes itself, headers that cannot go on one line). */
#ifndef MIFFY_REQUEST_H
#define MIFFY_REQUEST_H

#include "http-t.h"
#include "request-t.h"

/* Fills *rq from the client's request: method, path (origin-form, starts
 * with '/'), query (NULL when none, "" is kept), headers, body. *rq borrows
 * method, the header items and body (see struct replay_request). Returns 0;
 * -1 when the request cannot be replayed (a method that is not a token, a
 * path not in origin form: nothing in a request may redirect the agent);
 * -2 on allocation failure. *rq needs request_clear() only after 0. */
int request_build(struct replay_request *rq, const struct request_rules *rules, const char *method,
		  const char *path, const char *query, const struct header_list *headers,
		  const uint8_t *body, size_t body_len);

/* Frees what rq owns (not the borrowed strings) and empties it. */
void request_clear(struct replay_request *rq);

/* True when s is a non-empty HTTP token (RFC 9110 5.6.2): a valid method or
 * header name. */
bool request_is_token(const char *s);

/* Calls fn(arg, name, value) for each header line of rq as sent to dest,
 * in order: Host, the forwarded headers, the marker. Stops at and returns
 * the first non-zero value of fn, else 0. Content-Length is the transport's. */
int request_each_header(const struct replay_request *rq, const struct request_dest *dest,
			int (*fn)(void *arg, const char *name, const char *value), void *arg);

#endif
