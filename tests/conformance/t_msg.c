/* Conformance: control messages. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tpc.h"

TPC_CASE(messages)
{
	struct tpc_world w;
	tpc_world_init(&w, tp, 2);
	struct ragg_tp_ep *s, *c;
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);

	uint8_t msg[RAGG_TP_MSG_MAX + 1];
	static const size_t sizes[] = { 0, 1, 100, RAGG_TP_MSG_MAX };
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(sizes); i++) {
		/* Both directions. */
		for (int dir = 0; dir < 2; dir++) {
			tpc_fill(msg, sizes[i], i * 2 + (size_t)dir);
			RAGG_CHECK_OK(tp->send(dir ? s : c, msg, sizes[i]));
			int to = dir ? 1 : 0;
			struct tpc_ev r =
			    tpc_expect(&w, to, RAGG_TP_EV_RECV, dir ? c : s, TPC_DEADLINE_MS);
			RAGG_CHECKF(r.ev.len == sizes[i], "got %zu bytes, sent %zu", r.ev.len,
			            sizes[i]);
			RAGG_CHECK(sizes[i] == 0 || memcmp(r.ev.data, msg, sizes[i]) == 0);
		}
	}
	/* Over the limit: refused at once, nothing sent. */
	RAGG_CHECK(tp->send(c, msg, RAGG_TP_MSG_MAX + 1) < 0);
	for (int i = 0; i < 10; i++)
		tpc_pump(&w);
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_RECV, NULL) == 0);

	/* Many, in order, exactly once, through -EAGAIN. */
	const uint32_t n = 5000;
	for (uint32_t i = 0; i < n;) {
		uint8_t m[64];
		memset(m, (int)(i & 0xff), sizeof(m));
		memcpy(m, &i, sizeof(i));
		int rc = tp->send(c, m, 4 + i % 60);
		if (rc == -EAGAIN) {
			tpc_pump(&w);
			continue;
		}
		RAGG_CHECK_OK(rc);
		i++;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct tpc_ev r = tpc_expect(&w, 0, RAGG_TP_EV_RECV, s, TPC_DEADLINE_MS);
		uint32_t got;
		RAGG_CHECK(r.ev.len == 4 + i % 60);
		memcpy(&got, r.ev.data, 4);
		RAGG_CHECKF(got == i, "message %u arrived as number %u", got, i);
	}
	for (int i = 0; i < 10; i++)
		tpc_pump(&w);
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_RECV, NULL) == 0);

	tp->ep_close(c);
	tp->ep_close(s);
	tpc_world_fini(&w);
}

TPC_CASE(message_after_write)
{
	/* A message sent after a write arrives after the write landed, so a
	 * "done" message may announce silent writes. */
	struct tpc_world w;
	tpc_world_init(&w, tp, 2);
	struct ragg_tp_ep *s, *c;
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	const size_t len = (size_t)4 << 20;
	struct tpc_slot slot;
	tpc_slot_init(&w, 0, &slot, len);
	uint8_t *src = malloc(len);
	RAGG_CHECK(src != NULL);
	struct ragg_tp_mr *smr;
	struct ragg_tp_rdesc srd;
	RAGG_CHECK_OK(tp->mr_reg(w.dev[1], src, len, &smr, &srd));
	for (uint32_t round = 0; round < 5; round++) {
		tpc_fill(src, len, round);
		tpc_write(&w, c, src, smr, &slot.rd, 0, len, 0, 0, 0);
		int rc;
		while ((rc = tp->send(c, &round, sizeof(round))) == -EAGAIN)
			tpc_pump(&w);
		RAGG_CHECK_OK(rc);
		struct tpc_ev r = tpc_expect(&w, 0, RAGG_TP_EV_RECV, s, TPC_DEADLINE_MS);
		RAGG_CHECK(r.ev.len == sizeof(round) && !memcmp(r.ev.data, &round, sizeof(round)));
		RAGG_CHECKF(memcmp(slot.addr, src, len) == 0, "round %u: write not landed", round);
	}
	RAGG_CHECK(tpc_count(&w, 0, RAGG_TP_EV_WRITE_LANDED, NULL) == 0);
	RAGG_CHECK_OK(tp->mr_dereg(smr));
	free(src);
	tpc_slot_fini(&w, &slot);
	tp->ep_close(c);
	tp->ep_close(s);
	tpc_world_fini(&w);
}

TPC_CASE(poll_one_event_at_a_time)
{
	/* poll() with room for one event loses and reorders nothing: what it
	 * could not report waits for the next call. */
	struct tpc_world w;
	tpc_world_init(&w, tp, 2);
	struct ragg_tp_ep *s, *c;
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	struct tpc_slot slot;
	tpc_slot_init(&w, 0, &slot, 1 << 16);
	static uint8_t src[1 << 16];
	struct ragg_tp_mr *smr;
	struct ragg_tp_rdesc srd;
	RAGG_CHECK_OK(tp->mr_reg(w.dev[1], src, sizeof(src), &smr, &srd));

	const uint32_t n = 2000;
	uint32_t posted = 0, msgs = 0, landed = 0, done = 0, recvd = 0;
	uint64_t deadline = tpc_now_ms() + 20000;
	while (landed < n || done < n || recvd < msgs) {
		while (posted < n) {
			int rc =
			    tp->write_imm(c, src, smr, &slot.rd, (posted % 16) * 4096, 4096, posted,
			                  RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL, posted);
			if (rc == -EAGAIN)
				break;
			RAGG_CHECK_OK(rc);
			if (posted++ % 10 == 0 && tp->send(c, &msgs, sizeof(msgs)) == 0)
				msgs++;
		}
		struct ragg_tp_event ev;
		int k = tp->poll(w.dev[0], &ev, 1);
		RAGG_CHECK(k == 0 || k == 1);
		if (k && ev.type == RAGG_TP_EV_WRITE_LANDED) {
			RAGG_CHECKF(ev.imm == landed, "imm %u, want %u", ev.imm, landed);
			landed++;
		} else if (k) {
			uint32_t m;
			RAGG_CHECK(ev.type == RAGG_TP_EV_RECV && ev.len == sizeof(m));
			memcpy(&m, ev.data, sizeof(m));
			RAGG_CHECKF(m == recvd, "message %u, want %u", m, recvd);
			recvd++;
		}
		k = tp->poll(w.dev[1], &ev, 1);
		RAGG_CHECK(k == 0 || k == 1);
		if (k) {
			RAGG_CHECK(ev.type == RAGG_TP_EV_WRITE_DONE && ev.cookie == done &&
			           !ev.status);
			done++;
		}
		RAGG_CHECKF(tpc_now_ms() < deadline, "landed %u done %u of %u, messages %u of %u",
		            landed, done, n, recvd, msgs);
	}
	/* max 0 is no room at all, not an error. */
	struct ragg_tp_event none;
	RAGG_CHECK(tp->poll(w.dev[0], &none, 0) == 0);
	RAGG_CHECK_OK(tp->mr_dereg(smr));
	tpc_slot_fini(&w, &slot);
	tp->ep_close(c);
	tp->ep_close(s);
	tpc_world_fini(&w);
}
