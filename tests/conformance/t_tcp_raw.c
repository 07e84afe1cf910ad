/*
 * tcp only: a hand-made client speaking (or failing to speak) the wire
 * format. Whatever it sends, the device drops it with the right reason,
 * changes no byte of any region and keeps serving its good connection.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tcp.h"
#include "tpc.h"
#include "wire.h"

static int raw_connect(const char *addr)
{
	char host[256], port[32];
	RAGG_CHECK_OK(ragg__tcp_addr_split(addr, host, sizeof(host), port, sizeof(port)));
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	RAGG_CHECK(getaddrinfo(host, port, &hints, &res) == 0);
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	RAGG_CHECK(fd >= 0);
	/* The kernel completes the handshake from the backlog; no poll of
	 * the device needed. */
	RAGG_CHECK(connect(fd, res->ai_addr, res->ai_addrlen) == 0);
	freeaddrinfo(res);
	return fd;
}

static void raw_send(int fd, const void *buf, size_t len)
{
	RAGG_CHECK(send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len);
}

static void raw_frame(int fd, const struct ragg__tcp_frame *f, uint8_t version)
{
	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	ragg__tcp_frame_encode(f, hdr);
	hdr[4] = version;
	raw_send(fd, hdr, sizeof(hdr));
}

/* The header of a write with an immediate into the region d describes. */
static void raw_write_header(int fd, const struct ragg__tcp_rdesc *d, uint32_t imm, uint64_t offset,
                             uint64_t length)
{
	struct ragg__tcp_frame f = { .type = RAGG__TCP_WRITE,
		                     .flags = RAGG__TCP_F_IMM,
		                     .imm = imm,
		                     .region = d->region,
		                     .key = d->key,
		                     .offset = offset,
		                     .length = length };
	raw_frame(fd, &f, RAGG__TCP_VERSION);
}

/* Read exactly len bytes while the device is polled; false at EOF or
 * reset. */
static bool raw_read(struct tpc_world *w, int fd, void *buf, size_t len)
{
	uint64_t deadline = tpc_now_ms() + TPC_DEADLINE_MS;
	size_t got = 0;
	while (got < len) {
		RAGG_CHECKF(tpc_now_ms() < deadline, "raw client: nothing for %d ms",
		            TPC_DEADLINE_MS);
		tpc_pump(w);
		ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return false;
		if (n < 0) {
			RAGG_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
			continue;
		}
		got += (size_t)n;
	}
	return true;
}

/* The device drops us: maybe an ERR frame first (its status comes back),
 * then end of stream. */
static int raw_expect_dropped(struct tpc_world *w, int fd)
{
	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	struct ragg__tcp_frame f;
	int status = 0;
	while (raw_read(w, fd, hdr, sizeof(hdr))) {
		RAGG_CHECK_OK(ragg__tcp_frame_decode(hdr, &f));
		RAGG_CHECKF(f.type == RAGG__TCP_ERR, "raw client got frame type %u", f.type);
		status = (int32_t)f.imm;
	}
	close(fd);
	return status;
}

