/* libFuzzer target: json and jsonw, the reader of bodies and the writer of
 * the published message, against cJSON. Input: any bytes, as a body or a
 * header value would carry them. What json_parse() reads, cJSON reads as
 * the same tree; what jsonw copies in as JSON text must be valid JSON that
 * cJSON reads as the same value as the input; what it writes as a string
 * must be a valid JSON string of the size it promised. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "json.h"
#include "jsonw.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* cJSON parse of len bytes (it wants a NUL-terminated text). */
static cJSON *parse(const char *s, size_t len)
{
	char *copy = malloc(len + 1);
	cJSON *v;

	FUZZ_CHECK(copy);
	memcpy(copy, s, len);
	copy[len] = '\0';
	v = memchr(s, '\0', len) ? NULL : cJSON_ParseWithOpts(copy, NULL, true);
	free(copy);
	return v;
}

/* The same value, members in the same order (minifying keeps it); numbers
 * by value, so that 1e999 equals itself (cJSON_Compare says inf != inf). */
static bool same(const cJSON *a, const cJSON *b)
{
	if ((a->type & 0xff) != (b->type & 0xff))
		return false;
	if (cJSON_IsNumber(a))
		return a->valuedouble == b->valuedouble;
	if (cJSON_IsString(a))
		return strcmp(a->valuestring, b->valuestring) == 0;
	if (cJSON_IsArray(a) || cJSON_IsObject(a)) {
		for (a = a->child, b = b->child; a && b; a = a->next, b = b->next)
			if ((a->string || b->string) && (!a->string || !b->string || strcmp(a->string, b->string)))
				return false;
			else if (!same(a, b))
				return false;
		return !a && !b;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_arena *arena;
	cJSON *tree = json_parse(data, size, JSON_MAX_DEPTH, &arena), *in, *out;
	bool parsed = false;
	struct jsonw w;
	size_t n;

	jsonw_init(&w, SIZE_MAX);
	n = jsonw_json_text_size(data, size);
	/* Both readers take RFC 8259 text; json_parse refuses what cJSON
	 * takes beyond it, and lone surrogates, which cJSON refuses too. */
	FUZZ_CHECK(!tree == (n == SIZE_MAX) || (!tree && memmem(data, size, "\\u", 2)));
	if (tree) {
		in = parse((const char *)data, size);
		FUZZ_CHECK(in && same(in, tree));
		/* A text parsed without whitespace is its own minified form. */
		FUZZ_CHECK(!json_parsed_compact(arena) || n == size);
		cJSON_Delete(in);
		json_arena_free(arena);
		tree = NULL;
		parsed = true;
	}
	if (jsonw_json_text(&w, data, size)) {
		FUZZ_CHECK(n == w.b.len && n <= size);
		in = parse((const char *)data, size);
		out = parse(w.b.p, w.b.len);
		/* cJSON reads everything RFC 8259 allows but lone surrogates,
		 * and reads the minified text alike. */
		FUZZ_CHECK(!in == !out);
		FUZZ_CHECK(in || (!parsed && memmem(data, size, "\\u", 2)));
		if (!in) {
			cJSON_Delete(out);
			goto string;
		}
		FUZZ_CHECK(same(in, out));
		/* The tree printed back is valid JSON too. */
		jsonw_reset(&w);
		jsonw_cjson(&w, in);
		cJSON_Delete(out);
		out = parse(w.b.p, w.b.len);
		FUZZ_CHECK(out);
		cJSON_Delete(in);
		cJSON_Delete(out);
	} else {
		FUZZ_CHECK(n == SIZE_MAX && w.b.len == 0);
	}

string:
	jsonw_reset(&w);
	jsonw_string(&w, (const char *)data, size);
	FUZZ_CHECK(w.b.len == jsonw_string_size((const char *)data, size));
	out = parse(w.b.p, w.b.len);
	FUZZ_CHECK(out && cJSON_IsString(out));
	cJSON_Delete(out);
	jsonw_free(&w);
	return 0;
}
