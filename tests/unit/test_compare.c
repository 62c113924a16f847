/* Unit tests of compare: status, headers and bodies of two responses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "body.h"
#include "compare.h"
#include "config.h"
#include "http.h"
#include "stats.h"

#define DEFAULT_IGNORE_HEADERS "date,server,age,content-length,transfer-encoding,connection," \
	"keep-alive,via,etag,last-modified,expires,set-cookie,x-request-id"

/* ---- helpers ----------------------------------------------------------- */

static void str_list_set(struct str_list *l, const char *csv)
{
	char *copy, *tok, *save = NULL;

	memset(l, 0, sizeof(*l));
	if (!csv || !*csv)
		return;
	copy = strdup(csv);
	assert_non_null(copy);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		l->items = realloc(l->items, (l->count + 1) * sizeof(char *));
		assert_non_null(l->items);
		l->items[l->count] = strdup(tok);
		assert_non_null(l->items[l->count]);
		l->count++;
	}
	free(copy);
}

static void str_list_free(struct str_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

/* The defaults of DESIGN.md, as the config module sets them. */
static void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	str_list_set(&cfg->ignore_headers, DEFAULT_IGNORE_HEADERS);
	cfg->max_depth = 128;
	cfg->max_decompressed = 8 << 20;
	cfg->noise_relative = 0.20;
	cfg->noise_absolute = 0.0003;
}

static void config_clear(struct config *cfg)
{
	str_list_free(&cfg->ignore_headers);
	str_list_free(&cfg->ignore_paths);
	str_list_free(&cfg->unordered_paths);
}

static void resp_set(struct http_response *r, int status, const char *ctype,
		     const void *body, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->status = status;
	if (ctype)
		assert_int_equal(http_headers_add(&r->headers, "Content-Type", 12, ctype, strlen(ctype)), 0);
	if (len) {
		r->body = malloc(len);
		assert_non_null(r->body);
		memcpy(r->body, body, len);
		r->body_len = len;
	}
}

static void resp_json(struct http_response *r, const char *json)
{
	resp_set(r, 200, "application/json", json, strlen(json));
}

static void header_add(struct http_response *r, const char *name, const char *value)
{
	assert_int_equal(http_headers_add(&r->headers, name, strlen(name), value, strlen(value)), 0);
}

/* Compresses with zlib: windowbits 16+15 for gzip, 15 for zlib, -15 raw. */
static uint8_t *compress_buf(const char *in, int windowbits, size_t *outlen)
{
	z_stream zs;
	size_t cap = compressBound(strlen(in)) + 64;
	uint8_t *out = malloc(cap);

	assert_non_null(out);
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, windowbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)strlen(in);
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*outlen = zs.total_out;
	deflateEnd(&zs);
	return out;
}

/* Body differences as "kind@path kind@path ...", in order. */
static void diffs_format(const struct diff_list *l, enum diff_where where, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < l->count; i++) {
		if (l->items[i].where != where)
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s%s@%s", o ? " " : "",
				      diff_kind_name(l->items[i].kind), l->items[i].path);
		assert_true(o < len);
	}
}

static void run_compare(const struct config *cfg, const struct http_response *ref,
			const struct http_response *cand, struct diff_list *out)
{
	char err[256] = "";
	struct compare *c = compare_new(cfg, err, sizeof(err));

	assert_non_null(c);
	memset(out, 0, sizeof(*out));
	assert_int_equal(compare_responses(c, ref, cand, out), 0);
	compare_free(c);
}

/* ---- JSON structural diff, table-driven --------------------------------- */

struct json_case {
	const char *name;
	const char *ref;
	const char *cand;
	const char *expect;       /* body differences as "kind@path ..." */
	const char *ignore;       /* comma-separated ignore_paths */
	const char *unordered;    /* comma-separated unordered_paths */
	bool ignore_order;
	double abs_tolerance;
	double rel_tolerance;
};

