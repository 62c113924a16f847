/* The fleet's reader. One librdkafka consumer, assigned every partition of
 * both topics from the beginning (no consumer group shares them out, so
 * every report sees everything and several reports show the same view),
 * polled from the loop. The latest snapshot of each (instance, epoch) is
 * kept; the view is their sum, rebuilt into stats' tables when one changes,
 * so /stats and /metrics are stats' own renderings. A prober thread asks
 * Kafka for a watermark every PROBE_INTERVAL: no answer for STALE_SECONDS
 * and the view, still served, is marked stale. */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ev.h>
#include <librdkafka/rdkafka.h>

#include "admin.h"
#include "buf.h"
#include "config.h"
#include "jsonw.h"
#include "log.h"
#include "names.h"
#include "publish.h"
#include "samples.h"
#include "snapshot.h"
#include "stats.h"
#include "verdict.h"

#define POLL_INTERVAL 0.05          /* s between two polls of the consumer */
#define POLL_BURST 1000             /* messages handled per poll at most */
#define REBUILD_INTERVAL 0.2        /* s: the view is rebuilt at most this often */
#define PROBE_INTERVAL 0.5          /* s between two questions to Kafka */
#define PROBE_TIMEOUT_MS 1000
#define STALE_SECONDS 3.0           /* no answer from Kafka for this long: stale */
#define ASSIGN_RETRY 1.0            /* s between two looks for a missing topic */
#define METADATA_TIMEOUT_MS 1000
#define MAX_PARTITIONS 4096
#define AGENTS_LISTED 1000          /* epochs listed in /stats' "fleet" */

enum topic_id { TOPIC_STATS = 0, TOPIC_DIFFS, TOPIC_COUNT };

enum skipped { SKIP_FOREIGN = 0, SKIP_GARBAGE, SKIP_NEWER, SKIP_OLDER, SKIP_OVERFLOW, SKIPPED_COUNT };
static const char *const skipped_names[SKIPPED_COUNT] = { "foreign", "garbage", "newer_version", "superseded",
							   "over_max_epochs" };

struct report {
	struct ev_loop *loop;
	struct config *cfg;
	rd_kafka_t *rk;
	const char *topics[TOPIC_COUNT];
	bool assigned[TOPIC_COUNT];
	int partitions[TOPIC_COUNT];
	bool *at_eof;                   /* per stats partition: reached its end once */
	int eof_left;                   /* stats partitions not yet at their end */
	bool loaded;                    /* every stats partition read to its end once */

	struct snapshot_epochs epochs;  /* the latest snapshot of each agent epoch */
	bool dirty;
	ev_tstamp last_rebuild;

	uint64_t snapshots, differences;
	uint64_t skipped[TOPIC_COUNT][SKIPPED_COUNT];

	struct samples *samples;
	struct admin *admin;
	ev_timer poll, assign;
	ev_signal sigterm, sigint, sigusr2;

	pthread_t prober;
	bool prober_started;
	atomic_bool stop;
	atomic_llong last_contact_ms;   /* monotonic ms of Kafka's last answer, 0: never */
};

static long long monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the consumer -------------------------------------------------------- */

/* A consumer of cfg's brokers that commits nothing: offsets are never
 * shared, each reader starts from the beginning. */
