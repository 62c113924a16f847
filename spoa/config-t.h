/* Types of config.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not config.h. */
#ifndef MIFFY_CONFIG_T_H
#define MIFFY_CONFIG_T_H

#include <stdbool.h>
#include <stddef.h>

struct str_list {
	char **items;
	size_t count;
};

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG, LOG_LEVEL_COUNT };

enum publish_policy { PUBLISH_DIFFERENCES = 0, PUBLISH_NOISE, PUBLISH_ALL, PUBLISH_POLICY_COUNT };

/* Candidates one agent compares with the reference (--candidate NAME=URL,
 * repeatable): each request is replayed to every one of them. */
#define MIFFY_MAX_CANDIDATES 16
#define MIFFY_CANDIDATE_NAME_MAX 64  /* bytes of a name */
#define MIFFY_CANDIDATE_DEFAULT "candidate" /* the name of a bare URL */

struct candidate_target {
	char *name;                  /* a token of [A-Za-z0-9_.-], unique */
	char *url;
};

struct config {
	char *file;                  /* path given with -f, or NULL */

	/* agent */
	char *listen;                /* "127.0.0.1:12345" */
	unsigned max_frame_size;     /* upper bound offered to HAProxy, default 16380 */
	unsigned max_connections;    /* accepted HAProxy connections, default 1024 */
	double hello_timeout;        /* seconds a new connection has to send HELLO, 5 */
	double idle_timeout;         /* seconds without a frame before closing, 60 */
	double drain_timeout;        /* seconds to finish in-flight work on SIGTERM, 10 */

	/* exchange table */
	double exchange_ttl;         /* seconds, 30 */
	unsigned max_exchanges;      /* hard cap on in-flight exchanges, 100000 */
	size_t max_buffered;         /* bytes of bodies held by exchanges, 256 MiB */

	/* replay */
	char *candidate;             /* the file's key: URL or NAME=URL */
	struct str_list candidates;  /* the file's key: "NAME=URL" (or URL) entries */
	/* The candidates in order, resolved by config_load() from --candidate
	 * flags, else from candidate then candidates; at least one: what the
	 * replay reads (a struct filled by hand fills these). */
	struct candidate_target cands[MIFFY_MAX_CANDIDATES];
	unsigned ncandidates;
	char *secondary;             /* URL or NULL */
	bool preserve_host;
	char *marker_header;         /* "X-Miffy-Role" */
	struct str_list methods;     /* GET HEAD OPTIONS */
	double connect_timeout;      /* seconds, 1 */
	double timeout;              /* seconds, total per replay, 5 */
	unsigned max_concurrent;     /* replays in flight; 0: max_buffered / ADMIT_REPLAY_COST */
	size_t max_body;             /* bytes of a candidate body kept, 1 MiB */
	char *ca_file;               /* or NULL */
	bool insecure;               /* skip TLS verification */
	unsigned max_host_connections; /* per target; 0: max_concurrent within the fd limit */
	unsigned max_candidate_rps;  /* exchanges replayed per second; 0: no cap */
	char *replay_engine;         /* "auto" (native HTTP/1.1 where possible) | "curl"; NULL = auto */

	/* compare */
	struct str_list ignore_headers;   /* default list of DESIGN.md */
	struct str_list ignore_paths;     /* JSON Pointers with * and ** */
	struct str_list unordered_paths;  /* arrays whose order is irrelevant */
	struct str_list array_keys;       /* "POINTER=MEMBER[!ordered]": arrays paired by key */
	bool ignore_order;                /* order irrelevant everywhere */
	double abs_tolerance;             /* numbers equal when |a-b| <= abs */
	double rel_tolerance;             /* ... or <= rel * max(|a|,|b|) */
	unsigned max_depth;               /* JSON nesting, 128 */
	size_t max_decompressed;          /* bytes after gzip/deflate, 8 MiB */
	struct str_list endpoints;        /* "GET /api/:id", "/users/ *" style patterns */

	/* noise */
	double noise_relative;       /* 0.20 */
	double noise_absolute;       /* 0.0003 (0.03 %) */

	/* latency verdicts (verdict.h): the candidate is slower at p50 or p99
	 * when above reference * (1 + tolerance) and reference + floor_ms,
	 * judged once both sides have min_count latencies */
	double latency_tolerance;    /* 0.25 */
	double latency_floor_ms;     /* 5 */
	unsigned latency_min_count;  /* 100 */

	/* publish */
	char *sink;                  /* "kafka" | "stdout" | "file:PATH" */
	char *kafka_brokers;         /* "127.0.0.1:9092" */
	char *topic;                 /* "miffy" */
	struct str_list kafka_properties; /* "key=value" librdkafka properties */
	enum publish_policy publish;
	double sample_rate;          /* for PUBLISH_ALL, 0..1, default 1 */
	size_t max_message;          /* bytes, 1 MiB */
	struct str_list redact_headers; /* authorization cookie set-cookie proxy-authorization */
	double flush_timeout;        /* seconds on shutdown, 5 */
	unsigned fingerprints_max;   /* endpoint x fingerprint entries kept, 1000 */
	unsigned fingerprint_limit;  /* messages sent per fingerprint per interval; 0: all */
	double fingerprint_interval; /* seconds, 60 */

	/* admin */
	char *admin;                 /* "127.0.0.1:9000" or "off" */
	unsigned samples_per_endpoint;   /* dashboard samples kept per endpoint, 20; 0: none */
	unsigned samples_per_field;      /* ... holding one field of an endpoint, 5; 0: no bound */
	size_t samples_endpoint_bytes;   /* message bytes per endpoint, 2 MiB (also one sample's cap) */
	unsigned samples_max;            /* samples in all, 1000 */
	size_t samples_max_bytes;        /* message bytes in all, 32 MiB */

	/* fleet (docs/fleet.md) */
	double stats_interval;       /* seconds between two counter snapshots, 10 */
	char *stats_topic;           /* the snapshots' Kafka topic; unset: "<topic>-stats" */
	char *instance;              /* the agent's id in the fleet; unset: "<hostname>:<listen port>" */
	char *state_file;            /* where the agent keeps its last snapshot, or NULL */
	bool report;                 /* `miffy report`: the fleet's reader, not an agent */

	/* logging */
	enum log_level log_level;
	bool log_json;
	char *log_file;              /* NULL: stderr */
};

#endif
