#include "stats.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ev.h>

#include "admit-t.h"
#include "buf.h"
#include "compare.h"
#include "config-t.h"
#include "fingerprint.h"
#include "hash.h"
#include "jsonw.h"
#include "log.h"
#include "minutes.h"
#include "noise.h"
#include "names.h"
#include "samples.h"
#include "snapshot.h"
#include "utf8.h"
#include "verdict.h"
#include "exchange-t.h"

struct stats stats;

/* The configuration's, set once at start (stats_set_latency_rule); not
 * reset with the tables. */
static struct latency_rule latency_rule;

/* Percentiles come from a log-scale histogram: bucket i holds latencies up
 * to PCT_BASE_MS * PCT_GROWTH^i, so a percentile is off by at most 15 %,
 * in constant memory and time whatever the traffic. The last bucket is
 * open; its percentile is the largest latency seen. Covers 0.05 ms..50 s. */
#define PCT_BUCKETS 100
#define PCT_BASE_MS 0.05
#define PCT_GROWTH 1.15

/* Name -> index tables: open addressing over INDEX_SLOTS one-byte slots
 * (index + 1, 0 is empty), at most 40 % full since both caps are 100. */
#define INDEX_SLOTS 256

/* Distinct candidate error reasons kept per role before "other". */

/* A rendering larger than this is a bug (the tables are capped well below). */
#define STATS_TEXT_MAX (64u << 20)

enum lat_source { LAT_REFERENCE = 0, LAT_CANDIDATE, LAT_SECONDARY, LAT_SOURCE_COUNT };
static const char *const lat_source_names[LAT_SOURCE_COUNT] = { "reference", "candidate", "secondary" };

struct pct_hist {
	uint64_t counts[PCT_BUCKETS];
	uint64_t count;
	double max_ms;
};

struct field_count {
	char *key;               /* "status", "header:<name>", "body", "body:<pointer>" */
	uint64_t raw;            /* exchanges where this field differed */
	uint64_t noise;          /* ... and the difference was noise */
	uint64_t raw_seen;       /* serial of the last exchange counted */
	uint64_t noise_seen;
};

struct last_diff {
	char *id;
	enum outcome outcome;
	double time;             /* wall clock */
};

struct endpoint_stats {
	char *name;
	uint64_t outcomes[OUTCOME_COUNT];
	uint64_t skips[SKIP_REASON_COUNT];   /* of outcomes[OUTCOME_SKIPPED], by reason */
	struct pct_hist latency[LAT_SOURCE_COUNT];
	struct field_count *fields;   /* STATS_MAX_FIELDS + 1 slots, the last is "other" */
	size_t nfields;
	uint8_t *field_index;         /* INDEX_SLOTS */
	struct last_diff last[STATS_LAST_IDS];  /* ring */
	unsigned last_next;
	struct minutes minutes;       /* the last hour, per minute */
};

/* The per-endpoint tables of one view: of all candidates, or of one. */
struct view {
	struct endpoint_stats *endpoints;  /* STATS_MAX_ENDPOINTS + 1 slots, the last is "other" */
	size_t nendpoints;
	uint8_t endpoint_index[INDEX_SLOTS];
};

/* One candidate's view, kept when an agent compares several. */
struct candidate_stats {
	char *name;
	uint64_t outcomes[OUTCOME_COUNT];
	uint64_t errors[REPLAY_ERROR_COUNT];     /* its failed replays by reason */
	struct view v;
};

static struct {
	struct view all;                         /* every candidate's exchanges: the sum */
	struct candidate_stats *cands;           /* NULL unless several candidates */
	unsigned ncands;
	uint64_t serial;
	struct stats_hist latency[LAT_SOURCE_COUNT];
	struct stats_hist ack;                   /* bounds stats_ack_bounds */
	double ack_max;                          /* seconds */
	uint64_t errors[ROLE_COUNT][REPLAY_ERROR_COUNT];  /* failed replays by reason */
	const struct noise *noise;
	struct samples *samples;
	const struct fingerprints *fingerprints;
	void (*extra_json)(struct jsonw *w, void *ctx);
	void (*extra_metrics)(struct buf *b, void *ctx);
	void *extra_ctx;
} st = { .ack = { .bounds = stats_ack_bounds } };

const double stats_hist_bounds[STATS_HIST_BOUNDS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};
/* HAProxy's shipped "timeout processing" is a few milliseconds: the buckets
 * must show how far below it a healthy agent stays. */
const double stats_ack_bounds[STATS_HIST_BOUNDS] = {
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 1,
};

/* ---- Prometheus text helpers ------------------------------------------ */

/* Label values must be UTF-8: bytes that are not (a path is whatever the
 * client sent) become U+FFFD, or one bad request would break the scrape. */
static void prom_escape_to(struct buf *b, const char *str)
{
	const uint8_t *s = (const uint8_t *)str, *end = s + strlen(str);

	while (s < end) {
		int n = utf8_char(s, (size_t)(end - s));

		if (n < 0) {
			buf_add(b, "\xef\xbf\xbd", 3);
			s++;
			continue;
		}
		switch (*s) {
		case '\\': buf_add(b, "\\\\", 2); break;
		case '"': buf_add(b, "\\\"", 2); break;
		case '\n': buf_add(b, "\\n", 2); break;
		default: buf_add(b, s, (size_t)n); break;
		}
		s += n;
	}
}

char *stats_prom_escape(const char *s)
{
	struct buf b;

	buf_init(&b, STATS_TEXT_MAX);
	prom_escape_to(&b, s);
	return buf_take(&b, NULL);
}

static const double *hist_bounds(const struct stats_hist *h)
{
	return h->bounds ? h->bounds : stats_hist_bounds;
}

void stats_hist_observe(struct stats_hist *h, double seconds)
{
	const double *bounds = hist_bounds(h);
	size_t i = 0;

	if (!(seconds >= 0))        /* also catches NaN */
		seconds = 0;
	while (i < STATS_HIST_BOUNDS && seconds > bounds[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum += seconds;
}

static void hist_render(struct buf *b, const char *name, const char *labels, const struct stats_hist *h)
{
	const char *sep = labels[0] ? "," : "";
	const double *bounds = hist_bounds(h);
	uint64_t cum = 0;

	for (size_t i = 0; i < STATS_HIST_BOUNDS; i++) {
		cum += h->buckets[i];
		buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
			    bounds[i], cum);
	}
	cum += h->buckets[STATS_HIST_BOUNDS];
	buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cum);
	if (labels[0]) {
		buf_printf(b, "%s_sum{%s} %.9g\n", name, labels, h->sum);
		buf_printf(b, "%s_count{%s} %" PRIu64 "\n", name, labels, cum);
	} else {
		buf_printf(b, "%s_sum %.9g\n", name, h->sum);
		buf_printf(b, "%s_count %" PRIu64 "\n", name, cum);
	}
}

char *stats_hist_text(const char *name, const char *labels, const struct stats_hist *h)
{
	struct buf b;

	buf_init(&b, STATS_TEXT_MAX);
	hist_render(&b, name, labels ? labels : "", h);
	return buf_take(&b, NULL);
}

