#include "samples.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compare.h"
#include "jsonw.h"
#include "log.h"

struct endpoint_samples;

struct sample {
	atomic_uint refs;               /* the store's hold + one per reader */
	/* Under the lock, while stored: */
	struct sample *prev, *next;     /* all samples in age order, oldest first */
	struct sample *eprev, *enext;   /* those of its endpoint, likewise */
	struct endpoint_samples *ep;
	char *id;
	char *endpoint;
	enum outcome outcome;
	double time;                    /* wall clock */
	char *fields[SAMPLES_MAX_FIELDS];
	const char *kinds[SAMPLES_MAX_FIELDS];   /* static strings */
	bool noise[SAMPLES_MAX_FIELDS];
	size_t nfields;
	size_t len;
	char *text;                     /* the message, not NUL-terminated */
};

/* The samples of one endpoint; exists while it holds one. */
struct endpoint_samples {
	char *name;
	struct sample *oldest, *newest;
	size_t count, bytes;
};

struct samples {
	struct samples_limits lim;
	pthread_mutex_t lock;
	/* Under lock: */
	struct sample *oldest, *newest;
	struct endpoint_samples **eps;  /* those holding samples, in no order */
	size_t neps, eps_cap;
	struct samples_counts counts;
};

static const char *const evict_names[SAMPLES_EVICT_COUNT] = { "field", "endpoint", "endpoint_bytes", "total" };

const char *samples_evict_name(enum samples_evict r)
{
	return (unsigned)r < SAMPLES_EVICT_COUNT ? evict_names[r] : "unknown";
}

static void sample_destroy(struct sample *x)
{
	free(x->id);
	free(x->endpoint);
	for (size_t i = 0; i < x->nfields; i++)
		free(x->fields[i]);
	free(x->text);
	free(x);
}

void samples_release(struct sample *x)
{
	if (x && atomic_fetch_sub(&x->refs, 1) == 1)
		sample_destroy(x);
}

struct samples *samples_new(const struct samples_limits *lim, char *err, size_t errlen)
{
	struct samples *s = calloc(1, sizeof(*s));

	if (!s) {
		snprintf(err, errlen, "samples: out of memory");
		return NULL;
	}
	s->lim = *lim;
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void samples_free(struct samples *s)
{
	struct sample *x, *next;

	if (!s)
		return;
	for (x = s->oldest; x; x = next) {
		next = x->next;
		samples_release(x);
	}
	for (size_t i = 0; i < s->neps; i++) {
		free(s->eps[i]->name);
		free(s->eps[i]);
	}
	free(s->eps);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

size_t samples_max_message(const struct samples *s)
{
	size_t max;

	if (!s || !s->lim.per_endpoint || !s->lim.max_count)
		return 0;
	max = s->lim.endpoint_bytes;
	return s->lim.max_bytes < max ? s->lim.max_bytes : max;
}

static bool has_field(const struct sample *x, const char *field)
{
	for (size_t i = 0; i < x->nfields; i++)
		if (strcmp(x->fields[i], field) == 0)
			return true;
	return false;
}

/* The fields the per-field bound counts x under: those that are not noise,
 * or all of them when x is noise only. A noise field every exchange has
 * (a timestamp) must not push the samples of real regressions out. */
static bool bound_by(const struct sample *x, const char *field)
{
	bool any_real = false;

	for (size_t i = 0; i < x->nfields; i++)
		any_real |= !x->noise[i];
	for (size_t i = 0; i < x->nfields; i++)
		if ((!any_real || !x->noise[i]) && strcmp(x->fields[i], field) == 0)
			return true;
	return false;
}

static struct endpoint_samples *endpoint_find(const struct samples *s, const char *name)
{
	for (size_t i = 0; i < s->neps; i++)
		if (strcmp(s->eps[i]->name, name) == 0)
			return s->eps[i];
	return NULL;
}

/* The record of name, created when missing; NULL on ENOMEM. */
static struct endpoint_samples *endpoint_get(struct samples *s, const char *name)
{
	struct endpoint_samples *e = endpoint_find(s, name);

	if (e)
		return e;
	if (s->neps == s->eps_cap) {
		size_t cap = s->eps_cap ? 2 * s->eps_cap : 16;
		struct endpoint_samples **grown = realloc(s->eps, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		s->eps = grown;
		s->eps_cap = cap;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name))) {
		free(e);
		return NULL;
	}
	s->eps[s->neps++] = e;
	return e;
}

/* Takes x out of both lists and drops the store's hold; an endpoint left
 * without samples goes too, so endpoints seen once cost nothing forever.
 * Under the lock. */
static void unlink_sample(struct samples *s, struct sample *x, enum samples_evict why)
{
	struct endpoint_samples *e = x->ep;

	if (x->prev)
		x->prev->next = x->next;
	else
		s->oldest = x->next;
	if (x->next)
		x->next->prev = x->prev;
	else
		s->newest = x->prev;
	if (x->eprev)
		x->eprev->enext = x->enext;
	else
		e->oldest = x->enext;
	if (x->enext)
		x->enext->eprev = x->eprev;
	else
		e->newest = x->eprev;
	e->count--;
	e->bytes -= x->len;
	if (!e->count) {
		for (size_t i = 0; i < s->neps; i++)
			if (s->eps[i] == e) {
				s->eps[i] = s->eps[--s->neps];
				break;
			}
		free(e->name);
		free(e);
	}
	x->ep = NULL;
	s->counts.stored--;
	s->counts.bytes -= x->len;
	s->counts.evicted[why]++;
	samples_release(x);
}

/* The oldest sample of endpoint bound by field, and how many there are.
 * Walks at most samples_per_endpoint samples. Under the lock. */
static struct sample *oldest_with(struct samples *s, const char *endpoint, const char *field, size_t *count)
{
	struct endpoint_samples *e = endpoint_find(s, endpoint);
	struct sample *first = NULL;

