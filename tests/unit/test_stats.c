/* Unit tests of stats (Prometheus rendering, per-endpoint view) and of the
 * admin server's snapshot and liveness logic on a real libev loop. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ev.h>

#include "admin.h"
#include "compare.h"
#include "config.h"
#include "exchange.h"
#include "minutes.h"
#include "samples.h"
#include "admit-t.h"
#include "stats.h"
#include "verdict.h"

/* ---- helpers ----------------------------------------------------------- */

static int reset(void **state)
{
	(void)state;
	stats_reset();
	return 0;
}

/* An exchange of endpoint with the given latencies (ms; < 0: none). */
static struct exchange make_exchange(const char *id, const char *endpoint, double ref_ms, double cand_ms)
{
	struct exchange x;

	memset(&x, 0, sizeof(x));
	x.id = (char *)(uintptr_t)id;
	x.endpoint = (char *)(uintptr_t)endpoint;
	if (ref_ms >= 0) {
		x.have_reference = true;
		x.reference.latency_ms = ref_ms;
	}
	if (cand_ms >= 0) {
		x.want[ROLE_CANDIDATE] = x.have[ROLE_CANDIDATE] = true;
		x.replies[ROLE_CANDIDATE].latency_ms = cand_ms;
	}
	return x;
}

static void add_diff(struct diff_list *l, enum diff_where where, const char *path, bool noise)
{
	l->items = realloc(l->items, (l->count + 1) * sizeof(*l->items));
	assert_non_null(l->items);
	memset(&l->items[l->count], 0, sizeof(l->items[0]));
	l->items[l->count].where = where;
	l->items[l->count].path = strdup(path);
	l->items[l->count].noise = noise;
	l->count++;
	l->cap = l->count;
}

static cJSON *endpoint_doc(cJSON *doc, const char *name)
{
	cJSON *e = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "endpoints"), name);

	assert_non_null(e);
	return e;
}

static double num(cJSON *o, const char *path)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
		o = cJSON_GetObjectItemCaseSensitive(o, k);
		if (!o)
			fail_msg("no %s in the document (at %s)", path, k);
	}
	assert_true(cJSON_IsNumber(o));
	return o->valuedouble;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

/* ---- Prometheus helpers --------------------------------------------------- */

static void test_label_values_are_escaped(void **state)
{
	char *s;

	(void)state;
	s = stats_prom_escape("GET /a\"b\\c\nd");
	assert_string_equal(s, "GET /a\\\"b\\\\c\\nd");
	free(s);
	s = stats_prom_escape("");
	assert_string_equal(s, "");
	free(s);
	s = stats_prom_escape("plain /api/:id");
	assert_string_equal(s, "plain /api/:id");
	free(s);
}

static void test_bytes_that_are_not_utf8_become_replacement_characters(void **state)
{
	struct exchange x = make_exchange("i\x01d", "GET /caf\xc3\xa9/\xff\xfe\"\t", 1, 1);
	struct diff_list d = { 0 };
	size_t len;
	char *s, *text;
	cJSON *doc, *e;

	(void)state;
	s = stats_prom_escape("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xc3|\xed\xa0\x80|\xc0\xaf");
	/* Valid sequences stay; a cut one, a surrogate and an overlong are replaced. */
	assert_string_equal(s, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xef\xbf\xbd|"
			    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd");
	free(s);
	add_diff(&d, DIFF_HEADER, "x-\xff", false);
	stats_exchange_done(&x, OUTCOME_DIFFERENT, &d);
	text = stats_metrics_text(&len);
	assert_non_null(strstr(text, "endpoint=\"GET /caf\xc3\xa9/\xef\xbf\xbd\xef\xbf\xbd\\\"\t\""));
	free(text);
	doc = stats_json();                 /* parses the text rendering */
	assert_non_null(doc);
	e = endpoint_doc(doc, "GET /caf\xc3\xa9/\xef\xbf\xbd\xef\xbf\xbd\"\t");
	assert_int_equal(num(e, "fields.header:x-\xef\xbf\xbd.raw"), 1);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "last_differences"), 0), "id")->valuestring,
		"i\x01d");
	cJSON_Delete(doc);
	diff_list_clear(&d);
}

static void test_histogram_buckets_are_cumulative_with_inf_equal_to_count(void **state)
{
	struct stats_hist h;
	char *text;

	(void)state;
	memset(&h, 0, sizeof(h));
	stats_hist_observe(&h, 0.0005);
	stats_hist_observe(&h, 0.001);     /* le is inclusive */
	stats_hist_observe(&h, 0.003);
	stats_hist_observe(&h, 0.2);
	stats_hist_observe(&h, 100);       /* only in +Inf */
	stats_hist_observe(&h, -1);        /* clock went back: counted as 0 */
	stats_hist_observe(&h, NAN);
	assert_int_equal(h.count, 7);
	text = stats_hist_text("miffy_t_seconds", "source=\"reference\"", &h);
	assert_non_null(text);
	assert_true(has_line(text, "miffy_t_seconds_bucket{source=\"reference\",le=\"0.001\"} 4"));
	assert_true(has_line(text, "miffy_t_seconds_bucket{source=\"reference\",le=\"0.0025\"} 4"));
	assert_true(has_line(text, "miffy_t_seconds_bucket{source=\"reference\",le=\"0.005\"} 5"));
	assert_true(has_line(text, "miffy_t_seconds_bucket{source=\"reference\",le=\"0.25\"} 6"));
	assert_true(has_line(text, "miffy_t_seconds_bucket{source=\"reference\",le=\"30\"} 6"));
	assert_true(has_line(text, "miffy_t_seconds_bucket{source=\"reference\",le=\"+Inf\"} 7"));
	assert_true(has_line(text, "miffy_t_seconds_sum{source=\"reference\"} 100.2045"));
	assert_true(has_line(text, "miffy_t_seconds_count{source=\"reference\"} 7"));
	free(text);
	text = stats_hist_text("miffy_u", "", &h);
	assert_true(has_line(text, "miffy_u_bucket{le=\"+Inf\"} 7"));
	assert_true(has_line(text, "miffy_u_count 7"));
	free(text);
}

