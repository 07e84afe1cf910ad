/*
 * Conformance, shm only: what the generic cases cannot see. Writes between
 * real processes into private memory (cross-memory attach) and into
 * mem_alloc() memory; descriptors forged in the shm format; stale
 * descriptors refused without a word to the owner; peer_map between
 * processes and with forged or stale descriptors; a peer killed with
 * SIGKILL; wakeups of sleeping processes, none lost; nothing left behind.
 *
 * Peers in other processes are forked after the parent listens and run the
 * same helpers; a failed check there exits non-zero, which the parent
 * checks.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tpc.h"
#include "../../transports/shm/wire.h"

#define SHM_CASE(name_) TPC_CASE_ONLY(name_, "shm")

/* ---- helpers ---- */

static pid_t spawn(void (*fn)(const struct ragg_tp_ops *tp, const char *addr),
                   const struct ragg_tp_ops *tp, const char *addr)
{
	fflush(NULL);
	pid_t pid = fork();
	RAGG_CHECK(pid >= 0);
	if (pid == 0) {
		fn(tp, addr);
		fflush(NULL);
		_exit(0);
	}
	return pid;
}

static void reap(pid_t pid)
{
	int st;
	RAGG_CHECK(waitpid(pid, &st, 0) == pid);
	RAGG_CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "peer process: %s %d",
	            WIFEXITED(st) ? "exit" : "signal",
	            WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static uint8_t kind_of(const struct ragg_tp_rdesc *rd)
{
	struct ragg__shm_rdesc d;
	RAGG_CHECK_OK(ragg__shm_rdesc_unpack(rd, &d));
	return d.kind;
}

/* Accept the next connection on device 0 with priv; its endpoint. */
static struct ragg_tp_ep *accept_one(struct tpc_world *w, const void *priv, size_t len)
{
	struct tpc_ev r = tpc_expect(w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
	RAGG_CHECK_OK(w->tp->accept(r.ev.ep, priv, len));
	tpc_expect(w, 0, RAGG_TP_EV_CONNECTED, r.ev.ep, TPC_DEADLINE_MS);
	return r.ev.ep;
}

/* Child side: connect to addr, return the endpoint and the acceptor's
 * private data (a descriptor). */
static struct ragg_tp_ep *connect_one(struct tpc_world *w, const char *addr, const void *priv,
                                      size_t len, struct ragg_tp_rdesc *rd)
{
	struct ragg_tp_ep *ep;
	RAGG_CHECK_OK(w->tp->connect(w->dev[0], addr, priv, len, NULL, &ep));
	struct tpc_ev c = tpc_expect(w, 0, RAGG_TP_EV_CONNECTED, ep, TPC_DEADLINE_MS);
	if (rd) {
		RAGG_CHECK(c.ev.len == sizeof(*rd));
		memcpy(rd, c.ev.data, sizeof(*rd));
	}
	return ep;
}

/* ---- cross-memory attach into a private region ---- */

#define CMA_LEN ((size_t)1 << 20)

static void cma_writer(const struct ragg_tp_ops *tp, const char *addr)
{
	struct tpc_world w;
	struct ragg_tp_rdesc rd;
	tpc_world_init(&w, tp, 1);
	struct ragg_tp_ep *ep = connect_one(&w, addr, NULL, 0, &rd);
	RAGG_CHECK(kind_of(&rd) == RAGG__SHM_KIND_PRIVATE);
	uint8_t *src = malloc(CMA_LEN);
	RAGG_CHECK(src != NULL);
	tpc_fill(src, CMA_LEN - 3, 7);
	tpc_write(&w, ep, src, NULL, &rd, 3, CMA_LEN - 3, 42,
	          RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL, 9);
	struct tpc_ev d = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_DONE, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(d.ev.cookie == 9 && d.ev.status == 0);
	/* Past the end, checked before anything moves. */
	RAGG_CHECK(tp->write_imm(ep, src, NULL, &rd, 4, CMA_LEN - 3, 0, 0, 0) == RAGG_ERR_BOUNDS);
	RAGG_CHECK_OK(tp->send(ep, "done", 4));
	/* Until the parent hangs up. */
	tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, ep, TPC_DEADLINE_MS);
	tp->ep_close(ep);
	free(src);
	tpc_world_fini(&w);
}

SHM_CASE(shm_cma_private_region)
{
	struct tpc_world w;
	struct tpc_slot slot;
	tpc_world_init(&w, tp, 1);
	/* malloc'd: not from mem_alloc, so written with process_vm_writev. */
	tpc_slot_init(&w, 0, &slot, CMA_LEN);
	RAGG_CHECK(kind_of(&slot.rd) == RAGG__SHM_KIND_PRIVATE);
	pid_t pid = spawn(cma_writer, tp, tpc_listen(&w, 0));
	struct ragg_tp_ep *ep = accept_one(&w, &slot.rd, sizeof(slot.rd));
	struct tpc_ev l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 42 && l.ev.len == CMA_LEN - 3);
	struct tpc_ev m = tpc_expect(&w, 0, RAGG_TP_EV_RECV, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(m.ev.len == 4 && memcmp(m.ev.data, "done", 4) == 0);
	uint8_t *want = malloc(CMA_LEN);
	RAGG_CHECK(want != NULL);
	tpc_fill(want, CMA_LEN - 3, 7);
	RAGG_CHECK(slot.addr[0] == 0 && slot.addr[1] == 0 && slot.addr[2] == 0);
	RAGG_CHECK(memcmp(slot.addr + 3, want, CMA_LEN - 3) == 0);
	tpc_slot_check_untouched(&slot, -1);
	tp->ep_close(ep);
	reap(pid);
	free(want);
	tpc_slot_fini(&w, &slot);
	tpc_world_fini(&w);
}

/* ---- mem_alloc memory, mapped by the writer ---- */

#define SH_OFF   100
#define SH_LEN   8000
#define SH_BLOCK (3 * 4096)

static void shared_writer(const struct ragg_tp_ops *tp, const char *addr)
{
	struct tpc_world w;
	struct ragg_tp_rdesc rd;
	tpc_world_init(&w, tp, 1);
	struct ragg_tp_ep *ep = connect_one(&w, addr, NULL, 0, &rd);
	RAGG_CHECK(kind_of(&rd) == RAGG__SHM_KIND_SHARED);
	uint8_t src[SH_LEN + 16];
	tpc_fill(src, sizeof(src), 11);
	tpc_write(&w, ep, src, NULL, &rd, 0, SH_LEN, 1, RAGG_TP_WRITE_IMM, 0);
	RAGG_CHECK(tp->write_imm(ep, src, NULL, &rd, SH_LEN - 10, 11, 2, RAGG_TP_WRITE_IMM, 0) ==
	           RAGG_ERR_BOUNDS);
	RAGG_CHECK(tp->write_imm(ep, src, NULL, &rd, SH_LEN + 1, 0, 2, RAGG_TP_WRITE_IMM, 0) ==
	           RAGG_ERR_BOUNDS);
	tpc_write(&w, ep, src, NULL, &rd, SH_LEN, 0, 3, RAGG_TP_WRITE_IMM, 0);
	tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, ep, TPC_DEADLINE_MS);
	tp->ep_close(ep);
	tpc_world_fini(&w);
}