static rd_kafka_t *consumer_new(const struct config *cfg, bool eof, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char group[96], why[256];
	rd_kafka_t *rk;

	snprintf(group, sizeof(group), "miffy-report-%ld-%lld", (long)getpid(), monotonic_ms());
	if (!cfg->kafka_brokers || !*cfg->kafka_brokers) {
		snprintf(err, errlen, "no Kafka brokers (--kafka HOST:PORT)");
		goto fail;
	}
	if (publish_kafka_set(conf, "bootstrap.servers", cfg->kafka_brokers, err, errlen) < 0 ||
	    publish_kafka_set(conf, "client.id", "miffy-report", err, errlen) < 0 ||
	    publish_kafka_set(conf, "group.id", group, err, errlen) < 0 ||
	    publish_kafka_set(conf, "enable.auto.commit", "false", err, errlen) < 0 ||
	    publish_kafka_set(conf, "enable.auto.offset.store", "false", err, errlen) < 0 ||
	    publish_kafka_set(conf, "auto.offset.reset", "earliest", err, errlen) < 0 ||
	    publish_kafka_set(conf, "enable.partition.eof", eof ? "true" : "false", err, errlen) < 0 ||
	    publish_kafka_set(conf, "fetch.message.max.bytes", "1048576", err, errlen) < 0 ||
	    publish_kafka_set(conf, "fetch.wait.max.ms", "50", err, errlen) < 0 ||
	    publish_kafka_set(conf, "reconnect.backoff.max.ms", "1000", err, errlen) < 0 ||
	    publish_kafka_set(conf, "log_level", "3", err, errlen) < 0)
		goto fail;
	/* The agents' kafka_properties (security, ...): the report reads the
	 * same cluster; producer-only ones are ignored by librdkafka. */
	if (publish_kafka_properties(conf, cfg, err, errlen) < 0)
		goto fail;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
	if (!rk) {
		snprintf(err, errlen, "kafka: %s", why);
		goto fail;
	}
	rd_kafka_poll_set_consumer(rk);
	return rk;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* The partition count of topic, 0 when it does not exist (yet), -1 when
 * Kafka did not answer. */
static int partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err, size_t errlen)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e;
	int n = -1;

	if (!rkt) {
		snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
	if (e) {
		snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(e));
	} else if (md->topic_cnt != 1 || md->topics[0].err) {
		snprintf(err, errlen, "topic %s: %s", topic,
			 md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
		/* Only a topic Kafka does not know is empty: a leader being
		 * elected, for one, is worth asking again. */
		if (!md->topic_cnt || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
			n = 0;
	} else {
		n = md->topics[0].partition_cnt;
		if (n > MAX_PARTITIONS)
			n = MAX_PARTITIONS;
	}
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return n;
}

static int assign_all(rd_kafka_t *rk, const char *topic, int n, char *err, size_t errlen)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
	rd_kafka_error_t *e;

	for (int i = 0; i < n; i++)
		rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
	e = rd_kafka_incremental_assign(rk, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (e) {
		snprintf(err, errlen, "assign %s: %s", topic, rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
		return -1;
	}
	return 0;
}

int report_scan(const struct config *cfg, const char *topic, double timeout, report_each_fn fn, void *ctx,
		char *err, size_t errlen)
{
	long long deadline = monotonic_ms() + (long long)(timeout * 1000);
	rd_kafka_topic_partition_list_t *l = NULL;
	int64_t *end = NULL;
	int n, left = 0, rc = -1;
	rd_kafka_t *rk = consumer_new(cfg, false, err, errlen);

	if (!rk)
		return -1;
	while ((n = partition_count(rk, topic, (int)(timeout * 1000), err, errlen)) < 0 &&
	       monotonic_ms() + 100 < deadline)
		usleep(100 * 1000);
	if (n == 0) {
		rc = 0;                 /* nothing was ever published */
		goto out;
	}
	if (n < 0)
		goto out;
	end = calloc((size_t)n, sizeof(*end));
	l = rd_kafka_topic_partition_list_new(n);
	if (!end || !l) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int64_t lo, hi;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, i, &lo, &hi,
									  (int)(deadline - monotonic_ms()));

		if (e) {
			snprintf(err, errlen, "%s [%d]: %s", topic, i, rd_kafka_err2str(e));
			goto out;
		}
		end[i] = hi;
		if (hi > lo) {
			rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
			left++;
		}
	}
	if (left && rd_kafka_assign(rk, l)) {
		snprintf(err, errlen, "cannot assign %s", topic);
		goto out;
	}
	while (left > 0) {
		long long wait = deadline - monotonic_ms();
		rd_kafka_message_t *m;

		if (wait <= 0) {
			snprintf(err, errlen, "%s not read to its end within %.1fs", topic, timeout);
			goto out;
		}
		m = rd_kafka_consumer_poll(rk, (int)(wait < 100 ? wait : 100));
		if (!m)
			continue;
		if (!m->err && m->partition >= 0 && m->partition < n) {
			fn(m->payload, m->len, ctx);
			if (m->offset + 1 == end[m->partition])
				left--;
		}
		rd_kafka_message_destroy(m);
	}
	rc = 0;
out:
	if (l)
		rd_kafka_topic_partition_list_destroy(l);
	free(end);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return rc;
}

/* ---- the view -------------------------------------------------------------- */

