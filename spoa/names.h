/* The names of the exchange's and the replay's enums (exchange-t.h,
 * replay-t.h), as /stats, /metrics, logs and Kafka messages print them: one
 * table each, in a leaf module, so that the modules reporting an exchange
 * (stats, publish, samples) need nothing of the exchange table or the
 * replay. The names never change: they are part of the contracts. */
#ifndef MIFFY_NAMES_H
#define MIFFY_NAMES_H

#include "exchange-t.h"
#include "replay-t.h"

/* "equal", "different", "noise", "candidate_error", "skipped", "expired",
 * "dropped". o must be below OUTCOME_COUNT. Static storage, as for all. */
const char *outcome_name(enum outcome o);

/* "none", "method", "request_truncated", "overload", "shutdown",
 * "unreplayable". r must be below SKIP_REASON_COUNT. */
const char *skip_reason_name(enum skip_reason r);

/* "missing_id", "duplicate_id", "orphan_response", "bad_args",
 * "unknown_message". a must be below ANOMALY_COUNT. */
const char *anomaly_name(enum anomaly a);

/* "candidate", "secondary". r must be below ROLE_COUNT. */
const char *role_name(enum replay_role r);

/* "timeout", "connect", "dns", "reset", "malformed", "tls", "other"; "ok"
 * for REPLAY_OK and "other" for a value out of range. */
const char *replay_error_name(enum replay_error e);

#endif
