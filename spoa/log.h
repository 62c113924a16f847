/* Logging: levels, optional JSON lines, rate limiting under floods. */
#ifndef MIFFY_LOG_H
#define MIFFY_LOG_H

#include "config-t.h"

/* Sets the threshold, format and destination (NULL: stderr). Returns 0, or
 * -1 with a message in err when the file cannot be opened. */
int log_setup(enum log_level level, bool json, const char *path, char *err, size_t errlen);

/* Reopens the log file (SIGHUP). No-op on stderr. */
void log_reopen(void);

/* True when lines of level are written (the threshold of log_setup()). */
bool log_enabled(enum log_level level);

/* Writes one line. id is the HAProxy unique-id the line is about, or NULL.
 * Warn and error lines are rate limited; suppressed lines are counted and
 * reported once the flood ends. Never blocks: what a slow reader (a stalled
 * stderr pipe) cannot take at once is held in a bounded buffer, and a line
 * that does not fit is dropped and counted (log_dropped_total). */
void log_msg(enum log_level level, const char *id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sends the held bytes the reader now takes, then writes the "N lines
 * suppressed" note, if lines were suppressed since the last one. Called
 * about once a second (and at exit) so the note comes even when the flood
 * stops. */
void log_flush(void);

/* At exit, once the loop is gone: log_flush(), then waits up to seconds for
 * the reader to take the lines still held, so the last line is not left cut. */
void log_finish(double seconds);

/* t, seconds since the epoch, as UTC RFC 3339 with milliseconds
 * ("2026-12-02T02:07:06.562Z") into buf (at least LOG_STAMP_LEN bytes): the
 * one time format of log lines, messages, samples and /stats. */
#define LOG_STAMP_LEN 32
void log_stamp(double t, char *buf, size_t len);

/* Warn and error lines dropped by the rate limit since start. */
unsigned long long log_suppressed_total(void);

/* Lines dropped since start because the log's reader did not keep up. */
unsigned long long log_dropped_total(void);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LEVEL_DEBUG)) log_msg(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__); } while (0)

#endif
