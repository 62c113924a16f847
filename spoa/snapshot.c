#include "snapshot.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonw.h"
#include "minutes.h"
#include "names.h"

/* Hard bounds on what a decoded snapshot may hold, whatever the message
 * says: the agent's own caps (stats.h) with room for "other". */
#define SNAPSHOT_MAX_COUNTERS 4096
#define SNAPSHOT_MAX_ENDPOINTS 1024
#define SNAPSHOT_MAX_FIELDS 1024
#define SNAPSHOT_MAX_NAME 4096

static const char *const hist_names[SNAPSHOT_HIST_COUNT] = { "reference", "candidate", "secondary", "ack" };
static const char *const lat_names[SNAPSHOT_LAT_COUNT] = { "reference", "candidate", "secondary" };

/* ---- building ------------------------------------------------------------ */

static void endpoint_clear(struct snapshot_endpoint *e)
{
	for (size_t i = 0; i < e->nfields; i++)
		free(e->fields[i].key);
	free(e->fields);
	free(e->name);
	memset(e, 0, sizeof(*e));
}

void snapshot_clear(struct snapshot *s)
{
	for (size_t i = 0; i < s->ncounters; i++)
		free(s->counters[i].name);
	free(s->counters);
	for (size_t i = 0; i < s->nendpoints; i++)
		endpoint_clear(&s->endpoints[i]);
	free(s->endpoints);
	free(s->instance);
	memset(s, 0, sizeof(*s));
}

/* Grows *items (of size elements, *n used) by one zeroed element. */
static void *grow(void *items, size_t n, size_t size)
{
	char *p;

	/* Doubling at powers of two: n is the count before this one. */
	if (n & (n - 1) && n)
		return items;
	p = realloc(items, (n ? 2 * n : 1) * size);
	return p;
}

int snapshot_add_counter(struct snapshot *s, const char *name, uint64_t v)
{
	struct snapshot_counter *c = grow(s->counters, s->ncounters, sizeof(*c));
	char *copy;

	if (!c)
		return -1;
	s->counters = c;
	copy = strdup(name);
	if (!copy)
		return -1;
	c[s->ncounters].name = copy;
	c[s->ncounters].v = v;
	s->ncounters++;
	return 0;
}

struct snapshot_endpoint *snapshot_add_endpoint(struct snapshot *s, const char *name)
{
	struct snapshot_endpoint *e = grow(s->endpoints, s->nendpoints, sizeof(*e));

	if (!e)
		return NULL;
	s->endpoints = e;
	e = &e[s->nendpoints];
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	if (!e->name)
		return NULL;
	s->nendpoints++;
	return e;
}

int snapshot_add_field(struct snapshot_endpoint *e, const char *key, uint64_t raw, uint64_t noise)
{
	struct snapshot_field *f = grow(e->fields, e->nfields, sizeof(*f));

	if (!f)
		return -1;
	e->fields = f;
	f = &f[e->nfields];
	f->key = strdup(key);
	if (!f->key)
		return -1;
	f->raw = raw;
	f->noise = noise;
	e->nfields++;
	return 0;
}

static int cmp_counter(const void *a, const void *b)
{
	return strcmp(((const struct snapshot_counter *)a)->name, ((const struct snapshot_counter *)b)->name);
}

static int cmp_field(const void *a, const void *b)
{
	return strcmp(((const struct snapshot_field *)a)->key, ((const struct snapshot_field *)b)->key);
}

static int cmp_endpoint(const void *a, const void *b)
{
	return strcmp(((const struct snapshot_endpoint *)a)->name, ((const struct snapshot_endpoint *)b)->name);
}

static void endpoint_merge(struct snapshot_endpoint *dst, const struct snapshot_endpoint *src);

