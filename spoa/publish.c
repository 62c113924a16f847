#include "publish.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "body.h"
#include "buf.h"
#include "compare.h"
#include "config.h"
#include "fingerprint.h"
#include "json.h"
#include "jsonw.h"
#include "log.h"
#include "names.h"
#include "samples.h"
#include "stats.h"
#include "exchange-t.h"

/* Producer defaults; any of them can be overridden by kafka_properties.
 * acks=all: a difference is a record somebody will act on, and waiting for
 * the in-sync replicas costs latency only in librdkafka's threads, never on
 * the loop. The queue is bounded in messages and in bytes so a dead cluster
 * costs a known amount of memory; past it messages are dropped and counted. */
static const char *const kafka_defaults[][2] = {
	{ "client.id", "miffy" },
	{ "acks", "all" },
	{ "linger.ms", "20" },
	{ "compression.type", "lz4" },
	{ "queue.buffering.max.messages", "100000" },
	{ "queue.buffering.max.kbytes", "65536" },
	{ "message.timeout.ms", "30000" },
};

/* Ticks refresh the queue-depth gauge, report summarised failures and poll
 * librdkafka as a safety net behind the queue's wake-up pipe. */
#define PUBLISH_TICK 0.5
/* Bounded work per wake-up so a burst of delivery reports cannot starve the
 * agent's connections; the tick picks up the rest. */
#define KAFKA_POLL_BURST 64
/* Lines waiting for a slow stdout pipe or FIFO: beyond this many bytes new
 * messages are dropped (counted) instead of growing memory. */
#define OUT_BUFFER_MIN (4u << 20)

enum sink_kind { SINK_KAFKA = 0, SINK_FILE, SINK_STDOUT, SINK_KIND_COUNT };

/* One log line per second per kind of trouble; the rest are summarised. */
struct ratelog {
	const char *what;
	ev_tstamp last;
	uint64_t suppressed;
	char reason[160];
};

struct publish {
	struct ev_loop *loop;
	const struct config *cfg;
	enum sink_kind kind;
	ev_timer tick;
	uint64_t rng;
	struct ratelog drop_log, fail_log, err_log, write_log, limit_log;
	struct jsonw msg;            /* reused by every message */
	struct samples *samples;     /* or NULL */
	struct fingerprints *fingerprints;  /* or NULL: no grouping, no limit */

	/* kafka */
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	int wake[2];                 /* librdkafka writes to [1] when its queue fills */
	ev_io wake_io;
	uint64_t inflight;           /* produced, no delivery report yet */
	rd_kafka_topic_t *stats_rkt; /* stats_topic, on the first snapshot */
	uint64_t stats_inflight;     /* snapshots produced, no delivery report yet */
	bool closing;

	/* file / stdout */
	char *path;
	int fd;
	ev_io out_io;
	struct buf out;              /* lines not yet accepted by fd */
};

/* Parts of an exchange decoded once and reused by every build attempt. */
enum part { PART_REQUEST = 0, PART_REFERENCE, PART_CANDIDATE, PART_SECONDARY, PART_COUNT };

/* How much of the exchange a build may include; relaxed step by step when
 * the message exceeds max_message. */
struct shape {
	size_t body_limit;           /* bytes of each body's content; SIZE_MAX: all */
	size_t value_limit;          /* bytes of a difference value; SIZE_MAX: all */
	bool headers;
	size_t max_diffs;
};

struct build {
	const struct publish *p;
	struct jsonw *w;             /* the message being written */
	const struct exchange *x;
	enum outcome outcome;
	const struct diff_list *diffs;
	const char *fingerprint;     /* fingerprint_of() the exchange */
	const struct body *bodies[PART_COUNT];  /* NULL: part not shown */
	struct body_shared own[PART_COUNT];      /* decoded here, for this message */
	bool cut;                    /* set by a build that left something out */
};

static void ratelog_hit(struct publish *p, struct ratelog *rl, const char *id, const char *reason)
{
	ev_tstamp now = ev_now(p->loop);

	if (now - rl->last >= 1.0) {
		log_msg(LOG_LEVEL_WARN, id, "publish: %s: %s", rl->what, reason);
		rl->last = now;
		return;
	}
	rl->suppressed++;
	snprintf(rl->reason, sizeof(rl->reason), "%s", reason);
}

static void ratelog_flush(struct publish *p, struct ratelog *rl, bool force)
{
	ev_tstamp now = ev_now(p->loop);

	if (!rl->suppressed || (!force && now - rl->last < 1.0))
		return;
	log_warn("publish: %s: %llu more in the last second (last: %s)", rl->what,
		 (unsigned long long)rl->suppressed, rl->reason);
	rl->suppressed = 0;
	rl->last = now;
}

/* ---- JSON text helpers ------------------------------------------------- */

static void write_base64(struct jsonw *w, const uint8_t *s, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (!out) {
		w->b.err = BUF_NO_MEMORY;
		return;
	}
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0);
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	jsonw_string(w, out, (size_t)(o - out));
	free(out);
}

/* ---- message ----------------------------------------------------------- */

/* Header names compare without regard to case; most differ in their first
 * byte, which is checked without a call. */
static bool same_name(const char *a, const char *b)
{
	return (a[0] | 0x20) == (b[0] | 0x20) && strcasecmp(a, b) == 0;
}

static bool header_redacted(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->redact_headers.count; i++)
		if (same_name(cfg->redact_headers.items[i], name))
			return true;
	return false;
}

/* Headers as an object; repeated names are joined with ", " (RFC 9110
 * 5.3) so the object has unique keys; empty when the shape leaves headers
 * out. Names are lower-case already (http_headers_add() makes them so). */
