/* Conformance: one-sided writes, their immediates and completions. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tpc.h"

struct pair {
	struct tpc_world w;
	struct ragg_tp_ep *s, *c; /* receiver's and sender's endpoints */
};

static void pair_init(struct pair *p, const struct ragg_tp_ops *tp)
{
	tpc_world_init(&p->w, tp, 2);
	tpc_pair(&p->w, 0, 1, NULL, 0, NULL, 0, &p->s, &p->c);
}

static void pair_fini(struct pair *p)
{
	p->w.tp->ep_close(p->c);
	p->w.tp->ep_close(p->s);
	tpc_world_fini(&p->w);
}

/* One write of len bytes at roff, signalled, with an immediate; checks the
 * landing, the completion, the data and the bytes around it. */
static void write_once(struct pair *p, struct tpc_slot *slot, uint8_t *src, struct ragg_tp_mr *smr,
                       size_t len, size_t roff, uint32_t imm)
{
	uint8_t *before = malloc(slot->len + 1);
	RAGG_CHECK(before != NULL);
	memcpy(before, slot->addr, slot->len);
	tpc_fill(src, len, imm);
	tpc_write(&p->w, p->c, src, smr, &slot->rd, roff, len, imm,
	          RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL, 0xC0FFEE00u + imm);
	struct tpc_ev l = tpc_expect(&p->w, 0, RAGG_TP_EV_WRITE_LANDED, p->s, 60000);
	RAGG_CHECKF(l.ev.imm == imm && l.ev.len == len, "landed imm %u len %zu, want %u %zu",
	            l.ev.imm, l.ev.len, imm, len);
	RAGG_CHECK_OK(l.ev.status);
	struct tpc_ev d = tpc_expect(&p->w, 1, RAGG_TP_EV_WRITE_DONE, p->c, 60000);
	RAGG_CHECK(d.ev.cookie == 0xC0FFEE00u + imm);
	RAGG_CHECK_OK(d.ev.status);
	RAGG_CHECKF(memcmp(slot->addr + roff, src, len) == 0, "%zu bytes at %zu differ", len, roff);
	RAGG_CHECK(memcmp(slot->addr, before, roff) == 0);
	RAGG_CHECK(memcmp(slot->addr + roff + len, before + roff + len, slot->len - roff - len) ==
	           0);
	tpc_slot_check_untouched(slot, -1);
	free(before);
}

TPC_CASE(write_sizes)
{
	struct pair p;
	pair_init(&p, tp);
	const size_t max = (size_t)4 << 20;
	struct tpc_slot slot;
	tpc_slot_init(&p.w, 0, &slot, max + 8192);
	uint8_t *src = malloc(max);
	RAGG_CHECK(src != NULL);
	struct ragg_tp_mr *smr;
	struct ragg_tp_rdesc srd;
	RAGG_CHECK_OK(tp->mr_reg(p.w.dev[1], src, max, &smr, &srd));

	static const size_t sizes[] = { 0, 1, 2, 7, 4095, 4096, 4097, 65536, (size_t)4 << 20 };
	static const size_t offs[] = { 0, 1, 4097 };
	uint32_t imm = 1;
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(sizes); i++)
		for (size_t k = 0; k < RAGG_ARRAY_SIZE(offs); k++)
			write_once(&p, &slot, src, smr, sizes[i], offs[k], imm++);
	/* Exactly at the end of the slot, and a zero-length write there. */
	write_once(&p, &slot, src, smr, 4095, slot.len - 4095, imm++);
	write_once(&p, &slot, src, smr, 0, slot.len, imm++);
	/* From unregistered memory (lmr NULL) where the transport allows it. */
	uint8_t *plain = malloc(65536);
	RAGG_CHECK(plain != NULL);
	int rc = tp->write_imm(p.c, plain, NULL, &slot.rd, 0, 0, 0, 0, 0);
	if (rc == 0)
		write_once(&p, &slot, plain, NULL, 65536, 3, imm++);
	free(plain);

	RAGG_CHECK_OK(tp->mr_dereg(smr));
	free(src);
	tpc_slot_fini(&p.w, &slot);
	pair_fini(&p);
}

