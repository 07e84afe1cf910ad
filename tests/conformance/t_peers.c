/* Conformance: many peers on one listener. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tpc.h"

#define PEERS 64

TPC_CASE(many_peers)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 3);
	const char *addr = tpc_listen(&w, 0);
	const size_t len = 64 * 1024;
	struct tpc_slot slot;
	tpc_slot_init(&w, 0, &slot, len * PEERS);
	uint8_t *src = malloc(len * PEERS);
	RAGG_CHECK(src != NULL);
	tpc_fill(src, len * PEERS, 64);
	struct ragg_tp_mr *smr[2];
	struct ragg_tp_rdesc unused;
	RAGG_CHECK_OK(tp->mr_reg(w.dev[1], src, len * PEERS, &smr[0], &unused));
	RAGG_CHECK_OK(tp->mr_reg(w.dev[2], src, len * PEERS, &smr[1], &unused));

	/* Peers from two devices, all connecting at once; the private data
	 * says who is who. */
	struct ragg_tp_ep *cep[PEERS], *sep[PEERS] = { 0 };
	for (uint32_t i = 0; i < PEERS; i++)
		RAGG_CHECK_OK(tp->connect(w.dev[1 + i % 2], addr, &i, sizeof(i),
		                          (void *)(uintptr_t)(i + 1), &cep[i]));
	for (int k = 0; k < PEERS; k++) {
		struct tpc_ev r =
		    tpc_expect(&w, 0, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
		uint32_t i;
		RAGG_CHECK(r.ev.len == sizeof(i));
		memcpy(&i, r.ev.data, sizeof(i));
		RAGG_CHECK(i < PEERS && !sep[i]);
		sep[i] = r.ev.ep;
		/* Answer with the descriptor of this peer's part of the slot. */
		RAGG_CHECK_OK(tp->accept(r.ev.ep, &slot.rd, sizeof(slot.rd)));
	}
	for (uint32_t i = 0; i < PEERS; i++) {
		struct tpc_ev c =
		    tpc_expect(&w, 1 + (int)(i % 2), RAGG_TP_EV_CONNECTED, cep[i], TPC_DEADLINE_MS);
		RAGG_CHECK(c.ev.len == sizeof(slot.rd));
		RAGG_CHECK(cep[i]->user == (void *)(uintptr_t)(i + 1));
		struct ragg_tp_rdesc rd;
		memcpy(&rd, c.ev.data, sizeof(rd));
		tpc_write(&w, cep[i], src + i * len, smr[i % 2], &rd, i * len, len, i,
		          RAGG_TP_WRITE_IMM, 0);
	}
	uint8_t seen[PEERS] = { 0 };
	for (int k = 0; k < PEERS; k++) {
		struct tpc_ev l = tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, NULL, TPC_DEADLINE_MS);
		RAGG_CHECK(l.ev.imm < PEERS && !seen[l.ev.imm]);
		RAGG_CHECKF(l.ev.ep == sep[l.ev.imm],
		            "peer %u's write reported on another endpoint", l.ev.imm);
		seen[l.ev.imm] = 1;
	}
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_CONNECTED, NULL) == PEERS);
	RAGG_CHECK(memcmp(slot.addr, src, len * PEERS) == 0);
	tpc_slot_check_untouched(&slot, -1);

	/* Half of them leave; the others carry on. */
	for (int i = 0; i < PEERS; i += 2)
		tp->ep_close(cep[i]);
	for (int k = 0; k < PEERS / 2; k++) {
		struct tpc_ev d = tpc_expect(&w, 0, RAGG_TP_EV_DISCONNECTED, NULL, TPC_DEADLINE_MS);
		int idx = -1;
		for (int i = 0; i < PEERS; i++)
			if (sep[i] == d.ev.ep)
				idx = i;
		RAGG_CHECK(idx >= 0 && idx % 2 == 0);
		tp->ep_close(sep[idx]);
		sep[idx] = NULL;
	}
	for (uint32_t i = 1; i < PEERS; i += 2)
		RAGG_CHECK_OK(tp->send(cep[i], &i, sizeof(i)));
	for (int k = 0; k < PEERS / 2; k++) {
		struct tpc_ev r = tpc_expect(&w, 0, RAGG_TP_EV_RECV, NULL, TPC_DEADLINE_MS);
		uint32_t i;
		memcpy(&i, r.ev.data, sizeof(i));
		RAGG_CHECK(i % 2 == 1 && sep[i] == r.ev.ep);
	}
	for (int i = 1; i < PEERS; i += 2) {
		tp->ep_close(cep[i]);
		tp->ep_close(sep[i]);
	}
	RAGG_CHECK_OK(tp->mr_dereg(smr[0]));
	RAGG_CHECK_OK(tp->mr_dereg(smr[1]));
	free(src);
	tpc_slot_fini(&w, &slot);
	tpc_world_fini(&w);
}
