/* hash — FNV-1a 64. */
#include "hash.h"

#define FNV1A64_PRIME 0x100000001b3ULL

uint64_t hash_more(uint64_t h, const void *p, size_t len)
{
	const uint8_t *s = p;

	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= FNV1A64_PRIME;
	}
	return h;
}

uint64_t hash_bytes(const void *p, size_t len)
{
	return hash_more(HASH_START, p, len);
}

uint64_t hash_string(const char *s)
{
	uint64_t h = HASH_START;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= FNV1A64_PRIME;
	}
	return h;
}
