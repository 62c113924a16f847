/* Types of exchange.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not exchange.h. */
#ifndef MIFFY_EXCHANGE_T_H
#define MIFFY_EXCHANGE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "http-t.h"
#include "replay-t.h"

struct replay_xfer;

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
	SKIP_CANDIDATE_CAP,          /* above a cap of the candidate (admit.h) */
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
	unsigned admit_slot;         /* its endpoint's in the admission (admit.h) */
	/* Which candidate replies[ROLE_CANDIDATE] is of: 0, the first, in the
	 * table; the others' replies are the table's, and stats and publish see
	 * each candidate's judgement through a copy of this struct with its
	 * reply there and its number here (config_candidate_name()). */
	unsigned candidate;

	enum skip_reason skip;
	ev_tstamp t_request;         /* miffy-req arrived */
	ev_tstamp t_response;        /* miffy-res arrived */
	ev_tstamp deadline;          /* TTL expiry */
};

#endif
