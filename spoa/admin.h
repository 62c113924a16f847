/* Admin HTTP server: /health, /metrics, /stats, the dashboard and /samples. */
#ifndef MIFFY_ADMIN_H
#define MIFFY_ADMIN_H

#include <stddef.h>

#include <ev.h>

struct config;
struct admin;

/* Starts serving cfg->admin ("ADDR:PORT"). Returns NULL with a message in
 * err when it cannot listen. Never stalls the loop that serves HAProxy. */
struct admin *admin_new(struct ev_loop *loop, const struct config *cfg, char *err, size_t errlen);

/* Serves s at /samples; s is borrowed and must outlive a. */
struct samples;
void admin_set_samples(struct admin *a, struct samples *s);

/* Makes /health answer status ("ok" answers 200, anything else 503, e.g.
 * the report's "stale") with detail, `"key":value,...` members, beside its
 * own; NULL status: the agent's health alone. Loop thread. */
void admin_set_status(struct admin *a, const char *status, const char *detail);

/* Stops serving and frees a (NULL is fine). */
void admin_free(struct admin *a);

#endif
