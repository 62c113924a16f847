#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <unistd.h>

#include <confuse.h>

#include "replay.h"

#ifndef MIFFY_VERSION
#define MIFFY_VERSION "0.0.0"
#endif

static const char usage[] =
"usage: miffy [-f FILE] [options]\n"
"       miffy report --kafka BROKERS [--topic NAME] [--admin ADDR:PORT] [options]\n"
"\n"
"miffy is the shadow-testing agent for HAProxy: HAProxy sends it each selected\n"
"request and the reference's response over SPOE; miffy replays the request to\n"
"the candidate (and the secondary), compares the responses and publishes the\n"
"differences to Kafka, a JSON lines file or stdout.\n"
"\n"
"options (each overrides the file):\n"
"  -f, --config FILE        libconfuse configuration (see conf/miffy.conf)\n"
"      --listen ADDR:PORT   SPOP listen address (default 127.0.0.1:12345)\n"
"      --candidate [NAME=]URL  candidate base URL, http or https (required);\n"
"                           repeat it, named, to compare several candidates\n"
"      --secondary URL      second reference instance, for noise detection\n"
"      --kafka BROKERS      bootstrap servers, host:port[,host:port]\n"
"      --topic NAME         Kafka topic (default miffy)\n"
"      --sink SINK          kafka | stdout | file:PATH (default kafka)\n"
"      --admin ADDR:PORT    admin HTTP server, or off (default 127.0.0.1:9000)\n"
"  -o, --set KEY=VALUE      set any configuration key, in the file's syntax,\n"
"                           e.g. -o 'methods={GET,POST}' -o timeout=2.5\n"
"      --log-level LEVEL    error | warn | info | debug (default info)\n"
"      --log-json           log JSON lines\n"
"      --check              validate the configuration and exit\n"
"      --version            print the version and exit\n"
"  -h, --help               this text\n"
"\n"
"configuration keys (file or --set; defaults in brackets):\n"
"  agent:    listen [127.0.0.1:12345], max_frame_size [16380],\n"
"            max_connections [1024], hello_timeout [5], idle_timeout [60],\n"
"            drain_timeout [10]\n"
"  exchange: exchange_ttl [30], max_exchanges [100000], max_buffered [268435456]\n"
"  replay:   candidate, candidates [{}] (\"NAME=URL\" entries), secondary,\n"
"            preserve_host [false],\n"
"            marker_header [X-Miffy-Role], methods [{GET,HEAD,OPTIONS}],\n"
"            connect_timeout [1], timeout [5],\n"
"            max_concurrent [max_buffered / 16384, the memory of one replay],\n"
"            max_host_connections [max_concurrent, within the descriptor limit],\n"
"            max_candidate_rps [0: no cap], max_body [1048576], ca_file, insecure [false],\n"
"            replay_engine [auto] (auto: built-in HTTP/1.1 client for http:// to an\n"
"            IP address or localhost, libcurl otherwise; curl: libcurl always)\n"
"  compare:  ignore_headers [date server age content-length transfer-encoding\n"
"            connection keep-alive via etag last-modified expires set-cookie\n"
"            x-request-id], ignore_paths [{}], unordered_paths [{}],\n"
"            array_keys [{}] (\"POINTER=MEMBER\", \"POINTER=MEMBER!ordered\"),\n"
"            ignore_order [false], abs_tolerance [0], rel_tolerance [0],\n"
"            max_depth [128], max_decompressed [8388608], endpoints [{}]\n"
"  noise:    noise_relative [0.2], noise_absolute [0.0003]\n"
"  latency:  latency_tolerance [0.25], latency_floor_ms [5], latency_min_count [100]\n"
"  publish:  sink [kafka], kafka_brokers [127.0.0.1:9092], topic [miffy],\n"
"            kafka_properties [{}] (\"key=value\" librdkafka properties),\n"
"            publish [differences] (differences | noise | all), sample_rate [1],\n"
"            max_message [1048576], redact_headers [authorization cookie\n"
"            set-cookie proxy-authorization], flush_timeout [5],\n"
"            fingerprints_max [1000], fingerprint_limit [0] (0: no limit),\n"
"            fingerprint_interval [60]\n"
"  admin:    admin [127.0.0.1:9000] or off; the dashboard's samples:\n"
"            samples_per_endpoint [20] (0: none), samples_per_field [5],\n"
"            samples_endpoint_bytes [2097152], samples_max [1000],\n"
"            samples_max_bytes [33554432]\n"
"  fleet:    stats_interval [10] (seconds between counter snapshots),\n"
"            stats_topic [<topic>-stats], instance [<hostname>:<listen port>],\n"
"            state_file [none] (keeps the counters across restarts without Kafka)\n"
"  logging:  log_level [info], log_json [false], log_file [stderr]\n"
"\n"
"signals: SIGTERM/SIGINT stop accepting, drain in-flight work (drain_timeout),\n"
"flush the sink (flush_timeout) and exit 0; SIGHUP reopens the log and sink\n"
"files; SIGUSR2 writes the /stats JSON to the log.\n"
"\n"
"admin endpoints: / (the dashboard), /health, /metrics (Prometheus), /stats\n"
"(JSON), /samples (recent differing exchanges; docs/dashboard-api.md).\n"
"\n"
"miffy report: the fleet view (docs/fleet.md). Reads every agent's counter\n"
"snapshots (stats_topic) and differences (topic) from Kafka and serves, on\n"
"--admin, the same /stats, /metrics and dashboard as an agent, fleet-wide.\n"
"exit status: 0 ok, 1 runtime failure, 2 bad flags or configuration.\n";

