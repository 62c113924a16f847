#include "names.h"

static const char *const outcome_names[OUTCOME_COUNT] = {
	"equal", "different", "noise", "candidate_error", "skipped", "expired", "dropped",
};
static const char *const skip_names[SKIP_REASON_COUNT] = {
	"none", "method", "request_truncated", "overload", "shutdown", "unreplayable",
	"candidate_cap",
};
static const char *const anomaly_names[ANOMALY_COUNT] = {
	"missing_id", "duplicate_id", "orphan_response", "bad_args", "unknown_message",
};
static const char *const role_names[ROLE_COUNT] = { "candidate", "secondary" };

const char *outcome_name(enum outcome o) { return outcome_names[o]; }
const char *skip_reason_name(enum skip_reason r) { return skip_names[r]; }
const char *anomaly_name(enum anomaly a) { return anomaly_names[a]; }
const char *role_name(enum replay_role r) { return role_names[r]; }

static const char *const replay_error_names[REPLAY_ERROR_COUNT] = {
	[REPLAY_OK] = "ok",
	[REPLAY_TIMEOUT] = "timeout",
	[REPLAY_CONNECT] = "connect",
	[REPLAY_DNS] = "dns",
	[REPLAY_RESET] = "reset",
	[REPLAY_MALFORMED] = "malformed",
	[REPLAY_TLS] = "tls",
	[REPLAY_OTHER] = "other",
};

const char *replay_error_name(enum replay_error e)
{
	return (unsigned)e < REPLAY_ERROR_COUNT ? replay_error_names[e] : "other";
}
