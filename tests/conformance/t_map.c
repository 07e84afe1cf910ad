/*
 * Conformance: peer_map, load/store access to a peer's region. The op is
 * optional; the cases about what it does are instantiated only for
 * transports that have it (the runner says which are not), and one case
 * for every transport checks how its absence is seen.
 *
 * Both ends live in this process (two devices): the owner registers, the
 * mapper maps its peer's region through its endpoint. What crosses a real
 * process boundary, and descriptors forged in a transport's own format,
 * are in the transport's own file (t_shm.c).
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tpc.h"

static bool has_peer_map(const struct ragg_tp_ops *tp)
{
	return RAGG_TP_HAS_OP(tp, peer_map);
}

#define MAP_CASE(name_) TPC_CASE_WHEN(name_, has_peer_map, "peer_map")

/* A region in the middle of a block, ends not page aligned, so a mapping
 * off by any amount shows in the guard bytes or the pattern. */
#define MAP_BLOCK (4 * 4096)
#define MAP_OFF   (4096 + 100)
#define MAP_LEN   8000

/* Output sentinels: peer_map writes *ptr and *len only on success. */
#define NO_PTR ((void *)(uintptr_t)0x5eed)
#define NO_LEN ((size_t)0x5eed)

static void fake_op(void)
{
}

TPC_CASE(peer_map_optional)
{
	/* A table from before the op (shorter size) never has it, whatever
	 * lies past its end; a NULL op is absent. */
	struct ragg_tp_ops old = *tp;
	old.size = offsetof(struct ragg_tp_ops, peer_map);
	old.peer_map = (int (*)(struct ragg_tp_ep *, const struct ragg_tp_rdesc *, void **,
	                        size_t *))(void (*)(void))fake_op;
	RAGG_CHECK(!RAGG_TP_HAS_OP(&old, peer_map));
	old.size = sizeof(old);
	RAGG_CHECK(RAGG_TP_HAS_OP(&old, peer_map));
	old.peer_map = NULL;
	RAGG_CHECK(!RAGG_TP_HAS_OP(&old, peer_map));

	/* tcp peers share no memory: the core must see no op and write. */
	if (tpc_is(tp, "tcp"))
		RAGG_CHECK(!RAGG_TP_HAS_OP(tp, peer_map));
	/* shm's whole point: mem_alloc memory peers map. */
	if (tpc_is(tp, "shm"))
		RAGG_CHECK(RAGG_TP_HAS_OP(tp, peer_map) && RAGG_TP_HAS_OP(tp, mem_alloc));
	if (!RAGG_TP_HAS_OP(tp, peer_map))
		fprintf(stderr, "peer_map_optional: %s has no peer_map (writes only)\n", tp->name);
}

/* peer_map until it stops saying -EINPROGRESS (the owner, asked, answers
 * through poll()); the outputs stay untouched until it succeeds. *first
 * gets what the first call returned. */
static int map_wait(struct tpc_world *w, struct ragg_tp_ep *ep, const struct ragg_tp_rdesc *rd,
                    void **ptr, size_t *len, int *first)
{
	uint64_t deadline = tpc_now_ms() + TPC_DEADLINE_MS;
	for (int calls = 0;; calls++) {
		*ptr = NO_PTR;
		*len = NO_LEN;
		int rc = w->tp->peer_map(ep, rd, ptr, len);
		if (!calls && first)
			*first = rc;
		if (rc) {
			RAGG_CHECKF(*ptr == NO_PTR && *len == NO_LEN,
			            "peer_map returned %s and wrote its outputs",
			            ragg_strerror_name(rc));
		}
		if (rc != -EINPROGRESS)
			return rc;
		RAGG_CHECKF(tpc_now_ms() < deadline, "peer_map in progress for %d ms",
		            TPC_DEADLINE_MS);
		tpc_pump(w);
	}
}

/* Memory the transport likes best for the region, as a peer would use. */
static uint8_t *block_alloc(struct tpc_world *w, int dev)
{
	uint8_t *b;
	if (RAGG_TP_HAS_OP(w->tp, mem_alloc))
		b = w->tp->mem_alloc(w->dev[dev], MAP_BLOCK);
	else
		b = malloc(MAP_BLOCK);
	RAGG_CHECK(b != NULL);
	memset(b, TPC_GUARD_BYTE, MAP_BLOCK);
	return b;
}

