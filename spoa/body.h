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

#include "http-t.h"
#include "body-t.h"

/* Decodes resp's body per its headers. Never fails hard: on a problem it
 * falls back to the raw bytes and sets the flags. body_clear() frees. */
void body_decode(const struct http_response *resp, size_t max_decompressed,
		 unsigned max_depth, struct body *out);

void body_clear(struct body *b);

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