static void write_headers(struct build *b, const struct header_list *list, const struct shape *sh)
{
	struct jsonw *w = b->w;

	jsonw_open(w, '{');
	for (size_t i = 0; sh->headers && i < list->count; i++) {
		const struct header *h = &list->items[i];
		bool redacted = header_redacted(b->p->cfg, h->name), repeated = false;
		size_t first = strlen(h->value), vlen = first, at;
		char *joined;

		for (size_t k = 0; k < i && !repeated; k++)
			repeated = same_name(list->items[k].name, h->name);
		if (repeated)
			continue;   /* written with its first occurrence */
		jsonw_keyc(w, h->name);
		if (redacted) {
			jsonw_cstring(w, "[redacted]");
			continue;
		}
		for (size_t k = i + 1; k < list->count; k++)
			if (same_name(list->items[k].name, h->name))
				vlen += 2 + strlen(list->items[k].value);
		if (vlen == first) {
			jsonw_string(w, h->value, vlen);
			continue;
		}
		joined = malloc(vlen);
		if (!joined) {
			w->b.err = BUF_NO_MEMORY;
			return;
		}
		at = first;
		memcpy(joined, h->value, at);
		for (size_t k = i + 1; k < list->count; k++) {
			if (same_name(list->items[k].name, h->name)) {
				size_t l = strlen(list->items[k].value);

				memcpy(joined + at, ", ", 2);
				memcpy(joined + at + 2, list->items[k].value, l);
				at += 2 + l;
			}
		}
		jsonw_string(w, joined, at);
		free(joined);
	}
	jsonw_close(w, '}');
}

/* Text bodies (and JSON ones shown as text when cut) are strings; only
 * binary ones need base64. */
static bool body_as_text(const struct body *bd)
{
	return bd->type == BODY_TEXT || bd->type == BODY_JSON;
}

/* Serialized size of a parsed JSON body: its text minified, or as printed
 * from the tree when the text is not strict JSON that cJSON accepted. */
static size_t json_body_size(const struct body *bd)
{
	struct jsonw tmp;
	size_t n;

	if (bd->json_arena && json_parsed_compact(bd->json_arena))
		return bd->len;
	n = jsonw_json_text_size(bd->data, bd->len);
	if (n != SIZE_MAX)
		return n;
	jsonw_init(&tmp, SIZE_MAX);
	jsonw_cjson(&tmp, bd->json);
	n = tmp.b.len;
	jsonw_free(&tmp);
	return n;
}

/* Serialized size of a whole body's content (the string or value inside B). */
static size_t body_content_size(const struct body *bd)
{
	if (bd->type == BODY_EMPTY)
		return 0;
	if (bd->type == BODY_JSON && bd->json)
		return json_body_size(bd);
	if (body_as_text(bd))
		return jsonw_string_size((const char *)bd->data, bd->len);
	return (bd->len + 2) / 3 * 4 + 2;
}

/* B for a body, its content limited to limit bytes of JSON text. A body
 * that does not fit becomes a text or base64 prefix with "cut": true and
 * "size": the whole decoded size. A JSON body is its own text, minified
 * (numbers as the server wrote them); the tree is printed only for text
 * cJSON accepts beyond RFC 8259. */
static void write_body(struct build *b, const struct body *bd, size_t limit)
{
	struct jsonw *w = b->w;
	bool whole = limit == SIZE_MAX;
	size_t take = bd->len, used;

	jsonw_open(w, '{');
	if (bd->type == BODY_EMPTY) {
		jsonw_keyc(w, "text");
		jsonw_string(w, "", 0);
		goto close;
	}
	if (bd->type == BODY_JSON && bd->json && (whole || json_body_size(bd) <= limit)) {
		jsonw_keyc(w, "json");
		if (bd->json_arena && json_parsed_compact(bd->json_arena))
			jsonw_json_minified(w, (const char *)bd->data, bd->len);
		else if (!jsonw_json_text(w, bd->data, bd->len))
			jsonw_cjson(w, bd->json);
		goto flags;
	}
	if (!whole) {
		if (body_as_text(bd)) {
			take = jsonw_string_fit((const char *)bd->data, bd->len, limit, &used);
		} else {
			take = limit >= 2 ? (limit - 2) / 4 * 3 : 0;
			if (take > bd->len)
				take = bd->len;
		}
	}
	if (body_as_text(bd)) {
		jsonw_keyc(w, "text");
		jsonw_string(w, (const char *)bd->data, take);
	} else {
		jsonw_keyc(w, "base64");
		write_base64(w, bd->data, take);
	}
	if (take < bd->len) {
		b->cut = true;
		jsonw_keyc(w, "cut");
		jsonw_bool(w, true);
		jsonw_keyc(w, "size");
		jsonw_int(w, (int64_t)bd->len);
		goto close;
	}
flags:
	if (bd->size_exceeded) {
		jsonw_keyc(w, "cut");
		jsonw_bool(w, true);
		jsonw_keyc(w, "size");
		jsonw_int(w, (int64_t)bd->len);
	}
close:
	jsonw_close(w, '}');
}

/* The members "headers" and "body" of a request or a response. */
static void write_headers_body(struct build *b, const struct header_list *list, const struct body *bd,
			       const struct shape *sh)
{
	jsonw_keyc(b->w, "headers");
	write_headers(b, list, sh);
	jsonw_keyc(b->w, "body");
	write_body(b, bd, sh->body_limit);
}