static void test_ack_histogram_has_microsecond_buckets_in_metrics_and_stats(void **state)
{
	char *text, *json;

	(void)state;
	stats_free();
	stats_ack_observe(0.000004);       /* 4 us */
	stats_ack_observe(0.0003);         /* 300 us */
	stats_ack_observe(0.002);          /* 2 ms: past the 1 ms budget */
	text = stats_metrics_text(NULL);
	assert_non_null(text);
	assert_true(has_line(text, "# TYPE miffy_spop_ack_latency_seconds histogram"));
	assert_true(has_line(text, "miffy_spop_ack_latency_seconds_bucket{le=\"1e-05\"} 1"));
	assert_true(has_line(text, "miffy_spop_ack_latency_seconds_bucket{le=\"0.0005\"} 2"));
	assert_true(has_line(text, "miffy_spop_ack_latency_seconds_bucket{le=\"0.001\"} 2"));
	assert_true(has_line(text, "miffy_spop_ack_latency_seconds_bucket{le=\"0.0025\"} 3"));
	assert_true(has_line(text, "miffy_spop_ack_latency_seconds_count 3"));
	free(text);
	json = stats_json_text(NULL);
	assert_non_null(json);
	assert_non_null(strstr(json, "\"ack_latency\":{\"count\":3,\"within_1ms\":2,\"max_ms\":2.000}"));
	free(json);
	stats_free();
	/* stats_free() keeps the ACK histogram's own bounds. */
	stats_ack_observe(0.00002);
	text = stats_metrics_text(NULL);
	assert_true(has_line(text, "miffy_spop_ack_latency_seconds_bucket{le=\"2.5e-05\"} 1"));
	free(text);
	stats_free();
}

static void test_metrics_have_help_and_type_before_samples(void **state)
{
	struct exchange x = make_exchange("id1", "GET /q\"uote", 2, 3);
	size_t len = 0;
	char *text, *save = NULL, *line;
	char family[128] = "";

	(void)state;
	stats_exchange_done(&x, OUTCOME_EQUAL, NULL);
	text = stats_metrics_text(&len);
	assert_non_null(text);
	assert_int_equal(len, strlen(text));
	assert_int_equal(text[len - 1], '\n');
	assert_true(has_line(text, "miffy_endpoint_exchanges_total{endpoint=\"GET /q\\\"uote\",outcome=\"equal\"} 1"));
	assert_true(has_line(text, "miffy_exchanges_total{outcome=\"equal\"} 1"));
	assert_true(has_line(text, "miffy_latency_seconds_count{source=\"candidate\"} 1"));
	assert_true(has_line(text, "# TYPE miffy_latency_seconds histogram"));
	assert_true(has_line(text, "miffy_spop_disconnects_sent_total{status=\"other\"} 0"));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0)
			continue;
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_int_equal(sscanf(line + 7, "%127s", family), 1);
			if (strstr(line, " counter"))
				assert_non_null(strstr(family, "_total"));
			continue;
		}
		assert_true(family[0]);
		assert_memory_equal(line, family, strlen(family));
	}
	free(text);
}

/* ---- the per-endpoint view --------------------------------------------- */

static void test_fields_count_once_per_exchange_and_noise_apart(void **state)
{
	struct diff_list d1 = { 0 }, d2 = { 0 };
	struct exchange x1 = make_exchange("a", "GET /api/:id", 1, 1);
	struct exchange x2 = make_exchange("b", "GET /api/:id", 1, 1);
	cJSON *doc, *e;

	(void)state;
	add_diff(&d1, DIFF_BODY, "/price", false);
	add_diff(&d1, DIFF_BODY, "/price", false);   /* same field twice: one exchange */
	add_diff(&d1, DIFF_HEADER, "x-version", false);
	add_diff(&d2, DIFF_BODY, "/price", true);
	add_diff(&d2, DIFF_STATUS, "", false);
	add_diff(&d2, DIFF_BODY, "", false);
	stats_exchange_done(&x1, OUTCOME_DIFFERENT, &d1);
	stats_exchange_done(&x2, OUTCOME_NOISE, &d2);
	doc = stats_json();
	e = endpoint_doc(doc, "GET /api/:id");
	assert_int_equal(num(e, "fields.body:/price.raw"), 2);
	assert_int_equal(num(e, "fields.body:/price.noise"), 1);
	assert_int_equal(num(e, "fields.header:x-version.raw"), 1);
	assert_int_equal(num(e, "fields.status.raw"), 1);
	assert_int_equal(num(e, "fields.body.raw"), 1);
	assert_int_equal(num(e, "total"), 2);
	assert_int_equal(num(e, "different_pct"), 50);
	assert_int_equal(num(e, "noise_pct"), 50);
	cJSON_Delete(doc);
	diff_list_clear(&d1);
	diff_list_clear(&d2);
}

