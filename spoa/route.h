/* Endpoint naming: config patterns, else method + path with ids collapsed. */
#ifndef MIFFY_ROUTE_H
#define MIFFY_ROUTE_H

#include <stddef.h>

struct route;

/* Compiles patterns like "GET /api/:id" or "/users/<star>" (* matches one
 * segment, like :name). Returns NULL with a
 * message in err on a bad pattern. */
struct route *route_new(char *const *patterns, size_t count, char *err, size_t errlen);
void route_free(struct route *r);

/* Returns the endpoint name for method and path (path without the query),
 * e.g. "GET /api/:id". The caller frees. NULL only on allocation failure. */
char *route_name(const struct route *r, const char *method, const char *path);

#endif
