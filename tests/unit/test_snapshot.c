/* Unit tests of snapshot: encode/decode, merge, subtract, what is not a
 * snapshot, and the stats round trip (export, import). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "minutes.h"
#include "snapshot.h"
#include "stats.h"

#define T0 1800000000.0

/* A snapshot of one agent epoch: k scales every count. */
static void fill(struct snapshot *s, const char *instance, int64_t epoch, uint64_t k)
{
	struct snapshot_endpoint *e;
	struct minute_bucket b = { .minute = (int64_t)(T0 / 60), .compared = (uint32_t)(3 * k),
				   .different = (uint32_t)k };

	memset(s, 0, sizeof(*s));
	s->instance = strdup(instance);
	s->epoch = epoch;
	s->seq = 7;
	s->time = T0 + 1.5;
	assert_int_equal(snapshot_add_counter(s, "outcomes.equal", 10 * k), 0);
	assert_int_equal(snapshot_add_counter(s, "conn_accepted", k), 0);
	s->hists[SNAPSHOT_HIST_REFERENCE].buckets[3] = 2 * k;
	s->hists[SNAPSHOT_HIST_REFERENCE].sum = 0.5 * (double)k;
	s->hists[SNAPSHOT_HIST_ACK].max = 0.001 * (double)k;
	e = snapshot_add_endpoint(s, "GET /b");
	assert_non_null(e);
	e->outcomes[OUTCOME_DIFFERENT] = k;
	e->outcomes[OUTCOME_SKIPPED] = 3 * k;
	e->skips[SKIP_CANDIDATE_CAP] = 2 * k;
	e->skips[SKIP_OVERLOAD] = k;
	e->latency[1].counts[42] = k;
	e->latency[1].max_ms = 12.5 * (double)k;
	assert_int_equal(snapshot_add_field(e, "status", k, 0), 0);
	assert_int_equal(snapshot_add_field(e, "body:/a", 2 * k, k), 0);
	minutes_put(&e->minutes, &b);
	e = snapshot_add_endpoint(s, "GET /a");
	assert_non_null(e);
	e->outcomes[OUTCOME_EQUAL] = 10 * k;
	assert_int_equal(snapshot_sort(s), 0);
}

static const struct snapshot_endpoint *endpoint(const struct snapshot *s, const char *name)
{
	for (size_t i = 0; i < s->nendpoints; i++)
		if (strcmp(s->endpoints[i].name, name) == 0)
			return &s->endpoints[i];
	return NULL;
}

static void test_encode_decode_round_trip(void **state)
{
	struct snapshot a, b;
	char err[256];
	size_t len;
	char *text;
	const struct snapshot_endpoint *e;

	(void)state;
	fill(&a, "node1:12345", 1700000000123, 1);
	a.final = true;
	text = snapshot_encode(&a, &len, err, sizeof(err));
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_int_equal(snapshot_decode(text, len, &b, err, sizeof(err)), SNAPSHOT_OK);
	assert_string_equal(b.instance, "node1:12345");
	assert_true(b.epoch == 1700000000123);
	assert_int_equal(b.seq, 7);
	assert_true(b.final);
	assert_int_equal(b.ncounters, 2);
	assert_int_equal(snapshot_counter(&b, "outcomes.equal")->v, 10);
	assert_int_equal(b.hists[SNAPSHOT_HIST_REFERENCE].buckets[3], 2);
	assert_true(b.hists[SNAPSHOT_HIST_ACK].max == 0.001);
	assert_int_equal(b.nendpoints, 2);
	assert_string_equal(b.endpoints[0].name, "GET /a");   /* sorted */
	e = endpoint(&b, "GET /b");
	assert_int_equal(e->outcomes[OUTCOME_DIFFERENT], 1);
	assert_int_equal(e->skips[SKIP_CANDIDATE_CAP], 2);
	assert_int_equal(e->skips[SKIP_OVERLOAD], 1);
	assert_int_equal(e->skips[SKIP_METHOD], 0);
	assert_int_equal(e->latency[1].counts[42], 1);
	assert_true(e->latency[1].max_ms == 12.5);
	assert_int_equal(e->nfields, 2);
	assert_string_equal(e->fields[0].key, "body:/a");
	assert_int_equal(e->fields[0].noise, 1);
	assert_int_equal(minutes_at(&e->minutes, T0, 0).compared, 3);
	free(text);
	snapshot_clear(&a);
	snapshot_clear(&b);
}