static void test_minutes_show_the_last_hour_of_each_endpoint(void **state)
{
	struct diff_list d = { 0 };
	struct exchange x = make_exchange("m", "GET /api/:id", 1, 1);
	static const char *const names[] = { "compared", "different", "noise", "candidate_error" };
	const int last[] = { 3, 1, 1, 1 };
	cJSON *doc, *m, *a;

	(void)state;
	add_diff(&d, DIFF_BODY, "/price", false);
	stats_exchange_done(&x, OUTCOME_EQUAL, NULL);
	stats_exchange_done(&x, OUTCOME_DIFFERENT, &d);
	stats_exchange_done(&x, OUTCOME_NOISE, &d);
	stats_exchange_done(&x, OUTCOME_CANDIDATE_ERROR, NULL);
	stats_exchange_done(&x, OUTCOME_EXPIRED, NULL);
	doc = stats_json();
	m = cJSON_GetObjectItemCaseSensitive(endpoint_doc(doc, "GET /api/:id"), "minutes");
	assert_non_null(m);
	assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(m, "start")->valuestring, ":00.000Z"));
	for (size_t k = 0; k < 4; k++) {
		a = cJSON_GetObjectItemCaseSensitive(m, names[k]);
		assert_int_equal(cJSON_GetArraySize(a), MINUTES_KEPT);
		/* Now is the last minute; the hour before it is empty (unless
		 * the test ran across a minute boundary: then it is the one before). */
		assert_int_equal(cJSON_GetArrayItem(a, MINUTES_KEPT - 1)->valueint +
				 cJSON_GetArrayItem(a, MINUTES_KEPT - 2)->valueint, last[k]);
		assert_int_equal(cJSON_GetArrayItem(a, 0)->valueint, 0);
	}
	cJSON_Delete(doc);
	diff_list_clear(&d);
}

static void test_samples_counters_are_in_stats_and_metrics(void **state)
{
	struct samples_limits lim = { 1, 0, 1000, 100, 1000 };
	char err[64];
	struct samples *s = samples_new(&lim, err, sizeof(err));
	char *text;
	cJSON *doc;

	(void)state;
	assert_non_null(s);
	doc = stats_json();
	assert_null(cJSON_GetObjectItemCaseSensitive(doc, "samples"));   /* none without a store */
	cJSON_Delete(doc);
	stats_set_samples(s);
	samples_add(s, "a", "GET /a", OUTCOME_DIFFERENT, NULL, 0, "{}", 2, 1.0);
	samples_add(s, "b", "GET /a", OUTCOME_DIFFERENT, NULL, 0, "{}", 2, 2.0);
	samples_add(s, "c", "GET /a", OUTCOME_DIFFERENT, NULL, 0, "{}", 5000, 3.0);
	doc = stats_json();
	assert_int_equal(num(doc, "samples.taken"), 2);
	assert_int_equal(num(doc, "samples.stored"), 1);
	assert_int_equal(num(doc, "samples.bytes"), 2);
	assert_int_equal(num(doc, "samples.too_large"), 1);
	assert_int_equal(num(doc, "samples.evicted.endpoint"), 1);
	assert_int_equal(num(doc, "samples.evicted.field"), 0);
	cJSON_Delete(doc);
	text = stats_metrics_text(NULL);
	assert_non_null(text);
	assert_true(has_line(text, "miffy_samples_evicted_total{reason=\"endpoint\"} 1"));
	assert_true(has_line(text, "miffy_samples_evicted_total{reason=\"total\"} 0"));
	assert_true(has_line(text, "miffy_samples_too_large_total 1"));
	assert_true(has_line(text, "miffy_samples_stored 1"));
	free(text);
	stats_set_samples(NULL);
	samples_free(s);
}

static void test_fields_past_the_cap_share_other(void **state)
{
	struct diff_list d = { 0 };
	struct exchange x = make_exchange("f", "GET /f", 1, 1);
	char name[32];
	cJSON *doc, *fields;

	(void)state;
	for (int i = 0; i < STATS_MAX_FIELDS + 5; i++) {
		snprintf(name, sizeof(name), "x-h%d", i);
		add_diff(&d, DIFF_HEADER, name, false);
	}
	stats_exchange_done(&x, OUTCOME_DIFFERENT, &d);
	stats_exchange_done(&x, OUTCOME_DIFFERENT, &d);
	doc = stats_json();
	fields = cJSON_GetObjectItemCaseSensitive(endpoint_doc(doc, "GET /f"), "fields");
	assert_int_equal(cJSON_GetArraySize(fields), STATS_MAX_FIELDS + 1);
	assert_int_equal(num(fields, "header:x-h0.raw"), 2);
	assert_int_equal(num(fields, "other.raw"), 2);    /* once per exchange */
	cJSON_Delete(doc);
	diff_list_clear(&d);
}

