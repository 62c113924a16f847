/* Unit tests of verdict: the latency rule, Wilson's and Newcombe's
 * intervals on published values, and the per-field confidence verdict. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "verdict.h"

/* The published figures have four decimals. */
#define TOL4 0.00005

static void assert_near(double got, double want, double tol)
{
	if (!(fabs(got - want) <= tol))
		fail_msg("got %.6f, want %.6f (+-%g)", got, want, tol);
}

/* ---- Wilson ---------------------------------------------------------------
 * Newcombe R.G., "Two-sided confidence intervals for the single proportion:
 * comparison of seven methods", Statistics in Medicine 17:857-872 (1998),
 * Table II, method 3 (score interval without continuity correction). */
static void test_wilson_matches_newcombe_1998a(void **state)
{
	static const struct { uint64_t k, n; double lower, upper; } cases[] = {
		{ 81, 263, 0.2553, 0.3662 },
		{ 15, 148, 0.0624, 0.1605 },
		{ 0, 20, 0.0000, 0.1611 },
		{ 1, 29, 0.0061, 0.1718 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct verdict_interval iv = verdict_wilson(cases[i].k, cases[i].n, VERDICT_Z);

		assert_near(iv.lower, cases[i].lower, TOL4);
		assert_near(iv.upper, cases[i].upper, TOL4);
	}
}

static void test_wilson_bounds_are_exact_at_the_ends(void **state)
{
	struct verdict_interval none = verdict_wilson(0, 50, VERDICT_Z), all = verdict_wilson(50, 50, VERDICT_Z);
	struct verdict_interval empty = verdict_wilson(0, 0, VERDICT_Z);

	assert_true(none.lower == 0);
	assert_true(all.upper == 1);
	assert_near(none.upper, 1 - all.lower, 1e-12);
	assert_true(empty.lower == 0 && empty.upper == 1);
}

/* ---- Newcombe -------------------------------------------------------------
 * Newcombe R.G., "Interval estimation for the difference between independent
 * proportions: comparison of eleven methods", Statistics in Medicine
 * 17:873-890 (1998), Table II, method 10 (score, no continuity correction),
 * 95 %: its eight examples (a)-(h). */
static void test_newcombe_matches_newcombe_1998b(void **state)
{
	static const struct { uint64_t k1, n1, k2, n2; double lower, upper; } cases[] = {
		{ 56, 70, 48, 80, 0.0524, 0.3339 },
		{ 9, 10, 3, 10, 0.1705, 0.8090 },
		{ 6, 7, 2, 7, 0.0582, 0.8062 },
		{ 5, 56, 0, 29, -0.0381, 0.1926 },
		{ 0, 10, 0, 20, -0.1611, 0.2775 },
		{ 0, 10, 0, 10, -0.2775, 0.2775 },
		{ 10, 10, 0, 20, 0.6791, 1.0000 },
		{ 10, 10, 0, 10, 0.6075, 1.0000 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct verdict_interval iv = verdict_newcombe(cases[i].k1, cases[i].n1, cases[i].k2, cases[i].n2,
						      VERDICT_Z);

		assert_near(iv.lower, cases[i].lower, TOL4);
		assert_near(iv.upper, cases[i].upper, TOL4);
	}
}

/* ---- the noise verdict ----------------------------------------------------
 * Expected bounds computed apart from this code, in Python (double
 * precision), from the formulas of docs/comparison.md: Wilson's interval for
 * raw/n and noise/n, then Newcombe's; the same script gives the published
 * figures above. */

static void test_same_rates_more_exchanges_make_a_regression(void **state)
{
	struct noise_confidence few, many;

	/* 30 % against 10 % of 10 exchanges: [-0.1598, 0.5141], 0 inside. */
	verdict_noise(3, 1, 10, &few);
	assert_int_equal(few.verdict, NOISE_NOT_DIFFERENT);
	assert_near(few.diff.lower, -0.159794, 1e-5);
	assert_near(few.diff.upper, 0.514146, 1e-5);
	assert_near(few.raw_rate, 0.3, 1e-12);
	assert_near(few.noise_rate, 0.1, 1e-12);
	/* The same rates of 1,000: [0.1658, 0.2338], above 0. */
	verdict_noise(300, 100, 1000, &many);
	assert_int_equal(many.verdict, NOISE_REGRESSION);
	assert_near(many.diff.lower, 0.165832, 1e-5);
	assert_near(many.diff.upper, 0.233768, 1e-5);
}

static void test_three_exchanges_are_insufficient_data(void **state)
{
	struct noise_confidence c;

	/* 3 of 3 against 0 of 3 has a lower bound of 0.2059 > 0, but three
	 * exchanges are below VERDICT_MIN_EXCHANGES: no verdict, the interval
	 * still reported. */
	verdict_noise(3, 0, 3, &c);
	assert_int_equal(c.verdict, NOISE_INSUFFICIENT_DATA);
	assert_near(c.diff.lower, 0.205923, 1e-5);
	assert_true(c.diff.upper == 1);
	verdict_noise(0, 0, 0, &c);
	assert_int_equal(c.verdict, NOISE_INSUFFICIENT_DATA);
}

static void test_a_field_both_sides_always_differ_on_is_noise(void **state)
{
	struct noise_confidence c;

	/* 30 of 30 both ways: [-0.1135, 0.1135]. */
	verdict_noise(30, 30, 30, &c);
	assert_int_equal(c.verdict, NOISE_NOT_DIFFERENT);
	assert_near(c.diff.lower, -0.113513, 1e-5);
	assert_near(c.diff.upper, 0.113513, 1e-5);
}

static void test_rare_differences_need_enough_of_them(void **state)
{
	struct noise_confidence c;

	/* Of 3,000 exchanges: 5 against 0 is a regression (lower 0.000071),
	 * 2 against 0 is not (lower -0.000701). */
	verdict_noise(5, 0, 3000, &c);
	assert_int_equal(c.verdict, NOISE_REGRESSION);
	assert_near(c.diff.lower, 0.000071, 1e-6);
	verdict_noise(2, 0, 3000, &c);
	assert_int_equal(c.verdict, NOISE_NOT_DIFFERENT);
	assert_near(c.diff.lower, -0.000701, 1e-6);
}

static void test_counts_above_n_are_clamped(void **state)
{
	struct noise_confidence c;

	verdict_noise(50, 0, 20, &c);
	assert_near(c.raw_rate, 1.0, 1e-12);
	assert_true(c.diff.upper <= 1.0);
	assert_int_equal(c.verdict, NOISE_REGRESSION);
}

static void test_the_verdict_alone_is_the_verdict_with_its_interval(void **state)
{
	static const uint64_t ns[] = { 0, 3, 9, 10, 11, 30, 100, 1000, 3000 };

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		uint64_t n = ns[i], step = n > 40 ? n / 40 : 1;

		for (uint64_t raw = 0; raw <= n + 1; raw += step)
			for (uint64_t noise = 0; noise <= n + 1; noise += step) {
				struct noise_confidence c;

				verdict_noise(raw, noise, n, &c);
				if (verdict_noise_only(raw, noise, n) != c.verdict)
					fail_msg("raw %lu noise %lu n %lu", (unsigned long)raw,
						 (unsigned long)noise, (unsigned long)n);
			}
	}
}

static void test_verdict_names(void **state)
{
	assert_string_equal(noise_verdict_name(NOISE_INSUFFICIENT_DATA), "insufficient_data");
	assert_string_equal(noise_verdict_name(NOISE_NOT_DIFFERENT), "noise");
	assert_string_equal(noise_verdict_name(NOISE_REGRESSION), "regression");
	assert_string_equal(latency_verdict_name(LATENCY_INSUFFICIENT_DATA), "insufficient_data");
	assert_string_equal(latency_verdict_name(LATENCY_WITHIN_TOLERANCE), "within_tolerance");
	assert_string_equal(latency_verdict_name(LATENCY_SLOWER), "slower");
}

/* ---- latency ------------------------------------------------------------- */

static const struct latency_rule rule = { .tolerance = 0.25, .floor_ms = 2, .min_count = 100 };

static enum latency_verdict judge(double ref50, double ref99, double cand50, double cand99,
				  struct latency_judgement *j)
{
	struct latency_side ref = { 500, ref50, ref99 }, cand = { 500, cand50, cand99 };

	verdict_latency(&rule, &ref, &cand, j);
	return j->verdict;
}

static void test_twice_as_slow_under_the_floor_is_no_verdict(void **state)
{
	struct latency_judgement j;

	/* 0.1 ms against 0.2 ms: ratio 2, but 0.1 ms is below the 2 ms floor. */
	assert_int_equal(judge(0.1, 0.2, 0.2, 0.4, &j), LATENCY_WITHIN_TOLERANCE);
	assert_near(j.ratio_p50, 2.0, 1e-12);
	assert_false(j.slower_p50);
}

static void test_slower_within_the_tolerance_is_no_verdict(void **state)
{
	struct latency_judgement j;

	/* 120 ms against 100 ms: 20 ms above the floor, 20 % within 25 %. */
	assert_int_equal(judge(100, 200, 120, 240, &j), LATENCY_WITHIN_TOLERANCE);
	assert_near(j.ratio_p99, 1.2, 1e-12);
}

static void test_slower_beyond_both_is_a_verdict(void **state)
{
	struct latency_judgement j;

	assert_int_equal(judge(10, 20, 30, 60, &j), LATENCY_SLOWER);
	assert_true(j.slower_p50);
	assert_true(j.slower_p99);
	assert_near(j.ratio_p50, 3.0, 1e-12);
}

static void test_a_slow_tail_alone_is_a_verdict(void **state)
{
	struct latency_judgement j;

	assert_int_equal(judge(10, 20, 10, 80, &j), LATENCY_SLOWER);
	assert_false(j.slower_p50);
	assert_true(j.slower_p99);
}

static void test_faster_is_never_a_verdict(void **state)
{
	struct latency_judgement j;

	assert_int_equal(judge(50, 100, 5, 10, &j), LATENCY_WITHIN_TOLERANCE);
}

static void test_too_few_latencies_is_insufficient_data(void **state)
{
	struct latency_side ref = { 100, 10, 20 }, cand = { 99, 100, 200 };
	struct latency_judgement j;

	verdict_latency(&rule, &ref, &cand, &j);
	assert_int_equal(j.verdict, LATENCY_INSUFFICIENT_DATA);
	assert_false(j.slower_p50 || j.slower_p99);
	assert_near(j.ratio_p50, 10.0, 1e-12);   /* the ratios are still given */
	cand.count = 100;
	verdict_latency(&rule, &ref, &cand, &j);
	assert_int_equal(j.verdict, LATENCY_SLOWER);
}

static void test_a_zero_reference_has_no_ratio(void **state)
{
	struct latency_judgement j;

	assert_int_equal(judge(0, 0, 5, 5, &j), LATENCY_SLOWER);
	assert_true(j.ratio_p50 == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wilson_matches_newcombe_1998a),
		cmocka_unit_test(test_wilson_bounds_are_exact_at_the_ends),
		cmocka_unit_test(test_newcombe_matches_newcombe_1998b),
		cmocka_unit_test(test_same_rates_more_exchanges_make_a_regression),
		cmocka_unit_test(test_three_exchanges_are_insufficient_data),
		cmocka_unit_test(test_a_field_both_sides_always_differ_on_is_noise),
		cmocka_unit_test(test_rare_differences_need_enough_of_them),
		cmocka_unit_test(test_counts_above_n_are_clamped),
		cmocka_unit_test(test_the_verdict_alone_is_the_verdict_with_its_interval),
		cmocka_unit_test(test_verdict_names),
		cmocka_unit_test(test_twice_as_slow_under_the_floor_is_no_verdict),
		cmocka_unit_test(test_slower_within_the_tolerance_is_no_verdict),
		cmocka_unit_test(test_slower_beyond_both_is_a_verdict),
		cmocka_unit_test(test_a_slow_tail_alone_is_a_verdict),
		cmocka_unit_test(test_faster_is_never_a_verdict),
		cmocka_unit_test(test_too_few_latencies_is_insufficient_data),
		cmocka_unit_test(test_a_zero_reference_has_no_ratio),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
