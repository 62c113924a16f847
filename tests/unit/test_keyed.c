/* Unit tests of array_keys: arrays whose elements compare paired by the
 * value of a key member, not by index. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "config.h"
#include "http.h"

/* ---- helpers ----------------------------------------------------------- */

/* Items separated by '|' (rules may hold commas). */
static void list_set(struct str_list *l, const char *items)
{
	const char *p = items;

	memset(l, 0, sizeof(*l));
	if (!items || !*items)
		return;
	for (;;) {
		size_t n = strcspn(p, "|");

		l->items = realloc(l->items, (l->count + 1) * sizeof(char *));
		assert_non_null(l->items);
		l->items[l->count] = strndup(p, n);
		assert_non_null(l->items[l->count]);
		l->count++;
		if (!p[n])
			break;
		p += n + 1;
	}
}

static void list_free(struct str_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

static void resp_json(struct http_response *r, const char *json)
{
	memset(r, 0, sizeof(*r));
	r->status = 200;
	assert_int_equal(http_headers_add(&r->headers, "Content-Type", 12, "application/json", 16), 0);
	r->body = (uint8_t *)strdup(json);
	assert_non_null(r->body);
	r->body_len = strlen(json);
}

/* Body differences as "kind@path#key ...", the key printed as JSON
 * ("#" alone when the difference has none). */
static void diffs_format(const struct diff_list *l, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < l->count; i++) {
		const struct difference *d = &l->items[i];
		char *key = d->key ? cJSON_PrintUnformatted(d->key) : NULL;

		o += (size_t)snprintf(buf + o, len - o, "%s%s@%s#%s", o ? " " : "", diff_kind_name(d->kind),
				      d->path, key ? key : "");
		free(key);
		assert_true(o < len);
	}
}

struct keyed_case {
	const char *name;
	const char *ref;
	const char *cand;
	const char *keys;         /* array_keys, '|'-separated */
	const char *expect;       /* "kind@path#key ..." */
	bool fallback;            /* key_fallback expected */
	const char *ignore;       /* ignore_paths */
	const char *unordered;    /* unordered_paths */
	bool ignore_order;
};

