/* hash — FNV-1a 64, the agent's one hash: the slots of its tables
 * (exchange ids, endpoint and field names) and the digest a difference
 * shows for a binary body ("fnv1a64 ..." in the published message, so it
 * must stay the standard FNV-1a 64: offset basis 0xcbf29ce484222325, prime
 * 0x100000001b3). */
#ifndef MIFFY_HASH_H
#define MIFFY_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The FNV-1a 64 of nothing (the offset basis), where hash_more starts. */
#define HASH_START 0xcbf29ce484222325ULL

/* FNV-1a 64 continued from h over p[0..len): the hash of several pieces
 * one after the other, hash_more(hash_more(HASH_START, a, n), b, m) being
 * the hash of a and b joined. */
uint64_t hash_more(uint64_t h, const void *p, size_t len);

/* FNV-1a 64 of p[0..len); p may be NULL when len is 0. */
uint64_t hash_bytes(const void *p, size_t len);

/* FNV-1a 64 of the NUL-terminated s, its terminator left out. */
uint64_t hash_string(const char *s);

#endif