/* libconfuse wants writable defaults for lists. */
static char default_methods[] = "{GET,HEAD,OPTIONS}";
static char default_ignore_headers[] = "{date,server,age,content-length,transfer-encoding,"
	"connection,keep-alive,via,etag,last-modified,expires,set-cookie,x-request-id}";
static char default_redact[] = "{authorization,cookie,set-cookie,proxy-authorization}";
static char empty_list[] = "{}";

static int validate_positive(cfg_t *cfg, cfg_opt_t *opt)
{
	if (opt->type == CFGT_INT && cfg_opt_getnint(opt, 0) <= 0) {
		cfg_error(cfg, "%s must be a positive integer", opt->name);
		return -1;
	}
	if (opt->type == CFGT_FLOAT && !(cfg_opt_getnfloat(opt, 0) > 0)) {
		cfg_error(cfg, "%s must be a positive number", opt->name);
		return -1;
	}
	return 0;
}

/* Keys held in an unsigned: a bigger value would wrap at 2^32. */
static int validate_count(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, 0);

	if (v <= 0 || (unsigned long)v > UINT_MAX) {
		cfg_error(cfg, "%s must be an integer between 1 and %u", opt->name, UINT_MAX);
		return -1;
	}
	return 0;
}

/* The same, with 0 allowed (meaning "none"). */
static int validate_count_or_zero(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, 0);

	if (v < 0 || (unsigned long)v > UINT_MAX) {
		cfg_error(cfg, "%s must be an integer between 0 and %u", opt->name, UINT_MAX);
		return -1;
	}
	return 0;
}

static int validate_non_negative(cfg_t *cfg, cfg_opt_t *opt)
{
	double v = opt->type == CFGT_INT ? (double)cfg_opt_getnint(opt, 0) : cfg_opt_getnfloat(opt, 0);

	if (!(v >= 0) || isinf(v)) {
		cfg_error(cfg, "%s must be zero or positive", opt->name);
		return -1;
	}
	return 0;
}

static int validate_fraction(cfg_t *cfg, cfg_opt_t *opt)
{
	double v = cfg_opt_getnfloat(opt, 0);

	if (!(v >= 0 && v <= 1)) {
		cfg_error(cfg, "%s must be between 0 and 1", opt->name);
		return -1;
	}
	return 0;
}

static int validate_frame_size(cfg_t *cfg, cfg_opt_t *opt)
{
	long v = cfg_opt_getnint(opt, 0);

	if (v < 256 || v > 16 * 1024 * 1024) {
		cfg_error(cfg, "max_frame_size must be between 256 and 16777216");
		return -1;
	}
	return 0;
}

