/* Conformance: devices, connection setup and teardown. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tpc.h"

TPC_CASE(probe_open_query)
{
	char why[128] = "";
	RAGG_CHECK(tp->abi == RAGG_TP_ABI_VERSION);
	RAGG_CHECK(tp->name && *tp->name);
	RAGG_CHECK((tp->caps & (RAGG_TP_CAP_WRITE_IMM | RAGG_TP_CAP_SEND)) ==
	           (RAGG_TP_CAP_WRITE_IMM | RAGG_TP_CAP_SEND));
	RAGG_CHECK_OK(tp->probe(why, sizeof(why)));
	/* Every op is present: a transport lacking one fills a stub. */
	RAGG_CHECK(tp->open && tp->close && tp->query && tp->mr_reg && tp->mr_dereg && tp->listen &&
	           tp->connect && tp->accept && tp->reject && tp->ep_close && tp->write_imm &&
	           tp->send && tp->poll && tp->wait && tp->describe);
	/* The library understands the table: the check it makes before
	 * opening any. */
	RAGG_CHECKF(ragg_transport_check(tp, why, sizeof(why)) == 0, "%s", why);

	struct tpc_world w;
	tpc_world_init(&w, tp, 1);
	struct ragg_tp_attr attr;
	memset(&attr, 0xff, sizeof(attr));
	RAGG_CHECK_OK(tp->query(w.dev[0], &attr));
	RAGG_CHECK(attr.size == sizeof(attr));
	RAGG_CHECKF(attr.max_write >= ((size_t)256 << 20), "max_write %zu", attr.max_write);
	RAGG_CHECK(attr.max_priv >= 32 && attr.max_priv <= RAGG_TP_PRIV_MAX);
	RAGG_CHECK(attr.queue_depth > 0);
	RAGG_CHECK(memchr(attr.device, '\0', sizeof(attr.device)) != NULL);

	/* Nothing to report: poll returns 0, wait times out. */
	struct ragg_tp_event ev[4];
	RAGG_CHECK(tp->poll(w.dev[0], ev, 4) == 0);
	uint64_t t0 = tpc_now_ms();
	RAGG_CHECK_OK(tp->wait(w.dev[0], 50));
	RAGG_CHECK(tpc_now_ms() - t0 < 5000);
	tpc_world_fini(&w);
}

/* describe: text for ragg-info, needing no open device, or -EOPNOTSUPP;
 * always NUL-terminated, also when cut short. */
TPC_CASE(describe)
{
	static char buf[16384];
	char small[8];
	memset(buf, 0x7f, sizeof(buf));
	int rc = tp->describe(buf, sizeof(buf));
	RAGG_CHECKF(rc == 0 || rc == -EOPNOTSUPP, "describe: %s", ragg_strerror(rc));
	RAGG_CHECK(memchr(buf, '\0', sizeof(buf)) != NULL);
	if (rc == -EOPNOTSUPP)
		RAGG_CHECK(buf[0] == '\0');
	/* Lines indented by two spaces, each ending in a newline. */
	for (const char *line = buf; *line;) {
		const char *nl = strchr(line, '\n');
		RAGG_CHECKF(nl != NULL, "unterminated line \"%s\"", line);
		RAGG_CHECKF(line[0] == ' ' && line[1] == ' ', "line \"%.*s\" not indented",
		            (int)(nl - line), line);
		line = nl + 1;
	}
	memset(small, 0x7f, sizeof(small));
	rc = tp->describe(small, sizeof(small));
	RAGG_CHECK(rc == 0 || rc == -EOPNOTSUPP);
	RAGG_CHECK(memchr(small, '\0', sizeof(small)) != NULL);
}

TPC_CASE(connect_private_data)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 2);
	uint8_t cpriv[RAGG_TP_PRIV_MAX], spriv[RAGG_TP_PRIV_MAX];
	tpc_fill(cpriv, sizeof(cpriv), 1);
	tpc_fill(spriv, sizeof(spriv), 2);
	struct ragg_tp_ep *s1, *c1, *s2, *c2;
	/* The largest private data the transport says it carries (verbs:
	 * rdma_cm's field less a length byte), both ways, then none at all. */
	struct ragg_tp_attr attr = { .size = sizeof(attr) };
	RAGG_CHECK_OK(tp->query(w.dev[0], &attr));
	RAGG_CHECK(attr.max_priv >= 32 && attr.max_priv <= RAGG_TP_PRIV_MAX);
	tpc_pair(&w, 0, 1, cpriv, attr.max_priv, spriv, attr.max_priv, &s1, &c1);
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s2, &c2);
	RAGG_CHECK(s1 != s2 && c1 != c2);
	RAGG_CHECK(s1->peer[0] && c1->peer[0]);
	RAGG_CHECK(memchr(s1->peer, '\0', sizeof(s1->peer)) != NULL);

	/* Too much private data is refused up front. */
	uint8_t big[RAGG_TP_PRIV_MAX + 1] = { 0 };
	struct ragg_tp_ep *bad = NULL;
	int rc = tp->connect(w.dev[1], w.addr[0], big, attr.max_priv + 1, NULL, &bad);
	RAGG_CHECKF(rc < 0 && bad == NULL, "connect with %zu bytes: %d", attr.max_priv + 1, rc);

	tp->ep_close(c1);
	tp->ep_close(c2);
	tp->ep_close(s1);
	tp->ep_close(s2);
	tpc_world_fini(&w);
}

