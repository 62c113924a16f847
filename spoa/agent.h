/* The SPOP server: HAProxy connections on the libev loop. */
#ifndef MIFFY_AGENT_H
#define MIFFY_AGENT_H

#include <stddef.h>

#include <ev.h>

struct config;
struct exchange_table;
struct agent;

/* Binds cfg->listen and starts accepting. Returns NULL with a message in
 * err when the address cannot be bound. */
struct agent *agent_new(struct ev_loop *loop, const struct config *cfg,
			struct exchange_table *table, char *err, size_t errlen);

/* Closes the listening socket; open connections keep being served. */
void agent_stop_accepting(struct agent *a);

/* Sends AGENT-DISCONNECT (normal) on every connection and closes them. */
void agent_close_all(struct agent *a);

size_t agent_connection_count(const struct agent *a);

/* Closes everything and frees a. */
void agent_free(struct agent *a);

#endif
