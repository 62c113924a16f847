/* Unit tests of the candidates' rules of config: --candidate NAME=URL
 * (repeatable), a bare URL named "candidate", the candidates list, and the
 * names and URLs refused at startup with the reason. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char err[512];

static int add(struct config *cfg, const char *spec)
{
	err[0] = '\0';
	return config_add_candidate(cfg, spec, err, sizeof(err));
}

static void test_a_bare_url_is_named_candidate(void **state)
{
	struct config cfg = { 0 };

	(void)state;
	assert_int_equal(add(&cfg, "http://127.0.0.1:8081"), 0);
	assert_int_equal(cfg.ncandidates, 1);
	assert_string_equal(cfg.cands[0].name, "candidate");
	assert_string_equal(cfg.cands[0].url, "http://127.0.0.1:8081");
	assert_string_equal(config_candidate_name(&cfg, 0), "candidate");
	assert_string_equal(config_candidate_name(&cfg, 1), "candidate");   /* past the list */
	config_free(&cfg);
}

static void test_name_equals_url_names_the_candidate(void **state)
{
	struct config cfg = { 0 };

	(void)state;
	assert_int_equal(add(&cfg, "v2=http://127.0.0.1:8081/base"), 0);
	assert_int_equal(add(&cfg, "v2.1-rc_3=https://example.com"), 0);
	assert_int_equal(cfg.ncandidates, 2);
	assert_string_equal(cfg.cands[0].name, "v2");
	assert_string_equal(cfg.cands[0].url, "http://127.0.0.1:8081/base");
	assert_string_equal(cfg.cands[1].name, "v2.1-rc_3");
	assert_string_equal(cfg.cands[1].url, "https://example.com");
	config_free(&cfg);
}

/* An '=' after the "://" belongs to the URL. */
static void test_an_equals_sign_in_the_url_path_keeps_it_bare(void **state)
{
	struct config cfg = { 0 };

	(void)state;
	assert_int_equal(add(&cfg, "http://127.0.0.1:8081/a=b"), 0);
	assert_string_equal(cfg.cands[0].name, "candidate");
	assert_string_equal(cfg.cands[0].url, "http://127.0.0.1:8081/a=b");
	config_free(&cfg);
}

static void test_duplicate_names_are_refused(void **state)
{
	struct config cfg = { 0 };

	(void)state;
	assert_int_equal(add(&cfg, "a=http://127.0.0.1:1"), 0);
	assert_int_equal(add(&cfg, "a=http://127.0.0.1:2"), -1);
	assert_string_equal(err, "two candidates named \"a\"");
	assert_int_equal(add(&cfg, "http://127.0.0.1:3"), 0);
	assert_int_equal(add(&cfg, "http://127.0.0.1:4"), -1);
	assert_string_equal(err, "two candidates named \"candidate\": name each one (NAME=URL)");
	assert_int_equal(cfg.ncandidates, 2);
	config_free(&cfg);
}

static void test_bad_names_are_refused_with_the_reason(void **state)
{
	static const struct { const char *spec, *why; } bad[] = {
		{ "=http://127.0.0.1:1", "candidate \"=http://127.0.0.1:1\": no name before '=' (give NAME=URL)" },
		{ "a b=http://127.0.0.1:1", "candidate name \"a b\" may hold only letters, digits, '_', '-' and '.'" },
		{ "a/b=http://127.0.0.1:1", "candidate name \"a/b\" may hold only letters, digits, '_', '-' and '.'" },
		{ "caf\xc3\xa9=http://127.0.0.1:1",
		  "candidate name \"caf\xc3\xa9\" may hold only letters, digits, '_', '-' and '.'" },
		{ "a\"b=http://127.0.0.1:1", "candidate name \"a\"b\" may hold only letters, digits, '_', '-' and '.'" },
	};
	struct config cfg = { 0 };
	char longname[MIFFY_CANDIDATE_NAME_MAX + 64];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(add(&cfg, bad[i].spec), -1);
		assert_string_equal(err, bad[i].why);
	}
	memset(longname, 'n', MIFFY_CANDIDATE_NAME_MAX + 1);
	strcpy(longname + MIFFY_CANDIDATE_NAME_MAX + 1, "=http://127.0.0.1:1");
	assert_int_equal(add(&cfg, longname), -1);
	assert_string_equal(err, "candidate name \"nnnnnnnnnnnnnnnn...\" is longer than 64 bytes");
	/* the longest name is fine */
	strcpy(longname + MIFFY_CANDIDATE_NAME_MAX, "=http://127.0.0.1:1");
	assert_int_equal(add(&cfg, longname), 0);
	assert_int_equal(cfg.ncandidates, 1);
	config_free(&cfg);
}