/* Folds runs of equal names into their first element. */
static void dedup_counters(struct snapshot *s)
{
	size_t out = 0;

	for (size_t i = 0; i < s->ncounters; i++) {
		if (out && strcmp(s->counters[out - 1].name, s->counters[i].name) == 0) {
			s->counters[out - 1].v += s->counters[i].v;
			free(s->counters[i].name);
			continue;
		}
		s->counters[out++] = s->counters[i];
	}
	s->ncounters = out;
}

static void dedup_fields(struct snapshot_endpoint *e)
{
	size_t out = 0;

	for (size_t i = 0; i < e->nfields; i++) {
		if (out && strcmp(e->fields[out - 1].key, e->fields[i].key) == 0) {
			e->fields[out - 1].raw += e->fields[i].raw;
			e->fields[out - 1].noise += e->fields[i].noise;
			free(e->fields[i].key);
			continue;
		}
		e->fields[out++] = e->fields[i];
	}
	e->nfields = out;
}

int snapshot_sort(struct snapshot *s)
{
	size_t out = 0;

	if (s->ncounters)
		qsort(s->counters, s->ncounters, sizeof(*s->counters), cmp_counter);
	dedup_counters(s);
	for (size_t i = 0; i < s->nendpoints; i++) {
		struct snapshot_endpoint *e = &s->endpoints[i];

		if (e->nfields)
			qsort(e->fields, e->nfields, sizeof(*e->fields), cmp_field);
		dedup_fields(e);
	}
	if (s->nendpoints)
		qsort(s->endpoints, s->nendpoints, sizeof(*s->endpoints), cmp_endpoint);
	for (size_t i = 0; i < s->nendpoints; i++) {
		if (out && strcmp(s->endpoints[out - 1].name, s->endpoints[i].name) == 0) {
			endpoint_merge(&s->endpoints[out - 1], &s->endpoints[i]);
			endpoint_clear(&s->endpoints[i]);
			continue;
		}
		s->endpoints[out++] = s->endpoints[i];
	}
	s->nendpoints = out;
	/* endpoint_merge may have appended fields. */
	for (size_t i = 0; i < s->nendpoints; i++) {
		struct snapshot_endpoint *e = &s->endpoints[i];

		if (e->nfields)
			qsort(e->fields, e->nfields, sizeof(*e->fields), cmp_field);
		dedup_fields(e);
	}
	return 0;
}

const struct snapshot_counter *snapshot_counter(const struct snapshot *s, const char *name)
{
	struct snapshot_counter key = { .name = (char *)(uintptr_t)name };

	if (!s->ncounters)
		return NULL;
	return bsearch(&key, s->counters, s->ncounters, sizeof(key), cmp_counter);
}

/* ---- merging ------------------------------------------------------------- */

static void endpoint_merge(struct snapshot_endpoint *dst, const struct snapshot_endpoint *src)
{
	size_t i = 0, j = 0, n = dst->nfields;

	for (int o = 0; o < OUTCOME_COUNT; o++)
		dst->outcomes[o] += src->outcomes[o];
	for (int r = 0; r < SKIP_REASON_COUNT; r++)
		dst->skips[r] += src->skips[r];
	for (int l = 0; l < SNAPSHOT_LAT_COUNT; l++) {
		for (int b = 0; b < SNAPSHOT_PCT_BUCKETS; b++)
			dst->latency[l].counts[b] += src->latency[l].counts[b];
		if (src->latency[l].max_ms > dst->latency[l].max_ms)
			dst->latency[l].max_ms = src->latency[l].max_ms;
	}
	/* Both sorted: walk; new keys are appended, then re-sorted. */
	while (j < src->nfields) {
		int c = i < n ? strcmp(dst->fields[i].key, src->fields[j].key) : 1;

		if (c < 0) {
			i++;
			continue;
		}
		if (c == 0) {
			dst->fields[i].raw += src->fields[j].raw;
			dst->fields[i].noise += src->fields[j].noise;
			i++;
		} else if (snapshot_add_field(dst, src->fields[j].key, src->fields[j].raw, src->fields[j].noise) < 0) {
			return;
		}
		j++;
	}
	if (dst->nfields != n)
		qsort(dst->fields, dst->nfields, sizeof(*dst->fields), cmp_field);
	minutes_merge(&dst->minutes, &src->minutes);
}

