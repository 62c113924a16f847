/* Types of snapshot.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not snapshot.h. */
#ifndef MIFFY_SNAPSHOT_T_H
#define MIFFY_SNAPSHOT_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exchange-t.h"
#include "minutes-t.h"

/* Buckets of a Prometheus histogram (stats_hist: 14 bounds and +Inf) and
 * of a per-endpoint percentile histogram (stats.c's log-scale one). */
#define SNAPSHOT_HIST_BUCKETS 15
#define SNAPSHOT_PCT_BUCKETS 100

/* The process-wide histograms a snapshot carries, by name. */
enum snapshot_hist_id {
	SNAPSHOT_HIST_REFERENCE = 0,
	SNAPSHOT_HIST_CANDIDATE,
	SNAPSHOT_HIST_SECONDARY,
	SNAPSHOT_HIST_ACK,
	SNAPSHOT_HIST_COUNT
};

/* The per-endpoint latency sources (stats.c's lat_source order). */
#define SNAPSHOT_LAT_COUNT 3

struct snapshot_counter {
	char *name;                      /* "outcomes.equal", "conn_accepted", ... */
	uint64_t v;
};

struct snapshot_hist {
	uint64_t buckets[SNAPSHOT_HIST_BUCKETS];  /* not cumulative; the last is +Inf */
	double sum;                      /* seconds */
	double max;                      /* seconds; merges by max */
};

struct snapshot_pct {
	uint64_t counts[SNAPSHOT_PCT_BUCKETS];
	double max_ms;                   /* merges by max */
};

struct snapshot_field {
	char *key;
	uint64_t raw;
	uint64_t noise;
};

struct snapshot_endpoint {
	char *name;
	uint64_t outcomes[OUTCOME_COUNT];
	uint64_t skips[SKIP_REASON_COUNT];  /* of outcomes[OUTCOME_SKIPPED], by reason */
	struct snapshot_pct latency[SNAPSHOT_LAT_COUNT];
	struct snapshot_field *fields;   /* sorted by key */
	size_t nfields;
	struct minutes minutes;          /* a ring like the agent's */
};

/* The cumulative counters of one agent epoch (or a sum of several): what
 * an agent publishes every stats_interval, what the report merges. Every
 * list is sorted by name, so merging is a walk. */
struct snapshot {
	char *instance;                  /* the agent's instance id */
	int64_t epoch;                   /* its start, ms since the Unix epoch */
	uint64_t seq;                    /* 1, 2, ... within the epoch */
	double time;                     /* wall clock when taken */
	bool final;                      /* the last of its epoch (the agent stopped) */
	struct snapshot_counter *counters;
	size_t ncounters;
	struct snapshot_hist hists[SNAPSHOT_HIST_COUNT];
	struct snapshot_endpoint *endpoints;
	size_t nendpoints;
};

/* Agent epochs a view keeps at most (a start is one). */
#define SNAPSHOT_EPOCHS_MAX 100000

/* The latest snapshot of each (instance, epoch): what the fleet's view
 * adds up (docs/fleet.md). */
struct snapshot_epochs {
	struct snapshot *items;
	size_t n;
	size_t max;                      /* epochs kept at most; 0: SNAPSHOT_EPOCHS_MAX */
};

enum snapshot_put {
	SNAPSHOT_TAKEN = 0,              /* the latest of its epoch now */
	SNAPSHOT_SUPERSEDED,             /* its epoch has this seq or a later one: dropped */
	SNAPSHOT_FULL,                   /* a new epoch past max: dropped */
	SNAPSHOT_NOMEM,
};

#endif
