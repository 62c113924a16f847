/* The table of in-flight exchanges, keyed by HAProxy's unique-id. */
#ifndef MIFFY_EXCHANGE_H
#define MIFFY_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "http.h"
#include "replay-t.h"

struct config;
struct spop_arg;
struct replay;
struct replay_xfer;
struct compare;
struct noise;
struct route;
struct publish;
struct exchange_table;

enum outcome {
	OUTCOME_EQUAL = 0,
	OUTCOME_DIFFERENT,
	OUTCOME_NOISE,
	OUTCOME_CANDIDATE_ERROR,
	OUTCOME_SKIPPED,
	OUTCOME_EXPIRED,
	OUTCOME_DROPPED,
	OUTCOME_COUNT
};

enum skip_reason {
	SKIP_NONE = 0,
	SKIP_METHOD,
	SKIP_REQUEST_TRUNCATED,
	SKIP_OVERLOAD,
	SKIP_SHUTDOWN,
	SKIP_UNREPLAYABLE,           /* a target the replay refuses, e.g. "OPTIONS *" */
	SKIP_REASON_COUNT
};

/* Events that are not exchanges: counted, logged, never fatal. */
enum anomaly {
	ANOMALY_MISSING_ID = 0,
	ANOMALY_DUPLICATE_ID,
	ANOMALY_ORPHAN_RESPONSE,
	ANOMALY_BAD_ARGS,
	ANOMALY_UNKNOWN_MESSAGE,
	ANOMALY_COUNT
};

/* One client request seen by HAProxy, its reference response and the
 * replays' responses. Owned by the table; read-only for compare and publish. */
struct exchange {
	char *id;
	char *endpoint;              /* from route_name() */
	char *method;
	char *path;
	char *query;                 /* NULL when the request had none */
	char *version;               /* "1.1", "2.0" */
	struct header_list req_headers;
	uint8_t *req_body;
	size_t req_body_len;
	bool req_truncated;

	struct http_response reference;
	struct http_response replies[ROLE_COUNT];
	bool have_reference;
	bool want[ROLE_COUNT];       /* a replay was started */
	bool have[ROLE_COUNT];       /* its response (or error) is in */
	struct replay_xfer *xfer[ROLE_COUNT];

	enum skip_reason skip;
	ev_tstamp t_request;         /* miffy-req arrived */
	ev_tstamp t_response;        /* miffy-res arrived */
	ev_tstamp deadline;          /* TTL expiry */

	/* table links (private to exchange.c) */
	struct exchange_table *table;
	size_t held;                 /* body bytes counted in the table's budget */
	struct exchange *hnext;
	struct exchange *older, *newer;
};

struct exchange_deps {
	struct ev_loop *loop;
	const struct config *cfg;
	struct replay *replay;       /* may be NULL */
	struct compare *compare;     /* may be NULL */
	struct noise *noise;         /* may be NULL */
	struct route *route;         /* may be NULL */
	struct publish *publish;     /* may be NULL */
};

/* Creates the table (deps copied; what they point to is borrowed and must
 * outlive it). Returns NULL with a message in err on allocation failure.
 * The caller frees with exchange_table_free(). */
struct exchange_table *exchange_table_new(const struct exchange_deps *deps, char *err, size_t errlen);

/* Cancels every in-flight replay, counts each pending exchange as
 * skipped (reason shutdown unless it was skipped already) and frees the
 * table (NULL is fine). */
void exchange_table_free(struct exchange_table *t);

/* Handles one SPOE message by name ("miffy-tx", or "miffy-req" / "miffy-res") with its
 * decoded arguments, which point into the caller's frame buffer and are
 * copied as needed. Never fails: problems are counted outcomes. */
void exchange_on_message(struct exchange_table *t, const char *name, size_t name_len,
			 const struct spop_arg *args, size_t nargs);

/* Has fn(arg) called before each exchange's verdict (compare, publish),
 * the costly part of the loop's work, from the replay's completion: no
 * exchange or replay is half-updated there. The agent reads its HAProxy
 * connections in it, so that a NOTIFY that arrived while the loop was
 * busy is ACKed between two verdicts, not after all of them. */
void exchange_table_set_yield(struct exchange_table *t, void (*fn)(void *), void *arg);

/* Number of exchanges in the table. */
size_t exchange_table_count(const struct exchange_table *t);

/* The names of /stats, /metrics and the Kafka message ("equal",
 * "request_truncated", ...): static strings; the value must be below its
 * _COUNT. */
const char *outcome_name(enum outcome o);
const char *skip_reason_name(enum skip_reason r);
const char *anomaly_name(enum anomaly a);
const char *role_name(enum replay_role r);

#endif
