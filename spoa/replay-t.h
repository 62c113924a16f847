/* Types shared by the replay, its two transports and the modules that read
 * a replay's outcome (exchange, stats, publish). Types and constants only. */
#ifndef MIFFY_REPLAY_T_H
#define MIFFY_REPLAY_T_H

enum replay_role { ROLE_CANDIDATE = 0, ROLE_SECONDARY, ROLE_COUNT };

/* Why a replay has no response. The names (replay_error_name()) appear in
 * Kafka messages, metrics labels and logs: they never change. */
enum replay_error {
	REPLAY_OK = 0,
	REPLAY_TIMEOUT,              /* "timeout": connect or total timeout */
	REPLAY_CONNECT,              /* "connect": refused, unreachable */
	REPLAY_DNS,                  /* "dns": the name did not resolve */
	REPLAY_RESET,                /* "reset": the connection broke, no complete answer */
	REPLAY_MALFORMED,            /* "malformed": not a valid HTTP/1.x response */
	REPLAY_TLS,                  /* "tls": handshake or certificate */
	REPLAY_OTHER,                /* "other": out of memory, anything else */
	REPLAY_ERROR_COUNT
};

/* Limits of a response, the same for both transports. */
/* A response with more header lines than this is malformed (http_headers_add
 * has its own, higher, hard cap). */
#define REPLAY_MAX_HEADERS 1000
/* Once max_body is kept, the rest of a body is read and thrown away, so the
 * connection stays reusable, up to this many bytes; then the transfer ends
 * there (the connection closes) so a huge body cannot eat bandwidth until
 * the timeout. */
#define REPLAY_DRAIN_MAX (1024 * 1024)

#endif
