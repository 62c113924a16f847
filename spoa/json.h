/* JSON reading: the RFC 8259 token scanners jsonw copies with, and a parser
 * that builds a read-only cJSON tree in one arena (no allocation per node,
 * integers and short decimals without strtod). */
#ifndef MIFFY_JSON_H
#define MIFFY_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

/* cJSON's own nesting limit: no tree is deeper than this. */
#define JSON_MAX_DEPTH 1000

struct json_arena;

/* The first byte at or after p that does not stand for itself inside a
 * JSON string (a quote, a backslash, a control or a non-ASCII byte), or
 * end. Eight bytes at a time: borrows may flag plain bytes above a flagged
 * one, never below it, so the lowest flag is the byte sought. */
static inline const uint8_t *json_plain_run(const uint8_t *p, const uint8_t *end)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;

	while (end - p >= 8) {
		uint64_t v, hit;

		memcpy(&v, p, 8);
		hit = ((((v - ones * 0x20) | ((v ^ (ones * 0x22)) - ones) | ((v ^ (ones * 0x5c)) - ones)) & ~v) | v) &
		      highs;
		if (hit)
			return p + (__builtin_ctzll(hit) >> 3);
		p += 8;
	}
#endif
	while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
		p++;
	return p;
}

/* Token scanners: p is on the token's first byte (the quote of a string).
 * Each returns the end of the token, or NULL when it is not valid JSON. */
const uint8_t *json_scan_string(const uint8_t *p, const uint8_t *end);
const uint8_t *json_scan_number(const uint8_t *p, const uint8_t *end);

/* Parses s[0..len) when it is one valid JSON value (RFC 8259, strings in
 * valid UTF-8 whose escapes are whole UTF-16 characters), at most
 * max_depth (and JSON_MAX_DEPTH) levels deep, into a tree that reads as
 * cJSON_Parse's would: same types, strings and number values, members in
 * order. Returns the root, with *arena set to what holds every node and
 * string: free it with json_arena_free(), never cJSON_Delete() the tree.
 * Returns NULL, *arena NULL, when s is not such JSON or memory ran out;
 * cJSON may still read it (it takes more than RFC 8259). */
cJSON *json_parse(const uint8_t *s, size_t len, unsigned max_depth, struct json_arena **arena);

/* True when the text json_parse() read into a had no whitespace between
 * its tokens: it is its own minified form. */
bool json_parsed_compact(const struct json_arena *a);

void json_arena_free(struct json_arena *a);

#endif
