/*
 * Conformance: a remote write lands only inside a region its peer
 * registered and described, with the right key. Refused writes change no
 * byte anywhere, and the connections not at fault carry on.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tpc.h"
#include "wire.h"

struct scene {
	struct tpc_world w;
	struct ragg_tp_ep *bys, *byc; /* a bystander connection */
	struct tpc_slot slot; /* the receiver's one live slot */
	uint8_t *src;
	struct ragg_tp_mr *smr;
	uint32_t bystander_imm;
};

#define SRC_LEN (1 << 20)

static void scene_init(struct scene *sc, const struct ragg_tp_ops *tp)
{
	memset(sc, 0, sizeof(*sc));
	tpc_world_init(&sc->w, tp, 2);
	tpc_pair(&sc->w, 0, 1, NULL, 0, NULL, 0, &sc->bys, &sc->byc);
	tpc_slot_init(&sc->w, 0, &sc->slot, 8192);
	sc->src = malloc(SRC_LEN);
	RAGG_CHECK(sc->src != NULL);
	memset(sc->src, 0xEE, SRC_LEN);
	struct ragg_tp_rdesc unused;
	RAGG_CHECK_OK(tp->mr_reg(sc->w.dev[1], sc->src, SRC_LEN, &sc->smr, &unused));
}

static void scene_fini(struct scene *sc)
{
	const struct ragg_tp_ops *tp = sc->w.tp;
	tp->ep_close(sc->byc);
	tp->ep_close(sc->bys);
	RAGG_CHECK_OK(tp->mr_dereg(sc->smr));
	free(sc->src);
	tpc_slot_fini(&sc->w, &sc->slot);
	tpc_world_fini(&sc->w);
}

/* The bystander still writes into the slot; the slot is then cleared
 * again so "untouched" keeps meaning all zero. */
static void bystander_ok(struct scene *sc)
{
	uint32_t imm = ++sc->bystander_imm;
	tpc_write(&sc->w, sc->byc, sc->src, sc->smr, &sc->slot.rd, 0, 64, imm, RAGG_TP_WRITE_IMM,
	          0);
	struct tpc_ev l = tpc_expect(&sc->w, 0, RAGG_TP_EV_WRITE_LANDED, sc->bys, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == imm);
	RAGG_CHECK(memcmp(sc->slot.addr, sc->src, 64) == 0);
	memset(sc->slot.addr, 0, 64);
}

/* Post one write that must be refused, on a connection of its own. `want`
 * is the receiver's status for transports that promise one, 0 for "any
 * error". The write may also be refused at post time. */
