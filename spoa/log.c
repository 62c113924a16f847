#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* Warn and error lines beyond this many per second are counted, not written:
 * a flood of bad peers must not turn the log into the bottleneck. */
#define LOG_BURST_PER_SEC 50

/* The longest line written whole. */
#define LOG_LINE_MAX (16 << 20)

/* Bytes held for a log reader that does not keep up (a stalled stderr
 * pipe); a line that does not fit is dropped and counted. */
#define LOG_PENDING_MAX (256 << 10)

static struct {
	enum log_level level;
	bool json;
	char *path;
	int fd;                      /* the log file, or -1: stderr */
	char *pending;               /* bytes the reader has not taken yet */
	size_t pending_len;
	time_t window;
	unsigned in_window;
	unsigned long suppressed;
	unsigned long long suppressed_total;
	unsigned long long dropped_total;
} lg = { .level = LOG_LEVEL_INFO, .fd = -1 };

static const char *const level_names[LOG_LEVEL_COUNT] = { "error", "warn", "info", "debug" };

static int log_fd(void)
{
	return lg.fd >= 0 ? lg.fd : STDERR_FILENO;
}

static int open_log(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
}

int log_setup(enum log_level level, bool json, const char *path, char *err, size_t errlen)
{
	lg.level = level;
	lg.json = json;
	free(lg.path);
	lg.path = path ? strdup(path) : NULL;
	if (path && !lg.path) {
		snprintf(err, errlen, "log file %s: out of memory", path);
		return -1;
	}
	if (lg.fd >= 0)
		close(lg.fd);
	lg.fd = -1;
	if (path) {
		lg.fd = open_log(path);
		if (lg.fd < 0) {
			snprintf(err, errlen, "cannot open log file %s: %s", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

void log_reopen(void)
{
	int fd;

	if (!lg.path)
		return;
	fd = open_log(lg.path);
	if (fd < 0) {
		log_msg(LOG_LEVEL_ERROR, NULL, "cannot reopen log file %s: %s", lg.path, strerror(errno));
		return;
	}
	close(lg.fd);
	lg.fd = fd;
}

/* Writes what the reader takes now without waiting: a pipe or a terminal
 * that reports room (POLLOUT) takes PIPE_BUF bytes without blocking, so the
 * bytes go in chunks of that size while poll() says so. Returns the bytes
 * written; the rest is for later. The descriptor is not made non-blocking:
 * stderr's open file is shared with the processes that started us. */
static size_t write_ready(const char *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		struct pollfd pfd = { .fd = log_fd(), .events = POLLOUT };
		size_t chunk = n - done < PIPE_BUF ? n - done : PIPE_BUF;
		ssize_t w;

		if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT))
			break;
		w = write(pfd.fd, p + done, chunk);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		done += (size_t)w;
	}
	return done;
}

/* Sends the held bytes first, keeping their order. Returns true when none
 * is left. */
static bool flush_pending(void)
{
	size_t w;

	if (!lg.pending_len)
		return true;
	w = write_ready(lg.pending, lg.pending_len);
	memmove(lg.pending, lg.pending + w, lg.pending_len - w);
	lg.pending_len -= w;
	return lg.pending_len == 0;
}

/* One whole line (with its newline) to the log, never blocking the loop:
 * what the reader cannot take now is held, up to LOG_PENDING_MAX; a line
 * that fits neither is dropped and counted (log_dropped_total). */
static void emit(const char *line, size_t n)
{
	size_t w = 0;

	if (flush_pending())
		w = write_ready(line, n);
	if (w == n)
		return;
	if (!lg.pending && !(lg.pending = malloc(LOG_PENDING_MAX))) {
		lg.dropped_total++;
		return;
	}
	if (n - w > LOG_PENDING_MAX - lg.pending_len) {
		/* A line begun must end, or the next one would be glued to it. */
		if (w > 0 && lg.pending_len < LOG_PENDING_MAX)
			lg.pending[lg.pending_len++] = '\n';
		lg.dropped_total++;
		return;
	}
	memcpy(lg.pending + lg.pending_len, line + w, n - w);
	lg.pending_len += n - w;
}

bool log_enabled(enum log_level level)
{
	return level <= lg.level;
}

void log_stamp(double t, char *buf, size_t len)
{
	time_t secs = (time_t)t;
	struct tm tm;
	size_t n;

	gmtime_r(&secs, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03dZ", (int)((t - (double)secs) * 1000.0) % 1000);
}

static void write_line(enum log_level level, const char *id, const char *text)
{
	struct timespec ts;
	char t[LOG_STAMP_LEN];
	char head[1200], *line = head, *s = NULL;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	log_stamp((double)ts.tv_sec + (double)ts.tv_nsec / 1e9, t, sizeof(t));
	if (lg.json) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "time", t);
		cJSON_AddStringToObject(o, "level", level_names[level]);
		if (id)
			cJSON_AddStringToObject(o, "id", id);
		cJSON_AddStringToObject(o, "msg", text);
		s = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		if (!s) {
			lg.dropped_total++;
			return;
		}
		n = snprintf(head, sizeof(head), "%s\n", s);
	} else if (id) {
		n = snprintf(head, sizeof(head), "%s miffy %s: [id=%s] %s\n", t, level_names[level], id, text);
	} else {
		n = snprintf(head, sizeof(head), "%s miffy %s: %s\n", t, level_names[level], text);
	}
	/* Long lines (the SIGUSR2 stats document) are formatted again into a
	 * buffer of their size. */
	if (n >= (int)sizeof(head)) {
		line = malloc((size_t)n + 1);
		if (!line) {
			lg.dropped_total++;
			free(s);
			return;
		}
		if (s)
			snprintf(line, (size_t)n + 1, "%s\n", s);
		else if (id)
			snprintf(line, (size_t)n + 1, "%s miffy %s: [id=%s] %s\n", t, level_names[level], id, text);
		else
			snprintf(line, (size_t)n + 1, "%s miffy %s: %s\n", t, level_names[level], text);
	}
	if (n > 0)
		emit(line, (size_t)n);
	if (line != head)
		free(line);
	free(s);
}

