/* SPOP 2.0 codec: varints, typed data, KV lists, frames. Pure functions over
 * a cursor and an end; no I/O. Decoders return >= 0 on success and move the
 * cursor, or SPOP_INVALID / SPOP_INCOMPLETE and leave it where it was. */
#ifndef MIFFY_SPOP_H
#define MIFFY_SPOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOP_INVALID (-1)
#define SPOP_INCOMPLETE (-2)

#define SPOP_FRAME_HDR_LEN 4          /* big-endian length prefix */
#define SPOP_MIN_FRAME_SIZE 256

enum spop_frame_type {
	SPOP_FRAME_UNSET = 0,
	SPOP_FRAME_HAPROXY_HELLO = 1,
	SPOP_FRAME_HAPROXY_DISCONNECT = 2,
	SPOP_FRAME_NOTIFY = 3,
	SPOP_FRAME_AGENT_HELLO = 101,
	SPOP_FRAME_AGENT_DISCONNECT = 102,
	SPOP_FRAME_ACK = 103,
};

#define SPOP_FLAG_FIN 0x00000001u
#define SPOP_FLAG_ABORT 0x00000002u

enum spop_type {
	SPOP_T_NULL = 0,
	SPOP_T_BOOL,
	SPOP_T_INT32,
	SPOP_T_UINT32,
	SPOP_T_INT64,
	SPOP_T_UINT64,
	SPOP_T_IPV4,
	SPOP_T_IPV6,
	SPOP_T_STRING,
	SPOP_T_BINARY,
	SPOP_T_COUNT
};

enum spop_status {
	SPOP_ERR_NONE = 0,
	SPOP_ERR_IO,
	SPOP_ERR_TOUT,
	SPOP_ERR_TOO_BIG,
	SPOP_ERR_INVALID,
	SPOP_ERR_NO_VSN,
	SPOP_ERR_NO_FRAME_SIZE,
	SPOP_ERR_NO_CAP,
	SPOP_ERR_BAD_VSN,
	SPOP_ERR_BAD_FRAME_SIZE,
	SPOP_ERR_FRAG_NOT_SUPPORTED,
	SPOP_ERR_INTERLACED_FRAMES,
	SPOP_ERR_FRAMEID_NOTFOUND,
	SPOP_ERR_RES,
	SPOP_ERR_STATUS_COUNT,
	SPOP_ERR_UNKNOWN = 99,
};

/* A decoded typed value. Strings and binaries point into the frame. */
struct spop_value {
	enum spop_type type;
	union {
		bool b;
		int64_t i;      /* INT32, INT64 */
		uint64_t u;     /* UINT32, UINT64 */
		uint8_t ip[16]; /* IPV4 (4 bytes), IPV6 */
		struct {
			const char *ptr;
			size_t len;
		} str;          /* STRING, BINARY */
	} v;
};

/* A named value: a KV-list item or a message argument. */
struct spop_arg {
	const char *name;
	size_t name_len;
	struct spop_value value;
};

struct spop_frame {
	uint8_t type;
	uint32_t flags;
	uint64_t stream_id;
	uint64_t frame_id;
	const uint8_t *payload;
	size_t payload_len;
};

/* The most of a NOTIFY a decoder keeps: HAProxy sends one message per group
 * here, with about ten arguments. Those beyond are validated, not kept. */
#define SPOP_NOTIFY_MAX_MESSAGES 16
#define SPOP_MESSAGE_MAX_ARGS 32
#define SPOP_NOTIFY_MAX_ARGS (SPOP_NOTIFY_MAX_MESSAGES * SPOP_MESSAGE_MAX_ARGS)

/* A message of a NOTIFY payload, decoded once: its name and its first
 * arguments point into the frame; args into the decoder's caller's array. */
struct spop_message {
	const char *name;
	size_t name_len;
	const struct spop_arg *args;
	size_t nargs;             /* kept in args (the message may have had more) */
};

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