static void write_request(struct build *b, const struct shape *sh)
{
	const struct exchange *x = b->x;
	struct jsonw *w = b->w;

	jsonw_open(w, '{');
	jsonw_keyc(w, "method");
	jsonw_cstring(w, x->method ? x->method : "");
	jsonw_keyc(w, "path");
	jsonw_cstring(w, x->path ? x->path : "");
	jsonw_keyc(w, "query");
	jsonw_cstring(w, x->query);
	write_headers_body(b, &x->req_headers, b->bodies[PART_REQUEST], sh);
	jsonw_close(w, '}');
}

/* reference / candidate / secondary. A replay that failed is {"error",
 * "detail", "latency_ms"}. */
static void write_response(struct build *b, const struct shape *sh, enum part part,
			   const struct http_response *r, bool have)
{
	struct jsonw *w = b->w;

	jsonw_open(w, '{');
	if (!have || r->error != REPLAY_OK) {
		jsonw_keyc(w, "error");
		jsonw_cstring(w, have ? replay_error_name(r->error) : "missing");
		if (have && r->error_detail[0]) {
			jsonw_keyc(w, "detail");
			jsonw_cstring(w, r->error_detail);
		}
		if (have) {
			jsonw_keyc(w, "latency_ms");
			jsonw_ms(w, r->latency_ms);
		}
		jsonw_close(w, '}');
		return;
	}
	jsonw_keyc(w, "status");
	jsonw_int(w, r->status);
	write_headers_body(b, &r->headers, b->bodies[part], sh);
	jsonw_keyc(w, "truncated");
	jsonw_bool(w, r->truncated);
	jsonw_keyc(w, "latency_ms");
	jsonw_ms(w, r->latency_ms);
	jsonw_close(w, '}');
}

/* A difference's value under key; left out (with *cut set) when its text
 * is over limit, left out silently when absent. */
static void write_value(struct build *b, const char *key, const cJSON *v, bool redacted,
			size_t limit, bool *cut)
{
	struct jsonw *w = b->w;
	size_t at = w->b.len, max = w->b.max, value_at;
	bool comma = w->comma, capped;

	if (!v)
		return;
	jsonw_keyc(w, key);
	value_at = w->b.len;
	/* The writer's maximum is lowered to the limit while the value is
	 * written, so that a value too big for the message leaves the value
	 * out, not the message over its maximum. */
	capped = jsonw_ok(w) && limit != SIZE_MAX && limit < max - value_at;
	if (capped)
		w->b.max = value_at + limit;
	if (redacted)
		jsonw_cstring(w, "[redacted]");
	else
		jsonw_cjson(w, v);
	w->b.max = max;
	if (capped && w->b.err == BUF_TOO_BIG) {
		w->b.err = BUF_OK;
		buf_truncate(&w->b, at);
		w->comma = comma;
		*cut = true;
		b->cut = true;
	}
}

static void write_differences(struct build *b, const struct shape *sh)
{
	struct jsonw *w = b->w;
	size_t n = b->diffs ? b->diffs->count : 0;

	if (n > sh->max_diffs) {
		n = sh->max_diffs;
		b->cut = true;
	}
	jsonw_open(w, '[');
	for (size_t i = 0; i < n && jsonw_ok(w); i++) {
		const struct difference *d = &b->diffs->items[i];
		/* A header left out of ignore_headers (set-cookie, say) must not
		 * leak through its difference what the headers objects redact. */
		bool redacted = d->where == DIFF_HEADER && d->path && header_redacted(b->p->cfg, d->path);
		bool cut = false;

		jsonw_open(w, '{');
		jsonw_keyc(w, "where");
		jsonw_cstring(w, d->where < DIFF_WHERE_COUNT ? diff_where_name(d->where) : "body");
		jsonw_keyc(w, "path");
		jsonw_cstring(w, d->path ? d->path : "");
		jsonw_keyc(w, "kind");
		jsonw_cstring(w, d->kind < DIFF_KIND_COUNT ? diff_kind_name(d->kind) : "value");
		write_value(b, "reference", d->reference, redacted, sh->value_limit, &cut);
		write_value(b, "candidate", d->candidate, redacted, sh->value_limit, &cut);
		write_value(b, "key", d->key, false, sh->value_limit, &cut);
		jsonw_keyc(w, "noise");
		jsonw_bool(w, d->noise);
		if (cut) {
			jsonw_keyc(w, "cut");
			jsonw_bool(w, true);
		}
		jsonw_close(w, '}');
	}
	jsonw_close(w, ']');
}

/* Writes the whole message of DESIGN.md "Kafka message" within shape sh
 * into b->w. Returns 1 when it fits in the writer's maximum, 0 when it does
 * not, -1 on ENOMEM. */
