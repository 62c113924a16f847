/* Unit tests of utf8: the one UTF-8 check. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "utf8.h"

static int char_of(const char *s, size_t len)
{
	return utf8_char((const uint8_t *)s, len);
}

static void test_whole_characters_give_their_length(void **state)
{
	(void)state;
	assert_int_equal(char_of("a", 1), 1);
	assert_int_equal(char_of("\x7f", 1), 1);
	assert_int_equal(char_of("\xc2\x80", 2), 2);            /* U+0080 */
	assert_int_equal(char_of("\xc3\xa9z", 3), 2);           /* e acute, then more */
	assert_int_equal(char_of("\xe0\xa0\x80", 3), 3);        /* U+0800 */
	assert_int_equal(char_of("\xe2\x82\xac", 3), 3);        /* euro sign */
	assert_int_equal(char_of("\xed\x9f\xbf", 3), 3);        /* U+D7FF, below the surrogates */
	assert_int_equal(char_of("\xee\x80\x80", 3), 3);        /* U+E000, above them */
	assert_int_equal(char_of("\xf0\x90\x80\x80", 4), 4);    /* U+10000 */
	assert_int_equal(char_of("\xf4\x8f\xbf\xbf", 4), 4);    /* U+10FFFF */
}

static void test_overlong_forms_are_invalid(void **state)
{
	(void)state;
	assert_int_equal(char_of("\xc0\xaf", 2), -1);           /* '/' in two bytes */
	assert_int_equal(char_of("\xc1\xbf", 2), -1);
	assert_int_equal(char_of("\xe0\x80\xaf", 3), -1);
	assert_int_equal(char_of("\xe0\x9f\xbf", 3), -1);
	assert_int_equal(char_of("\xf0\x80\x80\xaf", 4), -1);
	assert_int_equal(char_of("\xf0\x8f\xbf\xbf", 4), -1);
}

static void test_surrogates_and_code_points_past_unicode_are_invalid(void **state)
{
	(void)state;
	assert_int_equal(char_of("\xed\xa0\x80", 3), -1);       /* U+D800 */
	assert_int_equal(char_of("\xed\xbf\xbf", 3), -1);       /* U+DFFF */
	assert_int_equal(char_of("\xf4\x90\x80\x80", 4), -1);   /* U+110000 */
	assert_int_equal(char_of("\xf5\x80\x80\x80", 4), -1);
	assert_int_equal(char_of("\xff", 1), -1);
	assert_int_equal(char_of("\x80", 1), -1);               /* a lone continuation byte */
	assert_int_equal(char_of("\xc3(", 2), -1);              /* a continuation missing */
	assert_int_equal(char_of("\xe2\x82(", 3), -1);
}

static void test_a_valid_beginning_cut_by_the_end_is_incomplete(void **state)
{
	(void)state;
	assert_int_equal(char_of("\xc3", 1), -2);
	assert_int_equal(char_of("\xe2\x82", 2), -2);
	assert_int_equal(char_of("\xf0\x9f\x98", 3), -2);
	/* Cut, but no continuation could make these valid. */
	assert_int_equal(char_of("\xc0", 1), -1);
	assert_int_equal(char_of("\xe0\x80", 2), -1);
	assert_int_equal(char_of("\xed\xa0", 2), -1);
	assert_int_equal(char_of("\xf4\x90", 2), -1);
}

static void test_a_cut_moves_back_to_the_start_of_its_character(void **state)
{
	const uint8_t *s = (const uint8_t *)"a\xe2\x82\xac" "b";

	(void)state;
	assert_int_equal(utf8_char_start(s, 5, 0), 0);
	assert_int_equal(utf8_char_start(s, 5, 1), 1);
	assert_int_equal(utf8_char_start(s, 5, 2), 1);
	assert_int_equal(utf8_char_start(s, 5, 3), 1);
	assert_int_equal(utf8_char_start(s, 5, 4), 4);
	assert_int_equal(utf8_char_start(s, 5, 5), 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_characters_give_their_length),
		cmocka_unit_test(test_overlong_forms_are_invalid),
		cmocka_unit_test(test_surrogates_and_code_points_past_unicode_are_invalid),
		cmocka_unit_test(test_a_valid_beginning_cut_by_the_end_is_incomplete),
		cmocka_unit_test(test_a_cut_moves_back_to_the_start_of_its_character),
	};

	return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
