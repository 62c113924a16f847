/* Process-wide counters. Written only from the event loop thread. */
#ifndef MIFFY_STATS_H
#define MIFFY_STATS_H

#include <stdint.h>

#include "exchange.h"

#define STATS_DISCONNECT_SLOTS 16   /* status codes 0..14, slot 15 for 99 and others */

struct diff_list;

struct stats {
	double started;                 /* wall clock at start */

	/* SPOP */
	uint64_t conn_accepted;
	uint64_t conn_refused;          /* above max_connections */
	uint64_t conn_active;
	uint64_t conn_healthchecks;
	uint64_t frames_in;
	uint64_t frames_out;
	uint64_t notify_frames;
	uint64_t ack_frames;
	uint64_t messages;              /* SPOE messages decoded from NOTIFYs */
	uint64_t disconnect_sent[STATS_DISCONNECT_SLOTS];
	uint64_t disconnect_received;
	uint64_t idle_timeouts;

	/* exchanges */
	uint64_t exchanges_started;
	uint64_t outcomes[OUTCOME_COUNT];
	uint64_t skips[SKIP_REASON_COUNT];
	uint64_t anomalies[ANOMALY_COUNT];
	uint64_t exchanges_inflight;

	/* replay */
	uint64_t replays_started[ROLE_COUNT];
	uint64_t replays_inflight;

	/* compare */
	uint64_t json_depth_exceeded;
	uint64_t decompress_failed;

	/* publish */
	uint64_t published;             /* handed to the sink */
	uint64_t kafka_delivered;
	uint64_t kafka_failed;
	uint64_t kafka_dropped;         /* local queue full or produce error */
	uint64_t kafka_queue_depth;     /* gauge, refreshed by publish */
	uint64_t sink_errors;           /* file/stdout write errors */
	uint64_t messages_cut;          /* over max_message, bodies cut */
};

extern struct stats stats;

static inline unsigned stats_disconnect_slot(unsigned status)
{
	return status < STATS_DISCONNECT_SLOTS - 1 ? status : STATS_DISCONNECT_SLOTS - 1;
}

/* Records the end of one exchange: its outcome, endpoint, latencies and
 * differences (diffs may be NULL). Called exactly once per exchange. */
void stats_exchange_done(const struct exchange *x, enum outcome o, const struct diff_list *diffs);

/* Records a failed replay by reason ("timeout", "connect", ...). */
void stats_candidate_error(enum replay_role role, const char *reason);

/* The /stats document (counters, per-endpoint view). The caller frees it
 * with cJSON_Delete(); NULL on allocation failure. */
struct cJSON;
struct cJSON *stats_json(void);

/* Releases per-endpoint tables. */
void stats_free(void);

#endif
