/* miffy-demo — the reference, candidate and secondary HTTP services of the
 * miffy demo, in one binary (libmicrohttpd, a small thread pool).
 *
 * Every role answers GET /api/{value} with JSON derived from the value plus
 * a "meta" object that is different on every call (timestamp, random id),
 * so a secondary shows what noise looks like. The candidate differs from
 * the reference on purpose for a documented set of values (see usage()).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "delay.h"

#ifndef MIFFY_VERSION
#define MIFFY_VERSION "dev"
#endif

#define BODY_MAX       (1024 * 1024)  /* POST echo limit; more is 413 */
#define VALUE_MAX      1024           /* longer /api/{value} is 414 */
#define DELAY_MAX_MS   60000u
#define PENDING_MAX    65536u         /* delayed requests waiting at once */

enum demo_role {
	ROLE_REFERENCE = 0,
	ROLE_CANDIDATE,
	ROLE_SECONDARY,
	ROLE_COUNT
};

static const char *const role_names[ROLE_COUNT] = {
	[ROLE_REFERENCE] = "reference",
	[ROLE_CANDIDATE] = "candidate",
	[ROLE_SECONDARY] = "secondary",
};

static const char *const role_listen[ROLE_COUNT] = {
	[ROLE_REFERENCE] = "127.0.0.1:8081",
	[ROLE_CANDIDATE] = "127.0.0.1:8082",
	[ROLE_SECONDARY] = "127.0.0.1:8083",
};

/* What the candidate does differently for a value. */
enum demo_quirk {
	QUIRK_NONE = 0,
	QUIRK_CHANGED,     /* "length" is one more */
	QUIRK_MISSING,     /* "upper" is absent */
	QUIRK_REORDERED,   /* "items" in reverse order */
	QUIRK_TYPE,        /* "length" is a string */
	QUIRK_EXTRA,       /* an extra "beta": true */
	QUIRK_HEADER,      /* Cache-Control: no-store instead of max-age=60 */
	QUIRK_ERROR,       /* 500 */
	QUIRK_COUNT
};

static const char *const quirk_names[QUIRK_COUNT] = {
	[QUIRK_NONE] = "none",
	[QUIRK_CHANGED] = "changed",
	[QUIRK_MISSING] = "missing",
	[QUIRK_REORDERED] = "reordered",
	[QUIRK_TYPE] = "type",
	[QUIRK_EXTRA] = "extra",
	[QUIRK_HEADER] = "header",
	[QUIRK_ERROR] = "error",
};

struct demo_server {
	enum demo_role role;
	unsigned delay_ms;
	bool verbose;
	struct demo_delay *delay;
	unsigned long in_flight;  /* requests begun, not completed (atomic) */
};

/* Per-request state, from the first call of the access handler to
 * MHD_OPTION_NOTIFY_COMPLETED. */
struct demo_req {
	bool delayed;
	bool too_big;
	size_t len;
	size_t cap;
	char *body;
};