static void expect_refused(struct scene *sc, const struct ragg_tp_rdesc *rd, uint64_t roff,
                           size_t len, int want, const char *what)
{
	const struct ragg_tp_ops *tp = sc->w.tp;
	struct ragg_tp_ep *s, *c;
	tpc_pair(&sc->w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	tpc_log_clear();
	int rc = tp->write_imm(c, sc->src, sc->smr, rd, roff, len, 0xBAD,
	                       RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL, 1);
	if (rc != 0) {
		RAGG_CHECKF(rc < 0 && rc != -EAGAIN, "%s: write_imm returned %d", what, rc);
		if (want == RAGG_ERR_BOUNDS)
			RAGG_CHECKF(rc == RAGG_ERR_BOUNDS, "%s: write_imm: %s", what,
			            ragg_strerror_name(rc));
	} else {
		/* Refused at the receiver: its endpoint fails with the reason;
		 * the sender learns of it as an error too. */
		struct tpc_ev d;
		bool got = tpc_wait_for(&sc->w, 0, RAGG_TP_EV_DISCONNECTED, s, TPC_DEADLINE_MS, &d);
		if (want) {
			RAGG_CHECKF(got, "%s: receiver did not refuse the write", what);
			RAGG_CHECKF(d.ev.status == want, "%s: receiver status %s, want %s", what,
			            ragg_strerror_name(d.ev.status), ragg_strerror_name(want));
			RAGG_CHECKF(tpc_log_has(ragg_strerror_name(want)), "%s: %s not logged",
			            what, ragg_strerror_name(want));
		} else if (got) {
			RAGG_CHECK(d.ev.status < 0);
		}
		struct tpc_ev e;
		uint64_t deadline = tpc_now_ms() + TPC_DEADLINE_MS;
		bool sender_err = false;
		while (!sender_err && tpc_now_ms() < deadline) {
			if (tpc_take(&sc->w, 1, RAGG_TP_EV_DISCONNECTED, c, &e))
				sender_err = e.ev.status < 0;
			else if (tpc_take(&sc->w, 1, RAGG_TP_EV_WRITE_DONE, c, &e))
				sender_err = e.ev.status < 0;
			else
				tpc_pump(&sc->w);
		}
		RAGG_CHECKF(got || sender_err, "%s: nobody saw the write refused", what);
		RAGG_CHECK(tpc_count(&sc->w, 0, RAGG_TP_EV_WRITE_LANDED, s) == 0);
	}
	tpc_slot_check_untouched(&sc->slot, 0);
	tp->ep_close(c);
	tp->ep_close(s);
	/* Drop what the closed endpoints left queued. */
	while (tpc_take(&sc->w, 0, RAGG_TP_EV_DISCONNECTED, s, NULL) ||
	       tpc_take(&sc->w, 1, RAGG_TP_EV_DISCONNECTED, c, NULL) ||
	       tpc_take(&sc->w, 1, RAGG_TP_EV_WRITE_DONE, c, NULL))
		;
	bystander_ok(sc);
}

TPC_CASE(refuse_out_of_bounds)
{
	struct scene sc;
	scene_init(&sc, tp);
	const size_t n = sc.slot.len;
	bystander_ok(&sc);
	expect_refused(&sc, &sc.slot.rd, n - 10, 11, RAGG_ERR_BOUNDS, "one byte past the end");
	expect_refused(&sc, &sc.slot.rd, n + 1, 0, RAGG_ERR_BOUNDS, "empty write past the end");
	expect_refused(&sc, &sc.slot.rd, 0, n + 1, RAGG_ERR_BOUNDS, "longer than the slot");
	expect_refused(&sc, &sc.slot.rd, UINT64_MAX - 10, 100, RAGG_ERR_BOUNDS, "offset wraps");
	expect_refused(&sc, &sc.slot.rd, UINT64_MAX, 1, RAGG_ERR_BOUNDS, "offset at UINT64_MAX");
	expect_refused(&sc, &sc.slot.rd, (uint64_t)1 << 63, (size_t)1 << 63, RAGG_ERR_BOUNDS,
	               "offset+len wraps to 0");
	scene_fini(&sc);
}

/* The other side of the bounds check: everything inside the slot, up to
 * its last byte, is admitted, and so is an empty write exactly at its end
 * (which still delivers its immediate); the guards around it stay intact. */
TPC_CASE(admit_up_to_the_end)
{
	struct scene sc;
	scene_init(&sc, tp);
	const size_t n = sc.slot.len;
	struct tpc_ev l;

	for (size_t i = 0; i < 16; i++)
		sc.src[i] = (uint8_t)(0x40 + i);
	tpc_write(&sc.w, sc.byc, sc.src, sc.smr, &sc.slot.rd, n - 16, 16, 1, RAGG_TP_WRITE_IMM, 0);
	l = tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sc.bys, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 1 && l.ev.len == 16);
	RAGG_CHECK(memcmp(sc.slot.addr + n - 16, sc.src, 16) == 0);
	tpc_slot_check_untouched(&sc.slot, -1);

	tpc_write(&sc.w, sc.byc, sc.src, sc.smr, &sc.slot.rd, n - 1, 1, 2, RAGG_TP_WRITE_IMM, 0);
	l = tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sc.bys, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 2 && l.ev.len == 1 && sc.slot.addr[n - 1] == 0x40);

	tpc_write(&sc.w, sc.byc, sc.src, sc.smr, &sc.slot.rd, n, 0, 3, RAGG_TP_WRITE_IMM, 0);
	l = tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sc.bys, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 3 && l.ev.len == 0);

	memset(sc.src, 0x5A, n);
	tpc_write(&sc.w, sc.byc, sc.src, sc.smr, &sc.slot.rd, 0, n, 4, RAGG_TP_WRITE_IMM, 0);
	l = tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sc.bys, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 4 && l.ev.len == n);
	tpc_slot_check_untouched(&sc.slot, 0x5A);

	/* The connection is still good for anything else. */
	memset(sc.slot.addr, 0, n);
	memset(sc.src, 0xEE, SRC_LEN);
	bystander_ok(&sc);
	scene_fini(&sc);
}