static void prom_family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_u64(struct buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
	prom_family(b, name, type, help);
	buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

struct prom_metric {
	const char *name;
	const char *type;            /* "counter" | "gauge" */
	const char *help;
	uint64_t v;
};

#define NAMED_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The families of n unlabeled metrics, in order. */
static void prom_u64s(struct buf *b, const struct prom_metric *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		prom_u64(b, m[i].name, m[i].type, m[i].help, m[i].v);
}

/* One sample with a single label whose value needs escaping. */
static void prom_labeled(struct buf *b, const char *name, const char *key, const char *value, uint64_t v)
{
	buf_printf(b, "%s{%s=\"", name, key);
	prom_escape_to(b, value);
	buf_printf(b, "\"} %" PRIu64 "\n", v);
}

/* ---- per-endpoint tables ---------------------------------------------- */

/* The slot of name in index: the one that holds it, or the empty one where
 * it would go. name_at(i) gives the name of entry i. */
static uint8_t *index_slot(uint8_t *index, const char *name, const char *(*name_at)(size_t, const void *),
			   const void *ctx)
{
	uint64_t h = hash_string(name);
	size_t i = (size_t)(h ^ (h >> 32)) & (INDEX_SLOTS - 1);

	while (index[i] && strcmp(name_at(index[i] - 1u, ctx), name) != 0)
		i = (i + 1) & (INDEX_SLOTS - 1);
	return &index[i];
}

static const char *endpoint_name_at(size_t i, const void *ctx)
{
	const struct view *v = ctx;

	return v->endpoints[i].name;
}

static const char *field_name_at(size_t i, const void *ctx)
{
	const struct endpoint_stats *e = ctx;

	return e->fields[i].key;
}

static size_t pct_bucket(double ms)
{
	double i;

	if (!(ms > PCT_BASE_MS))
		return 0;
	i = ceil(log(ms / PCT_BASE_MS) / log(PCT_GROWTH));
	return i >= PCT_BUCKETS - 1 ? PCT_BUCKETS - 1 : (size_t)i;
}

static void pct_observe(struct pct_hist *h, double ms)
{
	if (!(ms >= 0))
		ms = 0;
	h->counts[pct_bucket(ms)]++;
	h->count++;
	if (ms > h->max_ms)
		h->max_ms = ms;
}

/* The q-quantile (0 < q <= 1), in ms: the upper bound of the bucket that
 * holds it, never above the largest latency seen. */
static double pct_quantile(const struct pct_hist *h, double q)
{
	uint64_t rank = (uint64_t)ceil(q * (double)h->count), cum = 0;

	if (!h->count)
		return 0;
	if (rank < 1)
		rank = 1;
	for (size_t i = 0; i < PCT_BUCKETS - 1; i++) {
		cum += h->counts[i];
		if (cum >= rank) {
			double bound = PCT_BASE_MS * pow(PCT_GROWTH, (double)i);

			return bound < h->max_ms ? bound : h->max_ms;
		}
	}
	return h->max_ms;
}

static bool ensure_tables(struct view *v)
{
	if (v->endpoints)
		return true;
	v->endpoints = calloc(STATS_MAX_ENDPOINTS + 1, sizeof(*v->endpoints));
	return v->endpoints != NULL;
}

/* The entry of endpoint name in v, created on first sight; "other" past the
 * cap or when memory runs out. NULL only when the table itself is missing. */
static struct endpoint_stats *endpoint_get(struct view *v, const char *name)
{
	struct endpoint_stats *other;
	uint8_t *slot;

	if (!ensure_tables(v))
		return NULL;
	other = &v->endpoints[STATS_MAX_ENDPOINTS];
	if (!other->name)
		other->name = strdup(STATS_OTHER);
	if (!name)
		return other;
	slot = index_slot(v->endpoint_index, name, endpoint_name_at, v);
	if (*slot)
		return &v->endpoints[*slot - 1];
	if (v->nendpoints < STATS_MAX_ENDPOINTS && strcmp(name, STATS_OTHER) != 0) {
		struct endpoint_stats *e = &v->endpoints[v->nendpoints];

		e->name = strdup(name);
		if (e->name) {
			*slot = (uint8_t)++v->nendpoints;
			return e;
		}
	}
	return other;
}

static struct field_count *field_get(struct endpoint_stats *e, const char *key)
{
	struct field_count *other;
	uint8_t *slot;

	if (!e->fields) {
		e->fields = calloc(STATS_MAX_FIELDS + 1, sizeof(*e->fields));
		e->field_index = calloc(INDEX_SLOTS, 1);
		if (!e->fields || !e->field_index) {
			free(e->fields);
			free(e->field_index);
			e->fields = NULL;
			e->field_index = NULL;
			return NULL;
		}
	}
	other = &e->fields[STATS_MAX_FIELDS];
	if (!other->key)
		other->key = strdup(STATS_OTHER);
	slot = index_slot(e->field_index, key, field_name_at, e);
	if (*slot)
		return &e->fields[*slot - 1];
	if (e->nfields < STATS_MAX_FIELDS) {
		struct field_count *f = &e->fields[e->nfields];

		f->key = strdup(key);
		if (f->key) {
			*slot = (uint8_t)++e->nfields;
			return f;
		}
	}
	return other->key ? other : NULL;
}

static void count_fields(struct endpoint_stats *e, const struct diff_list *diffs)
{
	char key[512];

	st.serial++;
	for (size_t i = 0; i < diffs->count; i++) {
		const struct difference *d = &diffs->items[i];
		struct field_count *f;

		diff_field_key(d, key, sizeof(key));
		f = field_get(e, key);
		if (!f)
			continue;
		/* A field counts once per exchange, like Diffy's. */
		if (f->raw_seen != st.serial) {
			f->raw_seen = st.serial;
			f->raw++;
		}
		if (d->noise && f->noise_seen != st.serial) {
			f->noise_seen = st.serial;
			f->noise++;
		}
	}
}

static void remember_id(struct endpoint_stats *e, const char *id, enum outcome o)
{
	struct last_diff *l = &e->last[e->last_next];
	char *copy = strdup(id);

	if (!copy)
		return;
	free(l->id);
	l->id = copy;
	l->outcome = o;
	l->time = ev_time();
	e->last_next = (e->last_next + 1) % STATS_LAST_IDS;
}

/* The part of stats_exchange_done that one candidate's view repeats. */
static void candidate_done(struct candidate_stats *c, const struct exchange *x, enum outcome o,
			   const struct diff_list *diffs)
{
	const struct http_response *resp = &x->replies[ROLE_CANDIDATE];
	struct endpoint_stats *e = endpoint_get(&c->v, x->endpoint);

	c->outcomes[o]++;
	if (x->have[ROLE_CANDIDATE] && resp->error != REPLAY_OK && (unsigned)resp->error < REPLAY_ERROR_COUNT)
		c->errors[resp->error]++;
	if (!e)
		return;
	e->outcomes[o]++;
	if (o == OUTCOME_SKIPPED)
		e->skips[x->skip]++;
	minutes_add(&e->minutes, ev_time(), o);
	if (x->have_reference)
		pct_observe(&e->latency[LAT_REFERENCE], x->reference.latency_ms);
	if (x->have[ROLE_CANDIDATE] && resp->error == REPLAY_OK)
		pct_observe(&e->latency[LAT_CANDIDATE], resp->latency_ms);
	if (x->have[ROLE_SECONDARY] && x->replies[ROLE_SECONDARY].error == REPLAY_OK)
		pct_observe(&e->latency[LAT_SECONDARY], x->replies[ROLE_SECONDARY].latency_ms);
	if (diffs && diffs->count && (o == OUTCOME_DIFFERENT || o == OUTCOME_NOISE))
		count_fields(e, diffs);
	if (x->id && (o == OUTCOME_DIFFERENT || o == OUTCOME_NOISE || o == OUTCOME_CANDIDATE_ERROR))
		remember_id(e, x->id, o);
}

void stats_exchange_done(const struct exchange *x, enum outcome o, const struct diff_list *diffs)
{
	/* The reference and the secondary answer once per exchange, however
	 * many candidates: their times and failures count with the first's. */
	bool once = x->candidate == 0;
	struct endpoint_stats *e;

	stats.outcomes[o]++;
	if (o == OUTCOME_SKIPPED)
		stats.skips[x->skip]++;
	if (st.cands && x->candidate < st.ncands)
		candidate_done(&st.cands[x->candidate], x, o, diffs);
	e = endpoint_get(&st.all, x->endpoint);
	if (e) {
		e->outcomes[o]++;
		if (o == OUTCOME_SKIPPED)
			e->skips[x->skip]++;
		minutes_add(&e->minutes, ev_time(), o);
	}
	if (x->have_reference && once) {
		stats_hist_observe(&st.latency[LAT_REFERENCE], x->reference.latency_ms / 1000.0);
		if (e)
			pct_observe(&e->latency[LAT_REFERENCE], x->reference.latency_ms);
	}
	for (int r = 0; r < ROLE_COUNT; r++) {
		enum lat_source src = r == ROLE_CANDIDATE ? LAT_CANDIDATE : LAT_SECONDARY;
		const struct http_response *resp = &x->replies[r];

		if (!x->have[r] || (r == ROLE_SECONDARY && !once))
			continue;
		/* A failed replay is counted here, once, with its exchange's
		 * outcome; its time says how fast it failed, not how fast the
		 * service answers. */
		if (resp->error != REPLAY_OK) {
			if ((unsigned)resp->error < REPLAY_ERROR_COUNT)
				st.errors[r][resp->error]++;
			continue;
		}
		stats_hist_observe(&st.latency[src], resp->latency_ms / 1000.0);
		if (e)
			pct_observe(&e->latency[src], resp->latency_ms);
	}
	if (!e)
		return;
	if (diffs && diffs->count && (o == OUTCOME_DIFFERENT || o == OUTCOME_NOISE))
		count_fields(e, diffs);
	if (x->id && (o == OUTCOME_DIFFERENT || o == OUTCOME_NOISE || o == OUTCOME_CANDIDATE_ERROR))
		remember_id(e, x->id, o);
}

void stats_request_dropped(void)
{
	/* lost to every candidate */
	stats.outcomes[OUTCOME_DROPPED] += st.cands ? st.ncands : 1;
	for (unsigned k = 0; st.cands && k < st.ncands; k++)
		st.cands[k].outcomes[OUTCOME_DROPPED]++;
}

static void stats_clear_candidates(void);

int stats_set_candidates(const char *const *names, unsigned n)
{
	stats_clear_candidates();
	if (n < 2)
		return 0;
	st.cands = calloc(n, sizeof(*st.cands));
	if (!st.cands)
		return -1;
	st.ncands = n;
	for (unsigned k = 0; k < n; k++) {
		st.cands[k].name = strdup(names[k]);
		if (!st.cands[k].name) {
			stats_clear_candidates();
			return -1;
		}
	}
	return 0;
}

void stats_ack_observe(double seconds)
{
	stats_hist_observe(&st.ack, seconds);
	if (seconds > st.ack_max)
		st.ack_max = seconds;
}

void stats_compare_done(const struct stats_compare *c)
{
	stats.compare_budget_exceeded += c->order_unchecked;
	stats.compare_key_fallback += c->key_fallback;
	stats.decompress_failed += c->decode_failed;
	stats.json_depth_exceeded += c->depth_exceeded;
}

void stats_set_limits(const struct admit_limits *lim)
{
	stats.limit_concurrent = lim->max_concurrent;
	stats.limit_connections = lim->max_host_connections;
	stats.limit_rps = lim->max_candidate_rps;
}

void stats_set_noise(const struct noise *n)
{
	st.noise = n;
}

void stats_set_samples(struct samples *s)
{
	st.samples = s;
}

void stats_set_latency_rule(const struct latency_rule *rule)
{
	latency_rule = *rule;
}

/* The candidate's latency against the reference's on endpoint e. */
static void endpoint_latency(const struct endpoint_stats *e, struct latency_judgement *j)
{
	const struct pct_hist *r = &e->latency[LAT_REFERENCE], *c = &e->latency[LAT_CANDIDATE];
	struct latency_side ref = { r->count, pct_quantile(r, 0.50), pct_quantile(r, 0.99) };
	struct latency_side cand = { c->count, pct_quantile(c, 0.50), pct_quantile(c, 0.99) };

	verdict_latency(&latency_rule, &ref, &cand, j);
}

void stats_set_fingerprints(const struct fingerprints *t)
{
	st.fingerprints = t;
}

void stats_set_extra(void (*json)(struct jsonw *w, void *ctx), void (*metrics)(struct buf *b, void *ctx), void *ctx)
{
	st.extra_json = json;
	st.extra_metrics = metrics;
	st.extra_ctx = ctx;
}

static void view_free(struct view *v)
{
	if (v->endpoints) {
		for (size_t i = 0; i <= STATS_MAX_ENDPOINTS; i++) {
			struct endpoint_stats *e = &v->endpoints[i];

			free(e->name);
			if (e->fields)
				for (size_t k = 0; k <= STATS_MAX_FIELDS; k++)
					free(e->fields[k].key);
			free(e->fields);
			free(e->field_index);
			for (size_t k = 0; k < STATS_LAST_IDS; k++)
				free(e->last[k].id);
		}
		free(v->endpoints);
	}
	memset(v, 0, sizeof(*v));
}

static void stats_clear_candidates(void)
{
	for (unsigned k = 0; st.cands && k < st.ncands; k++) {
		free(st.cands[k].name);
		view_free(&st.cands[k].v);
	}
	free(st.cands);
	st.cands = NULL;
	st.ncands = 0;
}

/* Frees every table; the report's extra writers (stats_set_extra) stay. */
void stats_free(void)
{
	void (*json)(struct jsonw *, void *) = st.extra_json;
	void (*metrics)(struct buf *, void *) = st.extra_metrics;
	void *ctx = st.extra_ctx;

	view_free(&st.all);
	stats_clear_candidates();
	memset(&st, 0, sizeof(st));
	st.extra_json = json;
	st.extra_metrics = metrics;
	st.extra_ctx = ctx;
	st.ack.bounds = stats_ack_bounds;
}

void stats_reset(void)
{
	stats_free();
	memset(&stats, 0, sizeof(stats));
}

/* ---- process facts ----------------------------------------------------- */

static double uptime_seconds(void)
{
	double up = stats.started > 0 ? ev_time() - stats.started : 0;

	return up > 0 ? up : 0;
}

/* Resident set size from /proc/self/statm (pages), 0 when unavailable. */
static uint64_t rss_bytes(void)
{
	char buf[128];
	unsigned long long size, resident;
	long page = sysconf(_SC_PAGESIZE);
	ssize_t n;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || page <= 0)
		return 0;
	buf[n] = '\0';
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return 0;
	return (uint64_t)resident * (uint64_t)page;
}

