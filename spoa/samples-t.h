/* Types of samples.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not samples.h. */
#ifndef MIFFY_SAMPLES_T_H
#define MIFFY_SAMPLES_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fields of a sample taken into account by the per-field bound (and listed
 * in the index); the message itself keeps every difference. */
#define SAMPLES_MAX_FIELDS 16

enum samples_evict {
	SAMPLES_EVICT_FIELD = 0,         /* samples_per_field of one of its fields */
	SAMPLES_EVICT_ENDPOINT,          /* samples_per_endpoint */
	SAMPLES_EVICT_ENDPOINT_BYTES,    /* samples_endpoint_bytes */
	SAMPLES_EVICT_TOTAL,             /* samples_max or samples_max_bytes */
	SAMPLES_EVICT_COUNT
};

/* One field an exchange differed in. */
struct sample_field {
	const char *key;                 /* diff_field_key(): "body:/length", "header:etag", ... */
	const char *kind;                /* "value", "type", "missing", "extra", "order" */
	bool noise;
};

struct samples_limits {
	unsigned per_endpoint;           /* 0: keep none */
	unsigned per_field;              /* 0: no per-field bound */
	size_t endpoint_bytes;
	unsigned max_count;
	size_t max_bytes;
};

struct samples_counts {
	uint64_t taken;
	uint64_t too_large;              /* over samples_endpoint_bytes even cut */
	uint64_t evicted[SAMPLES_EVICT_COUNT];
	uint64_t stored;                 /* gauge */
	uint64_t bytes;                  /* gauge: message bytes held */
};

#endif
