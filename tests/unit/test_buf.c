/* Unit tests of buf: growable bytes with a hard maximum. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"

static void test_adds_are_kept_in_order_and_terminated(void **state)
{
	struct buf b;
	char *s;
	size_t len;

	(void)state;
	buf_init(&b, 100);
	assert_int_equal(buf_adds(&b, "abc"), 0);
	assert_int_equal(buf_add(&b, "de\0f", 4), 0);
	assert_int_equal(buf_printf(&b, "-%d-", 42), 0);
	assert_int_equal(b.len, 11);
	assert_int_equal(b.p[b.len], '\0');
	s = buf_take(&b, &len);
	assert_int_equal(len, 11);
	assert_memory_equal(s, "abcde\0f-42-", 12);
	assert_null(b.p);
	assert_int_equal(b.max, 100);
	free(s);
}

static void test_an_add_past_the_maximum_fails_and_stays_failed(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_adds(&b, "12345678"), 0);
	assert_int_equal(buf_adds(&b, "9"), -1);
	assert_int_equal(b.err, BUF_TOO_BIG);
	assert_int_equal(b.len, 8);
	assert_string_equal(b.p, "12345678");
	assert_int_equal(buf_add(&b, "", 0), -1);
	assert_null(buf_take(&b, NULL));
	assert_null(b.p);
	assert_int_equal(b.err, BUF_OK);
}

static void test_printf_past_the_maximum_fails_without_a_partial_line(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_adds(&b, "ab"), 0);
	assert_int_equal(buf_printf(&b, "%s", "0123456789"), -1);
	assert_int_equal(b.err, BUF_TOO_BIG);
	assert_int_equal(b.len, 2);
	assert_string_equal(b.p, "ab");
	buf_free(&b);
}

static void test_printf_grows_a_buffer_many_times(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_printf(&b, "%04d,", i), 0);
	assert_int_equal(b.len, 5000);
	assert_memory_equal(b.p + 4995, "0999,", 5);
	assert_true(b.cap <= (1 << 20) + 1);
	buf_free(&b);
}

static void test_reserve_and_commit_is_how_a_reader_fills_it(void **state)
{
	struct buf b;
	char *at;

	(void)state;
	buf_init(&b, 16);
	at = buf_reserve(&b, 10);
	assert_non_null(at);
	memcpy(at, "hello", 5);
	buf_commit(&b, 5);
	assert_string_equal(b.p, "hello");
	assert_null(buf_reserve(&b, 12));
	assert_int_equal(b.err, BUF_TOO_BIG);
	buf_free(&b);
}

static void test_consume_drops_the_front(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 64);
	buf_adds(&b, "frame1frame2");
	buf_consume(&b, 6);
	assert_int_equal(b.len, 6);
	assert_string_equal(b.p, "frame2");
	buf_consume(&b, 6);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	buf_free(&b);
}

static void test_reset_clears_the_error_and_keeps_the_memory(void **state)
{
	struct buf b;
	char *p;

	(void)state;
	buf_init(&b, 4);
	buf_adds(&b, "abcd");
	p = b.p;
	assert_int_equal(buf_adds(&b, "e"), -1);
	buf_reset(&b);
	assert_int_equal(b.err, BUF_OK);
	assert_int_equal(b.len, 0);
	assert_ptr_equal(b.p, p);
	assert_int_equal(buf_adds(&b, "wxyz"), 0);
	buf_free(&b);
}

static void test_an_empty_buffer_is_taken_as_an_empty_string(void **state)
{
	struct buf b;
	size_t len = 99;
	char *s;

	(void)state;
	buf_init(&b, 0);
	s = buf_take(&b, &len);
	assert_non_null(s);
	assert_int_equal(len, 0);
	assert_string_equal(s, "");
	free(s);
}

static void test_truncate_keeps_the_front_and_the_error(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 8);
	buf_adds(&b, "abcdef");
	buf_truncate(&b, 2);
	assert_int_equal(b.len, 2);
	assert_string_equal(b.p, "ab");
	assert_int_equal(buf_adds(&b, "0123456789"), -1);
	buf_truncate(&b, 1);
	assert_int_equal(b.err, BUF_TOO_BIG);     /* only buf_reset() clears it */
	assert_string_equal(b.p, "a");
	buf_free(&b);
}

static void test_a_maximum_of_size_max_still_grows(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, SIZE_MAX);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_adds(&b, "0123456789"), 0);
	assert_int_equal(b.len, 10000);
	assert_true(b.cap > b.len);
	buf_free(&b);
}

static void test_a_lowered_maximum_holds_though_the_memory_is_there(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 1000);
	assert_int_equal(buf_adds(&b, "0123456789"), 0);
	b.max = 12;   /* a smaller message tried in the same buffer */
	assert_int_equal(buf_adds(&b, "ab"), 0);
	assert_int_equal(buf_adds(&b, "c"), -1);
	assert_int_equal(b.err, BUF_TOO_BIG);
	assert_string_equal(b.p, "0123456789ab");
	buf_reset(&b);
	assert_int_equal(buf_adds(&b, "0123456789"), 0);
	assert_int_equal(buf_printf(&b, "%d", 123), -1);   /* room in cap, not under max */
	assert_int_equal(b.err, BUF_TOO_BIG);
	assert_string_equal(b.p, "0123456789");
	buf_reset(&b);
	assert_int_equal(buf_adds(&b, "0123456789"), 0);
	b.max = 4;    /* lowered below what the buffer holds already */
	assert_int_equal(buf_adds(&b, "x"), -1);
	assert_int_equal(b.err, BUF_TOO_BIG);
	buf_free(&b);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_adds_are_kept_in_order_and_terminated),
		cmocka_unit_test(test_an_add_past_the_maximum_fails_and_stays_failed),
		cmocka_unit_test(test_printf_past_the_maximum_fails_without_a_partial_line),
		cmocka_unit_test(test_printf_grows_a_buffer_many_times),
		cmocka_unit_test(test_reserve_and_commit_is_how_a_reader_fills_it),
		cmocka_unit_test(test_consume_drops_the_front),
		cmocka_unit_test(test_a_lowered_maximum_holds_though_the_memory_is_there),
		cmocka_unit_test(test_reset_clears_the_error_and_keeps_the_memory),
		cmocka_unit_test(test_an_empty_buffer_is_taken_as_an_empty_string),
		cmocka_unit_test(test_truncate_keeps_the_front_and_the_error),
		cmocka_unit_test(test_a_maximum_of_size_max_still_grows),
	};

	return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
