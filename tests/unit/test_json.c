/* Unit tests of json: the body parser that builds cJSON trees in an arena. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json.h"

static cJSON *parse(const char *s, struct json_arena **arena)
{
	return json_parse((const uint8_t *)s, strlen(s), JSON_MAX_DEPTH, arena);
}

/* The tree reads exactly as cJSON_Parse's: printed alike. */
static void assert_reads_as_cjson(const char *s)
{
	struct json_arena *arena;
	cJSON *mine = parse(s, &arena), *theirs = cJSON_Parse(s);
	char *a, *b;

	if (!mine)
		fail_msg("refused: %s", s);
	assert_non_null(theirs);
	a = cJSON_PrintUnformatted(mine);
	b = cJSON_PrintUnformatted(theirs);
	assert_string_equal(a, b);
	assert_true(cJSON_Compare(mine, theirs, true));
	free(a);
	free(b);
	cJSON_Delete(theirs);
	json_arena_free(arena);
}

static void test_documents_read_as_cjson_reads_them(void **state)
{
	static const char *const docs[] = {
		"{\"id\":42,\"items\":[{\"price\":9.5,\"tags\":[\"a\",\"b\"],\"ok\":true}],\"none\":null,\"no\":false}",
		" [ 1 , -2 , 3.25 , -0.5e-3 , 1E3 , 12345678901234567 , 0.1 , 1e-320 , 1e308 ] ",
		"\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\u20ac \\ud83d\\ude00\"",
		"{\"\":{\"\":[]},\"k\\u0041\":{}}",
		"[[[[[[[[[[]]]]]]]]]]",
		"123",
	};

	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
		assert_reads_as_cjson(docs[i]);
}

static void test_numbers_are_exact(void **state)
{
	static const struct {
		const char *text;
		double value;
	} cases[] = {
		{ "999.99", 999.99 }, { "0.1", 0.1 }, { "-13.25", -13.25 }, { "1e22", 1e22 },
		{ "123456789012345", 123456789012345.0 }, { "9007199254740993", 9007199254740992.0 },
		{ "2.2250738585072014e-308", 2.2250738585072014e-308 }, { "0.000001", 1e-6 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_arena *arena;
		cJSON *v = parse(cases[i].text, &arena);

		assert_non_null(v);
		assert_true(cJSON_IsNumber(v));
		if (v->valuedouble != cases[i].value)
			fail_msg("%s read as %.17g", cases[i].text, v->valuedouble);
		json_arena_free(arena);
	}
}

static void test_integers_past_int_saturate_valueint_as_cjson_does(void **state)
{
	struct json_arena *arena;
	cJSON *v = parse("[3000000000,-3000000000,7]", &arena);

	assert_non_null(v);
	assert_int_equal(cJSON_GetArrayItem(v, 0)->valueint, INT_MAX);
	assert_int_equal(cJSON_GetArrayItem(v, 1)->valueint, INT_MIN);
	assert_int_equal(cJSON_GetArrayItem(v, 2)->valueint, 7);
	json_arena_free(arena);
}

static void test_members_keep_their_order_and_links(void **state)
{
	struct json_arena *arena;
	cJSON *v = parse("{\"b\":1,\"a\":2,\"c\":3}", &arena);

	assert_non_null(v);
	assert_int_equal(cJSON_GetArraySize(v), 3);
	assert_string_equal(v->child->string, "b");
	assert_string_equal(v->child->next->string, "a");
	/* cJSON keeps the last child in the first one's prev. */
	assert_string_equal(v->child->prev->string, "c");
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "a")->valueint, 2);
	json_arena_free(arena);
}

static void test_invalid_text_is_refused(void **state)
{
	static const char *const bad[] = {
		"", "  ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{1:1}", "[1 2]", "01", "1.", "+1", ".5",
		"\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\xff\"", "\"tab\there\"", "nul", "[] []",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct json_arena *arena = (struct json_arena *)&arena;

		if (parse(bad[i], &arena))
			fail_msg("accepted: %s", bad[i]);
		assert_null(arena);
	}
}

static void test_text_without_whitespace_is_compact(void **state)
{
	struct json_arena *arena;

	assert_non_null(parse("{\"a\":[1,\"x y\"],\"b\":{}}", &arena));
	assert_true(json_parsed_compact(arena));
	json_arena_free(arena);
	assert_non_null(parse("{\"a\": 1}", &arena));
	assert_false(json_parsed_compact(arena));
	json_arena_free(arena);
	assert_non_null(parse("[1]\n", &arena));
	assert_false(json_parsed_compact(arena));
	json_arena_free(arena);
}

static void test_depth_is_bounded(void **state)
{
	struct json_arena *arena;
	const char *doc = "[[[1]]]";

	assert_null(json_parse((const uint8_t *)doc, strlen(doc), 2, &arena));
	assert_non_null(json_parse((const uint8_t *)doc, strlen(doc), 3, &arena));
	json_arena_free(arena);
}

static void test_large_documents_grow_the_arena(void **state)
{
	size_t n = 20000, len = 0;
	char *doc = malloc(n * 4 + 8);
	struct json_arena *arena;
	cJSON *v;

	assert_non_null(doc);
	doc[len++] = '[';
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(doc + len, "%s[]", i ? "," : "");
	doc[len++] = ']';
	v = json_parse((const uint8_t *)doc, len, JSON_MAX_DEPTH, &arena);
	assert_non_null(v);
	assert_int_equal(cJSON_GetArraySize(v), (int)n);
	json_arena_free(arena);
	free(doc);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_documents_read_as_cjson_reads_them),
		cmocka_unit_test(test_numbers_are_exact),
		cmocka_unit_test(test_integers_past_int_saturate_valueint_as_cjson_does),
		cmocka_unit_test(test_members_keep_their_order_and_links),
		cmocka_unit_test(test_invalid_text_is_refused),
		cmocka_unit_test(test_text_without_whitespace_is_compact),
		cmocka_unit_test(test_depth_is_bounded),
		cmocka_unit_test(test_large_documents_grow_the_arena),
	};

	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