static const struct keyed_case cases[] = {
	{ .name = "reordered_keyed_array_is_equal",
	  .ref = "{\"items\":[{\"id\":1,\"v\":\"a\"},{\"id\":2,\"v\":\"b\"},{\"id\":3,\"v\":\"c\"}]}",
	  .cand = "{\"items\":[{\"id\":3,\"v\":\"c\"},{\"id\":1,\"v\":\"a\"},{\"id\":2,\"v\":\"b\"}]}",
	  .keys = "/items=id", .expect = "" },
	{ .name = "insertion_reports_only_the_inserted_element_as_extra",
	  .ref = "{\"items\":[{\"id\":1,\"v\":\"a\"},{\"id\":2,\"v\":\"b\"}]}",
	  .cand = "{\"items\":[{\"id\":9,\"v\":\"new\"},{\"id\":1,\"v\":\"a\"},{\"id\":2,\"v\":\"b\"}]}",
	  .keys = "/items=id", .expect = "extra@/items/0#9" },
	{ .name = "removal_reports_only_the_removed_element_as_missing",
	  .ref = "{\"items\":[{\"id\":1},{\"id\":2},{\"id\":3}]}",
	  .cand = "{\"items\":[{\"id\":1},{\"id\":3}]}",
	  .keys = "/items=id", .expect = "missing@/items/1#2" },
	{ .name = "changed_member_has_the_reference_index_and_the_key",
	  .ref = "{\"items\":[{\"id\":\"a\",\"p\":1},{\"id\":\"b\",\"p\":2}]}",
	  .cand = "{\"items\":[{\"id\":\"b\",\"p\":3},{\"id\":\"a\",\"p\":1}]}",
	  .keys = "/items=id", .expect = "value@/items/1/p#\"b\"" },
	{ .name = "without_the_rule_the_same_arrays_differ_by_index",
	  .ref = "{\"items\":[{\"id\":1,\"v\":\"a\"},{\"id\":2,\"v\":\"b\"}]}",
	  .cand = "{\"items\":[{\"id\":9,\"v\":\"new\"},{\"id\":1,\"v\":\"a\"},{\"id\":2,\"v\":\"b\"}]}",
	  .keys = "", .expect = "value@/items/0/id# value@/items/0/v# value@/items/1/id# value@/items/1/v# "
	  "extra@/items/2#" },
	{ .name = "a_string_key_is_not_the_number_key",
	  .ref = "{\"items\":[{\"id\":1}]}", .cand = "{\"items\":[{\"id\":\"1\"}]}",
	  .keys = "/items=id", .expect = "missing@/items/0#1 extra@/items/0#\"1\"" },
	{ .name = "number_keys_compare_by_value",
	  .ref = "{\"items\":[{\"id\":1,\"v\":1},{\"id\":2,\"v\":2}]}",
	  .cand = "{\"items\":[{\"id\":2.0,\"v\":2},{\"id\":1e0,\"v\":1}]}",
	  .keys = "/items=id", .expect = "" },
	{ .name = "duplicate_reference_key_falls_back_to_index_pairing",
	  .ref = "{\"items\":[{\"id\":1,\"v\":\"a\"},{\"id\":1,\"v\":\"b\"}]}",
	  .cand = "{\"items\":[{\"id\":1,\"v\":\"a\"},{\"id\":1,\"v\":\"c\"}]}",
	  .keys = "/items=id", .expect = "value@/items/1/v#", .fallback = true },
	{ .name = "duplicate_candidate_key_falls_back_to_index_pairing",
	  .ref = "{\"items\":[{\"id\":1},{\"id\":2}]}",
	  .cand = "{\"items\":[{\"id\":1},{\"id\":1}]}",
	  .keys = "/items=id", .expect = "value@/items/1/id#", .fallback = true },
	{ .name = "duplicate_extra_keys_fall_back_to_index_pairing",
	  .ref = "{\"items\":[{\"id\":1}]}",
	  .cand = "{\"items\":[{\"id\":1},{\"id\":5},{\"id\":5}]}",
	  .keys = "/items=id", .expect = "extra@/items/1# extra@/items/2#", .fallback = true },
	{ .name = "absent_key_falls_back_to_index_pairing",
	  .ref = "{\"items\":[{\"id\":1,\"v\":1},{\"v\":2}]}",
	  .cand = "{\"items\":[{\"id\":1,\"v\":1},{\"v\":3}]}",
	  .keys = "/items=id", .expect = "value@/items/1/v#", .fallback = true },
	{ .name = "key_of_another_type_falls_back_to_index_pairing",
	  .ref = "{\"items\":[{\"id\":[1]}],\"a\":1}", .cand = "{\"items\":[{\"id\":[1]}],\"a\":2}",
	  .keys = "/items=id", .expect = "value@/a#", .fallback = true },
	{ .name = "elements_that_are_no_objects_fall_back",
	  .ref = "{\"items\":[1,2]}", .cand = "{\"items\":[2,1]}",
	  .keys = "/items=id", .expect = "order@/items#", .fallback = true },
	{ .name = "empty_keyed_arrays_are_equal_without_fallback",
	  .ref = "{\"items\":[],\"a\":1}", .cand = "{\"a\":1,\"items\":[]}", .keys = "/items=id", .expect = "" },
	{ .name = "star_pointer_keys_every_nested_array",
	  .ref = "{\"orders\":[{\"lines\":[{\"sku\":\"x\",\"q\":1},{\"sku\":\"y\",\"q\":2}]}]}",
	  .cand = "{\"orders\":[{\"lines\":[{\"sku\":\"y\",\"q\":5},{\"sku\":\"x\",\"q\":1}]}]}",
	  .keys = "/orders/*/lines=sku", .expect = "value@/orders/0/lines/1/q#\"y\"" },
	{ .name = "double_star_pointer_keys_arrays_at_any_depth",
	  .ref = "{\"lines\":[{\"sku\":\"a\"},{\"sku\":\"b\"}],\"x\":{\"y\":{\"lines\":[{\"sku\":\"c\",\"n\":1}]}}}",
	  .cand = "{\"lines\":[{\"sku\":\"b\"},{\"sku\":\"a\"}],\"x\":{\"y\":{\"lines\":[{\"sku\":\"d\",\"n\":1}]}}}",
	  .keys = "/**/lines=sku", .expect = "missing@/x/y/lines/0#\"c\" extra@/x/y/lines/0#\"d\"" },
	{ .name = "root_array_can_be_keyed",
	  .ref = "[{\"id\":1,\"v\":1},{\"id\":2,\"v\":2}]", .cand = "[{\"id\":2,\"v\":2},{\"id\":1,\"v\":0}]",
	  .keys = "=id", .expect = "value@/0/v#1" },
	{ .name = "ordered_suffix_reports_a_reordering_as_order",
	  .ref = "{\"items\":[{\"id\":1},{\"id\":2}]}", .cand = "{\"items\":[{\"id\":2},{\"id\":1}]}",
	  .keys = "/items=id!ordered", .expect = "order@/items#" },
	{ .name = "ordered_suffix_accepts_an_insertion_in_order",
	  .ref = "{\"items\":[{\"id\":1},{\"id\":2}]}", .cand = "{\"items\":[{\"id\":1},{\"id\":7},{\"id\":2}]}",
	  .keys = "/items=id!ordered", .expect = "extra@/items/1#7" },
	{ .name = "ordered_suffix_gives_way_to_ignore_order",
	  .ref = "{\"items\":[{\"id\":1},{\"id\":2}]}", .cand = "{\"items\":[{\"id\":2},{\"id\":1}]}",
	  .keys = "/items=id!ordered", .expect = "", .ignore_order = true },
	{ .name = "ordered_suffix_gives_way_to_unordered_paths",
	  .ref = "{\"items\":[{\"id\":1},{\"id\":2}]}", .cand = "{\"items\":[{\"id\":2},{\"id\":1}]}",
	  .keys = "/items=id!ordered", .expect = "", .unordered = "/items" },
	{ .name = "ignore_paths_apply_inside_keyed_elements",
	  .ref = "{\"items\":[{\"id\":1,\"ts\":1},{\"id\":2,\"ts\":2}]}",
	  .cand = "{\"items\":[{\"id\":2,\"ts\":8},{\"id\":1,\"ts\":9}]}",
	  .keys = "/items=id", .ignore = "/items/*/ts", .expect = "" },
	{ .name = "an_ignored_element_is_not_missing",
	  .ref = "{\"items\":[{\"id\":1},{\"id\":2}]}", .cand = "{\"items\":[{\"id\":2}]}",
	  .keys = "/items=id", .ignore = "/items/0", .expect = "" },
	{ .name = "difference_in_a_plain_array_inside_takes_the_enclosing_key",
	  .ref = "{\"items\":[{\"id\":\"k\",\"tags\":[1,2]}]}", .cand = "{\"items\":[{\"id\":\"k\",\"tags\":[1,3]}]}",
	  .keys = "/items=id", .expect = "value@/items/0/tags/1#\"k\"" },
	{ .name = "nested_keyed_arrays_take_the_innermost_key",
	  .ref = "{\"o\":[{\"id\":1,\"l\":[{\"s\":\"a\",\"q\":1}]},{\"id\":2,\"l\":[]}]}",
	  .cand = "{\"o\":[{\"id\":2,\"l\":[]},{\"id\":1,\"l\":[{\"s\":\"a\",\"q\":2}]}]}",
	  .keys = "/o=id|/o/*/l=s", .expect = "value@/o/0/l/0/q#\"a\"" },
	{ .name = "key_member_name_may_hold_a_slash",
	  .ref = "{\"items\":[{\"a/b\":1,\"v\":1},{\"a/b\":2,\"v\":2}]}",
	  .cand = "{\"items\":[{\"a/b\":2,\"v\":2},{\"a/b\":1,\"v\":1}]}",
	  .keys = "/items=a/b", .expect = "" },
	{ .name = "the_first_matching_rule_wins",
	  .ref = "{\"items\":[{\"id\":1,\"n\":\"x\"},{\"id\":2,\"n\":\"y\"}]}",
	  .cand = "{\"items\":[{\"id\":2,\"n\":\"y\"},{\"id\":1,\"n\":\"x\"}]}",
	  .keys = "/items=id|/**=n!ordered", .expect = "" },
};