static const struct json_case json_cases[] = {
	{ .name = "reordered_keys_are_equal",
	  .ref = "{\"a\":1,\"b\":{\"c\":2,\"d\":3}}", .cand = "{\"b\":{\"d\":3,\"c\":2},\"a\":1}", .expect = "" },
	{ .name = "integer_equals_same_float",
	  .ref = "{\"n\":1}", .cand = "{\"n\":1.0}", .expect = "" },
	{ .name = "exponent_equals_same_integer",
	  .ref = "[100]", .cand = "[1e2]", .expect = "" },
	{ .name = "reversed_array_is_one_order_difference_at_the_array",
	  .ref = "[1,2,3]", .cand = "[3,2,1]", .expect = "order@" },
	{ .name = "nested_reordered_array_is_order_at_its_path",
	  .ref = "{\"a\":{\"b\":[1,2]}}", .cand = "{\"a\":{\"b\":[2,1]}}", .expect = "order@/a/b" },
	{ .name = "reordered_objects_with_reordered_keys_are_order",
	  .ref = "[{\"a\":1,\"b\":2},{\"c\":3}]", .cand = "[{\"c\":3},{\"b\":2,\"a\":1}]", .expect = "order@" },
	{ .name = "longer_candidate_array_is_one_extra_at_its_tail",
	  .ref = "[1,2]", .cand = "[1,2,3]", .expect = "extra@/2" },
	{ .name = "shorter_candidate_array_is_one_missing_at_the_tail",
	  .ref = "{\"a\":[1,2,3]}", .cand = "{\"a\":[1,2]}", .expect = "missing@/a/2" },
	{ .name = "different_multisets_compare_by_index",
	  .ref = "[1,1,2]", .cand = "[1,2,2]", .expect = "value@/1" },
	{ .name = "string_to_number_is_type",
	  .ref = "{\"a\":\"1\"}", .cand = "{\"a\":1}", .expect = "type@/a" },
	{ .name = "null_to_zero_is_type",
	  .ref = "{\"a\":null}", .cand = "{\"a\":0}", .expect = "type@/a" },
	{ .name = "object_to_array_at_root_is_type_at_empty_path",
	  .ref = "{\"a\":1}", .cand = "[1]", .expect = "type@" },
	{ .name = "true_to_false_is_value",
	  .ref = "{\"ok\":true}", .cand = "{\"ok\":false}", .expect = "value@/ok" },
	{ .name = "changed_string_is_value",
	  .ref = "{\"s\":\"x\"}", .cand = "{\"s\":\"y\"}", .expect = "value@/s" },
	{ .name = "nested_member_missing_is_missing_at_its_full_path",
	  .ref = "{\"a\":{\"b\":{\"c\":1,\"d\":2}}}", .cand = "{\"a\":{\"b\":{\"c\":1}}}", .expect = "missing@/a/b/d" },
	{ .name = "member_only_in_candidate_is_extra",
	  .ref = "{\"a\":1}", .cand = "{\"a\":1,\"x\":{\"y\":2}}", .expect = "extra@/x" },
	{ .name = "keys_with_slash_and_tilde_are_escaped",
	  .ref = "{\"a/b\":{\"c~d\":1}}", .cand = "{\"a/b\":{\"c~d\":2}}", .expect = "value@/a~1b/c~0d" },
	{ .name = "element_inside_array_is_at_its_index",
	  .ref = "{\"items\":[{\"p\":1},{\"p\":2}]}", .cand = "{\"items\":[{\"p\":1},{\"p\":3}]}",
	  .expect = "value@/items/1/p" },
	{ .name = "ignore_exact_path",
	  .ref = "{\"meta\":{\"timestamp\":1,\"v\":1}}", .cand = "{\"meta\":{\"timestamp\":2,\"v\":1}}",
	  .expect = "", .ignore = "/meta/timestamp" },
	{ .name = "ignore_exact_path_keeps_siblings",
	  .ref = "{\"meta\":{\"timestamp\":1,\"v\":1}}", .cand = "{\"meta\":{\"timestamp\":2,\"v\":2}}",
	  .expect = "value@/meta/v", .ignore = "/meta/timestamp" },
	{ .name = "ignore_path_covers_its_subtree",
	  .ref = "{\"meta\":{\"a\":1}}", .cand = "{\"meta\":{\"b\":[2]}}", .expect = "", .ignore = "/meta" },
	{ .name = "ignore_star_matches_one_segment",
	  .ref = "{\"items\":[{\"id\":1,\"v\":1},{\"id\":2,\"v\":2}]}",
	  .cand = "{\"items\":[{\"id\":7,\"v\":1},{\"id\":8,\"v\":2}]}", .expect = "", .ignore = "/items/*/id" },
	{ .name = "ignore_star_does_not_match_deeper",
	  .ref = "{\"items\":[{\"sub\":{\"id\":1}}]}", .cand = "{\"items\":[{\"sub\":{\"id\":2}}]}",
	  .expect = "value@/items/0/sub/id", .ignore = "/items/*/id" },
	{ .name = "ignore_double_star_matches_any_depth",
	  .ref = "{\"traceId\":1,\"a\":{\"b\":[{\"traceId\":2,\"v\":1}]}}",
	  .cand = "{\"traceId\":9,\"a\":{\"b\":[{\"traceId\":8,\"v\":1}]}}", .expect = "", .ignore = "/**/traceId" },
	{ .name = "ignore_double_star_keeps_other_members",
	  .ref = "{\"a\":{\"traceId\":1,\"v\":1}}", .cand = "{\"a\":{\"traceId\":2,\"v\":2}}",
	  .expect = "value@/a/v", .ignore = "/**/traceId" },
	{ .name = "ignored_member_missing_is_not_reported",
	  .ref = "{\"a\":1,\"ts\":1}", .cand = "{\"a\":1}", .expect = "", .ignore = "/ts" },
	{ .name = "ignore_rule_uses_escaped_keys",
	  .ref = "{\"a/b\":1}", .cand = "{\"a/b\":2}", .expect = "", .ignore = "/a~1b" },
	{ .name = "ignoring_an_element_field_lets_reordering_be_order",
	  .ref = "[{\"id\":1,\"v\":\"a\"},{\"id\":2,\"v\":\"b\"}]",
	  .cand = "[{\"id\":5,\"v\":\"b\"},{\"id\":6,\"v\":\"a\"}]", .expect = "order@", .ignore = "/*/id" },
	{ .name = "unordered_path_suppresses_order",
	  .ref = "{\"tags\":[\"a\",\"b\"],\"ids\":[1,2]}", .cand = "{\"tags\":[\"b\",\"a\"],\"ids\":[2,1]}",
	  .expect = "order@/ids", .unordered = "/tags" },
	{ .name = "unordered_path_accepts_wildcards",
	  .ref = "{\"items\":[{\"tags\":[1,2]},{\"tags\":[3,4]}]}",
	  .cand = "{\"items\":[{\"tags\":[2,1]},{\"tags\":[4,3]}]}", .expect = "", .unordered = "/items/*/tags" },
	{ .name = "ignore_order_suppresses_order_everywhere",
	  .ref = "{\"a\":[1,2],\"b\":[[1,2],[3]]}", .cand = "{\"a\":[2,1],\"b\":[[3],[2,1]]}",
	  .expect = "", .ignore_order = true },
	{ .name = "unordered_array_reports_the_unpaired_element",
	  .ref = "[1,2,3]", .cand = "[3,2,4]", .expect = "value@/0", .ignore_order = true },
	{ .name = "unordered_array_reports_a_new_element_as_extra",
	  .ref = "[1,2]", .cand = "[2,1,3]", .expect = "extra@/2", .ignore_order = true },
	{ .name = "unordered_array_reports_a_lost_element_as_missing",
	  .ref = "[1,2,3]", .cand = "[3,1]", .expect = "missing@/1", .ignore_order = true },
	{ .name = "absolute_tolerance_accepts_close_numbers",
	  .ref = "{\"x\":1.0}", .cand = "{\"x\":1.005}", .expect = "", .abs_tolerance = 0.01 },
	{ .name = "absolute_tolerance_rejects_farther_numbers",
	  .ref = "{\"x\":1.0}", .cand = "{\"x\":1.02}", .expect = "value@/x", .abs_tolerance = 0.01 },
	{ .name = "relative_tolerance_accepts_close_numbers",
	  .ref = "{\"x\":1000}", .cand = "{\"x\":1005}", .expect = "", .rel_tolerance = 0.01 },
	{ .name = "relative_tolerance_rejects_farther_numbers",
	  .ref = "{\"x\":1000}", .cand = "{\"x\":1020}", .expect = "value@/x", .rel_tolerance = 0.01 },
	{ .name = "no_tolerance_means_exact_numbers",
	  .ref = "{\"x\":0.3}", .cand = "{\"x\":0.30000000000000004}", .expect = "value@/x" },
	{ .name = "tolerance_applies_inside_reordered_arrays",
	  .ref = "[1.0,2.0]", .cand = "[2.001,1.001]", .expect = "order@", .abs_tolerance = 0.01 },
};

