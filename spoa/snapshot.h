/* Snapshots of the agent's cumulative counters: their Kafka/state_file
 * encoding (docs/fleet.md), decoding, and the merge of several. Pure: no
 * loop, no I/O; stats.c fills and applies them. */
#ifndef MIFFY_SNAPSHOT_H
#define MIFFY_SNAPSHOT_H

#include <stddef.h>

#include "snapshot-t.h"

/* The schema tag of a snapshot message ("miffy_stats": 1). */
#define SNAPSHOT_VERSION 1

/* A snapshot message is never larger than this (Kafka's default
 * message.max.bytes is 1000000: docs/fleet.md). */
#define SNAPSHOT_MAX_BYTES (900u * 1024)

/* Frees what s holds (not s) and zeroes it. */
void snapshot_clear(struct snapshot *s);

/* Sorts s's lists by name (after filling them in any order). Duplicate
 * names are merged by adding. Returns 0, -1 on allocation failure. */
int snapshot_sort(struct snapshot *s);

/* The counter name of s, or NULL. */
const struct snapshot_counter *snapshot_counter(const struct snapshot *s, const char *name);

/* Appends a counter (unsorted: call snapshot_sort). 0 or -1 (memory). */
int snapshot_add_counter(struct snapshot *s, const char *name, uint64_t v);

/* Appends an endpoint named name (unsorted), zeroed; NULL on ENOMEM. */
struct snapshot_endpoint *snapshot_add_endpoint(struct snapshot *s, const char *name);

/* Appends a field to e (unsorted). 0 or -1 (memory). */
int snapshot_add_field(struct snapshot_endpoint *e, const char *key, uint64_t raw, uint64_t noise);

/* dst += src: counters, histogram buckets and sums, outcomes, fields and
 * minutes add, maxima take the larger. dst's identity (instance, epoch,
 * seq) is left alone. Both sorted; dst stays sorted. 0 or -1 (memory: dst
 * is then partly merged). */
int snapshot_merge(struct snapshot *dst, const struct snapshot *src);

/* dst -= src, for what src holds of dst (src is a part of dst: a base the
 * agent resumed from); counts never go below zero, maxima stay. */
void snapshot_subtract(struct snapshot *dst, const struct snapshot *src);

/* The message text of s (one line of JSON, no line feed), at most
 * SNAPSHOT_MAX_BYTES. The caller frees; NULL when larger or on ENOMEM
 * (err says which). */
char *snapshot_encode(const struct snapshot *s, size_t *len, char *err, size_t errlen);

/* What a message on the stats topic is. */
enum snapshot_kind {
	SNAPSHOT_OK = 0,
	SNAPSHOT_FOREIGN,      /* valid JSON, but not a miffy snapshot (no "miffy_stats") */
	SNAPSHOT_GARBAGE,      /* not JSON, or a snapshot with a wrong shape */
	SNAPSHOT_NEWER,        /* a snapshot of a later schema version */
};

/* Decodes msg[0..len) into *out (zeroed first, sorted). Anything but
 * SNAPSHOT_OK leaves *out empty and says why in err. */
enum snapshot_kind snapshot_decode(const char *msg, size_t len, struct snapshot *out, char *err, size_t errlen);

/* Keeps *s, taken over (*s is empty afterwards, whatever the answer),
 * when it is the latest snapshot of its (instance, epoch): a seq higher
 * than the one kept. A snapshot is never counted twice: a repeated or older
 * one is SNAPSHOT_SUPERSEDED. */
enum snapshot_put snapshot_epochs_put(struct snapshot_epochs *set, struct snapshot *s);

/* Frees every snapshot of set and empties it (max stays). */
void snapshot_epochs_clear(struct snapshot_epochs *set);

/* The Kafka key of an epoch's snapshots: "INSTANCE/EPOCH". 0, or -1 when
 * it does not fit. */
int snapshot_key(const char *instance, int64_t epoch, char *key, size_t keylen);

#endif