/* Keeps s (taken over) when it is the latest of its epoch. */
static void take_snapshot(struct report *r, struct snapshot *s)
{
	char instance[128];

	snprintf(instance, sizeof(instance), "%s", s->instance);
	switch (snapshot_epochs_put(&r->epochs, s)) {
	case SNAPSHOT_TAKEN:
		r->snapshots++;
		r->dirty = true;
		break;
	case SNAPSHOT_SUPERSEDED:
		/* A duplicate (a producer retry) or an older one: never twice. */
		r->skipped[TOPIC_STATS][SKIP_OLDER]++;
		break;
	case SNAPSHOT_FULL:
		r->skipped[TOPIC_STATS][SKIP_OVERFLOW]++;
		log_warn("report: more than %d agent epochs, snapshot of %s skipped", SNAPSHOT_EPOCHS_MAX, instance);
		break;
	case SNAPSHOT_NOMEM:
		r->skipped[TOPIC_STATS][SKIP_OVERFLOW]++;
		log_warn("report: out of memory, snapshot of %s skipped", instance);
		break;
	}
}

static void on_stats_message(struct report *r, const rd_kafka_message_t *m)
{
	struct snapshot s;
	char err[256];
	enum snapshot_kind k = snapshot_decode(m->payload, m->len, &s, err, sizeof(err));

	if (k == SNAPSHOT_OK) {
		take_snapshot(r, &s);
		return;
	}
	r->skipped[TOPIC_STATS][k == SNAPSHOT_FOREIGN ? SKIP_FOREIGN : k == SNAPSHOT_NEWER ? SKIP_NEWER
												: SKIP_GARBAGE]++;
	log_warn("report: %s [%" PRId32 "] offset %" PRId64 " skipped: %s", r->topics[TOPIC_STATS], m->partition,
		 m->offset, err);
}

static int outcome_of(const char *name)
{
	for (int o = 0; o < OUTCOME_COUNT; o++)
		if (strcmp(outcome_name((enum outcome)o), name) == 0)
			return o;
	return -1;
}

/* A difference message (docs/message.md) for the dashboard's samples. */
static void on_difference(struct report *r, const rd_kafka_message_t *m)
{
	cJSON *doc = cJSON_ParseWithLength(m->payload, m->len);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
	const cJSON *ep = cJSON_GetObjectItemCaseSensitive(doc, "endpoint");
	const cJSON *out = cJSON_GetObjectItemCaseSensitive(doc, "outcome");
	const cJSON *diffs = cJSON_GetObjectItemCaseSensitive(doc, "differences"), *d;
	struct sample_field fields[SAMPLES_MAX_FIELDS];
	char keys[SAMPLES_MAX_FIELDS][256];
	size_t nfields = 0;
	int o = cJSON_IsString(out) ? outcome_of(out->valuestring) : -1;

	if (!doc || !cJSON_IsString(id) || !cJSON_IsString(ep) || o < 0) {
		r->skipped[TOPIC_DIFFS][doc ? SKIP_FOREIGN : SKIP_GARBAGE]++;
		log_warn("report: %s [%" PRId32 "] offset %" PRId64 " skipped: %s", r->topics[TOPIC_DIFFS],
			 m->partition, m->offset, doc ? "not a miffy difference message (no id, endpoint, outcome)"
						      : "not JSON");
		cJSON_Delete(doc);
		return;
	}
	r->differences++;
	cJSON_ArrayForEach(d, diffs) {
		const cJSON *where = cJSON_GetObjectItemCaseSensitive(d, "where");
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(d, "path");
		const cJSON *kind = cJSON_GetObjectItemCaseSensitive(d, "kind");
		const char *w = cJSON_IsString(where) ? where->valuestring : "body";
		const char *p = cJSON_IsString(path) ? path->valuestring : "";

		if (nfields == SAMPLES_MAX_FIELDS)
			break;
		/* diff_field_key()'s keys, from the message. */
		if (strcmp(w, "status") == 0)
			snprintf(keys[nfields], sizeof(keys[0]), "status");
		else if (strcmp(w, "header") == 0)
			snprintf(keys[nfields], sizeof(keys[0]), "header:%s", p);
		else if (p[0])
			snprintf(keys[nfields], sizeof(keys[0]), "body:%s", p);
		else
			snprintf(keys[nfields], sizeof(keys[0]), "body");
		fields[nfields] = (struct sample_field){
			.key = keys[nfields], .kind = cJSON_IsString(kind) ? kind->valuestring : "value",
			.noise = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "noise")),
		};
		nfields++;
	}
	if (r->samples && (o == OUTCOME_DIFFERENT || o == OUTCOME_NOISE || o == OUTCOME_CANDIDATE_ERROR))
		samples_add(r->samples, id->valuestring, ep->valuestring, (enum outcome)o, fields, nfields,
			    m->payload, m->len, ev_time());
	cJSON_Delete(doc);
}