static void test_json_case(void **state)
{
	const struct json_case *tc = *state;
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;
	char got[1024];

	config_defaults(&cfg);
	str_list_set(&cfg.ignore_paths, tc->ignore);
	str_list_set(&cfg.unordered_paths, tc->unordered);
	cfg.ignore_order = tc->ignore_order;
	cfg.abs_tolerance = tc->abs_tolerance;
	cfg.rel_tolerance = tc->rel_tolerance;
	resp_json(&ref, tc->ref);
	resp_json(&cand, tc->cand);
	run_compare(&cfg, &ref, &cand, &out);
	diffs_format(&out, DIFF_BODY, got, sizeof(got));
	if (strcmp(got, tc->expect) != 0)
		fail_msg("%s: expected \"%s\", got \"%s\"", tc->name, tc->expect, got);
	assert_int_equal(out.count, tc->expect[0] ? out.count : 0);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

/* ---- other behaviours -------------------------------------------------- */

static void test_difference_values_are_copies_of_the_sub_values(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_json(&ref, "{\"a\":{\"b\":[1,2]},\"gone\":{\"x\":1}}");
	resp_json(&cand, "{\"a\":{\"b\":[1,5]},\"new\":\"n\"}");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 3);
	assert_string_equal(out.items[0].path, "/a/b/1");
	assert_int_equal(out.items[0].kind, DIFF_VALUE);
	assert_int_equal(out.items[0].reference->valueint, 2);
	assert_int_equal(out.items[0].candidate->valueint, 5);
	assert_string_equal(out.items[1].path, "/gone");
	assert_int_equal(out.items[1].kind, DIFF_MISSING);
	assert_true(cJSON_IsObject(out.items[1].reference));
	assert_null(out.items[1].candidate);
	assert_string_equal(out.items[2].path, "/new");
	assert_int_equal(out.items[2].kind, DIFF_EXTRA);
	assert_null(out.items[2].reference);
	assert_string_equal(out.items[2].candidate->valuestring, "n");
	assert_false(out.items[0].noise);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_order_difference_holds_both_arrays(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_json(&ref, "[1,2,3]");
	resp_json(&cand, "[3,2,1]");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].kind, DIFF_ORDER);
	assert_int_equal(cJSON_GetArraySize(out.items[0].reference), 3);
	assert_int_equal(cJSON_GetArrayItem(out.items[0].candidate, 0)->valueint, 3);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

