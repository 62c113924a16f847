/* exchange: the table's decisions, driven through exchange_on_message()
 * with decoded SPOE arguments as agent.c hands them over, on a real libev
 * loop, without replays or publishing (deps NULL); outcomes read from the
 * global stats. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "compare.h"
#include "config.h"
#include "exchange.h"
#include "spop.h"
#include "stats.h"

/* hdrs_bin of no header: the two zero lengths that end the list. */
static const char no_headers[2] = { 0, 0 };

static char m_get[] = "GET", m_head[] = "HEAD", m_options[] = "OPTIONS";
static char *default_methods[] = { m_get, m_head, m_options };

struct fixture {
	struct ev_loop *loop;
	struct config cfg;
	struct compare *compare;
	struct exchange_table *t;
};

/* ---- helpers ----------------------------------------------------------- */

static struct spop_arg arg_text(const char *name, const char *value, size_t len)
{
	struct spop_arg a = { .name = name, .name_len = strlen(name) };

	a.value.type = SPOP_T_STRING;
	a.value.v.str.ptr = value;
	a.value.v.str.len = len;
	return a;
}

static struct spop_arg arg_str(const char *name, const char *value)
{
	return arg_text(name, value, strlen(value));
}

static struct spop_arg arg_int(const char *name, int64_t value)
{
	struct spop_arg a = { .name = name, .name_len = strlen(name) };

	a.value.type = SPOP_T_INT64;
	a.value.v.i = value;
	return a;
}

static struct spop_arg arg_headers(const char *name)
{
	struct spop_arg a = arg_text(name, no_headers, sizeof(no_headers));

	a.value.type = SPOP_T_BINARY;
	return a;
}

static void message(struct fixture *f, const char *name, const struct spop_arg *args, size_t nargs)
{
	exchange_on_message(f->t, name, strlen(name), args, nargs);
}

static void request(struct fixture *f, const char *id, const char *method)
{
	struct spop_arg args[] = {
		arg_str("id", id), arg_str("method", method), arg_str("path", "/api/1"),
		arg_str("ver", "1.1"), arg_headers("headers"),
	};

	message(f, "miffy-req", args, sizeof(args) / sizeof(args[0]));
}

