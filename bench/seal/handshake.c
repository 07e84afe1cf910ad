/*
 * ragg-seal-handshake: the connection handshake of src/handshake.c timed
 * per connection, one connection at a time between two processes on
 * 127.0.0.1, beside a plain TCP connect and one round trip in the same run
 * (the floor any handshake over TCP stands on).
 *
 * The acceptor (a forked child) plays agent 0, the connector (the parent)
 * worker 0 of a 1-1-1 job with the environment's RAGG_JOB_KEY and
 * RAGG_SEAL; both run the core's own code for a connection (the hello
 * check of connect.c, then ragg__hs_on_connected and ragg__hs_on_msg over
 * the tcp transport) exactly as a job does. Each connection is timed on
 * the monotonic clock both processes share:
 *
 *   handshake: from the first handshake message either side sends (its
 *              KEYS) to the later of the two sides' check of the other's
 *              proof (both proofs checked, the session keys derived and,
 *              with RAGG_SEAL=on, the connection sealed);
 *   setup:     from the connector's connect() call to the same end, so
 *              with the TCP connect and the hello and its answer;
 *   floor:     socket(), a blocking connect() and one byte there and back
 *              over plain TCP (TCP_NODELAY), taking turns with the above;
 *   cpu:       each side's own CPU time (this thread) from its first
 *              handshake step to its peer's proof checked.
 *
 * After both proofs check, the connector sends one message (sealed with
 * RAGG_SEAL=on) and closes; the acceptor must receive it intact, so both
 * sides derived the same session keys. The first WARMUP connections of each kind are not counted. Prints one
 * line:
 *
 *   seal-handshake: n=N seal=on|off handshake_us_min=A handshake_us_median=B
 *     handshake_us_p99=C setup_us_median=D floor_us_min=E floor_us_median=F
 *     floor_us_p99=G cpu_us_median_connector=H cpu_us_median_acceptor=I
 *
 * Usage: ragg-seal-handshake [-n N] (default 200). Exit 0, or 1 with a
 * line on stderr when a connection fails, its message after the handshake
 * does not arrive intact, or it takes over 10 s.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core.h"
#include "handshake.h"
#include "proto.h"
#include "settings.h"

#define WARMUP      10
#define DEADLINE_NS 10000000000ull

/* What the acceptor tells the connector of each connection, once its
 * side of it is closed. */
struct side {
	uint64_t keys_ns, done_ns, cpu_ns;
	bool pinged; /* acceptor: the connector's message after DONE came */
};

/* The connector's one message after both proofs check, outside the time
 * counted: sealed under the session keys with RAGG_SEAL=on, so it opens
 * only if both sides derived the same ones. */