/* k arrays of k elements, each differing only in its last element: pairing
 * them costs k^3 node comparisons. The budget stops it; nothing is lost. */
static char *nested_arrays(int k, int offset)
{
	size_t cap = (size_t)k * (size_t)k * 8 + 16, len = 0;
	char *s = malloc(cap);

	assert_non_null(s);
	s[len++] = '[';
	for (int i = 0; i < k; i++) {
		len += (size_t)snprintf(s + len, cap - len, "%s[", i ? "," : "");
		for (int j = 0; j < k - 1; j++)
			len += (size_t)snprintf(s + len, cap - len, "%d,", j);
		len += (size_t)snprintf(s + len, cap - len, "%d]", i + offset);
	}
	s[len++] = ']';
	s[len] = '\0';
	return s;
}

static void test_costly_pairing_is_cut_short_and_reported_by_index(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;
	char *a = nested_arrays(120, 0), *b = nested_arrays(120, 1000);
	uint64_t before = stats.compare_budget_exceeded;

	config_defaults(&cfg);
	resp_json(&ref, a);
	resp_json(&cand, b);
	run_compare(&cfg, &ref, &cand, &out);
	assert_true(out.order_unchecked);
	/* Reported in the list, counted by the exchange's conclusion, not here. */
	assert_int_equal(stats.compare_budget_exceeded, before);
	assert_int_equal(out.count, 120);
	for (size_t i = 0; i < out.count; i++) {
		char path[32];

		snprintf(path, sizeof(path), "/%zu/119", i);
		assert_string_equal(out.items[i].path, path);
		assert_int_equal(out.items[i].kind, DIFF_VALUE);
	}
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
	free(a);
	free(b);
}

static void test_small_reordering_stays_within_budget(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;
	char *a = nested_arrays(20, 0), *b = nested_arrays(20, 0);
	char *swap;

	/* b: the same 20 inner arrays, first and last exchanged. */
	swap = strdup(a);
	assert_non_null(swap);
	cJSON *arr = cJSON_Parse(a);
	cJSON *first = cJSON_DetachItemFromArray(arr, 0);
	cJSON *last = cJSON_DetachItemFromArray(arr, 18);
	cJSON_InsertItemInArray(arr, 0, last);
	cJSON_AddItemToArray(arr, first);
	free(b);
	b = cJSON_PrintUnformatted(arr);
	cJSON_Delete(arr);
	free(swap);
	config_defaults(&cfg);
	resp_json(&ref, a);
	resp_json(&cand, b);
	run_compare(&cfg, &ref, &cand, &out);
	assert_false(out.order_unchecked);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].kind, DIFF_ORDER);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
	free(a);
	free(b);
}