/* Says how many lines a flood cost so far. */
static void report_suppressed(void)
{
	char note[96];

	if (!lg.suppressed)
		return;
	snprintf(note, sizeof(note), "%lu warning/error lines suppressed (rate limit %d/s)",
		 lg.suppressed, LOG_BURST_PER_SEC);
	write_line(LOG_LEVEL_WARN, NULL, note);
	lg.suppressed = 0;
}

void log_flush(void)
{
	flush_pending();
	report_suppressed();
}

void log_finish(double seconds)
{
	struct timespec t0, now;

	report_suppressed();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!flush_pending()) {
		struct pollfd pfd = { .fd = log_fd(), .events = POLLOUT };
		double left;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left = seconds - (double)(now.tv_sec - t0.tv_sec) - (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
		if (left <= 0 || (poll(&pfd, 1, (int)(left * 1000) + 1) == -1 && errno != EINTR))
			break;
	}
}

unsigned long long log_suppressed_total(void)
{
	return lg.suppressed_total;
}

unsigned long long log_dropped_total(void)
{
	return lg.dropped_total;
}

void log_msg(enum log_level level, const char *id, const char *fmt, ...)
{
	char text[1024], *big = NULL;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	if (level <= LOG_LEVEL_WARN) {
		time_t now = time(NULL);

		if (now != lg.window) {
			report_suppressed();
			lg.window = now;
			lg.in_window = 0;
		}
		if (++lg.in_window > LOG_BURST_PER_SEC) {
			lg.suppressed++;
			lg.suppressed_total++;
			return;
		}
	}
	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* Long lines (the SIGUSR2 stats document) get a buffer of their own,
	 * up to a hard maximum; beyond it they are cut. */
	if (n >= (int)sizeof(text) && n < LOG_LINE_MAX && (big = malloc((size_t)n + 1))) {
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	write_line(level, id, big ? big : text);
	free(big);
}
