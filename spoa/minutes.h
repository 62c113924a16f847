/* Per-minute outcome buckets of one endpoint over the last hour: the
 * dashboard's "% different" chart. A fixed ring of MINUTES_KEPT buckets,
 * O(1) per exchange, no allocation. Loop thread only. */
#ifndef MIFFY_MINUTES_H
#define MIFFY_MINUTES_H

#include <stdint.h>

#include "exchange-t.h"
#include "minutes-t.h"

/* Counts outcome o of one exchange that ended at now (wall clock, seconds)
 * in the bucket of its minute, reusing the slot of the minute an hour ago.
 * Outcomes other than the four counted ones are ignored. */
void minutes_add(struct minutes *m, double now, enum outcome o);

/* The bucket of the minute `ago` minutes before now's (0: the current one,
 * MINUTES_KEPT - 1: the oldest kept); zeros, with its minute set, when
 * nothing was counted then. ago >= MINUTES_KEPT gives zeros too. */
struct minute_bucket minutes_at(const struct minutes *m, double now, unsigned ago);

/* Adds the counts of b (a bucket of another ring: a snapshot's) to the
 * bucket of its minute, starting that slot over when it held an older
 * minute; a bucket older than the slot's minute is left out. minute 0:
 * nothing. */
void minutes_put(struct minutes *m, const struct minute_bucket *b);

/* minutes_put of every bucket of add. */
void minutes_merge(struct minutes *m, const struct minutes *add);

/* Takes the counts of sub's buckets from the same minutes of m (never
 * below zero). */
void minutes_subtract(struct minutes *m, const struct minutes *sub);

#endif