/* Hello, CONNECT_REQUEST, accept with the slot's descriptor, ACCEPT. */
static int raw_handshake(struct tpc_world *w, const struct tpc_slot *slot,
                         struct ragg__tcp_rdesc *d, struct ragg_tp_ep **sep)
{
	int fd = raw_connect(tpc_listen(w, 0));
	struct ragg__tcp_frame hello = { .type = RAGG__TCP_HELLO, .length = 3 };
	raw_frame(fd, &hello, RAGG__TCP_VERSION);
	raw_send(fd, "raw", 3);
	struct tpc_ev r = tpc_expect(w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
	RAGG_CHECK(r.ev.len == 3 && memcmp(r.ev.data, "raw", 3) == 0);
	RAGG_CHECK_OK(w->tp->accept(r.ev.ep, &slot->rd, sizeof(slot->rd)));
	tpc_expect(w, 0, RAGG_TP_EV_CONNECTED, r.ev.ep, TPC_DEADLINE_MS);

	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	struct ragg__tcp_frame f;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK(raw_read(w, fd, hdr, sizeof(hdr)));
	RAGG_CHECK_OK(ragg__tcp_frame_decode(hdr, &f));
	RAGG_CHECK(f.type == RAGG__TCP_ACCEPT && f.length == sizeof(rd));
	RAGG_CHECK(raw_read(w, fd, &rd, sizeof(rd)));
	RAGG_CHECK_OK(ragg__tcp_rdesc_unpack(&rd, d));
	*sep = r.ev.ep;
	return fd;
}

struct raw_scene {
	struct tpc_world w;
	struct ragg_tp_ep *s, *c; /* the good connection */
	struct tpc_slot slot, good;
	uint32_t imm;
};

static void raw_init(struct raw_scene *sc, const struct ragg_tp_ops *tp, int timeout_ms)
{
	struct ragg_tp_params p;
	memset(sc, 0, sizeof(*sc));
	sc->w.tp = tp;
	tpc_params(&p);
	p.timeout_ms = timeout_ms;
	tpc_world_add(&sc->w, &p);
	tpc_params(&p);
	tpc_world_add(&sc->w, &p);
	tpc_pair(&sc->w, 0, 1, NULL, 0, NULL, 0, &sc->s, &sc->c);
	tpc_slot_init(&sc->w, 0, &sc->slot, 4096);
	tpc_slot_init(&sc->w, 0, &sc->good, 4096);
}

static void raw_fini(struct raw_scene *sc)
{
	tpc_slot_check_untouched(&sc->slot, 0);
	sc->w.tp->ep_close(sc->c);
	sc->w.tp->ep_close(sc->s);
	tpc_slot_fini(&sc->w, &sc->slot);
	tpc_slot_fini(&sc->w, &sc->good);
	tpc_world_fini(&sc->w);
}

static void good_still_works(struct raw_scene *sc)
{
	static uint8_t src[128];
	uint32_t imm = ++sc->imm;
	memset(src, (int)imm, sizeof(src));
	tpc_write(&sc->w, sc->c, src, NULL, &sc->good.rd, 0, sizeof(src), imm, RAGG_TP_WRITE_IMM,
	          0);
	struct tpc_ev l = tpc_expect(&sc->w, 0, RAGG_TP_EV_WRITE_LANDED, sc->s, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == imm && memcmp(sc->good.addr, src, sizeof(src)) == 0);
	RAGG_CHECK(tpc_count(&sc->w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL) == 0);
	RAGG_CHECK(tpc_count(&sc->w, 1, RAGG_TP_EV_DISCONNECTED, NULL) == 0);
}

TPC_CASE_ONLY(tcp_raw_garbage, "tcp")
{
	struct raw_scene sc;
	raw_init(&sc, tp, 10000);
	static const char *const junk[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS client hello, more or less....",
		"RGxx", /* shorter than a header: refused by its first bytes */
		NULL, /* random bytes */
	};
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(junk); i++) {
		tpc_log_clear();
		int fd = raw_connect(tpc_listen(&sc.w, 0));
		uint8_t rnd[100];
		tpc_fill(rnd, sizeof(rnd), i);
		rnd[0] = 'x';
		if (junk[i])
			raw_send(fd, junk[i], strlen(junk[i]));
		else
			raw_send(fd, rnd, sizeof(rnd));
		raw_expect_dropped(&sc.w, fd);
		RAGG_CHECKF(tpc_log_has("RAGG_ERR_PROTO"), "garbage %zu: RAGG_ERR_PROTO not logged",
		            i);
		good_still_works(&sc);
	}
	raw_fini(&sc);
}

TPC_CASE_ONLY(tcp_raw_bad_hello, "tcp")
{
	struct raw_scene sc;
	raw_init(&sc, tp, 10000);

	/* Another version: told so, in a header it can read, then dropped. */
	static const uint8_t versions[] = { 0, 2, 255 };
	for (size_t i = 0; i < sizeof(versions); i++) {
		tpc_log_clear();
		int fd = raw_connect(tpc_listen(&sc.w, 0));
		struct ragg__tcp_frame hello = { .type = RAGG__TCP_HELLO };
		raw_frame(fd, &hello, versions[i]);
		int st = raw_expect_dropped(&sc.w, fd);
		RAGG_CHECKF(st == RAGG_ERR_VERSION, "version %u: told %s", versions[i],
		            ragg_strerror_name(st));
		RAGG_CHECK(tpc_log_has("RAGG_ERR_VERSION"));
		good_still_works(&sc);
	}

	/* Right version, wrong content. */
	struct ragg__tcp_frame bad[] = {
		{ .type = RAGG__TCP_WRITE, .length = 8 }, /* a write before hello */
		{ .type = RAGG__TCP_MSG, .length = 8 }, /* a message before hello */
		{ .type = RAGG__TCP_ACCEPT }, /* the other side's frame */
		{ .type = RAGG__TCP_ERR, .imm = (uint32_t)-5 }, /* an error before hello */
		{ .type = 9 }, /* unknown type */
		{ .type = RAGG__TCP_HELLO, .length = RAGG_TP_PRIV_MAX + 1 }, /* too much */
		{ .type = RAGG__TCP_HELLO, .flags = 1 }, /* flags it has none of */
		{ .type = RAGG__TCP_HELLO, .key = 1 }, /* a field it does not use */
	};
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(bad); i++) {
		tpc_log_clear();
		int fd = raw_connect(tpc_listen(&sc.w, 0));
		raw_frame(fd, &bad[i], RAGG__TCP_VERSION);
		uint8_t pad[64] = { 0 };
		send(fd, pad, sizeof(pad), MSG_NOSIGNAL);
		raw_expect_dropped(&sc.w, fd);
		RAGG_CHECKF(tpc_log_has("RAGG_ERR_PROTO"),
		            "bad hello %zu: RAGG_ERR_PROTO not logged", i);
		good_still_works(&sc);
	}
	raw_fini(&sc);
}

