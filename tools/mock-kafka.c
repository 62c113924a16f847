/* miffy-mock-kafka: a Kafka cluster for tests, from librdkafka's mock
 * cluster (rdkafka_mock.h), so tests speak the real Kafka wire protocol
 * without a JVM.
 *
 *   miffy-mock-kafka [--topic NAME]... [--partitions N] [--brokers N]
 *                    [--port P] [--down]
 *
 * --topic may be given up to 8 times (a differences topic and its stats
 * topic); each gets N partitions.
 *
 * Prints the bootstrap address ("127.0.0.1:PORT[,...]") as one line on
 * stdout once the topic exists, then runs until SIGTERM or SIGINT (exit 0).
 *
 * Outages, for "broker down at start" and "broker killed mid-run":
 *   SIGUSR1  every broker goes down: connections are closed, new ones are
 *            dropped at once (rd_kafka_mock_broker_set_down)
 *   SIGUSR2  every broker comes back (rd_kafka_mock_broker_set_up)
 *   --down   start with the brokers down (the address is still printed)
 * The topic and the messages already stored survive an outage, so a consumer
 * started afterwards still reads everything.
 *
 * --port P: librdkafka 2.0.2 has no API to choose the listeners' ports (the
 * mock brokers bind 127.0.0.1:0). When P is given, this program's bind()
 * wrapper below rewrites that one call pattern to port P (P+1, ... for
 * further brokers) with SO_REUSEADDR, so a test may kill the process and
 * start a new one on the same address. The new process has an empty topic. */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* Next port handed to a mock listener; 0 leaves bind() untouched. Only read
 * and written while main() creates the cluster, which binds its listeners
 * synchronously in rd_kafka_mock_cluster_new(). */
static unsigned next_port;

int bind(int fd, const struct sockaddr *addr, socklen_t len);

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	static int (*real_bind)(int, const struct sockaddr *, socklen_t);

	if (!real_bind) {
		*(void **)&real_bind = dlsym(RTLD_NEXT, "bind");
		if (!real_bind) {
			errno = ENOSYS;
			return -1;
		}
	}
	if (next_port && addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;

		memcpy(&sin, addr, sizeof(sin));
		if (sin.sin_port == 0 && sin.sin_addr.s_addr == htonl(INADDR_LOOPBACK)) {
			int one = 1;

			sin.sin_port = htons((uint16_t)next_port++);
			if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
				return -1;
			return real_bind(fd, (const struct sockaddr *)&sin, sizeof(sin));
		}
	}
	return real_bind(fd, addr, len);
}

static void usage(FILE *out)
{
	fprintf(out, "usage: miffy-mock-kafka [--topic NAME]... [--partitions N] [--brokers N] [--port P] [--down]\n"
		     "  prints the bootstrap address, runs until SIGTERM/SIGINT;\n"
		     "  SIGUSR1 takes the brokers down, SIGUSR2 brings them back\n");
}

static int parse_uint(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "topic", required_argument, NULL, 't' },
		{ "partitions", required_argument, NULL, 'p' },
		{ "brokers", required_argument, NULL, 'b' },
		{ "port", required_argument, NULL, 'P' },
		{ "down", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *topics[8] = { "miffy" };
	size_t ntopics = 0;
	long partitions = 1, brokers = 1, port = 0;
	int down = 0, c, sig, rc = 1;
	char errstr[512];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk = NULL;
	rd_kafka_mock_cluster_t *mc = NULL;
	rd_kafka_resp_err_t err;
	sigset_t set;

	while ((c = getopt_long(argc, argv, "t:p:b:P:dh", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (ntopics == sizeof(topics) / sizeof(topics[0]) || !*optarg) {
				usage(stderr);
				return 2;
			}
			topics[ntopics++] = optarg;
			break;
		case 'p':
			if (parse_uint(optarg, 1, 1000, &partitions) == -1) {
				fprintf(stderr, "miffy-mock-kafka: --partitions: expected 1..1000, got '%s'\n", optarg);
				return 2;
			}
			break;
		case 'b':
			if (parse_uint(optarg, 1, 16, &brokers) == -1) {
				fprintf(stderr, "miffy-mock-kafka: --brokers: expected 1..16, got '%s'\n", optarg);
				return 2;
			}
			break;
		case 'P':
			if (parse_uint(optarg, 1, 65535, &port) == -1) {
				fprintf(stderr, "miffy-mock-kafka: --port: expected 1..65535, got '%s'\n", optarg);
				return 2;
			}
			break;
		case 'd':
			down = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!ntopics)
		ntopics = 1;
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (port && port + brokers - 1 > 65535) {
		fprintf(stderr, "miffy-mock-kafka: --port %ld leaves no room for %ld brokers\n", port, brokers);
		return 2;
	}

	/* Blocked before librdkafka starts its threads, so they inherit the mask
	 * and every signal reaches the sigwait() below, never a random thread. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGPIPE);
	if ((errno = pthread_sigmask(SIG_BLOCK, &set, NULL)) != 0) {
		perror("miffy-mock-kafka: pthread_sigmask");
		return 1;
	}

	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "miffy-mock-kafka: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "miffy-mock-kafka: rd_kafka_new: %s\n", errstr);
		rd_kafka_conf_destroy(conf);
		return 1;
	}

	next_port = (unsigned)port;
	mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
	next_port = 0;
	if (!mc) {
		fprintf(stderr, "miffy-mock-kafka: cannot create the mock cluster%s\n",
			port ? " (is the port free?)" : "");
		goto out;
	}
	for (size_t i = 0; i < ntopics; i++) {
		err = rd_kafka_mock_topic_create(mc, topics[i], (int)partitions, (int)brokers);
		if (err) {
			fprintf(stderr, "miffy-mock-kafka: topic '%s': %s\n", topics[i], rd_kafka_err2str(err));
			goto out;
		}
	}
	if (down)
		rd_kafka_mock_broker_set_down(mc, -1);

	if (printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc)) < 0 || fflush(stdout) == EOF) {
		perror("miffy-mock-kafka: stdout");
		goto out;
	}

	for (;;) {
		if ((errno = sigwait(&set, &sig)) != 0) {
			perror("miffy-mock-kafka: sigwait");
			goto out;
		}
		if (sig == SIGTERM || sig == SIGINT)
			break;
		if (sig == SIGUSR1) {
			rd_kafka_mock_broker_set_down(mc, -1);
			fprintf(stderr, "miffy-mock-kafka: brokers down\n");
		} else if (sig == SIGUSR2) {
			rd_kafka_mock_broker_set_up(mc, -1);
			fprintf(stderr, "miffy-mock-kafka: brokers up\n");
		}
	}
	rc = 0;
out:
	if (mc)
		rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return rc;
}