static void test_status_difference_is_value_with_numbers(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, NULL, NULL, 0);
	resp_set(&cand, 503, NULL, NULL, 0);
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].where, DIFF_STATUS);
	assert_string_equal(out.items[0].path, "");
	assert_int_equal(out.items[0].kind, DIFF_VALUE);
	assert_int_equal(out.items[0].reference->valueint, 200);
	assert_int_equal(out.items[0].candidate->valueint, 503);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_default_ignore_list_hides_volatile_headers(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, NULL, NULL, 0);
	resp_set(&cand, 200, NULL, NULL, 0);
	header_add(&ref, "Date", "Mon, 01 Jan 2024 00:00:00 GMT");
	header_add(&cand, "Date", "Tue, 02 Jan 2024 00:00:00 GMT");
	header_add(&ref, "Server", "nginx");
	header_add(&cand, "X-Request-Id", "abc");
	header_add(&ref, "ETag", "\"1\"");
	header_add(&cand, "ETag", "\"2\"");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 0);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_header_differences_are_value_missing_and_extra(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;
	char got[256];

	config_defaults(&cfg);
	resp_set(&ref, 200, NULL, NULL, 0);
	resp_set(&cand, 200, NULL, NULL, 0);
	header_add(&ref, "Cache-Control", "no-cache");
	header_add(&cand, "cache-control", "max-age=60");
	header_add(&ref, "X-Old", "1");
	header_add(&cand, "X-New", "2");
	header_add(&ref, "Vary", "Accept");
	header_add(&cand, "vary", "Accept");
	run_compare(&cfg, &ref, &cand, &out);
	diffs_format(&out, DIFF_HEADER, got, sizeof(got));
	assert_string_equal(got, "value@cache-control missing@x-old extra@x-new");
	assert_string_equal(out.items[0].reference->valuestring, "no-cache");
	assert_string_equal(out.items[0].candidate->valuestring, "max-age=60");
	assert_null(out.items[1].candidate);
	assert_null(out.items[2].reference);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_repeated_headers_are_joined_with_comma(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, NULL, NULL, 0);
	resp_set(&cand, 200, NULL, NULL, 0);
	header_add(&ref, "Link", "<a>");
	header_add(&ref, "X-Other", "o");
	header_add(&ref, "Link", "<b>");
	header_add(&cand, "link", "<a>, <b>");
	header_add(&cand, "x-other", "o");
	header_add(&cand, "x-multi", "1");
	header_add(&cand, "x-multi", "2");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_string_equal(out.items[0].path, "x-multi");
	assert_int_equal(out.items[0].kind, DIFF_EXTRA);
	assert_string_equal(out.items[0].candidate->valuestring, "1, 2");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_header_ignore_list_is_configurable(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	str_list_free(&cfg.ignore_headers);
	str_list_set(&cfg.ignore_headers, "X-Trace");
	resp_set(&ref, 200, NULL, NULL, 0);
	resp_set(&cand, 200, NULL, NULL, 0);
	header_add(&ref, "x-trace", "1");
	header_add(&cand, "x-trace", "2");
	header_add(&ref, "date", "a");
	header_add(&cand, "date", "b");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].where, DIFF_HEADER);
	assert_string_equal(out.items[0].path, "date");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_charset_parameter_is_ignored_for_type_detection(void **state)
{
	static const char a[] = "{\"a\":1,\"b\":2}", b[] = "{\"b\":2,\"a\":1}";
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, "application/json; charset=utf-8", a, strlen(a));
	resp_set(&cand, 200, "application/json; charset=UTF-8", b, strlen(b));
	run_compare(&cfg, &ref, &cand, &out);
	/* Parsed as JSON (reordered keys equal), though the header differs. */
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].where, DIFF_HEADER);
	assert_string_equal(out.items[0].path, "content-type");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_compressed_bodies_equal_plain_one(int windowbits, const char *coding)
{
	static const char json[] = "{\"items\":[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":\"b\"}],\"n\":3}";
	static const char reordered[] = "{\"n\":3,\"items\":[{\"name\":\"a\",\"id\":1},{\"name\":\"b\",\"id\":2}]}";
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;
	size_t zlen;
	uint8_t *z = compress_buf(json, windowbits, &zlen);

	config_defaults(&cfg);
	resp_set(&ref, 200, "application/json", z, zlen);
	header_add(&ref, "Content-Encoding", coding);
	resp_set(&cand, 200, "application/json", reordered, strlen(reordered));
	run_compare(&cfg, &ref, &cand, &out);
	/* The content-encoding header differs; the bodies do not. */
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].where, DIFF_HEADER);
	assert_string_equal(out.items[0].path, "content-encoding");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
	free(z);
}

static void test_gzip_and_plain_bodies_with_same_json_are_equal(void **state)
{
	test_compressed_bodies_equal_plain_one(16 + MAX_WBITS, "gzip");
}

static void test_deflate_and_plain_bodies_with_same_json_are_equal(void **state)
{
	test_compressed_bodies_equal_plain_one(MAX_WBITS, "deflate");
}

static void test_raw_deflate_and_plain_bodies_with_same_json_are_equal(void **state)
{
	test_compressed_bodies_equal_plain_one(-MAX_WBITS, "deflate");
}

static void test_decompressed_size_cap_compares_the_prefix(void **state)
{
	char big[8192];
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;
	size_t zlen;
	uint8_t *z;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	z = compress_buf(big, 16 + MAX_WBITS, &zlen);
	config_defaults(&cfg);
	cfg.max_decompressed = 1000;
	resp_set(&ref, 200, "text/plain", z, zlen);
	header_add(&ref, "content-encoding", "gzip");
	resp_set(&cand, 200, "text/plain", big, strlen(big));
	str_list_free(&cfg.ignore_headers);
	str_list_set(&cfg.ignore_headers, "content-encoding");
	run_compare(&cfg, &ref, &cand, &out);
	/* Both cut at the cap: the same 1000 bytes. */
	assert_int_equal(out.count, 0);
	assert_true(out.reference_truncated);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
	free(z);
}