static const char ping[] = "ping after the handshake";

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "ragg-seal-handshake: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static void tp_log(int level, const char *fmt, ...)
{
	va_list ap;
	if (level > RAGG_LOG_WARN)
		return;
	fprintf(stderr, "ragg-seal-handshake: tcp: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A context with one peer and the tcp transport, as ragg_init would make
 * for this connection alone. */
static struct ragg_ctx *ctx_new(enum ragg_role role, enum ragg_role peer_role)
{
	struct ragg_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx || ragg_opts_default(&ctx->opts))
		die("%s", "cannot make a context");
	ragg__logging_setup(&ctx->opts);
	ctx->opts.role = role;
	ctx->opts.rank = 0;
	ctx->opts.workers = ctx->opts.agents = ctx->opts.servers = 1;
	ctx->wake_fd = -1;
	ctx->npeers = 1;
	ctx->nworkers = role == RAGG_ROLE_AGENT;
	if (!(ctx->peers = calloc(1, sizeof(*ctx->peers))))
		die("%s", "out of memory");
	ctx->peers[0].ctx = ctx;
	ctx->peers[0].role = peer_role;
	ctx->peers[0].rank = 0;
	const struct ragg_tp_ops *ops = ragg_transport_find("tcp");
	if (!ops)
		die("%s", "no tcp transport");
	struct ragg_tp_params params = {
		.size = sizeof(params),
		.poll_mode = (int)ctx->opts.poll,
		.spin_us = ctx->opts.spin_us,
		.timeout_ms = ragg__hs_deadline_ms(ctx),
		.max_peers = 1,
		.log = tp_log,
		.log_level = RAGG_LOG_WARN,
		.wake_fd = -1,
	};
	int rc = ops->open(&params, &ctx->tps[0].dev);
	if (rc)
		die("open tcp: %s", ragg_strerror(rc));
	ctx->tps[0].ops = ops;
	ctx->ntp = 1;
	return ctx;
}

/* Forget the connection: the next one starts from nothing. */
static void peer_reset(struct ragg__peer *p)
{
	ragg__hs_free(p);
	p->ep = NULL;
	p->tp = NULL;
	p->connected = false;
}

/* Serve events until stop() says so; the handshake's timestamps into s.
 * Returns false when the job failed or the deadline passed. */
static bool serve(struct ragg_ctx *ctx, struct side *s, bool (*stop)(struct ragg_ctx *, bool),
                  bool *closed)
{
	struct ragg__tp *tp = &ctx->tps[0];
	struct ragg__peer *p = &ctx->peers[0];
	struct ragg_tp_event ev[16];
	uint64_t cpu0 = 0, end = now_ns() + DEADLINE_NS;

	while (!stop(ctx, *closed)) {
		if (ctx->failed || now_ns() > end)
			return false;
		int n = tp->ops->poll(tp->dev, ev, 16);
		if (n < 0)
			return false;
		if (!n) {
			tp->ops->wait(tp->dev, 100);
			continue;
		}
		for (int i = 0; i < n; i++) {
			switch (ev[i].type) {
			case RAGG_TP_EV_CONNECT_REQUEST:
				ragg__on_connect_request(ctx, &ev[i]);
				break;
			case RAGG_TP_EV_CONNECTED:
				s->keys_ns = now_ns();
				cpu0 = cpu_ns();
				ragg__on_connected(ctx, &ev[i]);
				break;
			case RAGG_TP_EV_RECV:
				if (ev[i].ep == p->ep && p->connected && ev[i].len == sizeof(ping) &&
				    !memcmp(ev[i].data, ping, sizeof(ping)))
					s->pinged = true;
				if (ev[i].ep != p->ep || !ragg__hs_is_msg(ev[i].data, ev[i].len))
					break;
				ragg__hs_on_msg(ctx, p, &ev[i]);
				if (p->connected && !s->done_ns) {
					s->done_ns = now_ns();
					s->cpu_ns = cpu_ns() - cpu0;
				}
				break;
			case RAGG_TP_EV_DISCONNECTED:
				if (ev[i].ep == p->ep) {
					tp->ops->ep_close(p->ep);
					peer_reset(p);
					*closed = true;
				} else {
					tp->ops->ep_close(ev[i].ep);
				}
				break;
			default:
				break;
			}
		}
		ragg__hs_reap(ctx);
	}
	return true;
}

static bool acceptor_stop(struct ragg_ctx *ctx, bool closed)
{
	(void)ctx;
	return closed;
}

static bool connector_stop(struct ragg_ctx *ctx, bool closed)
{
	(void)closed;
	return ctx->peers[0].connected;
}

/* The floor's peer: one byte back for each connection, until killed. */
static void floor_serve(int lfd)
{
	for (;;) {
		int fd = accept(lfd, NULL, NULL), one = 1;
		char c;
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (read(fd, &c, 1) == 1 && write(fd, &c, 1) != 1)
			break;
		close(fd);
	}
	_exit(0);
}

static int plain_listen(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
		                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl))
		die("plain listen: %s", strerror(errno));
	*port = ntohs(sa.sin_port);
	return fd;
}

static uint64_t floor_once(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
		                  .sin_port = htons(port),
		                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char c = 'x';
	int one = 1;
	uint64_t t0 = now_ns();
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("plain connect: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
		die("%s", "plain round trip failed");
	uint64_t t = now_ns() - t0;
	close(fd);
	return t;
}

static bool read_full(int fd, void *buf, size_t len)
{
	uint8_t *b = buf;
	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, (int)(DEADLINE_NS / 1000000u)) != 1)
			return false;
		ssize_t r = read(fd, b, len);
		if (r <= 0)
			return false;
		b += r;
		len -= (size_t)r;
	}
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile of v[0..n) (sorted here), in microseconds. */
static double quant_us(uint64_t *v, int n, double q)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	int i = (int)(q * (n - 1) + 0.5);
	return (double)v[i] / 1e3;
}