static void usage(FILE *out)
{
	fprintf(out,
"usage: miffy-demo [--role reference|candidate|secondary] [--listen ADDR:PORT]\n"
"                  [--delay-ms N] [--threads N] [--verbose]\n"
"\n"
"The demo HTTP service of miffy. Endpoints:\n"
"  GET  /api/{value}  JSON derived from value:\n"
"        {\"value\", \"length\", \"upper\", \"items\": [3 objects],\n"
"         \"meta\": {\"served_by\", \"timestamp\", \"request_id\"}}\n"
"        meta differs on every call and between roles: that is the noise a\n"
"        secondary reveals. Header X-Request-Id repeats meta.request_id.\n"
"  POST /api/{value}  echoes the request body with its Content-Type\n"
"  GET  /health       {\"status\": \"ok\", \"role\": ROLE}\n"
"  ?delay_ms=N on any request overrides --delay-ms for that request.\n"
"\n"
"The candidate differs from the reference on purpose for these values (a\n"
"number n matches by n %% 10; every other value is answered the same):\n"
"  changed   or n%%10 == 1   \"length\" is one more             (kind value)\n"
"  missing   or n%%10 == 2   \"upper\" is absent                 (kind missing)\n"
"  reordered or n%%10 == 3   \"items\" in reverse order          (kind order)\n"
"  type      or n%%10 == 4   \"length\" is a string              (kind type)\n"
"  extra     or n%%10 == 5   an extra field \"beta\": true         (kind extra)\n"
"  header    or n%%10 == 6   Cache-Control: no-store, not max-age=60 (header)\n"
"  error     or n%%10 == 7   status 500 {\"error\": \"internal server error\"}\n"
"\n"
"Options:\n"
"  --role ROLE      reference (default), candidate or secondary\n"
"  --listen A:P     address to listen on; default 127.0.0.1:8081 (reference),\n"
"                   :8082 (candidate), :8083 (secondary); *:P or 0.0.0.0:P for\n"
"                   every interface, port 0 for any free port\n"
"  --delay-ms N     answer every request N ms late, without using CPU\n"
"                   (at most %u)\n"
"  --threads N      worker threads (default: number of CPUs, at most 16)\n"
"  --verbose        log one line per request to stderr\n"
"  --version, --help\n"
"\n"
"Prints \"miffy-demo ROLE listening on http://ADDR:PORT\" once ready; stops\n"
"on SIGINT or SIGTERM.\n", DELAY_MAX_MS);
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* A value that is all digits (at most 18 of them) picks its quirk by n % 10;
 * a value named after a quirk picks that quirk. */
static enum demo_quirk quirk_of(const char *value)
{
	static const enum demo_quirk by_digit[10] = {
		QUIRK_NONE, QUIRK_CHANGED, QUIRK_MISSING, QUIRK_REORDERED,
		QUIRK_TYPE, QUIRK_EXTRA, QUIRK_HEADER, QUIRK_ERROR,
		QUIRK_NONE, QUIRK_NONE,
	};
	size_t n = strlen(value);

	if (n > 0 && n <= 18 && strspn(value, "0123456789") == n)
		return by_digit[value[n - 1] - '0'];
	for (int q = QUIRK_NONE + 1; q < QUIRK_COUNT; q++)
		if (strcmp(value, quirk_names[q]) == 0)
			return (enum demo_quirk)q;
	return QUIRK_NONE;
}

static void random_id(char out[33])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t raw[16];
	size_t got = 0;

	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			/* No entropy source: fall back to a clock-seeded value,
			 * it only has to differ between calls. */
			uint64_t x = (uint64_t)clock() ^ (uint64_t)time(NULL) ^ (uintptr_t)out;
			for (; got < sizeof(raw); got++, x = x * 6364136223846793005u + 1)
				raw[got] = (uint8_t)(x >> 56);
			break;
		}
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(raw); i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[32] = '\0';
}

/* RFC 3339 UTC with microseconds, e.g. 2024-05-01T12:00:00.123456Z. */
static void timestamp_now(char out[40])
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 40 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

/* Queues a response with body (malloc'd; taken over, freed with free() by
 * MHD or here on failure) and the headers that are not NULL. */
static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             char *body, size_t len, const char *content_type,
                             const char *cache_control, const char *request_id)
{
	struct MHD_Response *res;
	enum MHD_Result ret;

	res = MHD_create_response_from_buffer_with_free_callback(len, body, free);
	if (res == NULL) {
		free(body);
		return MHD_NO;
	}
	if (content_type != NULL)
		MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (cache_control != NULL)
		MHD_add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
	if (request_id != NULL)
		MHD_add_response_header(res, "X-Request-Id", request_id);
	ret = MHD_queue_response(conn, status, res);
	MHD_destroy_response(res);
	return ret;
}

static enum MHD_Result queue_text(struct MHD_Connection *conn, unsigned status,
                                  const char *json)
{
	char *copy = strdup(json);

	if (copy == NULL)
		return MHD_NO;
	return queue(conn, status, copy, strlen(copy), "application/json", NULL, NULL);
}

/* cJSON_Print* allocates with malloc unless hooks are set, and none are. */
static enum MHD_Result queue_json(struct MHD_Connection *conn, unsigned status,
                                  cJSON *doc, const char *cache_control,
                                  const char *request_id)
{
	char *text = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;

	cJSON_Delete(doc);
	if (text == NULL)
		return queue_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
		                  "{\"error\":\"out of memory\"}");
	return queue(conn, status, text, strlen(text), "application/json",
	             cache_control, request_id);
}

