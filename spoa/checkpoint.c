#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "publish.h"
#include "report.h"
#include "snapshot.h"
#include "stats.h"

/* How long a start may spend reading the stats topic for its own epochs. */
#define RESUME_TIMEOUT 5.0
#define KEY_MAX 512

struct checkpoint {
	struct ev_loop *loop;
	const struct config *cfg;
	struct publish *publish;
	struct snapshot base;           /* what earlier epochs counted (resumed) */
	int64_t epoch;
	uint64_t seq;
	char key[KEY_MAX];
	ev_timer timer;
	uint64_t failed;                /* snapshots not taken, encoded or written */
};

/* ---- resuming -------------------------------------------------------------- */

struct resume {
	const char *instance;
	struct snapshot_epochs latest;  /* of this instance */
};

static void on_scanned(const char *msg, size_t len, void *ctx)
{
	struct resume *rs = ctx;
	struct snapshot s;
	char err[256];

	if (snapshot_decode(msg, len, &s, err, sizeof(err)) != SNAPSHOT_OK)
		return;
	if (strcmp(s.instance, rs->instance) != 0) {
		snapshot_clear(&s);
		return;
	}
	snapshot_epochs_put(&rs->latest, &s);
}

/* base = the sum of the latest snapshot of each of this instance's epochs
 * on the stats topic; *last_epoch the latest of them. */
static void resume_from_kafka(struct checkpoint *c, int64_t *last_epoch)
{
	struct resume rs = { .instance = c->cfg->instance };
	char err[256];
	int rc = report_scan(c->cfg, c->cfg->stats_topic, RESUME_TIMEOUT, on_scanned, &rs, err, sizeof(err));

	size_t n = rs.latest.n;

	for (size_t i = 0; i < n; i++) {
		snapshot_merge(&c->base, &rs.latest.items[i]);
		if (rs.latest.items[i].epoch > *last_epoch)
			*last_epoch = rs.latest.items[i].epoch;
	}
	snapshot_epochs_clear(&rs.latest);
	if (rc < 0)
		log_warn("checkpoint: the counters of earlier runs could not all be read from %s (%s): /stats "
			 "resumes from what was read (%zu epochs); the fleet report is not affected",
			 c->cfg->stats_topic, err, n);
	else
		log_info("checkpoint: resumed the counters of %zu earlier epochs of %s from %s", n,
			 c->cfg->instance, c->cfg->stats_topic);
}

/* base = the state file's snapshot (cumulative: every earlier epoch). */
static void resume_from_file(struct checkpoint *c, int64_t *last_epoch)
{
	const char *path = c->cfg->state_file;
	FILE *f = fopen(path, "re");
	char err[256], *text = NULL;
	size_t len = 0;
	enum snapshot_kind k;

	if (!f) {
		if (errno == ENOENT)
			log_info("checkpoint: no %s yet: counting from zero", path);
		else
			log_warn("checkpoint: cannot read %s (%s): counting from zero", path, strerror(errno));
		return;
	}
	text = malloc(SNAPSHOT_MAX_BYTES + 1);
	if (text)
		len = fread(text, 1, SNAPSHOT_MAX_BYTES + 1, f);
	fclose(f);
	if (!text)
		return;
	while (len && (text[len - 1] == '\n'))
		len--;
	k = snapshot_decode(text, len, &c->base, err, sizeof(err));
	free(text);
	if (k != SNAPSHOT_OK) {
		log_warn("checkpoint: %s is not a snapshot (%s): counting from zero", path, err);
		return;
	}
	*last_epoch = c->base.epoch;
	log_info("checkpoint: resumed the counters of %s from %s", c->base.instance, path);
}

/* ---- taking ---------------------------------------------------------------- */