static void test_keyed_case(void **state)
{
	const struct keyed_case *tc = *state;
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out = { 0 };
	struct compare *c;
	char got[2048], err[256] = "";

	memset(&cfg, 0, sizeof(cfg));
	cfg.max_depth = 128;
	cfg.max_decompressed = 1 << 20;
	cfg.ignore_order = tc->ignore_order;
	list_set(&cfg.array_keys, tc->keys);
	list_set(&cfg.ignore_paths, tc->ignore);
	list_set(&cfg.unordered_paths, tc->unordered);
	c = compare_new(&cfg, err, sizeof(err));
	if (!c)
		fail_msg("%s: compare_new: %s", tc->name, err);
	resp_json(&ref, tc->ref);
	resp_json(&cand, tc->cand);
	assert_int_equal(compare_responses(c, &ref, &cand, &out), 0);
	diffs_format(&out, got, sizeof(got));
	if (strcmp(got, tc->expect) != 0)
		fail_msg("%s: expected \"%s\", got \"%s\"", tc->name, tc->expect, got);
	if (out.key_fallback != tc->fallback)
		fail_msg("%s: key_fallback %d, expected %d", tc->name, out.key_fallback, tc->fallback);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	compare_free(c);
	list_free(&cfg.array_keys);
	list_free(&cfg.ignore_paths);
	list_free(&cfg.unordered_paths);
}

