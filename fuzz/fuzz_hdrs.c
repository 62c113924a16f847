/* libFuzzer target: HAProxy's req.hdrs_bin / res.hdrs_bin decoder
 * (http_headers_decode) and the lookups the replay does on its result.
 * Input: the raw header block, as an argument value would carry it. */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct header_list h;

	/* Garbage in the struct must not matter: decode initialises it. */
	memset(&h, 0xa5, sizeof(h));
	if (http_headers_decode(data, size, &h) < 0) {
		FUZZ_CHECK(h.count == 0 && h.items == NULL);
		return 0;
	}
	FUZZ_CHECK(h.count <= 1024);
	for (size_t i = 0; i < h.count; i++) {
		const char *name = h.items[i].name;

		/* Names are never empty on the wire, but may hold a NUL: the
		 * replay drops what is not a token, so only NUL-termination and
		 * case are promised here. */
		FUZZ_CHECK(name && h.items[i].value);
		for (const char *c = name; *c; c++)
			FUZZ_CHECK(!isupper((unsigned char)*c));
		/* What replay.c asks of every header it forwards. */
		(void)http_header_is_hop_by_hop(&h, name);
		FUZZ_CHECK(http_headers_get(&h, name) != NULL);
	}
	(void)http_headers_get(&h, "host");
	(void)http_header_is_hop_by_hop(&h, "x-miffy-role");
	http_headers_clear(&h);
	FUZZ_CHECK(h.count == 0 && h.items == NULL);
	return 0;
}