/* ---- /metrics ----------------------------------------------------------- */

static const char *disconnect_label(size_t slot, char *buf, size_t len)
{
	if (slot == STATS_DISCONNECT_SLOTS - 1)
		return STATS_OTHER;
	snprintf(buf, len, "%zu", slot);
	return buf;
}

static bool endpoint_shown(const struct view *v, size_t i);

/* The name of family base + suffix, with "_by_candidate" between them
 * for a candidate's view. */
static const char *family(char *out, size_t len, const char *base, const char *suffix, const char *candidate)
{
	snprintf(out, len, "%s%s%s", base, candidate ? "_by_candidate" : "", suffix);
	return out;
}

/* Starts a sample of family name: `name{[candidate="C",]endpoint="E"`. */
static void prom_endpoint_start(struct buf *b, const char *name, const char *candidate, const char *endpoint)
{
	buf_printf(b, "%s{", name);
	if (candidate)
		buf_printf(b, "candidate=\"%s\",", candidate);  /* a token: nothing to escape */
	buf_adds(b, "endpoint=\"");
	prom_escape_to(b, endpoint);
}

/* Of each endpoint's finished exchanges in views (n of them), the share
 * compared (equal, different or noise), and what was skipped by reason:
 * what shedding (admit.h) left of it. names: each view's candidate, all
 * NULL for the sum (one view), else the *_by_candidate families. */
static void metrics_endpoint_shares(struct buf *b, const struct view *const *views, const char *const *names,
				    unsigned n)
{
	char ratio[64], skipped[64];

	family(ratio, sizeof(ratio), "miffy_endpoint_compared", "_ratio", names[0]);
	family(skipped, sizeof(skipped), "miffy_endpoint_skipped", "_total", names[0]);
	prom_family(b, ratio, "gauge",
		    "Share of an endpoint's finished exchanges that were compared (equal, different, noise).");
	for (unsigned c = 0; c < n; c++)
		for (size_t i = 0; views[c]->endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
			const struct endpoint_stats *e = &views[c]->endpoints[i];
			uint64_t total = 0, compared;

			if (!endpoint_shown(views[c], i))
				continue;
			for (int o = 0; o < OUTCOME_COUNT; o++)
				total += e->outcomes[o];
			compared = e->outcomes[OUTCOME_EQUAL] + e->outcomes[OUTCOME_DIFFERENT] + e->outcomes[OUTCOME_NOISE];
			prom_endpoint_start(b, ratio, names[c], e->name);
			buf_printf(b, "\"} %.4f\n", total ? (double)compared / (double)total : 0.0);
		}
	prom_family(b, skipped, "counter", "Skipped exchanges by endpoint and reason (reasons with none left out).");
	for (unsigned c = 0; c < n; c++)
		for (size_t i = 0; views[c]->endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
			const struct endpoint_stats *e = &views[c]->endpoints[i];

			if (!endpoint_shown(views[c], i))
				continue;
			for (int r = SKIP_NONE + 1; r < SKIP_REASON_COUNT; r++) {
				if (!e->skips[r])
					continue;
				prom_endpoint_start(b, skipped, names[c], e->name);
				buf_printf(b, "\",reason=\"%s\"} %" PRIu64 "\n", skip_reason_name((enum skip_reason)r),
					   e->skips[r]);
			}
		}
}

/* The samples of view v's endpoints x outcomes; candidate NULL for the
 * sum (miffy_endpoint_exchanges_total), else its name (the family
 * miffy_endpoint_exchanges_by_candidate_total, already announced). */
static void metrics_endpoints(struct buf *b, const struct view *v, const char *candidate)
{
	if (!candidate)
		prom_family(b, "miffy_endpoint_exchanges_total", "counter",
			    "Finished exchanges by endpoint and outcome (endpoints past the first 100 count as "
			    "\"other\"); with several candidates, the sum of theirs.");
	for (size_t i = 0; v->endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
		const struct endpoint_stats *e = &v->endpoints[i];

		if (i == STATS_MAX_ENDPOINTS && !e->name)
			continue;
		if (i >= v->nendpoints && i != STATS_MAX_ENDPOINTS)
			continue;
		if (i == STATS_MAX_ENDPOINTS) {
			uint64_t any = 0;

			for (int o = 0; o < OUTCOME_COUNT; o++)
				any |= e->outcomes[o];
			if (!any)
				continue;
		}
		for (int o = 0; o < OUTCOME_COUNT; o++) {
			if (candidate) {
				buf_adds(b, "miffy_endpoint_exchanges_by_candidate_total{candidate=\"");
				buf_adds(b, candidate);  /* a token: nothing to escape */
				buf_adds(b, "\",endpoint=\"");
			} else {
				buf_adds(b, "miffy_endpoint_exchanges_total{endpoint=\"");
			}
			prom_escape_to(b, e->name ? e->name : STATS_OTHER);
			buf_printf(b, "\",outcome=\"%s\"} %" PRIu64 "\n", outcome_name((enum outcome)o),
				    e->outcomes[o]);
		}
	}
}

