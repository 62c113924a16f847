/* hash — FNV-1a 64. */
#include "hash.h"

#define FNV1A64_BASIS 0xcbf29ce484222325ULL
#define FNV1A64_PRIME 0x100000001b3ULL

uint64_t hash_bytes(const void *p, size_t len)
{
	const uint8_t *s = p;
	uint64_t h = FNV1A64_BASIS;

	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= FNV1A64_PRIME;
	}
	return h;
}

uint64_t hash_string(const char *s)
{
	uint64_t h = FNV1A64_BASIS;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= FNV1A64_PRIME;
	}
	return h;
}
