/* The names of enum replay_error (replay-t.h), for the modules that report
 * a replay's outcome (exchange's log, stats' labels, publish's message)
 * without depending on the replay itself. */
#ifndef MIFFY_REPLAY_ERROR_H
#define MIFFY_REPLAY_ERROR_H

#include "replay-t.h"

/* The stable name of e ("timeout", "connect", ...; "ok" for REPLAY_OK, and
 * "other" for a value out of range), as in Kafka messages, metrics labels
 * and logs. Static storage. */
const char *replay_error_name(enum replay_error e);

#endif