TPC_CASE_ONLY(tcp_raw_half_open, "tcp")
{
	/* Peers that connect and say nothing (or half a header) block
	 * nobody, and are dropped after params.timeout_ms. */
	struct raw_scene sc;
	raw_init(&sc, tp, 300);
	int silent = raw_connect(tpc_listen(&sc.w, 0));
	int half = raw_connect(tpc_listen(&sc.w, 0));
	struct ragg__tcp_frame hello = { .type = RAGG__TCP_HELLO, .length = 4 };
	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	ragg__tcp_frame_encode(&hello, hdr);
	raw_send(half, hdr, 20);
	int partial = raw_connect(tpc_listen(&sc.w, 0));
	raw_send(partial, hdr, sizeof(hdr));
	raw_send(partial, "ab", 2); /* two of the four bytes of private data */

	uint64_t t0 = tpc_now_ms();
	for (int i = 0; i < 5; i++)
		good_still_works(&sc);
	raw_expect_dropped(&sc.w, silent);
	raw_expect_dropped(&sc.w, half);
	raw_expect_dropped(&sc.w, partial);
	uint64_t took = tpc_now_ms() - t0;
	RAGG_CHECKF(took < 5000, "half-open connections dropped after %llu ms",
	            (unsigned long long)took);
	RAGG_CHECK(tpc_log_has("no hello within"));
	good_still_works(&sc);
	raw_fini(&sc);
}

enum { REGION_OK, REGION_OTHER, REGION_MAX };

struct bad_write {
	const char *what;
	uint8_t type;
	uint16_t flags;
	int region;
	int key_flip;
	uint64_t offset, length;
	int want;
};