static void test_truncated_reference_text_is_compared_on_prefix(void **state)
{
	static const char cut[] = "hello wor", full[] = "hello world, and more";
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, "text/plain", cut, strlen(cut));
	ref.truncated = true;
	resp_set(&cand, 200, "text/plain", full, strlen(full));
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 0);
	assert_true(out.reference_truncated);
	assert_false(out.candidate_truncated);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_truncated_reference_prefix_difference_is_reported(void **state)
{
	static const char cut[] = "hello wor", full[] = "hello WORLD";
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, "text/plain", cut, strlen(cut));
	ref.truncated = true;
	resp_set(&cand, 200, "text/plain", full, strlen(full));
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_string_equal(out.items[0].reference->valuestring, "line 1, offset 6: hello wor");
	assert_string_equal(out.items[0].candidate->valuestring, "line 1, offset 6: hello WOR");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_truncated_json_reference_is_compared_as_text_prefix(void **state)
{
	static const char cut[] = "{\"a\":[1,2", full[] = "{\"a\":[1,2,3]}";
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_json(&ref, cut);
	ref.truncated = true;
	resp_json(&cand, full);
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 0);
	assert_true(out.reference_truncated);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_truncated_json_candidate_is_compared_on_its_prefix(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_json(&ref, "{\"a\":[1,2,3]}");
	resp_json(&cand, "{\"a\":[1,");
	cand.truncated = true;
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 0);
	assert_true(out.candidate_truncated);
	assert_false(out.reference_truncated);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_truncated_gzip_reference_is_compared_on_prefix(void **state)
{
	char text[4096];
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;
	size_t zlen;
	uint8_t *z;

	for (size_t i = 0; i < sizeof(text) - 1; i++)
		text[i] = (char)('a' + (i * 7 + i / 13) % 26);
	text[sizeof(text) - 1] = '\0';
	z = compress_buf(text, 16 + MAX_WBITS, &zlen);
	config_defaults(&cfg);
	resp_set(&ref, 200, "text/plain", z, zlen / 2);
	header_add(&ref, "content-encoding", "gzip");
	ref.truncated = true;
	resp_set(&cand, 200, "text/plain", z, zlen);
	header_add(&cand, "content-encoding", "gzip");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 0);
	assert_true(out.reference_truncated);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
	free(z);
}

static void test_candidate_invalid_json_is_type_then_text(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_json(&ref, "{\"a\":1}");
	resp_json(&cand, "{\"a\":1");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 2);
	assert_int_equal(out.items[0].kind, DIFF_TYPE);
	assert_string_equal(out.items[0].path, "");
	assert_string_equal(out.items[0].reference->valuestring, "json");
	assert_string_equal(out.items[0].candidate->valuestring, "invalid json");
	assert_int_equal(out.items[1].kind, DIFF_VALUE);
	assert_string_equal(out.items[1].reference->valuestring, "line 1, offset 6: {\"a\":1}");
	assert_string_equal(out.items[1].candidate->valuestring, "line 1, offset 6: {\"a\":1<end of body>");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_both_invalid_json_bodies_compare_as_text(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_json(&ref, "not json");
	resp_json(&cand, "not json");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 0);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_text_difference_names_line_and_offset(void **state)
{
	static const char a[] = "first line\nsecond line\nthird line here\n";
	static const char b[] = "first line\nsecond line\nthird LINE here\n";
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, "text/plain", a, strlen(a));
	resp_set(&cand, 200, "text/plain", b, strlen(b));
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].where, DIFF_BODY);
	assert_int_equal(out.items[0].kind, DIFF_VALUE);
	assert_string_equal(out.items[0].path, "");
	assert_string_equal(out.items[0].reference->valuestring, "line 3, offset 29: third line here");
	assert_string_equal(out.items[0].candidate->valuestring, "line 3, offset 29: third LINE here");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_text_excerpt_is_short_on_long_lines(void **state)
{
	char a[2001], b[2001];
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	memset(a, 'a', 2000);
	a[2000] = '\0';
	memcpy(b, a, sizeof(b));
	b[1000] = 'b';
	config_defaults(&cfg);
	resp_set(&ref, 200, "text/plain", a, 2000);
	resp_set(&cand, 200, "text/plain", b, 2000);
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_true(strlen(out.items[0].reference->valuestring) < 140);
	assert_non_null(strstr(out.items[0].candidate->valuestring, "line 1, offset 1000: ...aaaa"));
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_empty_reference_body_against_text_is_value(void **state)
{
	static const char b[] = "now there is a body";
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 204, "text/plain", NULL, 0);
	resp_set(&cand, 204, "text/plain", b, strlen(b));
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_string_equal(out.items[0].reference->valuestring, "line 1, offset 0: <end of body>");
	assert_string_equal(out.items[0].candidate->valuestring, "line 1, offset 0: now there is a body");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_binary_difference_names_lengths_and_digests(void **state)
{
	static const uint8_t a[] = { 0, 1, 2, 3, 0xff }, b[] = { 0, 1, 9, 3, 0xff, 0 };
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, "application/octet-stream", a, sizeof(a));
	resp_set(&cand, 200, "application/octet-stream", b, sizeof(b));
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1);
	assert_string_equal(out.items[0].path, "");
	assert_int_equal(out.items[0].kind, DIFF_VALUE);
	assert_non_null(strstr(out.items[0].reference->valuestring, "5 bytes, fnv1a64 "));
	assert_non_null(strstr(out.items[0].candidate->valuestring, "6 bytes, fnv1a64 "));
	assert_non_null(strstr(out.items[0].candidate->valuestring, "first difference at offset 2"));
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_equal_binary_bodies_are_equal(void **state)
{
	static const uint8_t a[] = { 0, 1, 2, 3, 0xff };
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_set(&ref, 200, "image/png", a, sizeof(a));
	resp_set(&cand, 200, "image/png", a, sizeof(a));
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 0);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static char *nested_json(size_t depth)
{
	char *s = malloc(depth * 2 + 2);

	assert_non_null(s);
	memset(s, '[', depth);
	s[depth] = '1';
	memset(s + depth + 1, ']', depth);
	s[depth * 2 + 1] = '\0';
	return s;
}