TPC_CASE(refuse_stale_descriptor)
{
	const bool tcp = tpc_is(tp, "tcp");
	struct scene sc;
	scene_init(&sc, tp);
	bystander_ok(&sc);

	/* A region deregistered: its descriptor no longer admits writes. */
	struct tpc_slot gone;
	tpc_slot_init(&sc.w, 0, &gone, 4096);
	struct ragg_tp_rdesc stale = gone.rd;
	RAGG_CHECK_OK(tp->mr_dereg(gone.mr));
	gone.mr = NULL;
	expect_refused(&sc, &stale, 0, 64, tcp ? RAGG_ERR_KEY : 0, "deregistered region");
	tpc_slot_check_untouched(&gone, 0);

	/* Registered again at the same place: the old descriptor (old key)
	 * still does not. */
	RAGG_CHECK_OK(tp->mr_reg(sc.w.dev[0], gone.addr, gone.len, &gone.mr, &gone.rd));
	RAGG_CHECK(gone.rd.len != stale.len || memcmp(gone.rd.blob, stale.blob, stale.len) != 0);
	expect_refused(&sc, &stale, 0, 64, tcp ? RAGG_ERR_KEY : 0, "re-registered region, old key");
	tpc_slot_check_untouched(&gone, 0);
	tpc_slot_fini(&sc.w, &gone);
	scene_fini(&sc);
}

/* Descriptors forged with the tcp blob format: the receiver, not the
 * sender's courtesy check, is what keeps them out. */
TPC_CASE_ONLY(tcp_refuse_forged_descriptor, "tcp")
{
	struct scene sc;
	scene_init(&sc, tp);
	struct ragg__tcp_rdesc d, f;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK_OK(ragg__tcp_rdesc_unpack(&sc.slot.rd, &d));
	RAGG_CHECK(d.length == sc.slot.len);

	f = d;
	f.length = d.length + 4096;
	ragg__tcp_rdesc_pack(&f, &rd);
	expect_refused(&sc, &rd, d.length - 8, 16, RAGG_ERR_BOUNDS, "forged length, straddling");
	expect_refused(&sc, &rd, d.length, 4096, RAGG_ERR_BOUNDS, "forged length, all past");
	f.length = UINT64_MAX;
	ragg__tcp_rdesc_pack(&f, &rd);
	expect_refused(&sc, &rd, UINT64_MAX - 10, 8, RAGG_ERR_BOUNDS, "forged length, far out");

	f = d;
	f.key ^= 1;
	ragg__tcp_rdesc_pack(&f, &rd);
	expect_refused(&sc, &rd, 0, 64, RAGG_ERR_KEY, "one key bit flipped");
	f = d;
	f.region = d.region + 1000;
	ragg__tcp_rdesc_pack(&f, &rd);
	expect_refused(&sc, &rd, 0, 64, RAGG_ERR_KEY, "no such region");
	f.region = UINT32_MAX;
	ragg__tcp_rdesc_pack(&f, &rd);
	expect_refused(&sc, &rd, 0, 0, RAGG_ERR_KEY, "region id UINT32_MAX");

	/* Not a descriptor at all: refused before anything travels. */
	memset(&rd, 0, sizeof(rd));
	rd.len = 3;
	RAGG_CHECK(tp->write_imm(sc.byc, sc.src, sc.smr, &rd, 0, 1, 0, 0, 0) == -EINVAL);
	bystander_ok(&sc);
	scene_fini(&sc);
}
