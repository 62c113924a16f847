#include "replay_error.h"

static const char *const error_names[REPLAY_ERROR_COUNT] = {
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
	return (unsigned)e < REPLAY_ERROR_COUNT ? error_names[e] : "other";
}