static void test_last_differences_keep_the_newest_ten(void **state)
{
	struct diff_list d = { 0 };
	char ids[15][8];
	cJSON *doc, *last;

	(void)state;
	add_diff(&d, DIFF_STATUS, "", false);
	for (int i = 0; i < 15; i++) {
		struct exchange x;

		snprintf(ids[i], sizeof(ids[i]), "id%d", i);
		x = make_exchange(ids[i], "GET /x", 1, 1);
		stats_exchange_done(&x, i == 14 ? OUTCOME_EQUAL : OUTCOME_DIFFERENT, i == 14 ? NULL : &d);
	}
	doc = stats_json();
	last = cJSON_GetObjectItemCaseSensitive(endpoint_doc(doc, "GET /x"), "last_differences");
	assert_int_equal(cJSON_GetArraySize(last), STATS_LAST_IDS);
	/* Newest first; the equal exchange is not a difference. */
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(last, 0), "id")->valuestring, "id13");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(last, 9), "id")->valuestring, "id4");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(last, 0), "outcome")->valuestring,
			    "different");
	cJSON_Delete(doc);
	diff_list_clear(&d);
}

static void test_percentiles_are_within_a_bucket(void **state)
{
	cJSON *doc, *e;

	(void)state;
	for (int i = 1; i <= 1000; i++) {
		struct exchange x = make_exchange("p", "GET /p", i / 10.0, i);   /* 0.1..100 ms, 1..1000 ms */

		stats_exchange_done(&x, OUTCOME_EQUAL, NULL);
	}
	doc = stats_json();
	e = endpoint_doc(doc, "GET /p");
	assert_int_equal(num(e, "latency_ms.reference.count"), 1000);
	assert_true(num(e, "latency_ms.reference.p50") >= 50 && num(e, "latency_ms.reference.p50") <= 50 * 1.15);
	assert_true(num(e, "latency_ms.reference.p90") >= 90 && num(e, "latency_ms.reference.p90") <= 90 * 1.15);
	assert_true(num(e, "latency_ms.reference.p99") >= 99 && num(e, "latency_ms.reference.p99") <= 100);
	assert_true(num(e, "latency_ms.candidate.p50") >= 500 && num(e, "latency_ms.candidate.p50") <= 500 * 1.15);
	assert_int_equal(num(e, "latency_ms.candidate.max"), 1000);
	cJSON_Delete(doc);
}

static const char *str_at(cJSON *o, const char *a, const char *b)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, a), b);

	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static void test_latency_verdicts_in_stats_and_metrics(void **state)
{
	const struct latency_rule rule = { .tolerance = 0.25, .floor_ms = 2, .min_count = 50 };
	const struct latency_rule unset = { 0 };
	char *text;
	cJSON *doc, *slow;

	(void)state;
	stats_set_latency_rule(&rule);
	for (int i = 0; i < 60; i++) {
		struct exchange s = make_exchange("s", "GET /slow", 10, 40);
		struct exchange f = make_exchange("f", "GET /fast", 10, 11);
		struct exchange t = make_exchange("t", "GET /tiny", 0.1, 0.2);

		stats_exchange_done(&s, OUTCOME_EQUAL, NULL);
		stats_exchange_done(&f, OUTCOME_EQUAL, NULL);
		stats_exchange_done(&t, OUTCOME_EQUAL, NULL);
	}
	for (int i = 0; i < 49; i++) {
		struct exchange few = make_exchange("w", "GET /few", 10, 100);

		stats_exchange_done(&few, OUTCOME_EQUAL, NULL);
	}
	doc = stats_json();
	slow = endpoint_doc(doc, "GET /slow");
	assert_string_equal(str_at(slow, "latency_verdict", "verdict"), "slower");
	/* 10 and 40 ms as the log-scale buckets give them (within 15 %). */
	assert_true(num(slow, "latency_verdict.reference.p50") >= 10 &&
		    num(slow, "latency_verdict.reference.p50") <= 11.5);
	assert_true(num(slow, "latency_verdict.candidate.p99") >= 40 &&
		    num(slow, "latency_verdict.candidate.p99") <= 46);
	assert_int_equal(num(slow, "latency_verdict.candidate.count"), 60);
	assert_true(num(slow, "latency_verdict.ratio.p50") > 3 && num(slow, "latency_verdict.ratio.p50") < 4.6);
	assert_string_equal(str_at(endpoint_doc(doc, "GET /fast"), "latency_verdict", "verdict"), "within_tolerance");
	assert_string_equal(str_at(endpoint_doc(doc, "GET /tiny"), "latency_verdict", "verdict"), "within_tolerance");
	assert_string_equal(str_at(endpoint_doc(doc, "GET /few"), "latency_verdict", "verdict"), "insufficient_data");
	assert_int_equal(num(doc, "latency_rule.min_count"), 50);
	cJSON_Delete(doc);

	text = stats_metrics_text(NULL);
	assert_non_null(text);
	assert_true(has_line(text, "miffy_endpoint_latency_verdict{endpoint=\"GET /slow\",verdict=\"slower\"} 1"));
	assert_true(has_line(text, "miffy_endpoint_latency_verdict{endpoint=\"GET /slow\",verdict=\"within_tolerance\"} 0"));
	assert_true(has_line(text, "miffy_endpoint_latency_verdict{endpoint=\"GET /fast\",verdict=\"within_tolerance\"} 1"));
	assert_true(has_line(text, "miffy_endpoint_latency_verdict{endpoint=\"GET /few\",verdict=\"insufficient_data\"} 1"));
	assert_non_null(strstr(text, "# TYPE miffy_endpoint_latency_ratio gauge\n"));
	assert_non_null(strstr(text, "miffy_endpoint_latency_ratio{endpoint=\"GET /slow\",quantile=\"0.99\"} "));
	free(text);
	stats_set_latency_rule(&unset);
}