int snapshot_merge(struct snapshot *dst, const struct snapshot *src)
{
	size_t i = 0, j = 0, n = dst->ncounters;
	int rc = 0;

	while (j < src->ncounters) {
		int c = i < n ? strcmp(dst->counters[i].name, src->counters[j].name) : 1;

		if (c < 0) {
			i++;
			continue;
		}
		if (c == 0) {
			dst->counters[i++].v += src->counters[j].v;
		} else if (snapshot_add_counter(dst, src->counters[j].name, src->counters[j].v) < 0) {
			rc = -1;
			break;
		}
		j++;
	}
	if (dst->ncounters != n)
		qsort(dst->counters, dst->ncounters, sizeof(*dst->counters), cmp_counter);
	for (int h = 0; h < SNAPSHOT_HIST_COUNT; h++) {
		for (int b = 0; b < SNAPSHOT_HIST_BUCKETS; b++)
			dst->hists[h].buckets[b] += src->hists[h].buckets[b];
		dst->hists[h].sum += src->hists[h].sum;
		if (src->hists[h].max > dst->hists[h].max)
			dst->hists[h].max = src->hists[h].max;
	}
	n = dst->nendpoints;
	i = j = 0;
	while (rc == 0 && j < src->nendpoints) {
		int c = i < n ? strcmp(dst->endpoints[i].name, src->endpoints[j].name) : 1;
		struct snapshot_endpoint *e;

		if (c < 0) {
			i++;
			continue;
		}
		if (c == 0) {
			endpoint_merge(&dst->endpoints[i++], &src->endpoints[j]);
		} else {
			e = snapshot_add_endpoint(dst, src->endpoints[j].name);
			if (!e) {
				rc = -1;
				break;
			}
			endpoint_merge(e, &src->endpoints[j]);
		}
		j++;
	}
	if (dst->nendpoints != n)
		qsort(dst->endpoints, dst->nendpoints, sizeof(*dst->endpoints), cmp_endpoint);
	return rc;
}

