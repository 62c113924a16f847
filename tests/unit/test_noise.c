/* Unit tests of noise: per-request noise and Diffy's per-field rule. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "config.h"
#include "noise.h"
#include "verdict.h"

#define EP "GET /api/:id"

static struct noise *noise_with(double relative, double absolute)
{
	struct config cfg;
	struct noise *n;
	char err[64];

	memset(&cfg, 0, sizeof(cfg));
	cfg.noise_relative = relative;
	cfg.noise_absolute = absolute;
	n = noise_new(&cfg, err, sizeof(err));
	assert_non_null(n);
	return n;
}

static void diff_push(struct diff_list *l, enum diff_where where, const char *path, enum diff_kind kind)
{
	l->items = realloc(l->items, (l->count + 1) * sizeof(*l->items));
	assert_non_null(l->items);
	memset(&l->items[l->count], 0, sizeof(l->items[0]));
	l->items[l->count].where = where;
	l->items[l->count].path = strdup(path);
	assert_non_null(l->items[l->count].path);
	l->items[l->count].kind = kind;
	l->count++;
	l->cap = l->count;
}

/* One exchange: raw and/or secondary differ at body path (NULL: no). Returns
 * whether the raw difference was marked noise (false when there is none). */
static bool exchange(struct noise *n, const char *raw_path, const char *sec_path)
{
	struct diff_list raw = { 0 }, sec = { 0 };
	bool noise = false, all;

	if (raw_path)
		diff_push(&raw, DIFF_BODY, raw_path, DIFF_VALUE);
	if (sec_path)
		diff_push(&sec, DIFF_BODY, sec_path, DIFF_VALUE);
	all = noise_mark(n, EP, &raw, &sec);
	if (raw.count)
		noise = raw.items[0].noise;
	assert_int_equal(all, noise);
	diff_list_clear(&raw);
	diff_list_clear(&sec);
	return noise;
}

static void field_counts(const struct noise *n, const char *ep, const char *field,
			 int *raw, int *noise, bool *regression)
{
	cJSON *j = noise_stats_json(n, ep), *f;

	assert_non_null(j);
	f = cJSON_GetObjectItemCaseSensitive(j, field);
	assert_non_null(f);
	*raw = cJSON_GetObjectItem(f, "raw")->valueint;
	*noise = cJSON_GetObjectItem(f, "noise")->valueint;
	*regression = cJSON_IsTrue(cJSON_GetObjectItem(f, "regression"));
	cJSON_Delete(j);
}

static void test_difference_shared_with_secondary_is_noise(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	struct diff_list raw = { 0 }, sec = { 0 };

	diff_push(&raw, DIFF_BODY, "/time", DIFF_VALUE);
	diff_push(&raw, DIFF_HEADER, "x-version", DIFF_VALUE);
	diff_push(&sec, DIFF_BODY, "/time", DIFF_VALUE);
	assert_false(noise_mark(n, EP, &raw, &sec));
	assert_true(raw.items[0].noise);
	assert_false(raw.items[1].noise);
	diff_list_clear(&raw);
	diff_list_clear(&sec);
	noise_free(n);
}

static void test_same_path_with_another_kind_is_not_per_request_noise(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	struct diff_list raw = { 0 }, sec = { 0 };

	diff_push(&raw, DIFF_BODY, "/a", DIFF_TYPE);
	diff_push(&sec, DIFF_BODY, "/a", DIFF_VALUE);
	/* raw 1, noise 1 for the field: not raw > noise, so noise by the rule. */
	assert_true(noise_mark(n, EP, &raw, &sec));
	diff_list_clear(&raw);
	diff_list_clear(&sec);
	noise_free(n);
}

static void test_all_noise_returns_true(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	struct diff_list raw = { 0 }, sec = { 0 };

	diff_push(&raw, DIFF_STATUS, "", DIFF_VALUE);
	diff_push(&sec, DIFF_STATUS, "", DIFF_VALUE);
	assert_true(noise_mark(n, EP, &raw, &sec));
	diff_list_clear(&raw);
	diff_list_clear(&sec);
	noise_free(n);
}