static void test_merge_adds_and_subtract_takes_back(void **state)
{
	struct snapshot a, b, c;
	const struct snapshot_endpoint *e;

	(void)state;
	fill(&a, "n1", 1, 1);
	fill(&b, "n2", 2, 2);
	/* b has an endpoint and a field a lacks. */
	assert_int_equal(snapshot_add_field(&b.endpoints[1], "header:etag", 5, 5), 0);
	assert_non_null(snapshot_add_endpoint(&b, "POST /c"));
	assert_int_equal(snapshot_add_counter(&b, "anomalies.bad_args", 4), 0);
	assert_int_equal(snapshot_sort(&b), 0);
	assert_int_equal(snapshot_merge(&a, &b), 0);
	assert_string_equal(a.instance, "n1");
	assert_int_equal(snapshot_counter(&a, "outcomes.equal")->v, 30);
	assert_int_equal(snapshot_counter(&a, "anomalies.bad_args")->v, 4);
	assert_int_equal(a.hists[SNAPSHOT_HIST_REFERENCE].buckets[3], 6);
	assert_true(a.hists[SNAPSHOT_HIST_REFERENCE].sum == 1.5);
	assert_true(a.hists[SNAPSHOT_HIST_ACK].max == 0.002);   /* max, not sum */
	assert_int_equal(a.nendpoints, 3);
	e = endpoint(&a, "GET /b");
	assert_int_equal(e->outcomes[OUTCOME_DIFFERENT], 3);
	assert_int_equal(e->skips[SKIP_CANDIDATE_CAP], 6);
	assert_int_equal(e->latency[1].counts[42], 3);
	assert_true(e->latency[1].max_ms == 25);
	assert_int_equal(e->nfields, 3);
	assert_string_equal(e->fields[1].key, "header:etag");   /* still sorted */
	assert_int_equal(e->fields[2].raw, 3);
	assert_int_equal(minutes_at(&e->minutes, T0, 0).compared, 9);
	assert_non_null(endpoint(&a, "POST /c"));

	/* a - b is the first again (maxima stay). */
	fill(&c, "n1", 1, 1);
	snapshot_subtract(&a, &b);
	assert_int_equal(snapshot_counter(&a, "outcomes.equal")->v, 10);
	assert_int_equal(snapshot_counter(&a, "anomalies.bad_args")->v, 0);
	e = endpoint(&a, "GET /b");
	assert_int_equal(e->outcomes[OUTCOME_DIFFERENT], 1);
	assert_int_equal(e->skips[SKIP_CANDIDATE_CAP], 2);
	assert_int_equal(e->fields[2].raw, 1);
	assert_int_equal(e->fields[1].raw, 0);
	assert_int_equal(minutes_at(&e->minutes, T0, 0).compared, 3);
	assert_int_equal(a.hists[SNAPSHOT_HIST_REFERENCE].buckets[3], 2);
	snapshot_clear(&a);
	snapshot_clear(&b);
	snapshot_clear(&c);
}