	*count = 0;
	for (struct sample *x = e ? e->oldest : NULL; x; x = x->enext) {
		if (!bound_by(x, field))
			continue;
		if (!first)
			first = x;
		++*count;
	}
	return first;
}

/* kind as one of compare's static names, so a sample owns no copy of it. */
static const char *kind_name(const char *kind)
{
	for (int k = 0; kind && k < DIFF_KIND_COUNT; k++)
		if (strcmp(diff_kind_name((enum diff_kind)k), kind) == 0)
			return diff_kind_name((enum diff_kind)k);
	return diff_kind_name(DIFF_VALUE);
}

/* A new sample, not linked; NULL on ENOMEM. */
static struct sample *sample_new(const char *id, const char *endpoint, enum outcome o,
				 const struct sample_field *fields, size_t nfields, const char *msg, size_t len,
				 double now)
{
	struct sample *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	atomic_init(&x->refs, 1);
	x->outcome = o;
	x->time = now;
	x->len = len;
	x->id = strdup(id ? id : "");
	x->endpoint = strdup(endpoint ? endpoint : "");
	x->text = malloc(len ? len : 1);
	if (!x->id || !x->endpoint || !x->text)
		goto fail;
	memcpy(x->text, msg, len);
	for (size_t i = 0; i < nfields && x->nfields < SAMPLES_MAX_FIELDS; i++) {
		if (!fields[i].key || has_field(x, fields[i].key))
			continue;
		x->fields[x->nfields] = strdup(fields[i].key);
		if (!x->fields[x->nfields])
			goto fail;
		x->kinds[x->nfields] = kind_name(fields[i].kind);
		x->noise[x->nfields] = fields[i].noise;
		x->nfields++;
	}
	return x;
fail:
	sample_destroy(x);
	return NULL;
}

int samples_add(struct samples *s, const char *id, const char *endpoint, enum outcome o,
		const struct sample_field *fields, size_t nfields, const char *msg, size_t len, double now)
{
	size_t max = samples_max_message(s), count;
	struct endpoint_samples *e;
	struct sample *x, *old;

	if (!max)
		return -1;
	if (len > max) {
		pthread_mutex_lock(&s->lock);
		s->counts.too_large++;
		pthread_mutex_unlock(&s->lock);
		return -1;
	}
	/* Copied before taking the lock: a reader never waits for a copy. */
	x = sample_new(id, endpoint, o, fields, nfields, msg, len, now);
	if (!x)
		return -1;
	pthread_mutex_lock(&s->lock);
	/* Newest kept, oldest out: per field first, so one noisy field cannot
	 * push every other field's samples of its endpoint out. */
	for (size_t i = 0; s->lim.per_field && i < x->nfields; i++)
		while (bound_by(x, x->fields[i]) && (old = oldest_with(s, x->endpoint, x->fields[i], &count)) &&
		       count >= s->lim.per_field)
			unlink_sample(s, old, SAMPLES_EVICT_FIELD);
	while ((e = endpoint_find(s, x->endpoint)) && e->count >= s->lim.per_endpoint)
		unlink_sample(s, e->oldest, SAMPLES_EVICT_ENDPOINT);
	while ((e = endpoint_find(s, x->endpoint)) && e->bytes + len > s->lim.endpoint_bytes)
		unlink_sample(s, e->oldest, SAMPLES_EVICT_ENDPOINT_BYTES);
	while (s->oldest && (s->counts.stored >= s->lim.max_count || s->counts.bytes + len > s->lim.max_bytes))
		unlink_sample(s, s->oldest, SAMPLES_EVICT_TOTAL);
	e = endpoint_get(s, x->endpoint);
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		sample_destroy(x);
		return -1;
	}
	x->ep = e;
	x->prev = s->newest;
	if (s->newest)
		s->newest->next = x;
	else
		s->oldest = x;
	s->newest = x;
	x->eprev = e->newest;
	if (e->newest)
		e->newest->enext = x;
	else
		e->oldest = x;
	e->newest = x;
	e->count++;
	e->bytes += len;
	s->counts.taken++;
	s->counts.stored++;
	s->counts.bytes += len;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

struct sample *samples_get(struct samples *s, const char *id)
{
	struct sample *found = NULL;

