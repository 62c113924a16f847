/* Types of body.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not body.h. */
#ifndef MIFFY_BODY_T_H
#define MIFFY_BODY_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

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

/* A response's body decoded on first use and kept, so that compare and
 * publish decode each body of an exchange once. Zero-initialised;
 * body_shared_clear() frees. */
struct body_shared {
	struct body body;
	bool decoded;
};

#endif
