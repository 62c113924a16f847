/* A pure HTTP/1.x response-head parser (picohttpparser's contract): no I/O,
 * no allocation but the headers it is asked to fill. Used by the native
 * transport (h1.c); the header-line rules are shared with the curl one. */
#ifndef MIFFY_H1PARSE_H
#define MIFFY_H1PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http-t.h"

/* A response head (status line, headers, blank line) longer than this is
 * malformed; so is a trailer section. */
#define H1_HEAD_MAX (64 * 1024)

/* What a head says about the response, besides its headers. */
struct h1_head {
	int status;                  /* 100..999 */
	bool http10;                 /* HTTP/1.0: no keep-alive unless asked */
	bool have_length;            /* a valid Content-Length (all of them agree) */
	uint64_t length;
	bool have_te;                /* a Transfer-Encoding header */
	bool chunked;                /* ... whose last coding is chunked */
	bool keep_alive;             /* the connection may serve another request */
	enum replay_error error;     /* after -1: REPLAY_MALFORMED or REPLAY_OTHER */
	const char *why;             /* after -1: a static sentence for the log */
};

/* Parses the response head at the start of buf[0..len). last_len is the
 * length buf had at a previous call that returned -2 (0 otherwise): the
 * scan for the blank line resumes there. Returns the head's length in bytes
 * (blank line included) with *head and *headers filled (an interim 1xx
 * response leaves *headers empty); -2 when the head is not complete yet
 * (nothing touched); -1 when it is not valid HTTP/1.x or longer than
 * H1_HEAD_MAX (head->error and head->why set, *headers empty). *headers is
 * cleared first; the caller frees it with http_headers_clear(). */
int h1_parse_response(const char *buf, size_t len, size_t last_len, struct h1_head *head,
		      struct header_list *headers);

/* Adds one response header line to *headers: line[0..len) without or with
 * its CR LF; surrounding blanks of the value are trimmed; a line starting
 * with a blank continues the previous header (obs-fold, joined with one
 * space, dropped when there is none). At most REPLAY_MAX_HEADERS headers.
 * Returns 0, or -1 with *error (REPLAY_MALFORMED, or REPLAY_OTHER when out
 * of memory) and *why (static text) set. */
int h1_header_line(struct header_list *headers, const char *line, size_t len, enum replay_error *error,
		   const char **why);

#endif
