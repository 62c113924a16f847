/* JSON reading: the RFC 8259 token scanners jsonw copies with, and a parser
 * that builds a read-only cJSON tree in one arena (no allocation per node,
 * integers and short decimals without strtod). */
#ifndef MIFFY_JSON_H
#define MIFFY_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* cJSON's own nesting limit: no tree is deeper than this. */
#define JSON_MAX_DEPTH 1000

struct json_arena;

/* Length of the valid UTF-8 prefix of s (no overlongs, surrogates or code
 * points past U+10FFFF; a sequence cut by the end is not valid). */
size_t json_utf8_valid_prefix(const uint8_t *s, size_t len);

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

void json_arena_free(struct json_arena *a);

#endif
