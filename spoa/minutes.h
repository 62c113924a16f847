/* Per-minute outcome buckets of one endpoint over the last hour: the
 * dashboard's "% different" chart. A fixed ring of MINUTES_KEPT buckets,
 * O(1) per exchange, no allocation. Loop thread only. */
#ifndef MIFFY_MINUTES_H
#define MIFFY_MINUTES_H

#include <stdint.h>

#include "exchange.h"

#define MINUTES_KEPT 60

struct minute_bucket {
	int64_t minute;          /* wall-clock minute (seconds / 60) it counts, 0: never used */
	uint32_t compared;       /* equal + different + noise */
	uint32_t different;
	uint32_t noise;
	uint32_t candidate_error;
};

struct minutes {
	struct minute_bucket b[MINUTES_KEPT];
};

/* Counts outcome o of one exchange that ended at now (wall clock, seconds)
 * in the bucket of its minute, reusing the slot of the minute an hour ago.
 * Outcomes other than the four counted ones are ignored. */
void minutes_add(struct minutes *m, double now, enum outcome o);

/* The bucket of the minute `ago` minutes before now's (0: the current one,
 * MINUTES_KEPT - 1: the oldest kept); zeros, with its minute set, when
 * nothing was counted then. ago >= MINUTES_KEPT gives zeros too. */
struct minute_bucket minutes_at(const struct minutes *m, double now, unsigned ago);

#endif
