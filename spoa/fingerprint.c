#include "fingerprint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "hash.h"
#include "names.h"

/* ---- the fingerprint --------------------------------------------------- */

/* A path segment of digits only is an array index (or a member named like
 * one: the two are not told apart). */
static bool is_index(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The hash of one (where, path with indices collapsed, kind). */
static uint64_t element_hash(const struct difference *d)
{
	const char *where = diff_where_name(d->where), *kind = diff_kind_name(d->kind);
	const char *p = d->path ? d->path : "";
	uint64_t h = hash_more(HASH_START, where, strlen(where) + 1);

	if (d->where != DIFF_BODY) {
		h = hash_more(h, p, strlen(p));
	} else {
		/* "/items/3/price" and "/items/12/price" are one field here. */
		while (*p == '/') {
			size_t len = strcspn(p + 1, "/");

			h = hash_more(h, "/", 1);
			h = is_index(p + 1, len) ? hash_more(h, "*", 1) : hash_more(h, p + 1, len);
			p += 1 + len;
		}
	}
	return hash_more(h, kind, strlen(kind) + 1);
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

void fingerprint_of(const struct diff_list *diffs, enum outcome o, enum replay_error error,
		    char out[FINGERPRINT_LEN + 1])
{
	/* A diff list holds at most 1000 differences (compare.c). */
	uint64_t one[1024], h = HASH_START;
	size_t n = 0;

	if (o == OUTCOME_CANDIDATE_ERROR) {
		const char *name = replay_error_name(error);

		one[n++] = hash_more(hash_more(HASH_START, "candidate_error", 16), name, strlen(name));
	} else {
		for (size_t i = 0; diffs && i < diffs->count && n < sizeof(one) / sizeof(one[0]); i++)
			one[n++] = element_hash(&diffs->items[i]);
	}
	/* A set: sorted, each element once. */
	qsort(one, n, sizeof(one[0]), u64_cmp);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || one[i] != one[i - 1])
			h = hash_more(h, &one[i], sizeof(one[i]));
	/* Once per message: snprintf would cost as much as the hashing. */
	for (int i = FINGERPRINT_LEN - 1; i >= 0; i--, h >>= 4)
		out[i] = "0123456789abcdef"[h & 15];
	out[FINGERPRINT_LEN] = '\0';
}

/* ---- the table --------------------------------------------------------- */

struct entry {
	struct entry *next;          /* hash chain */
	struct entry *newer, *older; /* recency list */
	uint64_t hash;
	char *endpoint;
	char *candidate;             /* NULL: the only one */
	char fp[FINGERPRINT_LEN + 1];
	uint64_t count, suppressed;
	double first_seen, last_seen;
	double window_start;         /* the limit's current interval */
	uint64_t window_sent;
	char *sample_id;
};

struct fingerprints {
	struct fingerprint_limits lim;
	struct entry **buckets;
	size_t nbuckets;             /* a power of two */
	struct entry *newest, *oldest;
	struct fingerprint_counts counts;
};

struct fingerprints *fingerprints_new(const struct fingerprint_limits *lim, char *err, size_t errlen)
{
	struct fingerprints *t;

	if (lim->max_entries == 0 || !(lim->interval > 0)) {
		snprintf(err, errlen, "fingerprints_max and fingerprint_interval must be positive");
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		goto oom;
	t->lim = *lim;
	t->nbuckets = 64;
	while (t->nbuckets < lim->max_entries && t->nbuckets < ((size_t)1 << 16))
		t->nbuckets <<= 1;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	if (!t->buckets)
		goto oom;
	return t;
oom:
	free(t);
	snprintf(err, errlen, "out of memory");
	return NULL;
}

static void entry_free(struct entry *e)
{
	free(e->endpoint);
	free(e->candidate);
	free(e->sample_id);
	free(e);
}

void fingerprints_free(struct fingerprints *t)
{
	if (!t)
		return;
	for (struct entry *e = t->newest, *n; e; e = n) {
		n = e->older;
		entry_free(e);
	}
	free(t->buckets);
	free(t);
}

static uint64_t key_hash(const char *candidate, const char *endpoint, const char *fp)
{
	uint64_t h = candidate ? hash_more(HASH_START, candidate, strlen(candidate) + 1) : HASH_START;

	return hash_more(hash_more(h, endpoint, strlen(endpoint) + 1), fp, strlen(fp));
}

static bool same_candidate(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static struct entry *find(const struct fingerprints *t, const char *candidate, const char *endpoint,
			  const char *fp, uint64_t h)
{
	for (struct entry *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next)
		if (e->hash == h && strcmp(e->fp, fp) == 0 && strcmp(e->endpoint, endpoint) == 0 &&
		    same_candidate(e->candidate, candidate))
			return e;
	return NULL;
}

static void unlink_recent(struct fingerprints *t, struct entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void push_newest(struct fingerprints *t, struct entry *e)
{
	e->older = t->newest;
	e->newer = NULL;
	if (t->newest)
		t->newest->newer = e;
	t->newest = e;
	if (!t->oldest)
		t->oldest = e;
}

static void evict_oldest(struct fingerprints *t)
{
	struct entry *e = t->oldest, **pp;

	unlink_recent(t, e);
	for (pp = &t->buckets[e->hash & (t->nbuckets - 1)]; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	entry_free(e);
	t->counts.entries--;
	t->counts.evicted++;
}

bool fingerprints_note(struct fingerprints *t, const char *candidate, const char *endpoint, const char *fp,
		       bool send, double now)
{
	uint64_t h;
	struct entry *e;

	if (!endpoint)
		endpoint = "";
	h = key_hash(candidate, endpoint, fp);
	e = find(t, candidate, endpoint, fp, h);
	if (e) {
		unlink_recent(t, e);
	} else {
		if (t->counts.entries >= t->lim.max_entries)
			evict_oldest(t);
		e = calloc(1, sizeof(*e));
		if (!e || !(e->endpoint = strdup(endpoint)) || (candidate && !(e->candidate = strdup(candidate)))) {
			if (e)
				free(e->endpoint);
			free(e);
			return true;
		}
		e->hash = h;
		snprintf(e->fp, sizeof(e->fp), "%s", fp);
		e->first_seen = now;
		e->window_start = now;
		e->next = t->buckets[h & (t->nbuckets - 1)];
		t->buckets[h & (t->nbuckets - 1)] = e;
		t->counts.entries++;
	}
	push_newest(t, e);
	e->count++;
	e->last_seen = now;
	if (!send || t->lim.per_interval == 0)
		return true;
	if (now - e->window_start >= t->lim.interval || now < e->window_start) {
		e->window_start = now;
		e->window_sent = 0;
	}
	if (e->window_sent < t->lim.per_interval) {
		e->window_sent++;
		return true;
	}
	e->suppressed++;
	t->counts.suppressed++;
	return false;
}

void fingerprints_sampled(struct fingerprints *t, const char *candidate, const char *endpoint, const char *fp,
			  const char *id)
{
	struct entry *e;
	char *copy;

	if (!endpoint)
		endpoint = "";
	e = find(t, candidate, endpoint, fp, key_hash(candidate, endpoint, fp));
	if (!e || !id || !(copy = strdup(id)))
		return;
	free(e->sample_id);
	e->sample_id = copy;
}

void fingerprints_counts(const struct fingerprints *t, struct fingerprint_counts *out)
{
	*out = t->counts;
}

static int view_cmp(const void *a, const void *b)
{
	const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
	int c = strcmp(x->endpoint, y->endpoint);

	if (c)
		return c;
	if (!same_candidate(x->candidate, y->candidate))
		return !x->candidate ? -1 : !y->candidate ? 1 : strcmp(x->candidate, y->candidate);
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->fp, y->fp);
}

int fingerprints_each(const struct fingerprints *t,
		      void (*fn)(const struct fingerprint_view *v, void *arg), void *arg)
{
	struct entry **all;
	size_t n = 0;

	if (t->counts.entries == 0)
		return 0;
	all = malloc(t->counts.entries * sizeof(*all));
	if (!all)
		return -1;
	for (struct entry *e = t->newest; e; e = e->older)
		all[n++] = e;
	qsort(all, n, sizeof(*all), view_cmp);
	for (size_t i = 0; i < n; i++) {
		const struct entry *e = all[i];
		const struct fingerprint_view v = {
			.endpoint = e->endpoint, .candidate = e->candidate, .fingerprint = e->fp, .count = e->count,
			.suppressed = e->suppressed, .first_seen = e->first_seen, .last_seen = e->last_seen,
			.sample_id = e->sample_id,
		};

		fn(&v, arg);
	}
	free(all);
	return 0;
}