static int write_message(struct build *b, const struct shape *sh, const char *stamp)
{
	const struct exchange *x = b->x;
	struct jsonw *w = b->w;

	b->cut = false;
	jsonw_reset(w);
	jsonw_open(w, '{');
	jsonw_keyc(w, "id");
	jsonw_cstring(w, x->id ? x->id : "");
	jsonw_keyc(w, "time");
	jsonw_cstring(w, stamp);
	jsonw_keyc(w, "endpoint");
	jsonw_cstring(w, x->endpoint ? x->endpoint : "");
	jsonw_keyc(w, "outcome");
	jsonw_cstring(w, outcome_name(b->outcome));
	jsonw_keyc(w, "candidate_name");
	jsonw_cstring(w, config_candidate_name(b->p->cfg, x->candidate));
	jsonw_keyc(w, "fingerprint");
	jsonw_cstring(w, b->fingerprint ? b->fingerprint : "");
	jsonw_keyc(w, "request");
	write_request(b, sh);
	jsonw_keyc(w, "reference");
	write_response(b, sh, PART_REFERENCE, &x->reference, x->have_reference);
	jsonw_keyc(w, "candidate");
	write_response(b, sh, PART_CANDIDATE, &x->replies[ROLE_CANDIDATE], x->have[ROLE_CANDIDATE]);
	if (x->want[ROLE_SECONDARY]) {
		jsonw_keyc(w, "secondary");
		write_response(b, sh, PART_SECONDARY, &x->replies[ROLE_SECONDARY], x->have[ROLE_SECONDARY]);
	}
	jsonw_keyc(w, "differences");
	write_differences(b, sh);
	if (b->diffs && sh->max_diffs < b->diffs->count) {
		jsonw_keyc(w, "differences_total");
		jsonw_int(w, (int64_t)b->diffs->count);
	}
	if (!sh->headers && (x->req_headers.count || x->reference.headers.count))
		b->cut = true;
	jsonw_keyc(w, "cut");
	jsonw_bool(w, b->cut);
	jsonw_close(w, '}');
	if (w->b.err == BUF_NO_MEMORY)
		return -1;
	return w->b.err == BUF_TOO_BIG ? 0 : 1;
}

/* The largest per-body limit L with sum(min(size_i, L)) <= budget. */
static size_t water_fill(const size_t *sizes, size_t n, size_t budget)
{
	size_t left = n;
	bool done[PART_COUNT] = { false };

	for (;;) {
		size_t limit = left ? budget / left : budget;
		bool changed = false;

		for (size_t i = 0; i < n; i++) {
			if (!done[i] && sizes[i] <= limit) {
				done[i] = true;
				budget -= sizes[i];
				left--;
				changed = true;
			}
		}
		if (!changed || !left)
			return left ? budget / left : SIZE_MAX;
	}
}

/* The message in b->w within its maximum: whole if it fits, else with
 * bodies cut to prefixes, then without bodies, then without large
 * difference values, then without headers, then with fewer differences.
 * Returns 1 (*cut set), 0 when even the smallest form is over the maximum,
 * -1 on ENOMEM. */
static int build_within(struct build *b, bool *cut)
{
	struct shape sh = { SIZE_MAX, SIZE_MAX, true, SIZE_MAX };
	size_t sizes[PART_COUNT], n = 0, lo, hi, best = SIZE_MAX;
	char stamp[LOG_STAMP_LEN];
	struct timespec now;
	int rc;

	clock_gettime(CLOCK_REALTIME, &now);
	log_stamp((double)now.tv_sec + (double)now.tv_nsec / 1e9, stamp, sizeof(stamp));
	*cut = false;
	if ((rc = write_message(b, &sh, stamp)) != 0)
		goto done;

	/* Bodies out, to measure what is left for them; then the largest
	 * prefixes that fit (their "cut" and "size" may not: then none). */
	sh.body_limit = 0;
	if ((rc = write_message(b, &sh, stamp)) == 1) {
		for (int i = 0; i < PART_COUNT; i++)
			if (b->bodies[i])
				sizes[n++] = body_content_size(b->bodies[i]);
		sh.body_limit = water_fill(sizes, n, b->w->b.max - b->w->b.len);
		if (sh.body_limit > 0 && sh.body_limit != SIZE_MAX &&
		    (rc = write_message(b, &sh, stamp)) == 0) {
			sh.body_limit = 0;
			rc = write_message(b, &sh, stamp);
		}
		*cut = true;
		return rc;
	}
	if (rc == -1)
		return rc;

	sh.value_limit = 256;
	if ((rc = write_message(b, &sh, stamp)) != 0)
		goto done;
	sh.headers = false;
	if ((rc = write_message(b, &sh, stamp)) != 0)
		goto done;

	/* As many differences as fit: binary search on the count kept, then
	 * the best one written again (the buffer holds the last attempt). */
	lo = 0;
	hi = b->diffs ? b->diffs->count : 0;
	while (lo <= hi) {
		size_t mid = lo + (hi - lo) / 2;

		sh.max_diffs = mid;
		rc = write_message(b, &sh, stamp);
		if (rc == -1)
			return rc;
		if (rc == 1)
			best = mid, lo = mid + 1;
		else if (mid == 0)
			break;
		else
			hi = mid - 1;
	}
	if (best == SIZE_MAX)
		return 0;
	sh.max_diffs = best;
	rc = write_message(b, &sh, stamp);
done:
	if (rc == 1)
		*cut = b->cut;
	return rc;
}

/* ---- file and stdout sinks -------------------------------------------- */

static void out_discard(struct publish *p, const char *why)
{
	size_t lines = 0;

	for (const char *q = p->out.p; q && (q = memchr(q, '\n', (size_t)(p->out.p + p->out.len - q))) != NULL; q++)
		lines++;
	stats.sink_errors += lines;
	buf_reset(&p->out);
	ev_io_stop(p->loop, &p->out_io);
	ratelog_hit(p, &p->write_log, NULL, why);
}

/* Writes what the buffer holds; keeps the rest for the next writable event. */
static void out_drain(struct publish *p)
{
	size_t off = 0;

	while (off < p->out.len) {
		ssize_t n = write(p->fd, p->out.p + off, p->out.len - off);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		{
			char why[200];

			snprintf(why, sizeof(why), "write to %s: %s", p->path ? p->path : "stdout", strerror(errno));
			buf_consume(&p->out, off);
			out_discard(p, why);
			return;
		}
	}
	buf_consume(&p->out, off);
	if (p->out.len)
		ev_io_start(p->loop, &p->out_io);
	else
		ev_io_stop(p->loop, &p->out_io);
}

static void on_out_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct publish *p = w->data;

	out_drain(p);
}