SHM_CASE(shm_shared_region)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 1);
	uint8_t *block = tp->mem_alloc(w.dev[0], SH_BLOCK);
	RAGG_CHECK(block != NULL && ((uintptr_t)block & 4095) == 0);
	for (size_t i = 0; i < SH_BLOCK; i++)
		RAGG_CHECKF(block[i] == 0, "mem_alloc memory not zeroed at %zu", i);
	memset(block, TPC_GUARD_BYTE, SH_BLOCK);
	memset(block + SH_OFF, 0, SH_LEN);
	/* Not page aligned at either end: the writer maps whole pages, so
	 * the guards share pages with the region. */
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK_OK(tp->mr_reg(w.dev[0], block + SH_OFF, SH_LEN, &mr, &rd));
	RAGG_CHECK(kind_of(&rd) == RAGG__SHM_KIND_SHARED);
	pid_t pid = spawn(shared_writer, tp, tpc_listen(&w, 0));
	struct ragg_tp_ep *ep = accept_one(&w, &rd, sizeof(rd));
	struct tpc_ev l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 1 && l.ev.len == SH_LEN);
	l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 3 && l.ev.len == 0);
	uint8_t want[SH_LEN + 16];
	tpc_fill(want, sizeof(want), 11);
	RAGG_CHECK(memcmp(block + SH_OFF, want, SH_LEN) == 0);
	for (size_t i = 0; i < SH_BLOCK; i++)
		if (i < SH_OFF || i >= SH_OFF + SH_LEN)
			RAGG_CHECKF(block[i] == TPC_GUARD_BYTE,
			            "byte %zu outside the region changed", i);
	tp->ep_close(ep);
	reap(pid);
	RAGG_CHECK_OK(tp->mr_dereg(mr));
	tp->mem_free(w.dev[0], block, SH_BLOCK);
	tpc_world_fini(&w);
}

/* ---- forged and stale descriptors ---- */

struct scene {
	struct tpc_world w;
	struct ragg_tp_ep *bys, *byc; /* a bystander connection */
	struct tpc_slot slot; /* private */
	uint8_t *block; /* shared: a mem_alloc block, the region in its middle */
	struct ragg_tp_mr *bmr;
	struct ragg_tp_rdesc brd;
	uint8_t src[8192];
};

#define BLK_LEN (4 * 4096)
#define BLK_OFF 4096
#define BLK_REG 8192

static void scene_init(struct scene *sc, const struct ragg_tp_ops *tp)
{
	memset(sc, 0, sizeof(*sc));
	tpc_world_init(&sc->w, tp, 2);
	tpc_pair(&sc->w, 0, 1, NULL, 0, NULL, 0, &sc->bys, &sc->byc);
	tpc_slot_init(&sc->w, 0, &sc->slot, 8192);
	sc->block = tp->mem_alloc(sc->w.dev[0], BLK_LEN);
	RAGG_CHECK(sc->block != NULL);
	memset(sc->block, TPC_GUARD_BYTE, BLK_LEN);
	memset(sc->block + BLK_OFF, 0, BLK_REG);
	RAGG_CHECK_OK(tp->mr_reg(sc->w.dev[0], sc->block + BLK_OFF, BLK_REG, &sc->bmr, &sc->brd));
	memset(sc->src, 0xEE, sizeof(sc->src));
}

static void block_untouched(const struct scene *sc)
{
	for (size_t i = 0; i < BLK_LEN; i++) {
		bool in = i >= BLK_OFF && i < BLK_OFF + BLK_REG;
		RAGG_CHECKF(sc->block[i] == (in ? 0 : TPC_GUARD_BYTE), "block byte %zu changed", i);
	}
}

static void scene_fini(struct scene *sc)
{
	const struct ragg_tp_ops *tp = sc->w.tp;
	tp->ep_close(sc->byc);
	tp->ep_close(sc->bys);
	RAGG_CHECK_OK(tp->mr_dereg(sc->bmr));
	tp->mem_free(sc->w.dev[0], sc->block, BLK_LEN);
	tpc_slot_fini(&sc->w, &sc->slot);
	tpc_world_fini(&sc->w);
}

/* The bystander still writes into both regions, which are then cleared
 * again so "untouched" keeps meaning zero. */
static void bystander_ok(struct scene *sc)
{
	const struct ragg_tp_rdesc *rds[] = { &sc->slot.rd, &sc->brd };
	uint8_t *dst[] = { sc->slot.addr, sc->block + BLK_OFF };
	for (int k = 0; k < 2; k++) {
		tpc_write(&sc->w, sc->byc, sc->src, NULL, rds[k], 0, 64, 7, RAGG_TP_WRITE_IMM, 0);
		struct tpc_ev l =
		    tpc_expect(&sc->w, 0, RAGG_TP_EV_WRITE_LANDED, sc->bys, TPC_DEADLINE_MS);
		RAGG_CHECK(l.ev.imm == 7);
		RAGG_CHECK(memcmp(dst[k], sc->src, 64) == 0);
		memset(dst[k], 0, 64);
	}
}

/* One write that must be refused, on a connection of its own (fresh=1) or
 * on the bystander's, where the region is known already (fresh=0: refused
 * at post time, and the bystander keeps working). want_post: the status
 * write_imm must return, or 0 when the owner is the one to refuse, with
 * want_owner. */