static void test_failed_replays_count_as_errors_not_latency(void **state)
{
	struct exchange x = make_exchange("e", "GET /e", 5, 5);
	size_t len;
	char *text;

	(void)state;
	/* counted once, by stats_exchange_done, from the exchange's replies */
	x.replies[ROLE_CANDIDATE].error = REPLAY_TIMEOUT;
	x.want[ROLE_SECONDARY] = x.have[ROLE_SECONDARY] = true;
	x.replies[ROLE_SECONDARY].error = REPLAY_CONNECT;
	stats_exchange_done(&x, OUTCOME_CANDIDATE_ERROR, NULL);
	stats_exchange_done(&x, OUTCOME_CANDIDATE_ERROR, NULL);
	x.replies[ROLE_SECONDARY].error = REPLAY_MALFORMED;
	stats_exchange_done(&x, OUTCOME_CANDIDATE_ERROR, NULL);
	text = stats_metrics_text(&len);
	assert_true(has_line(text, "miffy_candidate_errors_total{role=\"candidate\",reason=\"timeout\"} 3"));
	assert_true(has_line(text, "miffy_candidate_errors_total{role=\"secondary\",reason=\"connect\"} 2"));
	assert_true(has_line(text, "miffy_candidate_errors_total{role=\"secondary\",reason=\"malformed\"} 1"));
	/* a reason nothing failed with is not listed */
	assert_null(strstr(text, "reason=\"dns\""));
	assert_true(has_line(text, "miffy_latency_seconds_count{source=\"candidate\"} 0"));
	assert_true(has_line(text, "miffy_latency_seconds_count{source=\"reference\"} 3"));
	free(text);
}

static void test_the_compared_share_and_shedding_are_per_endpoint(void **state)
{
	struct exchange x = make_exchange("s", "GET /hot", 1, 1), y = make_exchange("r", "GET /rare", 1, 1);
	struct admit_limits lim = { .max_concurrent = 20, .max_host_connections = 4, .max_candidate_rps = 7 };
	cJSON *doc, *hot;
	size_t len;
	char *text;

	(void)state;
	stats_exchange_done(&x, OUTCOME_EQUAL, NULL);
	x.skip = SKIP_OVERLOAD;
	stats_exchange_done(&x, OUTCOME_SKIPPED, NULL);
	stats_exchange_done(&x, OUTCOME_SKIPPED, NULL);
	x.skip = SKIP_CANDIDATE_CAP;
	stats_exchange_done(&x, OUTCOME_SKIPPED, NULL);
	stats_exchange_done(&y, OUTCOME_EQUAL, NULL);
	stats_set_limits(&lim);
	doc = stats_json();
	assert_non_null(doc);
	hot = endpoint_doc(doc, "GET /hot");
	assert_true(num(hot, "compared_pct") == 25.0);
	assert_true(num(hot, "skipped.overload") == 2);
	assert_true(num(hot, "skipped.candidate_cap") == 1);
	/* reasons that did not occur are left out */
	assert_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(hot, "skipped"), "method"));
	assert_true(num(endpoint_doc(doc, "GET /rare"), "compared_pct") == 100.0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(endpoint_doc(doc, "GET /rare"), "skipped")), 0);
	assert_true(num(doc, "skipped.candidate_cap") == 1);
	assert_true(num(doc, "replays.limits.max_concurrent") == 20);
	assert_true(num(doc, "replays.limits.max_host_connections") == 4);
	assert_true(num(doc, "replays.limits.max_candidate_rps") == 7);
	cJSON_Delete(doc);
	text = stats_metrics_text(&len);
	assert_true(has_line(text, "miffy_endpoint_compared_ratio{endpoint=\"GET /hot\"} 0.2500"));
	assert_true(has_line(text, "miffy_endpoint_compared_ratio{endpoint=\"GET /rare\"} 1.0000"));
	assert_true(has_line(text, "miffy_endpoint_skipped_total{endpoint=\"GET /hot\",reason=\"overload\"} 2"));
	assert_true(has_line(text, "miffy_endpoint_skipped_total{endpoint=\"GET /hot\",reason=\"candidate_cap\"} 1"));
	assert_null(strstr(text, "miffy_endpoint_skipped_total{endpoint=\"GET /rare\""));
	assert_true(has_line(text, "miffy_exchanges_skipped_total{reason=\"candidate_cap\"} 1"));
	assert_true(has_line(text, "miffy_replay_limit{limit=\"concurrent\"} 20"));
	assert_true(has_line(text, "miffy_replay_limit{limit=\"rps\"} 7"));
	free(text);
}

