#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

/* Warn and error lines beyond this many per second are counted, not written:
 * a flood of bad peers must not turn the log into the bottleneck. */
#define LOG_BURST_PER_SEC 50

/* The longest line written whole. */
#define LOG_LINE_MAX (16 << 20)

static struct {
	enum log_level level;
	bool json;
	char *path;
	FILE *out;
	time_t window;
	unsigned in_window;
	unsigned long suppressed;
	unsigned long long suppressed_total;
} lg = { .level = LOG_LEVEL_INFO };

static const char *const level_names[LOG_LEVEL_COUNT] = { "error", "warn", "info", "debug" };

static FILE *log_out(void)
{
	return lg.out ? lg.out : stderr;
}

int log_setup(enum log_level level, bool json, const char *path)
{
	lg.level = level;
	lg.json = json;
	free(lg.path);
	lg.path = path ? strdup(path) : NULL;
	if (path && !lg.path)
		return -1;
	if (lg.out)
		fclose(lg.out);
	lg.out = NULL;
	if (path) {
		lg.out = fopen(path, "a");
		if (!lg.out)
			return -1;
		setvbuf(lg.out, NULL, _IOLBF, 0);
	}
	return 0;
}

void log_reopen(void)
{
	FILE *f;

	if (!lg.path)
		return;
	f = fopen(lg.path, "a");
	if (!f) {
		log_msg(LOG_LEVEL_ERROR, NULL, "cannot reopen log file %s: %s", lg.path, strerror(errno));
		return;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	fclose(lg.out);
	lg.out = f;
}

bool log_enabled(enum log_level level)
{
	return level <= lg.level;
}

static void write_line(enum log_level level, const char *id, const char *text)
{
	FILE *out = log_out();
	struct timespec ts;
	struct tm tm;
	char stamp[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	if (lg.json) {
		cJSON *o = cJSON_CreateObject();
		char t[64], *s;

		snprintf(t, sizeof(t), "%s.%03dZ", stamp, (int)(ts.tv_nsec / 1000000));
		cJSON_AddStringToObject(o, "time", t);
		cJSON_AddStringToObject(o, "level", level_names[level]);
		if (id)
			cJSON_AddStringToObject(o, "id", id);
		cJSON_AddStringToObject(o, "msg", text);
		s = cJSON_PrintUnformatted(o);
		if (s)
			fprintf(out, "%s\n", s);
		free(s);
		cJSON_Delete(o);
	} else if (id) {
		fprintf(out, "%s.%03dZ miffy %s: [id=%s] %s\n", stamp, (int)(ts.tv_nsec / 1000000),
			level_names[level], id, text);
	} else {
		fprintf(out, "%s.%03dZ miffy %s: %s\n", stamp, (int)(ts.tv_nsec / 1000000),
			level_names[level], text);
	}
	fflush(out);
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
	report_suppressed();
}

unsigned long long log_suppressed_total(void)
{
	return lg.suppressed_total;
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
