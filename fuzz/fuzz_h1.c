/* libFuzzer target: the native transport's response-head parser
 * (h1_parse_response) and the header-line rules both transports share.
 * Input: the bytes a candidate answers with. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "h1parse.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_headers(const struct header_list *h)
{
	FUZZ_CHECK(h->count <= REPLAY_MAX_HEADERS);
	for (size_t i = 0; i < h->count; i++) {
		FUZZ_CHECK(h->items[i].name && h->items[i].value);
		FUZZ_CHECK(h->items[i].name[0] != '\0');
		for (const char *c = h->items[i].name; *c; c++)
			FUZZ_CHECK(!isupper((unsigned char)*c) && *c != ':');
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct header_list h = { 0 }, again = { 0 };
	struct h1_head head, head2;
	int n = h1_parse_response(buf, size, 0, &head, &h);

	FUZZ_CHECK(n == -1 || n == -2 || (n > 0 && (size_t)n <= size && n <= H1_HEAD_MAX));
	if (n == -1) {
		FUZZ_CHECK(h.count == 0);
		FUZZ_CHECK(head.why && (head.error == REPLAY_MALFORMED || head.error == REPLAY_OTHER));
		return 0;
	}
	if (n == -2) {
		FUZZ_CHECK(h.count == 0 && size <= H1_HEAD_MAX);
		return 0;
	}
	check_headers(&h);
	FUZZ_CHECK(head.status >= 100 && head.status <= 999);
	FUZZ_CHECK(head.status >= 200 || h.count == 0);
	FUZZ_CHECK(!head.chunked || head.have_te);
	/* the head is complete at n bytes and not before */
	FUZZ_CHECK(h1_parse_response(buf, (size_t)n - 1, 0, &head2, &again) == -2);
	/* resuming the scan from any shorter length that was incomplete finds
	 * the same end */
	FUZZ_CHECK(h1_parse_response(buf, size, (size_t)n / 2, &head2, &again) == n);
	FUZZ_CHECK(head2.status == head.status && again.count == h.count);
	for (size_t i = 0; i < h.count; i++)
		FUZZ_CHECK(strcmp(h.items[i].name, again.items[i].name) == 0 &&
			   strcmp(h.items[i].value, again.items[i].value) == 0);
	http_headers_clear(&again);
	http_headers_clear(&h);
	FUZZ_CHECK(h.count == 0 && h.items == NULL);
	return 0;
}
