/* Configuration: libconfuse file, CLI overrides, validation. */
#ifndef MIFFY_CONFIG_H
#define MIFFY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "config-t.h"

/* Parses argv (and the file named by -f) into *cfg. Returns 0 when the agent
 * should run, 1 when it should exit 0 (--help, --version, --check passed), 2
 * on an error, already printed as one line on stderr. config_free() releases
 * *cfg in every case. */
int config_load(struct config *cfg, int argc, char **argv);

/* Frees what config_load() allocated in *cfg (not cfg itself) and zeroes it. */
void config_free(struct config *cfg);

/* Adds the candidate spec to cfg->cands: "NAME=URL", or a bare URL named
 * "candidate" (a URL is bare when no '=' comes before its "://"). Refuses,
 * with the reason in err, a name that is empty, too long or not a token of
 * [A-Za-z0-9_.-], a name already taken, more than MIFFY_MAX_CANDIDATES and
 * a URL replay_check_url() refuses. Returns 0 or -1. config_free() frees. */
int config_add_candidate(struct config *cfg, const char *spec, char *err, size_t errlen);

/* The name of candidate k: cfg->cands[k].name, or "candidate" past the
 * list (a struct filled by hand, as the unit tests do). */
const char *config_candidate_name(const struct config *cfg, unsigned k);

/* Splits "host:port" into a sockaddr-ready host and port. Returns 0 or -1. */
int config_split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

#endif