/* Several candidates: a view each, the top level their sum; the reference
 * and the secondary counted once per exchange. */
static void test_several_candidates_have_a_view_each_and_the_top_level_sums(void **state)
{
	static const char *const names[] = { "same", "new" };
	struct exchange x = make_exchange("c1", "GET /c", 5, 7);
	struct diff_list d = { 0 };
	cJSON *doc, *views;
	size_t len;
	char *text;

	(void)state;
	assert_int_equal(stats_set_candidates(names, 2), 0);
	add_diff(&d, DIFF_BODY, "/price", false);
	x.want[ROLE_SECONDARY] = x.have[ROLE_SECONDARY] = true;
	x.replies[ROLE_SECONDARY].error = REPLAY_TIMEOUT;
	stats_exchange_done(&x, OUTCOME_EQUAL, NULL);           /* candidate 0, "same" */
	x.candidate = 1;
	x.replies[ROLE_CANDIDATE].latency_ms = 9;
	stats_exchange_done(&x, OUTCOME_DIFFERENT, &d);         /* candidate 1, "new" */
	x.replies[ROLE_CANDIDATE].error = REPLAY_CONNECT;
	stats_exchange_done(&x, OUTCOME_CANDIDATE_ERROR, NULL);
	stats_request_dropped();

	doc = stats_json();
	assert_int_equal(num(doc, "outcomes.equal"), 1);
	assert_int_equal(num(doc, "outcomes.different"), 1);
	assert_int_equal(num(doc, "outcomes.dropped"), 2);     /* lost to both */
	assert_int_equal(num(doc, "replays.secondary.errors.timeout"), 1);
	assert_int_equal(num(doc, "replays.candidate.errors.connect"), 1);
	assert_int_equal(num(endpoint_doc(doc, "GET /c"), "total"), 3);
	assert_int_equal(num(endpoint_doc(doc, "GET /c"), "latency_ms.reference.count"), 1);
	assert_int_equal(num(endpoint_doc(doc, "GET /c"), "latency_ms.candidate.count"), 2);
	views = cJSON_GetObjectItemCaseSensitive(doc, "candidates");
	assert_non_null(views);
	assert_int_equal(cJSON_GetArraySize(views), 2);
	assert_string_equal(cJSON_GetArrayItem(views, 0)->string, "same");   /* in the order given */
	assert_int_equal(num(views, "same.outcomes.equal"), 1);
	assert_int_equal(num(views, "same.outcomes.dropped"), 1);
	assert_int_equal(num(views, "new.outcomes.different"), 1);
	assert_int_equal(num(views, "new.outcomes.candidate_error"), 1);
	assert_int_equal(num(views, "new.errors.connect"), 1);
	assert_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(views, "same"), "errors"), "connect"));
	assert_int_equal(num(views, "same.endpoints.GET /c.compared"), 1);
	assert_int_equal(num(views, "new.endpoints.GET /c.fields.body:/price.raw"), 1);
	assert_int_equal(num(views, "new.endpoints.GET /c.latency_ms.candidate.max"), 9);
	assert_int_equal(num(views, "same.endpoints.GET /c.latency_ms.candidate.max"), 7);
	cJSON_Delete(doc);

	text = stats_metrics_text(&len);
	assert_true(has_line(text, "miffy_exchanges_total{outcome=\"different\"} 1"));
	assert_true(has_line(text, "miffy_exchanges_by_candidate_total{candidate=\"same\",outcome=\"equal\"} 1"));
	assert_true(has_line(text, "miffy_exchanges_by_candidate_total{candidate=\"new\",outcome=\"different\"} 1"));
	assert_true(has_line(text, "miffy_exchanges_by_candidate_total{candidate=\"new\",outcome=\"equal\"} 0"));
	assert_true(has_line(text, "miffy_replay_errors_by_candidate_total{candidate=\"new\",reason=\"connect\"} 1"));
	assert_true(has_line(text, "miffy_endpoint_exchanges_by_candidate_total{candidate=\"new\",endpoint=\"GET /c\","
			     "outcome=\"different\"} 1"));
	assert_true(has_line(text, "miffy_endpoint_exchanges_total{endpoint=\"GET /c\",outcome=\"equal\"} 1"));
	/* each candidate's compared share and verdicts, beside the sum's */
	assert_true(has_line(text, "miffy_endpoint_compared_ratio{endpoint=\"GET /c\"} 0.6667"));
	assert_true(has_line(text, "miffy_endpoint_compared_by_candidate_ratio{candidate=\"same\",endpoint=\"GET /c\"} 1.0000"));
	assert_true(has_line(text, "miffy_endpoint_compared_by_candidate_ratio{candidate=\"new\",endpoint=\"GET /c\"} 0.5000"));
	assert_non_null(strstr(text, "\nmiffy_endpoint_latency_verdict_by_candidate{candidate=\"new\",endpoint=\"GET /c\",verdict=\""));
	assert_non_null(strstr(text, "\nmiffy_endpoint_latency_ratio_by_candidate{candidate=\"same\",endpoint=\"GET /c\",quantile=\"0.5\"} "));
	free(text);
	doc = stats_json();
	views = cJSON_GetObjectItemCaseSensitive(doc, "candidates");
	assert_true(num(views, "same.endpoints.GET /c.compared_pct") == 100.0);
	assert_true(num(views, "new.endpoints.GET /c.compared_pct") == 50.0);
	assert_non_null(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(endpoint_doc(doc, "GET /c"), "latency_verdict"), "verdict"));
	cJSON_Delete(doc);
	diff_list_clear(&d);
}