static uint64_t minus(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

void snapshot_subtract(struct snapshot *dst, const struct snapshot *src)
{
	for (size_t j = 0; j < src->ncounters; j++) {
		struct snapshot_counter *c = (struct snapshot_counter *)(uintptr_t)snapshot_counter(dst, src->counters[j].name);

		if (c)
			c->v = minus(c->v, src->counters[j].v);
	}
	for (int h = 0; h < SNAPSHOT_HIST_COUNT; h++) {
		for (int b = 0; b < SNAPSHOT_HIST_BUCKETS; b++)
			dst->hists[h].buckets[b] = minus(dst->hists[h].buckets[b], src->hists[h].buckets[b]);
		dst->hists[h].sum -= src->hists[h].sum;
		if (dst->hists[h].sum < 0)
			dst->hists[h].sum = 0;
	}
	for (size_t j = 0; j < src->nendpoints; j++) {
		const struct snapshot_endpoint *s = &src->endpoints[j];
		struct snapshot_endpoint key = { .name = s->name }, *e;

		e = dst->nendpoints ? bsearch(&key, dst->endpoints, dst->nendpoints, sizeof(key), cmp_endpoint) : NULL;
		if (!e)
			continue;
		for (int o = 0; o < OUTCOME_COUNT; o++)
			e->outcomes[o] = minus(e->outcomes[o], s->outcomes[o]);
		for (int r = 0; r < SKIP_REASON_COUNT; r++)
			e->skips[r] = minus(e->skips[r], s->skips[r]);
		for (int l = 0; l < SNAPSHOT_LAT_COUNT; l++)
			for (int b = 0; b < SNAPSHOT_PCT_BUCKETS; b++)
				e->latency[l].counts[b] = minus(e->latency[l].counts[b], s->latency[l].counts[b]);
		for (size_t k = 0; k < s->nfields; k++) {
			struct snapshot_field fk = { .key = s->fields[k].key }, *f;

			f = e->nfields ? bsearch(&fk, e->fields, e->nfields, sizeof(fk), cmp_field) : NULL;
			if (!f)
				continue;
			f->raw = minus(f->raw, s->fields[k].raw);
			f->noise = minus(f->noise, s->fields[k].noise);
		}
		minutes_subtract(&e->minutes, &s->minutes);
	}
}

/* ---- encoding ------------------------------------------------------------ */

static void write_hist(struct jsonw *w, const struct snapshot_hist *h)
{
	jsonw_open(w, '{');
	jsonw_keyc(w, "buckets");
	jsonw_open(w, '[');
	for (int b = 0; b < SNAPSHOT_HIST_BUCKETS; b++)
		jsonw_uint(w, h->buckets[b]);
	jsonw_close(w, ']');
	jsonw_keyc(w, "sum");
	jsonw_number(w, h->sum);
	jsonw_keyc(w, "max");
	jsonw_number(w, h->max);
	jsonw_close(w, '}');
}

static void write_endpoint(struct jsonw *w, const struct snapshot_endpoint *e)
{
	jsonw_open(w, '{');
	jsonw_keyc(w, "outcomes");
	jsonw_open(w, '{');
	for (int o = 0; o < OUTCOME_COUNT; o++) {
		jsonw_keyc(w, outcome_name((enum outcome)o));
		jsonw_uint(w, e->outcomes[o]);
	}
	jsonw_close(w, '}');
	jsonw_keyc(w, "skipped");
	jsonw_open(w, '{');
	for (int r = 1; r < SKIP_REASON_COUNT; r++) {
		jsonw_keyc(w, skip_reason_name((enum skip_reason)r));
		jsonw_uint(w, e->skips[r]);
	}
	jsonw_close(w, '}');
	jsonw_keyc(w, "latency");
	jsonw_open(w, '{');
	for (int l = 0; l < SNAPSHOT_LAT_COUNT; l++) {
		const struct snapshot_pct *p = &e->latency[l];

		jsonw_keyc(w, lat_names[l]);
		jsonw_open(w, '{');
		/* Sparse: [bucket, count] pairs of the non-empty buckets. */
		jsonw_keyc(w, "counts");
		jsonw_open(w, '[');
		for (int b = 0; b < SNAPSHOT_PCT_BUCKETS; b++) {
			if (!p->counts[b])
				continue;
			jsonw_open(w, '[');
			jsonw_uint(w, (uint64_t)b);
			jsonw_uint(w, p->counts[b]);
			jsonw_close(w, ']');
		}
		jsonw_close(w, ']');
		jsonw_keyc(w, "max_ms");
		jsonw_number(w, p->max_ms);
		jsonw_close(w, '}');
	}
	jsonw_close(w, '}');
	jsonw_keyc(w, "fields");
	jsonw_open(w, '{');
	for (size_t i = 0; i < e->nfields; i++) {
		jsonw_keyc(w, e->fields[i].key);
		jsonw_open(w, '[');
		jsonw_uint(w, e->fields[i].raw);
		jsonw_uint(w, e->fields[i].noise);
		jsonw_close(w, ']');
	}
	jsonw_close(w, '}');
	jsonw_keyc(w, "minutes");
	jsonw_open(w, '[');
	for (size_t m = 0; m < MINUTES_KEPT; m++) {
		const struct minute_bucket *b = &e->minutes.b[m];

		if (!b->minute)
			continue;
		jsonw_open(w, '[');
		jsonw_int(w, b->minute);
		jsonw_uint(w, b->compared);
		jsonw_uint(w, b->different);
		jsonw_uint(w, b->noise);
		jsonw_uint(w, b->candidate_error);
		jsonw_close(w, ']');
	}
	jsonw_close(w, ']');
	jsonw_close(w, '}');
}

char *snapshot_encode(const struct snapshot *s, size_t *len, char *err, size_t errlen)
{
	struct jsonw w;
	char *text;

	jsonw_init(&w, SNAPSHOT_MAX_BYTES);
	jsonw_open(&w, '{');
	jsonw_keyc(&w, "miffy_stats");
	jsonw_uint(&w, SNAPSHOT_VERSION);
	jsonw_keyc(&w, "instance");
	jsonw_cstring(&w, s->instance ? s->instance : "");
	jsonw_keyc(&w, "epoch");
	jsonw_int(&w, s->epoch);
	jsonw_keyc(&w, "seq");
	jsonw_uint(&w, s->seq);
	jsonw_keyc(&w, "time");
	jsonw_fixed(&w, s->time, 3);
	jsonw_keyc(&w, "final");
	jsonw_bool(&w, s->final);
	jsonw_keyc(&w, "counters");
	jsonw_open(&w, '{');
	for (size_t i = 0; i < s->ncounters; i++) {
		jsonw_keyc(&w, s->counters[i].name);
		jsonw_uint(&w, s->counters[i].v);
	}
	jsonw_close(&w, '}');
	jsonw_keyc(&w, "hists");
	jsonw_open(&w, '{');
	for (int h = 0; h < SNAPSHOT_HIST_COUNT; h++) {
		jsonw_keyc(&w, hist_names[h]);
		write_hist(&w, &s->hists[h]);
	}
	jsonw_close(&w, '}');
	jsonw_keyc(&w, "endpoints");
	jsonw_open(&w, '{');
	for (size_t i = 0; i < s->nendpoints; i++) {
		jsonw_keyc(&w, s->endpoints[i].name);
		write_endpoint(&w, &s->endpoints[i]);
	}
	jsonw_close(&w, '}');
	jsonw_close(&w, '}');
	if (!jsonw_ok(&w)) {
		snprintf(err, errlen, "%s", w.b.err == BUF_TOO_BIG ? "snapshot larger than its maximum"
								      : "out of memory");
		jsonw_free(&w);
		return NULL;
	}
	text = buf_take(&w.b, len);
	if (!text)
		snprintf(err, errlen, "out of memory");
	return text;
}

/* ---- decoding ------------------------------------------------------------ */

/* A non-negative integer that a double holds exactly (JSON numbers are
 * read as doubles: counts past 2^53 would be rounded). */
static bool get_count(const cJSON *v, uint64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return false;
	d = v->valuedouble;
	if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d))
		return false;
	*out = (uint64_t)d;
	return true;
}