static void expect_refused(struct scene *sc, const struct ragg_tp_rdesc *rd, uint64_t roff,
                           size_t len, bool fresh, int want_post, int want_owner, const char *what)
{
	const struct ragg_tp_ops *tp = sc->w.tp;
	struct ragg_tp_ep *s = sc->bys, *c = sc->byc;
	if (fresh)
		tpc_pair(&sc->w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	tpc_log_clear();
	int rc = tp->write_imm(c, sc->src, NULL, rd, roff, len, 0xBAD,
	                       RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL, 1);
	if (want_post) {
		RAGG_CHECKF(rc == want_post, "%s: write_imm returned %s, want %s", what,
		            ragg_strerror_name(rc), ragg_strerror_name(want_post));
		RAGG_CHECKF(tpc_log_has(ragg_strerror_name(want_post)), "%s: %s not logged", what,
		            ragg_strerror_name(want_post));
	} else {
		RAGG_CHECKF(rc == 0, "%s: write_imm returned %s", what, ragg_strerror_name(rc));
		struct tpc_ev d =
		    tpc_expect(&sc->w, 0, RAGG_TP_EV_DISCONNECTED, s, TPC_DEADLINE_MS);
		RAGG_CHECKF(d.ev.status == want_owner, "%s: owner's status %s, want %s", what,
		            ragg_strerror_name(d.ev.status), ragg_strerror_name(want_owner));
		RAGG_CHECKF(tpc_log_has(ragg_strerror_name(want_owner)), "%s: %s not logged", what,
		            ragg_strerror_name(want_owner));
		/* The writer hears it too: its signalled write is given up
		 * and the endpoint fails with the owner's reason. */
		d = tpc_expect(&sc->w, 1, RAGG_TP_EV_WRITE_DONE, c, TPC_DEADLINE_MS);
		RAGG_CHECK(d.ev.cookie == 1 && d.ev.status == -ECANCELED);
		d = tpc_expect(&sc->w, 1, RAGG_TP_EV_DISCONNECTED, c, TPC_DEADLINE_MS);
		RAGG_CHECK(d.ev.status == want_owner);
	}
	RAGG_CHECK(tpc_count(&sc->w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);
	tpc_slot_check_untouched(&sc->slot, 0);
	block_untouched(sc);
	if (fresh) {
		tp->ep_close(c);
		tp->ep_close(s);
	}
	bystander_ok(sc);
}

static struct ragg_tp_rdesc forge(const struct ragg_tp_rdesc *rd, int64_t dlen, uint64_t key_xor,
                                  int64_t dregion)
{
	struct ragg__shm_rdesc d;
	struct ragg_tp_rdesc out;
	RAGG_CHECK_OK(ragg__shm_rdesc_unpack(rd, &d));
	d.length += (uint64_t)dlen;
	d.key ^= key_xor;
	d.region += (uint32_t)dregion;
	ragg__shm_rdesc_pack(&d, &out);
	return out;
}

SHM_CASE(shm_refuse_forged)
{
	struct scene sc;
	scene_init(&sc, tp);
	bystander_ok(&sc); /* both regions known to the bystander from here */
	const struct ragg_tp_rdesc *rds[] = { &sc.slot.rd, &sc.brd };
	for (int k = 0; k < 2; k++) {
		const struct ragg_tp_rdesc *rd = rds[k];
		struct ragg_tp_rdesc f;
		const uint64_t n = k ? BLK_REG : 8192;

		/* A longer length: the owner, asked, refuses it; a writer that
		 * knows the region already refuses it itself. */
		f = forge(rd, 4096, 0, 0);
		expect_refused(&sc, &f, n - 8, 16, true, 0, RAGG_ERR_BOUNDS, "longer, straddling");
		expect_refused(&sc, &f, n, 4096, false, RAGG_ERR_BOUNDS, 0,
		               "longer, all past, known");
		expect_refused(&sc, &f, n - 8, 16, false, RAGG_ERR_BOUNDS, 0,
		               "longer, straddling, known");
		f = forge(rd, (int64_t)(UINT64_MAX - n), 0, 0);
		expect_refused(&sc, &f, UINT64_MAX - 10, 8, true, 0, RAGG_ERR_BOUNDS, "longest");
		/* Shorter is refused too: only the registered length is asked. */
		f = forge(rd, -1, 0, 0);
		expect_refused(&sc, &f, 0, 8, true, 0, RAGG_ERR_BOUNDS, "shorter");

		f = forge(rd, 0, 1, 0);
		expect_refused(&sc, &f, 0, 64, true, 0, RAGG_ERR_KEY, "one key bit flipped");
		f = forge(rd, 0, 0, 1000);
		expect_refused(&sc, &f, 0, 64, true, 0, RAGG_ERR_KEY, "no such region");
		f = forge(rd, 0, 0, 0x7fff0000);
		expect_refused(&sc, &f, 0, 0, true, RAGG_ERR_KEY, 0, "region id past the table");
	}
	/* Not an shm descriptor: refused before anything travels. */
	struct ragg_tp_rdesc bad = sc.slot.rd;
	bad.blob[1] = 9;
	RAGG_CHECK(tp->write_imm(sc.byc, sc.src, NULL, &bad, 0, 1, 0, 0, 0) == -EINVAL);
	bad.len = 3;
	RAGG_CHECK(tp->write_imm(sc.byc, sc.src, NULL, &bad, 0, 1, 0, 0, 0) == -EINVAL);
	bystander_ok(&sc);
	scene_fini(&sc);
}

SHM_CASE(shm_stale_known_region)
{
	/* A region the writer has written before is deregistered: the next
	 * write is refused by the writer itself (the owner's region table
	 * says so), the connection survives, and no byte changes. */
	struct scene sc;
	scene_init(&sc, tp);
	bystander_ok(&sc);

	struct tpc_slot gone;
	tpc_slot_init(&sc.w, 0, &gone, 4096);
	struct ragg_tp_rdesc stale = gone.rd;
	tpc_write(&sc.w, sc.byc, sc.src, NULL, &stale, 0, 64, 1, RAGG_TP_WRITE_IMM, 0);
	tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sc.bys, TPC_DEADLINE_MS);
	memset(gone.addr, 0, 64);
	RAGG_CHECK_OK(tp->mr_dereg(gone.mr));
	gone.mr = NULL;
	expect_refused(&sc, &stale, 0, 64, false, RAGG_ERR_KEY, 0, "deregistered, known");
	tpc_slot_check_untouched(&gone, 0);
	/* Registered again (same id, new key): the new descriptor works, the
	 * old one still does not. */
	RAGG_CHECK_OK(tp->mr_reg(sc.w.dev[0], gone.addr, gone.len, &gone.mr, &gone.rd));
	tpc_write(&sc.w, sc.byc, sc.src, NULL, &gone.rd, 0, 64, 2, RAGG_TP_WRITE_IMM, 0);
	tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sc.bys, TPC_DEADLINE_MS);
	RAGG_CHECK(memcmp(gone.addr, sc.src, 64) == 0);
	memset(gone.addr, 0, 64);
	expect_refused(&sc, &stale, 0, 64, false, RAGG_ERR_KEY, 0, "re-registered, old key");
	tpc_slot_check_untouched(&gone, 0);
	tpc_slot_fini(&sc.w, &gone);

	/* mem_free under a registered region: writes to it stop too. */
	uint8_t *blk = tp->mem_alloc(sc.w.dev[0], 4096);
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK(blk != NULL);
	RAGG_CHECK_OK(tp->mr_reg(sc.w.dev[0], blk, 4096, &mr, &rd));
	tpc_write(&sc.w, sc.byc, sc.src, NULL, &rd, 0, 64, 3, RAGG_TP_WRITE_IMM, 0);
	tpc_expect(&sc.w, 0, RAGG_TP_EV_WRITE_LANDED, sc.bys, TPC_DEADLINE_MS);
	tp->mem_free(sc.w.dev[0], blk, 4096);
	expect_refused(&sc, &rd, 0, 64, false, RAGG_ERR_KEY, 0, "memory freed");
	RAGG_CHECK_OK(tp->mr_dereg(mr));
	scene_fini(&sc);
}

/* ---- peer_map: a peer's region mapped here ---- */

#define PM_OFF   100
#define PM_LEN   8000
#define PM_BLOCK (3 * 4096)
/* Output sentinels: peer_map writes *ptr and *len only on success. */
#define PM_NO_PTR ((void *)(uintptr_t)0x5eed)
#define PM_NO_LEN ((size_t)0x5eed)

/* peer_map until the owner's answer is in; the outputs stay untouched
 * while it is not. */
static int map_wait(struct tpc_world *w, struct ragg_tp_ep *ep, const struct ragg_tp_rdesc *rd,
                    void **ptr, size_t *len)
{
	uint64_t deadline = tpc_now_ms() + TPC_DEADLINE_MS;
	for (;;) {
		*ptr = PM_NO_PTR;
		*len = PM_NO_LEN;
		int rc = w->tp->peer_map(ep, rd, ptr, len);
		if (rc)
			RAGG_CHECK(*ptr == PM_NO_PTR && *len == PM_NO_LEN);
		if (rc != -EINPROGRESS)
			return rc;
		RAGG_CHECKF(tpc_now_ms() < deadline, "peer_map in progress for %d ms",
		            TPC_DEADLINE_MS);
		tpc_pump(w);
	}
}