static int parse_level(const char *s)
{
	static const char *const names[LOG_LEVEL_COUNT] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < LOG_LEVEL_COUNT; i++)
		if (strcasecmp(s, names[i]) == 0)
			return i;
	return -1;
}

static int parse_policy(const char *s)
{
	static const char *const names[PUBLISH_POLICY_COUNT] = { "differences", "noise", "all" };

	for (int i = 0; i < PUBLISH_POLICY_COUNT; i++)
		if (strcasecmp(s, names[i]) == 0)
			return i;
	return -1;
}

static int validate_level(cfg_t *cfg, cfg_opt_t *opt)
{
	if (parse_level(cfg_opt_getnstr(opt, 0)) < 0) {
		cfg_error(cfg, "log_level must be error, warn, info or debug");
		return -1;
	}
	return 0;
}

static int validate_policy(cfg_t *cfg, cfg_opt_t *opt)
{
	if (parse_policy(cfg_opt_getnstr(opt, 0)) < 0) {
		cfg_error(cfg, "publish must be differences, noise or all");
		return -1;
	}
	return 0;
}

static int validate_engine(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);

	if (!s || (strcmp(s, "auto") != 0 && strcmp(s, "curl") != 0)) {
		cfg_error(cfg, "replay_engine must be auto or curl");
		return -1;
	}
	return 0;
}

static int check_sink(const char *s, char *err, size_t errlen)
{
	if (strcmp(s, "kafka") == 0 || strcmp(s, "stdout") == 0)
		return 0;
	if (strncmp(s, "file:", 5) == 0 && s[5])
		return 0;
	snprintf(err, errlen, "sink must be kafka, stdout or file:PATH, not '%s'", s);
	return -1;
}

static int check_addr(const char *what, const char *s, char *err, size_t errlen)
{
	char host[256], port[16];

	if (config_split_addr(s, host, sizeof(host), port, sizeof(port)) == 0)
		return 0;
	snprintf(err, errlen, "%s must be ADDR:PORT, not '%s'", what, s);
	return -1;
}

static int validate_sink(cfg_t *cfg, cfg_opt_t *opt)
{
	char err[256];

	if (check_sink(cfg_opt_getnstr(opt, 0), err, sizeof(err)) < 0) {
		cfg_error(cfg, "%s", err);
		return -1;
	}
	return 0;
}

static int validate_addr(cfg_t *cfg, cfg_opt_t *opt)
{
	const char *s = cfg_opt_getnstr(opt, 0);
	char err[300];

	if (strcmp(opt->name, "admin") == 0 && strcmp(s, "off") == 0)
		return 0;
	if (check_addr(opt->name, s, err, sizeof(err)) < 0) {
		cfg_error(cfg, "%s", err);
		return -1;
	}
	return 0;
}

static int validate_kv_list(cfg_t *cfg, cfg_opt_t *opt)
{
	for (unsigned i = 0; i < cfg_opt_size(opt); i++) {
		const char *s = cfg_opt_getnstr(opt, i);
		const char *eq = strchr(s, '=');

		if (!eq || eq == s) {
			cfg_error(cfg, "%s entries must be \"key=value\", not '%s'", opt->name, s);
			return -1;
		}
	}
	return 0;
}

static void report_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	fprintf(stderr, "miffy: ");
	/* libconfuse parses a flag's value (-o KEY=VALUE) as a file named
	 * "[buf]": such errors name no file. */
	if (cfg && cfg->filename && strcmp(cfg->filename, "[buf]") == 0)
		;
	else if (cfg && cfg->filename && cfg->line)
		fprintf(stderr, "%s:%d: ", cfg->filename, cfg->line);
	else if (cfg && cfg->filename)
		fprintf(stderr, "%s: ", cfg->filename);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* How copy_config reads a key into its member of struct config (and
 * config_free frees it). */
enum field_kind {
	FIELD_STR = 0, FIELD_UINT, FIELD_SIZE, FIELD_DOUBLE, FIELD_BOOL, FIELD_LIST,
	FIELD_POLICY, FIELD_LEVEL, FIELD_KIND_COUNT
};