static bool get_double(const cJSON *v, double *out)
{
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0)
		return false;
	*out = v->valuedouble;
	return true;
}

static bool name_ok(const cJSON *v)
{
	return v->string && v->string[0] && strlen(v->string) < SNAPSHOT_MAX_NAME;
}

static int decode_hist(const cJSON *j, struct snapshot_hist *h)
{
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "buckets"), *v;
	int i = 0;

	if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != SNAPSHOT_HIST_BUCKETS)
		return -1;
	cJSON_ArrayForEach(v, b)
		if (!get_count(v, &h->buckets[i++]))
			return -1;
	if (!get_double(cJSON_GetObjectItemCaseSensitive(j, "sum"), &h->sum) ||
	    !get_double(cJSON_GetObjectItemCaseSensitive(j, "max"), &h->max))
		return -1;
	return 0;
}

static int outcome_index(const char *name)
{
	for (int o = 0; o < OUTCOME_COUNT; o++)
		if (strcmp(outcome_name((enum outcome)o), name) == 0)
			return o;
	return -1;
}

static int skip_reason_index(const char *name)
{
	for (int r = 1; r < SKIP_REASON_COUNT; r++)
		if (strcmp(skip_reason_name((enum skip_reason)r), name) == 0)
			return r;
	return -1;
}