static void test_ten_thousand_deep_nesting_is_refused_cleanly(void **state)
{
	char *deep = nested_json(10000);
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	resp_json(&ref, deep);
	deep[5000] = '2';
	resp_json(&cand, deep);
	run_compare(&cfg, &ref, &cand, &out);
	assert_true(out.depth_exceeded);
	/* Compared as text instead: the single changed byte. */
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].kind, DIFF_VALUE);
	assert_string_equal(out.items[0].path, "");
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
	free(deep);
}

static void test_nesting_at_max_depth_is_compared_structurally(void **state)
{
	char *a = nested_json(128), *b = nested_json(128);
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	b[128] = '2';
	config_defaults(&cfg);
	resp_json(&ref, a);
	resp_json(&cand, b);
	run_compare(&cfg, &ref, &cand, &out);
	assert_false(out.depth_exceeded);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.items[0].kind, DIFF_VALUE);
	assert_int_equal((int)strlen(out.items[0].path), 128 * 2);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
	free(a);
	free(b);
}

static void test_bad_ignore_rule_is_refused_with_a_message(void **state)
{
	struct config cfg;
	char err[256] = "";

	config_defaults(&cfg);
	str_list_set(&cfg.ignore_paths, "meta/timestamp");
	assert_null(compare_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "meta/timestamp"));
	str_list_free(&cfg.ignore_paths);
	str_list_set(&cfg.unordered_paths, "/a~2");
	assert_null(compare_new(&cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "~"));
	config_clear(&cfg);
}

static void test_double_star_rule_ignores_the_whole_body(void **state)
{
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;

	config_defaults(&cfg);
	str_list_set(&cfg.ignore_paths, "/**");
	resp_json(&ref, "{\"a\":1}");
	resp_json(&cand, "{\"b\":[2]}");
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 0);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
}

static void test_many_differences_are_capped(void **state)
{
	size_t n = 3000, len = n * 4 + 3;
	char *a = malloc(len), *b = malloc(len);
	struct http_response ref, cand;
	struct config cfg;
	struct diff_list out;
	size_t o = 0;

	assert_non_null(a);
	assert_non_null(b);
	a[o] = b[o] = '[';
	o++;
	for (size_t i = 0; i < n; i++) {
		a[o] = '1';
		b[o] = '2';
		a[o + 1] = b[o + 1] = ',';
		o += 2;
	}
	a[o - 1] = b[o - 1] = ']';
	a[o] = b[o] = '\0';
	config_defaults(&cfg);
	resp_json(&ref, a);
	resp_json(&cand, b);
	run_compare(&cfg, &ref, &cand, &out);
	assert_int_equal(out.count, 1000);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	config_clear(&cfg);
	free(a);
	free(b);
}

static void test_shared_bodies_are_decoded_once_and_kept(void **state)
{
	struct config cfg;
	struct http_response ref, cand;
	struct body_shared rb = { 0 }, cb = { 0 };
	struct diff_list out = { 0 };
	struct compare *c;
	char err[256] = "";
	const struct body *again;

	config_defaults(&cfg);
	c = compare_new(&cfg, err, sizeof(err));
	assert_non_null(c);
	resp_json(&ref, "{\"a\":1}");
	resp_json(&cand, "{\"a\":2}");
	assert_int_equal(compare_responses_shared(c, &ref, &cand, &rb, &cb, &out), 0);
	assert_int_equal(out.count, 1);
	assert_true(rb.decoded && cb.decoded);
	assert_int_equal(rb.body.type, BODY_JSON);
	assert_int_equal(cb.body.type, BODY_JSON);
	/* a later user (publish) gets the same parse, not a new one */
	again = body_shared_get(&cb, &cand, cfg.max_decompressed, cfg.max_depth);
	assert_ptr_equal(again, &cb.body);
	assert_ptr_equal(again->json, cb.body.json);
	diff_list_clear(&out);
	body_shared_clear(&rb);
	body_shared_clear(&cb);
	assert_false(rb.decoded);

	/* byte-identical bodies need no decoding: none is done */
	http_response_clear(&cand);
	resp_json(&cand, "{\"a\":1}");
	assert_int_equal(compare_responses_shared(c, &ref, &cand, &rb, &cb, &out), 0);
	assert_int_equal(out.count, 0);
	assert_false(rb.decoded || cb.decoded);
	diff_list_clear(&out);
	http_response_clear(&ref);
	http_response_clear(&cand);
	compare_free(c);
	config_clear(&cfg);
}