struct key {
	cfg_opt_t opt;               /* libconfuse's: name, type, default */
	enum field_kind kind;
	size_t offset;               /* of the member named as the key */
	cfg_validate_callback_t validate; /* or NULL */
};

/* The libconfuse option each kind is read from. */
#define KEY_OPT_STR CFG_STR
#define KEY_OPT_POLICY CFG_STR
#define KEY_OPT_LEVEL CFG_STR
#define KEY_OPT_UINT CFG_INT
#define KEY_OPT_SIZE CFG_INT
#define KEY_OPT_DOUBLE CFG_FLOAT
#define KEY_OPT_BOOL CFG_BOOL
#define KEY_OPT_LIST CFG_STR_LIST
#define KEY(kind, name, def, validate) \
	{ KEY_OPT_##kind(#name, def, CFGF_NONE), FIELD_##kind, offsetof(struct config, name), validate }

/* Every configuration key, by kind; --help lists them by module. The
 * dashboard's samples (samples.h) take 0 to turn them or a bound off. */
static const struct key keys[] = {
	/* strings (NULL: unset); publish and log_level are parsed to their enums */
	KEY(STR, listen, "127.0.0.1:12345", validate_addr),
	KEY(STR, candidate, NULL, NULL),
	KEY(STR, secondary, NULL, NULL),
	KEY(STR, marker_header, "X-Miffy-Role", NULL),
	KEY(STR, ca_file, NULL, NULL),
	KEY(STR, replay_engine, "auto", validate_engine),
	KEY(STR, sink, "kafka", validate_sink),
	KEY(STR, kafka_brokers, "127.0.0.1:9092", NULL),
	KEY(STR, topic, "miffy", NULL),
	KEY(STR, admin, "127.0.0.1:9000", validate_addr),
	KEY(STR, log_file, NULL, NULL),
	KEY(STR, stats_topic, NULL, NULL),
	KEY(STR, instance, NULL, NULL),
	KEY(STR, state_file, NULL, NULL),
	KEY(POLICY, publish, "differences", validate_policy),
	KEY(LEVEL, log_level, "info", validate_level),
	/* lists */
	KEY(LIST, candidates, empty_list, NULL),
	KEY(LIST, methods, default_methods, NULL),
	KEY(LIST, ignore_headers, default_ignore_headers, NULL),
	KEY(LIST, ignore_paths, empty_list, NULL),
	KEY(LIST, unordered_paths, empty_list, NULL),
	KEY(LIST, array_keys, empty_list, NULL),
	KEY(LIST, endpoints, empty_list, NULL),
	KEY(LIST, kafka_properties, empty_list, validate_kv_list),
	KEY(LIST, redact_headers, default_redact, NULL),
	/* switches */
	KEY(BOOL, preserve_host, cfg_false, NULL),
	KEY(BOOL, insecure, cfg_false, NULL),
	KEY(BOOL, ignore_order, cfg_false, NULL),
	KEY(BOOL, log_json, cfg_false, NULL),
	/* counts */
	KEY(UINT, max_frame_size, 16380, validate_frame_size),
	KEY(UINT, max_connections, 1024, validate_count),
	KEY(UINT, max_exchanges, 100000, validate_count),
	/* 0, the default, is no user setting: admit_limits_derive() sizes them */
	KEY(UINT, max_concurrent, 0, validate_count),
	KEY(UINT, max_host_connections, 0, validate_count),
	KEY(UINT, max_candidate_rps, 0, validate_count_or_zero),
	KEY(UINT, max_depth, 128, validate_count),
	KEY(UINT, samples_per_endpoint, 20, validate_non_negative),
	KEY(UINT, samples_per_field, 5, validate_non_negative),
	KEY(UINT, samples_max, 1000, validate_non_negative),
	KEY(UINT, latency_min_count, 100, validate_count),
	KEY(UINT, fingerprints_max, 1000, validate_count),
	KEY(UINT, fingerprint_limit, 0, validate_non_negative),
	/* bytes */
	KEY(SIZE, max_buffered, 268435456, validate_positive),
	KEY(SIZE, max_body, 1048576, validate_positive),
	KEY(SIZE, max_decompressed, 8388608, validate_positive),
	KEY(SIZE, max_message, 1048576, validate_positive),
	KEY(SIZE, samples_endpoint_bytes, 2097152, validate_positive),
	KEY(SIZE, samples_max_bytes, 33554432, validate_positive),
	/* seconds and fractions */
	KEY(DOUBLE, hello_timeout, 5, validate_positive),
	KEY(DOUBLE, idle_timeout, 60, validate_positive),
	KEY(DOUBLE, drain_timeout, 10, validate_non_negative),
	KEY(DOUBLE, exchange_ttl, 30, validate_positive),
	KEY(DOUBLE, connect_timeout, 1, validate_positive),
	KEY(DOUBLE, timeout, 5, validate_positive),
	KEY(DOUBLE, abs_tolerance, 0, validate_non_negative),
	KEY(DOUBLE, rel_tolerance, 0, validate_non_negative),
	KEY(DOUBLE, noise_relative, 0.2, validate_fraction),
	KEY(DOUBLE, noise_absolute, 0.0003, validate_fraction),
	KEY(DOUBLE, latency_tolerance, 0.25, validate_non_negative),
	KEY(DOUBLE, latency_floor_ms, 5, validate_non_negative),
	KEY(DOUBLE, sample_rate, 1, validate_fraction),
	KEY(DOUBLE, flush_timeout, 5, validate_non_negative),
	KEY(DOUBLE, fingerprint_interval, 60, validate_positive),
	KEY(DOUBLE, stats_interval, 10, validate_positive),
};

#undef KEY

#define KEY_COUNT (sizeof(keys) / sizeof(keys[0]))


static void set_validators(cfg_t *c)
{
	for (size_t i = 0; i < KEY_COUNT; i++)
		if (keys[i].validate)
			cfg_set_validate_func(c, keys[i].opt.name, keys[i].validate);
}

static char *dup_opt(cfg_t *c, const char *name)
{
	const char *s = cfg_getstr(c, name);

	return s ? strdup(s) : NULL;
}

static int copy_list(cfg_t *c, const char *name, struct str_list *out)
{
	unsigned n = cfg_size(c, name);

	out->items = calloc(n ? n : 1, sizeof(char *));
	if (!out->items)
		return -1;
	for (unsigned i = 0; i < n; i++) {
		out->items[i] = strdup(cfg_getnstr(c, name, i));
		if (!out->items[i])
			return -1;
		out->count++;
	}
	return 0;
}

static void free_list(struct str_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

/* The same check as the start's (replay_new), so --check accepts exactly
 * what the agent starts with. */
static int check_url(const char *what, const char *url)
{
	char err[512];

	if (replay_check_url(what, url, err, sizeof(err)) < 0) {
		fprintf(stderr, "miffy: %s\n", err);
		return -1;
	}
	return 0;
}

/* stats_topic and instance when unset: "<topic>-stats" and
 * "<hostname>:<listen port>" (unique per host as the ports are). */
static int fleet_defaults(struct config *cfg)
{
	char host[256], lhost[256], port[16] = "0";
	size_t n;

	if (!cfg->stats_topic) {
		n = strlen(cfg->topic) + sizeof("-stats");
		cfg->stats_topic = malloc(n);
		if (!cfg->stats_topic)
			return -1;
		snprintf(cfg->stats_topic, n, "%s-stats", cfg->topic);
	}
	if (!cfg->instance) {
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		config_split_addr(cfg->listen, lhost, sizeof(lhost), port, sizeof(port));
		n = strlen(host) + strlen(port) + 2;
		cfg->instance = malloc(n);
		if (!cfg->instance)
			return -1;
		snprintf(cfg->instance, n, "%s:%s", host, port);
	}
	return 0;
}

static bool name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
	       ch == '-' || ch == '.';
}

int config_add_candidate(struct config *cfg, const char *spec, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '='), *scheme = strstr(spec, "://"), *url = spec;
	char name[MIFFY_CANDIDATE_NAME_MAX + 1] = MIFFY_CANDIDATE_DEFAULT, what[MIFFY_CANDIDATE_NAME_MAX + 32];
	struct candidate_target *t;

	if (eq && (!scheme || eq < scheme)) {
		size_t len = (size_t)(eq - spec);

		if (len == 0) {
			snprintf(err, errlen, "candidate \"%s\": no name before '=' (give NAME=URL)", spec);
			return -1;
		}
		if (len > MIFFY_CANDIDATE_NAME_MAX) {
			snprintf(err, errlen, "candidate name \"%.*s...\" is longer than %d bytes", 16, spec,
				 MIFFY_CANDIDATE_NAME_MAX);
			return -1;
		}
		for (size_t i = 0; i < len; i++) {
			if (!name_char(spec[i])) {
				snprintf(err, errlen, "candidate name \"%.*s\" may hold only letters, digits, '_', '-' "
					 "and '.'", (int)len, spec);
				return -1;
			}
		}
		memcpy(name, spec, len);
		name[len] = '\0';
		url = eq + 1;
	}
	for (unsigned i = 0; i < cfg->ncandidates; i++) {
		if (strcmp(cfg->cands[i].name, name) == 0) {
			snprintf(err, errlen, "two candidates named \"%s\"%s", name,
				 url == spec ? ": name each one (NAME=URL)" : "");
			return -1;
		}
	}
	if (cfg->ncandidates == MIFFY_MAX_CANDIDATES) {
		snprintf(err, errlen, "more than %d candidates", MIFFY_MAX_CANDIDATES);
		return -1;
	}
	/* a bare URL's errors read as they always did */
	snprintf(what, sizeof(what), url == spec ? "candidate" : "candidate \"%s\"", name);
	if (replay_check_url(what, url, err, errlen) < 0)
		return -1;
	t = &cfg->cands[cfg->ncandidates];
	t->name = strdup(name);
	t->url = strdup(url);
	if (!t->name || !t->url) {
		free(t->name);
		free(t->url);
		*t = (struct candidate_target){ 0 };
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cfg->ncandidates++;
	return 0;
}

const char *config_candidate_name(const struct config *cfg, unsigned k)
{
	return k < cfg->ncandidates ? cfg->cands[k].name : MIFFY_CANDIDATE_DEFAULT;
}

/* The candidates from the flags when any were given (they replace the
 * file's), else from the keys candidate then candidates. */
static int resolve_candidates(struct config *cfg, const char *const *flags, size_t nflags)
{
	char err[512];

	for (size_t i = 0; i < nflags; i++)
		if (config_add_candidate(cfg, flags[i], err, sizeof(err)) < 0)
			goto fail;
	if (nflags == 0 && cfg->candidate && config_add_candidate(cfg, cfg->candidate, err, sizeof(err)) < 0)
		goto fail;
	for (size_t i = 0; nflags == 0 && i < cfg->candidates.count; i++)
		if (config_add_candidate(cfg, cfg->candidates.items[i], err, sizeof(err)) < 0)
			goto fail;
	if (cfg->ncandidates == 0) {
		fprintf(stderr, "miffy: no candidate: give --candidate URL or 'candidate' in the config file\n");
		return -1;
	}
	return 0;
fail:
	fprintf(stderr, "miffy: %s\n", err);
	return -1;
}

static int copy_config(cfg_t *c, struct config *cfg, const char *const *cands, size_t ncands)
{
	for (size_t i = 0; i < KEY_COUNT; i++) {
		const char *name = keys[i].opt.name;
		char *at = (char *)cfg + keys[i].offset;

		switch (keys[i].kind) {
		case FIELD_STR:
			*(char **)at = dup_opt(c, name);
			break;
		case FIELD_UINT:
			*(unsigned *)at = (unsigned)cfg_getint(c, name);
			break;
		case FIELD_SIZE:
			*(size_t *)at = (size_t)cfg_getint(c, name);
			break;
		case FIELD_DOUBLE:
			*(double *)at = cfg_getfloat(c, name);
			break;
		case FIELD_BOOL:
			*(bool *)at = cfg_getbool(c, name);
			break;
		case FIELD_LIST:
			if (copy_list(c, name, (struct str_list *)at) < 0) {
				fprintf(stderr, "miffy: out of memory reading the configuration\n");
				return -1;
			}
			break;
		case FIELD_POLICY:
			*(enum publish_policy *)at = (enum publish_policy)parse_policy(cfg_getstr(c, name));
			break;
		case FIELD_LEVEL:
			*(enum log_level *)at = (enum log_level)parse_level(cfg_getstr(c, name));
			break;
		case FIELD_KIND_COUNT:
			break;
		}
	}
	for (size_t i = 0; i < cfg->methods.count; i++)
		for (char *m = cfg->methods.items[i]; *m; m++)
			*m = (char)toupper((unsigned char)*m);
	for (size_t i = 0; i < cfg->ignore_headers.count; i++)
		for (char *h = cfg->ignore_headers.items[i]; *h; h++)
			*h = (char)tolower((unsigned char)*h);
	for (size_t i = 0; i < cfg->redact_headers.count; i++)
		for (char *h = cfg->redact_headers.items[i]; *h; h++)
			*h = (char)tolower((unsigned char)*h);
	if (fleet_defaults(cfg) < 0) {
		fprintf(stderr, "miffy: out of memory reading the configuration\n");
		return -1;
	}
	if (cfg->report)
		return 0;
	if (resolve_candidates(cfg, cands, ncands) < 0 ||
	    (cfg->secondary && check_url("secondary", cfg->secondary) < 0))
		return -1;
	return 0;
}

/* Applies one flag value with the same validation as the file. */
static int set_flag(cfg_t *c, const char *name, const char *value)
{
	cfg_opt_t *opt = cfg_getopt(c, name);

	/* Errors about flags must not name the file. */
	free(c->filename);
	c->filename = NULL;
	c->line = 0;
	if (cfg_setstr(c, name, value) != 0)
		return -1;
	if (opt->validcb && opt->validcb(c, opt) != 0)
		return -1;
	return 0;
}

int config_load(struct config *cfg, int argc, char **argv)
{
	enum {
		OPT_LISTEN = 256, OPT_CANDIDATE, OPT_SECONDARY, OPT_KAFKA, OPT_TOPIC, OPT_SINK,
		OPT_ADMIN, OPT_LOG_LEVEL, OPT_LOG_JSON, OPT_CHECK, OPT_VERSION,
	};
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'f' },
		{ "set", required_argument, NULL, 'o' },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "candidate", required_argument, NULL, OPT_CANDIDATE },
		{ "secondary", required_argument, NULL, OPT_SECONDARY },
		{ "kafka", required_argument, NULL, OPT_KAFKA },
		{ "topic", required_argument, NULL, OPT_TOPIC },
		{ "sink", required_argument, NULL, OPT_SINK },
		{ "admin", required_argument, NULL, OPT_ADMIN },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "log-json", no_argument, NULL, OPT_LOG_JSON },
		{ "check", no_argument, NULL, OPT_CHECK },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct { const char *key; const char *value; } flags[32];
	cfg_opt_t options[KEY_COUNT + 1];
	const char *cands[MIFFY_MAX_CANDIDATES + 1];
	size_t nflags = 0, ncands = 0, setlen = 0;
	char *sets = NULL, *file = NULL;
	bool check = false;
	cfg_t *c = NULL;
	int opt, rc = 2;

	memset(cfg, 0, sizeof(*cfg));
	if (argc > 1 && strcmp(argv[1], "report") == 0) {
		cfg->report = true;
		argc--;
		argv++;
	}
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":f:o:h", longopts, NULL)) != -1) {
		const char *key = NULL;

		switch (opt) {
		case 'f':
			file = optarg;
			break;
		case 'o': {
			size_t n = strlen(optarg);
			char *s = realloc(sets, setlen + n + 2);

			if (!s)
				goto out;
			sets = s;
			memcpy(sets + setlen, optarg, n);
			setlen += n;
			sets[setlen++] = '\n';
			sets[setlen] = '\0';
			break;
		}
		case OPT_LISTEN: key = "listen"; break;
		case OPT_CANDIDATE:
			/* repeatable: one more is refused by config_add_candidate */
			if (ncands < sizeof(cands) / sizeof(cands[0]))
				cands[ncands++] = optarg;
			break;
		case OPT_SECONDARY: key = "secondary"; break;
		case OPT_KAFKA: key = "kafka_brokers"; break;
		case OPT_TOPIC: key = "topic"; break;
		case OPT_SINK: key = "sink"; break;
		case OPT_ADMIN: key = "admin"; break;
		case OPT_LOG_LEVEL: key = "log_level"; break;
		case OPT_LOG_JSON:
			key = "log_json";
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_VERSION:
			printf("miffy %s\n", MIFFY_VERSION);
			rc = 1;
			goto out;
		case 'h':
			fputs(usage, stdout);
			rc = 1;
			goto out;
		case ':':
			fprintf(stderr, "miffy: option %s needs a value (see --help)\n", argv[optind - 1]);
			goto out;
		default:
			fprintf(stderr, "miffy: unknown option %s (see --help)\n", argv[optind - 1]);
			goto out;
		}
		if (key) {
			if (nflags == sizeof(flags) / sizeof(flags[0])) {
				fprintf(stderr, "miffy: too many options\n");
				goto out;
			}
			flags[nflags].key = key;
			flags[nflags].value = optarg;
			nflags++;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "miffy: unexpected argument '%s' (see --help)\n", argv[optind]);
		goto out;
	}

	for (size_t i = 0; i < KEY_COUNT; i++)
		options[i] = keys[i].opt;
	options[KEY_COUNT] = (cfg_opt_t)CFG_END();
	c = cfg_init(options, CFGF_NONE);
	if (!c) {
		fprintf(stderr, "miffy: out of memory\n");
		goto out;
	}
	cfg_set_error_function(c, report_error);
	set_validators(c);
	if (file) {
		int r = cfg_parse(c, file);

		if (r == CFG_FILE_ERROR) {
			fprintf(stderr, "miffy: cannot read %s: %s\n", file, strerror(errno));
			goto out;
		}
		if (r != CFG_SUCCESS)
			goto out;
		cfg->file = strdup(file);
	}
	if (sets) {
		free(c->filename);
		c->filename = strdup("--set");
		if (cfg_parse_buf(c, sets) != CFG_SUCCESS)
			goto out;
	}
	for (size_t i = 0; i < nflags; i++) {
		if (strcmp(flags[i].key, "log_json") == 0) {
			cfg_setbool(c, "log_json", cfg_true);
			continue;
		}
		if (set_flag(c, flags[i].key, flags[i].value) < 0)
			goto out;
	}
	if (copy_config(c, cfg, cands, ncands) < 0)
		goto out;
	if (check) {
		printf("miffy: configuration ok\n");
		rc = 1;
		goto out;
	}
	rc = 0;
out:
	if (c)
		cfg_free(c);
	free(sets);
	return rc;
}

void config_free(struct config *cfg)
{
	free(cfg->file);
	for (unsigned i = 0; i < cfg->ncandidates; i++) {
		free(cfg->cands[i].name);
		free(cfg->cands[i].url);
	}
	for (size_t i = 0; i < KEY_COUNT; i++) {
		char *at = (char *)cfg + keys[i].offset;

		if (keys[i].kind == FIELD_STR)
			free(*(char **)at);
		else if (keys[i].kind == FIELD_LIST)
			free_list((struct str_list *)at);
	}
	memset(cfg, 0, sizeof(*cfg));
}

int config_split_addr(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hl;
	char *end;
	long p;

	if (!colon)
		return -1;
	hl = (size_t)(colon - addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		h = addr + 1;
		hl -= 2;
	}
	if (hl == 0 || hl >= hostlen)
		return -1;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p < 0 || p > 65535 || strlen(colon + 1) >= portlen)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}
