/* Unit tests of admit: the derived limits, the fair rule, the shedding of
 * a hot endpoint before a rare one, and the rate cap. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "admit.h"
#include "config-t.h"

static struct admit *make(unsigned concurrent, unsigned conns, bool capped, unsigned rps, unsigned targets)
{
	struct admit_limits lim = { .max_concurrent = concurrent, .max_host_connections = conns,
				    .max_candidate_rps = rps, .connections_capped = capped };
	char err[64];
	struct admit *a = admit_new(&lim, targets, err, sizeof(err));

	assert_non_null(a);
	return a;
}

/* Admits and starts one exchange of endpoint on one target, or returns
 * why it was shed. */
static enum skip_reason take(struct admit *a, const char *endpoint, double now, unsigned *slot)
{
	unsigned s = 0;
	enum skip_reason r = admit_check(a, endpoint, now, &s);

	if (r == SKIP_NONE)
		admit_started(a, s, ROLE_CANDIDATE);
	if (slot)
		*slot = s;
	return r;
}

/* ---- the limits ------------------------------------------------------------ */

static void test_unset_limits_come_from_max_buffered_and_the_descriptors(void **state)
{
	struct config cfg = { .max_buffered = 256u << 20, .max_connections = 1024 };
	struct admit_limits lim;

	(void)state;
	admit_limits_derive(&cfg, 1u << 20, 1, &lim);
	assert_int_equal(lim.max_concurrent, (256u << 20) / ADMIT_REPLAY_COST);
	assert_int_equal(lim.max_host_connections, lim.max_concurrent);
	assert_false(lim.connections_capped);
	assert_int_equal(lim.max_candidate_rps, 0);
	/* few descriptors: what is left after HAProxy's connections, per target */
	admit_limits_derive(&cfg, 5000, 2, &lim);
	assert_int_equal(lim.max_host_connections, (5000 - 1024 - ADMIT_FD_RESERVE) / 2);
	/* none left: still one */
	admit_limits_derive(&cfg, 100, 1, &lim);
	assert_int_equal(lim.max_host_connections, 1);
	cfg.max_buffered = 100;
	admit_limits_derive(&cfg, 1u << 20, 1, &lim);
	assert_int_equal(lim.max_concurrent, 1);
}

static void test_explicit_settings_are_kept(void **state)
{
	struct config cfg = { .max_buffered = 256u << 20, .max_connections = 1024, .max_concurrent = 1000,
			      .max_host_connections = 64, .max_candidate_rps = 50 };
	struct admit_limits lim;

	(void)state;
	admit_limits_derive(&cfg, 100, 1, &lim);
	assert_int_equal(lim.max_concurrent, 1000);
	assert_int_equal(lim.max_host_connections, 64);
	assert_true(lim.connections_capped);
	assert_int_equal(lim.max_candidate_rps, 50);
}

/* ---- the rule ---------------------------------------------------------------- */

static void test_a_lone_endpoint_may_use_the_whole_budget(void **state)
{
	(void)state;
	for (unsigned used = 0; used < 100; used++)
		assert_true(admit_fair(used, 100, used, 1));
	assert_false(admit_fair(100, 100, 100, 1));
}

static void test_above_its_share_an_endpoint_leaves_the_last_eighth(void **state)
{
	(void)state;
	/* two active endpoints, 100 units: the share is 50, the reserve 13 */
	assert_true(admit_fair(86, 100, 86, 2));
	assert_false(admit_fair(87, 100, 87, 2));
	/* the one under its share still gets the reserved units */
	assert_true(admit_fair(99, 100, 0, 2));
	assert_false(admit_fair(100, 100, 0, 2));
	/* a small budget keeps a reserve of one */
	assert_false(admit_fair(2, 3, 2, 2));
	assert_true(admit_fair(2, 3, 0, 2));
}

/* ---- shedding ---------------------------------------------------------------- */

