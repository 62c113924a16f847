/* Unit tests of jsonw: the JSON writer of the published message. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonw.h"

/* A copy of the writer's text, the caller frees. */
static char *text(const struct jsonw *w)
{
	char *s = malloc(w->b.len + 1);

	assert_non_null(s);
	memcpy(s, w->b.p, w->b.len);
	s[w->b.len] = '\0';
	return s;
}

static void assert_text(const struct jsonw *w, const char *want)
{
	char *s = text(w);

	assert_true(jsonw_ok(w));
	assert_string_equal(s, want);
	free(s);
}

/* Minifies in through a fresh writer; returns its text, or NULL when the
 * writer refused it (and then wrote nothing). */
static char *minified(const char *in)
{
	struct jsonw w;
	char *s = NULL;

	jsonw_init(&w, SIZE_MAX);
	if (jsonw_json_text(&w, (const uint8_t *)in, strlen(in))) {
		s = text(&w);
		assert_int_equal(jsonw_json_text_size((const uint8_t *)in, strlen(in)), w.b.len);
	} else {
		assert_int_equal(w.b.len, 0);
		assert_int_equal(jsonw_json_text_size((const uint8_t *)in, strlen(in)), SIZE_MAX);
	}
	jsonw_free(&w);
	return s;
}

static void test_objects_and_arrays_get_their_commas(void **state)
{
	struct jsonw w;

	jsonw_init(&w, SIZE_MAX);
	jsonw_open(&w, '{');
	jsonw_keyc(&w, "a");
	jsonw_int(&w, 1);
	jsonw_keyc(&w, "b");
	jsonw_open(&w, '[');
	jsonw_bool(&w, true);
	jsonw_null(&w);
	jsonw_open(&w, '{');
	jsonw_close(&w, '}');
	jsonw_open(&w, '[');
	jsonw_close(&w, ']');
	jsonw_close(&w, ']');
	jsonw_keyc(&w, "c");
	jsonw_cstring(&w, NULL);
	jsonw_close(&w, '}');
	assert_text(&w, "{\"a\":1,\"b\":[true,null,{},[]],\"c\":null}");
	jsonw_free(&w);
}

static void test_strings_are_escaped_and_made_valid_utf8(void **state)
{
	static const char in[] = "q\"b\\s/\b\f\n\r\t\x01\x1f" "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 bad\xff\xc3 z";
	struct jsonw w;
	cJSON *back;
	char *s;

	jsonw_init(&w, SIZE_MAX);
	jsonw_string(&w, in, sizeof(in) - 1);
	assert_text(&w, "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001f"
		     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 bad\xef\xbf\xbd\xef\xbf\xbd z\"");
	assert_int_equal(jsonw_string_size(in, sizeof(in) - 1), w.b.len);
	s = text(&w);
	back = cJSON_Parse(s);
	assert_non_null(back);
	assert_true(cJSON_IsString(back));
	cJSON_Delete(back);
	free(s);
	jsonw_free(&w);
}

static void test_nul_becomes_a_space(void **state)
{
	struct jsonw w;

	jsonw_init(&w, SIZE_MAX);
	jsonw_string(&w, "a\0b", 3);
	assert_text(&w, "\"a b\"");
	jsonw_free(&w);
}

static void test_string_fit_never_splits_a_character(void **state)
{
	static const char in[] = "ab\xc3\xa9" "cd";   /* é takes two bytes */
	size_t size, n;

	n = jsonw_string_fit(in, sizeof(in) - 1, 5, &size);   /* quotes + "ab" + 1 */
	assert_int_equal(n, 2);
	assert_int_equal(size, 4);
	n = jsonw_string_fit(in, sizeof(in) - 1, 6, &size);
	assert_int_equal(n, 4);
	assert_int_equal(size, 6);
	n = jsonw_string_fit("abcdef", 6, 5, &size);        /* a plain run cut short */
	assert_int_equal(n, 3);
	assert_int_equal(size, 5);
	n = jsonw_string_fit("abc", 3, 1, &size);           /* not even the quotes fit */
	assert_int_equal(n, 0);
	n = jsonw_string_fit("\"\"", 2, 5, &size);         /* each quote takes two */
	assert_int_equal(n, 1);
	assert_int_equal(size, 4);
}

static void test_numbers_print_as_cjson_does(void **state)
{
	struct jsonw w;

	jsonw_init(&w, SIZE_MAX);
	jsonw_open(&w, '[');
	jsonw_number(&w, 42);
	jsonw_number(&w, -7);
	jsonw_number(&w, 0.1);
	jsonw_number(&w, 999.99);
	jsonw_number(&w, 1e300);
	jsonw_number(&w, 1.0 / 3.0);
	jsonw_number(&w, NAN);
	jsonw_number(&w, INFINITY);
	jsonw_close(&w, ']');
	assert_text(&w, "[42,-7,0.1,999.99,1e+300,0.33333333333333331,null,null]");
	jsonw_free(&w);
}

static void test_integers_and_fixed_decimals_print_exactly(void **state)
{
	struct jsonw w;

	jsonw_init(&w, SIZE_MAX);
	jsonw_open(&w, '[');
	jsonw_int(&w, 0);
	jsonw_int(&w, -42);
	jsonw_int(&w, INT64_MIN);
	jsonw_uint(&w, UINT64_MAX);
	jsonw_fixed(&w, 12.5, 3);
	jsonw_fixed(&w, 0, 3);
	jsonw_fixed(&w, 33.33333, 3);
	jsonw_fixed(&w, NAN, 3);
	jsonw_close(&w, ']');
	assert_text(&w, "[0,-42,-9223372036854775808,18446744073709551615,12.500,0.000,33.333,null]");
	jsonw_free(&w);
}