TPC_CASE(reject)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 2);
	const char *addr = tpc_listen(&w, 0);
	struct ragg_tp_ep *ce;
	RAGG_CHECK_OK(tp->connect(w.dev[1], addr, "no", 2, NULL, &ce));
	struct tpc_ev req = tpc_expect(&w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
	RAGG_CHECK_OK(tp->reject(req.ev.ep));
	struct tpc_ev d = tpc_expect(&w, 1, RAGG_TP_EV_DISCONNECTED, ce, TPC_DEADLINE_MS);
	RAGG_CHECKF(d.ev.status < 0, "status %d", d.ev.status);
	if (tpc_is(tp, "tcp")) {
		RAGG_CHECKF(d.ev.status == -ECONNREFUSED, "status %s",
		            ragg_strerror_name(d.ev.status));
		/* The rejected endpoint reports its end too, so a core that
		 * keeps nothing of it knows when to close it. */
		d = tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, req.ev.ep, TPC_DEADLINE_MS);
		RAGG_CHECK(d.ev.status == -ECONNREFUSED);
	}
	RAGG_CHECK(tpc_count(&w, 1, RAGG_TP_EV_CONNECTED, ce) == 0);
	/* Writes and messages on it fail, they do not crash or hang. */
	RAGG_CHECK(tp->send(ce, "x", 1) < 0);
	tp->ep_close(ce);
	tp->ep_close(req.ev.ep);

	/* The listener still takes connections. */
	struct ragg_tp_ep *s, *c;
	tpc_pair(&w, 0, 1, "yes", 3, "ok", 2, &s, &c);
	tp->ep_close(c);
	tp->ep_close(s);
	tpc_world_fini(&w);
}

TPC_CASE(connect_closed_port)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 2);
	char addr[RAGG_TP_ADDR_MAX];
	snprintf(addr, sizeof(addr), "%s", tpc_listen(&w, 0));
	/* Nobody listens there any more. */
	tp->close(w.dev[0]);
	w.dev[0] = NULL;

	struct ragg_tp_ep *ce;
	uint64_t t0 = tpc_now_ms();
	RAGG_CHECK_OK(tp->connect(w.dev[1], addr, NULL, 0, NULL, &ce));
	struct tpc_ev d = tpc_expect(&w, 1, RAGG_TP_EV_DISCONNECTED, ce, TPC_DEADLINE_MS);
	RAGG_CHECKF(d.ev.status < 0, "status %d", d.ev.status);
	if (tpc_is(tp, "tcp"))
		RAGG_CHECKF(d.ev.status == -ECONNREFUSED, "status %s",
		            ragg_strerror_name(d.ev.status));
	RAGG_CHECK(tpc_now_ms() - t0 < TPC_DEADLINE_MS);
	RAGG_CHECK(tpc_count(&w, 1, RAGG_TP_EV_CONNECTED, ce) == 0);
	tp->ep_close(ce);
	tpc_world_fini(&w);
}

TPC_CASE(bad_addresses)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 1);
	static const char *const bad[] = { "",     "nocolon", "127.0.0.1:", "127.0.0.1:notaport",
		                           "[::1", "[::1]x" };
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(bad); i++) {
		struct ragg_tp_ep *ep = NULL;
		int rc = tp->connect(w.dev[0], bad[i], NULL, 0, NULL, &ep);
		if (rc == 0) {
			/* A transport may report the failure as an event. */
			struct tpc_ev d =
			    tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, ep, TPC_DEADLINE_MS);
			RAGG_CHECK(d.ev.status < 0);
			tp->ep_close(ep);
		} else {
			RAGG_CHECK(ep == NULL);
		}
	}
	tpc_world_fini(&w);
}

TPC_CASE(peer_close)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 3);
	struct ragg_tp_ep *s1, *c1, *s2, *c2;
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s1, &c1);
	tpc_pair(&w, 0, 2, NULL, 0, NULL, 0, &s2, &c2);

	/* The connector closes its endpoint: the acceptor hears of it. */
	tp->ep_close(c1);
	struct tpc_ev d = tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, s1, TPC_DEADLINE_MS);
	RAGG_CHECK(d.ev.status <= 0);
	RAGG_CHECK(tp->send(s1, "x", 1) < 0);
	tp->ep_close(s1);

	/* A whole device goes away: its peers hear of it. */
	tp->close(w.dev[0]);
	w.dev[0] = NULL;
	d = tpc_expect(&w, 2, RAGG_TP_EV_DISCONNECTED, c2, TPC_DEADLINE_MS);
	RAGG_CHECK(d.ev.status <= 0);
	/* Exactly once. */
	for (int i = 0; i < 20; i++)
		tpc_pump(&w);
	RAGG_CHECK(tpc_count(&w, 2, RAGG_TP_EV_DISCONNECTED, c2) == 0);
	tp->ep_close(c2);
	tpc_world_fini(&w);
}