/* Queues one line. Returns false (counted) when the buffer is full. */
static bool out_line(struct publish *p, const char *msg, size_t len)
{
	char *o;

	if (p->fd == -1) {
		stats.sink_errors++;
		ratelog_hit(p, &p->write_log, NULL, "file sink is not open");
		return false;
	}
	if (len + 1 > p->out.max - p->out.len) {
		stats.sink_errors++;
		ratelog_hit(p, &p->write_log, NULL, "output is not keeping up: message dropped");
		return false;
	}
	o = buf_reserve(&p->out, len + 1);
	if (!o) {
		/* Only memory can fail here; the lines held are intact. */
		p->out.err = BUF_OK;
		stats.sink_errors++;
		ratelog_hit(p, &p->write_log, NULL, "out of memory");
		return false;
	}
	memcpy(o, msg, len);
	o[len] = '\n';
	buf_commit(&p->out, len + 1);
	if (!ev_is_active(&p->out_io))
		out_drain(p);
	return true;
}

/* Regular files and terminals are written synchronously; a pipe, FIFO or
 * socket is made non-blocking so a stalled reader costs buffer space (then
 * dropped messages), never the loop. */
static int out_attach(struct publish *p, int fd)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return -1;
	/* ev_io_set() needs a stopped watcher; out_drain() restarts it. */
	ev_io_stop(p->loop, &p->out_io);
	if ((S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) &&
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
		return -1;
	p->fd = fd;
	ev_io_set(&p->out_io, fd, EV_WRITE);
	return 0;
}

static int out_open(struct publish *p, char *err, size_t errlen)
{
	/* O_NONBLOCK: opening a FIFO without a reader fails instead of hanging. */
	int fd = open(p->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);

	if (fd == -1 || out_attach(p, fd) == -1) {
		snprintf(err, errlen, "cannot open %s: %s", p->path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return 0;
}

/* ---- kafka ------------------------------------------------------------- */

/* The opaque of a snapshot message: not an exchange's, counted apart. */
static char snapshot_tag;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct publish *p = opaque;

	if (p->closing)
		return;
	if (m->_private == &snapshot_tag) {
		if (p->stats_inflight)
			p->stats_inflight--;
		/* The next snapshot carries the same counts and more. */
		if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
			ratelog_hit(p, &p->fail_log, NULL, rd_kafka_err2str(m->err));
		return;
	}
	if (p->inflight)
		p->inflight--;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		stats.kafka_delivered++;
		return;
	}
	stats.kafka_failed++;
	ratelog_hit(p, &p->fail_log, NULL, rd_kafka_err2str(m->err));
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct publish *p = opaque;

	/* Transient: librdkafka reconnects by itself and messages wait in its
	 * queue until message.timeout.ms; say so once a second at most. */
	ratelog_hit(p, &p->err_log, NULL, reason);
}

/* librdkafka's own lines (connection failures, ...) at warn at most: the
 * error callback above already says what matters for miffy. */
static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (level <= 4)
		log_msg(LOG_LEVEL_WARN, NULL, "kafka: %s: %s", fac, buf);
	else if (level == 5)
		log_msg(LOG_LEVEL_INFO, NULL, "kafka: %s: %s", fac, buf);
	else
		log_debug("kafka: %s: %s", fac, buf);
}

static void kafka_serve(struct publish *p)
{
	for (int i = 0; i < KAFKA_POLL_BURST; i++)
		if (rd_kafka_poll(p->rk, 0) == 0)
			break;
	stats.kafka_queue_depth = (uint64_t)rd_kafka_outq_len(p->rk);
}

static void on_kafka_wake(struct ev_loop *loop, ev_io *w, int revents)
{
	struct publish *p = w->data;
	char drain[256];

	while (read(p->wake[0], drain, sizeof(drain)) > 0)
		;
	kafka_serve(p);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct publish *p = w->data;

	if (p->rk)
		kafka_serve(p);
	ratelog_flush(p, &p->drop_log, false);
	ratelog_flush(p, &p->fail_log, false);
	ratelog_flush(p, &p->err_log, false);
	ratelog_flush(p, &p->write_log, false);
	ratelog_flush(p, &p->limit_log, false);
}

int publish_kafka_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err, size_t errlen)
{
	char why[256];

	if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "kafka property %s=%s: %s", key, value, why);
		return -1;
	}
	return 0;
}

int publish_kafka_properties(rd_kafka_conf_t *conf, const struct config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < cfg->kafka_properties.count; i++) {
		const char *kv = cfg->kafka_properties.items[i], *eq = strchr(kv, '=');
		char key[128];

		if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
			snprintf(err, errlen, "kafka property '%s': expected key=value", kv);
			return -1;
		}
		memcpy(key, kv, (size_t)(eq - kv));
		key[eq - kv] = '\0';
		if (publish_kafka_set(conf, key, eq + 1, err, errlen) == -1)
			return -1;
	}
	return 0;
}

/* librdkafka is serviced from the loop without blocking: its main queue
 * (delivery reports, errors, logs) writes a byte to a pipe when it becomes
 * non-empty, an ev_io on the pipe calls rd_kafka_poll(rk, 0), and a tick
 * polls as well in case a burst was left half served. */
