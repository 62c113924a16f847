/* Body decoding shared by compare and publish: content-encoding (gzip,
 * deflate) and type detection (JSON, text, binary). Pure: a problem is a
 * flag of the decoded body (decode_failed, depth_exceeded), counted by
 * whoever owns the body (an exchange's conclusion), never here. */
#ifndef MIFFY_BODY_H
#define MIFFY_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "http.h"

struct json_arena;

enum body_type { BODY_EMPTY = 0, BODY_JSON, BODY_TEXT, BODY_BINARY, BODY_TYPE_COUNT };

struct body {
	enum body_type type;
	const uint8_t *data;   /* decoded bytes: points into the response or into owned */
	size_t len;
	uint8_t *owned;        /* decompressed copy, or NULL */
	cJSON *json;           /* parsed when type == BODY_JSON, else NULL */
	struct json_arena *json_arena;  /* holds json when json_parse() built it */
	bool claims_json;      /* the content type says JSON (json may still be NULL) */
	bool decode_failed;    /* content-encoding could not be decoded */
	bool depth_exceeded;   /* JSON deeper than max_depth: not parsed */
	bool size_exceeded;    /* decompressed size above max_decompressed: cut */
};

/* Decodes resp's body per its headers. Never fails hard: on a problem it
 * falls back to the raw bytes and sets the flags. body_clear() frees. */
void body_decode(const struct http_response *resp, size_t max_decompressed,
		 unsigned max_depth, struct body *out);

void body_clear(struct body *b);

/* A response's body decoded on first use and kept, so that compare and
 * publish decode each body of an exchange once. Zero-initialised;
 * body_shared_clear() frees. */
struct body_shared {
	struct body body;
	bool decoded;
};

/* The decoded body of resp, decoding it on the first call; later calls
 * return the same body (they must pass the same resp and limits). The
 * body stays owned by *s. */
const struct body *body_shared_get(struct body_shared *s, const struct http_response *resp,
				   size_t max_decompressed, unsigned max_depth);

void body_shared_clear(struct body_shared *s);

/* True when content_type names JSON (application/json, application/x+json,
 * any/any+json), ignoring parameters and case. NULL is false. */
bool body_content_type_is_json(const char *content_type);

#endif
