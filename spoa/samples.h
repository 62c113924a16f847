/* Recent differing exchanges kept for the dashboard: the published message
 * (same shape, same redaction) of the last few different, noise and
 * candidate_error exchanges, bounded in count and bytes per endpoint, per
 * field and in all. The loop adds; the admin thread reads. Each sample is
 * immutable and reference-counted, and the lock is only ever held for list
 * and pointer moves (the index holds its samples and is written without the
 * lock), so neither thread waits for the other's work. */
#ifndef MIFFY_SAMPLES_H
#define MIFFY_SAMPLES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exchange-t.h"
#include "samples-t.h"

struct jsonw;
struct samples;
struct sample;

/* The /stats name of an eviction reason (static; "unknown" out of range). */
const char *samples_evict_name(enum samples_evict r);

/* An empty store with the limits lim (copied). Returns NULL with a message
 * in err on allocation failure. The caller frees with samples_free(). */
struct samples *samples_new(const struct samples_limits *lim, char *err, size_t errlen);

/* Frees s and every sample nobody holds (held ones go with their last
 * samples_release). NULL is fine. */
void samples_free(struct samples *s);

/* The largest message a sample may hold: callers build a smaller message
 * (cut bodies) when theirs is bigger. 0 when samples are off. */
size_t samples_max_message(const struct samples *s);

/* Keeps a copy of the message msg[0..len) of exchange id of endpoint, which
 * ended with outcome o at wall-clock time now and differed in fields
 * (the first SAMPLES_MAX_FIELDS distinct keys used; strings copied). Evicts the
 * oldest samples that the bounds require, counted by reason. Returns 0, or
 * -1 when msg is too large (counted) or memory runs out. Loop thread. */
int samples_add(struct samples *s, const char *id, const char *endpoint, enum outcome o,
		const struct sample_field *fields, size_t nfields, const char *msg, size_t len, double now);

/* The newest sample of exchange id, held until samples_release(); NULL when
 * none is kept. Any thread. */
struct sample *samples_get(struct samples *s, const char *id);

/* The message text of a held sample. */
const char *sample_text(const struct sample *x, size_t *len);

/* Drops a hold from samples_get (NULL is fine). Any thread. */
void samples_release(struct sample *x);

/* The counters, consistent with each other. Any thread. */
void samples_counts(struct samples *s, struct samples_counts *out);

/* Writes the keys "limits", "counts" and "samples" (the index, newest first:
 * id, time, endpoint, outcome, fields [{field, kind, noise}], bytes) into w's open object; only
 * samples of endpoint and holding field when those are not NULL. Any
 * thread. */
void samples_write_index(struct samples *s, struct jsonw *w, const char *endpoint, const char *field);

#endif