static int kafka_open(struct publish *p, char *err, size_t errlen)
{
	const struct config *cfg = p->cfg;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_queue_t *q;
	char buf[64], why[256];

	if (!cfg->kafka_brokers || !*cfg->kafka_brokers) {
		snprintf(err, errlen, "sink kafka needs brokers (--kafka HOST:PORT)");
		goto fail;
	}
	for (size_t i = 0; i < sizeof(kafka_defaults) / sizeof(kafka_defaults[0]); i++)
		if (publish_kafka_set(conf, kafka_defaults[i][0], kafka_defaults[i][1], err, errlen) == -1)
			goto fail;
	/* The producer must accept the largest message publish builds. */
	if (cfg->max_message + 4096 > 1000000) {
		snprintf(buf, sizeof(buf), "%zu", cfg->max_message + 4096);
		if (publish_kafka_set(conf, "message.max.bytes", buf, err, errlen) == -1)
			goto fail;
	}
	if (publish_kafka_set(conf, "bootstrap.servers", cfg->kafka_brokers, err, errlen) == -1 ||
	    publish_kafka_set(conf, "log.queue", "true", err, errlen) == -1)
		goto fail;
	if (publish_kafka_properties(conf, cfg, err, errlen) == -1)
		goto fail;
	rd_kafka_conf_set_opaque(conf, p);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_kafka_error);
	rd_kafka_conf_set_log_cb(conf, on_kafka_log);

	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
	if (!p->rk) {
		snprintf(err, errlen, "kafka: %s", why);
		goto fail;
	}
	conf = NULL;   /* owned by rk now */
	/* Logs go to the main queue too, so log_msg runs on the loop thread. */
	rd_kafka_set_log_queue(p->rk, NULL);
	p->rkt = rd_kafka_topic_new(p->rk, cfg->topic ? cfg->topic : "miffy", NULL);
	if (!p->rkt) {
		snprintf(err, errlen, "kafka topic %s: %s", cfg->topic ? cfg->topic : "miffy",
			 rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	if (pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	q = rd_kafka_queue_get_main(p->rk);
	rd_kafka_queue_io_event_enable(q, p->wake[1], "1", 1);
	rd_kafka_queue_destroy(q);
	ev_io_init(&p->wake_io, on_kafka_wake, p->wake[0], EV_READ);
	p->wake_io.data = p;
	ev_io_start(p->loop, &p->wake_io);
	return 0;
fail:
	if (conf)
		rd_kafka_conf_destroy(conf);
	return -1;
}

/* Copies msg into librdkafka's queue: the writer's buffer is reused. */
static void kafka_send(struct publish *p, const struct exchange *x, const char *msg, size_t len)
{
	const char *key = x->endpoint;
	rd_kafka_resp_err_t e;

	/* Without RD_KAFKA_MSG_F_BLOCK: a full queue fails at once. */
	if (rd_kafka_produce(p->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)(uintptr_t)msg, len,
			     key, key ? strlen(key) : 0, NULL) == -1) {
		e = rd_kafka_last_error();
		stats.kafka_dropped++;
		ratelog_hit(p, &p->drop_log, x->id, e == RD_KAFKA_RESP_ERR__QUEUE_FULL ?
			    "local queue full, message dropped" : rd_kafka_err2str(e));
		return;
	}
	p->inflight++;
	stats.published++;
	stats.kafka_queue_depth = (uint64_t)rd_kafka_outq_len(p->rk);
}

/* ---- public ------------------------------------------------------------ */

int publish_snapshot(struct publish *p, const char *key, const char *msg, size_t len)
{
	if (!p->rk)
		return -1;
	if (!p->stats_rkt) {
		p->stats_rkt = rd_kafka_topic_new(p->rk, p->cfg->stats_topic, NULL);
		if (!p->stats_rkt)
			return -1;
	}
	if (rd_kafka_produce(p->stats_rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)(uintptr_t)msg,
			     len, key, strlen(key), &snapshot_tag) == -1) {
		ratelog_hit(p, &p->drop_log, NULL, rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	p->stats_inflight++;
	return 0;
}

bool publish_to_kafka(const struct publish *p)
{
	return p->rk != NULL;
}

struct publish *publish_new(struct ev_loop *loop, const struct config *cfg, char *err, size_t errlen)
{
	struct publish *p = calloc(1, sizeof(*p));
	const char *sink = cfg->sink ? cfg->sink : "kafka";

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->loop = loop;
	p->cfg = cfg;
	p->fd = -1;
	p->wake[0] = p->wake[1] = -1;
	p->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)p;
	p->drop_log.what = "kafka drop";
	p->fail_log.what = "kafka delivery";
	p->err_log.what = "kafka";
	p->write_log.what = "sink write";
	p->limit_log.what = "fingerprint_limit";
	p->drop_log.last = p->fail_log.last = p->err_log.last = p->write_log.last = -1e9;
	buf_init(&p->out, cfg->max_message * 4 > OUT_BUFFER_MIN ? cfg->max_message * 4 : OUT_BUFFER_MIN);
	jsonw_init(&p->msg, cfg->max_message ? cfg->max_message : SIZE_MAX);
	ev_init(&p->out_io, on_out_writable);
	p->out_io.data = p;

	if (strcmp(sink, "kafka") == 0) {
		p->kind = SINK_KAFKA;
		if (kafka_open(p, err, errlen) == -1)
			goto fail;
	} else if (strcmp(sink, "stdout") == 0) {
		p->kind = SINK_STDOUT;
		if (out_attach(p, STDOUT_FILENO) == -1) {
			snprintf(err, errlen, "stdout: %s", strerror(errno));
			goto fail;
		}
	} else if (strncmp(sink, "file:", 5) == 0 && sink[5]) {
		p->kind = SINK_FILE;
		p->path = strdup(sink + 5);
		if (!p->path) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		if (out_open(p, err, errlen) == -1)
			goto fail;
	} else {
		snprintf(err, errlen, "unknown sink '%s' (kafka, stdout or file:PATH)", sink);
		goto fail;
	}
	ev_timer_init(&p->tick, on_tick, PUBLISH_TICK, PUBLISH_TICK);
	p->tick.data = p;
	ev_timer_start(loop, &p->tick);
	return p;
fail:
	publish_free(p, 0);
	return NULL;
}

/* What the policy does with an exchange: send its message to the sink,
 * keep it in the dashboard's samples, both or neither. */
struct decision {
	bool send;
	bool sample;
};

/* Whether an equal exchange is sent: with publish=all, at sample_rate. */
static bool equal_drawn(struct publish *p)
{
	if (p->cfg->publish != PUBLISH_ALL || p->cfg->sample_rate <= 0)
		return false;
	if (p->cfg->sample_rate >= 1)
		return true;
	/* xorshift64: sampling needs speed, not quality. */
	p->rng ^= p->rng << 13;
	p->rng ^= p->rng >> 7;
	p->rng ^= p->rng << 17;
	return (double)(p->rng >> 11) / (double)(1ull << 53) < p->cfg->sample_rate;
}

/* Which candidate x's fingerprint entry is of: NULL with one candidate
 * (the table as it always was), its name with several (each candidate's
 * entries and fingerprint_limit are its own). */
static const char *fp_candidate(const struct publish *p, const struct exchange *x)
{
	return p->cfg->ncandidates > 1 ? config_candidate_name(p->cfg, x->candidate) : NULL;
}

/* The one place the policy is decided (publish=, sample_rate,
 * fingerprint_limit, the samples): the sink gets different and
 * candidate_error exchanges, noise ones from publish=noise on, equal ones
 * as equal_drawn() says, each differing one only while its fingerprint is
 * within fingerprint_limit (counted and logged otherwise); the samples keep
 * every different, noise and candidate_error one whatever publish= says;
 * skipped, expired and dropped exchanges go nowhere. */
static struct decision policy_decide(struct publish *p, const struct exchange *x, enum outcome o,
				     const struct diff_list *diffs, char fp[FINGERPRINT_LEN + 1])
{
	bool differs = o == OUTCOME_DIFFERENT || o == OUTCOME_NOISE || o == OUTCOME_CANDIDATE_ERROR;
	struct decision d = {
		.sample = differs && p->samples && samples_max_message(p->samples) > 0,
	};

	switch (o) {
	case OUTCOME_DIFFERENT:
	case OUTCOME_CANDIDATE_ERROR:
		d.send = true;
		break;
	case OUTCOME_NOISE:
		d.send = p->cfg->publish >= PUBLISH_NOISE;
		break;
	case OUTCOME_EQUAL:
		d.send = equal_drawn(p);
		break;
	default:
		break;
	}
	/* Only what goes somewhere needs its fingerprint. */
	if (differs || d.send)
		fingerprint_of(diffs, o, x->replies[ROLE_CANDIDATE].error, fp);
	if (differs && p->fingerprints &&
	    !fingerprints_note(p->fingerprints, fp_candidate(p, x), x->endpoint, fp, d.send, ev_time())) {
		char why[160];

		d.send = false;
		snprintf(why, sizeof(why), "%s of %s over %u messages in %gs: not sent (counted)", fp,
			 x->endpoint ? x->endpoint : "-", p->cfg->fingerprint_limit, p->cfg->fingerprint_interval);
		ratelog_hit(p, &p->limit_log, x->id, why);
	}
	return d;
}

/* Keeps the message of x in the samples: the one just built when it fits
 * (built says p->msg holds it), else one built within the samples' own
 * maximum, so a sample is redacted and shaped exactly like a message. */
static void sample(struct publish *p, struct build *b, const struct exchange *x, enum outcome o,
		   const struct diff_list *diffs, bool built)
{
	size_t max = samples_max_message(p->samples), saved = p->msg.b.max, nfields = 0;
	char keys[SAMPLES_MAX_FIELDS][256];
	struct sample_field fields[SAMPLES_MAX_FIELDS];
	const char *id = x->id;
	char *own = NULL;
	bool cut;

	if (!built || p->msg.b.len > max) {
		p->msg.b.max = max < saved ? max : saved;
		built = build_within(b, &cut) == 1;
		p->msg.b.max = saved;
	}
	for (size_t i = 0; diffs && i < diffs->count && nfields < SAMPLES_MAX_FIELDS; i++) {
		const struct difference *d = &diffs->items[i];

		diff_field_key(d, keys[nfields], sizeof(keys[0]));
		fields[nfields] = (struct sample_field){
			.key = keys[nfields], .kind = d->kind < DIFF_KIND_COUNT ? diff_kind_name(d->kind) : "value",
			.noise = d->noise,
		};
		nfields++;
	}
	/* With several candidates an exchange may leave one sample each: the
	 * sample's id (what /samples/ID finds) says which, "ID@NAME". */
	if (p->cfg->ncandidates > 1 && x->id &&
	    asprintf(&own, "%s@%s", x->id, config_candidate_name(p->cfg, x->candidate)) >= 0)
		id = own;
	else
		own = NULL;
	if (!built)
		/* Counted as too large by the store. */
		samples_add(p->samples, id, x->endpoint, o, fields, nfields, "", SIZE_MAX, ev_time());
	else if (samples_add(p->samples, id, x->endpoint, o, fields, nfields, p->msg.b.p, p->msg.b.len,
			     ev_time()) == 0 && p->fingerprints)
		fingerprints_sampled(p->fingerprints, fp_candidate(p, x), x->endpoint, b->fingerprint, id);
	free(own);
}

void publish_set_samples(struct publish *p, struct samples *s)
{
	p->samples = s;
}

void publish_set_fingerprints(struct publish *p, struct fingerprints *t)
{
	p->fingerprints = t;
}

void publish_exchange(struct publish *p, const struct exchange *x, enum outcome o,
		      const struct diff_list *diffs)
{
	publish_exchange_shared(p, x, o, diffs, NULL, NULL, NULL);
}

void publish_exchange_shared(struct publish *p, const struct exchange *x, enum outcome o,
			     const struct diff_list *diffs, struct body_shared *request,
			     struct body_shared *reference, struct body_shared *replies)
{
	const struct config *cfg = p->cfg;
	struct build b = { .p = p, .w = &p->msg, .x = x, .outcome = o, .diffs = diffs };
	struct http_response req = { 0 };
	char fp[FINGERPRINT_LEN + 1];
	struct decision d;
	bool cut, selected, sampled;
	int rc = 0;

	d = policy_decide(p, x, o, diffs, fp);
	b.fingerprint = fp;
	selected = d.send;
	sampled = d.sample;
	if (!selected && !sampled)
		return;

	/* The request as a response-shaped view, for body_decode's sake. */
	req.headers = x->req_headers;
	req.body = x->req_body;
	req.body_len = x->req_body_len;
	b.bodies[PART_REQUEST] = body_shared_get(request ? request : &b.own[PART_REQUEST], &req,
						 cfg->max_decompressed, cfg->max_depth);
	if (x->have_reference && x->reference.error == REPLAY_OK)
		b.bodies[PART_REFERENCE] = body_shared_get(reference ? reference : &b.own[PART_REFERENCE],
							   &x->reference, cfg->max_decompressed, cfg->max_depth);
	for (int r = 0; r < ROLE_COUNT; r++) {
		if (x->have[r] && x->replies[r].error == REPLAY_OK && (r == ROLE_CANDIDATE || x->want[r]))
			b.bodies[PART_CANDIDATE + r] =
				body_shared_get(replies ? &replies[r] : &b.own[PART_CANDIDATE + r],
						&x->replies[r], cfg->max_decompressed, cfg->max_depth);
	}

	if (selected) {
		rc = build_within(&b, &cut);
		if (rc != 1) {
			if (p->kind == SINK_KAFKA)
				stats.kafka_dropped++;
			else
				stats.sink_errors++;
			ratelog_hit(p, &p->drop_log, x->id,
				    rc == 0 ? "message over max_message even without bodies, dropped" :
				    "out of memory building the message, dropped");
		} else {
			if (cut)
				stats.messages_cut++;
			if (p->kind == SINK_KAFKA)
				kafka_send(p, x, p->msg.b.p, p->msg.b.len);
			else if (out_line(p, p->msg.b.p, p->msg.b.len))
				stats.published++;
		}
	}
	if (sampled)
		sample(p, &b, x, o, diffs, selected && rc == 1);
	for (int i = 0; i < PART_COUNT; i++)
		body_shared_clear(&b.own[i]);
}

void publish_reopen(struct publish *p)
{
	char err[256];
	int old;

	if (!p || p->kind != SINK_FILE)
		return;
	old = p->fd;
	/* Lines already accepted go to the file they were written for. */
	if (p->out.len && old != -1)
		out_drain(p);
	if (out_open(p, err, sizeof(err)) == -1) {
		log_error("publish: reopen: %s (still writing to the old file)", err);
		return;
	}
	if (old != -1 && old != p->fd)
		close(old);
	if (p->out.len)
		out_drain(p);
}

void publish_free(struct publish *p, double timeout)
{
	if (!p)
		return;
	ev_timer_stop(p->loop, &p->tick);
	if (p->rk) {
		rd_kafka_queue_t *q;

		if (p->inflight || p->stats_inflight)
			rd_kafka_flush(p->rk, timeout > 0 ? (int)(timeout * 1000) : 0);
		kafka_serve(p);
		if (p->inflight) {
			log_warn("publish: %llu messages not delivered within %.1fs, counted as failed",
				 (unsigned long long)p->inflight, timeout);
			stats.kafka_failed += p->inflight;
			p->inflight = 0;
		}
		p->closing = true;
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		q = rd_kafka_queue_get_main(p->rk);
		rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
		rd_kafka_queue_destroy(q);
		if (p->rkt)
			rd_kafka_topic_destroy(p->rkt);
		if (p->stats_rkt)
			rd_kafka_topic_destroy(p->stats_rkt);
		rd_kafka_destroy(p->rk);
		stats.kafka_queue_depth = 0;
	}
	if (p->wake[0] != -1) {
		ev_io_stop(p->loop, &p->wake_io);
		close(p->wake[0]);
		close(p->wake[1]);
	}
	if (p->out.len && p->fd != -1) {
		/* Last chance for lines a slow reader left behind; what still does
		 * not go through is counted. */
		int fl = fcntl(p->fd, F_GETFL);

		if (fl != -1 && (fl & O_NONBLOCK))
			fcntl(p->fd, F_SETFL, fl & ~O_NONBLOCK);
		out_drain(p);
		if (p->out.len)
			out_discard(p, "lines left at shutdown");
	}
	ev_io_stop(p->loop, &p->out_io);
	ratelog_flush(p, &p->drop_log, true);
	ratelog_flush(p, &p->fail_log, true);
	ratelog_flush(p, &p->err_log, true);
	ratelog_flush(p, &p->write_log, true);
	ratelog_flush(p, &p->limit_log, true);
	if (p->kind == SINK_FILE && p->fd != -1)
		close(p->fd);
	buf_free(&p->out);
	free(p->path);
	jsonw_free(&p->msg);
	free(p);
}