/* ---- rules refused ------------------------------------------------------ */

static void refused(const char *rule, const char *expect_in_err)
{
	struct config cfg;
	char err[256] = "";
	struct compare *c;

	memset(&cfg, 0, sizeof(cfg));
	cfg.max_depth = 128;
	list_set(&cfg.array_keys, rule);
	c = compare_new(&cfg, err, sizeof(err));
	if (c)
		fail_msg("rule \"%s\" was accepted", rule);
	if (!strstr(err, expect_in_err))
		fail_msg("rule \"%s\": \"%s\" does not say \"%s\"", rule, err, expect_in_err);
	list_free(&cfg.array_keys);
}

static void test_bad_key_rules_are_refused_with_a_message(void **state)
{
	(void)state;
	refused("/items", "must be POINTER=MEMBER");
	refused("/items=", "key member's name is empty");
	refused("/items=!ordered", "key member's name is empty");
	refused("items=id", "must be empty or start with '/'");
	refused("/a~2=id", "'~' must be followed by 0 or 1");
}

/* The arrays compared by key as they were by index: a reordered keyed
 * array costs no pairing budget, whatever its length. */
static void test_long_reordered_keyed_array_is_equal_within_budget(void **state)
{
	enum { N = 5000 };
	struct config cfg;
	struct http_response ref, cand;
	struct diff_list out = { 0 };
	char err[256] = "", *a = malloc(N * 40 + 16), *b = malloc(N * 40 + 16);
	size_t oa = 0, ob = 0;
	struct compare *c;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	oa += (size_t)sprintf(a + oa, "[");
	ob += (size_t)sprintf(b + ob, "[");
	for (int i = 0; i < N; i++) {
		oa += (size_t)sprintf(a + oa, "%s{\"id\":%d,\"v\":%d}", i ? "," : "", i, i * 7);
		ob += (size_t)sprintf(b + ob, "%s{\"id\":%d,\"v\":%d}", i ? "," : "", N - 1 - i, (N - 1 - i) * 7);
	}
	sprintf(a + oa, "]");
	sprintf(b + ob, "]");
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_depth = 128;
	cfg.max_decompressed = 8 << 20;
	list_set(&cfg.array_keys, "=id");
	c = compare_new(&cfg, err, sizeof(err));
	assert_non_null(c);
	resp_json(&ref, a);
	resp_json(&cand, b);
	assert_int_equal(compare_responses(c, &ref, &cand, &out), 0);
	assert_int_equal(out.count, 0);
	assert_false(out.order_unchecked);
	assert_false(out.key_fallback);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	compare_free(c);
	list_free(&cfg.array_keys);
	free(a);
	free(b);
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_bad_key_rules_are_refused_with_a_message),
		cmocka_unit_test(test_long_reordered_keyed_array_is_equal_within_budget),
	};
	size_t ncases = sizeof(cases) / sizeof(cases[0]), nfixed = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests = calloc(ncases + nfixed, sizeof(*tests));
	int failed;

	if (!tests)
		return 1;
	for (size_t i = 0; i < ncases; i++) {
		tests[i].name = cases[i].name;
		tests[i].test_func = test_keyed_case;
		tests[i].initial_state = (void *)(uintptr_t)&cases[i];
	}
	memcpy(tests + ncases, fixed, sizeof(fixed));
	failed = _cmocka_run_group_tests("keyed", tests, ncases + nfixed, NULL, NULL);
	free(tests);
	return failed;
}
