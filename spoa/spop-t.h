/* Types of spop.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not spop.h. */
#ifndef MIFFY_SPOP_T_H
#define MIFFY_SPOP_T_H

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

#endif