/* Reads obj's members as counts into out[index(name)] (obj may be NULL).
 * A name this version does not know (index -1) is left out. */
static int decode_counts(const cJSON *obj, int (*index)(const char *), uint64_t *out, const char *what,
			 const char *endpoint, char *err, size_t errlen)
{
	const cJSON *v;

	cJSON_ArrayForEach(v, obj) {
		int i = v->string ? index(v->string) : -1;
		uint64_t n;

		if (i < 0)
			continue;
		if (!get_count(v, &n)) {
			snprintf(err, errlen, "endpoint %s: %s %s is not a count", endpoint, what, v->string);
			return -1;
		}
		out[i] = n;
	}
	return 0;
}

static int decode_endpoint(const cJSON *j, struct snapshot_endpoint *e, char *err, size_t errlen)
{
	const cJSON *outs = cJSON_GetObjectItemCaseSensitive(j, "outcomes");
	const cJSON *lat = cJSON_GetObjectItemCaseSensitive(j, "latency");
	const cJSON *fields = cJSON_GetObjectItemCaseSensitive(j, "fields");
	const cJSON *mins = cJSON_GetObjectItemCaseSensitive(j, "minutes");
	const cJSON *skips, *v;
	struct minute_bucket b;

	if (!cJSON_IsObject(j) || !cJSON_IsObject(outs) || !cJSON_IsObject(lat) || !cJSON_IsObject(fields) ||
	    !cJSON_IsArray(mins)) {
		snprintf(err, errlen, "endpoint %s: outcomes, latency, fields and minutes expected", e->name);
		return -1;
	}
	/* "skipped" came after version 1's first agents: absent is none. */
	skips = cJSON_GetObjectItemCaseSensitive(j, "skipped");
	if (skips && !cJSON_IsObject(skips)) {
		snprintf(err, errlen, "endpoint %s: skipped is not an object", e->name);
		return -1;
	}
	if (decode_counts(outs, outcome_index, e->outcomes, "outcome", e->name, err, errlen) < 0 ||
	    decode_counts(skips, skip_reason_index, e->skips, "skipped", e->name, err, errlen) < 0)
		return -1;
	for (int l = 0; l < SNAPSHOT_LAT_COUNT; l++) {
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(lat, lat_names[l]), *pair;
		const cJSON *counts = p ? cJSON_GetObjectItemCaseSensitive(p, "counts") : NULL;

		if (!p)
			continue;
		if (!cJSON_IsArray(counts) ||
		    !get_double(cJSON_GetObjectItemCaseSensitive(p, "max_ms"), &e->latency[l].max_ms))
			goto bad_latency;
		cJSON_ArrayForEach(pair, counts) {
			uint64_t at, n;

			if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2 ||
			    !get_count(cJSON_GetArrayItem(pair, 0), &at) || at >= SNAPSHOT_PCT_BUCKETS ||
			    !get_count(cJSON_GetArrayItem(pair, 1), &n))
				goto bad_latency;
			e->latency[l].counts[at] += n;
		}
	}
	if (cJSON_GetArraySize(fields) > SNAPSHOT_MAX_FIELDS) {
		snprintf(err, errlen, "endpoint %s: more than %d fields", e->name, SNAPSHOT_MAX_FIELDS);
		return -1;
	}
	cJSON_ArrayForEach(v, fields) {
		uint64_t raw, noise;

		if (!name_ok(v) || !cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 ||
		    !get_count(cJSON_GetArrayItem(v, 0), &raw) || !get_count(cJSON_GetArrayItem(v, 1), &noise)) {
			snprintf(err, errlen, "endpoint %s: a field is not \"key\":[raw,noise]", e->name);
			return -1;
		}
		if (snapshot_add_field(e, v->string, raw, noise) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (cJSON_GetArraySize(mins) > MINUTES_KEPT) {
		snprintf(err, errlen, "endpoint %s: more than %d minutes", e->name, MINUTES_KEPT);
		return -1;
	}
	cJSON_ArrayForEach(v, mins) {
		uint64_t x[5];

		if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 5)
			goto bad_minute;
		for (int k = 0; k < 5; k++)
			if (!get_count(cJSON_GetArrayItem(v, k), &x[k]) || (k && x[k] > UINT32_MAX))
				goto bad_minute;
		if (!x[0])
			goto bad_minute;
		b = (struct minute_bucket){ .minute = (int64_t)x[0], .compared = (uint32_t)x[1],
			.different = (uint32_t)x[2], .noise = (uint32_t)x[3], .candidate_error = (uint32_t)x[4] };
		minutes_put(&e->minutes, &b);
	}
	return 0;
bad_latency:
	snprintf(err, errlen, "endpoint %s: latency is not {counts:[[bucket,count]...],max_ms}", e->name);
	return -1;
bad_minute:
	snprintf(err, errlen, "endpoint %s: a minute is not [minute,compared,different,noise,candidate_error]",
		 e->name);
	return -1;
}

