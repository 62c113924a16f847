/* Process-wide counters, the per-endpoint view (Diffy's), and their two
 * renderings: the /stats JSON and the /metrics Prometheus text. Everything
 * here is written and read only from the event loop thread; the admin
 * server's own thread sees rendered copies, never these tables. */
#ifndef MIFFY_STATS_H
#define MIFFY_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "exchange-t.h"
#include "stats-t.h"

#define STATS_DISCONNECT_SLOTS 16   /* status codes 0..14, slot 15 for 99 and others */

/* Cardinality caps: endpoints past the first STATS_MAX_ENDPOINTS share the
 * "other" entry (and Prometheus label), fields of an endpoint likewise. */
#define STATS_MAX_ENDPOINTS 100
#define STATS_MAX_FIELDS 100
#define STATS_LAST_IDS 10           /* last differing exchange ids per endpoint */
#define STATS_OTHER "other"

struct diff_list;
struct noise;

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
	/* the limits in force (admit.h), set once at start */
	uint64_t limit_concurrent;
	uint64_t limit_connections;     /* per target */
	uint64_t limit_rps;             /* 0: no cap */

	/* compare */
	uint64_t json_depth_exceeded;
	uint64_t compare_budget_exceeded;  /* reordering not checked: too costly */
	uint64_t compare_key_fallback;     /* keyed arrays paired by index: key absent or repeated */
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

/* Records a request dropped before it became an exchange (the table full,
 * out of memory): outcome dropped, under no endpoint. stats_exchange_done
 * and this are the only writers of the outcome counters. */
void stats_request_dropped(void);

/* Records how long one ACK took: from the arrival of its NOTIFY (the
 * kernel's receive time) to the write that sent the ACK out. */
void stats_ack_observe(double seconds);


/* The /stats document (counters, per-endpoint view). The caller frees it
 * with cJSON_Delete(); NULL on allocation failure. */
struct cJSON;
struct cJSON *stats_json(void);

/* The same document as text (one line of JSON and a line feed), written
 * directly: cheap enough to render on the loop. The caller frees; NULL on
 * allocation failure. len may be NULL. */
char *stats_json_text(size_t *len);

/* The /metrics document in the Prometheus text exposition format 0.0.4.
 * Returns a NUL-terminated string the caller frees and sets *len to its
 * length; NULL on allocation failure. */
char *stats_metrics_text(size_t *len);

/* Lets /stats show the noise module's per-field raw/noise counts (Diffy's
 * view, with a secondary) beside the agent's own. n is borrowed: call
 * stats_set_noise(NULL) before freeing it.
 *
 * The two per endpoint x field tables are two facts, each with one writer:
 * stats' "fields" (written by stats_exchange_done) count, over every
 * different or noise exchange, where the candidate differed (raw) and how
 * many of those differences were judged noise (noise), capped at
 * STATS_MAX_ENDPOINTS x STATS_MAX_FIELDS for the exposition; the noise
 * module's "noise_fields" (written by noise_mark, read here through
 * noise_stats_write) count, over the exchanges a secondary answered, where
 * the candidate differed (raw) and where the secondary differed (noise),
 * the inputs of Diffy's rule, with caps of their own. */
void stats_set_noise(const struct noise *n);

/* The rule of the per-endpoint latency verdicts, the configuration's
 * (copied). Until it is set, all zeros. */
struct latency_rule;
void stats_set_latency_rule(const struct latency_rule *rule);

/* Names the candidates, in order (exchange.candidate indexes them). With
 * two or more, /stats and /metrics add a view per candidate (the
 * "candidates" object; the *_by_candidate_total families) and the
 * top-level counts are their sum: each exchange ends once per candidate.
 * With one, the top level is that candidate's and no view is added.
 * Returns 0, -1 on ENOMEM (no views then). */
int stats_set_candidates(const char *const *names, unsigned n);

/* Lets /stats and /metrics show the dashboard samples' counters. s is
 * borrowed: call stats_set_samples(NULL) before freeing it. */
struct samples;
void stats_set_samples(struct samples *s);

/* Lets /stats ("fingerprints") and /metrics (miffy_fingerprint_*) show the
 * fingerprint table. t is borrowed: call stats_set_fingerprints(NULL)
 * before freeing it. */
struct fingerprints;
void stats_set_fingerprints(const struct fingerprints *t);
/* Lets /stats and /metrics show what another module knows (the fleet
 * report's "fleet" object): json writes members into /stats' top object,
 * metrics appends families to /metrics. Both run on the loop thread while
 * rendering; NULL, NULL, NULL stops it. */
struct jsonw;
struct buf;
void stats_set_extra(void (*json)(struct jsonw *w, void *ctx), void (*metrics)(struct buf *b, void *ctx), void *ctx);

/* Adds c to the compare counters (compare_budget_exceeded,
 * compare_key_fallback, decompress_failed, json_depth_exceeded). Called once per exchange, by
 * the exchange's conclusion, after publishing has decoded what it needed. */
void stats_compare_done(const struct stats_compare *c);

/* Records the replay limits in force (shown under /stats "replays" and as
 * miffy_replay_limit gauges). */
struct admit_limits;
void stats_set_limits(const struct admit_limits *lim);

/* Releases per-endpoint tables and resets them (the global counters in
 * `stats` are left alone). */
void stats_free(void);

/* Everything back to zero, as at start: the global counters in `stats`
 * and the per-endpoint tables (stats_free()). For the unit tests, which
 * share one process; the agent never resets its counters. */
void stats_reset(void);

/* The cumulative counters (not the gauges), the histograms and the
 * per-endpoint tables as a snapshot (docs/fleet.md): s is empty, filled
 * and sorted. 0, -1 on allocation failure. */
struct snapshot;
int stats_export(struct snapshot *s);

/* Adds s's counts to the counters and tables (an agent resuming from its
 * last snapshot; the report summing the fleet's). Endpoints and fields
 * past the caps count as "other". */
void stats_import(const struct snapshot *s);

/* ---- pure helpers, public for the unit tests -------------------------- */

/* Upper bounds, in seconds, of the Prometheus histogram buckets: response
 * latencies (stats_hist_bounds) and ACK latencies, finer (stats_ack_bounds);
 * a last +Inf bucket follows. */
#define STATS_HIST_BOUNDS 14
extern const double stats_hist_bounds[STATS_HIST_BOUNDS];
extern const double stats_ack_bounds[STATS_HIST_BOUNDS];

struct stats_hist {
	const double *bounds;                      /* NULL: stats_hist_bounds */
	uint64_t buckets[STATS_HIST_BOUNDS + 1];  /* not cumulative; last is +Inf */
	uint64_t count;
	double sum;                                /* seconds */
};

void stats_hist_observe(struct stats_hist *h, double seconds);

/* The _bucket (cumulative, le="+Inf" last), _sum and _count sample lines of
 * h for metric name; labels is "" or `key="value",...` (already escaped).
 * The caller frees; NULL on allocation failure. */
char *stats_hist_text(const char *name, const char *labels, const struct stats_hist *h);

/* s escaped as a Prometheus label value (backslash, double quote and line
 * feed become \\, \" and \n). The caller frees; NULL on allocation failure. */
char *stats_prom_escape(const char *s);

#endif