static cJSON *api_document(const struct demo_server *srv, const char *value,
                           enum demo_quirk quirk, const char *request_id)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *items, *meta;
	size_t len = strlen(value);
	char *upper = strdup(value);
	char stamp[40];

	if (doc == NULL || upper == NULL)
		goto fail;
	for (char *c = upper; *c != '\0'; c++)
		if (*c >= 'a' && *c <= 'z')
			*c = (char)(*c - 'a' + 'A');

	if (cJSON_AddStringToObject(doc, "value", value) == NULL)
		goto fail;
	if (quirk == QUIRK_TYPE) {
		char text[32];

		snprintf(text, sizeof(text), "%zu", len);
		if (cJSON_AddStringToObject(doc, "length", text) == NULL)
			goto fail;
	} else if (cJSON_AddNumberToObject(doc, "length",
	                                   (double)(len + (quirk == QUIRK_CHANGED))) == NULL) {
		goto fail;
	}
	if (quirk != QUIRK_MISSING && cJSON_AddStringToObject(doc, "upper", upper) == NULL)
		goto fail;
	if ((items = cJSON_AddArrayToObject(doc, "items")) == NULL)
		goto fail;
	for (int i = 0; i < 3; i++) {
		int id = quirk == QUIRK_REORDERED ? 3 - i : i + 1;
		cJSON *item = cJSON_CreateObject();
		char name[VALUE_MAX + 16];

		if (item == NULL)
			goto fail;
		cJSON_AddItemToArray(items, item);
		snprintf(name, sizeof(name), "%s-%d", value, id);
		if (cJSON_AddNumberToObject(item, "id", id) == NULL ||
		    cJSON_AddStringToObject(item, "name", name) == NULL)
			goto fail;
	}
	if (quirk == QUIRK_EXTRA && cJSON_AddTrueToObject(doc, "beta") == NULL)
		goto fail;

	timestamp_now(stamp);
	if ((meta = cJSON_AddObjectToObject(doc, "meta")) == NULL ||
	    cJSON_AddStringToObject(meta, "served_by", role_names[srv->role]) == NULL ||
	    cJSON_AddStringToObject(meta, "timestamp", stamp) == NULL ||
	    cJSON_AddStringToObject(meta, "request_id", request_id) == NULL)
		goto fail;
	free(upper);
	return doc;

fail:
	free(upper);
	cJSON_Delete(doc);
	return NULL;
}

static enum MHD_Result answer_api_get(struct demo_server *srv,
                                      struct MHD_Connection *conn,
                                      const char *value, unsigned *status)
{
	enum demo_quirk quirk = srv->role == ROLE_CANDIDATE ? quirk_of(value) : QUIRK_NONE;
	char request_id[33];

	random_id(request_id);
	if (quirk == QUIRK_ERROR) {
		*status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		char *body = strdup("{\"error\":\"internal server error\"}");
		if (body == NULL)
			return MHD_NO;
		return queue(conn, *status, body, strlen(body), "application/json",
		             NULL, request_id);
	}
	*status = MHD_HTTP_OK;
	return queue_json(conn, *status, api_document(srv, value, quirk, request_id),
	                  quirk == QUIRK_HEADER ? "no-store" : "max-age=60", request_id);
}

static enum MHD_Result answer_api_post(struct MHD_Connection *conn,
                                       struct demo_req *req, unsigned *status)
{
	const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                               MHD_HTTP_HEADER_CONTENT_TYPE);
	char request_id[33];
	char *body;

	if (req->too_big) {
		*status = MHD_HTTP_CONTENT_TOO_LARGE;
		return queue_text(conn, *status, "{\"error\":\"body too large\"}");
	}
	/* malloc(0) may return NULL: always give MHD a real buffer. */
	body = req->body != NULL ? req->body : malloc(1);
	if (body == NULL)
		return MHD_NO;
	req->body = NULL;
	random_id(request_id);
	*status = MHD_HTTP_OK;
	return queue(conn, *status, body, req->len,
	             type != NULL ? type : "application/octet-stream", NULL, request_id);
}

static enum MHD_Result answer(struct demo_server *srv, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              struct demo_req *req, unsigned *status)
{
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	           strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	bool post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;

