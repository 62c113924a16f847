/* Replays every input kept for the fuzz targets (fuzz/corpus/<target>/ seeds
 * and fuzz/regressions/<target>/ crash inputs) through the targets' own
 * entry points, so `make unit` under ASan+UBSan catches a regression without
 * clang or libFuzzer. Each target source is compiled here with its entry
 * point renamed; FUZZ_NO_MAIN leaves out what the fuzzer build stubs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_NO_MAIN 1

#define LLVMFuzzerTestOneInput fuzz_spop_one
#include "../../fuzz/fuzz_spop.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_hdrs_one
#include "../../fuzz/fuzz_hdrs.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_compare_one
#include "../../fuzz/fuzz_compare.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_keyed_one
#include "../../fuzz/fuzz_keyed.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_h1_one
#include "../../fuzz/fuzz_h1.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput fuzz_json_one
#define parse fuzz_json_parse
#include "../../fuzz/fuzz_json.c"
#undef parse
#undef LLVMFuzzerTestOneInput

/* The input being replayed, named when something goes wrong with it. Set
 * MIFFY_FUZZ_VERBOSE=1 to list every input (an UBSan halt has no hook). */
static char current_input[8400];

static void say_current_input(void)
{
	static const char what[] = "\nwhile replaying fuzz input: ";

	if (write(STDERR_FILENO, what, sizeof(what) - 1) < 0 ||
	    write(STDERR_FILENO, current_input, strlen(current_input)) < 0 ||
	    write(STDERR_FILENO, "\n", 1) < 0)
		return;
}

static void on_abort(int sig)
{
	say_current_input();
	signal(sig, SIG_DFL);
	raise(sig);
}

#ifdef __SANITIZE_ADDRESS__
void __asan_on_error(void);

/* ASan calls this before its report. */
void __asan_on_error(void)
{
	say_current_input();
}
#endif

typedef int (*fuzz_entry)(const uint8_t *data, size_t size);

struct fuzz_target {
	const char *name;
	fuzz_entry entry;
};

static struct fuzz_target targets[] = {
	{ "spop", fuzz_spop_one },
	{ "hdrs", fuzz_hdrs_one },
	{ "compare", fuzz_compare_one },
	{ "json", fuzz_json_one },
	{ "h1", fuzz_h1_one },
	{ "keyed", fuzz_keyed_one },
};

/* The fuzz/ directory: $MIFFY_FUZZ_DIR, ./fuzz (make runs tests from the
 * top), or next to this source file. */
static const char *fuzz_root(void)
{
	static char path[4096];
	const char *env = getenv("MIFFY_FUZZ_DIR");
	struct stat st;
	const char *slash;

	if (env && *env)
		return env;
	if (stat("fuzz/corpus", &st) == 0 && S_ISDIR(st.st_mode))
		return "fuzz";
	slash = strrchr(__FILE__, '/');
	snprintf(path, sizeof(path), "%.*s/../../fuzz", slash ? (int)(slash - __FILE__) : 1,
		 slash ? __FILE__ : ".");
	return path;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	/* Exactly the file's size, so ASan sees a read one byte past the end. */
	buf = malloc(n ? (size_t)n : 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Runs every regular file of root/kind/target; returns how many. */
static size_t replay_dir(const struct fuzz_target *t, const char *kind)
{
	char dir[4200], file[8400];
	struct dirent *de;
	size_t count = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s/%s", fuzz_root(), kind, t->name);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		uint8_t *data;
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", dir, de->d_name);
		if (stat(file, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		data = read_file(file, &len);
		snprintf(current_input, sizeof(current_input), "%s", file);
		if (getenv("MIFFY_FUZZ_VERBOSE"))
			fprintf(stderr, "%s\n", file);
		t->entry(data, len);
		free(data);
		count++;
	}
	closedir(d);
	return count;
}

static void test_corpus_and_regressions_replay_cleanly(void **state)
{
	const struct fuzz_target *t = *state;
	size_t seeds = replay_dir(t, "corpus");
	size_t crashes = replay_dir(t, "regressions");

	print_message("fuzz_%s: %zu seeds, %zu kept crash inputs replayed\n", t->name, seeds, crashes);
	/* No seeds means the test looked in the wrong place. */
	assert_true(seeds > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_corpus_and_regressions_replay_cleanly, (void *)&targets[0]),
		cmocka_unit_test_prestate(test_corpus_and_regressions_replay_cleanly, (void *)&targets[1]),
		cmocka_unit_test_prestate(test_corpus_and_regressions_replay_cleanly, (void *)&targets[2]),
		cmocka_unit_test_prestate(test_corpus_and_regressions_replay_cleanly, (void *)&targets[3]),
		cmocka_unit_test_prestate(test_corpus_and_regressions_replay_cleanly, (void *)&targets[4]),
		cmocka_unit_test_prestate(test_corpus_and_regressions_replay_cleanly, (void *)&targets[5]),
	};

	signal(SIGABRT, on_abort);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
