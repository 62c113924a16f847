/* The dashboard's files (dashboard/), embedded in the binary at build time
 * by tools/embed-assets.sh: the agent serves them from memory. */
#ifndef MIFFY_ASSETS_H
#define MIFFY_ASSETS_H

#include <stddef.h>

struct asset {
	const char *path;            /* "/index.html", "/app.js", ... */
	const char *type;            /* Content-Type */
	const unsigned char *data;
	size_t len;
};

/* The table, ended by an entry whose path is NULL. */
extern const struct asset assets[];

#endif