static void test_no_difference_returns_false(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	struct diff_list raw = { 0 }, sec = { 0 };

	assert_false(noise_mark(n, EP, &raw, &sec));
	assert_false(noise_mark(n, EP, &raw, NULL));
	noise_free(n);
}

static void test_candidate_only_difference_is_a_regression(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);

	assert_false(exchange(n, "/price", NULL));
	noise_free(n);
}

static void test_raw_equal_to_noise_is_noise(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);

	exchange(n, NULL, "/price");
	assert_true(exchange(n, "/price", NULL));
	noise_free(n);
}

/* relative = |raw-noise|/(raw+noise) must be above 0.20: with noise 4,
 * raw 6 gives exactly 0.20 (noise) and raw 7 gives 0.27 (regression). */
static void test_relative_threshold_at_its_value_is_noise(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	int raw, noise;
	bool regression;

	for (int i = 0; i < 4; i++)
		exchange(n, NULL, "/price");
	for (int i = 0; i < 5; i++)
		exchange(n, "/price", NULL);
	assert_true(exchange(n, "/price", NULL));
	field_counts(n, EP, "body:/price", &raw, &noise, &regression);
	assert_int_equal(raw, 6);
	assert_int_equal(noise, 4);
	assert_false(regression);
	noise_free(n);
}

static void test_relative_threshold_just_above_is_regression(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	int raw, noise;
	bool regression;

	for (int i = 0; i < 4; i++)
		exchange(n, NULL, "/price");
	for (int i = 0; i < 6; i++)
		exchange(n, "/price", NULL);
	assert_false(exchange(n, "/price", NULL));
	field_counts(n, EP, "body:/price", &raw, &noise, &regression);
	assert_int_equal(raw, 7);
	assert_true(regression);
	noise_free(n);
}

/* absolute = |raw-noise|/total must be above 0.1 here: one raw difference
 * in 10 exchanges is exactly 0.1 (noise), in 9 it is 0.11 (regression). */
static void test_absolute_threshold_at_its_value_is_noise(void **state)
{
	struct noise *n = noise_with(0.20, 0.1);

	for (int i = 0; i < 9; i++)
		exchange(n, NULL, NULL);
	assert_true(exchange(n, "/price", NULL));
	noise_free(n);
}

static void test_absolute_threshold_just_above_is_regression(void **state)
{
	struct noise *n = noise_with(0.20, 0.1);

	for (int i = 0; i < 8; i++)
		exchange(n, NULL, NULL);
	assert_false(exchange(n, "/price", NULL));
	noise_free(n);
}

static void test_fields_keep_array_indices(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	int raw, noise;
	bool regression;

	exchange(n, NULL, "/items/0/price");
	/* /items/1/price is another field: it has no noise of its own. */
	assert_false(exchange(n, "/items/1/price", NULL));
	field_counts(n, EP, "body:/items/0/price", &raw, &noise, &regression);
	assert_int_equal(raw, 0);
	assert_int_equal(noise, 1);
	noise_free(n);
}

static void test_field_counted_once_per_exchange(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	struct diff_list raw = { 0 };
	int r, no;
	bool regression;

	diff_push(&raw, DIFF_BODY, "", DIFF_TYPE);
	diff_push(&raw, DIFF_BODY, "", DIFF_VALUE);
	diff_push(&raw, DIFF_STATUS, "", DIFF_VALUE);
	noise_mark(n, EP, &raw, NULL);
	field_counts(n, EP, "body", &r, &no, &regression);
	assert_int_equal(r, 1);
	field_counts(n, EP, "status", &r, &no, &regression);
	assert_int_equal(r, 1);
	assert_true(regression);
	diff_list_clear(&raw);
	noise_free(n);
}

