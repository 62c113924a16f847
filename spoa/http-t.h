/* Types of http.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not http.h. */
#ifndef MIFFY_HTTP_T_H
#define MIFFY_HTTP_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replay-t.h"

struct header {
	char *name;   /* lower-case, NUL-terminated; the allocation that holds both */
	char *value;  /* NUL-terminated, inside name's allocation */
};

struct header_list {
	struct header *items;
	size_t count;
};

/* A response of the reference (from HAProxy), the candidate or the secondary
 * (from libcurl). All pointers are owned by the struct; http_response_clear()
 * frees them. */
struct http_response {
	int status;                 /* 0 when there is none (error) */
	struct header_list headers;
	uint8_t *body;
	size_t body_len;
	bool truncated;             /* body cut by HAProxy or by max_body */
	double latency_ms;
	enum replay_error error;    /* REPLAY_OK on success (always for the reference) */
	char error_detail[256];     /* human text for the log and the message */
};

#endif