TPC_CASE_ONLY(tcp_raw_bad_frames, "tcp")
{
	/* After a proper handshake: frames a correct sender never makes. The
	 * payload follows every header, and none of it may land. */
	struct raw_scene sc;
	raw_init(&sc, tp, 10000);
	struct ragg__tcp_rdesc d;
	struct ragg_tp_ep *sep;
	int fd = raw_handshake(&sc.w, &sc.slot, &d, &sep);

	/* First one that is fine, to show the raw client is right. */
	raw_write_header(fd, &d, 42, 100, 8);
	raw_send(fd, "landed!!", 8);
	struct tpc_ev l = tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sep, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 42 && l.ev.len == 8 && !memcmp(sc.slot.addr + 100, "landed!!", 8));
	memset(sc.slot.addr + 100, 0, 8);
	close(fd);
	tpc_expect(&sc.w, 0, RAGG_TP_EV_DISCONNECTED, sep, TPC_DEADLINE_MS);
	tp->ep_close(sep);

	const uint64_t n = sc.slot.len;
	const uint8_t W = RAGG__TCP_WRITE;
	const struct bad_write bad[] = {
		{ "offset+len past the end", W, 0, REGION_OK, 0, n - 4, 8, RAGG_ERR_BOUNDS },
		{ "offset past the end", W, 0, REGION_OK, 0, n + 1, 0, RAGG_ERR_BOUNDS },
		{ "longer than the region", W, 0, REGION_OK, 0, 0, n + 1, RAGG_ERR_BOUNDS },
		{ "offset wraps", W, 0, REGION_OK, 0, UINT64_MAX - 10, 100, RAGG_ERR_BOUNDS },
		{ "offset+len wraps to 0", W, 0, REGION_OK, 0, UINT64_MAX - 7, 8, RAGG_ERR_BOUNDS },
		{ "offset+len wraps small", W, 0, REGION_OK, 0, UINT64_MAX - 7, 16,
		  RAGG_ERR_BOUNDS },
		{ "huge offset, huge length", W, 0, REGION_OK, 0, UINT64_C(1) << 63,
		  RAGG__TCP_MAX_WRITE, RAGG_ERR_BOUNDS },
		{ "wrong key", W, 0, REGION_OK, 1, 0, 8, RAGG_ERR_KEY },
		{ "no such region", W, 0, REGION_OTHER, 0, 0, 8, RAGG_ERR_KEY },
		{ "region UINT32_MAX", W, 0, REGION_MAX, 0, 0, 8, RAGG_ERR_KEY },
		{ "length over the limit", W, 0, REGION_OK, 0, 0, RAGG__TCP_MAX_WRITE + 1,
		  RAGG_ERR_PROTO },
		{ "length UINT64_MAX", W, 0, REGION_OK, 0, 0, UINT64_MAX, RAGG_ERR_PROTO },
		{ "unknown flag", W, 0x8000, REGION_OK, 0, 0, 8, RAGG_ERR_PROTO },
		{ "message too long", RAGG__TCP_MSG, 0, -1, 0, 0, RAGG_TP_MSG_MAX + 1,
		  RAGG_ERR_PROTO },
		{ "second hello", RAGG__TCP_HELLO, 0, -1, 0, 0, 0, RAGG_ERR_PROTO },
		{ "accept from the connector", RAGG__TCP_ACCEPT, 0, -1, 0, 0, 0, RAGG_ERR_PROTO },
		{ "unknown type", 77, 0, -1, 0, 0, 0, RAGG_ERR_PROTO },
	};
	static uint8_t payload[4096];
	memset(payload, 0x5A, sizeof(payload));
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(bad); i++) {
		const struct bad_write *b = &bad[i];
		fd = raw_handshake(&sc.w, &sc.slot, &d, &sep);
		tpc_log_clear();
		struct ragg__tcp_frame f = { .type = b->type,
			                     .flags = b->flags,
			                     .length = b->length };
		if (b->region >= 0) {
			f.flags |= RAGG__TCP_F_IMM;
			f.imm = 7;
			f.region = b->region == REGION_OK      ? d.region
			           : b->region == REGION_OTHER ? d.region + 7
			                                       : UINT32_MAX;
			f.key = d.key ^ (uint64_t)b->key_flip;
			f.offset = b->offset;
		}
		raw_frame(fd, &f, RAGG__TCP_VERSION);
		/* As much payload as the header claims, up to a page. */
		send(fd, payload, b->length < sizeof(payload) ? b->length : sizeof(payload),
		     MSG_NOSIGNAL);
		struct tpc_ev e =
		    tpc_expect(&sc.w, 0, RAGG_TP_EV_DISCONNECTED, sep, TPC_DEADLINE_MS);
		RAGG_CHECKF(e.ev.status == b->want, "%s: status %s, want %s", b->what,
		            ragg_strerror_name(e.ev.status), ragg_strerror_name(b->want));
		RAGG_CHECKF(tpc_log_has(ragg_strerror_name(b->want)), "%s: %s not logged", b->what,
		            ragg_strerror_name(b->want));
		int told = raw_expect_dropped(&sc.w, fd);
		RAGG_CHECKF(told == 0 || told == b->want, "%s: peer told %s", b->what,
		            ragg_strerror_name(told));
		RAGG_CHECK(tpc_count(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);
		RAGG_CHECK(tpc_count(&sc.w, 0, RAGG_TP_EV_RECV, NULL) == 0);
		tpc_slot_check_untouched(&sc.slot, 0);
		tpc_slot_check_untouched(&sc.good, -1);
		tp->ep_close(sep);
		good_still_works(&sc);
	}
	raw_fini(&sc);
}

/* Send len bytes while the device is polled (a large payload does not fit
 * in the sockets' buffers). */