static void rebuild(struct report *r)
{
	double started = stats.started;

	stats_reset();
	stats.started = started;
	stats_set_samples(r->samples);
	for (size_t i = 0; i < r->epochs.n; i++)
		stats_import(&r->epochs.items[i]);
	r->dirty = false;
	r->last_rebuild = ev_now(r->loop);
}

static bool stale(const struct report *r, double *since)
{
	long long last = atomic_load(&r->last_contact_ms);

	*since = last ? (double)(monotonic_ms() - last) / 1000.0 : -1;
	return !last || *since > STALE_SECONDS;
}

static const char *status_of(const struct report *r, double *since)
{
	if (stale(r, since))
		return "stale";
	return r->loaded ? "ok" : "loading";
}

static void publish_status(struct report *r)
{
	double since;
	const char *status = status_of(r, &since);
	char detail[256];

	snprintf(detail, sizeof(detail), "\"role\":\"report\",\"kafka_last_contact_seconds\":%.3f,\"epochs\":%zu",
		 since, r->epochs.n);
	admin_set_status(r->admin, status, detail);
}

/* /stats' "fleet": what the view is made of. */
static void write_fleet(struct jsonw *w, void *ctx)
{
	struct report *r = ctx;
	double since, now = ev_time();
	const char *status = status_of(r, &since);
	size_t instances = 0;

	for (size_t i = 0; i < r->epochs.n; i++) {
		bool first = true;

		for (size_t k = 0; k < i && first; k++)
			first = strcmp(r->epochs.items[k].instance, r->epochs.items[i].instance) != 0;
		instances += first;
	}
	jsonw_keyc(w, "fleet");
	jsonw_open(w, '{');
	jsonw_keyc(w, "status");
	jsonw_cstring(w, status);
	jsonw_keyc(w, "stale");
	jsonw_bool(w, strcmp(status, "stale") == 0);
	jsonw_keyc(w, "kafka_last_contact_seconds");
	jsonw_fixed(w, since, 3);
	jsonw_keyc(w, "instances");
	jsonw_uint(w, instances);
	jsonw_keyc(w, "epochs");
	jsonw_uint(w, r->epochs.n);
	jsonw_keyc(w, "snapshots");
	jsonw_uint(w, r->snapshots);
	jsonw_keyc(w, "differences");
	jsonw_uint(w, r->differences);
	for (int t = 0; t < TOPIC_COUNT; t++) {
		jsonw_keyc(w, t == TOPIC_STATS ? "skipped_stats" : "skipped_differences");
		jsonw_open(w, '{');
		for (int k = 0; k < SKIPPED_COUNT; k++) {
			jsonw_keyc(w, skipped_names[k]);
			jsonw_uint(w, r->skipped[t][k]);
		}
		jsonw_close(w, '}');
	}
	jsonw_keyc(w, "agents");
	jsonw_open(w, '[');
	for (size_t i = 0; i < r->epochs.n && i < AGENTS_LISTED; i++) {
		const struct snapshot *s = &r->epochs.items[i];

		jsonw_open(w, '{');
		jsonw_keyc(w, "instance");
		jsonw_cstring(w, s->instance);
		jsonw_keyc(w, "epoch");
		jsonw_int(w, s->epoch);
		jsonw_keyc(w, "seq");
		jsonw_uint(w, s->seq);
		jsonw_keyc(w, "final");
		jsonw_bool(w, s->final);
		jsonw_keyc(w, "age_seconds");
		jsonw_fixed(w, now - s->time, 3);
		jsonw_close(w, '}');
	}
	jsonw_close(w, ']');
	jsonw_close(w, '}');
}

