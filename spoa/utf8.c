/* utf8 — validation by the Unicode table of well-formed byte sequences. */
#include "utf8.h"

int utf8_char(const uint8_t *s, size_t len)
{
	uint8_t c = s[0], lo = 0x80, hi = 0xbf;
	int n;

	if (c < 0x80)
		return 1;
	/* The second byte's range rules out overlongs (E0, F0), surrogates
	 * (ED) and code points past U+10FFFF (F4). */
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
	else
		return -1;
	for (int k = 1; k < n; k++) {
		if ((size_t)k >= len)
			return -2;
		if (s[k] < lo || s[k] > hi)
			return -1;
		lo = 0x80;
		hi = 0xbf;
	}
	return n;
}

size_t utf8_char_start(const uint8_t *s, size_t len, size_t i)
{
	while (i > 0 && i < len && (s[i] & 0xc0) == 0x80)
		i--;
	return i;
}
