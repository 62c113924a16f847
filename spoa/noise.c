#include "noise.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "config-t.h"
#include "hash.h"
#include "jsonw.h"
#include "verdict.h"

/* Memory stays bounded whatever the traffic: endpoints past the cap share
 * one entry, and so do the fields of an endpoint past its cap. */
#define NOISE_MAX_ENDPOINTS 256
#define NOISE_MAX_FIELDS 1024
#define NOISE_OTHER "other"

struct field {
	char *key;              /* "status", "header:<name>", "body", "body:<pointer>" */
	uint64_t raw;           /* exchanges where reference and candidate differ here */
	uint64_t noise;         /* exchanges where reference and secondary differ here */
	uint64_t raw_seen;      /* serial of the last exchange counted in raw */
	uint64_t noise_seen;
};

/* Open addressing, power-of-two sized, at most half full. */
struct field_table {
	struct field *slots;
	size_t size, count;
};

struct endpoint {
	char *name;
	uint64_t total;         /* exchanges recorded */
	struct field_table fields;
	struct field *other;    /* fields past NOISE_MAX_FIELDS, or NULL */
};

struct noise {
	double relative;
	double absolute;
	struct endpoint *endpoints;
	size_t count;
	struct endpoint *other;
	uint64_t serial;
};

struct noise *noise_new(const struct config *cfg, char *err, size_t errlen)
{
	struct noise *n = calloc(1, sizeof(*n));

	if (!n)
		goto fail;
	n->relative = cfg->noise_relative;
	n->absolute = cfg->noise_absolute;
	n->endpoints = calloc(NOISE_MAX_ENDPOINTS, sizeof(*n->endpoints));
	if (!n->endpoints)
		goto fail;
	return n;
fail:
	snprintf(err, errlen, "noise: out of memory");
	free(n);
	return NULL;
}

static void endpoint_clear(struct endpoint *e)
{
	for (size_t i = 0; i < e->fields.size; i++)
		free(e->fields.slots[i].key);
	free(e->fields.slots);
	if (e->other)
		free(e->other->key);
	free(e->other);
	free(e->name);
	memset(e, 0, sizeof(*e));
}

void noise_free(struct noise *n)
{
	if (!n)
		return;
	for (size_t i = 0; i < n->count; i++)
		endpoint_clear(&n->endpoints[i]);
	free(n->endpoints);
	if (n->other) {
		endpoint_clear(n->other);
		free(n->other);
	}
	free(n);
}

static struct endpoint *endpoint_find(const struct noise *n, const char *name)
{
	for (size_t i = 0; i < n->count; i++)
		if (strcmp(n->endpoints[i].name, name) == 0)
			return &n->endpoints[i];
	if (n->other && strcmp(name, NOISE_OTHER) == 0)
		return n->other;
	return NULL;
}

static struct endpoint *endpoint_get(struct noise *n, const char *name)
{
	struct endpoint *e = endpoint_find(n, name);

	if (e)
		return e;
	if (n->count < NOISE_MAX_ENDPOINTS) {
		e = &n->endpoints[n->count];
		e->name = strdup(name);
		if (!e->name)
			return NULL;
		n->count++;
		return e;
	}
	if (!n->other) {
		n->other = calloc(1, sizeof(*n->other));
		if (!n->other)
			return NULL;
		n->other->name = strdup(NOISE_OTHER);
		if (!n->other->name) {
			free(n->other);
			n->other = NULL;
			return NULL;
		}
	}
	return n->other;
}

static struct field *field_slot(const struct field_table *t, const char *key)
{
	size_t mask = t->size - 1;

	for (size_t i = (size_t)hash_string(key) & mask;; i = (i + 1) & mask)
		if (!t->slots[i].key || strcmp(t->slots[i].key, key) == 0)
			return &t->slots[i];
}

static int field_table_grow(struct field_table *t)
{
	struct field_table nt = { .size = t->size ? t->size * 2 : 16 };

	nt.slots = calloc(nt.size, sizeof(*nt.slots));
	if (!nt.slots)
		return -1;
	for (size_t i = 0; i < t->size; i++)
		if (t->slots[i].key)
			*field_slot(&nt, t->slots[i].key) = t->slots[i];
	nt.count = t->count;
	free(t->slots);
	*t = nt;
	return 0;
}