	if (strcmp(url, "/health") == 0) {
		char body[64];

		*status = get ? MHD_HTTP_OK : MHD_HTTP_METHOD_NOT_ALLOWED;
		snprintf(body, sizeof(body), "{\"status\":\"ok\",\"role\":\"%s\"}",
		         role_names[srv->role]);
		return queue_text(conn, *status, get ? body : "{\"error\":\"method not allowed\"}");
	}
	if (strncmp(url, "/api/", 5) != 0 || url[5] == '\0') {
		*status = MHD_HTTP_NOT_FOUND;
		return queue_text(conn, *status, "{\"error\":\"not found\"}");
	}
	if (strlen(url + 5) > VALUE_MAX) {
		*status = MHD_HTTP_URI_TOO_LONG;
		return queue_text(conn, *status, "{\"error\":\"value too long\"}");
	}
	if (get)
		return answer_api_get(srv, conn, url + 5, status);
	if (post)
		return answer_api_post(conn, req, status);
	*status = MHD_HTTP_METHOD_NOT_ALLOWED;
	return queue_text(conn, *status, "{\"error\":\"method not allowed\"}");
}

static unsigned request_delay(const struct demo_server *srv,
                              struct MHD_Connection *conn)
{
	const char *arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND,
	                                              "delay_ms");
	unsigned ms;

	if (arg != NULL && parse_uint(arg, DELAY_MAX_MS, &ms) == 0)
		return ms;
	return srv->delay_ms;
}

static int body_append(struct demo_req *req, const char *data, size_t n)
{
	if (req->too_big)
		return 0;
	if (n > BODY_MAX - req->len) {
		req->too_big = true;
		free(req->body);
		req->body = NULL;
		req->len = req->cap = 0;
		return 0;
	}
	if (req->len + n > req->cap) {
		size_t cap = req->cap > 0 ? req->cap : 4096;
		char *grown;

		while (cap < req->len + n)
			cap *= 2;
		if (cap > BODY_MAX)
			cap = BODY_MAX;
		if ((grown = realloc(req->body, cap)) == NULL)
			return -1;
		req->body = grown;
		req->cap = cap;
	}
	memcpy(req->body + req->len, data, n);
	req->len += n;
	return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
	struct demo_server *srv = cls;
	struct demo_req *req = *req_cls;
	unsigned status = 0;
	enum MHD_Result ret;

	if (req == NULL) {
		if ((req = calloc(1, sizeof(*req))) == NULL)
			return MHD_NO;
		*req_cls = req;
		__atomic_add_fetch(&srv->in_flight, 1, __ATOMIC_RELAXED);
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (body_append(req, upload_data, *upload_data_size) == -1)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!req->delayed) {
		unsigned ms = request_delay(srv, conn);

		req->delayed = true;
		/* A full queue answers at once rather than fail the request. */
		if (ms > 0 && demo_delay_suspend(srv->delay, conn, ms) == 0)
			return MHD_YES;
	}
	ret = answer(srv, conn, url, method, req, &status);
	if (srv->verbose)
		fprintf(stderr, "miffy-demo %s: %s %s -> %u\n",
		        role_names[srv->role], method, url, status);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
	struct demo_server *srv = cls;
	struct demo_req *req = *req_cls;

	if (req == NULL)
		return;
	__atomic_sub_fetch(&srv->in_flight, 1, __ATOMIC_RELAXED);
	free(req->body);
	free(req);
	*req_cls = NULL;
}

/* Binds and listens on "HOST:PORT", "[V6]:PORT", "*:PORT" or ":PORT".
 * Returns the socket, or after printing why -2 for a malformed spec and -1
 * for a system error. */
static int listen_on(const char *spec, char *shown, size_t shown_len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char host[256], port[16], addr[INET6_ADDRSTRLEN];
	const char *colon = strrchr(spec, ':');
	const char *h = spec;
	size_t hlen;
	int fd = -1, one = 1, err;

	if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= sizeof(port))
		goto bad;
	hlen = (size_t)(colon - spec);
	if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		goto bad;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	strcpy(port, colon + 1);
	if (strspn(port, "0123456789") != strlen(port) || atol(port) > 65535)
		goto bad;
	err = getaddrinfo(hlen == 0 || strcmp(host, "*") == 0 ? NULL : host, port,
	                  &hints, &res);
	if (err != 0) {
		fprintf(stderr, "miffy-demo: --listen %s: %s\n", spec, gai_strerror(err));
		return -2;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 4096) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sslen) == -1) {
		fprintf(stderr, "miffy-demo: --listen %s: %s\n", spec, strerror(errno));
		if (fd != -1)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof(addr));
		snprintf(shown, shown_len, "[%s]:%u", addr, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, addr, sizeof(addr));
		snprintf(shown, shown_len, "%s:%u", addr, ntohs(a->sin_port));
	}
	return fd;