static void test_bad_urls_name_the_candidate(void **state)
{
	struct config cfg = { 0 };

	(void)state;
	assert_int_equal(add(&cfg, "v2=ftp://127.0.0.1:1"), -1);
	assert_string_equal(err, "candidate \"v2\" URL \"ftp://127.0.0.1:1\": scheme must be http or https");
	assert_int_equal(add(&cfg, "v2=http://127.0.0.1:1/?q=1"), -1);
	assert_non_null(strstr(err, "must not have a query or a fragment"));
	assert_int_equal(add(&cfg, "ftp://127.0.0.1:1"), -1);
	assert_string_equal(err, "candidate URL \"ftp://127.0.0.1:1\": scheme must be http or https");
	assert_int_equal(add(&cfg, "v2="), -1);
	assert_non_null(strstr(err, "candidate \"v2\" URL \"\""));
	assert_int_equal(cfg.ncandidates, 0);
	config_free(&cfg);
}

static void test_more_than_the_maximum_is_refused(void **state)
{
	struct config cfg = { 0 };
	char spec[64];

	(void)state;
	for (int i = 0; i < MIFFY_MAX_CANDIDATES; i++) {
		snprintf(spec, sizeof(spec), "c%d=http://127.0.0.1:%d", i, 1000 + i);
		assert_int_equal(add(&cfg, spec), 0);
	}
	assert_int_equal(add(&cfg, "one-more=http://127.0.0.1:1"), -1);
	assert_string_equal(err, "more than 16 candidates");
	config_free(&cfg);
}