static void test_what_is_not_a_snapshot(void **state)
{
	static const struct { const char *msg; enum snapshot_kind k; } cases[] = {
		{ "not json at all", SNAPSHOT_GARBAGE },
		{ "", SNAPSHOT_GARBAGE },
		{ "{\"id\":\"x\",\"outcome\":\"different\"}", SNAPSHOT_FOREIGN },   /* a difference message */
		{ "[1,2]", SNAPSHOT_FOREIGN },
		{ "{\"miffy_stats\":2,\"instance\":\"a\",\"epoch\":1}", SNAPSHOT_NEWER },
		{ "{\"miffy_stats\":\"1\"}", SNAPSHOT_GARBAGE },
		{ "{\"miffy_stats\":1,\"instance\":\"a\"}", SNAPSHOT_GARBAGE },
		{ "{\"miffy_stats\":1,\"instance\":\"a\",\"epoch\":1,\"seq\":1,\"time\":1,"
		  "\"counters\":{\"x\":-1},\"hists\":{},\"endpoints\":{}}", SNAPSHOT_GARBAGE },
		{ "{\"miffy_stats\":1,\"instance\":\"a\",\"epoch\":1,\"seq\":1,\"time\":1,"
		  "\"counters\":{},\"hists\":{\"ack\":{\"buckets\":[1],\"sum\":0,\"max\":0}},\"endpoints\":{}}",
		  SNAPSHOT_GARBAGE },
		{ "{\"miffy_stats\":1,\"instance\":\"a\",\"epoch\":1,\"seq\":1,\"time\":1,\"counters\":{},"
		  "\"hists\":{},\"endpoints\":{\"e\":{\"outcomes\":{},\"latency\":{\"candidate\":{\"counts\":[[100,1]],"
		  "\"max_ms\":1}},\"fields\":{},\"minutes\":[]}}}", SNAPSHOT_GARBAGE },
		{ "{\"miffy_stats\":1,\"instance\":\"a\",\"epoch\":1,\"seq\":1,\"time\":1,\"counters\":{},"
		  "\"hists\":{},\"endpoints\":{\"e\":{\"outcomes\":{},\"skipped\":{\"overload\":-1},\"latency\":{},"
		  "\"fields\":{},\"minutes\":[]}}}", SNAPSHOT_GARBAGE },
		{ "{\"miffy_stats\":1,\"instance\":\"a\",\"epoch\":1,\"seq\":1,\"time\":1,\"counters\":{},"
		  "\"hists\":{},\"endpoints\":{\"e\":{\"outcomes\":{},\"skipped\":3,\"latency\":{},"
		  "\"fields\":{},\"minutes\":[]}}}", SNAPSHOT_GARBAGE },
		{ "{\"miffy_stats\":1,\"instance\":\"a\",\"epoch\":1,\"seq\":1,\"time\":1,"
		  "\"counters\":{\"x\":1},\"hists\":{},\"endpoints\":{}}", SNAPSHOT_OK },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct snapshot s;
		enum snapshot_kind k;

		err[0] = '\0';
		k = snapshot_decode(cases[i].msg, strlen(cases[i].msg), &s, err, sizeof(err));
		if (k != cases[i].k)
			fail_msg("case %zu (%s): %d, expected %d (%s)", i, cases[i].msg, k, cases[i].k, err);
		if (k != SNAPSHOT_OK)
			assert_true(err[0] != '\0');
		else
			assert_int_equal(snapshot_counter(&s, "x")->v, 1);
		snapshot_clear(&s);
	}
}

static void test_key_names_instance_and_epoch(void **state)
{
	char key[32];

	(void)state;
	assert_int_equal(snapshot_key("h:1", 42, key, sizeof(key)), 0);
	assert_string_equal(key, "h:1/42");
	assert_int_equal(snapshot_key("a-very-long-instance-name-here", 1234567890123, key, sizeof(key)), -1);
}

/* Epoch rules as the report applies them: what an agent exports after
 * resuming, minus its base, is what it counted itself; base + own is what
 * it shows. */