static void mapper(const struct ragg_tp_ops *tp, const char *addr)
{
	struct tpc_world w;
	struct ragg_tp_rdesc shared, priv;
	static uint8_t want[PM_LEN];
	tpc_world_init(&w, tp, 1);
	struct ragg_tp_ep *ep = connect_one(&w, addr, NULL, 0, &shared);
	RAGG_CHECK(kind_of(&shared) == RAGG__SHM_KIND_SHARED);
	struct tpc_ev m = tpc_expect(&w, 0, RAGG_TP_EV_RECV, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(m.ev.len == sizeof(priv));
	memcpy(&priv, m.ev.data, sizeof(priv));

	/* Never seen in this process: the owner is asked first. */
	void *p = PM_NO_PTR, *q;
	size_t len = PM_NO_LEN, qlen;
	RAGG_CHECK(tp->peer_map(ep, &shared, &p, &len) == -EINPROGRESS);
	RAGG_CHECK(p == PM_NO_PTR && len == PM_NO_LEN);
	RAGG_CHECK_OK(map_wait(&w, ep, &shared, &p, &len));
	RAGG_CHECKF(len == PM_LEN, "mapped length %zu", len);
	tpc_fill(want, PM_LEN, 21);
	RAGG_CHECK(memcmp(p, want, PM_LEN) == 0);
	/* Known now: what a descriptor claims about the length does not
	 * change the answer, the owner's registration does. */
	const struct ragg_tp_rdesc claims[] = { forge(&shared, 4096, 0, 0),
		                                forge(&shared, -8, 0, 0) };
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(claims); i++) {
		RAGG_CHECK_OK(tp->peer_map(ep, &claims[i], &q, &qlen));
		RAGG_CHECK(q == p && qlen == PM_LEN);
	}

	/* Stores, then a write of length 0 for the immediate. */
	tpc_fill(want, PM_LEN, 22);
	memcpy(p, want, PM_LEN);
	tpc_write(&w, ep, want, NULL, &shared, 0, 0, 0x51, RAGG_TP_WRITE_IMM, 0);

	/* Private memory: the descriptor says so, nothing is asked. */
	q = PM_NO_PTR;
	RAGG_CHECK(tp->peer_map(ep, &priv, &q, &qlen) == -EOPNOTSUPP && q == PM_NO_PTR);
	/* A descriptor that claims it shared: the owner's answer wins. */
	struct ragg_tp_rdesc claim = priv;
	claim.blob[1] = RAGG__SHM_KIND_SHARED;
	RAGG_CHECK(map_wait(&w, ep, &claim, &q, &qlen) == -EOPNOTSUPP);
	/* Writes still reach it. */
	tpc_write(&w, ep, want, NULL, &priv, 0, 64, 0x52, RAGG_TP_WRITE_IMM, 0);
	RAGG_CHECK_OK(tp->send(ep, "mapped", 6));

	/* Deregistered by its owner: refused from then on, here, without a
	 * word to the owner (the connection stays). */
	m = tpc_expect(&w, 0, RAGG_TP_EV_RECV, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(m.ev.len == 5 && memcmp(m.ev.data, "dereg", 5) == 0);
	q = PM_NO_PTR;
	int rc = tp->peer_map(ep, &shared, &q, &qlen);
	RAGG_CHECKF(rc == RAGG_ERR_KEY && q == PM_NO_PTR, "peer_map of a deregistered region: %s",
	            ragg_strerror_name(rc));
	rc = tp->write_imm(ep, want, NULL, &shared, 0, 0, 0x53, RAGG_TP_WRITE_IMM, 0);
	RAGG_CHECKF(rc == RAGG_ERR_KEY, "write of length 0 into a deregistered region: %s",
	            ragg_strerror_name(rc));
	RAGG_CHECK_OK(tp->send(ep, "done", 4));

	/* The owner hangs up: nothing is mapped for a gone peer. */
	tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, ep, TPC_DEADLINE_MS);
	rc = tp->peer_map(ep, &priv, &q, &qlen);
	RAGG_CHECK(rc < 0 && rc != -EINPROGRESS);
	rc = tp->peer_map(ep, &shared, &q, &qlen);
	RAGG_CHECK(rc < 0 && rc != -EINPROGRESS && q == PM_NO_PTR);
	tp->ep_close(ep);
	tpc_world_fini(&w);
}

SHM_CASE(shm_peer_map_processes)
{
	/* A child process maps our mem_alloc region, stores into it and
	 * tells us with a write of length 0; our private memory it cannot
	 * map, but writes there still land. */
	struct tpc_world w;
	struct tpc_slot slot;
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	static uint8_t want[PM_LEN];
	tpc_world_init(&w, tp, 1);
	uint8_t *block = tp->mem_alloc(w.dev[0], PM_BLOCK), *region = block + PM_OFF;
	RAGG_CHECK(block != NULL);
	memset(block, TPC_GUARD_BYTE, PM_BLOCK);
	tpc_fill(region, PM_LEN, 21);
	RAGG_CHECK_OK(tp->mr_reg(w.dev[0], region, PM_LEN, &mr, &rd));
	tpc_slot_init(&w, 0, &slot, 4096);
	RAGG_CHECK(kind_of(&slot.rd) == RAGG__SHM_KIND_PRIVATE);
	pid_t pid = spawn(mapper, tp, tpc_listen(&w, 0));
	struct ragg_tp_ep *ep = accept_one(&w, &rd, sizeof(rd));
	RAGG_CHECK_OK(tp->send(ep, &slot.rd, sizeof(slot.rd)));

	struct tpc_ev l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, ep, TPC_DEADLINE_MS);
	RAGG_CHECKF(l.ev.imm == 0x51 && l.ev.len == 0, "landed imm %#x len %zu", l.ev.imm,
	            l.ev.len);
	tpc_fill(want, PM_LEN, 22);
	RAGG_CHECK(memcmp(region, want, PM_LEN) == 0);
	for (size_t i = 0; i < PM_BLOCK; i++)
		if (i < PM_OFF || i >= PM_OFF + PM_LEN)
			RAGG_CHECKF(block[i] == TPC_GUARD_BYTE,
			            "byte %zu outside the region changed", i);
	l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 0x52 && l.ev.len == 64);
	RAGG_CHECK(memcmp(slot.addr, want, 64) == 0);
	tpc_slot_check_untouched(&slot, -1);
	struct tpc_ev m = tpc_expect(&w, 0, RAGG_TP_EV_RECV, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(m.ev.len == 6 && memcmp(m.ev.data, "mapped", 6) == 0);

	RAGG_CHECK_OK(tp->mr_dereg(mr));
	RAGG_CHECK_OK(tp->send(ep, "dereg", 5));
	m = tpc_expect(&w, 0, RAGG_TP_EV_RECV, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(m.ev.len == 4 && memcmp(m.ev.data, "done", 4) == 0);
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);
	tp->ep_close(ep);
	reap(pid);
	tp->mem_free(w.dev[0], block, PM_BLOCK);
	tpc_slot_fini(&w, &slot);
	tpc_world_fini(&w);
}

/* Mapping a descriptor the owner does not know, on a connection of its
 * own: asked, refused by the owner, which drops the connection as it does
 * for such a write; the mapper then reports the owner's reason. */