TPC_CASE_T(write_256m, 90, NULL)
{
	struct pair p;
	pair_init(&p, tp);
	const size_t len = (size_t)256 << 20;
	struct tpc_slot slot;
	tpc_slot_init(&p.w, 0, &slot, len + 64);
	uint8_t *src = malloc(len);
	RAGG_CHECK(src != NULL);
	struct ragg_tp_mr *smr;
	struct ragg_tp_rdesc srd;
	RAGG_CHECK_OK(tp->mr_reg(p.w.dev[1], src, len, &smr, &srd));
	write_once(&p, &slot, src, smr, len, 61, 256);
	RAGG_CHECK_OK(tp->mr_dereg(smr));
	free(src);
	tpc_slot_fini(&p.w, &slot);
	pair_fini(&p);
}

/* Poll both sides into handlers instead of the queue: the high-volume
 * cases would otherwise queue tens of thousands of events. */
struct counts {
	uint32_t landed, next_imm, done;
	uint64_t next_cookie;
	size_t landed_bytes;
	int bad;
	char why[128];
};

static void drain(struct pair *p, struct counts *c)
{
	const struct ragg_tp_ops *tp = p->w.tp;
	struct ragg_tp_event ev[64];
	int n = tp->poll(p->w.dev[0], ev, 64);
	RAGG_CHECK(n >= 0);
	for (int i = 0; i < n; i++) {
		if (ev[i].type != RAGG_TP_EV_WRITE_LANDED || ev[i].ep != p->s) {
			snprintf(c->why, sizeof(c->why), "receiver got event %d", ev[i].type);
			c->bad++;
			continue;
		}
		if (ev[i].imm != c->next_imm && !c->bad) {
			snprintf(c->why, sizeof(c->why), "imm %u landed, expected %u", ev[i].imm,
			         c->next_imm);
			c->bad++;
		}
		c->next_imm = ev[i].imm + 1;
		c->landed++;
		c->landed_bytes += ev[i].len;
	}
	int m = tp->poll(p->w.dev[1], ev, 64);
	RAGG_CHECK(m >= 0);
	for (int i = 0; i < m; i++) {
		if (ev[i].type != RAGG_TP_EV_WRITE_DONE || ev[i].status != 0) {
			snprintf(c->why, sizeof(c->why), "sender got event %d status %d",
			         ev[i].type, ev[i].status);
			c->bad++;
			continue;
		}
		if (ev[i].cookie != c->next_cookie && !c->bad) {
			snprintf(c->why, sizeof(c->why), "cookie %llu done, expected %llu",
			         (unsigned long long)ev[i].cookie,
			         (unsigned long long)c->next_cookie);
			c->bad++;
		}
		c->next_cookie = ev[i].cookie + 1;
		c->done++;
	}
	if (!n && !m)
		tp->wait(p->w.dev[0], 1);
}

/* n writes of len bytes, each to its own offset, every one with an
 * immediate and signalled; -EAGAIN is met by polling and retrying. */
static void stream(struct pair *p, uint32_t n, size_t len, uint64_t *eagains)
{
	const struct ragg_tp_ops *tp = p->w.tp;
	size_t total = (size_t)n * len;
	struct tpc_slot slot;
	tpc_slot_init(&p->w, 0, &slot, total);
	uint8_t *src = malloc(total + 1);
	RAGG_CHECK(src != NULL);
	tpc_fill(src, total, n);
	struct ragg_tp_mr *smr;
	struct ragg_tp_rdesc srd;
	RAGG_CHECK_OK(tp->mr_reg(p->w.dev[1], src, total + 1, &smr, &srd));

	struct counts c = { 0 };
	uint64_t deadline = tpc_now_ms() + 30000;
	for (uint32_t i = 0; i < n;) {
		int rc =
		    tp->write_imm(p->c, src + (size_t)i * len, smr, &slot.rd, (uint64_t)i * len,
		                  len, i, RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL, i);
		if (rc == -EAGAIN) {
			(*eagains)++;
			drain(p, &c);
		} else {
			RAGG_CHECKF(rc == 0, "write %u: %s", i, ragg_strerror(rc));
			i++;
		}
		RAGG_CHECKF(c.bad == 0, "%s", c.why);
		RAGG_CHECK(tpc_now_ms() < deadline);
	}
	while (c.landed < n || c.done < n) {
		drain(p, &c);
		RAGG_CHECKF(c.bad == 0, "%s", c.why);
		RAGG_CHECKF(tpc_now_ms() < deadline, "landed %u done %u of %u", c.landed, c.done,
		            n);
	}
	/* Nothing more: every immediate and every completion exactly once. */
	for (int i = 0; i < 10; i++)
		drain(p, &c);
	RAGG_CHECKF(c.bad == 0, "%s", c.why);
	RAGG_CHECK(c.landed == n && c.done == n && c.landed_bytes == total);
	RAGG_CHECK(memcmp(slot.addr, src, total) == 0);
	tpc_slot_check_untouched(&slot, -1);
	RAGG_CHECK_OK(tp->mr_dereg(smr));
	free(src);
	tpc_slot_fini(&p->w, &slot);
}