static void response(struct fixture *f, const char *id, const char *body)
{
	struct spop_arg args[] = {
		arg_str("id", id), arg_int("status", 200), arg_headers("headers"),
		arg_str("body", body), arg_int("body_len", (int64_t)strlen(body)),
		arg_int("body_size", (int64_t)strlen(body)),
	};

	message(f, "miffy-res", args, sizeof(args) / sizeof(args[0]));
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	stats_reset();
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	f->cfg.exchange_ttl = 0.05;
	f->cfg.max_exchanges = 100;
	f->cfg.max_buffered = 1000;
	f->cfg.methods.items = default_methods;
	f->cfg.methods.count = sizeof(default_methods) / sizeof(default_methods[0]);
	f->cfg.max_depth = 128;
	f->cfg.max_decompressed = 1 << 20;
	f->compare = compare_new(&f->cfg, err, sizeof(err));
	assert_non_null(f->compare);
	struct exchange_deps deps = { .loop = f->loop, .cfg = &f->cfg, .compare = f->compare };
	f->t = exchange_table_new(&deps, err, sizeof(err));
	assert_non_null(f->t);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	exchange_table_free(f->t);
	compare_free(f->compare);
	ev_loop_destroy(f->loop);
	stats_free();
	free(f);
	return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_request_then_response_concludes_the_exchange(void **state)
{
	struct fixture *f = *state;

	request(f, "a1", "GET");
	assert_int_equal(exchange_table_count(f->t), 1);
	assert_int_equal(stats.exchanges_started, 1);
	assert_int_equal(stats.exchanges_inflight, 1);
	response(f, "a1", "hello");
	/* No replay ran: the candidate's empty answer differs from the 200. */
	assert_int_equal(exchange_table_count(f->t), 0);
	assert_int_equal(stats.exchanges_inflight, 0);
	assert_int_equal(stats.outcomes[OUTCOME_DIFFERENT], 1);
	assert_int_equal(stats.outcomes[OUTCOME_EQUAL] + stats.outcomes[OUTCOME_SKIPPED] +
			 stats.outcomes[OUTCOME_EXPIRED] + stats.outcomes[OUTCOME_DROPPED], 0);
}

static void test_without_compare_the_exchange_is_dropped(void **state)
{
	struct fixture *f = *state;
	struct exchange_deps deps = { .loop = f->loop, .cfg = &f->cfg };
	char err[64];

	exchange_table_free(f->t);
	f->t = exchange_table_new(&deps, err, sizeof(err));
	assert_non_null(f->t);
	request(f, "a1", "GET");
	response(f, "a1", "");
	assert_int_equal(exchange_table_count(f->t), 0);
	assert_int_equal(stats.outcomes[OUTCOME_DROPPED], 1);
}

static void test_request_body_over_the_budget_is_skipped_overload(void **state)
{
	struct fixture *f = *state;
	char big[64];
	struct spop_arg args[] = {
		arg_str("id", "b1"), arg_str("method", "GET"), arg_str("path", "/"),
		arg_headers("headers"), arg_text("body", big, sizeof(big)),
		arg_int("body_len", sizeof(big)), arg_int("body_size", sizeof(big)),
	};

	memset(big, 'x', sizeof(big));
	f->cfg.max_buffered = sizeof(big) - 1;
	message(f, "miffy-req", args, sizeof(args) / sizeof(args[0]));
	/* Still in the table, without its body: the response concludes it. */
	assert_int_equal(exchange_table_count(f->t), 1);
	response(f, "b1", "");
	assert_int_equal(exchange_table_count(f->t), 0);
	assert_int_equal(stats.outcomes[OUTCOME_SKIPPED], 1);
	assert_int_equal(stats.skips[SKIP_OVERLOAD], 1);
}

static void test_response_body_over_the_budget_is_skipped_overload(void **state)
{
	struct fixture *f = *state;

	f->cfg.max_buffered = 4;
	request(f, "b2", "GET");
	response(f, "b2", "longer than four");
	assert_int_equal(exchange_table_count(f->t), 0);
	assert_int_equal(stats.outcomes[OUTCOME_SKIPPED], 1);
	assert_int_equal(stats.skips[SKIP_OVERLOAD], 1);
}

static void test_budget_is_given_back_when_an_exchange_ends(void **state)
{
	struct fixture *f = *state;

	f->cfg.max_buffered = 8;
	request(f, "c1", "GET");
	response(f, "c1", "12345678");
	request(f, "c2", "GET");
	response(f, "c2", "12345678");
	assert_int_equal(stats.outcomes[OUTCOME_DIFFERENT], 2);
	assert_int_equal(stats.skips[SKIP_OVERLOAD], 0);
}

static void test_request_without_response_expires_after_the_ttl(void **state)
{
	struct fixture *f = *state;
	ev_tstamp start;

	request(f, "t1", "GET");
	start = ev_time();
	/* The TTL timer is the loop's only watcher: ev_run returns once it fired. */
	ev_run(f->loop, 0);
	assert_true(ev_time() - start >= f->cfg.exchange_ttl * 0.9);
	assert_int_equal(exchange_table_count(f->t), 0);
	assert_int_equal(stats.outcomes[OUTCOME_EXPIRED], 1);
	/* Its response, too late, finds nothing to pair with. */
	response(f, "t1", "");
	assert_int_equal(stats.anomalies[ANOMALY_ORPHAN_RESPONSE], 1);
}

static void test_skipped_exchange_that_times_out_stays_skipped(void **state)
{
	struct fixture *f = *state;

	request(f, "t2", "POST");
	ev_run(f->loop, 0);
	assert_int_equal(stats.outcomes[OUTCOME_SKIPPED], 1);
	assert_int_equal(stats.skips[SKIP_METHOD], 1);
	assert_int_equal(stats.outcomes[OUTCOME_EXPIRED], 0);
}

static void test_ttl_expires_only_the_old_exchanges(void **state)
{
	struct fixture *f = *state;

	request(f, "t3", "GET");
	ev_run(f->loop, EVRUN_NOWAIT);
	assert_int_equal(exchange_table_count(f->t), 1);
	assert_int_equal(stats.outcomes[OUTCOME_EXPIRED], 0);
	ev_run(f->loop, 0);
	assert_int_equal(stats.outcomes[OUTCOME_EXPIRED], 1);
}

static void test_duplicate_request_id_is_an_anomaly(void **state)
{
	struct fixture *f = *state;

	request(f, "d1", "GET");
	request(f, "d1", "GET");
	assert_int_equal(stats.anomalies[ANOMALY_DUPLICATE_ID], 1);
	assert_int_equal(exchange_table_count(f->t), 1);
	assert_int_equal(stats.exchanges_started, 1);
	response(f, "d1", "");
	assert_int_equal(stats.outcomes[OUTCOME_DIFFERENT], 1);
}

static void test_response_without_request_is_an_orphan(void **state)
{
	struct fixture *f = *state;

	response(f, "o1", "");
	assert_int_equal(stats.anomalies[ANOMALY_ORPHAN_RESPONSE], 1);
	assert_int_equal(exchange_table_count(f->t), 0);
	assert_int_equal(stats.exchanges_started, 0);
}

static void test_message_without_id_is_missing_id(void **state)
{
	struct fixture *f = *state;
	struct spop_arg args[] = { arg_str("method", "GET"), arg_str("path", "/") };

	message(f, "miffy-req", args, 2);
	assert_int_equal(stats.anomalies[ANOMALY_MISSING_ID], 1);
	assert_int_equal(exchange_table_count(f->t), 0);
}

static void test_unknown_message_is_counted(void **state)
{
	struct fixture *f = *state;
	struct spop_arg args[] = { arg_str("id", "u1") };

	message(f, "miffy-other", args, 1);
	assert_int_equal(stats.anomalies[ANOMALY_UNKNOWN_MESSAGE], 1);
	assert_int_equal(exchange_table_count(f->t), 0);
}

static void test_bad_status_is_bad_args(void **state)
{
	struct fixture *f = *state;
	struct spop_arg args[] = { arg_str("id", "s1"), arg_int("status", 42) };

	request(f, "s1", "GET");
	message(f, "miffy-res", args, 2);
	assert_int_equal(stats.anomalies[ANOMALY_BAD_ARGS], 1);
	/* The exchange waits on: a valid response may still come. */
	assert_int_equal(exchange_table_count(f->t), 1);
}

static void test_miffy_tx_is_a_whole_exchange_in_one_message(void **state)
{
	struct fixture *f = *state;
	struct spop_arg args[] = {
		arg_str("id", "x1"), arg_str("method", "GET"), arg_str("path", "/api/1"),
		arg_headers("req_headers"), arg_int("status", 200), arg_headers("res_headers"),
		arg_str("res_body", "ok"), arg_int("res_body_len", 2), arg_int("latency_us", 1500),
	};

	message(f, "miffy-tx", args, sizeof(args) / sizeof(args[0]));
	assert_int_equal(exchange_table_count(f->t), 0);
	assert_int_equal(stats.exchanges_started, 1);
	assert_int_equal(stats.outcomes[OUTCOME_DIFFERENT], 1);
}

static void test_miffy_tx_without_request_headers_is_not_replayed(void **state)
{
	struct fixture *f = *state;
	struct spop_arg args[] = {
		arg_str("id", "x2"), arg_str("method", "GET"), arg_str("path", "/"),
		arg_int("status", 200), arg_headers("res_headers"),
	};

	message(f, "miffy-tx", args, sizeof(args) / sizeof(args[0]));
	assert_int_equal(exchange_table_count(f->t), 0);
	assert_int_equal(stats.outcomes[OUTCOME_SKIPPED], 1);
	assert_int_equal(stats.skips[SKIP_REQUEST_TRUNCATED], 1);
}

static void test_miffy_tx_unsided_body_names_are_not_the_request_body(void **state)
{
	struct fixture *f = *state;
	/* "body_len" without a side prefix is neither side's: the request is whole. */
	struct spop_arg args[] = {
		arg_str("id", "x3"), arg_str("method", "GET"), arg_str("path", "/"),
		arg_headers("req_headers"), arg_int("body_len", 5), arg_int("status", 200),
	};

	message(f, "miffy-tx", args, sizeof(args) / sizeof(args[0]));
	assert_int_equal(stats.skips[SKIP_REQUEST_TRUNCATED], 0);
	assert_int_equal(stats.outcomes[OUTCOME_DIFFERENT], 1);
}

static void test_miffy_tx_reads_headers_by_side(void **state)
{
	struct fixture *f = *state;
	static const char bad[] = { 5, 'a' };
	/* Unprefixed "headers" is neither side's; res_headers is the response's. */
	struct spop_arg args[] = {
		arg_str("id", "x4"), arg_str("method", "GET"), arg_str("path", "/"),
		arg_headers("headers"), arg_int("status", 200), arg_text("res_headers", bad, sizeof(bad)),
	};

	message(f, "miffy-tx", args, sizeof(args) / sizeof(args[0]));
	/* The response is refused (bad hdrs_bin): the exchange waits, unreplayed. */
	assert_int_equal(stats.anomalies[ANOMALY_BAD_ARGS], 1);
	assert_int_equal(exchange_table_count(f->t), 1);
	exchange_table_free(f->t);
	f->t = NULL;
	assert_int_equal(stats.skips[SKIP_REQUEST_TRUNCATED], 1);
}

static void test_cut_request_body_is_skipped_request_truncated(void **state)
{
	struct fixture *f = *state;
	struct spop_arg args[] = {
		arg_str("id", "r1"), arg_str("method", "GET"), arg_str("path", "/"),
		arg_headers("headers"), arg_str("body", "0123456789"), arg_int("body_len", 10),
		arg_int("body_size", 20),
	};

	message(f, "miffy-req", args, sizeof(args) / sizeof(args[0]));
	assert_int_equal(exchange_table_count(f->t), 1);
	response(f, "r1", "");
	assert_int_equal(stats.outcomes[OUTCOME_SKIPPED], 1);
	assert_int_equal(stats.skips[SKIP_REQUEST_TRUNCATED], 1);
}

static void test_method_not_allowed_is_skipped_method(void **state)
{
	struct fixture *f = *state;

	request(f, "m1", "DELETE");
	response(f, "m1", "");
	assert_int_equal(stats.outcomes[OUTCOME_SKIPPED], 1);
	assert_int_equal(stats.skips[SKIP_METHOD], 1);
}

static void test_full_table_drops_the_request(void **state)
{
	struct fixture *f = *state;

	f->cfg.max_exchanges = 1;
	request(f, "f1", "GET");
	request(f, "f2", "GET");
	assert_int_equal(exchange_table_count(f->t), 1);
	assert_int_equal(stats.outcomes[OUTCOME_DROPPED], 1);
	assert_int_equal(stats.exchanges_started, 1);
}

static void test_free_counts_pending_exchanges_skipped_shutdown(void **state)
{
	struct fixture *f = *state;

	request(f, "z1", "GET");
	request(f, "z2", "GET");
	exchange_table_free(f->t);
	f->t = NULL;
	assert_int_equal(stats.outcomes[OUTCOME_SKIPPED], 2);
	assert_int_equal(stats.skips[SKIP_SHUTDOWN], 2);
	assert_int_equal(stats.exchanges_inflight, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_request_then_response_concludes_the_exchange),
		T(test_without_compare_the_exchange_is_dropped),
		T(test_request_body_over_the_budget_is_skipped_overload),
		T(test_response_body_over_the_budget_is_skipped_overload),
		T(test_budget_is_given_back_when_an_exchange_ends),
		T(test_request_without_response_expires_after_the_ttl),
		T(test_skipped_exchange_that_times_out_stays_skipped),
		T(test_ttl_expires_only_the_old_exchanges),
		T(test_duplicate_request_id_is_an_anomaly),
		T(test_response_without_request_is_an_orphan),
		T(test_message_without_id_is_missing_id),
		T(test_unknown_message_is_counted),
		T(test_bad_status_is_bad_args),
		T(test_miffy_tx_is_a_whole_exchange_in_one_message),
		T(test_miffy_tx_without_request_headers_is_not_replayed),
		T(test_miffy_tx_unsided_body_names_are_not_the_request_body),
		T(test_miffy_tx_reads_headers_by_side),
		T(test_cut_request_body_is_skipped_request_truncated),
		T(test_method_not_allowed_is_skipped_method),
		T(test_full_table_drops_the_request),
		T(test_free_counts_pending_exchanges_skipped_shutdown),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
