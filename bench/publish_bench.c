/* Micro-benchmark of what an exchange of bench scenario 3 costs the agent
 * once both answers are in: compare the reference with the candidate (1 KiB
 * JSON bodies, one price and the padding differ; nginx's headers) and write
 * the message (to /dev/null through the file sink, so no Kafka). Prints
 * nanoseconds per exchange; run it under valgrind --tool=callgrind for
 * instructions (bench/README.md). Usage: publish_bench [ITERATIONS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "body.h"
#include "compare.h"
#include "config.h"
#include "exchange.h"
#include "http.h"
#include "publish.h"

static const char body_ref[] =
	"{\"id\":42,\"kind\":\"catalog\",\"version\":3,\"items\":["
	"{\"id\":0,\"name\":\"item-0\",\"price\":9.5,\"tags\":[\"bench\",\"shadow\",\"t0\"],\"in_stock\":true},"
	"{\"id\":1,\"name\":\"item-1\",\"price\":10.75,\"tags\":[\"bench\",\"shadow\",\"t1\"],\"in_stock\":false},"
	"{\"id\":2,\"name\":\"item-2\",\"price\":12.0,\"tags\":[\"bench\",\"shadow\",\"t2\"],\"in_stock\":true},"
	"{\"id\":3,\"name\":\"item-3\",\"price\":13.25,\"tags\":[\"bench\",\"shadow\",\"t0\"],\"in_stock\":false},"
	"{\"id\":4,\"name\":\"item-4\",\"price\":14.5,\"tags\":[\"bench\",\"shadow\",\"t1\"],\"in_stock\":true},"
	"{\"id\":5,\"name\":\"item-5\",\"price\":15.75,\"tags\":[\"bench\",\"shadow\",\"t2\"],\"in_stock\":false},"
	"{\"id\":6,\"name\":\"item-6\",\"price\":17.0,\"tags\":[\"bench\",\"shadow\",\"t0\"],\"in_stock\":true}],"
	"\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}";

static void add(struct header_list *h, const char *name, const char *value)
{
	if (http_headers_add(h, name, strlen(name), value, strlen(value)) < 0) {
		fprintf(stderr, "publish_bench: out of memory\n");
		exit(1);
	}
}

static void response(struct http_response *r, const char *body, const char *etag)
{
	memset(r, 0, sizeof(*r));
	r->status = 200;
	add(&r->headers, "server", "nginx/1.22.1");
	add(&r->headers, "date", "Tue, 01 Dec 2026 16:00:00 GMT");
	add(&r->headers, "content-type", "application/json");
	add(&r->headers, "content-length", "1024");
	add(&r->headers, "last-modified", "Tue, 01 Dec 2026 15:59:00 GMT");
	add(&r->headers, "connection", "keep-alive");
	add(&r->headers, "etag", etag);
	add(&r->headers, "accept-ranges", "bytes");
	r->body_len = strlen(body);
	r->body = (uint8_t *)strdup(body);
	r->latency_ms = 0.25;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static char a0[] = "publish_bench", a1[] = "--candidate", a2[] = "http://127.0.0.1:1",
		    a3[] = "--sink", a4[] = "file:/dev/null";
	char *args[] = { a0, a1, a2, a3, a4 };
	long iterations = argc > 1 ? atol(argv[1]) : 100000;
	struct ev_loop *loop = ev_default_loop(0);
	struct exchange x = { 0 };
	struct config cfg = { 0 };
	struct compare *c;
	struct publish *p;
	char err[256], *cand_body, *price;
	size_t diffs = 0;
	double start;

	/* The agent's defaults, as from its command line. */
	if (config_load(&cfg, 5, args) != 0)
		return 1;
	c = compare_new(&cfg, err, sizeof(err));
	p = c ? publish_new(loop, &cfg, err, sizeof(err)) : NULL;
	if (!p) {
		fprintf(stderr, "publish_bench: %s\n", err);
		return 1;
	}
	/* The candidate of scenario 3: item 3 at 999.99, the padding one byte
	 * shorter so that the body stays 1 KiB. */
	cand_body = strdup(body_ref);
	price = strstr(cand_body, "13.25");
	memmove(price + 6, price + 5, strlen(price + 5) + 1);
	memcpy(price, "999.99", 6);
	memmove(strstr(cand_body, "xx"), strstr(cand_body, "xx") + 1, strlen(strstr(cand_body, "xx")));

	x.id = strdup("7f000001:b1a2_0001:0001");
	x.endpoint = strdup("GET /api/items/:id");
	x.method = strdup("GET");
	x.path = strdup("/api/items/42");
	add(&x.req_headers, "host", "127.0.0.1:8080");
	add(&x.req_headers, "x-miffy-id", "7f000001:b1a2_0001:0001");
	x.have_reference = true;
	response(&x.reference, body_ref, "\"6566-400\"");
	response(&x.replies[ROLE_CANDIDATE], cand_body, "\"6566-401\"");
	x.want[ROLE_CANDIDATE] = x.have[ROLE_CANDIDATE] = true;

	start = now();
	for (long i = 0; i < iterations; i++) {
		struct body_shared ref, cand[ROLE_COUNT];
		struct diff_list out = { 0 };

		memset(&ref, 0, sizeof(ref));
		memset(cand, 0, sizeof(cand));
		if (compare_responses_shared(c, &x.reference, &x.replies[ROLE_CANDIDATE], &ref, &cand[0], &out) < 0) {
			fprintf(stderr, "publish_bench: out of memory\n");
			return 1;
		}
		diffs = out.count;
		publish_exchange_shared(p, &x, OUTCOME_DIFFERENT, &out, NULL, &ref, cand);
		diff_list_clear(&out);
		body_shared_clear(&ref);
		body_shared_clear(&cand[0]);
	}
	printf("%ld exchanges, %zu differences each: %.0f ns per exchange (compare + message)\n",
	       iterations, diffs, (now() - start) * 1e9 / (double)iterations);
	publish_free(p, 0);
	compare_free(c);
	config_free(&cfg);
	http_headers_clear(&x.req_headers);
	http_response_clear(&x.reference);
	http_response_clear(&x.replies[ROLE_CANDIDATE]);
	free(cand_body);
	free(x.id);
	free(x.endpoint);
	free(x.method);
	free(x.path);
	return 0;
}
