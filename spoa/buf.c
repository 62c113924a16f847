/* buf — growable bytes with a hard maximum. */
#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 256

void buf_init(struct buf *b, size_t max)
{
	*b = (struct buf){ .max = max };
}

/* Makes room for n more bytes and the terminator. */
int buf_grow(struct buf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (b->err != BUF_OK)
		return -1;
	if (b->len > b->max || n > b->max - b->len) {
		b->err = BUF_TOO_BIG;
		return -1;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (b->max < SIZE_MAX && cap > b->max + 1)
		cap = b->max + 1;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->err = BUF_NO_MEMORY;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

int buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err != BUF_OK)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = BUF_NO_MEMORY;
		return -1;
	}
	/* max is checked apart from cap, as in buf_reserve() */
	if (b->p == NULL || (size_t)n >= b->cap - b->len || b->len + (size_t)n > b->max) {
		if (buf_grow(b, (size_t)n) == -1) {
			if (b->p)
				b->p[b->len] = '\0';
			return -1;
		}
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n == 0)
		return;
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	b->p[b->len] = '\0';
}

void buf_truncate(struct buf *b, size_t len)
{
	if (len >= b->len)
		return;
	b->len = len;
	b->p[len] = '\0';
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->err = BUF_OK;
	if (b->p)
		b->p[0] = '\0';
}

char *buf_take(struct buf *b, size_t *len)
{
	char *p;

	if (b->err == BUF_OK && b->p == NULL)
		buf_add(b, "", 0);
	if (b->err != BUF_OK) {
		buf_free(b);
		return NULL;
	}
	p = b->p;
	if (len)
		*len = b->len;
	buf_init(b, b->max);
	return p;
}

void buf_free(struct buf *b)
{
	free(b->p);
	buf_init(b, b->max);
}