static void block_free(struct tpc_world *w, int dev, uint8_t *b)
{
	if (RAGG_TP_HAS_OP(w->tp, mem_free))
		w->tp->mem_free(w->dev[dev], b, MAP_BLOCK);
	else
		free(b);
}

static void guards_intact(const uint8_t *b)
{
	for (size_t i = 0; i < MAP_BLOCK; i++)
		if (i < MAP_OFF || i >= MAP_OFF + MAP_LEN)
			RAGG_CHECKF(b[i] == TPC_GUARD_BYTE,
			            "block byte %zu outside the region changed", i);
}

MAP_CASE(map_shared_region)
{
	/* Device 0 owns the region, device 1 maps it. */
	struct tpc_world w;
	struct ragg_tp_ep *s, *c;
	struct ragg_tp_mr *mr;
	struct ragg_tp_rdesc rd;
	static uint8_t want[MAP_LEN], src[64];
	tpc_world_init(&w, tp, 2);
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	uint8_t *block = block_alloc(&w, 0), *region = block + MAP_OFF;
	tpc_fill(region, MAP_LEN, 1);
	RAGG_CHECK_OK(tp->mr_reg(w.dev[0], region, MAP_LEN, &mr, &rd));

	void *p;
	size_t len;
	int first;
	RAGG_CHECK_OK(map_wait(&w, c, &rd, &p, &len, &first));
	RAGG_CHECKF(first == 0 || first == -EINPROGRESS, "first peer_map: %s",
	            ragg_strerror_name(first));
	/* The answer was reported as an event on the mapping side's endpoint,
	 * so a caller can wait for it instead of asking at every turn. */
	if (first == -EINPROGRESS)
		RAGG_CHECKF(tpc_count(&w, 1, RAGG_TP_EV_PEER_MAPPED, c) >= 1,
		            "no RAGG_TP_EV_PEER_MAPPED after an answered peer_map");
	RAGG_CHECKF(len == MAP_LEN, "mapped length %zu, registered %d", len, MAP_LEN);
	uint8_t *m = p;
	/* Loads: what the owner put there. */
	tpc_fill(want, MAP_LEN, 1);
	RAGG_CHECK(memcmp(m, want, MAP_LEN) == 0);
	/* Asked again: at once, the same mapping (valid until ep_close). */
	void *p2 = NO_PTR;
	size_t len2 = NO_LEN;
	RAGG_CHECK_OK(tp->peer_map(c, &rd, &p2, &len2));
	RAGG_CHECK(p2 == p && len2 == MAP_LEN);

	/* Stores, then a write of length 0 that carries just the immediate:
	 * the owner sees it, and the stores with it. */
	tpc_fill(want, MAP_LEN, 2);
	memcpy(m, want, MAP_LEN);
	tpc_write(&w, c, src, NULL, &rd, 0, 0, 0xC0FFEE, RAGG_TP_WRITE_IMM, 0);
	struct tpc_ev l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, s, TPC_DEADLINE_MS);
	RAGG_CHECKF(l.ev.imm == 0xC0FFEE && l.ev.len == 0, "landed imm %#x len %zu", l.ev.imm,
	            l.ev.len);
	RAGG_CHECK(memcmp(region, want, MAP_LEN) == 0);
	guards_intact(block);

	/* The owner's own stores show through the mapping too, and writes
	 * with data still land in a mapped region. */
	tpc_fill(region, MAP_LEN, 3);
	tpc_fill(want, MAP_LEN, 3);
	RAGG_CHECK(memcmp(m, want, MAP_LEN) == 0);
	memset(src, 0x3c, sizeof(src));
	tpc_write(&w, c, src, NULL, &rd, MAP_LEN - sizeof(src), sizeof(src), 7, RAGG_TP_WRITE_IMM,
	          0);
	l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, s, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 7 && l.ev.len == sizeof(src));
	RAGG_CHECK(memcmp(region + MAP_LEN - sizeof(src), src, sizeof(src)) == 0);
	RAGG_CHECK(memcmp(m + MAP_LEN - sizeof(src), src, sizeof(src)) == 0);
	guards_intact(block);
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);

	tp->ep_close(c);
	tp->ep_close(s);
	RAGG_CHECK_OK(tp->mr_dereg(mr));
	block_free(&w, 0, block);
	tpc_world_fini(&w);
}