static void map_refused(struct scene *sc, struct ragg_tp_rdesc rd, int want, const char *what)
{
	const struct ragg_tp_ops *tp = sc->w.tp;
	struct ragg_tp_ep *s, *c;
	tpc_pair(&sc->w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	void *p = PM_NO_PTR;
	size_t len = PM_NO_LEN;
	int rc = tp->peer_map(c, &rd, &p, &len);
	RAGG_CHECKF(rc == -EINPROGRESS, "%s: first peer_map %s", what, ragg_strerror_name(rc));
	struct tpc_ev d = tpc_expect(&sc->w, 0, RAGG_TP_EV_DISCONNECTED, s, TPC_DEADLINE_MS);
	RAGG_CHECKF(d.ev.status == want, "%s: owner's status %s, want %s", what,
	            ragg_strerror_name(d.ev.status), ragg_strerror_name(want));
	d = tpc_expect(&sc->w, 1, RAGG_TP_EV_DISCONNECTED, c, TPC_DEADLINE_MS);
	RAGG_CHECK(d.ev.status == want);
	rc = tp->peer_map(c, &rd, &p, &len);
	RAGG_CHECKF(rc == want, "%s: peer_map after the refusal %s, want %s", what,
	            ragg_strerror_name(rc), ragg_strerror_name(want));
	RAGG_CHECK(p == PM_NO_PTR && len == PM_NO_LEN);
	RAGG_CHECK(tpc_count(&sc->w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);
	tpc_slot_check_untouched(&sc->slot, 0);
	block_untouched(sc);
	tp->ep_close(c);
	tp->ep_close(s);
	bystander_ok(sc);
}

SHM_CASE(shm_peer_map_refused)
{
	struct scene sc;
	void *p;
	size_t len;
	scene_init(&sc, tp);
	bystander_ok(&sc);

	/* Refused by the mapper itself: no question, no harm. */
	struct ragg_tp_rdesc bad = forge(&sc.brd, 0, 0, 0x7fff0000);
	p = PM_NO_PTR;
	RAGG_CHECK(tp->peer_map(sc.byc, &bad, &p, &len) == RAGG_ERR_KEY && p == PM_NO_PTR);
	bad = sc.brd;
	bad.blob[0] ^= 0xff; /* format */
	RAGG_CHECK(tp->peer_map(sc.byc, &bad, &p, &len) == -EINVAL && p == PM_NO_PTR);
	bad = sc.brd;
	bad.blob[1] = 9; /* kind */
	RAGG_CHECK(tp->peer_map(sc.byc, &bad, &p, &len) == -EINVAL && p == PM_NO_PTR);
	bystander_ok(&sc);

	map_refused(&sc, forge(&sc.brd, 0, 1, 0), RAGG_ERR_KEY, "one key bit flipped");
	map_refused(&sc, forge(&sc.brd, 0, 0, 1000), RAGG_ERR_KEY, "no such region");
	map_refused(&sc, forge(&sc.brd, 4096, 0, 0), RAGG_ERR_BOUNDS, "longer");
	map_refused(&sc, forge(&sc.brd, -1, 0, 0), RAGG_ERR_BOUNDS, "shorter");

	/* Mapped, then deregistered: RAGG_ERR_KEY from then on; registered
	 * again (new key), the new descriptor maps, the old one does not. */
	RAGG_CHECK_OK(map_wait(&sc.w, sc.byc, &sc.brd, &p, &len));
	RAGG_CHECK(len == BLK_REG);
	struct ragg_tp_rdesc old = sc.brd;
	RAGG_CHECK_OK(tp->mr_dereg(sc.bmr));
	RAGG_CHECK(tp->peer_map(sc.byc, &old, &p, &len) == RAGG_ERR_KEY);
	RAGG_CHECK_OK(tp->mr_reg(sc.w.dev[0], sc.block + BLK_OFF, BLK_REG, &sc.bmr, &sc.brd));
	void *p2;
	RAGG_CHECK_OK(map_wait(&sc.w, sc.byc, &sc.brd, &p2, &len));
	RAGG_CHECK(len == BLK_REG);
	RAGG_CHECK(tp->peer_map(sc.byc, &old, &p, &len) == RAGG_ERR_KEY);
	block_untouched(&sc);

	/* mem_free under a mapped region: refused too. */
	uint8_t *blk = tp->mem_alloc(sc.w.dev[0], 4096);
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK(blk != NULL);
	RAGG_CHECK_OK(tp->mr_reg(sc.w.dev[0], blk, 4096, &mr, &rd));
	RAGG_CHECK_OK(map_wait(&sc.w, sc.byc, &rd, &p, &len));
	tp->mem_free(sc.w.dev[0], blk, 4096);
	RAGG_CHECK(tp->peer_map(sc.byc, &rd, &p, &len) == RAGG_ERR_KEY);
	RAGG_CHECK_OK(tp->mr_dereg(mr));
	bystander_ok(&sc);
	scene_fini(&sc);
}

/* ---- a peer killed ---- */

static void victim(const struct ragg_tp_ops *tp, const char *addr)
{
	struct tpc_world w;
	struct ragg_tp_rdesc rd[2];
	tpc_world_init(&w, tp, 1);
	/* Describe two regions of our own for the parent to write into. */
	uint8_t *priv = calloc(1, 4096);
	uint8_t *shared = tp->mem_alloc(w.dev[0], 4096);
	struct ragg_tp_mr *m1, *m2;
	RAGG_CHECK(priv && shared);
	RAGG_CHECK_OK(tp->mr_reg(w.dev[0], priv, 4096, &m1, &rd[0]));
	RAGG_CHECK_OK(tp->mr_reg(w.dev[0], shared, 4096, &m2, &rd[1]));
	struct ragg_tp_rdesc theirs;
	struct ragg_tp_ep *ep = connect_one(&w, addr, &rd[0], sizeof(rd[0]), &theirs);
	RAGG_CHECK_OK(tp->send(ep, &rd[1], sizeof(rd[1])));
	uint8_t src[64] = { 1 };
	tpc_write(&w, ep, src, NULL, &theirs, 0, sizeof(src), 5, RAGG_TP_WRITE_IMM, 0);
	/* Serve the parent's first writes (they ask where our regions are)
	 * until it says so, then die the hard way. */
	tpc_expect(&w, 0, RAGG_TP_EV_RECV, ep, TPC_DEADLINE_MS);
	usleep(200 * 1000);
	raise(SIGKILL);
}

SHM_CASE(shm_peer_killed)
{
	struct tpc_world w;
	struct tpc_slot slot;
	tpc_world_init(&w, tp, 1);
	tpc_slot_init(&w, 0, &slot, 4096);
	pid_t pid = spawn(victim, tp, tpc_listen(&w, 0));
	struct tpc_ev r = tpc_expect(&w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
	struct ragg_tp_rdesc rd[2];
	RAGG_CHECK(r.ev.len == sizeof(rd[0]));
	memcpy(&rd[0], r.ev.data, sizeof(rd[0]));
	struct ragg_tp_ep *ep = r.ev.ep;
	RAGG_CHECK_OK(tp->accept(ep, &slot.rd, sizeof(slot.rd)));
	struct tpc_ev m = tpc_expect(&w, 0, RAGG_TP_EV_RECV, ep, TPC_DEADLINE_MS);
	RAGG_CHECK(m.ev.len == sizeof(rd[1]));
	memcpy(&rd[1], m.ev.data, sizeof(rd[1]));
	tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, ep, TPC_DEADLINE_MS);
	static uint8_t src[4096];
	for (int k = 0; k < 2; k++)
		tpc_write(&w, ep, src, NULL, &rd[k], 0, sizeof(src), 0, RAGG_TP_WRITE_SIGNAL,
		          10 + k);
	for (int k = 0; k < 2; k++) {
		struct tpc_ev e = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_DONE, ep, TPC_DEADLINE_MS);
		RAGG_CHECK_OK(e.ev.status);
	}
	RAGG_CHECK_OK(tp->send(ep, "bye", 3));

	/* Sleeping when it dies: woken by the hang-up, not the timeout. */
	uint64_t t0 = tpc_now_ms();
	RAGG_CHECK_OK(tp->wait(w.dev[0], 8000));
	RAGG_CHECKF(tpc_now_ms() - t0 < 4000, "wait() slept %llu ms through the peer's death",
	            (unsigned long long)(tpc_now_ms() - t0));
	int st;
	RAGG_CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

	/* Dead and reaped: a write into its private memory is refused (its
	 * pid may be anyone's now), one into its shared memory lands in
	 * pages nobody else has; neither crashes nor hangs. */
	int rc = tp->write_imm(ep, src, NULL, &rd[0], 0, 64, 0, 0, 0);
	RAGG_CHECKF(rc < 0 && rc != -EAGAIN, "write into a dead peer's private memory: %d", rc);
	rc = tp->write_imm(ep, src, NULL, &rd[1], 0, 64, 0, 0, 0);
	RAGG_CHECK(rc <= 0 && rc != -EAGAIN);
	struct tpc_ev d = tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, ep, TPC_DEADLINE_MS);
	RAGG_CHECKF(d.ev.status == RAGG_ERR_PEER_LOST, "status %s",
	            ragg_strerror_name(d.ev.status));
	RAGG_CHECK(tp->write_imm(ep, src, NULL, &rd[1], 0, 64, 0, 0, 0) < 0);
	RAGG_CHECK(tp->send(ep, "x", 1) < 0);
	for (int i = 0; i < 10; i++)
		tpc_pump(&w);
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_DISCONNECTED, ep) == 0);
	tp->ep_close(ep);
	tpc_slot_fini(&w, &slot);
	tpc_world_fini(&w);
}

/* ---- wakeups ---- */

#define PINGS 2000
#define FLOOD 20000

static _Thread_local unsigned slept; /* wait() calls that slept */

/* Block in wait() (never spin) until an event of type comes; fails if any
 * one wait sleeps its whole timeout, which is what a lost wakeup does. */