/* One sample labeled [candidate,] endpoint and key=value. */
static void prom_endpoint_line(struct buf *b, const char *name, const char *candidate, const char *endpoint,
			       const char *key, const char *value)
{
	prom_endpoint_start(b, name, candidate, endpoint);
	buf_printf(b, "\",%s=\"%s\"} ", key, value);
}

/* The latency verdicts (a state set: 1 for the verdict that holds), the
 * candidate/reference ratios, and with a secondary the fields of each
 * confidence verdict, of views (as metrics_endpoint_shares). */
static void metrics_verdicts(struct buf *b, const struct view *const *views, const char *const *names, unsigned n)
{
	static const char *const quantiles[] = { "0.5", "0.99" };
	char verdict[64], ratio[64], fields[64];

	family(verdict, sizeof(verdict), "miffy_endpoint_latency_verdict", "", names[0]);
	family(ratio, sizeof(ratio), "miffy_endpoint_latency_ratio", "", names[0]);
	family(fields, sizeof(fields), "miffy_endpoint_noise_fields", "", names[0]);
	prom_family(b, verdict, "gauge",
		    "1 for the candidate's latency verdict against the reference's (latency_tolerance, "
		    "latency_floor_ms, latency_min_count), 0 for the others.");
	for (unsigned c = 0; c < n; c++)
		for (size_t i = 0; views[c]->endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
			struct latency_judgement j;

			if (!endpoint_shown(views[c], i))
				continue;
			endpoint_latency(&views[c]->endpoints[i], &j);
			for (int k = 0; k < LATENCY_VERDICT_COUNT; k++) {
				prom_endpoint_line(b, verdict, names[c], views[c]->endpoints[i].name, "verdict",
						   latency_verdict_name((enum latency_verdict)k));
				buf_printf(b, "%d\n", j.verdict == (enum latency_verdict)k);
			}
		}
	prom_family(b, ratio, "gauge", "Candidate latency over the reference's at a quantile (while both have latencies).");
	for (unsigned c = 0; c < n; c++)
		for (size_t i = 0; views[c]->endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
			const struct endpoint_stats *e = &views[c]->endpoints[i];
			struct latency_judgement j;

			if (!endpoint_shown(views[c], i) || !e->latency[LAT_REFERENCE].count || !e->latency[LAT_CANDIDATE].count)
				continue;
			endpoint_latency(e, &j);
			for (size_t q = 0; q < 2; q++) {
				double r = q ? j.ratio_p99 : j.ratio_p50;

				if (!(r > 0))
					continue;
				prom_endpoint_line(b, ratio, names[c], e->name, "quantile", quantiles[q]);
				buf_printf(b, "%.6g\n", r);
			}
		}
	if (!st.noise)
		return;
	prom_family(b, fields, "gauge",
		    "Fields of an endpoint by confidence verdict: the candidate differs there more often "
		    "than the secondary (regression, 95 % interval above 0), not shown to (noise), "
		    "too few exchanges (insufficient_data).");
	for (unsigned c = 0; c < n; c++)
		for (size_t i = 0; views[c]->endpoints && i < views[c]->nendpoints; i++) {
			uint64_t counts[NOISE_VERDICT_COUNT];
			/* each candidate's noise tables are its own (noise.h) */
			char *key = names[c] ? noise_candidate_key(names[c], views[c]->endpoints[i].name) : NULL;
			bool have = (!names[c] || key) &&
				    noise_verdict_counts(st.noise, key ? key : views[c]->endpoints[i].name, counts);

			free(key);
			if (!have)
				continue;
			for (int k = 0; k < NOISE_VERDICT_COUNT; k++) {
				prom_endpoint_line(b, fields, names[c], views[c]->endpoints[i].name, "verdict",
						   noise_verdict_name((enum noise_verdict)k));
				buf_printf(b, "%" PRIu64 "\n", counts[k]);
			}
		}
}

static void metrics_errors(struct buf *b)
{
	prom_family(b, "miffy_candidate_errors_total", "counter",
		    "Failed replays by role (candidate, secondary) and reason.");
	for (int r = 0; r < ROLE_COUNT; r++)
		for (int e = REPLAY_OK + 1; e < REPLAY_ERROR_COUNT; e++)
			if (st.errors[r][e])
				buf_printf(b, "miffy_candidate_errors_total{role=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
					   role_name((enum replay_role)r), replay_error_name((enum replay_error)e),
					   st.errors[r][e]);
}

/* Per endpoint x fingerprint (bounded by fingerprints_max), then the
 * table's own counters. */
struct fp_prom {
	struct buf *b;
	bool last_seen;              /* the gauge; else the counter */
};

static void fp_prom_line(const struct fingerprint_view *v, void *arg)
{
	struct fp_prom *f = arg;

	prom_endpoint_start(f->b, f->last_seen ? "miffy_fingerprint_last_seen_seconds" :
			    "miffy_fingerprint_exchanges_total", v->candidate, v->endpoint);
	buf_printf(f->b, "\",fingerprint=\"%s\"} ", v->fingerprint);
	if (f->last_seen)
		buf_printf(f->b, "%.3f\n", v->last_seen);
	else
		buf_printf(f->b, "%" PRIu64 "\n", v->count);
}

static void metrics_fingerprints(struct buf *b)
{
	struct fingerprint_counts c;
	struct fp_prom f = { .b = b };

	if (!st.fingerprints)
		return;
	fingerprints_counts(st.fingerprints, &c);
	prom_family(b, "miffy_fingerprint_exchanges_total", "counter",
		    "Differing exchanges by endpoint and fingerprint (the kind of difference).");
	fingerprints_each(st.fingerprints, fp_prom_line, &f);
	prom_family(b, "miffy_fingerprint_last_seen_seconds", "gauge",
		    "When an exchange of this endpoint and fingerprint was last seen (Unix time).");
	f.last_seen = true;
	fingerprints_each(st.fingerprints, fp_prom_line, &f);
	prom_u64(b, "miffy_fingerprints_stored", "gauge",
		 "Endpoint x fingerprint entries kept now (at most fingerprints_max).", c.entries);
	prom_u64(b, "miffy_fingerprints_evicted_total", "counter",
		 "Endpoint x fingerprint entries dropped to make room (the least recently seen).", c.evicted);
	prom_u64(b, "miffy_fingerprint_suppressed_total", "counter",
		 "Messages not sent: their fingerprint was over fingerprint_limit in its interval.",
		 c.suppressed);
}

/* The families with a candidate label, when there are several. */
static void metrics_candidates(struct buf *b)
{
	const struct view *views[MIFFY_MAX_CANDIDATES];
	const char *names[MIFFY_MAX_CANDIDATES];

	if (!st.cands)
		return;
	for (unsigned k = 0; k < st.ncands && k < MIFFY_MAX_CANDIDATES; k++) {
		views[k] = &st.cands[k].v;
		names[k] = st.cands[k].name;
	}
	prom_family(b, "miffy_exchanges_by_candidate_total", "counter",
		    "Finished exchanges by candidate and outcome (each exchange ends once per candidate).");
	for (unsigned k = 0; k < st.ncands; k++)
		for (int o = 0; o < OUTCOME_COUNT; o++)
			buf_printf(b, "miffy_exchanges_by_candidate_total{candidate=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
				   st.cands[k].name, outcome_name((enum outcome)o), st.cands[k].outcomes[o]);
	prom_family(b, "miffy_replay_errors_by_candidate_total", "counter",
		    "Failed candidate replays by candidate and reason.");
	for (unsigned k = 0; k < st.ncands; k++)
		for (int e = REPLAY_OK + 1; e < REPLAY_ERROR_COUNT; e++)
			if (st.cands[k].errors[e])
				buf_printf(b, "miffy_replay_errors_by_candidate_total{candidate=\"%s\",reason=\"%s\"} %"
					   PRIu64 "\n", st.cands[k].name, replay_error_name((enum replay_error)e),
					   st.cands[k].errors[e]);
	prom_family(b, "miffy_endpoint_exchanges_by_candidate_total", "counter",
		    "Finished exchanges by candidate, endpoint and outcome.");
	for (unsigned k = 0; k < st.ncands; k++)
		metrics_endpoints(b, &st.cands[k].v, st.cands[k].name);
	/* each candidate's compared share and verdicts: as the sum's, in
	 * families of their own with a candidate label */
	metrics_endpoint_shares(b, views, names, st.ncands < MIFFY_MAX_CANDIDATES ? st.ncands : MIFFY_MAX_CANDIDATES);
	metrics_verdicts(b, views, names, st.ncands < MIFFY_MAX_CANDIDATES ? st.ncands : MIFFY_MAX_CANDIDATES);
}