static enum snapshot_kind decode(const cJSON *doc, struct snapshot *s, char *err, size_t errlen)
{
	const cJSON *ver = cJSON_GetObjectItemCaseSensitive(doc, "miffy_stats");
	const cJSON *inst = cJSON_GetObjectItemCaseSensitive(doc, "instance");
	const cJSON *epoch = cJSON_GetObjectItemCaseSensitive(doc, "epoch");
	const cJSON *counters = cJSON_GetObjectItemCaseSensitive(doc, "counters");
	const cJSON *hists = cJSON_GetObjectItemCaseSensitive(doc, "hists");
	const cJSON *eps = cJSON_GetObjectItemCaseSensitive(doc, "endpoints");
	const cJSON *v;
	uint64_t n;

	if (!cJSON_IsObject(doc) || !ver) {
		snprintf(err, errlen, "not a miffy stats snapshot (no \"miffy_stats\")");
		return SNAPSHOT_FOREIGN;
	}
	if (!get_count(ver, &n)) {
		snprintf(err, errlen, "\"miffy_stats\" is not a version number");
		return SNAPSHOT_GARBAGE;
	}
	if (n > SNAPSHOT_VERSION) {
		snprintf(err, errlen, "snapshot version %" PRIu64 ", this miffy reads %d", n, SNAPSHOT_VERSION);
		return SNAPSHOT_NEWER;
	}
	if (!cJSON_IsString(inst) || !inst->valuestring[0] || strlen(inst->valuestring) >= SNAPSHOT_MAX_NAME ||
	    !get_count(epoch, &n) || !n) {
		snprintf(err, errlen, "snapshot without an instance and an epoch");
		return SNAPSHOT_GARBAGE;
	}
	s->epoch = (int64_t)n;
	s->instance = strdup(inst->valuestring);
	if (!s->instance || !get_count(cJSON_GetObjectItemCaseSensitive(doc, "seq"), &s->seq) ||
	    !get_double(cJSON_GetObjectItemCaseSensitive(doc, "time"), &s->time) ||
	    !cJSON_IsObject(counters) || !cJSON_IsObject(hists) || !cJSON_IsObject(eps)) {
		snprintf(err, errlen, "snapshot of %s without seq, time, counters, hists or endpoints",
			 inst->valuestring);
		return SNAPSHOT_GARBAGE;
	}
	s->final = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "final"));
	if (cJSON_GetArraySize(counters) > SNAPSHOT_MAX_COUNTERS || cJSON_GetArraySize(eps) > SNAPSHOT_MAX_ENDPOINTS) {
		snprintf(err, errlen, "snapshot of %s: too many counters or endpoints", s->instance);
		return SNAPSHOT_GARBAGE;
	}
	cJSON_ArrayForEach(v, counters) {
		if (!name_ok(v) || !get_count(v, &n)) {
			snprintf(err, errlen, "snapshot of %s: counter %s is not a count", s->instance,
				 v->string ? v->string : "?");
			return SNAPSHOT_GARBAGE;
		}
		if (snapshot_add_counter(s, v->string, n) < 0)
			goto nomem;
	}
	for (int h = 0; h < SNAPSHOT_HIST_COUNT; h++) {
		const cJSON *j = cJSON_GetObjectItemCaseSensitive(hists, hist_names[h]);

		if (j && decode_hist(j, &s->hists[h]) < 0) {
			snprintf(err, errlen, "snapshot of %s: histogram %s is not {buckets:[15 counts],sum,max}",
				 s->instance, hist_names[h]);
			return SNAPSHOT_GARBAGE;
		}
	}
	cJSON_ArrayForEach(v, eps) {
		struct snapshot_endpoint *e;

		if (!name_ok(v)) {
			snprintf(err, errlen, "snapshot of %s: an endpoint without a name", s->instance);
			return SNAPSHOT_GARBAGE;
		}
		e = snapshot_add_endpoint(s, v->string);
		if (!e)
			goto nomem;
		if (decode_endpoint(v, e, err, errlen) < 0)
			return SNAPSHOT_GARBAGE;
	}
	if (snapshot_sort(s) < 0)
		goto nomem;
	return SNAPSHOT_OK;
