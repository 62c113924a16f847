/* Unit tests of minutes: the per-minute buckets of the last hour. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "minutes.h"

#define T0 1800000000.0   /* a wall-clock time on a minute boundary (30000000 min) */

static void test_outcomes_count_in_the_minute_they_end(void **state)
{
	struct minutes m;
	struct minute_bucket b;

	(void)state;
	memset(&m, 0, sizeof(m));
	minutes_add(&m, T0 + 1, OUTCOME_EQUAL);
	minutes_add(&m, T0 + 2, OUTCOME_DIFFERENT);
	minutes_add(&m, T0 + 3, OUTCOME_NOISE);
	minutes_add(&m, T0 + 59.9, OUTCOME_CANDIDATE_ERROR);
	b = minutes_at(&m, T0 + 30, 0);
	assert_int_equal(b.minute, (int64_t)(T0 / 60));
	assert_int_equal(b.compared, 3);
	assert_int_equal(b.different, 1);
	assert_int_equal(b.noise, 1);
	assert_int_equal(b.candidate_error, 1);
}

static void test_skipped_expired_and_dropped_are_not_compared(void **state)
{
	struct minutes m;
	struct minute_bucket b;

	(void)state;
	memset(&m, 0, sizeof(m));
	minutes_add(&m, T0, OUTCOME_SKIPPED);
	minutes_add(&m, T0, OUTCOME_EXPIRED);
	minutes_add(&m, T0, OUTCOME_DROPPED);
	b = minutes_at(&m, T0, 0);
	assert_int_equal(b.compared + b.different + b.noise + b.candidate_error, 0);
}

static void test_earlier_minutes_are_read_by_how_long_ago(void **state)
{
	struct minutes m;

	(void)state;
	memset(&m, 0, sizeof(m));
	minutes_add(&m, T0, OUTCOME_DIFFERENT);
	minutes_add(&m, T0 + 60, OUTCOME_EQUAL);
	minutes_add(&m, T0 + 60, OUTCOME_EQUAL);
	assert_int_equal(minutes_at(&m, T0 + 61, 0).compared, 2);
	assert_int_equal(minutes_at(&m, T0 + 61, 1).different, 1);
	assert_int_equal(minutes_at(&m, T0 + 61, 1).minute, (int64_t)(T0 / 60));
	assert_int_equal(minutes_at(&m, T0 + 61, 2).compared, 0);
}

static void test_a_minute_an_hour_old_is_forgotten(void **state)
{
	struct minutes m;

	(void)state;
	memset(&m, 0, sizeof(m));
	minutes_add(&m, T0, OUTCOME_DIFFERENT);
	/* Still the oldest kept 59 minutes later, gone at 60. */
	assert_int_equal(minutes_at(&m, T0 + 59 * 60, MINUTES_KEPT - 1).different, 1);
	assert_int_equal(minutes_at(&m, T0 + 60 * 60, MINUTES_KEPT - 1).different, 0);
	assert_int_equal(minutes_at(&m, T0 + 60 * 60, MINUTES_KEPT).different, 0);
	/* The same slot, an hour later, starts from zero. */
	minutes_add(&m, T0 + 3600, OUTCOME_EQUAL);
	assert_int_equal(minutes_at(&m, T0 + 3600, 0).different, 0);
	assert_int_equal(minutes_at(&m, T0 + 3600, 0).compared, 1);
}

static void test_a_quiet_hour_reads_as_zeros(void **state)
{
	struct minutes m;

	(void)state;
	memset(&m, 0, sizeof(m));
	minutes_add(&m, T0, OUTCOME_DIFFERENT);
	for (unsigned ago = 0; ago < MINUTES_KEPT; ago++)
		assert_int_equal(minutes_at(&m, T0 + 3 * 3600, ago).different, 0);
}

static void test_the_ring_is_sixty_fixed_buckets(void **state)
{
	(void)state;
	assert_int_equal(MINUTES_KEPT, 60);
	assert_true(sizeof(struct minutes) == MINUTES_KEPT * sizeof(struct minute_bucket));
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes_count_in_the_minute_they_end),
		cmocka_unit_test(test_skipped_expired_and_dropped_are_not_compared),
		cmocka_unit_test(test_earlier_minutes_are_read_by_how_long_ago),
		cmocka_unit_test(test_a_minute_an_hour_old_is_forgotten),
		cmocka_unit_test(test_a_quiet_hour_reads_as_zeros),
		cmocka_unit_test(test_the_ring_is_sixty_fixed_buckets),
	};

	return cmocka_run_group_tests_name("minutes", tests, NULL, NULL);
}
