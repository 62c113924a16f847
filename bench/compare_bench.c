/* Micro-benchmark of compare_responses on JSON bodies of about 1 KB and
 * 100 KB, equal and differing in one field. Prints a Markdown table of
 * nanoseconds per comparison (body parsing included, as in the agent). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compare.h"
#include "config.h"
#include "http.h"

/* Each row runs for about this long, within these iteration bounds. */
#define BENCH_SECONDS 0.5
#define BENCH_MIN_ITERATIONS 10
#define BENCH_MAX_ITERATIONS 1000000

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An API-like document: items with ids, names, prices and tags, until it
 * reaches size bytes. When changed, the price of the middle item differs. */
static char *make_json(size_t size, bool changed)
{
	size_t cap = size + 512, len = 0, count = 0;
	char *s = malloc(cap);

	if (!s)
		return NULL;
	len += (size_t)snprintf(s + len, cap - len, "{\"meta\":{\"page\":1,\"total\":%zu},\"items\":[", size);
	while (len + 200 < size)
		len += (size_t)snprintf(s + len, cap - len,
					"%s{\"id\":%zu,\"name\":\"item %zu\",\"price\":%zu.5,"
					"\"tags\":[\"a\",\"b\"],\"ok\":true}",
					count ? "," : "", count, count, count * 3), count++;
	len += (size_t)snprintf(s + len, cap - len, "]}");
	if (changed) {
		char key[64], *p;

		snprintf(key, sizeof(key), "\"price\":%zu.5", (count / 2) * 3);
		p = strstr(s, key);
		if (p)
			p[strlen(key) - 1] = '7';
	}
	return s;
}

static int resp_init(struct http_response *r, const char *json)
{
	static const char ct[] = "application/json";

	memset(r, 0, sizeof(*r));
	r->status = 200;
	r->body_len = strlen(json);
	r->body = malloc(r->body_len);
	if (!r->body || http_headers_add(&r->headers, "content-type", strlen("content-type"),
					 ct, strlen(ct)) < 0)
		return -1;
	memcpy(r->body, json, r->body_len);
	return 0;
}

static int bench_row(const struct compare *c, size_t size, bool changed)
{
	struct http_response ref, cand;
	char *a = make_json(size, false), *b = make_json(size, changed);
	size_t iterations = 0, diffs = 0;
	double start, elapsed;
	int rc = -1;

	if (!a || !b || resp_init(&ref, a) < 0 || resp_init(&cand, b) < 0)
		goto done;
	start = now();
	do {
		struct diff_list out = { 0 };

		if (compare_responses(c, &ref, &cand, &out) < 0)
			goto done;
		diffs = out.count;
		diff_list_clear(&out);
		iterations++;
		elapsed = now() - start;
	} while (iterations < BENCH_MAX_ITERATIONS &&
		 (iterations < BENCH_MIN_ITERATIONS || elapsed < BENCH_SECONDS));
	printf("| %zu | %s | %zu | %zu | %.0f |\n", ref.body_len,
	       changed ? "one field differs" : "equal", diffs, iterations,
	       elapsed * 1e9 / (double)iterations);
	rc = 0;
done:
	http_response_clear(&ref);
	http_response_clear(&cand);
	free(a);
	free(b);
	return rc;
}

int main(void)
{
	static const size_t sizes[] = { 1024, 100 * 1024 };
	struct config cfg;
	struct compare *c;
	char err[256];
	int rc = 0;

	memset(&cfg, 0, sizeof(cfg));
	cfg.max_depth = 128;
	cfg.max_decompressed = 8 << 20;
	c = compare_new(&cfg, err, sizeof(err));
	if (!c) {
		fprintf(stderr, "compare_new: %s\n", err);
		return 1;
	}
	printf("| body bytes | case | differences | iterations | ns per comparison |\n");
	printf("|---:|---|---:|---:|---:|\n");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && rc == 0; i++)
		if (bench_row(c, sizes[i], false) < 0 || bench_row(c, sizes[i], true) < 0)
			rc = 1;
	compare_free(c);
	if (rc)
		fprintf(stderr, "compare_bench: out of memory\n");
	return rc;
}