static void write_fleet_metrics(struct buf *b, void *ctx)
{
	struct report *r = ctx;
	double since;
	const char *status = status_of(r, &since);

	buf_printf(b, "# HELP miffy_report_stale 1 while Kafka has not answered for %.0f s (the view is the last one "
		      "read), or before the snapshots were read to their end.\n# TYPE miffy_report_stale gauge\n"
		      "miffy_report_stale %d\n", STALE_SECONDS, strcmp(status, "ok") != 0);
	buf_printf(b, "# HELP miffy_report_epochs Agent epochs (a start each) merged in the view.\n"
		      "# TYPE miffy_report_epochs gauge\nmiffy_report_epochs %zu\n", r->epochs.n);
	buf_printf(b, "# HELP miffy_report_skipped_total Messages skipped, by topic and reason.\n"
		      "# TYPE miffy_report_skipped_total counter\n");
	for (int t = 0; t < TOPIC_COUNT; t++)
		for (int k = 0; k < SKIPPED_COUNT; k++)
			buf_printf(b, "miffy_report_skipped_total{topic=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				   t == TOPIC_STATS ? "stats" : "differences", skipped_names[k], r->skipped[t][k]);
}

/* ---- the loop --------------------------------------------------------------- */

static void on_message(struct report *r, rd_kafka_message_t *m)
{
	const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
	bool is_stats = strcmp(topic, r->topics[TOPIC_STATS]) == 0;

	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		if (is_stats && m->partition >= 0 && m->partition < r->partitions[TOPIC_STATS] &&
		    !r->at_eof[m->partition]) {
			r->at_eof[m->partition] = true;
			if (--r->eof_left == 0 && !r->loaded) {
				r->loaded = true;
				log_info("report: %s read to its end: %zu agent epochs, %" PRIu64 " snapshots",
					 r->topics[TOPIC_STATS], r->epochs.n, r->snapshots);
			}
		}
		return;
	}
	if (m->err) {
		log_debug("report: kafka: %s", rd_kafka_message_errstr(m));
		return;
	}
	atomic_store(&r->last_contact_ms, monotonic_ms());
	if (is_stats)
		on_stats_message(r, m);
	else
		on_difference(r, m);
}

static void on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct report *r = w->data;

	(void)revents;
	for (int i = 0; i < POLL_BURST; i++) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 0);

		if (!m)
			break;
		on_message(r, m);
		rd_kafka_message_destroy(m);
	}
	if (r->dirty && ev_now(loop) - r->last_rebuild >= REBUILD_INTERVAL)
		rebuild(r);
	publish_status(r);
}

/* Assigns each topic once it exists; retried until both are. */
static void on_assign(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct report *r = w->data;
	char err[256];

	(void)revents;
	for (int t = 0; t < TOPIC_COUNT; t++) {
		int n;

		if (r->assigned[t])
			continue;
		n = partition_count(r->rk, r->topics[t], METADATA_TIMEOUT_MS, err, sizeof(err));
		if (n <= 0) {
			log_debug("report: %s", err);
			/* A stats topic that does not exist has nothing to read. */
			if (t == TOPIC_STATS && n == 0 && !r->loaded) {
				r->loaded = true;
				log_info("report: %s does not exist yet: no snapshots to read", r->topics[t]);
			}
			continue;
		}
		if (t == TOPIC_STATS) {
			r->at_eof = calloc((size_t)n, sizeof(*r->at_eof));
			if (!r->at_eof)
				continue;
			r->eof_left = n;
			r->loaded = false;
		}
		if (assign_all(r->rk, r->topics[t], n, err, sizeof(err)) < 0) {
			log_warn("report: %s", err);
			continue;
		}
		r->partitions[t] = n;
		r->assigned[t] = true;
		log_info("report: reading %s, %d partitions, from the beginning", r->topics[t], n);
	}
	if (r->assigned[TOPIC_STATS] && r->assigned[TOPIC_DIFFS])
		ev_timer_stop(loop, w);
}

static void *probe(void *arg)
{
	struct report *r = arg;

	while (!atomic_load(&r->stop)) {
		int64_t lo, hi;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(r->rk, r->topics[TOPIC_STATS], 0, &lo, &hi,
									  PROBE_TIMEOUT_MS);

		/* Any answer of a broker (an unknown topic too) is contact. */
		if (e != RD_KAFKA_RESP_ERR__TIMED_OUT && e != RD_KAFKA_RESP_ERR__TRANSPORT &&
		    e != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && e != RD_KAFKA_RESP_ERR__WAIT_COORD)
			atomic_store(&r->last_contact_ms, monotonic_ms());
		for (int i = 0; i < 5 && !atomic_load(&r->stop); i++)
			usleep((useconds_t)(PROBE_INTERVAL * 1e6 / 5));
	}
	return NULL;
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	log_info("report: stopping");
	ev_break(loop, EVBREAK_ALL);
}