static void test_stats_export_import(void **state)
{
	struct snapshot base, cum, again;

	(void)state;
	stats_reset();
	fill(&base, "n1", 1, 2);
	stats_import(&base);
	assert_int_equal(stats.outcomes[OUTCOME_EQUAL], 20);
	assert_int_equal(stats.conn_accepted, 2);
	stats.outcomes[OUTCOME_EQUAL] += 5;          /* the new epoch counts */
	stats.compare_key_fallback = 3;
	memset(&cum, 0, sizeof(cum));
	assert_int_equal(stats_export(&cum), 0);
	assert_int_equal(snapshot_counter(&cum, "outcomes.equal")->v, 25);
	assert_int_equal(endpoint(&cum, "GET /b")->outcomes[OUTCOME_DIFFERENT], 2);
	assert_int_equal(endpoint(&cum, "GET /b")->latency[1].counts[42], 2);
	assert_int_equal(endpoint(&cum, "GET /b")->skips[SKIP_CANDIDATE_CAP], 4);
	assert_int_equal(snapshot_counter(&cum, "compare_key_fallback")->v, 3);
	assert_int_equal(cum.hists[SNAPSHOT_HIST_REFERENCE].buckets[3], 4);
	snapshot_subtract(&cum, &base);
	assert_int_equal(snapshot_counter(&cum, "outcomes.equal")->v, 5);
	assert_int_equal(endpoint(&cum, "GET /b")->outcomes[OUTCOME_DIFFERENT], 0);
	/* Importing twice counts twice: the report rebuilds from zero. */
	stats_reset();
	stats_import(&base);
	stats_import(&base);
	memset(&again, 0, sizeof(again));
	assert_int_equal(stats_export(&again), 0);
	assert_int_equal(snapshot_counter(&again, "outcomes.equal")->v, 40);
	assert_int_equal(endpoint(&again, "GET /b")->fields[0].raw, 8);
	assert_int_equal(endpoint(&again, "GET /b")->skips[SKIP_OVERLOAD], 4);
	stats_reset();
	snapshot_clear(&base);
	snapshot_clear(&cum);
	snapshot_clear(&again);
}

/* The epoch rules: the latest snapshot of each (instance, epoch) counts,
 * once; a restart (a new epoch) adds to it; a repeat or an older one is
 * dropped; the view is the sum. */
static void test_epoch_rules(void **state)
{
	struct snapshot_epochs set = { .max = 3 };
	struct snapshot s, sum;

	(void)state;
	fill(&s, "n1", 100, 1);
	s.seq = 1;
	assert_int_equal(snapshot_epochs_put(&set, &s), SNAPSHOT_TAKEN);
	assert_null(s.instance);                       /* taken over */
	fill(&s, "n1", 100, 2);
	s.seq = 2;
	assert_int_equal(snapshot_epochs_put(&set, &s), SNAPSHOT_TAKEN);   /* replaces seq 1 */
	fill(&s, "n1", 100, 9);
	s.seq = 2;
	assert_int_equal(snapshot_epochs_put(&set, &s), SNAPSHOT_SUPERSEDED);   /* a repeat */
	fill(&s, "n1", 100, 9);
	s.seq = 1;
	assert_int_equal(snapshot_epochs_put(&set, &s), SNAPSHOT_SUPERSEDED);   /* older */
	assert_null(s.instance);
	fill(&s, "n1", 200, 3);                        /* n1 restarted */
	assert_int_equal(snapshot_epochs_put(&set, &s), SNAPSHOT_TAKEN);
	fill(&s, "n2", 100, 5);                        /* same epoch, another agent */
	assert_int_equal(snapshot_epochs_put(&set, &s), SNAPSHOT_TAKEN);
	fill(&s, "n3", 1, 1);
	assert_int_equal(snapshot_epochs_put(&set, &s), SNAPSHOT_FULL);
	assert_int_equal(set.n, 3);
	memset(&sum, 0, sizeof(sum));
	for (size_t i = 0; i < set.n; i++)
		assert_int_equal(snapshot_merge(&sum, &set.items[i]), 0);
	/* 2 (n1's first epoch, its latest) + 3 (its second) + 5 (n2). */
	assert_int_equal(snapshot_counter(&sum, "outcomes.equal")->v, 100);
	assert_int_equal(endpoint(&sum, "GET /b")->outcomes[OUTCOME_DIFFERENT], 10);
	snapshot_clear(&sum);
	snapshot_epochs_clear(&set);
	assert_int_equal(set.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_decode_round_trip),
		cmocka_unit_test(test_merge_adds_and_subtract_takes_back),
		cmocka_unit_test(test_what_is_not_a_snapshot),
		cmocka_unit_test(test_key_names_instance_and_epoch),
		cmocka_unit_test(test_stats_export_import),
		cmocka_unit_test(test_epoch_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