static void test_a_rare_endpoint_is_admitted_while_a_hot_one_is_shed(void **state)
{
	struct admit *a = make(16, 16, false, 0, 1);
	unsigned hot = 0, shed = 0;

	(void)state;
	/* the rare endpoint was seen once: it counts in the share */
	assert_int_equal(take(a, "GET /rare", 0.0, NULL), SKIP_NONE);
	for (int i = 0; i < 100; i++) {
		enum skip_reason r = take(a, "GET /hot", 0.1, NULL);

		if (r == SKIP_NONE)
			hot++;
		else
			assert_int_equal(r, SKIP_OVERLOAD), shed++;
	}
	/* 16 - 1 in flight for the rare one, the reserve of 2 kept */
	assert_int_equal(hot, 13);
	assert_int_equal(shed, 87);
	assert_int_equal(admit_inflight(a), 14);
	assert_int_equal(take(a, "GET /rare", 0.2, NULL), SKIP_NONE);
	assert_int_equal(take(a, "GET /rare", 0.2, NULL), SKIP_NONE);
	assert_int_equal(take(a, "GET /rare", 0.2, NULL), SKIP_OVERLOAD);   /* full */
	admit_free(a);
}

static void test_ended_replays_give_their_slot_back(void **state)
{
	struct admit *a = make(2, 2, false, 0, 1);
	unsigned s1, s2;

	(void)state;
	assert_int_equal(take(a, "GET /a", 0.0, &s1), SKIP_NONE);
	assert_int_equal(take(a, "GET /a", 0.0, &s2), SKIP_NONE);
	assert_int_equal(take(a, "GET /a", 0.0, NULL), SKIP_OVERLOAD);
	admit_ended(a, s1, ROLE_CANDIDATE);
	assert_int_equal(admit_inflight(a), 1);
	assert_int_equal(take(a, "GET /a", 0.0, NULL), SKIP_NONE);
	/* an end too many changes nothing */
	admit_ended(a, s2, ROLE_CANDIDATE);
	admit_ended(a, s2, ROLE_CANDIDATE);
	admit_ended(a, s2, ROLE_CANDIDATE);
	assert_int_equal(admit_inflight(a), 0);
	admit_free(a);
}

static void test_a_quiet_endpoint_stops_counting_in_the_share(void **state)
{
	struct admit *a = make(8, 8, false, 0, 1);
	unsigned n = 0;

	(void)state;
	assert_int_equal(take(a, "GET /once", 0.0, NULL), SKIP_NONE);
	/* long after, the lone hot endpoint gets the whole budget again,
	 * but for the slot the quiet one still holds */
	while (take(a, "GET /hot", ADMIT_ACTIVE_SECONDS + 5.0, NULL) == SKIP_NONE)
		n++;
	assert_int_equal(n, 7);
	admit_free(a);
}

static void test_a_user_connection_cap_sheds_as_candidate_cap(void **state)
{
	struct admit *a = make(100, 3, true, 0, 1), *b = make(100, 3, false, 0, 1);

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(take(a, "GET /x", 0.0, NULL), SKIP_NONE);
		assert_int_equal(take(b, "GET /x", 0.0, NULL), SKIP_NONE);
	}
	assert_int_equal(take(a, "GET /x", 0.0, NULL), SKIP_CANDIDATE_CAP);
	/* derived from the descriptors, the same limit is the agent's own */
	assert_int_equal(take(b, "GET /x", 0.0, NULL), SKIP_OVERLOAD);
	admit_free(a);
	admit_free(b);
}

static void test_with_a_secondary_both_targets_must_have_room(void **state)
{
	struct admit *a = make(4, 100, false, 0, 2);
	unsigned s;

	(void)state;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(admit_check(a, "GET /x", 0.0, &s), SKIP_NONE);
		admit_started(a, s, ROLE_CANDIDATE);
		admit_started(a, s, ROLE_SECONDARY);
	}
	/* 4 replays in flight: no room for two more */
	assert_int_equal(admit_check(a, "GET /x", 0.0, &s), SKIP_OVERLOAD);
	admit_ended(a, s, ROLE_SECONDARY);
	assert_int_equal(admit_check(a, "GET /x", 0.0, &s), SKIP_OVERLOAD);
	admit_ended(a, s, ROLE_CANDIDATE);
	assert_int_equal(admit_check(a, "GET /x", 0.0, &s), SKIP_NONE);
	admit_free(a);
}

