/* Replays requests to the candidate and the secondary on the agent's libev
 * loop: the targets from config, the concurrency cap, and one start/cancel
 * interface over two transports, the native HTTP/1.1 client (h1.c) for
 * http:// targets given by an address literal and libcurl multi
 * (curl_xfer.c) for the rest (config replay_engine). */
#ifndef MIFFY_REPLAY_H
#define MIFFY_REPLAY_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "http-t.h"
#include "replay-t.h"
#include "request-t.h"

struct config;
struct replay;
struct replay_xfer;

/* Called once per started replay unless cancelled. *resp holds the response
 * or resp->error set; the callee takes ownership of its contents (it may
 * move them out and must eventually call http_response_clear()). */
typedef void (*replay_done_fn)(void *arg, enum replay_role role, unsigned candidate,
			       struct http_response *resp);

/* Creates the replayer for cfg->cands (resolved by config_load()) and
 * cfg->secondary. Returns NULL
 * with a message in err on a bad URL, a bad cfg->replay_engine or a libcurl
 * failure. */
struct replay *replay_new(struct ev_loop *loop, const struct config *cfg, char *err, size_t errlen);

/* Checks url the way replay_new() does for a target named what
 * ("candidate", "secondary"): http or https, a host, no query or fragment.
 * Returns 0, or -1 with a message in err. Opens nothing. */
int replay_check_url(const char *what, const char *url, char *err, size_t errlen);

/* Cancels all transfers (no callbacks) and frees everything. */
void replay_free(struct replay *r);

/* The forwarding rules to build requests with (request_build()); valid as
 * long as r. */
const struct request_rules *replay_rules(const struct replay *r);

/* Starts replaying rq (built with replay_rules(r)) to role's target: for
 * ROLE_CANDIDATE the candidate numbered candidate (0 for the first; ignored
 * for the secondary), given back to done. The concurrency cap counts every
 * replay of every target. What
 * the transfer needs of rq is copied: rq may go away on return. rq NULL
 * stands for a request that request_build() refused. Returns 0 and sets
 * *xfer, -1 when the concurrency cap is reached (caller counts overload,
 * whatever rq), -2 on another error (no such target, rq NULL, out of
 * memory). done is never called from inside replay_start(). */
int replay_start(struct replay *r, enum replay_role role, unsigned candidate, const struct replay_request *rq,
		 replay_done_fn done, void *arg, struct replay_xfer **xfer);

/* Stops a transfer; its callback will not be called. xfer may be NULL. */
void replay_cancel(struct replay *r, struct replay_xfer *xfer);

/* Transfers in flight. */
unsigned replay_inflight(const struct replay *r);

/* True when a secondary target is configured. */
bool replay_has_secondary(const struct replay *r);

/* The number of candidate targets, at least 1. */
unsigned replay_candidates(const struct replay *r);

#endif