static struct ragg_tp_event sleep_for(const struct ragg_tp_ops *tp, struct ragg_tp_dev *dev,
                                      enum ragg_tp_event_type type)
{
	struct ragg_tp_event ev;
	for (;;) {
		int n = tp->poll(dev, &ev, 1);
		RAGG_CHECK(n >= 0);
		if (n == 1 && ev.type == type)
			return ev;
		RAGG_CHECKF(n == 0 || ev.type == RAGG_TP_EV_WRITE_DONE, "event %d", ev.type);
		if (n)
			continue;
		uint64_t t0 = tpc_now_ms();
		RAGG_CHECK_OK(tp->wait(dev, 3000));
		RAGG_CHECKF(tpc_now_ms() - t0 < 2500, "a wakeup was lost (slept %llu ms)",
		            (unsigned long long)(tpc_now_ms() - t0));
		slept++;
	}
}

static void pinger(const struct ragg_tp_ops *tp, const char *addr)
{
	struct tpc_world w;
	struct tpc_slot mine;
	struct ragg_tp_rdesc rd;
	tpc_world_init(&w, tp, 1);
	tpc_slot_init(&w, 0, &mine, 64);
	struct ragg_tp_ep *ep = connect_one(&w, addr, &mine.rd, sizeof(mine.rd), &rd);
	uint64_t v = 0;
	for (uint32_t i = 0; i < PINGS; i++) {
		tpc_write(&w, ep, &v, NULL, &rd, 0, sizeof(v), i, RAGG_TP_WRITE_IMM, 0);
		struct ragg_tp_event ev = sleep_for(tp, w.dev[0], RAGG_TP_EV_WRITE_LANDED);
		RAGG_CHECK(ev.imm == i);
	}
	/* Then a flood through a small ring: a full ring puts us to sleep,
	 * and the reader must wake us when it frees slots. */
	uint64_t sleeps = 0;
	for (uint32_t i = 0; i < FLOOD;) {
		int rc = tp->write_imm(ep, &v, NULL, &rd, 0, sizeof(v), i, RAGG_TP_WRITE_IMM, 0);
		if (rc == 0) {
			i++;
			continue;
		}
		RAGG_CHECK(rc == -EAGAIN);
		struct ragg_tp_event ev;
		RAGG_CHECK(tp->poll(w.dev[0], &ev, 1) == 0);
		uint64_t t0 = tpc_now_ms();
		RAGG_CHECK_OK(tp->wait(w.dev[0], 3000));
		RAGG_CHECKF(tpc_now_ms() - t0 < 2500, "a full ring's wakeup was lost");
		sleeps++;
	}
	RAGG_CHECKF(sleeps > 0, "the ring never filled");
	sleep_for(tp, w.dev[0], RAGG_TP_EV_DISCONNECTED);
	tp->ep_close(ep);
	tpc_slot_fini(&w, &mine);
	tpc_world_fini(&w);
}

TPC_CASE_T(shm_wakeups, 120, "shm")
{
	/* Two processes that only ever block, never spin: a ping-pong, then
	 * a flood through a 32-slot ring. Each side's wait() must be woken
	 * by the other's write, or by the other freeing ring slots. */
	setenv("RAGG_SHM_QUEUE_DEPTH", "32", 1);
	struct tpc_world w;
	struct tpc_slot slot;
	tpc_world_init(&w, tp, 1);
	tpc_slot_init(&w, 0, &slot, 64);
	pid_t pid = spawn(pinger, tp, tpc_listen(&w, 0));
	struct tpc_ev r = tpc_expect(&w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
	struct ragg_tp_rdesc theirs;
	RAGG_CHECK(r.ev.len == sizeof(theirs));
	memcpy(&theirs, r.ev.data, sizeof(theirs));
	struct ragg_tp_ep *ep = r.ev.ep;
	RAGG_CHECK_OK(tp->accept(ep, &slot.rd, sizeof(slot.rd)));
	sleep_for(tp, w.dev[0], RAGG_TP_EV_CONNECTED);
	uint64_t v = 0, t0 = tpc_now_ms();
	slept = 0;
	for (uint32_t i = 0; i < PINGS; i++) {
		struct ragg_tp_event ev = sleep_for(tp, w.dev[0], RAGG_TP_EV_WRITE_LANDED);
		RAGG_CHECK(ev.imm == i);
		tpc_write(&w, ep, &v, NULL, &theirs, 0, sizeof(v), i, RAGG_TP_WRITE_IMM, 0);
	}
	uint64_t t1 = tpc_now_ms();
	unsigned ping_sleeps = slept;
	/* A pause before draining, so the writer surely meets a full ring
	 * and has to be woken, however fast this side is. */
	usleep(50 * 1000);
	for (uint32_t i = 0; i < FLOOD; i++) {
		struct ragg_tp_event ev = sleep_for(tp, w.dev[0], RAGG_TP_EV_WRITE_LANDED);
		RAGG_CHECKF(ev.imm == i, "flood: imm %u, want %u", ev.imm, i);
	}
	uint64_t t2 = tpc_now_ms();
	fprintf(stderr,
	        "shm_wakeups: %d blocking round trips in %llu ms (%u sleeps), %d writes "
	        "through a 32-slot ring in %llu ms (%u sleeps)\n",
	        PINGS, (unsigned long long)(t1 - t0), ping_sleeps, FLOOD,
	        (unsigned long long)(t2 - t1), slept - ping_sleeps);
	tp->ep_close(ep);
	reap(pid);
	tpc_slot_fini(&w, &slot);
	tpc_world_fini(&w);
}

SHM_CASE(shm_arm_wait_fd)
{
	/* arm() refuses to sleep with work pending; armed, the wait fd turns
	 * readable when a peer's write lands. */
	struct tpc_world w;
	struct ragg_tp_ep *s, *c;
	struct tpc_slot slot;
	tpc_world_init(&w, tp, 2);
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	tpc_slot_init(&w, 0, &slot, 64);
	static const uint8_t src[8] = { 1, 2, 3 };
	tpc_write(&w, c, src, NULL, &slot.rd, 0, 8, 1, RAGG_TP_WRITE_IMM, 0);
	tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, s, TPC_DEADLINE_MS);
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);

	int fd = tp->wait_fd(w.dev[0]);
	RAGG_CHECK(fd >= 0);
	RAGG_CHECK_OK(tp->arm(w.dev[0]));
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	RAGG_CHECK(poll(&pfd, 1, 50) == 0);
	RAGG_CHECK_OK(tp->write_imm(c, src, NULL, &slot.rd, 0, 8, 2, RAGG_TP_WRITE_IMM, 0));
	RAGG_CHECK(poll(&pfd, 1, 5000) == 1);
	struct ragg_tp_event ev;
	RAGG_CHECK(tp->poll(w.dev[0], &ev, 1) == 1);
	RAGG_CHECK(ev.type == RAGG_TP_EV_WRITE_LANDED && ev.imm == 2);
	/* A landing not yet reported: no sleeping. */
	RAGG_CHECK_OK(tp->write_imm(c, src, NULL, &slot.rd, 0, 8, 3, RAGG_TP_WRITE_IMM, 0));
	RAGG_CHECK(tp->arm(w.dev[0]) == -EAGAIN);
	RAGG_CHECK(tp->poll(w.dev[0], &ev, 1) == 1 && ev.imm == 3);
	tpc_slot_fini(&w, &slot);
	tp->ep_close(c);
	tp->ep_close(s);
	tpc_world_fini(&w);
}

/* ---- two threads, one device each ---- */

#define THR_WRITES 50000
#define THR_EVERY  97 /* a message after every so many writes */

struct thr {
	const struct ragg_tp_ops *tp;
	char addr[RAGG_TP_ADDR_MAX];
};

static struct ragg_tp_dev *thr_open(const struct ragg_tp_ops *tp)
{
	struct ragg_tp_params p;
	struct ragg_tp_dev *dev;
	tpc_params(&p);
	p.log_level = RAGG_LOG_NONE; /* the test's log buffer is not thread-safe */
	p.poll_mode = RAGG_POLL_BLOCK;
	RAGG_CHECK_OK(tp->open(&p, &dev));
	return dev;
}

