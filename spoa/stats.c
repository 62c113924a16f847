#include "stats.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ev.h>

#include "compare.h"
#include "hash.h"
#include "log.h"
#include "minutes.h"
#include "noise.h"
#include "samples.h"

struct stats stats;

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
#define STATS_MAX_ERROR_REASONS 16

/* A rendering larger than this is a bug (the tables are capped well below). */
#define SBUF_MAX (64u << 20)

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
	struct pct_hist latency[LAT_SOURCE_COUNT];
	struct field_count *fields;   /* STATS_MAX_FIELDS + 1 slots, the last is "other" */
	size_t nfields;
	uint8_t *field_index;         /* INDEX_SLOTS */
	struct last_diff last[STATS_LAST_IDS];  /* ring */
	unsigned last_next;
	struct minutes minutes;       /* the last hour, per minute */
};

struct error_reason {
	char *reason;
	uint64_t count;
};

static struct {
	struct endpoint_stats *endpoints;  /* STATS_MAX_ENDPOINTS + 1 slots, the last is "other" */
	size_t nendpoints;
	uint8_t endpoint_index[INDEX_SLOTS];
	uint64_t serial;
	struct stats_hist latency[LAT_SOURCE_COUNT];
	struct stats_hist ack;                   /* bounds stats_ack_bounds */
	double ack_max;                          /* seconds */
	struct error_reason errors[ROLE_COUNT][STATS_MAX_ERROR_REASONS + 1];
	const struct noise *noise;
	struct samples *samples;
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

/* ---- growable text with a hard maximum -------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void sbuf_grow(struct sbuf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : 4096;
	char *p;

	while (cap < need)
		cap *= 2;
	if (cap > SBUF_MAX) {
		b->failed = true;
		return;
	}
	p = realloc(b->p, cap);
	if (!p) {
		b->failed = true;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap)
		sbuf_grow(b, b->len + n + 1);
	if (b->failed)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sbuf_puts(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (int pass = 0; pass < 2; pass++) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->cap ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		sbuf_grow(b, b->len + (size_t)n + 1);
		if (b->failed)
			return;
	}
	b->failed = true;
}

/* Takes the text out of b; NULL when anything failed. */
static char *sbuf_take(struct sbuf *b, size_t *len)
{
	char *p;

	if (!b->failed && !b->p)
		sbuf_add(b, "", 0);
	if (b->failed) {
		free(b->p);
		*b = (struct sbuf){ 0 };
		return NULL;
	}
	p = b->p;
	if (len)
		*len = b->len;
	*b = (struct sbuf){ 0 };
	return p;
}

/* ---- Prometheus text helpers ------------------------------------------ */

static size_t utf8_len(const unsigned char *s);

/* Label values must be UTF-8: bytes that are not (a path is whatever the
 * client sent) become U+FFFD, or one bad request would break the scrape. */
static void prom_escape_to(struct sbuf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		size_t n = utf8_len(s);

		if (n == 0) {
			sbuf_add(b, "\xef\xbf\xbd", 3);
			s++;
			continue;
		}
		switch (*s) {
		case '\\': sbuf_add(b, "\\\\", 2); break;
		case '"': sbuf_add(b, "\\\"", 2); break;
		case '\n': sbuf_add(b, "\\n", 2); break;
		default: sbuf_add(b, (const char *)s, n); break;
		}
		s += n;
	}
}

char *stats_prom_escape(const char *s)
{
	struct sbuf b = { 0 };

	prom_escape_to(&b, s);
	return sbuf_take(&b, NULL);
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

static void hist_render(struct sbuf *b, const char *name, const char *labels, const struct stats_hist *h)
{
	const char *sep = labels[0] ? "," : "";
	const double *bounds = hist_bounds(h);
	uint64_t cum = 0;

	for (size_t i = 0; i < STATS_HIST_BOUNDS; i++) {
		cum += h->buckets[i];
		sbuf_printf(b, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
			    bounds[i], cum);
	}
	cum += h->buckets[STATS_HIST_BOUNDS];
	sbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cum);
	if (labels[0]) {
		sbuf_printf(b, "%s_sum{%s} %.9g\n", name, labels, h->sum);
		sbuf_printf(b, "%s_count{%s} %" PRIu64 "\n", name, labels, cum);
	} else {
		sbuf_printf(b, "%s_sum %.9g\n", name, h->sum);
		sbuf_printf(b, "%s_count %" PRIu64 "\n", name, cum);
	}
}

