/* SPOP 2.0 codec: varints, typed data, KV lists, frames. Pure functions over
 * a cursor and an end; no I/O. Decoders return >= 0 on success and move the
 * cursor, or SPOP_INVALID / SPOP_INCOMPLETE and leave it where it was. */
#ifndef MIFFY_SPOP_H
#define MIFFY_SPOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spop-t.h"

/* Decodes a varint (HAProxy's 240-prefix encoding) into *out. Returns bytes
 * consumed, SPOP_INCOMPLETE, or SPOP_INVALID (more than 64 bits). */
int spop_varint_decode(const uint8_t **p, const uint8_t *end, uint64_t *out);
/* Writes v at *p if it fits before end; returns bytes written or SPOP_INVALID. */
int spop_varint_encode(uint8_t **p, const uint8_t *end, uint64_t v);
/* Bytes spop_varint_encode would write for v (1..10). */
size_t spop_varint_len(uint64_t v);

/* Decodes a varint length + bytes; *str points into the input. Returns bytes
 * consumed or a negative code. */
int spop_string_decode(const uint8_t **p, const uint8_t *end, const char **str, size_t *len);
/* Writes a varint length + bytes. Returns bytes written or SPOP_INVALID when
 * they do not fit before end. */
int spop_string_encode(uint8_t **p, const uint8_t *end, const char *str, size_t len);

/* Decodes a typed value (strings point into the input). Returns bytes
 * consumed, SPOP_INCOMPLETE, or SPOP_INVALID (unknown type, out of range). */
int spop_value_decode(const uint8_t **p, const uint8_t *end, struct spop_value *out);
/* Encodes v; returns bytes written or SPOP_INVALID (no room, bad type). */
int spop_value_encode(uint8_t **p, const uint8_t *end, const struct spop_value *v);

/* KV-list item: name (no type byte) + typed value. Same returns as
 * spop_value_decode() / spop_value_encode(). */
int spop_kv_decode(const uint8_t **p, const uint8_t *end, struct spop_arg *out);
int spop_kv_encode(uint8_t **p, const uint8_t *end, const char *name, const struct spop_value *v);

/* Decodes the frame whose 4-byte length prefix starts at *p. A length above
 * max_frame_size is SPOP_INVALID (*too_big set when non-NULL), as is a
 * header that does not fit the announced length. */
int spop_frame_decode(const uint8_t **p, const uint8_t *end, uint32_t max_frame_size,
		      struct spop_frame *out, bool *too_big);

/* Writes the 4-byte prefix and frame header, leaving *p at the payload.
 * spop_frame_finish() fills the length once the payload is written. */
int spop_frame_begin(uint8_t **p, const uint8_t *end, uint8_t type, uint32_t flags,
		     uint64_t stream_id, uint64_t frame_id);
void spop_frame_finish(uint8_t *frame_start, const uint8_t *payload_end);

/* Decodes the next message of a NOTIFY payload and all its arguments: each
 * is validated, the first max_args are stored in args[], which out->args
 * then points to. Returns bytes consumed or a negative code. */
int spop_message_decode(const uint8_t **p, const uint8_t *end, struct spop_arg *args, size_t max_args,
			struct spop_message *out);

/* Decodes a whole NOTIFY payload [payload, end), every message and argument
 * validated, once: keeps the first SPOP_NOTIFY_MAX_MESSAGES messages in
 * msgs[], each with its first SPOP_MESSAGE_MAX_ARGS arguments, packed in
 * args[] (room for SPOP_NOTIFY_MAX_ARGS). Returns the number of messages
 * kept, or SPOP_INVALID (a message cut by end is invalid too). */
int spop_notify_decode(const uint8_t *payload, const uint8_t *end, struct spop_message *msgs,
		       struct spop_arg *args);

/* Builds an AGENT-DISCONNECT frame; returns bytes written or SPOP_INVALID. */
int spop_build_disconnect(uint8_t *buf, size_t len, enum spop_status status, const char *message);

/* Builds an AGENT-HELLO frame; returns bytes written or SPOP_INVALID. */
int spop_build_hello(uint8_t *buf, size_t len, uint32_t max_frame_size, const char *capabilities);

/* Builds an ACK for (stream_id, frame_id) with one action: set-var
 * txn.<prefix>.<var_name> = true (HAProxy 3.1 can stall on an empty ACK). */
/* Returns bytes written or SPOP_INVALID. */
int spop_build_ack(uint8_t *buf, size_t len, uint64_t stream_id, uint64_t frame_id, const char *var_name);

/* The status's text for a DISCONNECT message (static; any value accepted). */
const char *spop_status_text(enum spop_status status);

/* True when a's name is exactly name. */
bool spop_arg_is(const struct spop_arg *a, const char *name);
/* Stores an integer value (any of the four integer types) in *out; false
 * for another type or a UINT64 above INT64_MAX. */
bool spop_value_int(const struct spop_value *v, int64_t *out);

#endif
