/*
 * Setting up a session and talking over it. The client's connect private
 * data carries its buffer size and descriptor; the server registers a
 * buffer of that size and answers with its own descriptor. Every test then
 * runs BEGIN/READY ... END/DONE, and QUIT ends the session; the server exits
 * after one client, or after --timeout without one.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <sodium.h>

#include "perf.h"

#define PERF_MAGIC   0x46504752u /* "RGPF" */
#define PERF_VERSION 1

/* Connection private data, both ways. */
struct perf_hello {
	uint32_t magic;
	uint16_t version;
	uint16_t status; /* server: 0, or why it cannot serve */
	uint64_t buf_len;
	struct ragg_tp_rdesc rdesc;
} __attribute__((packed));

_Static_assert(sizeof(struct perf_hello) <= RAGG_TP_PRIV_MAX, "hello fits private data");

static int log_level;

void perf_log(int level, const char *fmt, ...)
{
	static const char *const names[] = { "none", "error", "warn", "info", "debug" };
	va_list ap;
	fprintf(stderr, "ragg-perf: %s: ", level >= 0 && level <= 4 ? names[level] : "?");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void perf_die(const char *fmt, ...)
{
	va_list ap;
	fputs("ragg-perf: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

uint64_t perf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void open_dev(struct perf_session *s, const struct perf_opts *o)
{
	char why[256] = "";
	memset(s, 0, sizeof(*s));
	s->o = o;
	s->tp = ragg_transport_find(o->transport);
	if (!s->tp) {
		fprintf(stderr, "ragg-perf: no transport \"%s\"; built in:", o->transport);
		for (const struct ragg_tp_ops *const *t = ragg_transport_list(); *t; t++)
			fprintf(stderr, " %s", (*t)->name);
		fputc('\n', stderr);
		exit(2); /* a usage error */
	}
	/* Before listening or connecting, so that neither end starts. */
	if (o->seal && (!(s->tp->caps & RAGG_TP_CAP_SEAL) || !RAGG_TP_HAS_OP(s->tp, seal))) {
		fprintf(stderr, "ragg-perf: --seal: transport %s cannot seal\n", s->tp->name);
		exit(2); /* a usage error */
	}
	if (ragg_transport_check(s->tp, why, sizeof(why)))
		perf_die("transport %s: table refused: %s", s->tp->name, why);
	if (s->tp->probe(why, sizeof(why)))
		perf_die("transport %s unusable here: %s", s->tp->name, why);
	log_level = o->verbose ? RAGG_LOG_INFO + o->verbose - 1 : RAGG_LOG_ERROR;
	struct ragg_tp_params p = {
		.size = sizeof(p),
		.poll_mode = o->busy ? RAGG_POLL_BUSY : RAGG_POLL_BLOCK,
		.timeout_ms = o->timeout_s * 1000,
		.max_peers = 1,
		.log = perf_log,
		.log_level = log_level,
		.wake_fd = -1,
	};
	int rc = s->tp->open(&p, &s->dev);
	if (rc)
		perf_die("open %s: %s", s->tp->name, ragg_strerror(rc));
	struct ragg_tp_attr attr;
	rc = s->tp->query(s->dev, &attr);
	if (rc)
		perf_die("query %s: %s", s->tp->name, ragg_strerror(rc));
	s->queue_depth = attr.queue_depth;
}

/* Touched before use, so no page fault lands inside a measurement, and on
 * huge pages where the kernel has them: a 256 MiB buffer on 4 KiB pages
 * spends a good part of every copy in page walks. */
static void *alloc_buf(struct perf_session *s, size_t len)
{
	const size_t huge = (size_t)2 << 20;
	/* A transport's own memory is where its peers' writes are fastest
	 * (shm: shared, one copy), so measure that path when there is one. */
	if (RAGG_TP_HAS_OP(s->tp, mem_alloc)) {
		void *m = s->tp->mem_alloc(s->dev, len ? len : 1);
		if (!m)
			perf_die("cannot allocate %zu bytes from %s", len, s->tp->name);
		memset(m, 0, len);
		return m;
	}
	size_t n = (len + huge - 1) & ~(huge - 1);
	void *p = aligned_alloc(huge, n ? n : huge);
	if (!p)
		perf_die("cannot allocate %zu bytes", len);
#ifdef MADV_HUGEPAGE
	madvise(p, n ? n : huge, MADV_HUGEPAGE);
#endif
	memset(p, 0, n ? n : huge);
	return p;
}

static void reg(struct perf_session *s, void *addr, size_t len, struct ragg_tp_mr **mr,
                struct ragg_tp_rdesc *rd)
{
	int rc = s->tp->mr_reg(s->dev, addr, len, mr, rd);
	if (rc)
		perf_die("registering %zu bytes: %s", len, ragg_strerror(rc));
}

static void close_session(struct perf_session *s)
{
	if (s->ep)
		s->tp->ep_close(s->ep);
	if (s->mr)
		s->tp->mr_dereg(s->mr);
	if (s->src_mr)
		s->tp->mr_dereg(s->src_mr);
	if (RAGG_TP_HAS_OP(s->tp, mem_alloc)) {
		if (s->buf)
			s->tp->mem_free(s->dev, s->buf, s->buf_len);
		if (s->src)
			s->tp->mem_free(s->dev, s->src, s->buf_len);
	} else {
		free(s->buf);
		free(s->src);
	}
	s->tp->close(s->dev);
}

/* Poll for the next event; sleeps in wait() unless busy. Exits when the
 * peer goes or nothing happens for timeout_s. */
int perf_next(struct perf_session *s, struct ragg_tp_event *ev)
{
	/* The clock is read only every so many empty polls: under emulation
	 * a clock read costs as much as a poll, and a latency loop would
	 * measure the clock. */
	uint64_t deadline = 0;
	for (unsigned spins = 0;; spins++) {
		int n = s->tp->poll(s->dev, ev, 1);
		if (n < 0)
			perf_die("poll: %s", ragg_strerror(n));
		if (n == 1) {
			if (ev->type == RAGG_TP_EV_DISCONNECTED && ev->ep == s->ep)
				return -1;
			return 0;
		}
		if (s->o->busy && (spins & 1023) != 1023)
			continue;
		if (!deadline)
			deadline = perf_now_ns() + (uint64_t)s->o->timeout_s * 1000000000u;
		else if (perf_now_ns() > deadline)
			perf_die("no progress for %d s", s->o->timeout_s);
		if (!s->o->busy)
			s->tp->wait(s->dev, 100);
	}
}

void perf_send(struct perf_session *s, const struct perf_msg *m)
{
	uint64_t deadline = perf_now_ns() + (uint64_t)s->o->timeout_s * 1000000000u;
	int rc;
	while ((rc = s->tp->send(s->ep, m, sizeof(*m))) == -EAGAIN) {
		struct ragg_tp_event ev;
		/* Only completions can be pending here; drop them. */
		if (s->tp->poll(s->dev, &ev, 1) == 1 && ev.type == RAGG_TP_EV_DISCONNECTED)
			perf_die("peer %s left", s->ep->peer);
		if (perf_now_ns() > deadline)
			perf_die("send: queue full for %d s", s->o->timeout_s);
	}
	if (rc)
		perf_die("send: %s", ragg_strerror(rc));
}

void perf_expect(struct perf_session *s, enum perf_op op, struct perf_msg *m)
{
	struct ragg_tp_event ev;
	for (;;) {
		if (perf_next(s, &ev))
			perf_die("peer %s left: %s", s->ep->peer, ragg_strerror(ev.status));
		if (ev.type != RAGG_TP_EV_RECV)
			continue;
		if (ev.len != sizeof(*m))
			perf_die("peer sent a %zu-byte message, not a ragg-perf one", ev.len);
		memcpy(m, ev.data, sizeof(*m));
		if (m->op != op)
			perf_die("peer sent message %u, expected %u", m->op, op);
		return;
	}
}

void perf_write(struct perf_session *s, const void *laddr, struct ragg_tp_mr *lmr, size_t len,
                uint32_t imm, unsigned flags, uint64_t cookie)
{
	int rc = s->tp->write_imm(s->ep, laddr, lmr, &s->remote, 0, len, imm, flags, cookie);
	if (rc)
		perf_die("write of %zu bytes: %s", len, ragg_strerror(rc));
}

/* ---- server ---- */

/* --seal: both ends call the transport's seal() where the stream turns
 * sealed (the acceptor right after accept(), the connector at CONNECTED),
 * under keys both derive from fixed labels: the cost of sealing, not its
 * protection. */
static void seal_session(struct perf_session *s, bool client)
{
	uint8_t c2s[RAGG_TP_SEAL_KEY_BYTES], s2c[RAGG_TP_SEAL_KEY_BYTES];
	if (sodium_init() < 0)
		perf_die("seal: libsodium does not start");
	crypto_generichash(c2s, sizeof(c2s), (const uint8_t *)"ragg-perf c2s", 13, NULL, 0);
	crypto_generichash(s2c, sizeof(s2c), (const uint8_t *)"ragg-perf s2c", 13, NULL, 0);
	unsigned cipher = crypto_aead_aes256gcm_is_available() ? RAGG_TP_SEAL_AES256GCM
	                                                       : RAGG_TP_SEAL_CHACHA20POLY1305;
	int rc = s->tp->seal(s->ep, cipher, client ? s2c : c2s, client ? c2s : s2c, sizeof(c2s));
	if (rc)
		perf_die("seal: %s", ragg_strerror(rc));
}

static bool accept_client(struct perf_session *s, const struct ragg_tp_event *ev)
{
	struct perf_hello in, out = { .magic = PERF_MAGIC, .version = PERF_VERSION };
	if (ev->len != sizeof(in)) {
		perf_log(RAGG_LOG_WARN, "%s: not a ragg-perf client, rejected", ev->ep->peer);
		return false;
	}
	memcpy(&in, ev->data, sizeof(in));
	if (in.magic != PERF_MAGIC || in.version != PERF_VERSION) {
		perf_log(RAGG_LOG_WARN, "%s: ragg-perf version %u, we are %u; rejected",
		         ev->ep->peer, in.version, PERF_VERSION);
		return false;
	}
	s->buf_len = in.buf_len;
	s->buf = alloc_buf(s, s->buf_len);
	reg(s, s->buf, s->buf_len, &s->mr, &out.rdesc);
	out.buf_len = s->buf_len;
	s->remote = in.rdesc;
	s->ep = ev->ep;
	int rc = s->tp->accept(ev->ep, &out, sizeof(out));
	if (rc)
		perf_die("accept %s: %s", ev->ep->peer, ragg_strerror(rc));
	if (s->o->seal)
		seal_session(s, false);
	return true;
}

int perf_server(const struct perf_opts *o)
{
	struct perf_session s;
	char spec[RAGG_TP_ADDR_MAX], addr[RAGG_TP_ADDR_MAX];
	open_dev(&s, o);
	const char *h = o->bind ? o->bind : "";
	snprintf(spec, sizeof(spec), strchr(h, ':') && h[0] != '[' ? "[%s]:%u" : "%s:%u", h,
	         o->port);
	int rc = s.tp->listen(s.dev, spec, addr, sizeof(addr));
	if (rc)
		perf_die("listen on %s: %s", spec, ragg_strerror(rc));
	fprintf(stderr, "ragg-perf: %s server on %s, waiting up to %d s for a client\n", s.tp->name,
	        addr, o->timeout_s);

	/* One client, then exit. */
	uint64_t deadline = perf_now_ns() + (uint64_t)o->timeout_s * 1000000000u;
	struct ragg_tp_event ev;
	while (!s.ep) {
		int n = s.tp->poll(s.dev, &ev, 1);
		if (n < 0)
			perf_die("poll: %s", ragg_strerror(n));
		if (n == 0) {
			if (perf_now_ns() > deadline)
				perf_die("no client within %d s", o->timeout_s);
			s.tp->wait(s.dev, 100);
			continue;
		}
		if (ev.type == RAGG_TP_EV_CONNECT_REQUEST && !accept_client(&s, &ev))
			s.tp->reject(ev.ep);
		else if (ev.type == RAGG_TP_EV_DISCONNECTED)
			s.tp->ep_close(ev.ep);
	}

	struct perf_opts so = *o;
	s.o = &so;
	for (;;) {
		struct perf_msg m;
		if (perf_next(&s, &ev))
			break; /* the client is gone: done */
		if (ev.type == RAGG_TP_EV_CONNECT_REQUEST) {
			s.tp->reject(ev.ep); /* one client at a time */
			continue;
		}
		if (ev.type == RAGG_TP_EV_DISCONNECTED) {
			s.tp->ep_close(ev.ep);
			continue;
		}
		if (ev.type != RAGG_TP_EV_RECV || ev.len != sizeof(m))
			continue;
		memcpy(&m, ev.data, sizeof(m));
		if (m.op == OP_QUIT)
			break;
		if (m.op != OP_BEGIN || m.size > s.buf_len)
			perf_die("client sent a bad request (op %u, size %llu)", m.op,
			         (unsigned long long)m.size);
		/* Latency is the client's measurement: answer at once. */
		so.busy = o->busy || m.mode == PERF_LAT;
		if (m.mode == PERF_LAT)
			perf_lat_server(&s, &m);
		else
			perf_bw_server(&s, &m);
	}
	close_session(&s);
	return 0;
}

/* ---- client ---- */

static void connect_server(struct perf_session *s, const struct perf_opts *o, size_t buf_len)
{
	char addr[RAGG_TP_ADDR_MAX];
	struct perf_hello out = { .magic = PERF_MAGIC,
		                  .version = PERF_VERSION,
		                  .buf_len = buf_len };
	const char *h = o->host;
	snprintf(addr, sizeof(addr), strchr(h, ':') && h[0] != '[' ? "[%s]:%u" : "%s:%u", h,
	         o->port);

	s->buf_len = buf_len;
	s->buf = alloc_buf(s, buf_len);
	s->src = alloc_buf(s, buf_len);
	for (size_t i = 0; i < buf_len; i++)
		s->src[i] = (uint8_t)(i * 7);
	struct ragg_tp_rdesc unused;
	reg(s, s->buf, buf_len, &s->mr, &out.rdesc);
	reg(s, s->src, buf_len, &s->src_mr, &unused);

	/* The server may still be starting: retry a refused connection. */
	uint64_t deadline = perf_now_ns() + (uint64_t)o->timeout_s * 1000000000u;
	for (;;) {
		int rc = s->tp->connect(s->dev, addr, &out, sizeof(out), NULL, &s->ep);
		if (rc)
			perf_die("connect %s: %s", addr, ragg_strerror(rc));
		struct ragg_tp_event ev;
		if (perf_next(s, &ev) == 0 && ev.type == RAGG_TP_EV_CONNECTED) {
			struct perf_hello in;
			if (ev.len != sizeof(in))
				perf_die("%s is not a ragg-perf server", addr);
			memcpy(&in, ev.data, sizeof(in));
			if (in.magic != PERF_MAGIC || in.buf_len < buf_len)
				perf_die("%s is not a ragg-perf server", addr);
			s->remote = in.rdesc;
			if (o->seal)
				seal_session(s, true);
			return;
		}
		int status = ev.type == RAGG_TP_EV_DISCONNECTED ? ev.status : -EPROTO;
		s->tp->ep_close(s->ep);
		s->ep = NULL;
		if (status != -ECONNREFUSED || perf_now_ns() > deadline)
			perf_die("connect %s: %s", addr, ragg_strerror(status));
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

int perf_client(const struct perf_opts *opts)
{
	struct perf_session s;
	struct perf_opts co = *opts;
	const struct perf_opts *o = &co;
	size_t lo = o->mode == PERF_BW ? 65536 : 2; /* perftest's -a starts at 2 */
	open_dev(&s, o);
	if (o->all && lo > o->max_size)
		lo = o->max_size;
	size_t buf_len = o->all ? o->max_size : o->size;
	connect_server(&s, o, buf_len ? buf_len : 1);
	if (co.depth <= 0 || co.depth > s.queue_depth)
		co.depth = s.queue_depth;

	perf_report_header(o);
	for (size_t size = o->all ? lo : o->size;;) {
		if (o->mode != PERF_LAT) {
			struct perf_bw_result r;
			perf_bw_client(&s, size, &r);
			perf_report_bw(o, &r);
		} else {
			struct perf_lat_result r;
			perf_lat_client(&s, size, &r);
			perf_report_lat(o, &r);
		}
		if (!o->all || size >= o->max_size)
			break;
		size = size * 2 > o->max_size ? o->max_size : size * 2;
	}
	perf_report_summary(o);
	struct perf_msg quit = { .op = OP_QUIT };
	perf_send(&s, &quit);
	/* Let the message leave before the socket does. */
	struct ragg_tp_event ev;
	for (int i = 0; i < 100; i++)
		s.tp->poll(s.dev, &ev, 1);
	close_session(&s);
	return 0;
}