static void test_field_keys_name_where_and_path(void **state)
{
	char empty[] = "", etag[] = "etag", price[] = "/items/12/price";
	struct difference d = { .where = DIFF_STATUS, .path = empty };
	char key[12];

	assert_int_equal(diff_field_key(&d, key, sizeof(key)), 6);
	assert_string_equal(key, "status");
	d.where = DIFF_HEADER;
	d.path = etag;
	diff_field_key(&d, key, sizeof(key));
	assert_string_equal(key, "header:etag");
	d.where = DIFF_BODY;
	d.path = NULL;
	diff_field_key(&d, key, sizeof(key));
	assert_string_equal(key, "body");
	/* Cut to the buffer, the full length returned, as snprintf does. */
	d.path = price;
	assert_int_equal(diff_field_key(&d, key, sizeof(key)), strlen("body:/items/12/price"));
	assert_string_equal(key, "body:/items");
	assert_int_equal(diff_field_key(&d, NULL, 0), strlen("body:/items/12/price"));
}

static void test_names_of_where_and_kind(void **state)
{
	assert_string_equal(diff_where_name(DIFF_STATUS), "status");
	assert_string_equal(diff_where_name(DIFF_HEADER), "header");
	assert_string_equal(diff_where_name(DIFF_BODY), "body");
	assert_string_equal(diff_kind_name(DIFF_VALUE), "value");
	assert_string_equal(diff_kind_name(DIFF_TYPE), "type");
	assert_string_equal(diff_kind_name(DIFF_MISSING), "missing");
	assert_string_equal(diff_kind_name(DIFF_EXTRA), "extra");
	assert_string_equal(diff_kind_name(DIFF_ORDER), "order");
}

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_difference_values_are_copies_of_the_sub_values),
		cmocka_unit_test(test_order_difference_holds_both_arrays),
		cmocka_unit_test(test_status_difference_is_value_with_numbers),
		cmocka_unit_test(test_costly_pairing_is_cut_short_and_reported_by_index),
		cmocka_unit_test(test_small_reordering_stays_within_budget),
		cmocka_unit_test(test_default_ignore_list_hides_volatile_headers),
		cmocka_unit_test(test_header_differences_are_value_missing_and_extra),
		cmocka_unit_test(test_repeated_headers_are_joined_with_comma),
		cmocka_unit_test(test_header_ignore_list_is_configurable),
		cmocka_unit_test(test_charset_parameter_is_ignored_for_type_detection),
		cmocka_unit_test(test_gzip_and_plain_bodies_with_same_json_are_equal),
		cmocka_unit_test(test_deflate_and_plain_bodies_with_same_json_are_equal),
		cmocka_unit_test(test_raw_deflate_and_plain_bodies_with_same_json_are_equal),
		cmocka_unit_test(test_decompressed_size_cap_compares_the_prefix),
		cmocka_unit_test(test_truncated_reference_text_is_compared_on_prefix),
		cmocka_unit_test(test_truncated_reference_prefix_difference_is_reported),
		cmocka_unit_test(test_truncated_json_reference_is_compared_as_text_prefix),
		cmocka_unit_test(test_truncated_json_candidate_is_compared_on_its_prefix),
		cmocka_unit_test(test_truncated_gzip_reference_is_compared_on_prefix),
		cmocka_unit_test(test_candidate_invalid_json_is_type_then_text),
		cmocka_unit_test(test_both_invalid_json_bodies_compare_as_text),
		cmocka_unit_test(test_text_difference_names_line_and_offset),
		cmocka_unit_test(test_text_excerpt_is_short_on_long_lines),
		cmocka_unit_test(test_empty_reference_body_against_text_is_value),
		cmocka_unit_test(test_binary_difference_names_lengths_and_digests),
		cmocka_unit_test(test_equal_binary_bodies_are_equal),
		cmocka_unit_test(test_ten_thousand_deep_nesting_is_refused_cleanly),
		cmocka_unit_test(test_nesting_at_max_depth_is_compared_structurally),
		cmocka_unit_test(test_bad_ignore_rule_is_refused_with_a_message),
		cmocka_unit_test(test_double_star_rule_ignores_the_whole_body),
		cmocka_unit_test(test_many_differences_are_capped),
		cmocka_unit_test(test_field_keys_name_where_and_path),
		cmocka_unit_test(test_names_of_where_and_kind),
		cmocka_unit_test(test_shared_bodies_are_decoded_once_and_kept),
	};
	size_t ncases = sizeof(json_cases) / sizeof(json_cases[0]);
	size_t nfixed = sizeof(fixed) / sizeof(fixed[0]);
	struct CMUnitTest *tests = calloc(ncases + nfixed, sizeof(*tests));
	int failed;

	if (!tests)
		return 1;
	for (size_t i = 0; i < ncases; i++) {
		tests[i].name = json_cases[i].name;
		tests[i].test_func = test_json_case;
		tests[i].initial_state = (void *)(uintptr_t)&json_cases[i];
	}
	memcpy(tests + ncases, fixed, sizeof(fixed));
	failed = _cmocka_run_group_tests("compare", tests, ncases + nfixed, NULL, NULL);
	free(tests);
	return failed;
}