int main(int argc, char **argv)
{
	int n = 200, opt;
	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt == 'n' && (n = atoi(optarg)) >= 1 && n <= 1000000)
			continue;
		fprintf(stderr, "usage: ragg-seal-handshake [-n N (1..1000000)]\n");
		return 2;
	}
	if (sodium_init() < 0)
		die("%s", "libsodium does not start");
	signal(SIGPIPE, SIG_IGN);

	/* Addresses from the acceptor: the transport's, then the floor's
	 * port; then one struct side per connection. */
	int up[2];
	uint16_t fport;
	int flfd = plain_listen(&fport);
	if (pipe(up))
		die("pipe: %s", strerror(errno));
	pid_t fpid = fork();
	if (fpid < 0)
		die("fork: %s", strerror(errno));
	if (!fpid) {
		close(up[0]);
		floor_serve(flfd);
	}
	close(flfd);
	pid_t apid = fork();
	if (apid < 0)
		die("fork: %s", strerror(errno));
	if (!apid) {
		close(up[0]);
		struct ragg_ctx *ctx = ctx_new(RAGG_ROLE_AGENT, RAGG_ROLE_WORKER);
		struct ragg__tp *tp = &ctx->tps[0];
		char addr[RAGG_TP_ADDR_MAX] = "";
		int rc = tp->ops->listen(tp->dev, "127.0.0.1:0", addr, sizeof(addr));
		if (rc)
			die("listen: %s", ragg_strerror(rc));
		if (write(up[1], addr, sizeof(addr)) != (ssize_t)sizeof(addr))
			_exit(1);
		for (int i = 0; i < n + WARMUP; i++) {
			struct side s = { 0 };
			bool closed = false;
			/* Closed before both proofs checked here, or without the
			 * message after them: a failure. */
			if (!serve(ctx, &s, acceptor_stop, &closed) || !s.done_ns || !s.pinged) {
				fprintf(stderr, "ragg-seal-handshake: acceptor: connection %d failed\n",
				        i);
				_exit(1);
			}
			if (write(up[1], &s, sizeof(s)) != (ssize_t)sizeof(s))
				_exit(1);
		}
		_exit(0);
	}
	close(up[1]);

	char addr[RAGG_TP_ADDR_MAX];
	if (!read_full(up[0], addr, sizeof(addr)))
		die("%s", "the acceptor did not start");
	struct ragg_ctx *ctx = ctx_new(RAGG_ROLE_WORKER, RAGG_ROLE_AGENT);
	struct ragg__tp *tp = &ctx->tps[0];
	struct ragg__peer *p = &ctx->peers[0];
	uint8_t hello[RAGG_HELLO_WIRE_BYTES];
	struct ragg__hello h;
	ragg__hello_init(&h, &ctx->opts);
	size_t hello_len = ragg__hello_encode(&h, hello);
	uint64_t *hs = calloc((size_t)n, sizeof(*hs)), *setup = calloc((size_t)n, sizeof(*setup));
	uint64_t *fl = calloc((size_t)n, sizeof(*fl)), *cc = calloc((size_t)n, sizeof(*cc));
	uint64_t *ca = calloc((size_t)n, sizeof(*ca));
	if (!hs || !setup || !fl || !cc || !ca)
		die("%s", "out of memory");
	int status = 0;
	for (int i = 0; i < n + WARMUP; i++) {
		struct side c = { 0 }, a;
		bool closed = false;
		uint64_t t0 = now_ns();
		int rc = tp->ops->connect(tp->dev, addr, hello, hello_len, p, &p->ep);
		if (rc)
			die("connect: %s", ragg_strerror(rc));
		p->tp = tp;
		if (!serve(ctx, &c, connector_stop, &closed)) {
			fprintf(stderr, "ragg-seal-handshake: connection %d failed: %s\n", i,
			        ctx->failed ? ragg_strerror(ctx->failed) : "deadline");
			status = 1;
			break;
		}
		rc = tp->ops->send(p->ep, ping, sizeof(ping));
		if (rc)
			die("send: %s", ragg_strerror(rc));
		tp->ops->ep_close(p->ep);
		peer_reset(p);
		/* The acceptor's side, sent once it saw ours close. */
		if (!read_full(up[0], &a, sizeof(a))) {
			fprintf(stderr, "ragg-seal-handshake: connection %d: no word from the "
			                "acceptor\n",
			        i);
			status = 1;
			break;
		}
		uint64_t fl_ns = floor_once(fport);
		if (i < WARMUP)
			continue;
		int k = i - WARMUP;
		uint64_t first = c.keys_ns < a.keys_ns ? c.keys_ns : a.keys_ns;
		uint64_t last = c.done_ns > a.done_ns ? c.done_ns : a.done_ns;
		hs[k] = last - first;
		setup[k] = last - t0;
		fl[k] = fl_ns;
		cc[k] = c.cpu_ns;
		ca[k] = a.cpu_ns;
	}
	kill(fpid, SIGTERM);
	waitpid(fpid, NULL, 0);
	int ast = 0;
	if (status)
		kill(apid, SIGTERM);
	waitpid(apid, &ast, 0);
	if (status || !WIFEXITED(ast) || WEXITSTATUS(ast))
		return 1;
	double hmin = quant_us(hs, n, 0), hmed = quant_us(hs, n, 0.5), h99 = quant_us(hs, n, 0.99);
	double fmin = quant_us(fl, n, 0), fmed = quant_us(fl, n, 0.5), f99 = quant_us(fl, n, 0.99);
	printf("seal-handshake: n=%d seal=%s handshake_us_min=%.0f handshake_us_median=%.0f "
	       "handshake_us_p99=%.0f setup_us_median=%.0f floor_us_min=%.0f floor_us_median=%.0f "
	       "floor_us_p99=%.0f cpu_us_median_connector=%.0f cpu_us_median_acceptor=%.0f\n",
	       n, ragg__opt_long(&ctx->opts, "RAGG_SEAL") ? "on" : "off", hmin, hmed, h99,
	       quant_us(setup, n, 0.5), fmin, fmed, f99, quant_us(cc, n, 0.5), quant_us(ca, n, 0.5));
	return 0;
}
