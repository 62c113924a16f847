/* buf — a growable byte buffer with a hard maximum (curl's dynbuf is the
 * model). Every growable buffer in the agent is one of these: a frame being
 * written, a response being read, a message being built.
 *
 * Errors are sticky: once an add would pass the maximum or memory runs out,
 * every later add fails too and buf_take() returns NULL, so a builder may
 * append many pieces and check once at the end. */
#ifndef MIFFY_BUF_H
#define MIFFY_BUF_H

#include <stddef.h>
#include <string.h>

enum buf_error {
	BUF_OK = 0,
	BUF_TOO_BIG,                 /* an add would have passed max */
	BUF_NO_MEMORY,
	BUF_ERROR_COUNT
};

struct buf {
	char *p;                     /* NULL until the first byte; NUL-terminated after */
	size_t len;                  /* bytes held */
	size_t cap;                  /* bytes allocated, the terminator's included */
	size_t max;                  /* len never passes it */
	enum buf_error err;
};

/* An empty buffer that will hold at most max bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t max);

/* Makes room for n more bytes and the terminator: the slow path of
 * buf_reserve() and buf_add(), which call it only when the room is not
 * there already. Returns 0, or -1 with b->err set. */
int buf_grow(struct buf *b, size_t n);

/* Room for n more bytes: returns where they go (b->p + b->len), or NULL with
 * b->err set. Nothing is held until buf_commit(b, k) with k <= n, which a
 * reader calls after recv() wrote k bytes there. */
static inline char *buf_reserve(struct buf *b, size_t n)
{
	/* max is checked apart from cap: a writer may lower it (a smaller
	 * message tried in the same buffer) */
	if (b->err != BUF_OK || n >= b->cap - b->len || b->len + n > b->max) {
		if (buf_grow(b, n) == -1)
			return NULL;
	}
	return b->p + b->len;
}

static inline void buf_commit(struct buf *b, size_t n)
{
	b->len += n;
	b->p[b->len] = '\0';
}

/* Appends data[0..n). Returns 0, or -1 with b->err set (and b unchanged
 * otherwise) when that would pass max or memory runs out. Inline: the
 * JSON writer appends a few bytes at a time. */
static inline int buf_add(struct buf *b, const void *data, size_t n)
{
	char *at = buf_reserve(b, n);

	if (at == NULL)
		return -1;
	if (n > 0)
		memcpy(at, data, n);
	buf_commit(b, n);
	return 0;
}

/* buf_add() of a NUL-terminated string. */
int buf_adds(struct buf *b, const char *s);

/* Appends printf-style text; same returns as buf_add(). */
__attribute__((format(printf, 2, 3)))
int buf_printf(struct buf *b, const char *fmt, ...);

/* Drops the first n bytes (n <= b->len), moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/* Keeps the first len bytes (len <= b->len), dropping the rest; the error
 * is left as it is. */
void buf_truncate(struct buf *b, size_t len);

/* Empties b and clears its error; keeps the memory for reuse. */
void buf_reset(struct buf *b);

/* Hands the bytes over: returns them NUL-terminated ("" for none, the
 * caller frees) with *len set when len is not NULL, and leaves b empty with
 * the same max. Returns NULL when b->err is set (the bytes are freed). */
char *buf_take(struct buf *b, size_t *len);

/* Frees the bytes; b is empty afterwards (the same max) and may be reused. */
void buf_free(struct buf *b);

#endif