char *stats_hist_text(const char *name, const char *labels, const struct stats_hist *h)
{
	struct sbuf b = { 0 };

	hist_render(&b, name, labels ? labels : "", h);
	return sbuf_take(&b, NULL);
}

static void prom_family(struct sbuf *b, const char *name, const char *type, const char *help)
{
	sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_u64(struct sbuf *b, const char *name, const char *type, const char *help, uint64_t v)
{
	prom_family(b, name, type, help);
	sbuf_printf(b, "%s %" PRIu64 "\n", name, v);
}

/* One sample with a single label whose value needs escaping. */
static void prom_labeled(struct sbuf *b, const char *name, const char *key, const char *value, uint64_t v)
{
	sbuf_printf(b, "%s{%s=\"", name, key);
	prom_escape_to(b, value);
	sbuf_printf(b, "\"} %" PRIu64 "\n", v);
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
	(void)ctx;
	return st.endpoints[i].name;
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

static bool ensure_tables(void)
{
	if (st.endpoints)
		return true;
	st.endpoints = calloc(STATS_MAX_ENDPOINTS + 1, sizeof(*st.endpoints));
	return st.endpoints != NULL;
}

/* The entry of endpoint name, created on first sight; "other" past the cap
 * or when memory runs out. NULL only when the table itself is missing. */
static struct endpoint_stats *endpoint_get(const char *name)
{
	struct endpoint_stats *other;
	uint8_t *slot;

	if (!ensure_tables())
		return NULL;
	other = &st.endpoints[STATS_MAX_ENDPOINTS];
	if (!other->name)
		other->name = strdup(STATS_OTHER);
	if (!name)
		return other;
	slot = index_slot(st.endpoint_index, name, endpoint_name_at, NULL);
	if (*slot)
		return &st.endpoints[*slot - 1];
	if (st.nendpoints < STATS_MAX_ENDPOINTS && strcmp(name, STATS_OTHER) != 0) {
		struct endpoint_stats *e = &st.endpoints[st.nendpoints];

		e->name = strdup(name);
		if (e->name) {
			*slot = (uint8_t)++st.nendpoints;
			return e;
		}
	}
	return other;
}

void stats_field_key(const struct difference *d, char *key, size_t len)
{
	switch (d->where) {
	case DIFF_STATUS:
		snprintf(key, len, "status");
		break;
	case DIFF_HEADER:
		snprintf(key, len, "header:%s", d->path ? d->path : "");
		break;
	default:
		if (d->path && d->path[0])
			snprintf(key, len, "body:%s", d->path);
		else
			snprintf(key, len, "body");
		break;
	}
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

		stats_field_key(d, key, sizeof(key));
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

void stats_exchange_done(const struct exchange *x, enum outcome o, const struct diff_list *diffs)
{
	struct endpoint_stats *e;

	stats.outcomes[o]++;
	if (o == OUTCOME_SKIPPED)
		stats.skips[x->skip]++;
	e = endpoint_get(x->endpoint);
	if (e) {
		e->outcomes[o]++;
		minutes_add(&e->minutes, ev_time(), o);
	}
	if (x->have_reference) {
		stats_hist_observe(&st.latency[LAT_REFERENCE], x->reference.latency_ms / 1000.0);
		if (e)
			pct_observe(&e->latency[LAT_REFERENCE], x->reference.latency_ms);
	}
	for (int r = 0; r < ROLE_COUNT; r++) {
		enum lat_source src = r == ROLE_CANDIDATE ? LAT_CANDIDATE : LAT_SECONDARY;
		const struct http_response *resp = &x->replies[r];

		/* A failed replay's time says how fast it failed, not how fast
		 * the service answers: errors are counted apart. */
		if (!x->have[r] || resp->error[0])
			continue;
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

void stats_ack_observe(double seconds)
{
	stats_hist_observe(&st.ack, seconds);
	if (seconds > st.ack_max)
		st.ack_max = seconds;
}

void stats_candidate_error(enum replay_role role, const char *reason)
{
	struct error_reason *slots;

	if ((unsigned)role >= ROLE_COUNT)
		return;
	slots = st.errors[role];
	if (!reason || !reason[0])
		reason = "unknown";
	for (size_t i = 0; i < STATS_MAX_ERROR_REASONS; i++) {
		if (!slots[i].reason) {
			slots[i].reason = strdup(reason);
			if (!slots[i].reason)
				break;
		}
		if (strcmp(slots[i].reason, reason) == 0) {
			slots[i].count++;
			return;
		}
	}
	slots[STATS_MAX_ERROR_REASONS].count++;
}

void stats_set_noise(const struct noise *n)
{
	st.noise = n;
}

void stats_set_samples(struct samples *s)
{
	st.samples = s;
}

void stats_free(void)
{
	if (st.endpoints) {
		for (size_t i = 0; i <= STATS_MAX_ENDPOINTS; i++) {
			struct endpoint_stats *e = &st.endpoints[i];

			free(e->name);
			if (e->fields)
				for (size_t k = 0; k <= STATS_MAX_FIELDS; k++)
					free(e->fields[k].key);
			free(e->fields);
			free(e->field_index);
			for (size_t k = 0; k < STATS_LAST_IDS; k++)
				free(e->last[k].id);
		}
		free(st.endpoints);
	}
	for (int r = 0; r < ROLE_COUNT; r++)
		for (size_t i = 0; i < STATS_MAX_ERROR_REASONS; i++)
			free(st.errors[r][i].reason);
	memset(&st, 0, sizeof(st));
	st.ack.bounds = stats_ack_bounds;
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

static void metrics_endpoints(struct sbuf *b)
{
	prom_family(b, "miffy_endpoint_exchanges_total", "counter",
		    "Finished exchanges by endpoint and outcome (endpoints past the first 100 count as \"other\").");
	for (size_t i = 0; st.endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
		const struct endpoint_stats *e = &st.endpoints[i];

		if (i == STATS_MAX_ENDPOINTS && !e->name)
			continue;
		if (i >= st.nendpoints && i != STATS_MAX_ENDPOINTS)
			continue;
		if (i == STATS_MAX_ENDPOINTS) {
			uint64_t any = 0;

			for (int o = 0; o < OUTCOME_COUNT; o++)
				any |= e->outcomes[o];
			if (!any)
				continue;
		}
		for (int o = 0; o < OUTCOME_COUNT; o++) {
			sbuf_puts(b, "miffy_endpoint_exchanges_total{endpoint=\"");
			prom_escape_to(b, e->name ? e->name : STATS_OTHER);
			sbuf_printf(b, "\",outcome=\"%s\"} %" PRIu64 "\n", outcome_name((enum outcome)o),
				    e->outcomes[o]);
		}
	}
}

static void metrics_errors(struct sbuf *b)
{
	prom_family(b, "miffy_candidate_errors_total", "counter",
		    "Failed replays by role (candidate, secondary) and reason.");
	for (int r = 0; r < ROLE_COUNT; r++) {
		const struct error_reason *slots = st.errors[r];

		for (size_t i = 0; i <= STATS_MAX_ERROR_REASONS; i++) {
			const char *reason = i == STATS_MAX_ERROR_REASONS ? STATS_OTHER : slots[i].reason;

			if (!reason || (i == STATS_MAX_ERROR_REASONS && !slots[i].count))
				continue;
			sbuf_printf(b, "miffy_candidate_errors_total{role=\"%s\",reason=\"",
				    role_name((enum replay_role)r));
			prom_escape_to(b, reason);
			sbuf_printf(b, "\"} %" PRIu64 "\n", slots[i].count);
		}
	}
}

char *stats_metrics_text(size_t *len)
{
	struct sbuf b = { 0 };
	char slot[16];

	ensure_tables();
	prom_family(&b, "miffy_build_info", "gauge", "Always 1; the version is a label.");
	sbuf_printf(&b, "miffy_build_info{version=\"%s\"} 1\n", MIFFY_VERSION);
	prom_family(&b, "miffy_uptime_seconds", "gauge", "Seconds since the agent started.");
	sbuf_printf(&b, "miffy_uptime_seconds %.3f\n", uptime_seconds());
	prom_family(&b, "miffy_process_resident_memory_bytes", "gauge", "Resident set size of the agent.");
	sbuf_printf(&b, "miffy_process_resident_memory_bytes %" PRIu64 "\n", rss_bytes());

	/* SPOP */
	prom_u64(&b, "miffy_spop_connections_accepted_total", "counter",
		 "HAProxy connections accepted.", stats.conn_accepted);
	prom_u64(&b, "miffy_spop_connections_refused_total", "counter",
		 "HAProxy connections refused above max_connections.", stats.conn_refused);
	prom_u64(&b, "miffy_spop_connections_active", "gauge",
		 "HAProxy connections open now.", stats.conn_active);
	prom_u64(&b, "miffy_spop_healthchecks_total", "counter",
		 "SPOP health checks answered.", stats.conn_healthchecks);
	prom_u64(&b, "miffy_spop_frames_received_total", "counter", "SPOP frames received.", stats.frames_in);
	prom_u64(&b, "miffy_spop_frames_sent_total", "counter", "SPOP frames sent.", stats.frames_out);
	prom_u64(&b, "miffy_spop_notify_frames_total", "counter", "NOTIFY frames received.", stats.notify_frames);
	prom_u64(&b, "miffy_spop_ack_frames_total", "counter", "ACK frames sent.", stats.ack_frames);
	prom_u64(&b, "miffy_spop_messages_total", "counter", "SPOE messages decoded.", stats.messages);
	prom_family(&b, "miffy_spop_ack_latency_seconds", "histogram",
		    "From a NOTIFY's arrival (kernel receive time) to the write that sent its ACK; "
		    "HAProxy gives up on an ACK after \"timeout processing\".");
	hist_render(&b, "miffy_spop_ack_latency_seconds", "", &st.ack);
	prom_family(&b, "miffy_spop_disconnects_sent_total", "counter",
		    "AGENT-DISCONNECT frames sent, by SPOP status code (\"other\": 15 and above).");
	for (size_t i = 0; i < STATS_DISCONNECT_SLOTS; i++)
		prom_labeled(&b, "miffy_spop_disconnects_sent_total", "status",
			     disconnect_label(i, slot, sizeof(slot)), stats.disconnect_sent[i]);
	prom_u64(&b, "miffy_spop_disconnects_received_total", "counter",
		 "HAPROXY-DISCONNECT frames received.", stats.disconnect_received);
	prom_u64(&b, "miffy_spop_idle_timeouts_total", "counter",
		 "HAProxy connections closed for idleness.", stats.idle_timeouts);

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
	metrics_endpoints(&b);
	prom_u64(&b, "miffy_exchanges_inflight", "gauge", "Exchanges in the table now.", stats.exchanges_inflight);

	/* replay */
	prom_family(&b, "miffy_replays_started_total", "counter", "Replays started, by role.");
	for (int r = 0; r < ROLE_COUNT; r++)
		prom_labeled(&b, "miffy_replays_started_total", "role", role_name((enum replay_role)r),
			     stats.replays_started[r]);
	prom_u64(&b, "miffy_replays_inflight", "gauge", "Replays in flight now.", stats.replays_inflight);
	metrics_errors(&b);
	prom_family(&b, "miffy_latency_seconds", "histogram",
		    "Response time by source: the reference (miffy-req to miffy-res), and the successful "
		    "candidate and secondary replays.");
	for (int s = 0; s < LAT_SOURCE_COUNT; s++) {
		char labels[64];

		snprintf(labels, sizeof(labels), "source=\"%s\"", lat_source_names[s]);
		hist_render(&b, "miffy_latency_seconds", labels, &st.latency[s]);
	}

	/* compare */
	prom_u64(&b, "miffy_json_depth_exceeded_total", "counter",
		 "Bodies nested deeper than max_depth.", stats.json_depth_exceeded);
	prom_u64(&b, "miffy_compare_budget_exceeded_total", "counter",
		 "Comparisons whose reordered-array pairing hit its step budget (reported by index).",
		 stats.compare_budget_exceeded);
	prom_u64(&b, "miffy_decompress_failures_total", "counter",
		 "Bodies whose gzip/deflate decoding failed.", stats.decompress_failed);

	/* publish */
	prom_u64(&b, "miffy_published_total", "counter", "Messages handed to the sink.", stats.published);
	prom_u64(&b, "miffy_messages_cut_total", "counter",
		 "Messages whose bodies were cut to fit max_message.", stats.messages_cut);
	prom_u64(&b, "miffy_sink_errors_total", "counter", "File or stdout sink write errors.", stats.sink_errors);
	prom_u64(&b, "miffy_kafka_delivered_total", "counter",
		 "Messages Kafka acknowledged.", stats.kafka_delivered);
	prom_u64(&b, "miffy_kafka_failed_total", "counter",
		 "Messages Kafka reported as failed.", stats.kafka_failed);
	prom_u64(&b, "miffy_kafka_dropped_total", "counter",
		 "Messages dropped before Kafka (local queue full or produce error).", stats.kafka_dropped);
	prom_u64(&b, "miffy_kafka_queue_depth", "gauge",
		 "Messages waiting in librdkafka's queue.", stats.kafka_queue_depth);
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
	prom_u64(&b, "miffy_log_lines_suppressed_total", "counter",
		 "Warning and error log lines dropped by the log rate limit.", log_suppressed_total());
	prom_u64(&b, "miffy_log_lines_dropped_total", "counter",
		 "Log lines dropped because the log's reader (a stalled stderr pipe) did not keep up.",
		 log_dropped_total());
	return sbuf_take(&b, len);
}

/* ---- /stats ------------------------------------------------------------ */

/* The document is written as text, not built with cJSON: at the caps (100
 * endpoints x 100 fields) cJSON's number printing alone takes tens of
 * milliseconds, time the loop owes HAProxy. */

static double pct(uint64_t part, uint64_t whole)
{
	return whole ? 100.0 * (double)part / (double)whole : 0;
}

/* Length of the valid UTF-8 sequence at s, or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/* s as a JSON string; bytes that are not UTF-8 (a path is whatever the
 * client sent) become U+FFFD so the document always parses. */
static void json_str(struct sbuf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	sbuf_add(b, "\"", 1);
	while (*s) {
		size_t n, run = 0;

		/* Plain ASCII goes in runs. */
		while (s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
			run++;
		if (run) {
			sbuf_add(b, (const char *)s, run);
			s += run;
			continue;
		}
		n = utf8_len(s);
		if (n == 0) {
			sbuf_puts(b, "\\ufffd");
			s++;
		} else if (*s == '"' || *s == '\\') {
			sbuf_add(b, "\\", 1);
			sbuf_add(b, (const char *)s++, 1);
		} else if (*s < 0x20) {
			sbuf_printf(b, "\\u%04x", *s++);
		} else {
			sbuf_add(b, (const char *)s, n);
			s += n;
		}
	}
	sbuf_add(b, "\"", 1);
}

/* `"key":` preceded by a comma unless first; *first is then cleared. */
static void json_key(struct sbuf *b, bool *first, const char *key)
{
	if (!*first)
		sbuf_add(b, ",", 1);
	*first = false;
	json_str(b, key);
	sbuf_add(b, ":", 1);
}

static void json_u64(struct sbuf *b, bool *first, const char *key, uint64_t v)
{
	char digits[24], *p = digits + sizeof(digits);

	json_key(b, first, key);
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sbuf_add(b, p, (size_t)(digits + sizeof(digits) - p));
}

static void json_ms(struct sbuf *b, bool *first, const char *key, double v)
{
	json_key(b, first, key);
	sbuf_printf(b, "%.3f", v);
}

static void latency_text(struct sbuf *b, const struct pct_hist *h)
{
	bool first = true;

	sbuf_add(b, "{", 1);
	json_u64(b, &first, "count", h->count);
	json_ms(b, &first, "p50", pct_quantile(h, 0.50));
	json_ms(b, &first, "p90", pct_quantile(h, 0.90));
	json_ms(b, &first, "p99", pct_quantile(h, 0.99));
	json_ms(b, &first, "max", h->max_ms);
	sbuf_add(b, "}", 1);
}

/* "minutes": the last hour oldest first, one array per count. */
static void minutes_text(struct sbuf *b, bool *first, const struct minutes *m)
{
	static const char *const names[] = { "compared", "different", "noise", "candidate_error" };
	double now = ev_time();
	struct minute_bucket all[MINUTES_KEPT];
	bool f2 = true;
	char t[48];

	for (unsigned i = 0; i < MINUTES_KEPT; i++)
		all[i] = minutes_at(m, now, MINUTES_KEPT - 1 - i);
	json_key(b, first, "minutes");
	sbuf_add(b, "{", 1);
	log_stamp((double)all[0].minute * 60.0, t, sizeof(t));
	json_key(b, &f2, "start");
	json_str(b, t);
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		json_key(b, &f2, names[k]);
		sbuf_add(b, "[", 1);
		for (unsigned i = 0; i < MINUTES_KEPT; i++) {
			const uint32_t v[] = { all[i].compared, all[i].different, all[i].noise,
					       all[i].candidate_error };

			char digits[16], *q = digits + sizeof(digits);
			uint32_t n = v[k];

			/* 240 numbers an endpoint: printf would cost the loop. */
			do {
				*--q = (char)('0' + n % 10);
				n /= 10;
			} while (n);
			if (i)
				*--q = ',';
			sbuf_add(b, q, (size_t)(digits + sizeof(digits) - q));
		}
		sbuf_add(b, "]", 1);
	}
	sbuf_add(b, "}", 1);
}

static bool endpoint_shown(size_t i)
{
	const struct endpoint_stats *e = &st.endpoints[i];
	uint64_t any = 0;

	if (!e->name || (i >= st.nendpoints && i != STATS_MAX_ENDPOINTS))
		return false;
	if (i < STATS_MAX_ENDPOINTS)
		return true;
	for (int k = 0; k < OUTCOME_COUNT; k++)
		any |= e->outcomes[k];
	return any != 0;
}

static void endpoint_text(struct sbuf *b, const struct endpoint_stats *e)
{
	uint64_t total = 0, compared;
	bool first = true, f2;

	for (int i = 0; i < OUTCOME_COUNT; i++)
		total += e->outcomes[i];
	compared = e->outcomes[OUTCOME_EQUAL] + e->outcomes[OUTCOME_DIFFERENT] + e->outcomes[OUTCOME_NOISE];
	sbuf_add(b, "{", 1);
	json_u64(b, &first, "total", total);
	json_u64(b, &first, "compared", compared);
	json_u64(b, &first, "different", e->outcomes[OUTCOME_DIFFERENT]);
	json_ms(b, &first, "different_pct", pct(e->outcomes[OUTCOME_DIFFERENT], compared));
	json_u64(b, &first, "noise", e->outcomes[OUTCOME_NOISE]);
	json_ms(b, &first, "noise_pct", pct(e->outcomes[OUTCOME_NOISE], compared));
	json_key(b, &first, "outcomes");
	f2 = true;
	sbuf_add(b, "{", 1);
	for (int i = 0; i < OUTCOME_COUNT; i++)
		json_u64(b, &f2, outcome_name((enum outcome)i), e->outcomes[i]);
	sbuf_add(b, "}", 1);
	json_key(b, &first, "latency_ms");
	f2 = true;
	sbuf_add(b, "{", 1);
	for (int s = 0; s < LAT_SOURCE_COUNT; s++) {
		if (s == LAT_SECONDARY && !e->latency[s].count)
			continue;
		json_key(b, &f2, lat_source_names[s]);
		latency_text(b, &e->latency[s]);
	}
	sbuf_add(b, "}", 1);
	json_key(b, &first, "fields");
	f2 = true;
	sbuf_add(b, "{", 1);
	for (size_t i = 0; e->fields && i <= STATS_MAX_FIELDS; i++) {
		const struct field_count *f = &e->fields[i];
		bool f3 = true;

		if ((i >= e->nfields && i != STATS_MAX_FIELDS) || !f->key || !f->raw)
			continue;
		json_key(b, &f2, f->key);
		sbuf_add(b, "{", 1);
		json_u64(b, &f3, "raw", f->raw);
		json_u64(b, &f3, "noise", f->noise);
		sbuf_add(b, "}", 1);
	}
	sbuf_add(b, "}", 1);
	if (st.noise && e != &st.endpoints[STATS_MAX_ENDPOINTS]) {
		cJSON *n = noise_stats_json(st.noise, e->name);
		char *text = n && cJSON_GetArraySize(n) > 0 ? cJSON_PrintUnformatted(n) : NULL;

		/* Empty unless a secondary is configured. */
		if (text) {
			json_key(b, &first, "noise_fields");
			sbuf_puts(b, text);
		}
		free(text);
		cJSON_Delete(n);
	}
	minutes_text(b, &first, &e->minutes);
	json_key(b, &first, "last_differences");
	sbuf_add(b, "[", 1);
	/* Newest first. */
	for (unsigned k = 0; k < STATS_LAST_IDS; k++) {
		const struct last_diff *l = &e->last[(e->last_next + STATS_LAST_IDS - 1 - k) % STATS_LAST_IDS];
		bool f3 = true;
		char t[48];

		if (!l->id)
			break;
		if (k)
			sbuf_add(b, ",", 1);
		log_stamp(l->time, t, sizeof(t));
		sbuf_add(b, "{", 1);
		json_key(b, &f3, "id");
		json_str(b, l->id);
		json_key(b, &f3, "outcome");
		json_str(b, outcome_name(l->outcome));
		json_key(b, &f3, "time");
		json_str(b, t);
		sbuf_add(b, "}", 1);
	}
	sbuf_add(b, "]}", 2);
}

char *stats_json_text(size_t *len)
{
	struct sbuf b = { 0 };
	bool first = true, f2;
	char slot[16];

	sbuf_add(&b, "{", 1);
	json_ms(&b, &first, "uptime_seconds", uptime_seconds());
	json_key(&b, &first, "spop");
	f2 = true;
	sbuf_add(&b, "{", 1);
	json_u64(&b, &f2, "connections_accepted", stats.conn_accepted);
	json_u64(&b, &f2, "connections_active", stats.conn_active);
	json_u64(&b, &f2, "connections_refused", stats.conn_refused);
	json_u64(&b, &f2, "healthchecks", stats.conn_healthchecks);
	json_u64(&b, &f2, "frames_in", stats.frames_in);
	json_u64(&b, &f2, "frames_out", stats.frames_out);
	json_u64(&b, &f2, "notify", stats.notify_frames);
	json_u64(&b, &f2, "ack", stats.ack_frames);
	json_key(&b, &f2, "ack_latency");
	{
		bool f3 = true;
		uint64_t under = 0;

		/* 1 ms: the budget a healthy agent keeps (README, Limits). */
		for (size_t i = 0; i < STATS_HIST_BOUNDS && stats_ack_bounds[i] <= 0.001; i++)
			under += st.ack.buckets[i];
		sbuf_add(&b, "{", 1);
		json_u64(&b, &f3, "count", st.ack.count);
		json_u64(&b, &f3, "within_1ms", under);
		json_ms(&b, &f3, "max_ms", st.ack_max * 1000.0);
		sbuf_add(&b, "}", 1);
	}
	json_u64(&b, &f2, "messages", stats.messages);
	json_u64(&b, &f2, "disconnects_received", stats.disconnect_received);
	json_u64(&b, &f2, "idle_timeouts", stats.idle_timeouts);
	json_key(&b, &f2, "disconnects_sent");
	{
		bool f3 = true;

		sbuf_add(&b, "{", 1);
		for (size_t i = 0; i < STATS_DISCONNECT_SLOTS; i++)
			if (stats.disconnect_sent[i])
				json_u64(&b, &f3, disconnect_label(i, slot, sizeof(slot)), stats.disconnect_sent[i]);
		sbuf_add(&b, "}", 1);
	}
	sbuf_add(&b, "}", 1);
	json_key(&b, &first, "outcomes");
	f2 = true;
	sbuf_add(&b, "{", 1);
	for (int i = 0; i < OUTCOME_COUNT; i++)
		json_u64(&b, &f2, outcome_name((enum outcome)i), stats.outcomes[i]);
	sbuf_add(&b, "}", 1);
	json_key(&b, &first, "skipped");
	f2 = true;
	sbuf_add(&b, "{", 1);
	for (int i = 1; i < SKIP_REASON_COUNT; i++)
		json_u64(&b, &f2, skip_reason_name((enum skip_reason)i), stats.skips[i]);
	sbuf_add(&b, "}", 1);
	json_key(&b, &first, "anomalies");
	f2 = true;
	sbuf_add(&b, "{", 1);
	for (int i = 0; i < ANOMALY_COUNT; i++)
		json_u64(&b, &f2, anomaly_name((enum anomaly)i), stats.anomalies[i]);
	sbuf_add(&b, "}", 1);
	json_key(&b, &first, "exchanges");
	f2 = true;
	sbuf_add(&b, "{", 1);
	json_u64(&b, &f2, "started", stats.exchanges_started);
	json_u64(&b, &f2, "inflight", stats.exchanges_inflight);
	sbuf_add(&b, "}", 1);
	json_key(&b, &first, "replays");
	f2 = true;
	sbuf_add(&b, "{", 1);
	for (int r = 0; r < ROLE_COUNT; r++) {
		const struct error_reason *slots = st.errors[r];
		bool f3 = true, f4 = true;

		json_key(&b, &f2, role_name((enum replay_role)r));
		sbuf_add(&b, "{", 1);
		json_u64(&b, &f3, "started", stats.replays_started[r]);
		json_key(&b, &f3, "errors");
		sbuf_add(&b, "{", 1);
		for (size_t i = 0; i <= STATS_MAX_ERROR_REASONS; i++) {
			const char *reason = i == STATS_MAX_ERROR_REASONS ? STATS_OTHER : slots[i].reason;

			if (reason && slots[i].count)
				json_u64(&b, &f4, reason, slots[i].count);
		}
		sbuf_add(&b, "}}", 2);
	}
	json_u64(&b, &f2, "inflight", stats.replays_inflight);
	sbuf_add(&b, "}", 1);
	json_key(&b, &first, "compare");
	f2 = true;
	sbuf_add(&b, "{", 1);
	json_u64(&b, &f2, "json_depth_exceeded", stats.json_depth_exceeded);
	json_u64(&b, &f2, "compare_budget_exceeded", stats.compare_budget_exceeded);
	json_u64(&b, &f2, "decompress_failed", stats.decompress_failed);
	sbuf_add(&b, "}", 1);
	json_key(&b, &first, "publish");
	f2 = true;
	sbuf_add(&b, "{", 1);
	json_u64(&b, &f2, "published", stats.published);
	json_u64(&b, &f2, "messages_cut", stats.messages_cut);
	json_u64(&b, &f2, "sink_errors", stats.sink_errors);
	json_u64(&b, &f2, "kafka_delivered", stats.kafka_delivered);
	json_u64(&b, &f2, "kafka_failed", stats.kafka_failed);
	json_u64(&b, &f2, "kafka_dropped", stats.kafka_dropped);
	json_u64(&b, &f2, "kafka_queue_depth", stats.kafka_queue_depth);
	sbuf_add(&b, "}", 1);
	json_key(&b, &first, "log");
	f2 = true;
	sbuf_add(&b, "{", 1);
	json_u64(&b, &f2, "lines_suppressed", log_suppressed_total());
	json_u64(&b, &f2, "lines_dropped", log_dropped_total());
	sbuf_add(&b, "}", 1);
	if (st.samples) {
		struct samples_counts sc;
		bool f3 = true;

		samples_counts(st.samples, &sc);
		json_key(&b, &first, "samples");
		f2 = true;
		sbuf_add(&b, "{", 1);
		json_u64(&b, &f2, "taken", sc.taken);
		json_u64(&b, &f2, "stored", sc.stored);
		json_u64(&b, &f2, "bytes", sc.bytes);
		json_u64(&b, &f2, "too_large", sc.too_large);
		json_key(&b, &f2, "evicted");
		sbuf_add(&b, "{", 1);
		for (int r = 0; r < SAMPLES_EVICT_COUNT; r++)
			json_u64(&b, &f3, samples_evict_name((enum samples_evict)r), sc.evicted[r]);
		sbuf_add(&b, "}}", 2);
	}
	json_key(&b, &first, "endpoints");
	f2 = true;
	sbuf_add(&b, "{", 1);
	for (size_t i = 0; st.endpoints && i <= STATS_MAX_ENDPOINTS; i++) {
		if (!endpoint_shown(i))
			continue;
		json_key(&b, &f2, st.endpoints[i].name);
		endpoint_text(&b, &st.endpoints[i]);
	}
	sbuf_add(&b, "}}\n", 3);
	return sbuf_take(&b, len);
}

cJSON *stats_json(void)
{
	char *text = stats_json_text(NULL);
	cJSON *doc = text ? cJSON_Parse(text) : NULL;

	free(text);
	return doc;
}