char *stats_metrics_text(size_t *len)
{
	const struct view *all = &st.all;
	const char *none = NULL;
	const struct prom_metric spop[] = {
		{ "miffy_spop_connections_accepted_total", "counter",
		  "HAProxy connections accepted.", stats.conn_accepted },
		{ "miffy_spop_connections_refused_total", "counter",
		  "HAProxy connections refused above max_connections.", stats.conn_refused },
		{ "miffy_spop_connections_active", "gauge", "HAProxy connections open now.", stats.conn_active },
		{ "miffy_spop_healthchecks_total", "counter", "SPOP health checks answered.", stats.conn_healthchecks },
		{ "miffy_spop_frames_received_total", "counter", "SPOP frames received.", stats.frames_in },
		{ "miffy_spop_frames_sent_total", "counter", "SPOP frames sent.", stats.frames_out },
		{ "miffy_spop_notify_frames_total", "counter", "NOTIFY frames received.", stats.notify_frames },
		{ "miffy_spop_ack_frames_total", "counter", "ACK frames sent.", stats.ack_frames },
		{ "miffy_spop_messages_total", "counter", "SPOE messages decoded.", stats.messages },
	}, spop_more[] = {
		{ "miffy_spop_disconnects_received_total", "counter",
		  "HAPROXY-DISCONNECT frames received.", stats.disconnect_received },
		{ "miffy_spop_idle_timeouts_total", "counter",
		  "HAProxy connections closed for idleness.", stats.idle_timeouts },
	}, compare_publish[] = {
		{ "miffy_json_depth_exceeded_total", "counter",
		  "Bodies nested deeper than max_depth.", stats.json_depth_exceeded },
		{ "miffy_compare_budget_exceeded_total", "counter",
		  "Comparisons whose reordered-array pairing hit its step budget (reported by index).",
		  stats.compare_budget_exceeded },
		{ "miffy_compare_key_fallback_total", "counter",
		  "Comparisons where an array_keys array had an absent or repeated key (paired by index).",
		  stats.compare_key_fallback },
		{ "miffy_decompress_failures_total", "counter",
		  "Bodies whose gzip/deflate decoding failed.", stats.decompress_failed },
		{ "miffy_published_total", "counter", "Messages handed to the sink.", stats.published },
		{ "miffy_messages_cut_total", "counter",
		  "Messages whose bodies were cut to fit max_message.", stats.messages_cut },
		{ "miffy_sink_errors_total", "counter", "File or stdout sink write errors.", stats.sink_errors },
		{ "miffy_kafka_delivered_total", "counter", "Messages Kafka acknowledged.", stats.kafka_delivered },
		{ "miffy_kafka_failed_total", "counter", "Messages Kafka reported as failed.", stats.kafka_failed },
		{ "miffy_kafka_dropped_total", "counter",
		  "Messages dropped before Kafka (local queue full or produce error).", stats.kafka_dropped },
		{ "miffy_kafka_queue_depth", "gauge",
		  "Messages waiting in librdkafka's queue.", stats.kafka_queue_depth },
	}, logged[] = {
		{ "miffy_log_lines_suppressed_total", "counter",
		  "Warning and error log lines dropped by the log rate limit.", log_suppressed_total() },
		{ "miffy_log_lines_dropped_total", "counter",
		  "Log lines dropped because the log's reader (a stalled stderr pipe) did not keep up.",
		  log_dropped_total() },
	};
	struct buf b;
	char slot[16];

	buf_init(&b, STATS_TEXT_MAX);
	ensure_tables(&st.all);
	prom_family(&b, "miffy_build_info", "gauge", "Always 1; the version is a label.");
	buf_printf(&b, "miffy_build_info{version=\"%s\"} 1\n", MIFFY_VERSION);
	prom_family(&b, "miffy_uptime_seconds", "gauge", "Seconds since the agent started.");
	buf_printf(&b, "miffy_uptime_seconds %.3f\n", uptime_seconds());
	prom_family(&b, "miffy_process_resident_memory_bytes", "gauge", "Resident set size of the agent.");
	buf_printf(&b, "miffy_process_resident_memory_bytes %" PRIu64 "\n", rss_bytes());

	prom_u64s(&b, spop, NAMED_COUNT(spop));
	prom_family(&b, "miffy_spop_ack_latency_seconds", "histogram",
		    "From a NOTIFY's arrival (kernel receive time) to the write that sent its ACK; "
		    "HAProxy gives up on an ACK after \"timeout processing\".");
	hist_render(&b, "miffy_spop_ack_latency_seconds", "", &st.ack);
	prom_family(&b, "miffy_spop_disconnects_sent_total", "counter",
		    "AGENT-DISCONNECT frames sent, by SPOP status code (\"other\": 15 and above).");
	for (size_t i = 0; i < STATS_DISCONNECT_SLOTS; i++)
		prom_labeled(&b, "miffy_spop_disconnects_sent_total", "status",
			     disconnect_label(i, slot, sizeof(slot)), stats.disconnect_sent[i]);
	prom_u64s(&b, spop_more, NAMED_COUNT(spop_more));

	/* exchanges */
	prom_u64(&b, "miffy_exchanges_started_total", "counter",
		 "Exchanges entered in the table (miffy-req accepted).", stats.exchanges_started);
	prom_family(&b, "miffy_exchanges_total", "counter", "Finished exchanges by outcome.");
	for (int o = 0; o < OUTCOME_COUNT; o++)
		prom_labeled(&b, "miffy_exchanges_total", "outcome", outcome_name((enum outcome)o),
			     stats.outcomes[o]);
	prom_family(&b, "miffy_exchanges_skipped_total", "counter", "Skipped exchanges by reason.");
	for (int r = 1; r < SKIP_REASON_COUNT; r++)
		prom_labeled(&b, "miffy_exchanges_skipped_total", "reason",
			     skip_reason_name((enum skip_reason)r), stats.skips[r]);
	prom_family(&b, "miffy_anomalies_total", "counter",
		    "SPOE messages that could not belong to an exchange, by kind.");
	for (int a = 0; a < ANOMALY_COUNT; a++)
		prom_labeled(&b, "miffy_anomalies_total", "kind", anomaly_name((enum anomaly)a),
			     stats.anomalies[a]);
	metrics_endpoints(&b, &st.all, NULL);
	metrics_endpoint_shares(&b, &all, &none, 1);
	metrics_verdicts(&b, &all, &none, 1);
	metrics_candidates(&b);
	prom_u64(&b, "miffy_exchanges_inflight", "gauge", "Exchanges in the table now.", stats.exchanges_inflight);

	/* replay */
	prom_family(&b, "miffy_replays_started_total", "counter", "Replays started, by role.");
	for (int r = 0; r < ROLE_COUNT; r++)
		prom_labeled(&b, "miffy_replays_started_total", "role", role_name((enum replay_role)r),
			     stats.replays_started[r]);
	prom_u64(&b, "miffy_replays_inflight", "gauge", "Replays in flight now.", stats.replays_inflight);
	prom_family(&b, "miffy_replay_limit", "gauge",
		    "Replay limits in force: concurrent (replays in flight), connections (per target), "
		    "rps (exchanges per second to the candidate, 0: no cap).");
	prom_labeled(&b, "miffy_replay_limit", "limit", "concurrent", stats.limit_concurrent);
	prom_labeled(&b, "miffy_replay_limit", "limit", "connections", stats.limit_connections);
	prom_labeled(&b, "miffy_replay_limit", "limit", "rps", stats.limit_rps);
	metrics_errors(&b);
	prom_family(&b, "miffy_latency_seconds", "histogram",
		    "Response time by source: the reference (miffy-req to miffy-res), and the successful "
		    "candidate and secondary replays.");
	for (int s = 0; s < LAT_SOURCE_COUNT; s++) {
		char labels[64];

		snprintf(labels, sizeof(labels), "source=\"%s\"", lat_source_names[s]);
		hist_render(&b, "miffy_latency_seconds", labels, &st.latency[s]);
	}

	prom_u64s(&b, compare_publish, NAMED_COUNT(compare_publish));
	if (st.samples) {
		struct samples_counts sc;

		samples_counts(st.samples, &sc);
		prom_u64(&b, "miffy_samples_taken_total", "counter",
			 "Differing exchanges kept for the dashboard.", sc.taken);
		prom_u64(&b, "miffy_samples_too_large_total", "counter",
			 "Differing exchanges not kept: over samples_endpoint_bytes even with bodies cut.",
			 sc.too_large);
		prom_family(&b, "miffy_samples_evicted_total", "counter",
			    "Samples dropped to make room, by the bound that required it.");
		for (int r = 0; r < SAMPLES_EVICT_COUNT; r++)
			prom_labeled(&b, "miffy_samples_evicted_total", "reason",
				     samples_evict_name((enum samples_evict)r), sc.evicted[r]);
		prom_u64(&b, "miffy_samples_stored", "gauge", "Samples kept now.", sc.stored);
		prom_u64(&b, "miffy_samples_bytes", "gauge", "Message bytes the samples hold now.", sc.bytes);
	}
	metrics_fingerprints(&b);
	prom_u64s(&b, logged, NAMED_COUNT(logged));
	if (st.extra_metrics)
		st.extra_metrics(&b, st.extra_ctx);
	return buf_take(&b, len);
}

/* ---- /stats ------------------------------------------------------------ */

/* The document is written as text, not built with cJSON: at the caps (100
 * endpoints x 100 fields) cJSON's number printing alone takes tens of
 * milliseconds, time the loop owes HAProxy. */

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0;
}