static struct field *field_find(const struct endpoint *e, const char *key)
{
	struct field *f;

	if (e->fields.size == 0)
		return NULL;
	f = field_slot(&e->fields, key);
	return f->key ? f : NULL;
}

/* The field of key, created on first sight; past the cap, the overflow
 * field. NULL on allocation failure. */
static struct field *field_get(struct endpoint *e, const char *key)
{
	struct field *f = field_find(e, key);

	if (f)
		return f;
	if (e->fields.count >= NOISE_MAX_FIELDS) {
		if (!e->other) {
			e->other = calloc(1, sizeof(*e->other));
			if (!e->other)
				return NULL;
			e->other->key = strdup(NOISE_OTHER);
			if (!e->other->key) {
				free(e->other);
				e->other = NULL;
				return NULL;
			}
		}
		return e->other;
	}
	if ((e->fields.count + 1) * 2 > e->fields.size && field_table_grow(&e->fields) < 0)
		return NULL;
	f = field_slot(&e->fields, key);
	f->key = strdup(key);
	if (!f->key)
		return NULL;
	e->fields.count++;
	return f;
}

/* diff_field_key(), whole. Array indices are kept, so /items/0/price and
 * /items/1/price are two fields. The caller frees; NULL on ENOMEM. */
static char *field_key(const struct difference *d)
{
	size_t len = diff_field_key(d, NULL, 0);
	char *key = malloc(len + 1);

	if (key)
		diff_field_key(d, key, len + 1);
	return key;
}

static bool same_place(const struct difference *a, const struct difference *b)
{
	return a->where == b->where && a->kind == b->kind && strcmp(a->path, b->path) == 0;
}

/* Diffy's rule: a field is a regression only while the candidate differs
 * clearly more often than the references differ among themselves. */
static bool field_is_regression(const struct noise *n, const struct endpoint *e,
				const struct field *f)
{
	double raw = (double)f->raw, noise = (double)f->noise;
	double delta = fabs(raw - noise);

	if (f->raw <= f->noise || e->total == 0)
		return false;
	return delta / (raw + noise) > n->relative && delta / (double)e->total > n->absolute;
}

/* Counts the fields of list once each in this exchange. */
static void count_fields(struct endpoint *e, const struct diff_list *list, uint64_t serial,
			 bool raw)
{
	for (size_t i = 0; list && i < list->count; i++) {
		char *key = field_key(&list->items[i]);
		struct field *f;

		if (!key)
			continue;
		f = field_get(e, key);
		free(key);
		if (!f)
			continue;
		if (raw && f->raw_seen != serial) {
			f->raw_seen = serial;
			f->raw++;
		} else if (!raw && f->noise_seen != serial) {
			f->noise_seen = serial;
			f->noise++;
		}
	}
}

bool noise_mark(struct noise *n, const char *endpoint, struct diff_list *raw,
		const struct diff_list *sec)
{
	struct endpoint *e = endpoint_get(n, endpoint ? endpoint : NOISE_OTHER);
	bool all_noise = raw->count > 0;

	n->serial++;
	for (size_t i = 0; i < raw->count; i++)
		for (size_t k = 0; sec && k < sec->count; k++)
			if (same_place(&raw->items[i], &sec->items[k])) {
				raw->items[i].noise = true;
				break;
			}
	if (e) {
		e->total++;
		count_fields(e, raw, n->serial, true);
		count_fields(e, sec, n->serial, false);
	}
	for (size_t i = 0; i < raw->count; i++) {
		struct difference *d = &raw->items[i];

		if (!d->noise && e) {
			char *key = field_key(d);
			const struct field *f = key ? field_find(e, key) : NULL;

			if (!f && key && e->fields.count >= NOISE_MAX_FIELDS)
				f = e->other;
			free(key);
			if (f && !field_is_regression(n, e, f))
				d->noise = true;
		}
		all_noise &= d->noise;
	}
	return all_noise;
}

/* "confidence": the interval for raw/total - noise/total and its verdict.
 * Four decimals: the figures are estimates, more digits would only suggest
 * a precision they do not have. */
