/* The SPOP server: HAProxy connections on the libev loop. */
#ifndef MIFFY_AGENT_H
#define MIFFY_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

struct config;
struct exchange_table;
struct agent;

/* Binds cfg->listen and starts accepting; cfg and table are borrowed and
 * must outlive the agent. Returns NULL with a message in err when the
 * address cannot be bound (or memory runs out). The caller frees with
 * agent_free(). */
struct agent *agent_new(struct ev_loop *loop, const struct config *cfg,
			struct exchange_table *table, char *err, size_t errlen);

/* Starts a graceful stop: from now on HAProxy's health checks get a
 * DISCONNECT (so HAProxy marks the agent down and stops sending), while
 * every connection, open or new, is still served and ACKed: no event is
 * refused or cut while HAProxy still counts on the agent. */
void agent_drain(struct agent *a);

/* True once draining, a health check has been refused and no NOTIFY has
 * arrived for `seconds`: HAProxy has stopped sending, closing is safe. */
bool agent_quiet(const struct agent *a, double seconds);

/* Sends AGENT-DISCONNECT (normal) on every connection and closes them. */
void agent_close_all(struct agent *a);

/* HAProxy connections open now, closing ones included. */
size_t agent_connection_count(const struct agent *a);

/* Closes everything and frees a (NULL is fine). */
void agent_free(struct agent *a);

#endif