static void key_u64(struct jsonw *w, const char *key, uint64_t v)
{
	jsonw_keyc(w, key);
	jsonw_uint(w, v);
}

struct named_u64 {
	const char *key;
	uint64_t v;
};

/* The members `"key":v,...` of n counters. */
static void key_u64s(struct jsonw *w, const struct named_u64 *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		key_u64(w, c[i].key, c[i].v);
}

/* `"name":{"key":v,...}`. */
static void counters_text(struct jsonw *w, const char *name, const struct named_u64 *c, size_t n)
{
	jsonw_keyc(w, name);
	jsonw_open(w, '{');
	key_u64s(w, c, n);
	jsonw_close(w, '}');
}

/* Milliseconds, seconds and percentages: three decimals, always. */
static void key_3f(struct jsonw *w, const char *key, double v)
{
	jsonw_keyc(w, key);
	jsonw_fixed(w, v, 3);
}

static void latency_text(struct jsonw *w, const struct pct_hist *h)
{
	jsonw_open(w, '{');
	key_u64(w, "count", h->count);
	key_3f(w, "p50", pct_quantile(h, 0.50));
	key_3f(w, "p90", pct_quantile(h, 0.90));
	key_3f(w, "p99", pct_quantile(h, 0.99));
	key_3f(w, "max", h->max_ms);
	jsonw_close(w, '}');
}

/* A ratio, or null when the reference's quantile is 0. */
static void key_ratio(struct jsonw *w, const char *key, double v)
{
	jsonw_keyc(w, key);
	if (v > 0)
		jsonw_fixed(w, v, 3);
	else
		jsonw_null(w);
}

/* "latency_verdict": the candidate's p50/p99 against the reference's. */
static void latency_verdict_text(struct jsonw *w, const struct endpoint_stats *e)
{
	struct latency_judgement j;

	endpoint_latency(e, &j);
	jsonw_keyc(w, "latency_verdict");
	jsonw_open(w, '{');
	jsonw_keyc(w, "verdict");
	jsonw_cstring(w, latency_verdict_name(j.verdict));
	for (int s = LAT_REFERENCE; s <= LAT_CANDIDATE; s++) {
		jsonw_keyc(w, lat_source_names[s]);
		jsonw_open(w, '{');
		key_u64(w, "count", e->latency[s].count);
		key_3f(w, "p50", pct_quantile(&e->latency[s], 0.50));
		key_3f(w, "p99", pct_quantile(&e->latency[s], 0.99));
		jsonw_close(w, '}');
	}
	jsonw_keyc(w, "ratio");
	jsonw_open(w, '{');
	key_ratio(w, "p50", j.ratio_p50);
	key_ratio(w, "p99", j.ratio_p99);
	jsonw_close(w, '}');
	jsonw_keyc(w, "slower");
	jsonw_open(w, '{');
	jsonw_keyc(w, "p50");
	jsonw_bool(w, j.slower_p50);
	jsonw_keyc(w, "p99");
	jsonw_bool(w, j.slower_p99);
	jsonw_close(w, '}');
	jsonw_close(w, '}');
}

/* "minutes": the last hour oldest first, one array per count. */
static void minutes_text(struct jsonw *w, const struct minutes *m)
{
	static const char *const names[] = { "compared", "different", "noise", "candidate_error" };
	double now = ev_time();
	struct minute_bucket all[MINUTES_KEPT];
	char t[48];

	for (unsigned i = 0; i < MINUTES_KEPT; i++)
		all[i] = minutes_at(m, now, MINUTES_KEPT - 1 - i);
	jsonw_keyc(w, "minutes");
	jsonw_open(w, '{');
	log_stamp((double)all[0].minute * 60.0, t, sizeof(t));
	jsonw_keyc(w, "start");
	jsonw_cstring(w, t);
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		jsonw_keyc(w, names[k]);
		jsonw_open(w, '[');
		for (unsigned i = 0; i < MINUTES_KEPT; i++) {
			const uint32_t v[] = { all[i].compared, all[i].different, all[i].noise,
					       all[i].candidate_error };

			jsonw_uint(w, v[k]);
		}
		jsonw_close(w, ']');
	}
	jsonw_close(w, '}');
}

static bool endpoint_shown(const struct view *v, size_t i)
{
	const struct endpoint_stats *e = &v->endpoints[i];
	uint64_t any = 0;

	if (!e->name || (i >= v->nendpoints && i != STATS_MAX_ENDPOINTS))
		return false;
	if (i < STATS_MAX_ENDPOINTS)
		return true;
	for (int k = 0; k < OUTCOME_COUNT; k++)
		any |= e->outcomes[k];
	return any != 0;
}

/* Endpoint e of view v; candidate: the view's candidate, NULL for the sum. */
static void endpoint_text(struct jsonw *w, const struct view *v, const struct endpoint_stats *e,
			  const char *candidate)
{
	uint64_t total = 0, compared;

	for (int i = 0; i < OUTCOME_COUNT; i++)
		total += e->outcomes[i];
	compared = e->outcomes[OUTCOME_EQUAL] + e->outcomes[OUTCOME_DIFFERENT] + e->outcomes[OUTCOME_NOISE];
	jsonw_open(w, '{');
	key_u64(w, "total", total);
	key_u64(w, "compared", compared);
	key_3f(w, "compared_pct", pct(compared, total));
	jsonw_keyc(w, "skipped");
	jsonw_open(w, '{');
	for (int i = SKIP_NONE + 1; i < SKIP_REASON_COUNT; i++)
		if (e->skips[i])
			key_u64(w, skip_reason_name((enum skip_reason)i), e->skips[i]);
	jsonw_close(w, '}');
	key_u64(w, "different", e->outcomes[OUTCOME_DIFFERENT]);
	key_3f(w, "different_pct", pct(e->outcomes[OUTCOME_DIFFERENT], compared));
	key_u64(w, "noise", e->outcomes[OUTCOME_NOISE]);
	key_3f(w, "noise_pct", pct(e->outcomes[OUTCOME_NOISE], compared));
	jsonw_keyc(w, "outcomes");
	jsonw_open(w, '{');
	for (int i = 0; i < OUTCOME_COUNT; i++)
		key_u64(w, outcome_name((enum outcome)i), e->outcomes[i]);
	jsonw_close(w, '}');
	jsonw_keyc(w, "latency_ms");
	jsonw_open(w, '{');
	for (int s = 0; s < LAT_SOURCE_COUNT; s++) {
		if (s == LAT_SECONDARY && !e->latency[s].count)
			continue;
		jsonw_keyc(w, lat_source_names[s]);
		latency_text(w, &e->latency[s]);
	}
	jsonw_close(w, '}');
	latency_verdict_text(w, e);
	jsonw_keyc(w, "fields");
	jsonw_open(w, '{');
	for (size_t i = 0; e->fields && i <= STATS_MAX_FIELDS; i++) {
		const struct field_count *f = &e->fields[i];

		if ((i >= e->nfields && i != STATS_MAX_FIELDS) || !f->key || !f->raw)
			continue;
		jsonw_keyc(w, f->key);
		jsonw_open(w, '{');
		key_u64(w, "raw", f->raw);
		key_u64(w, "noise", f->noise);
		jsonw_close(w, '}');
	}
	jsonw_close(w, '}');
	if (st.noise && e != &v->endpoints[STATS_MAX_ENDPOINTS]) {
		/* With several candidates, each has noise tables of its own;
		 * nothing unless a secondary is configured. */
		char *key = candidate ? noise_candidate_key(candidate, e->name) : NULL;

		if (!candidate || key)
			noise_stats_write(st.noise, key ? key : e->name, "noise_fields", w);
		free(key);
	}
	minutes_text(w, &e->minutes);
	jsonw_keyc(w, "last_differences");
	jsonw_open(w, '[');
	/* Newest first. */
	for (unsigned k = 0; k < STATS_LAST_IDS; k++) {
		const struct last_diff *l = &e->last[(e->last_next + STATS_LAST_IDS - 1 - k) % STATS_LAST_IDS];
		char t[48];

		if (!l->id)
			break;
		log_stamp(l->time, t, sizeof(t));
		jsonw_open(w, '{');
		jsonw_keyc(w, "id");
		jsonw_cstring(w, l->id);
		jsonw_keyc(w, "outcome");
		jsonw_cstring(w, outcome_name(l->outcome));
		jsonw_keyc(w, "time");
		jsonw_cstring(w, t);
		jsonw_close(w, '}');
	}
	jsonw_close(w, ']');
	jsonw_close(w, '}');
}

/* "fingerprints": the table's counters, then its entries by endpoint. */
struct fp_json {
	struct jsonw *w;
	const char *endpoint;        /* of the array open now, or NULL */
};