static void confidence_write(const struct endpoint *e, const struct field *f, struct jsonw *w)
{
	struct noise_confidence c;

	verdict_noise(f->raw, f->noise, e->total, &c);
	jsonw_keyc(w, "confidence");
	jsonw_open(w, '{');
	jsonw_keyc(w, "n");
	jsonw_uint(w, e->total);
	jsonw_keyc(w, "lower");
	jsonw_fixed(w, c.diff.lower, 4);
	jsonw_keyc(w, "upper");
	jsonw_fixed(w, c.diff.upper, 4);
	jsonw_keyc(w, "verdict");
	jsonw_cstring(w, noise_verdict_name(c.verdict));
	jsonw_close(w, '}');
}

static void field_write(const struct noise *n, const struct endpoint *e, const struct field *f,
			struct jsonw *w)
{
	jsonw_keyc(w, f->key);
	jsonw_open(w, '{');
	jsonw_keyc(w, "raw");
	jsonw_uint(w, f->raw);
	jsonw_keyc(w, "noise");
	jsonw_uint(w, f->noise);
	jsonw_keyc(w, "regression");
	jsonw_bool(w, field_is_regression(n, e, f));
	confidence_write(e, f, w);
	jsonw_close(w, '}');
}

/* Written as text, not built with cJSON: at the caps cJSON's number
 * printing would cost the loop tens of milliseconds per /stats. */
static void endpoint_write(const struct noise *n, const struct endpoint *e, const char *key,
			   struct jsonw *w)
{
	if (!e || (!e->fields.count && !e->other))
		return;
	jsonw_keyc(w, key);
	jsonw_open(w, '{');
	for (size_t i = 0; i < e->fields.size; i++)
		if (e->fields.slots[i].key)
			field_write(n, e, &e->fields.slots[i], w);
	if (e->other)
		field_write(n, e, e->other, w);
	jsonw_close(w, '}');
}

void noise_stats_write(const struct noise *n, const char *endpoint, const char *key, struct jsonw *w)
{
	endpoint_write(n, endpoint_find(n, endpoint), key, w);
}

/* Far above what the caps allow (256 x 1025 fields). */
#define NOISE_JSON_MAX (256u << 20)

cJSON *noise_stats_json(const struct noise *n, const char *endpoint)
{
	struct jsonw w;
	cJSON *doc, *one;

	jsonw_init(&w, NOISE_JSON_MAX);
	jsonw_open(&w, '{');
	if (endpoint) {
		endpoint_write(n, endpoint_find(n, endpoint), "fields", &w);
	} else {
		/* No endpoint: every endpoint, keyed by name. */
		for (size_t i = 0; i <= n->count; i++) {
			const struct endpoint *e = i < n->count ? &n->endpoints[i] : n->other;

			if (e)
				endpoint_write(n, e, e->name, &w);
		}
	}
	jsonw_close(&w, '}');
	doc = jsonw_ok(&w) ? cJSON_Parse(w.b.p) : NULL;
	jsonw_free(&w);
	if (!doc || !endpoint)
		return doc;
	one = cJSON_DetachItemFromObjectCaseSensitive(doc, "fields");
	cJSON_Delete(doc);
	return one ? one : cJSON_CreateObject();
}

bool noise_verdict_counts(const struct noise *n, const char *endpoint, uint64_t *counts)
{
	const struct endpoint *e = endpoint_find(n, endpoint);

	for (int v = 0; v < NOISE_VERDICT_COUNT; v++)
		counts[v] = 0;
	if (!e)
		return false;
	for (size_t i = 0; i < e->fields.size; i++) {
		if (!e->fields.slots[i].key)
			continue;
		counts[verdict_noise_only(e->fields.slots[i].raw, e->fields.slots[i].noise, e->total)]++;
	}
	if (e->other)
		counts[verdict_noise_only(e->other->raw, e->other->noise, e->total)]++;
	return true;
}

char *noise_candidate_key(const char *candidate, const char *endpoint)
{
	char *key;

	return asprintf(&key, "%s\x1f%s", candidate, endpoint ? endpoint : "") < 0 ? NULL : key;
}