static int write_state(struct checkpoint *c, const char *text, size_t len)
{
	const char *path = c->cfg->state_file;
	char tmp[4096];
	int fd, saved;
	ssize_t n = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		goto fail;
	for (size_t off = 0; off < len; off += (size_t)n) {
		n = write(fd, text + off, len - off);
		if (n <= 0)
			break;
	}
	if (n <= 0 || write(fd, "\n", 1) != 1) {
		saved = errno;
		close(fd);
		errno = saved;
		goto fail;
	}
	if (close(fd) != 0 || rename(tmp, path) != 0)
		goto fail;
	return 0;
fail:
	log_warn("checkpoint: cannot write %s: %s", path, strerror(errno));
	return -1;
}

static void take(struct checkpoint *c, bool final)
{
	struct snapshot s;
	char err[256], *text;
	size_t len;

	memset(&s, 0, sizeof(s));
	if (stats_export(&s) < 0)
		goto fail;
	s.instance = strdup(c->cfg->instance);
	if (!s.instance)
		goto fail;
	s.epoch = c->epoch;
	s.seq = ++c->seq;
	s.time = ev_time();
	s.final = final;
	if (c->cfg->state_file) {
		text = snapshot_encode(&s, &len, err, sizeof(err));
		if (!text || write_state(c, text, len) < 0)
			c->failed++;
		if (!text)
			log_warn("checkpoint: snapshot not written: %s", err);
		free(text);
	}
	if (publish_to_kafka(c->publish)) {
		/* The stats topic holds what this epoch counted itself: the
		 * report adds the earlier epochs' own last snapshots. */
		snapshot_subtract(&s, &c->base);
		text = snapshot_encode(&s, &len, err, sizeof(err));
		if (!text) {
			log_warn("checkpoint: snapshot not published: %s", err);
			c->failed++;
		} else if (publish_snapshot(c->publish, c->key, text, len) < 0) {
			c->failed++;
		}
		free(text);
	}
	snapshot_clear(&s);
	return;
fail:
	snapshot_clear(&s);
	c->failed++;
	log_warn("checkpoint: out of memory taking a snapshot");
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	take(w->data, false);
}

struct checkpoint *checkpoint_new(struct ev_loop *loop, const struct config *cfg, struct publish *p, char *err,
				  size_t errlen)
{
	struct checkpoint *c = calloc(1, sizeof(*c));
	int64_t last = 0;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->loop = loop;
	c->cfg = cfg;
	c->publish = p;
	if (cfg->state_file)
		resume_from_file(c, &last);
	else if (publish_to_kafka(p))
		resume_from_kafka(c, &last);
	stats_import(&c->base);
	/* A new epoch, after every earlier one even if the clock went back. */
	c->epoch = (int64_t)(ev_time() * 1000);
	if (c->epoch <= last)
		c->epoch = last + 1;
	if (snapshot_key(cfg->instance, c->epoch, c->key, sizeof(c->key)) < 0) {
		snprintf(err, errlen, "instance '%s' is too long", cfg->instance);
		checkpoint_free(c);
		return NULL;
	}
	log_info("checkpoint: instance %s, epoch %" PRId64 ", a snapshot every %.3gs%s%s%s%s", cfg->instance,
		 c->epoch, cfg->stats_interval, publish_to_kafka(p) ? " to " : "",
		 publish_to_kafka(p) ? cfg->stats_topic : "", cfg->state_file ? " and to " : "",
		 cfg->state_file ? cfg->state_file : "");
	/* The first after one interval, like every other: a snapshot takes a
	 * place in the producer's queue, shared with the differences. */
	ev_timer_init(&c->timer, on_timer, cfg->stats_interval, cfg->stats_interval);
	c->timer.data = c;
	ev_timer_start(loop, &c->timer);
	return c;
}

void checkpoint_final(struct checkpoint *c)
{
	if (!c)
		return;
	ev_timer_stop(c->loop, &c->timer);
	take(c, true);
}

void checkpoint_free(struct checkpoint *c)
{
	if (!c)
		return;
	ev_timer_stop(c->loop, &c->timer);
	snapshot_clear(&c->base);
	free(c);
}