static void fp_json_entry(const struct fingerprint_view *v, void *arg)
{
	struct fp_json *f = arg;
	struct jsonw *w = f->w;
	char t[64];

	if (!f->endpoint || strcmp(f->endpoint, v->endpoint) != 0) {
		if (f->endpoint)
			jsonw_close(w, ']');
		jsonw_keyc(w, v->endpoint);
		jsonw_open(w, '[');
		f->endpoint = v->endpoint;
	}
	jsonw_open(w, '{');
	jsonw_keyc(w, "fingerprint");
	jsonw_cstring(w, v->fingerprint);
	if (v->candidate) {
		/* several candidates: whose differences these are */
		jsonw_keyc(w, "candidate");
		jsonw_cstring(w, v->candidate);
	}
	key_u64(w, "count", v->count);
	key_u64(w, "suppressed", v->suppressed);
	log_stamp(v->first_seen, t, sizeof(t));
	jsonw_keyc(w, "first_seen");
	jsonw_cstring(w, t);
	log_stamp(v->last_seen, t, sizeof(t));
	jsonw_keyc(w, "last_seen");
	jsonw_cstring(w, t);
	jsonw_keyc(w, "sample_id");
	if (v->sample_id)
		jsonw_cstring(w, v->sample_id);
	else
		jsonw_null(w);
	jsonw_close(w, '}');
}

static void fingerprints_text(struct jsonw *w)
{
	struct fingerprint_counts c;
	struct fp_json f = { .w = w };

	if (!st.fingerprints)
		return;
	fingerprints_counts(st.fingerprints, &c);
	jsonw_keyc(w, "fingerprints");
	jsonw_open(w, '{');
	key_u64(w, "stored", c.entries);
	key_u64(w, "evicted", c.evicted);
	key_u64(w, "suppressed", c.suppressed);
	jsonw_keyc(w, "endpoints");
	jsonw_open(w, '{');
	/* The endpoint names are borrowed for the callbacks' duration only:
	 * f.endpoint is compared within one fingerprints_each call. */
	fingerprints_each(st.fingerprints, fp_json_entry, &f);
	if (f.endpoint)
		jsonw_close(w, ']');
	jsonw_close(w, '}');
	jsonw_close(w, '}');
}

/* `"endpoints":{...}` of view v (candidate: see endpoint_text). */
static void endpoints_text(struct jsonw *w, const struct view *v, const char *candidate)
{
	jsonw_keyc(w, "endpoints");
	jsonw_open(w, '{');
	for (size_t i = 0; v->endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
		if (!endpoint_shown(v, i))
			continue;
		jsonw_keyc(w, v->endpoints[i].name);
		endpoint_text(w, v, &v->endpoints[i], candidate);
	}
	jsonw_close(w, '}');
}

char *stats_json_text(size_t *len)
{
	const struct named_u64 spop[] = {
		{ "connections_accepted", stats.conn_accepted }, { "connections_active", stats.conn_active },
		{ "connections_refused", stats.conn_refused }, { "healthchecks", stats.conn_healthchecks },
		{ "frames_in", stats.frames_in }, { "frames_out", stats.frames_out },
		{ "notify", stats.notify_frames }, { "ack", stats.ack_frames },
	}, spop_more[] = {
		{ "messages", stats.messages }, { "disconnects_received", stats.disconnect_received },
		{ "idle_timeouts", stats.idle_timeouts },
	}, exchanges[] = {
		{ "started", stats.exchanges_started }, { "inflight", stats.exchanges_inflight },
	}, compare[] = {
		{ "json_depth_exceeded", stats.json_depth_exceeded },
		{ "compare_budget_exceeded", stats.compare_budget_exceeded },
		{ "compare_key_fallback", stats.compare_key_fallback },
		{ "decompress_failed", stats.decompress_failed },
	}, publish[] = {
		{ "published", stats.published }, { "messages_cut", stats.messages_cut },
		{ "sink_errors", stats.sink_errors }, { "kafka_delivered", stats.kafka_delivered },
		{ "kafka_failed", stats.kafka_failed }, { "kafka_dropped", stats.kafka_dropped },
		{ "kafka_queue_depth", stats.kafka_queue_depth },
	}, logged[] = {
		{ "lines_suppressed", log_suppressed_total() }, { "lines_dropped", log_dropped_total() },
	};
	struct jsonw w;
	char slot[16];
	uint64_t under = 0;

	jsonw_init(&w, STATS_TEXT_MAX);
	jsonw_open(&w, '{');
	key_3f(&w, "uptime_seconds", uptime_seconds());
	if (st.extra_json)
		st.extra_json(&w, st.extra_ctx);
	jsonw_keyc(&w, "spop");
	jsonw_open(&w, '{');
	key_u64s(&w, spop, NAMED_COUNT(spop));
	jsonw_keyc(&w, "ack_latency");
	/* 1 ms: the budget a healthy agent keeps (README, Limits). */
	for (size_t i = 0; i < STATS_HIST_BOUNDS && stats_ack_bounds[i] <= 0.001; i++)
		under += st.ack.buckets[i];
	jsonw_open(&w, '{');
	key_u64(&w, "count", st.ack.count);
	key_u64(&w, "within_1ms", under);
	key_3f(&w, "max_ms", st.ack_max * 1000.0);
	jsonw_close(&w, '}');
	key_u64s(&w, spop_more, NAMED_COUNT(spop_more));
	jsonw_keyc(&w, "disconnects_sent");
	jsonw_open(&w, '{');
	for (size_t i = 0; i < STATS_DISCONNECT_SLOTS; i++)
		if (stats.disconnect_sent[i])
			key_u64(&w, disconnect_label(i, slot, sizeof(slot)), stats.disconnect_sent[i]);
	jsonw_close(&w, '}');
	jsonw_close(&w, '}');
	jsonw_keyc(&w, "outcomes");
	jsonw_open(&w, '{');
	for (int i = 0; i < OUTCOME_COUNT; i++)
		key_u64(&w, outcome_name((enum outcome)i), stats.outcomes[i]);
	jsonw_close(&w, '}');
	jsonw_keyc(&w, "skipped");
	jsonw_open(&w, '{');
	for (int i = 1; i < SKIP_REASON_COUNT; i++)
		key_u64(&w, skip_reason_name((enum skip_reason)i), stats.skips[i]);
	jsonw_close(&w, '}');
	jsonw_keyc(&w, "anomalies");
	jsonw_open(&w, '{');
	for (int i = 0; i < ANOMALY_COUNT; i++)
		key_u64(&w, anomaly_name((enum anomaly)i), stats.anomalies[i]);
	jsonw_close(&w, '}');
	counters_text(&w, "exchanges", exchanges, NAMED_COUNT(exchanges));
	jsonw_keyc(&w, "replays");
	jsonw_open(&w, '{');
	for (int r = 0; r < ROLE_COUNT; r++) {
		jsonw_keyc(&w, role_name((enum replay_role)r));
		jsonw_open(&w, '{');
		key_u64(&w, "started", stats.replays_started[r]);
		jsonw_keyc(&w, "errors");
		jsonw_open(&w, '{');
		for (int e = REPLAY_OK + 1; e < REPLAY_ERROR_COUNT; e++)
			if (st.errors[r][e])
				key_u64(&w, replay_error_name((enum replay_error)e), st.errors[r][e]);
		jsonw_close(&w, '}');
		jsonw_close(&w, '}');
	}
	key_u64(&w, "inflight", stats.replays_inflight);
	jsonw_keyc(&w, "limits");
	jsonw_open(&w, '{');
	key_u64(&w, "max_concurrent", stats.limit_concurrent);
	key_u64(&w, "max_host_connections", stats.limit_connections);
	key_u64(&w, "max_candidate_rps", stats.limit_rps);
	jsonw_close(&w, '}');
	jsonw_close(&w, '}');
	counters_text(&w, "compare", compare, NAMED_COUNT(compare));
	counters_text(&w, "publish", publish, NAMED_COUNT(publish));
	counters_text(&w, "log", logged, NAMED_COUNT(logged));
	jsonw_keyc(&w, "latency_rule");
	jsonw_open(&w, '{');
	key_3f(&w, "tolerance", latency_rule.tolerance);
	key_3f(&w, "floor_ms", latency_rule.floor_ms);
	key_u64(&w, "min_count", latency_rule.min_count);
	jsonw_close(&w, '}');
	jsonw_keyc(&w, "noise_confidence");
	jsonw_open(&w, '{');
	key_3f(&w, "level", VERDICT_CONFIDENCE);
	key_u64(&w, "min_exchanges", VERDICT_MIN_EXCHANGES);
	jsonw_close(&w, '}');
	if (st.samples) {
		struct samples_counts sc;

		samples_counts(st.samples, &sc);
		{
			const struct named_u64 samples[] = {
				{ "taken", sc.taken }, { "stored", sc.stored },
				{ "bytes", sc.bytes }, { "too_large", sc.too_large },
			};

			jsonw_keyc(&w, "samples");
			jsonw_open(&w, '{');
			key_u64s(&w, samples, NAMED_COUNT(samples));
		}
		jsonw_keyc(&w, "evicted");
		jsonw_open(&w, '{');
		for (int r = 0; r < SAMPLES_EVICT_COUNT; r++)
			key_u64(&w, samples_evict_name((enum samples_evict)r), sc.evicted[r]);
		jsonw_close(&w, '}');
		jsonw_close(&w, '}');
	}
	fingerprints_text(&w);
	endpoints_text(&w, &st.all, NULL);
	if (st.cands) {
		jsonw_keyc(&w, "candidates");
		jsonw_open(&w, '{');
		for (unsigned k = 0; k < st.ncands; k++) {
			const struct candidate_stats *c = &st.cands[k];

			jsonw_keyc(&w, c->name);
			jsonw_open(&w, '{');
			jsonw_keyc(&w, "outcomes");
			jsonw_open(&w, '{');
			for (int i = 0; i < OUTCOME_COUNT; i++)
				key_u64(&w, outcome_name((enum outcome)i), c->outcomes[i]);
			jsonw_close(&w, '}');
			jsonw_keyc(&w, "errors");
			jsonw_open(&w, '{');
			for (int e = REPLAY_OK + 1; e < REPLAY_ERROR_COUNT; e++)
				if (c->errors[e])
					key_u64(&w, replay_error_name((enum replay_error)e), c->errors[e]);
			jsonw_close(&w, '}');
			endpoints_text(&w, &c->v, c->name);
			jsonw_close(&w, '}');
		}
		jsonw_close(&w, '}');
	}
	jsonw_close(&w, '}');
	buf_add(&w.b, "\n", 1);
	return buf_take(&w.b, len);
}