static void *thr_writer(void *arg)
{
	const struct thr *t = arg;
	const struct ragg_tp_ops *tp = t->tp;
	struct ragg_tp_dev *dev = thr_open(tp);
	struct ragg_tp_ep *ep;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK_OK(tp->connect(dev, t->addr, NULL, 0, NULL, &ep));
	struct ragg_tp_event ev = sleep_for(tp, dev, RAGG_TP_EV_CONNECTED);
	RAGG_CHECK(ev.len == sizeof(rd));
	memcpy(&rd, ev.data, sizeof(rd));
	uint64_t v[2] = { 0, 0 };
	for (uint32_t i = 0; i < THR_WRITES;) {
		v[i & 1] = i;
		int rc = tp->write_imm(ep, &v[i & 1], NULL, &rd, (i & 1) * 8, 8, i,
		                       RAGG_TP_WRITE_IMM, 0);
		if (!rc && i % THR_EVERY == 0)
			while ((rc = tp->send(ep, &i, sizeof(i))) == -EAGAIN)
				RAGG_CHECK_OK(tp->wait(dev, 3000));
		if (!rc) {
			i++;
			continue;
		}
		RAGG_CHECK(rc == -EAGAIN);
		RAGG_CHECK(tp->poll(dev, &ev, 1) == 0);
		RAGG_CHECK_OK(tp->wait(dev, 3000));
	}
	sleep_for(tp, dev, RAGG_TP_EV_DISCONNECTED);
	tp->ep_close(ep);
	tp->close(dev);
	return NULL;
}

TPC_CASE_T(shm_threads, 120, "shm")
{
	/* The same in one process: the writer's and the reader's devices on
	 * two threads, sleeping whenever they have nothing to do. Messages
	 * arrive between the writes they were posted between. */
	struct thr t = { .tp = tp };
	struct ragg_tp_dev *dev = thr_open(tp);
	uint8_t *slot = tp->mem_alloc(dev, 4096);
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK(slot != NULL);
	RAGG_CHECK_OK(tp->mr_reg(dev, slot, 16, &mr, &rd));
	RAGG_CHECK_OK(tp->listen(dev, NULL, t.addr, sizeof(t.addr)));
	pthread_t th;
	RAGG_CHECK(pthread_create(&th, NULL, thr_writer, &t) == 0);
	struct ragg_tp_event ev = sleep_for(tp, dev, RAGG_TP_EV_CONNECT_REQUEST);
	struct ragg_tp_ep *ep = ev.ep;
	RAGG_CHECK_OK(tp->accept(ep, &rd, sizeof(rd)));
	sleep_for(tp, dev, RAGG_TP_EV_CONNECTED);
	uint32_t next = 0, msgs = 0;
	bool msg_due = false;
	while (next < THR_WRITES) {
		int n = tp->poll(dev, &ev, 1);
		RAGG_CHECK(n >= 0);
		if (!n) {
			RAGG_CHECK_OK(tp->wait(dev, 3000));
			continue;
		}
		if (ev.type == RAGG_TP_EV_RECV) {
			uint32_t i;
			RAGG_CHECK(ev.len == sizeof(i) && msg_due);
			memcpy(&i, ev.data, sizeof(i));
			RAGG_CHECKF(i == next - 1, "message %u after write %u", i, next - 1);
			msg_due = false;
			msgs++;
			continue;
		}
		RAGG_CHECK(ev.type == RAGG_TP_EV_WRITE_LANDED);
		RAGG_CHECKF(!msg_due, "write %u overtook message %u", ev.imm, next - 1);
		RAGG_CHECKF(ev.imm == next, "write %u landed, want %u", ev.imm, next);
		uint64_t got;
		memcpy(&got, slot + (next & 1) * 8, sizeof(got));
		/* Its data is there when it is reported (later writes may have
		 * overwritten it with a larger number already). */
		RAGG_CHECKF(got >= next && got % 2 == next % 2, "write %u: slot holds %llu", next,
		            (unsigned long long)got);
		msg_due = next % THR_EVERY == 0;
		next++;
	}
	while (msg_due) {
		ev = sleep_for(tp, dev, RAGG_TP_EV_RECV);
		msg_due = false;
		msgs++;
	}
	RAGG_CHECK(msgs == (THR_WRITES + THR_EVERY - 1) / THR_EVERY);
	tp->ep_close(ep);
	RAGG_CHECK(pthread_join(th, NULL) == 0);
	RAGG_CHECK_OK(tp->mr_dereg(mr));
	tp->mem_free(dev, slot, 4096);
	tp->close(dev);
}

/* ---- nothing left behind ---- */

/* Entries of /dev/shm; with a private one (see below) it starts empty. */
static size_t dev_shm_entries(char names[][256], size_t max)
{
	DIR *d = opendir("/dev/shm");
	size_t n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && n < max)
			snprintf(names[n++], 256, "%s", e->d_name);
	closedir(d);
	return n;
}

/* A /dev/shm of our own (a new mount namespace with a fresh tmpfs there),
 * so that anything in it at the end is ours, whatever else runs on the
 * host. Needs CAP_SYS_ADMIN; false without. */
static bool private_dev_shm(void)
{
	if (unshare(CLONE_NEWNS) < 0)
		return false;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("ragg-test", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m") < 0) {
		fprintf(stderr, "shm_no_leftovers: no private /dev/shm: %s\n", strerror(errno));
		return false;
	}
	return true;
}

static bool file_has(const char *path, const char *needle)
{
	char line[512];
	bool found = false;
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static void leaver(const struct ragg_tp_ops *tp, const char *addr)
{
	struct tpc_world w;
	struct ragg_tp_rdesc rd;
	tpc_world_init(&w, tp, 1);
	void *mem = tp->mem_alloc(w.dev[0], (size_t)1 << 20);
	RAGG_CHECK(mem != NULL);
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc mine;
	RAGG_CHECK_OK(tp->mr_reg(w.dev[0], mem, (size_t)1 << 20, &mr, &mine));
	RAGG_CHECK(tpc_listen(&w, 0)[0]);
	struct ragg_tp_ep *ep = connect_one(&w, addr, &mine, sizeof(mine), &rd);
	tpc_write(&w, ep, mem, NULL, &rd, 0, 4096, 1, RAGG_TP_WRITE_IMM, 0);
	for (;;)
		tpc_pump(&w); /* until killed */
}

SHM_CASE(shm_no_leftovers)
{
	static char before[512][256], after[512][256];
	bool own = private_dev_shm();
	size_t nb = dev_shm_entries(before, 512);
	RAGG_CHECK(!own || nb == 0);
	struct tpc_world w;
	struct tpc_slot slot;
	tpc_world_init(&w, tp, 1);
	tpc_slot_init(&w, 0, &slot, 4096);
	void *mem = tp->mem_alloc(w.dev[0], 4096);
	RAGG_CHECK(mem != NULL);
	char addr[RAGG_TP_ADDR_MAX], sock[96];
	snprintf(addr, sizeof(addr), "%s", tpc_listen(&w, 0));
	/* /proc/net/unix shows abstract names with '@' for the NUL. */
	snprintf(sock, sizeof(sock), "@ragg-shm/%s", strrchr(addr, ':') + 1);
	RAGG_CHECK(file_has("/proc/net/unix", sock));
	RAGG_CHECK(file_has("/proc/self/maps", "/memfd:ragg-shm"));
	pid_t pid = spawn(leaver, tp, addr);
	struct tpc_ev r = tpc_expect(&w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
	struct ragg_tp_rdesc theirs;
	memcpy(&theirs, r.ev.data, sizeof(theirs));
	RAGG_CHECK_OK(tp->accept(r.ev.ep, &slot.rd, sizeof(slot.rd)));
	tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, r.ev.ep, TPC_DEADLINE_MS);
	/* We map its memory; then it is killed. */
	tpc_write(&w, r.ev.ep, slot.addr, NULL, &theirs, 0, 64, 0, RAGG_TP_WRITE_SIGNAL, 1);
	tpc_expect(&w, 0, RAGG_TP_EV_WRITE_DONE, r.ev.ep, TPC_DEADLINE_MS);
	kill(pid, SIGKILL);
	int st;
	RAGG_CHECK(waitpid(pid, &st, 0) == pid);
	tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, r.ev.ep, TPC_DEADLINE_MS);
	tp->ep_close(r.ev.ep);
	tp->mem_free(w.dev[0], mem, 4096);
	tpc_slot_fini(&w, &slot);
	tpc_world_fini(&w);

	/* Every process of the job is gone or closed: no socket name, no
	 * mapping, no file. */
	RAGG_CHECK(!file_has("/proc/net/unix", sock));
	RAGG_CHECK(!file_has("/proc/self/maps", "memfd:ragg"));
	size_t na = dev_shm_entries(after, 512);
	for (size_t i = 0; i < na; i++) {
		bool old = false;
		for (size_t k = 0; k < nb && !old; k++)
			old = strcmp(after[i], before[k]) == 0;
		/* On the shared /dev/shm, other jobs may come and go: only a
		 * name of ours would be ours. */
		RAGG_CHECKF(old || (!own && !strstr(after[i], "ragg")), "/dev/shm/%s appeared",
		            after[i]);
	}
}