MAP_CASE(map_private_region)
{
	/* A region in ordinary (malloc'd) memory: on a transport that
	 * shares only what it allocated, it cannot be mapped, and says so
	 * (after asking, maybe); writes still reach it. */
	struct tpc_world w;
	struct ragg_tp_ep *s, *c;
	struct tpc_slot slot;
	tpc_world_init(&w, tp, 2);
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	tpc_slot_init(&w, 0, &slot, 8192);
	void *p;
	size_t len;
	int rc = map_wait(&w, c, &slot.rd, &p, &len, NULL);
	if (tpc_is(tp, "shm") || RAGG_TP_HAS_OP(tp, mem_alloc))
		RAGG_CHECKF(rc == -EOPNOTSUPP, "peer_map of private memory: %s",
		            ragg_strerror_name(rc));
	else
		RAGG_CHECKF(rc == -EOPNOTSUPP || (rc == 0 && len == slot.len),
		            "peer_map of private memory: %s", ragg_strerror_name(rc));
	static uint8_t src[64];
	memset(src, 0x77, sizeof(src));
	tpc_write(&w, c, src, NULL, &slot.rd, 8, sizeof(src), 9, RAGG_TP_WRITE_IMM, 0);
	struct tpc_ev l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, s, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 9 && l.ev.len == sizeof(src));
	RAGG_CHECK(memcmp(slot.addr + 8, src, sizeof(src)) == 0);
	tpc_slot_check_untouched(&slot, -1);
	/* Known to the writer now: the answer does not change. */
	if (rc) {
		p = NO_PTR;
		RAGG_CHECK(tp->peer_map(c, &slot.rd, &p, &len) == rc && p == NO_PTR);
	}
	tp->ep_close(c);
	tp->ep_close(s);
	tpc_slot_fini(&w, &slot);
	tpc_world_fini(&w);
}

MAP_CASE(map_garbage_descriptor)
{
	/* Descriptors no owner packed: refused by the mapper itself (a
	 * transport knows its own format), with nothing asked of the peer,
	 * no output written and the connection unharmed. */
	struct tpc_world w;
	struct ragg_tp_ep *s, *c;
	struct tpc_slot slot;
	tpc_world_init(&w, tp, 2);
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	tpc_slot_init(&w, 0, &slot, 4096);

	struct ragg_tp_rdesc bad[5];
	memset(bad, 0, sizeof(bad));
	bad[0].len = 0;
	bad[1].len = 1;
	bad[2].len = RAGG_TP_RDESC_MAX;
	memset(bad[2].blob, 0xff, RAGG_TP_RDESC_MAX);
	bad[3].len = slot.rd.len; /* the right size, all zero */
	bad[4].len = 0xff; /* claims more than the blob holds */
	memset(bad[4].blob, 0x5a, RAGG_TP_RDESC_MAX);
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(bad); i++) {
		void *p = NO_PTR;
		size_t len = NO_LEN;
		int rc = tp->peer_map(c, &bad[i], &p, &len);
		RAGG_CHECKF(rc < 0 && rc != -EINPROGRESS, "garbage descriptor %zu: %s", i,
		            ragg_strerror_name(rc));
		RAGG_CHECK(p == NO_PTR && len == NO_LEN);
	}
	for (int i = 0; i < 20; i++)
		tpc_pump(&w);
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_DISCONNECTED, NULL) == 0 &&
	           tpc_count(&w, 1, RAGG_TP_EV_DISCONNECTED, NULL) == 0);
	static const uint8_t src[16] = { 4, 5, 6 };
	tpc_write(&w, c, src, NULL, &slot.rd, 0, sizeof(src), 11, RAGG_TP_WRITE_IMM, 0);
	struct tpc_ev l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, s, TPC_DEADLINE_MS);
	RAGG_CHECK(l.ev.imm == 11 && memcmp(slot.addr, src, sizeof(src)) == 0);
	tp->ep_close(c);
	tp->ep_close(s);
	tpc_slot_fini(&w, &slot);
	tpc_world_fini(&w);
}