static void test_milliseconds_keep_three_decimals_at_most(void **state)
{
	struct jsonw w;

	jsonw_init(&w, SIZE_MAX);
	jsonw_open(&w, '[');
	jsonw_ms(&w, 12.3456);
	jsonw_ms(&w, 5);
	jsonw_ms(&w, 0.05);
	jsonw_ms(&w, 1.2);
	jsonw_ms(&w, 0.0004);
	jsonw_close(&w, ']');
	assert_text(&w, "[12.346,5,0.05,1.2,0]");
	jsonw_free(&w);
}

static void test_valid_json_text_is_copied_minified(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ " { \"a\" : [ 1 , 2.50 , -0 , 1E+3 ] ,\n\t\"b\" : { } , \"c\":[ ] } ", "{\"a\":[1,2.50,-0,1E+3],\"b\":{},\"c\":[]}" },
		{ "\"a b \\u00e9 \\\" \\/ \xc3\xa9\"", "\"a b \\u00e9 \\\" \\/ \xc3\xa9\"" },
		{ "12345678901234567890123", "12345678901234567890123" },
		{ " true ", "true" },
		{ "[null,false,{\"k\":[[[]]]}]", "[null,false,{\"k\":[[[]]]}]" },
		{ "{\"dup\":1,\"dup\":2}", "{\"dup\":1,\"dup\":2}" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = minified(cases[i].in);

		if (!s)
			fail_msg("refused valid JSON: %s", cases[i].in);
		assert_string_equal(s, cases[i].out);
		free(s);
	}
}

static void test_text_beyond_rfc_8259_is_refused(void **state)
{
	static const char *const bad[] = {
		"", " ", "+1", "1.", ".5", "01", "-", "1e", "0x10", "NaN", "tru", "nul",
		"[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{1:2}", "{\"a\"}", "[1 2]", "[1", "{", "]",
		"\"abc", "\"a\x01z\"", "\"\\x\"", "\"\\u12g4\"", "\"\xff\"", "\"\xc3\"", "\"\xed\xa0\x80\"",
		"1 2", "{} x", "[]]", "'a'",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *s = minified(bad[i]);

		if (s)
			fail_msg("accepted invalid JSON '%s' as '%s'", bad[i], s);
	}
}

static void test_a_thousand_levels_are_copied_but_no_more(void **state)
{
	char in[2003], *s;

	memset(in, '[', 1000);
	memset(in + 1000, ']', 1000);
	in[2000] = '\0';
	s = minified(in);
	assert_non_null(s);
	assert_string_equal(s, in);
	free(s);
	memset(in, '[', 1001);
	memset(in + 1001, ']', 1001);
	in[2002] = '\0';
	assert_null(minified(in));
}

static void test_the_maximum_is_never_passed(void **state)
{
	struct jsonw w;

	jsonw_init(&w, 10);
	jsonw_open(&w, '[');
	jsonw_cstring(&w, "12345");
	assert_true(jsonw_ok(&w));
	jsonw_cstring(&w, "x");   /* ,"x" would make 12 bytes */
	assert_false(jsonw_ok(&w));
	assert_true(w.b.len <= 10);
	jsonw_reset(&w);
	assert_true(jsonw_ok(&w));
	assert_int_equal(w.b.len, 0);
	jsonw_free(&w);
}

static void test_json_text_that_fits_only_minified_is_written(void **state)
{
	static const char in[] = "[ 1 , 2 , 3 ]";
	struct jsonw w;

	jsonw_init(&w, 8);
	assert_true(jsonw_json_text(&w, (const uint8_t *)in, sizeof(in) - 1));
	assert_text(&w, "[1,2,3]");
	jsonw_free(&w);
}

static void test_cjson_trees_print_like_cjson(void **state)
{
	static const char in[] = "{\"s\":\"x\\ny\",\"n\":[1,2.5,-3e-7],\"o\":{\"t\":true,\"f\":false,\"z\":null}}";
	cJSON *tree = cJSON_Parse(in);
	char *want = cJSON_PrintUnformatted(tree);
	struct jsonw w;

	jsonw_init(&w, SIZE_MAX);
	jsonw_cjson(&w, tree);
	assert_text(&w, want);
	jsonw_free(&w);
	free(want);
	cJSON_Delete(tree);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_objects_and_arrays_get_their_commas),
		cmocka_unit_test(test_strings_are_escaped_and_made_valid_utf8),
		cmocka_unit_test(test_nul_becomes_a_space),
		cmocka_unit_test(test_string_fit_never_splits_a_character),
		cmocka_unit_test(test_numbers_print_as_cjson_does),
		cmocka_unit_test(test_integers_and_fixed_decimals_print_exactly),
		cmocka_unit_test(test_milliseconds_keep_three_decimals_at_most),
		cmocka_unit_test(test_valid_json_text_is_copied_minified),
		cmocka_unit_test(test_text_beyond_rfc_8259_is_refused),
		cmocka_unit_test(test_a_thousand_levels_are_copied_but_no_more),
		cmocka_unit_test(test_the_maximum_is_never_passed),
		cmocka_unit_test(test_json_text_that_fits_only_minified_is_written),
		cmocka_unit_test(test_cjson_trees_print_like_cjson),
	};

	return cmocka_run_group_tests_name("jsonw", tests, NULL, NULL);
}