TPC_CASE(close_pending)
{
	/* Endpoints closed in every state, and a device closed with
	 * endpoints and regions still open, leak and crash nothing. */
	struct tpc_world w;
	tpc_world_init(&w, tp, 2);
	const char *addr = tpc_listen(&w, 0);
	struct ragg_tp_ep *c1, *c2;
	RAGG_CHECK_OK(tp->connect(w.dev[1], addr, NULL, 0, NULL, &c1));
	tp->ep_close(c1); /* while connecting */
	RAGG_CHECK_OK(tp->connect(w.dev[1], addr, NULL, 0, NULL, &c2));
	/* Requested, neither accepted nor rejected, then closed: the
	 * connector hears of it. */
	struct tpc_ev e;
	uint64_t deadline = tpc_now_ms() + TPC_DEADLINE_MS;
	while (!tpc_take(&w, 1, RAGG_TP_EV_DISCONNECTED, c2, &e)) {
		RAGG_CHECK(tpc_now_ms() < deadline);
		if (tpc_take(&w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL, &e))
			tp->ep_close(e.ev.ep);
		tpc_pump(&w);
	}
	RAGG_CHECK(e.ev.status < 0);
	tp->ep_close(c2);

	struct ragg_tp_ep *s3, *c3;
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s3, &c3);
	static uint8_t buf[1 << 20];
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK_OK(tp->mr_reg(w.dev[0], buf, sizeof(buf), &mr, &rd));
	/* Writes still queued when the device closes. */
	for (int i = 0; i < 8; i++)
		if (tp->write_imm(c3, buf, NULL, &rd, 0, sizeof(buf), (uint32_t)i,
		                  RAGG_TP_WRITE_IMM, 0))
			break;
	tpc_world_fini(&w);
}

TPC_CASE(wake_fd)
{
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	RAGG_CHECK(efd >= 0);
	struct tpc_world w;
	struct ragg_tp_params p;
	tpc_params(&p);
	p.wake_fd = efd;
	memset(&w, 0, sizeof(w));
	w.tp = tp;
	tpc_world_add(&w, &p);

	/* Not readable: wait() sleeps its timeout. */
	uint64_t t0 = tpc_now_ms();
	RAGG_CHECK_OK(tp->wait(w.dev[0], 100));
	RAGG_CHECK(tpc_now_ms() - t0 >= 80);

	/* Readable: wait() returns at once, and leaves the data alone. */
	uint64_t one = 1;
	RAGG_CHECK(write(efd, &one, sizeof(one)) == sizeof(one));
	t0 = tpc_now_ms();
	RAGG_CHECK_OK(tp->wait(w.dev[0], 5000));
	RAGG_CHECK(tpc_now_ms() - t0 < 1000);
	struct ragg_tp_event ev[4];
	RAGG_CHECK(tp->poll(w.dev[0], ev, 4) == 0);
	uint64_t v = 0;
	RAGG_CHECK(read(efd, &v, sizeof(v)) == sizeof(v) && v == 1);

	/* Woken from another thread's write while asleep: a child process
	 * stands in for it. */
	pid_t pid = fork();
	RAGG_CHECK(pid >= 0);
	if (pid == 0) {
		usleep(100 * 1000);
		ssize_t n = write(efd, &one, sizeof(one));
		_exit(n == sizeof(one) ? 0 : 1);
	}
	t0 = tpc_now_ms();
	RAGG_CHECK_OK(tp->wait(w.dev[0], 10000));
	RAGG_CHECK(tpc_now_ms() - t0 < 5000);
	RAGG_CHECK(read(efd, &v, sizeof(v)) == sizeof(v) && v == 1);
	tpc_world_fini(&w);

	/* Set after open(), as a core does once its engine is up; and
	 * cleared again. */
	tpc_params(&p);
	w.tp = tp;
	tpc_world_add(&w, &p);
	w.dev[0]->params.wake_fd = efd;
	RAGG_CHECK(write(efd, &one, sizeof(one)) == sizeof(one));
	t0 = tpc_now_ms();
	RAGG_CHECK_OK(tp->wait(w.dev[0], 5000));
	RAGG_CHECK(tpc_now_ms() - t0 < 1000);
	w.dev[0]->params.wake_fd = -1;
	t0 = tpc_now_ms();
	RAGG_CHECK_OK(tp->wait(w.dev[0], 100));
	RAGG_CHECK(tpc_now_ms() - t0 >= 80);
	tpc_world_fini(&w);
	close(efd);
}
