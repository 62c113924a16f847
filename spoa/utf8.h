/* utf8 — the agent's one UTF-8 check (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). Bodies are classified with it, and
 * every JSON or Prometheus writer uses it to keep its text valid whatever
 * bytes a peer sent. */
#ifndef MIFFY_UTF8_H
#define MIFFY_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The character at the start of s[0..len), len > 0: returns its length (1
 * to 4) when it is a whole valid character, -1 when the bytes cannot begin
 * one, -2 when they are the valid beginning of a character that len cuts
 * (the rest may follow). Reads at most 4 bytes. */
int utf8_char(const uint8_t *s, size_t len);

/* i moved back to the first byte of the character it falls inside, so a
 * cut at it splits no character; i itself when it is 0 or at or past len. */
size_t utf8_char_start(const uint8_t *s, size_t len, size_t i);

#endif