static void test_stats_json_names_fields_by_where_and_path(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	struct diff_list raw = { 0 };
	cJSON *j, *all;

	diff_push(&raw, DIFF_HEADER, "content-type", DIFF_VALUE);
	diff_push(&raw, DIFF_BODY, "/a", DIFF_MISSING);
	noise_mark(n, EP, &raw, NULL);
	j = noise_stats_json(n, EP);
	assert_non_null(j);
	assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "header:content-type"));
	assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "body:/a"));
	assert_int_equal(cJSON_GetArraySize(j), 2);
	cJSON_Delete(j);
	j = noise_stats_json(n, "GET /unknown");
	assert_non_null(j);
	assert_int_equal(cJSON_GetArraySize(j), 0);
	cJSON_Delete(j);
	all = noise_stats_json(n, NULL);
	assert_non_null(cJSON_GetObjectItemCaseSensitive(all, EP));
	cJSON_Delete(all);
	diff_list_clear(&raw);
	noise_free(n);
}

static void test_long_field_names_are_kept_whole(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	struct diff_list raw = { 0 };
	char path[702], key[720];
	cJSON *j;

	path[0] = '/';
	memset(path + 1, 'k', sizeof(path) - 2);
	path[sizeof(path) - 1] = '\0';
	diff_push(&raw, DIFF_BODY, path, DIFF_VALUE);
	noise_mark(n, EP, &raw, NULL);
	j = noise_stats_json(n, EP);
	snprintf(key, sizeof(key), "body:%s", path);
	assert_non_null(cJSON_GetObjectItemCaseSensitive(j, key));
	cJSON_Delete(j);
	diff_list_clear(&raw);
	noise_free(n);
}

static void test_endpoints_beyond_the_cap_share_other(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	cJSON *all, *other;
	char ep[64];

	for (int i = 0; i < 300; i++) {
		struct diff_list raw = { 0 };

		snprintf(ep, sizeof(ep), "GET /e%d", i);
		diff_push(&raw, DIFF_STATUS, "", DIFF_VALUE);
		noise_mark(n, ep, &raw, NULL);
		diff_list_clear(&raw);
	}
	all = noise_stats_json(n, NULL);
	assert_int_equal(cJSON_GetArraySize(all), 256 + 1);
	other = cJSON_GetObjectItemCaseSensitive(all, "other");
	assert_non_null(other);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(other, "status"), "raw")->valueint, 300 - 256);
	cJSON_Delete(all);
	noise_free(n);
}

static void test_fields_beyond_the_cap_share_other(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	struct diff_list raw = { 0 };
	char path[32];
	cJSON *j;

	for (int i = 0; i < 1100; i++) {
		snprintf(path, sizeof(path), "/items/%d", i);
		diff_push(&raw, DIFF_BODY, path, DIFF_VALUE);
	}
	noise_mark(n, EP, &raw, NULL);
	j = noise_stats_json(n, EP);
	assert_int_equal(cJSON_GetArraySize(j), 1024 + 1);
	assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "other"));
	/* Every field of the overflow is still judged, not lost. */
	for (size_t i = 0; i < raw.count; i++)
		assert_false(raw.items[i].noise);
	cJSON_Delete(j);
	diff_list_clear(&raw);
	noise_free(n);
}

static const char *confidence_verdict(const struct noise *n, const char *ep, const char *field,
				      double *lower, double *upper)
{
	static char verdict[32];
	cJSON *j = noise_stats_json(n, ep), *c;

	assert_non_null(j);
	c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, field), "confidence");
	assert_non_null(c);
	*lower = cJSON_GetObjectItem(c, "lower")->valuedouble;
	*upper = cJSON_GetObjectItem(c, "upper")->valuedouble;
	assert_int_equal(cJSON_GetArraySize(c), 4);    /* n, lower, upper, verdict */
	snprintf(verdict, sizeof(verdict), "%s", cJSON_GetObjectItem(c, "verdict")->valuestring);
	cJSON_Delete(j);
	return verdict;
}