/* ---- addresses and settings ---- */

SHM_CASE(shm_addresses)
{
	RAGG_CHECK(tp->caps & RAGG_TP_CAP_LOCAL_ONLY);
	RAGG_CHECK(RAGG_TP_HAS_OP(tp, mem_alloc) && RAGG_TP_HAS_OP(tp, mem_free) &&
	           RAGG_TP_HAS_OP(tp, reachable) && RAGG_TP_HAS_OP(tp, arm) &&
	           RAGG_TP_HAS_OP(tp, wait_fd));
	struct tpc_world w;
	tpc_world_init(&w, tp, 3);
	const char *a = tpc_listen(&w, 0);
	char id[17];
	RAGG_CHECKF(sscanf(a, "shm:%16[0-9a-f]:", id) == 1 && strlen(a) > 22, "address %s", a);
	RAGG_CHECK(tp->reachable(w.dev[1], a) == 1);
	char other[RAGG_TP_ADDR_MAX];
	snprintf(other, sizeof(other), "%s", a);
	other[4] = other[4] == '0' ? '1' : '0';
	RAGG_CHECK(tp->reachable(w.dev[1], other) == 0);
	RAGG_CHECK(tp->reachable(w.dev[1], "127.0.0.1:18515") == 0);
	RAGG_CHECK(tp->reachable(w.dev[1], "shm:") == 0);
	struct ragg_tp_ep *ep = NULL;
	RAGG_CHECK(tp->connect(w.dev[1], other, NULL, 0, NULL, &ep) == -EHOSTUNREACH && !ep);
	/* A second listener on the same device: refused; another device
	 * gets another name. */
	char addr[RAGG_TP_ADDR_MAX];
	RAGG_CHECK(tp->listen(w.dev[0], "127.0.0.1:0", addr, sizeof(addr)) == -EBUSY);
	RAGG_CHECK(strcmp(tpc_listen(&w, 1), a) != 0);

	/* "host:port" for tools that think in ports: the port names the
	 * listener, the host must be this one. */
	unsigned port = 20000 + (unsigned)(getpid() % 20000);
	char spec[64];
	snprintf(spec, sizeof(spec), "127.0.0.1:%u", port);
	RAGG_CHECK_OK(tp->listen(w.dev[2], spec, addr, sizeof(addr)));
	char suffix[16];
	snprintf(suffix, sizeof(suffix), ":p%u", port);
	RAGG_CHECK(strlen(addr) > strlen(suffix) &&
	           strcmp(addr + strlen(addr) - strlen(suffix), suffix) == 0);
	static const char *const hosts[] = { "127.0.0.1", "localhost" };
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(hosts); i++) {
		struct ragg_tp_ep *s, *c;
		snprintf(spec, sizeof(spec), "%s:%u", hosts[i], port);
		RAGG_CHECK_OK(tp->connect(w.dev[1], spec, "hi", 2, NULL, &c));
		struct tpc_ev r =
		    tpc_expect(&w, 2, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
		s = r.ev.ep;
		RAGG_CHECK_OK(tp->accept(s, NULL, 0));
		tpc_expect(&w, 1, RAGG_TP_EV_CONNECTED, c, TPC_DEADLINE_MS);
		tpc_expect(&w, 2, RAGG_TP_EV_CONNECTED, s, TPC_DEADLINE_MS);
		tp->ep_close(c);
		tp->ep_close(s);
	}
	/* TEST-NET-1 is nobody's interface. */
	snprintf(spec, sizeof(spec), "192.0.2.1:%u", port);
	RAGG_CHECK(tp->connect(w.dev[1], spec, NULL, 0, NULL, &ep) == -EHOSTUNREACH);
	tpc_world_fini(&w);
}

SHM_CASE(shm_cma_disabled)
{
	/* Without cross-memory attach, private regions are refused with a
	 * reason that says what to do; mem_alloc memory still works. */
	setenv("RAGG_SHM_CMA", "0", 1);
	struct tpc_world w;
	struct ragg_tp_ep *s, *c;
	struct tpc_slot slot;
	tpc_world_init(&w, tp, 2);
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	tpc_slot_init(&w, 0, &slot, 4096);
	uint8_t *blk = tp->mem_alloc(w.dev[0], 4096);
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	RAGG_CHECK(blk != NULL);
	RAGG_CHECK_OK(tp->mr_reg(w.dev[0], blk, 4096, &mr, &rd));
	static uint8_t src[64] = { 9 };
	tpc_write(&w, c, src, NULL, &rd, 0, 64, 1, RAGG_TP_WRITE_IMM, 0);
	tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, s, TPC_DEADLINE_MS);
	RAGG_CHECK(blk[0] == 9);
	tpc_log_clear();
	RAGG_CHECK_OK(tp->write_imm(c, src, NULL, &slot.rd, 0, 64, 2, RAGG_TP_WRITE_IMM, 0));
	struct tpc_ev d = tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, s, TPC_DEADLINE_MS);
	RAGG_CHECK(d.ev.status == -EPERM);
	RAGG_CHECK(tpc_log_has("RAGG_SHM_CMA=0") && tpc_log_has("mem_alloc"));
	tpc_slot_check_untouched(&slot, 0);
	RAGG_CHECK_OK(tp->mr_dereg(mr));
	tp->mem_free(w.dev[0], blk, 4096);
	tpc_slot_fini(&w, &slot);
	tp->ep_close(c);
	tp->ep_close(s);
	tpc_world_fini(&w);
}

SHM_CASE(shm_mem_alloc)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 1);
	static const size_t sizes[] = { 0, 1, 4095, 4096, 4097, (size_t)3 << 20 };
	void *p[RAGG_ARRAY_SIZE(sizes)];
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(sizes); i++) {
		p[i] = tp->mem_alloc(w.dev[0], sizes[i]);
		RAGG_CHECK(p[i] != NULL && ((uintptr_t)p[i] & 4095) == 0);
		const uint8_t *b = p[i];
		for (size_t k = 0; k < sizes[i]; k++)
			RAGG_CHECK(b[k] == 0);
		memset(p[i], 0x5a, sizes[i]);
	}
	/* Not ours: said, not crashed. */
	tpc_log_clear();
	int x;
	tp->mem_free(w.dev[0], &x, sizeof(x));
	RAGG_CHECK(tpc_log_has("not from mem_alloc"));
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(sizes); i++)
		tp->mem_free(w.dev[0], p[i], sizes[i]);
	RAGG_CHECK(tp->mem_alloc(w.dev[0], SIZE_MAX) == NULL);
	tpc_world_fini(&w);
}
