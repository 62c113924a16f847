/* Unit tests of hash: FNV-1a 64, checked against the published test
 * vectors (the digest of a binary body is part of the Kafka message). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "hash.h"

static void test_bytes_give_the_standard_fnv1a64(void **state)
{
	(void)state;
	assert_true(hash_bytes(NULL, 0) == 0xcbf29ce484222325ULL);
	assert_true(hash_bytes("a", 1) == 0xaf63dc4c8601ec8cULL);
	assert_true(hash_bytes("foobar", 6) == 0x85944171f73967e8ULL);
	assert_true(hash_bytes("\0", 1) == 0xaf63bd4c8601b7dfULL);
}

static void test_a_string_hashes_as_its_bytes(void **state)
{
	static const char *const words[] = { "", "a", "foobar", "GET /api/:id", "header:x-\xff" };

	(void)state;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		assert_true(hash_string(words[i]) == hash_bytes(words[i], strlen(words[i])));
	assert_true(hash_string("foobar") == 0x85944171f73967e8ULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes_give_the_standard_fnv1a64),
		cmocka_unit_test(test_a_string_hashes_as_its_bytes),
	};

	return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