static void test_endpoints_past_the_table_share_one_slot(void **state)
{
	struct admit *a = make(1000000, 1000000, false, 0, 1);
	char name[32];
	unsigned first = 0, s = 0;

	(void)state;
	for (int i = 0; i < ADMIT_MAX_ENDPOINTS + 20; i++) {
		snprintf(name, sizeof(name), "GET /e%d", i);
		assert_int_equal(admit_check(a, name, 0.0, &s), SKIP_NONE);
		if (i == ADMIT_MAX_ENDPOINTS)
			first = s;
		if (i > ADMIT_MAX_ENDPOINTS)
			assert_int_equal(s, first);
	}
	assert_int_equal(first, ADMIT_MAX_ENDPOINTS);
	assert_int_equal(admit_check(a, "GET /e3", 0.0, &s), SKIP_NONE);
	assert_int_equal(s, 3);
	admit_free(a);
}

/* ---- the rate cap ------------------------------------------------------------- */

static void test_the_rate_cap_holds_each_second(void **state)
{
	struct admit *a = make(1000000, 1000000, false, 50, 1);
	unsigned admitted = 0, capped = 0;

	(void)state;
	/* 1000 exchanges a second for 5 s, evenly spread */
	for (int i = 0; i < 5000; i++) {
		unsigned s;
		enum skip_reason r = admit_check(a, "GET /x", 100.0 + i / 1000.0, &s);

		if (r == SKIP_NONE)
			admitted++;
		else
			assert_int_equal(r, SKIP_CANDIDATE_CAP), capped++;
	}
	assert_int_equal(admitted, 250);
	assert_int_equal(capped, 4750);
	admit_free(a);
}

static void test_the_rate_cap_is_paced_within_the_second(void **state)
{
	struct admit *a = make(1000000, 1000000, false, 100, 1);
	unsigned s, n = 0;

	(void)state;
	/* a burst at the start of a second gets a tenth of the cap */
	while (admit_check(a, "GET /x", 10.0, &s) == SKIP_NONE)
		n++;
	assert_int_equal(n, 10);
	/* half way through, up to six tenths in all */
	while (admit_check(a, "GET /x", 10.5, &s) == SKIP_NONE)
		n++;
	assert_int_equal(n, 60);
	admit_free(a);
}

static void test_the_rate_cap_keeps_room_for_a_rare_endpoint(void **state)
{
	struct admit *a = make(1000000, 1000000, false, 80, 1);
	unsigned s, rare = 0;

	(void)state;
	assert_int_equal(admit_check(a, "GET /rare", 0.0, &s), SKIP_NONE);
	for (int i = 0; i < 3000; i++) {
		double now = 1.0 + i / 1000.0;

		(void)admit_check(a, "GET /hot", now, &s);
		/* the rare one comes 5 times a second, after the hot burst */
		if (i % 200 == 199 && admit_check(a, "GET /rare", now, &s) == SKIP_NONE)
			rare++;
	}
	assert_int_equal(rare, 15);
	admit_free(a);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unset_limits_come_from_max_buffered_and_the_descriptors),
		cmocka_unit_test(test_explicit_settings_are_kept),
		cmocka_unit_test(test_a_lone_endpoint_may_use_the_whole_budget),
		cmocka_unit_test(test_above_its_share_an_endpoint_leaves_the_last_eighth),
		cmocka_unit_test(test_a_rare_endpoint_is_admitted_while_a_hot_one_is_shed),
		cmocka_unit_test(test_ended_replays_give_their_slot_back),
		cmocka_unit_test(test_a_quiet_endpoint_stops_counting_in_the_share),
		cmocka_unit_test(test_a_user_connection_cap_sheds_as_candidate_cap),
		cmocka_unit_test(test_with_a_secondary_both_targets_must_have_room),
		cmocka_unit_test(test_endpoints_past_the_table_share_one_slot),
		cmocka_unit_test(test_the_rate_cap_holds_each_second),
		cmocka_unit_test(test_the_rate_cap_is_paced_within_the_second),
		cmocka_unit_test(test_the_rate_cap_keeps_room_for_a_rare_endpoint),
	};

	return cmocka_run_group_tests_name("admit", tests, NULL, NULL);
}