/* config_load as main calls it: stderr goes to a file to be read back. */
static int load(struct config *cfg, char *out, size_t outlen, int argc, ...)
{
	static char name[] = "miffy";
	char *argv[32];
	va_list ap;
	FILE *f = tmpfile();
	int saved = dup(2), rc;
	size_t n;

	va_start(ap, argc);
	argv[0] = name;
	for (int i = 1; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	fflush(stderr);
	dup2(fileno(f), 2);
	rc = config_load(cfg, argc, argv);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	n = fread(out, 1, outlen - 1, f);
	out[n] = '\0';
	fclose(f);
	return rc;
}

static const char *write_file(const char *text)
{
	static char path[] = "/tmp/miffy-test-config-XXXXXX";
	int fd;

	strcpy(path, "/tmp/miffy-test-config-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_the_flag_repeats_and_keeps_the_order(void **state)
{
	struct config cfg;
	char out[1024];

	(void)state;
	assert_int_equal(load(&cfg, out, sizeof(out), 7, "--candidate", "b=http://127.0.0.1:2", "--candidate",
			      "a=http://127.0.0.1:1", "--candidate", "http://127.0.0.1:3"), 0);
	assert_int_equal(cfg.ncandidates, 3);
	assert_string_equal(cfg.cands[0].name, "b");
	assert_string_equal(cfg.cands[1].name, "a");
	assert_string_equal(cfg.cands[2].name, "candidate");
	assert_string_equal(cfg.cands[2].url, "http://127.0.0.1:3");
	config_free(&cfg);

	/* one bare URL: as always */
	assert_int_equal(load(&cfg, out, sizeof(out), 3, "--candidate", "http://127.0.0.1:3"), 0);
	assert_int_equal(cfg.ncandidates, 1);
	assert_string_equal(cfg.cands[0].name, "candidate");
	config_free(&cfg);
}

static void test_startup_refuses_duplicates_and_bad_names_in_one_line(void **state)
{
	struct config cfg;
	char out[1024];

	(void)state;
	assert_int_equal(load(&cfg, out, sizeof(out), 5, "--candidate", "a=http://127.0.0.1:1", "--candidate",
			      "a=http://127.0.0.1:2"), 2);
	assert_string_equal(out, "miffy: two candidates named \"a\"\n");
	config_free(&cfg);
	assert_int_equal(load(&cfg, out, sizeof(out), 5, "--candidate", "http://127.0.0.1:1", "--candidate",
			      "http://127.0.0.1:2"), 2);
	assert_string_equal(out, "miffy: two candidates named \"candidate\": name each one (NAME=URL)\n");
	config_free(&cfg);
	assert_int_equal(load(&cfg, out, sizeof(out), 3, "--candidate", "no space=http://127.0.0.1:1"), 2);
	assert_string_equal(out, "miffy: candidate name \"no space\" may hold only letters, digits, '_', '-' "
			    "and '.'\n");
	config_free(&cfg);
	assert_int_equal(load(&cfg, out, sizeof(out), 1), 2);
	assert_string_equal(out, "miffy: no candidate: give --candidate URL or 'candidate' in the config file\n");
	config_free(&cfg);
}

static void test_the_file_gives_candidate_then_candidates_and_flags_replace_them(void **state)
{
	struct config cfg;
	char out[1024];
	const char *path = write_file("candidate = \"http://127.0.0.1:1\"\n"
				      "candidates = {\"v2=http://127.0.0.1:2\", \"v3=http://127.0.0.1:3\"}\n");

	(void)state;
	assert_int_equal(load(&cfg, out, sizeof(out), 3, "-f", path), 0);
	assert_int_equal(cfg.ncandidates, 3);
	assert_string_equal(cfg.cands[0].name, "candidate");
	assert_string_equal(cfg.cands[1].name, "v2");
	assert_string_equal(cfg.cands[2].name, "v3");
	assert_string_equal(cfg.cands[2].url, "http://127.0.0.1:3");
	config_free(&cfg);

	assert_int_equal(load(&cfg, out, sizeof(out), 5, "-f", path, "--candidate", "only=http://127.0.0.1:9"), 0);
	assert_int_equal(cfg.ncandidates, 1);
	assert_string_equal(cfg.cands[0].name, "only");
	config_free(&cfg);
	unlink(path);

	path = write_file("candidates = {\"v2=http://127.0.0.1:2\", \"v2=http://127.0.0.1:3\"}\n");
	assert_int_equal(load(&cfg, out, sizeof(out), 3, "-f", path), 2);
	assert_string_equal(out, "miffy: two candidates named \"v2\"\n");
	config_free(&cfg);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_bare_url_is_named_candidate),
		cmocka_unit_test(test_name_equals_url_names_the_candidate),
		cmocka_unit_test(test_an_equals_sign_in_the_url_path_keeps_it_bare),
		cmocka_unit_test(test_duplicate_names_are_refused),
		cmocka_unit_test(test_bad_names_are_refused_with_the_reason),
		cmocka_unit_test(test_bad_urls_name_the_candidate),
		cmocka_unit_test(test_more_than_the_maximum_is_refused),
		cmocka_unit_test(test_the_flag_repeats_and_keeps_the_order),
		cmocka_unit_test(test_startup_refuses_duplicates_and_bad_names_in_one_line),
		cmocka_unit_test(test_the_file_gives_candidate_then_candidates_and_flags_replace_them),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