cJSON *stats_json(void)
{
	char *text = stats_json_text(NULL);
	cJSON *doc = text ? cJSON_Parse(text) : NULL;

	free(text);
	return doc;
}

/* ---- snapshots (snapshot.h: what the fleet report merges) --------------- */

_Static_assert(PCT_BUCKETS == SNAPSHOT_PCT_BUCKETS, "snapshot.h holds stats' percentile buckets");
_Static_assert(STATS_HIST_BOUNDS + 1 == SNAPSHOT_HIST_BUCKETS, "snapshot.h holds stats' histograms");
_Static_assert(LAT_SOURCE_COUNT == SNAPSHOT_LAT_COUNT, "snapshot.h holds stats' latency sources");

struct counter_ref {
	char name[64];
	uint64_t *v;
};

#define COUNTER_REFS_MAX 256

/* Every cumulative counter a snapshot carries, by its snapshot name
 * (gauges are not: they are the present, not a history). A counter added
 * to struct stats that should survive restarts and add up in the fleet
 * report goes here too. */
static size_t counter_refs(struct counter_ref *out)
{
	static const struct { const char *name; size_t off; } plain[] = {
#define PLAIN(m) { #m, offsetof(struct stats, m) }
		PLAIN(conn_accepted), PLAIN(conn_refused), PLAIN(conn_healthchecks), PLAIN(frames_in),
		PLAIN(frames_out), PLAIN(notify_frames), PLAIN(ack_frames), PLAIN(messages),
		PLAIN(disconnect_received), PLAIN(idle_timeouts), PLAIN(exchanges_started),
		PLAIN(json_depth_exceeded), PLAIN(compare_budget_exceeded), PLAIN(compare_key_fallback),
		PLAIN(decompress_failed),
		PLAIN(published), PLAIN(kafka_delivered), PLAIN(kafka_failed), PLAIN(kafka_dropped),
		PLAIN(sink_errors), PLAIN(messages_cut),
#undef PLAIN
	};
	size_t n = 0;

#define REF(ptr, ...) do { \
		if (n < COUNTER_REFS_MAX) { \
			snprintf(out[n].name, sizeof(out[n].name), __VA_ARGS__); \
			out[n++].v = (ptr); \
		} \
	} while (0)
	for (size_t i = 0; i < NAMED_COUNT(plain); i++)
		REF((uint64_t *)(void *)((char *)&stats + plain[i].off), "%s", plain[i].name);
	for (size_t i = 0; i < STATS_DISCONNECT_SLOTS; i++)
		REF(&stats.disconnect_sent[i], "disconnect_sent.%zu", i);
	for (int o = 0; o < OUTCOME_COUNT; o++)
		REF(&stats.outcomes[o], "outcomes.%s", outcome_name((enum outcome)o));
	for (int r = 1; r < SKIP_REASON_COUNT; r++)
		REF(&stats.skips[r], "skipped.%s", skip_reason_name((enum skip_reason)r));
	for (int a = 0; a < ANOMALY_COUNT; a++)
		REF(&stats.anomalies[a], "anomalies.%s", anomaly_name((enum anomaly)a));
	for (int r = 0; r < ROLE_COUNT; r++) {
		REF(&stats.replays_started[r], "replays_started.%s", role_name((enum replay_role)r));
		for (int e = REPLAY_OK + 1; e < REPLAY_ERROR_COUNT; e++)
			REF(&st.errors[r][e], "replay_errors.%s.%s", role_name((enum replay_role)r),
			    replay_error_name((enum replay_error)e));
	}
#undef REF
	return n;
}

static void hist_export(struct snapshot_hist *out, const struct stats_hist *h, double max)
{
	memcpy(out->buckets, h->buckets, sizeof(out->buckets));
	out->sum = h->sum;
	out->max = max;
}

static void hist_import(struct stats_hist *h, const struct snapshot_hist *in)
{
	for (size_t b = 0; b < SNAPSHOT_HIST_BUCKETS; b++) {
		h->buckets[b] += in->buckets[b];
		h->count += in->buckets[b];
	}
	h->sum += in->sum;
}

int stats_export(struct snapshot *s)
{
	struct counter_ref refs[COUNTER_REFS_MAX];
	size_t n = counter_refs(refs);

	for (size_t i = 0; i < n; i++)
		if (snapshot_add_counter(s, refs[i].name, *refs[i].v) < 0)
			return -1;
	for (int h = 0; h < LAT_SOURCE_COUNT; h++)
		hist_export(&s->hists[h], &st.latency[h], 0);
	hist_export(&s->hists[SNAPSHOT_HIST_ACK], &st.ack, st.ack_max);
	for (size_t i = 0; st.all.endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
		const struct endpoint_stats *e = &st.all.endpoints[i];
		struct snapshot_endpoint *out;

		if (!endpoint_shown(&st.all, i))
			continue;
		out = snapshot_add_endpoint(s, e->name);
		if (!out)
			return -1;
		memcpy(out->outcomes, e->outcomes, sizeof(out->outcomes));
		memcpy(out->skips, e->skips, sizeof(out->skips));
		for (int l = 0; l < LAT_SOURCE_COUNT; l++) {
			memcpy(out->latency[l].counts, e->latency[l].counts, sizeof(out->latency[l].counts));
			out->latency[l].max_ms = e->latency[l].max_ms;
		}
		for (size_t k = 0; e->fields && k <= STATS_MAX_FIELDS; k++) {
			const struct field_count *f = &e->fields[k];

			if ((k >= e->nfields && k != STATS_MAX_FIELDS) || !f->key || !f->raw)
				continue;
			if (snapshot_add_field(out, f->key, f->raw, f->noise) < 0)
				return -1;
		}
		out->minutes = e->minutes;
	}
	return snapshot_sort(s);
}

void stats_import(const struct snapshot *s)
{
	struct counter_ref refs[COUNTER_REFS_MAX];
	size_t n = counter_refs(refs);

	for (size_t i = 0; i < n; i++) {
		const struct snapshot_counter *c = snapshot_counter(s, refs[i].name);

		if (c)
			*refs[i].v += c->v;
	}
	for (int h = 0; h < LAT_SOURCE_COUNT; h++)
		hist_import(&st.latency[h], &s->hists[h]);
	hist_import(&st.ack, &s->hists[SNAPSHOT_HIST_ACK]);
	if (s->hists[SNAPSHOT_HIST_ACK].max > st.ack_max)
		st.ack_max = s->hists[SNAPSHOT_HIST_ACK].max;
	for (size_t i = 0; i < s->nendpoints; i++) {
		const struct snapshot_endpoint *in = &s->endpoints[i];
		struct endpoint_stats *e = endpoint_get(&st.all, in->name);

		if (!e)
			return;
		for (int o = 0; o < OUTCOME_COUNT; o++)
			e->outcomes[o] += in->outcomes[o];
		for (int r = 0; r < SKIP_REASON_COUNT; r++)
			e->skips[r] += in->skips[r];
		for (int l = 0; l < LAT_SOURCE_COUNT; l++) {
			for (size_t b = 0; b < PCT_BUCKETS; b++) {
				e->latency[l].counts[b] += in->latency[l].counts[b];
				e->latency[l].count += in->latency[l].counts[b];
			}
			if (in->latency[l].max_ms > e->latency[l].max_ms)
				e->latency[l].max_ms = in->latency[l].max_ms;
		}
		for (size_t k = 0; k < in->nfields; k++) {
			struct field_count *f = field_get(e, in->fields[k].key);

			if (!f)
				continue;
			f->raw += in->fields[k].raw;
			f->noise += in->fields[k].noise;
		}
		minutes_merge(&e->minutes, &in->minutes);
	}
}
