/* The shadow request: built once per exchange from the client's request
 * (request_build()), then sent to each target by either transport (h1.c,
 * curl_xfer.c). Types only. */
#ifndef MIFFY_REQUEST_T_H
#define MIFFY_REQUEST_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct header;
struct http_response;

enum request_flags {
	REQUEST_HEAD = 1 << 0,       /* the response has no body */
	REQUEST_IDEMPOTENT = 1 << 1, /* may be sent again on a fresh connection */
	REQUEST_BODY = 1 << 2,       /* body[0..body_len) goes with a Content-Length, even 0 */
};

/* The forwarding rules of the agent (config), the same for every request. */
struct request_rules {
	const char *marker;          /* the marker header's name, NULL when disabled */
	bool preserve_host;          /* send the client's Host, not the target's */
};

/* What both transports send, the rules applied. Borrows the strings of the
 * client's request it was built from (method, headers, body): valid while
 * they are. A transport copies what it keeps. */
struct replay_request {
	const char *method;          /* a token */
	char *target;                /* path and query, safe on a request line; in the
					headers array's allocation */
	size_t target_len;
	const char *host;            /* the client's Host to keep, else NULL: the target's */
	const struct header **headers; /* forwarded, in the client's order; the array is owned */
	size_t header_count;
	const uint8_t *body;
	size_t body_len;             /* sent only with REQUEST_BODY */
	unsigned flags;              /* enum request_flags */
};

/* Where one request goes: one per target and role. */
struct request_dest {
	const char *url;             /* what to connect to, "http://host:port/" (curl) */
	const char *prefix;          /* the target's base path, no trailing '/', may be "" */
	const char *host;            /* Host value unless the request keeps its own */
	const char *marker;          /* marker header name, NULL when disabled */
	const char *role;            /* the marker's value: "candidate", "secondary" */
};

/* Called once per started transfer unless cancelled, never from inside the
 * start call. *resp holds the response (latency_ms not set) or resp->error;
 * the callee takes ownership of its contents. The transfer is gone then. */
typedef void (*transport_done_fn)(void *arg, struct http_response *resp);

#endif
