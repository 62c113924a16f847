/* fingerprint — what kind of difference an exchange shows, as a short
 * stable string, and the table that groups exchanges by it per endpoint.
 *
 * The fingerprint of an exchange is the FNV-1a 64 (16 lower-case hex
 * digits) of the set of its differences' (where, path, kind), the path's
 * array indices collapsed to "*": two exchanges of one endpoint that differ
 * in the same way have the same one, in whatever order, however many
 * elements of an array differ. A candidate_error exchange's set is its
 * replay error; an equal exchange's, the empty set.
 *
 * The table counts, per endpoint x fingerprint (x candidate, when an
 * agent compares several: each candidate's entries and limit are its
 * own), the exchanges seen, when
 * first and last, one sample id, and applies fingerprint_limit: at most
 * that many messages of one fingerprint are sent per fingerprint_interval,
 * the rest counted as suppressed. It holds at most fingerprints_max
 * entries; the least recently seen is evicted (counted) to make room,
 * which also starts its interval anew. Loop thread only. */
#ifndef MIFFY_FINGERPRINT_H
#define MIFFY_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compare-t.h"
#include "exchange-t.h"

#define FINGERPRINT_LEN 16          /* hex digits, a NUL follows */

/* Writes the fingerprint of an exchange that ended with outcome o, with
 * the differences diffs (NULL: none) and the candidate's replay error
 * error (read only for OUTCOME_CANDIDATE_ERROR), into out. */
void fingerprint_of(const struct diff_list *diffs, enum outcome o, enum replay_error error,
		    char out[FINGERPRINT_LEN + 1]);

struct fingerprints;

struct fingerprint_limits {
	unsigned max_entries;       /* fingerprints_max, at least 1 */
	unsigned per_interval;      /* fingerprint_limit; 0: no limit */
	double interval;            /* fingerprint_interval, seconds */
};

struct fingerprint_counts {
	uint64_t entries;           /* kept now */
	uint64_t evicted;           /* entries dropped to make room */
	uint64_t suppressed;        /* messages not sent: over the limit */
};

/* One entry, as the renderers of /stats and /metrics read it (borrowed,
 * valid during the callback only). */
struct fingerprint_view {
	const char *endpoint;
	const char *candidate;      /* NULL: the only one */
	const char *fingerprint;
	uint64_t count;             /* exchanges seen */
	uint64_t suppressed;        /* of those, messages not sent */
	double first_seen, last_seen;  /* wall clock */
	const char *sample_id;      /* the last exchange kept as a sample; NULL: none */
};

/* An empty table with the limits lim (copied). NULL with a message in err
 * on a bad limit or allocation failure. */
struct fingerprints *fingerprints_new(const struct fingerprint_limits *lim, char *err, size_t errlen);
void fingerprints_free(struct fingerprints *t);

/* Counts one exchange of endpoint (NULL: "") to candidate (NULL: the
 * only one; else its name, a key of its own) with fingerprint fp at
 * wall-clock time now. send says whether its message is to be sent; the
 * return says whether it may be: false when the limit of fp's interval is
 * reached (counted as suppressed). Out of memory, nothing is counted and
 * true is returned. */
bool fingerprints_note(struct fingerprints *t, const char *candidate, const char *endpoint, const char *fp,
		       bool send, double now);

/* Records id as the sample of candidate x endpoint x fp (copied), if that
 * entry exists. */
void fingerprints_sampled(struct fingerprints *t, const char *candidate, const char *endpoint, const char *fp,
			  const char *id);

void fingerprints_counts(const struct fingerprints *t, struct fingerprint_counts *out);

/* Calls fn for every entry, grouped by endpoint (in name order), then by
 * candidate (NULL first, then in name order), the most seen first. Returns 0, or -1 on allocation failure
 * (fn not called). */
int fingerprints_each(const struct fingerprints *t,
		      void (*fn)(const struct fingerprint_view *v, void *arg), void *arg);

#endif