static void raw_send_pumped(struct tpc_world *w, int fd, const uint8_t *buf, size_t len)
{
	uint64_t deadline = tpc_now_ms() + TPC_DEADLINE_MS;
	while (len) {
		RAGG_CHECKF(tpc_now_ms() < deadline, "raw client: could not send for %d ms",
		            TPC_DEADLINE_MS);
		ssize_t n = send(fd, buf, len < 65536 ? len : 65536, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			RAGG_CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
			tpc_pump(w);
			continue;
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Poll the device for ms milliseconds. */
static void raw_pump_for(struct tpc_world *w, int ms)
{
	uint64_t until = tpc_now_ms() + (uint64_t)ms;
	while (tpc_now_ms() < until)
		tpc_pump(w);
}

TPC_CASE_ONLY(tcp_raw_payload_in_pieces, "tcp")
{
	/* A large write whose payload comes in pieces with pauses between
	 * them, its last piece far smaller than the rest: it lands once, whole,
	 * only after its last byte, and a small write right behind it lands
	 * too. The receiver asks the kernel to wake it only once much of a
	 * large payload is in (SO_RCVLOWAT); whatever it asked, the end of a
	 * payload and the next frame must still be seen. */
	struct raw_scene sc;
	raw_init(&sc, tp, 10000);
	struct tpc_slot big;
	const size_t n = (size_t)3 << 20;
	tpc_slot_init(&sc.w, 0, &big, n + 4096);
	struct ragg__tcp_rdesc d;
	struct ragg_tp_ep *sep;
	int fd = raw_handshake(&sc.w, &big, &d, &sep);
	uint8_t *src = malloc(n);
	RAGG_CHECK(src != NULL);
	for (size_t i = 0; i < n; i++)
		src[i] = (uint8_t)(i * 131 + (i >> 16));
	raw_write_header(fd, &d, 5, 0, n);
	const size_t cut[] = {
		0, ((size_t)1 << 20) + 17, n - ((size_t)600 << 10), n - 100, n - 1, n
	};
	for (size_t i = 0; i + 1 < RAGG_ARRAY_SIZE(cut); i++) {
		raw_send_pumped(&sc.w, fd, src + cut[i], cut[i + 1] - cut[i]);
		raw_pump_for(&sc.w, 30);
		if (cut[i + 1] < n)
			RAGG_CHECKF(tpc_count(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0,
			            "landed after %zu of %zu bytes", cut[i + 1], n);
	}
	struct tpc_ev l = tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sep, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 5 && l.ev.len == n && memcmp(big.addr, src, n) == 0);
	raw_write_header(fd, &d, 6, n, 8);
	raw_send(fd, "trailing", 8);
	l = tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sep, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 6 && l.ev.len == 8 && memcmp(big.addr + n, "trailing", 8) == 0);
	RAGG_CHECK(tpc_count(&sc.w, 0, RAGG_TP_EV_DISCONNECTED, NULL) == 0);
	free(src);
	close(fd);
	tpc_expect(&sc.w, 0, RAGG_TP_EV_DISCONNECTED, sep, TPC_DEADLINE_MS);
	tp->ep_close(sep);
	tpc_slot_fini(&sc.w, &big);
	raw_fini(&sc);
}

TPC_CASE_ONLY(tcp_addresses, "tcp")
{
	static const char *const specs[] = { "127.0.0.1:0", "localhost:0", "[::1]:0", "", NULL };
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(specs); i++) {
		struct tpc_world w;
		tpc_world_init(&w, tp, 2);
		int rc = tp->listen(w.dev[0], specs[i], w.addr[0], sizeof(w.addr[0]));
		if (rc && specs[i] && strchr(specs[i], '[')) {
			/* No IPv6 on this host. */
			tpc_world_fini(&w);
			continue;
		}
		RAGG_CHECKF(rc == 0, "listen \"%s\": %s", specs[i] ? specs[i] : "(null)",
		            ragg_strerror(rc));
		/* One listener per device. */
		char again[RAGG_TP_ADDR_MAX];
		RAGG_CHECK(tp->listen(w.dev[0], "127.0.0.1:0", again, sizeof(again)) < 0);
		/* The address written back is connectable, and not a wildcard. */
		RAGG_CHECKF(strncmp(w.addr[0], "0.0.0.0", 7) && strncmp(w.addr[0], "[::]", 4),
		            "listen \"%s\" advertised %s", specs[i] ? specs[i] : "(null)",
		            w.addr[0]);
		struct ragg_tp_ep *s, *c;
		tpc_pair(&w, 0, 1, "hi", 2, "ho", 2, &s, &c);
		tp->ep_close(c);
		tp->ep_close(s);
		/* A host name connects too. */
		if (!strncmp(w.addr[0], "127.0.0.1:", 10)) {
			char port[16];
			snprintf(port, sizeof(port), "%.15s", w.addr[0] + 10);
			snprintf(w.addr[0], sizeof(w.addr[0]), "localhost:%s", port);
			tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
			tp->ep_close(c);
			tp->ep_close(s);
		}
		tpc_world_fini(&w);
	}
}
