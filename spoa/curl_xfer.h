/* The libcurl transport: one curl multi handle driven by the caller's libev
 * loop (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION), for any http(s) target.
 * Private to replay.c, which picks the transport of each target. */
#ifndef MIFFY_CURL_XFER_H
#define MIFFY_CURL_XFER_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "request-t.h"

struct curl_engine;
struct curl_xfer;

struct curl_limits {
	long connect_timeout_ms;     /* > 0 */
	long timeout_ms;             /* > 0, the whole transfer */
	size_t max_body;             /* body bytes kept; the rest drained (REPLAY_DRAIN_MAX) */
	long max_host_conns;         /* open connections per target */
	long max_idle_conns;         /* idle connections kept, all targets */
	const char *ca_file;         /* NULL: the system's; copied */
	bool insecure;               /* no certificate or host name check */
};

/* Creates the engine on loop (curl_global_init must have been called).
 * Returns NULL with a message in err on failure. */
struct curl_engine *curl_engine_new(struct ev_loop *loop, const struct curl_limits *lim, char *err,
				    size_t errlen);

/* Cancels every transfer (no callbacks), closes the connections, frees e. */
void curl_engine_free(struct curl_engine *e);

/* Sends rq as to says (url, prefix, Host, marker). Copies what it needs of
 * rq, which may go away on return. Returns the transfer, or NULL on
 * failure; done is called once, never from inside curl_xfer_start(),
 * unless curl_xfer_cancel() came first. */
struct curl_xfer *curl_xfer_start(struct curl_engine *e, const struct replay_request *rq,
				  const struct request_dest *to, ev_tstamp t_start, transport_done_fn done,
				  void *arg);

/* Stops xf without a callback and frees it. */
void curl_xfer_cancel(struct curl_xfer *xf);

#endif