/* One candidate: the top level is its view, nothing is added. */
static void test_one_candidate_adds_no_view(void **state)
{
	static const char *const names[] = { "candidate" };
	struct exchange x = make_exchange("c1", "GET /c", 5, 7);
	cJSON *doc;
	size_t len;
	char *text;

	(void)state;
	assert_int_equal(stats_set_candidates(names, 1), 0);
	stats_exchange_done(&x, OUTCOME_EQUAL, NULL);
	stats_request_dropped();
	doc = stats_json();
	assert_null(cJSON_GetObjectItemCaseSensitive(doc, "candidates"));
	assert_int_equal(num(doc, "outcomes.dropped"), 1);
	cJSON_Delete(doc);
	text = stats_metrics_text(&len);
	assert_null(strstr(text, "_by_candidate"));
	free(text);
}

static void test_endpoints_past_the_cap_share_other(void **state)
{
	char name[32];
	size_t len;
	char *text;
	cJSON *doc;

	(void)state;
	for (int i = 0; i < STATS_MAX_ENDPOINTS + 5; i++) {
		struct exchange x;

		snprintf(name, sizeof(name), "GET /e%d", i);
		x = make_exchange("i", name, 1, 1);
		stats_exchange_done(&x, OUTCOME_EQUAL, NULL);
	}
	doc = stats_json();
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "endpoints")), STATS_MAX_ENDPOINTS + 1);
	assert_int_equal(num(endpoint_doc(doc, "other"), "total"), 5);
	cJSON_Delete(doc);
	text = stats_metrics_text(&len);
	assert_true(has_line(text, "miffy_endpoint_exchanges_total{endpoint=\"other\",outcome=\"equal\"} 5"));
	assert_null(strstr(text, "endpoint=\"GET /e100\""));
	free(text);
}

static void test_compare_troubles_are_counted_as_concluded(void **state)
{
	const struct stats_compare once = { .order_unchecked = 1, .decode_failed = 2, .depth_exceeded = 1 };
	const struct stats_compare none = { 0 };
	char *text;
	cJSON *doc;

	(void)state;
	stats_compare_done(&once);
	stats_compare_done(&none);
	stats_compare_done(&once);
	doc = stats_json();
	assert_int_equal(num(doc, "compare.compare_budget_exceeded"), 2);
	assert_int_equal(num(doc, "compare.decompress_failed"), 4);
	assert_int_equal(num(doc, "compare.json_depth_exceeded"), 2);
	cJSON_Delete(doc);
	text = stats_metrics_text(NULL);
	assert_non_null(text);
	assert_true(has_line(text, "miffy_compare_budget_exceeded_total 2"));
	assert_true(has_line(text, "miffy_decompress_failures_total 4"));
	assert_true(has_line(text, "miffy_json_depth_exceeded_total 2"));
	free(text);
}

static void test_reset_puts_counters_and_endpoints_back_to_zero(void **state)
{
	struct exchange x = make_exchange("r", "GET /r", 1, 1);
	cJSON *doc;

	(void)state;
	stats.frames_in = 7;
	stats_exchange_done(&x, OUTCOME_EQUAL, NULL);
	stats_reset();
	doc = stats_json();
	assert_int_equal(num(doc, "spop.frames_in"), 0);
	assert_int_equal(num(doc, "outcomes.equal"), 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "endpoints")), 0);
	cJSON_Delete(doc);
}