nomem:
	snprintf(err, errlen, "out of memory");
	return SNAPSHOT_GARBAGE;
}

enum snapshot_kind snapshot_decode(const char *msg, size_t len, struct snapshot *out, char *err, size_t errlen)
{
	cJSON *doc;
	enum snapshot_kind k;

	memset(out, 0, sizeof(*out));
	if (len > SNAPSHOT_MAX_BYTES) {
		snprintf(err, errlen, "%zu bytes, more than a snapshot's %u", len, SNAPSHOT_MAX_BYTES);
		return SNAPSHOT_GARBAGE;
	}
	doc = cJSON_ParseWithLength(msg, len);
	if (!doc) {
		snprintf(err, errlen, "not JSON");
		return SNAPSHOT_GARBAGE;
	}
	k = decode(doc, out, err, errlen);
	cJSON_Delete(doc);
	if (k != SNAPSHOT_OK)
		snapshot_clear(out);
	return k;
}

enum snapshot_put snapshot_epochs_put(struct snapshot_epochs *set, struct snapshot *s)
{
	struct snapshot *kept = NULL;

	for (size_t i = 0; i < set->n && !kept; i++)
		if (set->items[i].epoch == s->epoch && strcmp(set->items[i].instance, s->instance) == 0)
			kept = &set->items[i];
	if (kept && s->seq <= kept->seq) {
		snapshot_clear(s);
		return SNAPSHOT_SUPERSEDED;
	}
	if (!kept) {
		struct snapshot *p;

		if (set->n >= (set->max ? set->max : SNAPSHOT_EPOCHS_MAX)) {
			snapshot_clear(s);
			return SNAPSHOT_FULL;
		}
		p = grow(set->items, set->n, sizeof(*p));
		if (!p) {
			snapshot_clear(s);
			return SNAPSHOT_NOMEM;
		}
		set->items = p;
		kept = &p[set->n++];
		memset(kept, 0, sizeof(*kept));
	}
	snapshot_clear(kept);
	*kept = *s;
	memset(s, 0, sizeof(*s));
	return SNAPSHOT_TAKEN;
}

void snapshot_epochs_clear(struct snapshot_epochs *set)
{
	for (size_t i = 0; i < set->n; i++)
		snapshot_clear(&set->items[i]);
	free(set->items);
	set->items = NULL;
	set->n = 0;
}

int snapshot_key(const char *instance, int64_t epoch, char *key, size_t keylen)
{
	int n = snprintf(key, keylen, "%s/%" PRId64, instance, epoch);

	return n < 0 || (size_t)n >= keylen ? -1 : 0;
}