	if (!s || !id)
		return NULL;
	pthread_mutex_lock(&s->lock);
	for (struct sample *x = s->newest; x && !found; x = x->prev)
		if (strcmp(x->id, id) == 0)
			found = x;
	if (found)
		atomic_fetch_add(&found->refs, 1);
	pthread_mutex_unlock(&s->lock);
	return found;
}

const char *sample_text(const struct sample *x, size_t *len)
{
	*len = x->len;
	return x->text;
}

void samples_counts(struct samples *s, struct samples_counts *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->counts;
	pthread_mutex_unlock(&s->lock);
}

void samples_write_index(struct samples *s, struct jsonw *w, const char *endpoint, const char *field)
{
	static const char *const outcomes[OUTCOME_COUNT] = {
		[OUTCOME_DIFFERENT] = "different", [OUTCOME_NOISE] = "noise",
		[OUTCOME_CANDIDATE_ERROR] = "candidate_error",
	};
	const struct endpoint_samples *ep;
	struct samples_counts c;
	struct sample **held;
	size_t n = 0;
	char t[48];

	jsonw_keyc(w, "limits");
	jsonw_open(w, '{');
	jsonw_keyc(w, "per_endpoint");
	jsonw_int(w, s->lim.per_endpoint);
	jsonw_keyc(w, "per_field");
	jsonw_int(w, s->lim.per_field);
	jsonw_keyc(w, "endpoint_bytes");
	jsonw_int(w, (int64_t)s->lim.endpoint_bytes);
	jsonw_keyc(w, "max");
	jsonw_int(w, s->lim.max_count);
	jsonw_keyc(w, "max_bytes");
	jsonw_int(w, (int64_t)s->lim.max_bytes);
	jsonw_close(w, '}');
	/* Under the lock only the pointers are taken, with a hold each: a
	 * sample's fields never change, so the text is written without it
	 * and the loop never waits for a reader's JSON. */
	pthread_mutex_lock(&s->lock);
	c = s->counts;
	held = malloc((s->counts.stored ? s->counts.stored : 1) * sizeof(*held));
	ep = endpoint ? endpoint_find(s, endpoint) : NULL;
	for (struct sample *x = endpoint ? (ep ? ep->newest : NULL) : s->newest; held && x;
	     x = endpoint ? x->eprev : x->prev) {
		if (field && !has_field(x, field))
			continue;
		atomic_fetch_add(&x->refs, 1);
		held[n++] = x;
	}
	pthread_mutex_unlock(&s->lock);
	if (!held)
		w->b.err = BUF_NO_MEMORY;
	jsonw_keyc(w, "counts");
	jsonw_open(w, '{');
	jsonw_keyc(w, "taken");
	jsonw_int(w, (int64_t)c.taken);
	jsonw_keyc(w, "stored");
	jsonw_int(w, (int64_t)c.stored);
	jsonw_keyc(w, "bytes");
	jsonw_int(w, (int64_t)c.bytes);
	jsonw_keyc(w, "too_large");
	jsonw_int(w, (int64_t)c.too_large);
	jsonw_keyc(w, "evicted");
	jsonw_open(w, '{');
	for (int i = 0; i < SAMPLES_EVICT_COUNT; i++) {
		jsonw_keyc(w, evict_names[i]);
		jsonw_int(w, (int64_t)c.evicted[i]);
	}
	jsonw_close(w, '}');
	jsonw_close(w, '}');
	jsonw_keyc(w, "samples");
	jsonw_open(w, '[');
	for (size_t k = 0; k < n; k++) {
		const struct sample *x = held[k];

		log_stamp(x->time, t, sizeof(t));
		jsonw_open(w, '{');
		jsonw_keyc(w, "id");
		jsonw_cstring(w, x->id);
		jsonw_keyc(w, "time");
		jsonw_cstring(w, t);
		jsonw_keyc(w, "endpoint");
		jsonw_cstring(w, x->endpoint);
		jsonw_keyc(w, "outcome");
		jsonw_cstring(w, outcomes[x->outcome] ? outcomes[x->outcome] : "unknown");
		jsonw_keyc(w, "fields");
		jsonw_open(w, '[');
		for (size_t i = 0; i < x->nfields; i++) {
			jsonw_open(w, '{');
			jsonw_keyc(w, "field");
			jsonw_cstring(w, x->fields[i]);
			jsonw_keyc(w, "kind");
			jsonw_cstring(w, x->kinds[i]);
			jsonw_keyc(w, "noise");
			jsonw_bool(w, x->noise[i]);
			jsonw_close(w, '}');
		}
		jsonw_close(w, ']');
		jsonw_keyc(w, "bytes");
		jsonw_int(w, (int64_t)x->len);
		jsonw_close(w, '}');
	}
	jsonw_close(w, ']');
	for (size_t k = 0; k < n; k++)
		samples_release(held[k]);
	free(held);
}