TPC_CASE(imm_order_10000)
{
	struct pair p;
	uint64_t eagains = 0;
	pair_init(&p, tp);
	stream(&p, 10000, 8, &eagains);
	/* Zero-length writes carry immediates too. */
	stream(&p, 10000, 0, &eagains);
	pair_fini(&p);
}

TPC_CASE(eagain_never_loses)
{
	struct pair p;
	uint64_t eagains = 0;
	pair_init(&p, tp);
	struct ragg_tp_attr attr;
	RAGG_CHECK_OK(tp->query(p.w.dev[1], &attr));
	/* Far more writes than the queue holds, big enough that the socket
	 * or send queue fills too. */
	stream(&p, (uint32_t)attr.queue_depth * 40, 4096, &eagains);
	RAGG_CHECKF(eagains > 0, "the queue never filled (depth %d)", attr.queue_depth);

	/* A full queue refuses with -EAGAIN and nothing else, and the write
	 * refused is not half-posted. */
	struct tpc_slot slot;
	tpc_slot_init(&p.w, 0, &slot, 4096);
	static uint8_t src[4096];
	int rc, posted = 0;
	while ((rc = tp->write_imm(p.c, src, NULL, &slot.rd, 0, 0, (uint32_t)posted,
	                           RAGG_TP_WRITE_IMM, 0)) == 0)
		RAGG_CHECK(++posted <= 1 << 20);
	RAGG_CHECKF(rc == -EAGAIN, "write_imm: %s", ragg_strerror(rc));
	for (int i = 0; i < posted; i++) {
		struct tpc_ev l =
		    tpc_expect(&p.w, 0, RAGG_TP_EV_WRITE_LANDED, p.s, TPC_DEADLINE_MS);
		RAGG_CHECK(l.ev.imm == (uint32_t)i);
	}
	for (int i = 0; i < 10; i++)
		tpc_pump(&p.w);
	RAGG_CHECK(tpc_count(&p.w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);
	tpc_slot_fini(&p.w, &slot);
	pair_fini(&p);
}

TPC_CASE(silent_writes)
{
	/* A write without IMM lands without an event; a later write with IMM
	 * on the same endpoint is reported only once it, too, has landed. The
	 * core writes a weight that way before the data it weighs. */
	struct pair p;
	pair_init(&p, tp);
	const size_t big = (size_t)1 << 20;
	struct tpc_slot slot;
	tpc_slot_init(&p.w, 0, &slot, big + 64);
	uint8_t *src = malloc(big + 64);
	RAGG_CHECK(src != NULL);
	struct ragg_tp_mr *smr;
	struct ragg_tp_rdesc srd;
	RAGG_CHECK_OK(tp->mr_reg(p.w.dev[1], src, big + 64, &smr, &srd));

	for (uint32_t round = 0; round < 20; round++) {
		tpc_fill(src, big + 64, 1000 + round);
		/* Several silent writes of different sizes, then the flag. */
		tpc_write(&p.w, p.c, src, smr, &slot.rd, 0, big / 2, 0, 0, 0);
		tpc_write(&p.w, p.c, src + big / 2, smr, &slot.rd, big / 2, big / 2, 0,
		          RAGG_TP_WRITE_SIGNAL, round);
		tpc_write(&p.w, p.c, src + big, smr, &slot.rd, big, 8, 0, 0, 0);
		tpc_write(&p.w, p.c, src + big + 8, smr, &slot.rd, big + 8, 8, round,
		          RAGG_TP_WRITE_IMM, 0);
		struct tpc_ev l =
		    tpc_expect(&p.w, 0, RAGG_TP_EV_WRITE_LANDED, p.s, TPC_DEADLINE_MS);
		RAGG_CHECK(l.ev.imm == round && l.ev.len == 8);
		RAGG_CHECKF(memcmp(slot.addr, src, big + 16) == 0, "round %u: silent data missing",
		            round);
		struct tpc_ev d = tpc_expect(&p.w, 1, RAGG_TP_EV_WRITE_DONE, p.c, TPC_DEADLINE_MS);
		RAGG_CHECK(d.ev.cookie == round);
		RAGG_CHECK(tpc_count(&p.w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);
		/* Unsignalled writes report nothing. */
		RAGG_CHECK(tpc_count(&p.w, 1, RAGG_TP_EV_WRITE_DONE, NULL) == 0);
	}
	tpc_slot_check_untouched(&slot, -1);
	RAGG_CHECK_OK(tp->mr_dereg(smr));
	free(src);
	tpc_slot_fini(&p.w, &slot);
	pair_fini(&p);
}

TPC_CASE(write_both_ways)
{
	/* Both sides write into each other at once on one connection. */
	struct pair p;
	pair_init(&p, tp);
	const size_t len = (size_t)2 << 20;
	struct tpc_slot a, b;
	tpc_slot_init(&p.w, 0, &a, len);
	tpc_slot_init(&p.w, 1, &b, len);
	uint8_t *sa = malloc(len), *sb = malloc(len);
	RAGG_CHECK(sa && sb);
	tpc_fill(sa, len, 77);
	tpc_fill(sb, len, 78);
	struct ragg_tp_mr *ma, *mb;
	struct ragg_tp_rdesc unused;
	RAGG_CHECK_OK(tp->mr_reg(p.w.dev[1], sa, len, &ma, &unused));
	RAGG_CHECK_OK(tp->mr_reg(p.w.dev[0], sb, len, &mb, &unused));
	for (uint32_t i = 0; i < 8; i++) {
		tpc_write(&p.w, p.c, sa + i * (len / 8), ma, &a.rd, i * (len / 8), len / 8, i,
		          RAGG_TP_WRITE_IMM, 0);
		tpc_write(&p.w, p.s, sb + i * (len / 8), mb, &b.rd, i * (len / 8), len / 8, 100 + i,
		          RAGG_TP_WRITE_IMM, 0);
	}
	for (uint32_t i = 0; i < 8; i++) {
		RAGG_CHECK(
		    tpc_expect(&p.w, 0, RAGG_TP_EV_WRITE_LANDED, p.s, TPC_DEADLINE_MS).ev.imm == i);
		RAGG_CHECK(
		    tpc_expect(&p.w, 1, RAGG_TP_EV_WRITE_LANDED, p.c, TPC_DEADLINE_MS).ev.imm ==
		    100 + i);
	}
	RAGG_CHECK(memcmp(a.addr, sa, len) == 0 && memcmp(b.addr, sb, len) == 0);
	RAGG_CHECK_OK(tp->mr_dereg(ma));
	RAGG_CHECK_OK(tp->mr_dereg(mb));
	free(sa);
	free(sb);
	tpc_slot_fini(&p.w, &a);
	tpc_slot_fini(&p.w, &b);
	pair_fini(&p);
}

TPC_CASE(mixed_stream)
{
	/* Writes of every size class, with and without immediates and
	 * signals, and messages between them, posted as fast as the queue
	 * takes them: each lands once, in order, where it was aimed. */
	struct pair p;
	pair_init(&p, tp);
	static const size_t sizes[] = {
		0, 1, 3, 40, 41, 4095, 4096, 65539, 262147, (size_t)1 << 20
	};
	const uint32_t n = 6000;
	size_t total = 0;
	for (uint32_t i = 0; i < n; i++)
		total += sizes[(i * 7 + i / 3) % RAGG_ARRAY_SIZE(sizes)];
	struct tpc_slot slot;
	tpc_slot_init(&p.w, 0, &slot, total);
	uint8_t *src = malloc(total + 1);
	RAGG_CHECK(src != NULL);
	tpc_fill(src, total, 4242);
	struct ragg_tp_mr *smr;
	struct ragg_tp_rdesc srd;
	RAGG_CHECK_OK(tp->mr_reg(p.w.dev[1], src, total + 1, &smr, &srd));

	uint32_t imms = 0, signals = 0, msgs = 0;
	uint32_t next_imm = 0, next_cookie = 0, next_msg = 0;
	size_t off = 0;
	uint64_t deadline = tpc_now_ms() + 40000;
	struct ragg_tp_event ev[64];
	uint32_t i = 0;
	while (i < n || next_imm < imms || next_cookie < signals || next_msg < msgs) {
		/* Post until the queue is full, so frames pile up behind a
		 * partly written one. */
		while (i < n) {
			size_t len = sizes[(i * 7 + i / 3) % RAGG_ARRAY_SIZE(sizes)];
			bool imm = i % 3 != 1, sig = i % 4 == 0, msg = i % 5 == 0;
			unsigned flags =
			    (imm ? RAGG_TP_WRITE_IMM : 0) | (sig ? RAGG_TP_WRITE_SIGNAL : 0);
			int rc = tp->write_imm(p.c, src + off, smr, &slot.rd, off, len, imms, flags,
			                       signals);
			if (rc == 0 && msg) {
				/* The message may not fit now: then the write
				 * goes without it. */
				if (tp->send(p.c, &msgs, sizeof(msgs)) == 0)
					msgs++;
			}
			if (rc == 0) {
				imms += imm;
				signals += sig;
				off += len;
				i++;
			} else {
				RAGG_CHECKF(rc == -EAGAIN, "write %u: %s", i, ragg_strerror(rc));
				break;
			}
		}
		for (int d = 0; d < 2; d++) {
			int k = tp->poll(p.w.dev[d], ev, 64);
			RAGG_CHECK(k >= 0);
			for (int e = 0; e < k; e++) {
				switch (ev[e].type) {
				case RAGG_TP_EV_WRITE_LANDED:
					RAGG_CHECKF(d == 0 && ev[e].imm == next_imm,
					            "imm %u, want %u", ev[e].imm, next_imm);
					next_imm++;
					break;
				case RAGG_TP_EV_WRITE_DONE:
					RAGG_CHECKF(d == 1 && ev[e].cookie == next_cookie &&
					                !ev[e].status,
					            "cookie %llu, want %u",
					            (unsigned long long)ev[e].cookie, next_cookie);
					next_cookie++;
					break;
				case RAGG_TP_EV_RECV: {
					uint32_t m;
					RAGG_CHECK(d == 0 && ev[e].len == sizeof(m));
					memcpy(&m, ev[e].data, sizeof(m));
					RAGG_CHECKF(m == next_msg, "message %u, want %u", m,
					            next_msg);
					next_msg++;
					break;
				}
				default:
					RAGG_CHECKF(0, "unexpected event %d on device %d",
					            ev[e].type, d);
				}
			}
		}
		RAGG_CHECKF(tpc_now_ms() < deadline, "posted %u/%u, landed %u/%u, done %u/%u", i, n,
		            next_imm, imms, next_cookie, signals);
	}
	RAGG_CHECK(off == total);
	RAGG_CHECK(memcmp(slot.addr, src, total) == 0);
	tpc_slot_check_untouched(&slot, -1);
	RAGG_CHECK_OK(tp->mr_dereg(smr));
	free(src);
	tpc_slot_fini(&p.w, &slot);
	pair_fini(&p);
}

TPC_CASE(write_offset_past_4g)
{
	/* Offsets and lengths are 64-bit all the way: a region past 4 GiB,
	 * reserved but barely touched, takes writes beyond 2^32. */
	const size_t len = ((size_t)5 << 30) + 4096;
	uint8_t *big = mmap(NULL, len, PROT_READ | PROT_WRITE,
	                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (big == MAP_FAILED)
		RAGG_SKIP("cannot reserve 5 GiB of address space");
	struct pair p;
	pair_init(&p, tp);
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	int rc = tp->mr_reg(p.w.dev[0], big, len, &mr, &rd);
	if (rc) {
		/* A transport that pins memory may not have 5 GiB to pin. */
		pair_fini(&p);
		munmap(big, len);
		RAGG_SKIP("cannot register a 5 GiB region here");
	}
	uint8_t src[4096];
	static const uint64_t offs[] = { ((uint64_t)1 << 32) - 7, (uint64_t)1 << 32,
		                         ((uint64_t)5 << 30) - 1 };
	for (uint32_t i = 0; i < RAGG_ARRAY_SIZE(offs); i++) {
		tpc_fill(src, sizeof(src), i + 500);
		tpc_write(&p.w, p.c, src, NULL, &rd, offs[i], sizeof(src), i, RAGG_TP_WRITE_IMM, 0);
		struct tpc_ev l =
		    tpc_expect(&p.w, 0, RAGG_TP_EV_WRITE_LANDED, p.s, TPC_DEADLINE_MS);
		RAGG_CHECK(l.ev.imm == i);
		RAGG_CHECKF(memcmp(big + offs[i], src, sizeof(src)) == 0, "write at %llu",
		            (unsigned long long)offs[i]);
	}
	/* Where offsets truncated to 32 bits would have landed. */
	for (size_t k = 0; k < sizeof(src); k++)
		RAGG_CHECK(big[k] == 0 && big[((size_t)1 << 30) - 1 + k] == 0);
	RAGG_CHECK_OK(tp->mr_dereg(mr));
	pair_fini(&p);
	munmap(big, len);
}