/* 30 exchanges: the candidate always differs at /price and /time, the
 * secondary only at /time. Bounds: verdict.c's Newcombe interval for 30/30
 * vs 0/30 ([0.8395, 1]) and 30/30 vs 30/30 ([-0.1135, 0.1135]). */
static void test_confidence_tells_a_regression_from_noise(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	uint64_t counts[NOISE_VERDICT_COUNT];
	double lower, upper;

	for (int i = 0; i < 30; i++) {
		struct diff_list raw = { 0 }, sec = { 0 };

		diff_push(&raw, DIFF_BODY, "/price", DIFF_VALUE);
		diff_push(&raw, DIFF_BODY, "/time", DIFF_VALUE);
		diff_push(&sec, DIFF_BODY, "/time", DIFF_VALUE);
		noise_mark(n, EP, &raw, &sec);
		diff_list_clear(&raw);
		diff_list_clear(&sec);
	}
	assert_string_equal(confidence_verdict(n, EP, "body:/price", &lower, &upper), "regression");
	assert_true(fabs(lower - 0.8395) < 1e-4 && upper == 1);
	assert_string_equal(confidence_verdict(n, EP, "body:/time", &lower, &upper), "noise");
	assert_true(fabs(lower + 0.1135) < 1e-4 && fabs(upper - 0.1135) < 1e-4);
	assert_true(noise_verdict_counts(n, EP, counts));
	assert_int_equal(counts[NOISE_REGRESSION], 1);
	assert_int_equal(counts[NOISE_NOT_DIFFERENT], 1);
	assert_int_equal(counts[NOISE_INSUFFICIENT_DATA], 0);
	noise_free(n);
}

static void test_three_exchanges_are_insufficient_data(void **state)
{
	struct noise *n = noise_with(0.20, 0.0003);
	uint64_t counts[NOISE_VERDICT_COUNT];
	double lower, upper;

	for (int i = 0; i < 3; i++)
		exchange(n, "/price", NULL);
	assert_string_equal(confidence_verdict(n, EP, "body:/price", &lower, &upper), "insufficient_data");
	assert_true(lower > 0);    /* the interval is there, the verdict is not */
	assert_true(noise_verdict_counts(n, EP, counts));
	assert_int_equal(counts[NOISE_INSUFFICIENT_DATA], 1);
	assert_false(noise_verdict_counts(n, "GET /never", counts));
	assert_int_equal(counts[NOISE_INSUFFICIENT_DATA], 0);
	noise_free(n);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_difference_shared_with_secondary_is_noise),
		cmocka_unit_test(test_same_path_with_another_kind_is_not_per_request_noise),
		cmocka_unit_test(test_all_noise_returns_true),
		cmocka_unit_test(test_no_difference_returns_false),
		cmocka_unit_test(test_candidate_only_difference_is_a_regression),
		cmocka_unit_test(test_raw_equal_to_noise_is_noise),
		cmocka_unit_test(test_relative_threshold_at_its_value_is_noise),
		cmocka_unit_test(test_relative_threshold_just_above_is_regression),
		cmocka_unit_test(test_absolute_threshold_at_its_value_is_noise),
		cmocka_unit_test(test_absolute_threshold_just_above_is_regression),
		cmocka_unit_test(test_fields_keep_array_indices),
		cmocka_unit_test(test_field_counted_once_per_exchange),
		cmocka_unit_test(test_stats_json_names_fields_by_where_and_path),
		cmocka_unit_test(test_long_field_names_are_kept_whole),
		cmocka_unit_test(test_endpoints_beyond_the_cap_share_other),
		cmocka_unit_test(test_fields_beyond_the_cap_share_other),
		cmocka_unit_test(test_confidence_tells_a_regression_from_noise),
		cmocka_unit_test(test_three_exchanges_are_insufficient_data),
	};

	return cmocka_run_group_tests_name("noise", tests, NULL, NULL);
}