static void on_usr2(struct ev_loop *loop, ev_signal *w, int revents)
{
	char *text = stats_json_text(NULL);

	(void)loop;
	(void)w;
	(void)revents;
	if (text)
		text[strcspn(text, "\n")] = '\0';
	log_info("stats %s", text ? text : "{}");
	free(text);
}

static void report_free(struct report *r)
{
	if (r->prober_started) {
		atomic_store(&r->stop, true);
		pthread_join(r->prober, NULL);
	}
	admin_free(r->admin);
	stats_set_extra(NULL, NULL, NULL);
	stats_set_samples(NULL);
	samples_free(r->samples);
	if (r->rk) {
		rd_kafka_consumer_close(r->rk);
		rd_kafka_destroy(r->rk);
	}
	snapshot_epochs_clear(&r->epochs);
	free(r->at_eof);
}

int report_run(struct config *cfg)
{
	struct report r;
	char err[512] = "";
	int rc = 1;

	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	r.topics[TOPIC_STATS] = cfg->stats_topic;
	r.topics[TOPIC_DIFFS] = cfg->topic;
	r.loop = ev_default_loop(EVFLAG_AUTO);
	stats.started = ev_time();
	/* The verdicts are computed from the merged counts, by the report's
	 * own rule (the same keys as an agent's). */
	stats_set_latency_rule(&(struct latency_rule){ .tolerance = cfg->latency_tolerance,
						       .floor_ms = cfg->latency_floor_ms,
						       .min_count = cfg->latency_min_count });
	r.rk = consumer_new(cfg, true, err, sizeof(err));
	if (!r.rk) {
		fprintf(stderr, "miffy report: %s\n", err);
		rc = 2;
		goto out;
	}
	if (strcmp(cfg->admin, "off") != 0 && cfg->samples_per_endpoint > 0) {
		struct samples_limits lim = {
			.per_endpoint = cfg->samples_per_endpoint, .per_field = cfg->samples_per_field,
			.endpoint_bytes = cfg->samples_endpoint_bytes, .max_count = cfg->samples_max,
			.max_bytes = cfg->samples_max_bytes,
		};

		r.samples = samples_new(&lim, err, sizeof(err));
		if (!r.samples) {
			fprintf(stderr, "miffy report: %s\n", err);
			goto out;
		}
		stats_set_samples(r.samples);
	}
	stats_set_extra(write_fleet, write_fleet_metrics, &r);
	if (strcmp(cfg->admin, "off") != 0) {
		r.admin = admin_new(r.loop, cfg, err, sizeof(err));
		if (!r.admin) {
			fprintf(stderr, "miffy report: admin: %s\n", err);
			goto out;
		}
		admin_set_samples(r.admin, r.samples);
		publish_status(&r);
	}
	if (pthread_create(&r.prober, NULL, probe, &r) != 0) {
		fprintf(stderr, "miffy report: cannot start the prober thread\n");
		goto out;
	}
	r.prober_started = true;
	ev_signal_init(&r.sigterm, on_stop, SIGTERM);
	ev_signal_init(&r.sigint, on_stop, SIGINT);
	ev_signal_init(&r.sigusr2, on_usr2, SIGUSR2);
	ev_signal_start(r.loop, &r.sigterm);
	ev_signal_start(r.loop, &r.sigint);
	ev_signal_start(r.loop, &r.sigusr2);
	ev_timer_init(&r.poll, on_poll, 0., POLL_INTERVAL);
	r.poll.data = &r;
	ev_timer_start(r.loop, &r.poll);
	ev_timer_init(&r.assign, on_assign, 0., ASSIGN_RETRY);
	r.assign.data = &r;
	ev_timer_start(r.loop, &r.assign);
	log_info("miffy %s report: kafka %s, topics %s and %s, admin %s", MIFFY_VERSION, cfg->kafka_brokers,
		 cfg->stats_topic, cfg->topic, cfg->admin);
	ev_run(r.loop, 0);
	rc = 0;
out:
	report_free(&r);
	stats_free();
	ev_loop_destroy(r.loop);
	return rc;
}