bad:
	fprintf(stderr, "miffy-demo: --listen %s: expected ADDR:PORT\n", spec);
	return -2;
}

static unsigned default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > 16 ? 16 : (unsigned)n;
}

/* Each connection needs a descriptor: use all the process may have. */
static unsigned connection_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 1000;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536 + 64)
		return 65536;
	return rl.rlim_cur > 128 ? (unsigned)(rl.rlim_cur - 64) : 64;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "role", required_argument, NULL, 'r' },
		{ "listen", required_argument, NULL, 'l' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct demo_server srv = { .role = ROLE_REFERENCE };
	const char *listen_spec = NULL;
	unsigned threads = default_threads();
	struct MHD_Daemon *daemon = NULL;
	char shown[INET6_ADDRSTRLEN + 16];
	sigset_t stop;
	int opt, fd, sig, rc = 1;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r': {
			int r;

			for (r = 0; r < ROLE_COUNT; r++)
				if (strcmp(optarg, role_names[r]) == 0)
					break;
			if (r == ROLE_COUNT) {
				fprintf(stderr, "miffy-demo: --role %s: expected reference, candidate or secondary\n", optarg);
				return 2;
			}
			srv.role = (enum demo_role)r;
			break;
		}
		case 'l':
			listen_spec = optarg;
			break;
		case 'd':
			if (parse_uint(optarg, DELAY_MAX_MS, &srv.delay_ms) == -1) {
				fprintf(stderr, "miffy-demo: --delay-ms %s: expected 0..%u\n", optarg, DELAY_MAX_MS);
				return 2;
			}
			break;
		case 't':
			if (parse_uint(optarg, 64, &threads) == -1 || threads == 0) {
				fprintf(stderr, "miffy-demo: --threads %s: expected 1..64\n", optarg);
				return 2;
			}
			break;
		case 'v':
			srv.verbose = true;
			break;
		case 'V':
			printf("miffy-demo %s\n", MIFFY_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "miffy-demo: bad arguments (see --help)\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "miffy-demo: unexpected argument %s (see --help)\n", argv[optind]);
		return 2;
	}
	if (listen_spec == NULL)
		listen_spec = role_listen[srv.role];

	/* Block the stop signals before any thread starts, so they all inherit
	 * the mask and only sigwait() below sees them. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	if ((errno = pthread_sigmask(SIG_BLOCK, &stop, NULL)) != 0 ||
	    signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		fprintf(stderr, "miffy-demo: signals: %s\n", strerror(errno));
		return 1;
	}

	if ((fd = listen_on(listen_spec, shown, sizeof(shown))) < 0)
		return fd == -2 ? 2 : 1;
	if ((srv.delay = demo_delay_create(PENDING_MAX)) == NULL) {
		fprintf(stderr, "miffy-demo: timer thread: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	daemon = MHD_start_daemon(
		MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, &srv,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_THREAD_POOL_SIZE, threads,
		MHD_OPTION_CONNECTION_LIMIT, connection_limit(),
		MHD_OPTION_CONNECTION_TIMEOUT, 60u,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, &srv,
		MHD_OPTION_END);
	if (daemon == NULL) {
		fprintf(stderr, "miffy-demo: cannot start the HTTP server on %s\n", shown);
		close(fd);
		goto out;
	}
	printf("miffy-demo %s listening on http://%s\n", role_names[srv.role], shown);
	fflush(stdout);

	while (sigwait(&stop, &sig) != 0)
		;
	/* Answer the delayed requests now (MHD_stop_daemon() refuses suspended
	 * connections) and give answers up to a second to leave before
	 * MHD_stop_daemon() closes the listener and the remaining connections.
	 * No MHD_quiesce_daemon(): with a thread pool on epoll it races the
	 * workers, which drop the listener from their own epoll sets, and
	 * aborts ("Failed to remove listen FD from epoll set", seen in CI).
	 * A connection accepted meanwhile is answered at once (draining). */
	demo_delay_drain(srv.delay);
	for (int i = 0; i < 100 && __atomic_load_n(&srv.in_flight, __ATOMIC_RELAXED) > 0; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	MHD_stop_daemon(daemon);
	rc = 0;
out:
	demo_delay_destroy(srv.delay);
	return rc;
}