/* ---- the admin server ---------------------------------------------------- */

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_int_not_equal(fd, -1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

/* GET path; returns the status and copies the whole response into out. */
static int http_get(int port, const char *path, char *out, size_t outlen)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char req[256];
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;

	if (fd == -1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		if (fd != -1)
			close(fd);
		return -1;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return -1;
	}
	while (got + 1 < outlen && (n = read(fd, out + got, outlen - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fd);
	if (sscanf(out, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	return status;
}

struct client {
	int port;
	const char *path;
	char response[1 << 16];
	int status;
	struct ev_loop *loop;
	ev_async done;
};

static void on_client_done(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *client_main(void *arg)
{
	struct client *c = arg;

	c->status = http_get(c->port, c->path, c->response, sizeof(c->response));
	ev_async_send(c->loop, &c->done);
	return NULL;
}

/* GET path from another thread while the loop runs, as in production. */
static int get_while_running(struct ev_loop *loop, struct client *c, int port, const char *path)
{
	pthread_t t;

	c->port = port;
	c->path = path;
	c->loop = loop;
	ev_async_init(&c->done, on_client_done);
	ev_async_start(loop, &c->done);
	assert_int_equal(pthread_create(&t, NULL, client_main, c), 0);
	ev_run(loop, 0);
	pthread_join(t, NULL);
	ev_async_stop(loop, &c->done);
	return c->status;
}

static double elapsed_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_admin_serves_fresh_snapshots_and_reports_a_stalled_loop(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct config cfg;
	struct client *c = calloc(1, sizeof(*c));
	struct admin *a;
	char addr[64], err[256] = "";
	struct timespec t0;
	int port = free_port();

	(void)state;
	assert_non_null(c);
	memset(&cfg, 0, sizeof(cfg));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	cfg.admin = addr;
	stats.started = ev_time();
	a = admin_new(loop, &cfg, err, sizeof(err));
	assert_non_null(a);

	/* A counter moved by the loop shows in the next scrape. */
	stats.frames_in = 42;
	assert_int_equal(get_while_running(loop, c, port, "/metrics"), 200);
	assert_non_null(strstr(c->response, "\nmiffy_spop_frames_received_total 42\n"));
	stats.frames_in = 43;
	assert_int_equal(get_while_running(loop, c, port, "/stats"), 200);
	assert_non_null(strstr(c->response, "\"frames_in\":43"));
	assert_int_equal(get_while_running(loop, c, port, "/health"), 200);
	assert_non_null(strstr(c->response, "\"status\":\"ok\""));

	/* The loop stops turning: /health says so; /metrics still answers
	 * at once with the last snapshot. */
	sleep(6);
	assert_int_equal(http_get(port, "/health", c->response, sizeof(c->response)), 503);
	assert_non_null(strstr(c->response, "\"status\":\"stalled\""));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(http_get(port, "/metrics", c->response, sizeof(c->response)), 200);
	/* Not waiting for a render: a request that did would take admin.c's
	 * RENDER_WAIT (1 s); 0.9 leaves a loaded machine its scheduling delays. */
	assert_true(elapsed_since(&t0) < 0.9);
	assert_non_null(strstr(c->response, "X-Miffy-Snapshot-Age: "));
	assert_non_null(strstr(c->response, "\nmiffy_spop_frames_received_total 42\n"));

	/* It turns again: healthy. */
	assert_int_equal(get_while_running(loop, c, port, "/health"), 200);
	admin_free(a);
	assert_int_equal(http_get(port, "/health", c->response, sizeof(c->response)), -1);
	ev_loop_destroy(loop);
	free(c);
}

static void test_admin_refuses_a_busy_port_with_the_reason(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct config cfg;
	char addr[64], err[256] = "";
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
	memset(&cfg, 0, sizeof(cfg));
	cfg.admin = addr;
	assert_null(admin_new(loop, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot listen on"));
	assert_non_null(strstr(err, "in use"));
	cfg.admin = (char *)(uintptr_t)"nonsense";
	assert_null(admin_new(loop, &cfg, err, sizeof(err)));
	close(fd);
	ev_loop_destroy(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_label_values_are_escaped, reset, reset),
		cmocka_unit_test_setup_teardown(test_bytes_that_are_not_utf8_become_replacement_characters, reset, reset),
		cmocka_unit_test_setup_teardown(test_histogram_buckets_are_cumulative_with_inf_equal_to_count, reset, reset),
		cmocka_unit_test_setup_teardown(test_ack_histogram_has_microsecond_buckets_in_metrics_and_stats, reset, reset),
		cmocka_unit_test_setup_teardown(test_metrics_have_help_and_type_before_samples, reset, reset),
		cmocka_unit_test_setup_teardown(test_fields_count_once_per_exchange_and_noise_apart, reset, reset),
		cmocka_unit_test_setup_teardown(test_minutes_show_the_last_hour_of_each_endpoint, reset, reset),
		cmocka_unit_test_setup_teardown(test_samples_counters_are_in_stats_and_metrics, reset, reset),
		cmocka_unit_test_setup_teardown(test_fields_past_the_cap_share_other, reset, reset),
		cmocka_unit_test_setup_teardown(test_last_differences_keep_the_newest_ten, reset, reset),
		cmocka_unit_test_setup_teardown(test_percentiles_are_within_a_bucket, reset, reset),
		cmocka_unit_test_setup_teardown(test_latency_verdicts_in_stats_and_metrics, reset, reset),
		cmocka_unit_test_setup_teardown(test_failed_replays_count_as_errors_not_latency, reset, reset),
		cmocka_unit_test_setup_teardown(test_the_compared_share_and_shedding_are_per_endpoint, reset, reset),
		cmocka_unit_test_setup_teardown(test_several_candidates_have_a_view_each_and_the_top_level_sums, reset, reset),
		cmocka_unit_test_setup_teardown(test_one_candidate_adds_no_view, reset, reset),
		cmocka_unit_test_setup_teardown(test_endpoints_past_the_cap_share_other, reset, reset),
		cmocka_unit_test_setup_teardown(test_compare_troubles_are_counted_as_concluded, reset, reset),
		cmocka_unit_test_setup_teardown(test_reset_puts_counters_and_endpoints_back_to_zero, reset, reset),
		cmocka_unit_test_setup_teardown(test_admin_serves_fresh_snapshots_and_reports_a_stalled_loop, reset, reset),
		cmocka_unit_test_setup_teardown(test_admin_refuses_a_busy_port_with_the_reason, reset, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
