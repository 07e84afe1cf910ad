/* Waiting on several devices: arm() and wait_fd(), for every transport that
 * offers them. */
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "tpc.h"

TPC_CASE(arm_wait_fd)
{
	if (!RAGG_TP_HAS_OP(tp, arm) || !RAGG_TP_HAS_OP(tp, wait_fd))
		RAGG_SKIP("this transport has no arm()/wait_fd(): the core waits on it in turns");
	struct tpc_world w;
	struct ragg_tp_ep *s, *c;
	struct tpc_slot slot;
	struct ragg_tp_event ev;
	static const uint8_t src[8] = { 1, 2, 3 };

	tpc_world_init(&w, tp, 2);
	tpc_pair(&w, 0, 1, NULL, 0, NULL, 0, &s, &c);
	tpc_slot_init(&w, 0, &slot, 64);
	tpc_write(&w, c, src, NULL, &slot.rd, 0, 8, 1, RAGG_TP_WRITE_IMM, 0);
	tpc_expect(&w, 0, RAGG_TP_EV_WRITE_LANDED, s, TPC_DEADLINE_MS);
	while (tp->poll(w.dev[0], &ev, 1) > 0)
		;

	/* Nothing pending: armed, the fd stays quiet ... */
	int fd = tp->wait_fd(w.dev[0]);
	RAGG_CHECK(fd >= 0);
	RAGG_CHECK_OK(tp->arm(w.dev[0]));
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	RAGG_CHECK(poll(&pfd, 1, 50) == 0);
	/* ... and turns readable when a peer's write lands. */
	RAGG_CHECK_OK(tp->write_imm(c, src, NULL, &slot.rd, 0, 8, 2, RAGG_TP_WRITE_IMM, 0));
	RAGG_CHECK(poll(&pfd, 1, 5000) == 1);
	uint64_t t0 = tpc_now_ms();
	int n = 0;
	while ((n = tp->poll(w.dev[0], &ev, 1)) == 0 && tpc_now_ms() - t0 < 5000)
		;
	RAGG_CHECK(n == 1 && ev.type == RAGG_TP_EV_WRITE_LANDED && ev.imm == 2);
	/* Work not yet reported never lets a caller sleep: arm() says so, or
	 * the fd is readable already. */
	RAGG_CHECK_OK(tp->write_imm(c, src, NULL, &slot.rd, 0, 8, 3, RAGG_TP_WRITE_IMM, 0));
	usleep(10 * 1000);
	int armed = tp->arm(w.dev[0]);
	RAGG_CHECK(armed == 0 || armed == -EAGAIN);
	if (armed == 0)
		RAGG_CHECK(poll(&pfd, 1, 5000) == 1);
	t0 = tpc_now_ms();
	while ((n = tp->poll(w.dev[0], &ev, 1)) == 0 && tpc_now_ms() - t0 < 5000)
		;
	RAGG_CHECK(n == 1 && ev.imm == 3);
	tpc_slot_fini(&w, &slot);
	tp->ep_close(c);
	tp->ep_close(s);
	tpc_world_fini(&w);
}
