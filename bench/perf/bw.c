/*
 * Bandwidth: the client keeps --depth signalled writes with immediates in
 * flight to one place in the server's buffer, as ib_write_bw does. The
 * average runs from the first post to the server's DONE, which it sends
 * only after every write landed (END follows the writes on the same
 * endpoint), so it is the rate of data landed, not of data queued. The peak
 * is measured at the server: the best 50 ms window of landings (shorter
 * windows measure how fast a socket buffer drains, not the link).
 *
 * msg_rate is the same test at small sizes (perftest reads its message rate
 * off ib_write_bw the same way), with its own default count.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "perf.h"

#define WINDOW_NS 50000000u

static uint64_t default_iters(const struct perf_opts *o, size_t size)
{
	if (o->mode == PERF_RATE)
		return 100000;
	/* About 2 GiB per size, long enough to average over a busy host's
	 * hiccups; at least 8 writes, and a bound for tiny sizes. */
	uint64_t n = ((uint64_t)2 << 30) / (size ? size : 1);
	return n < 8 ? 8 : n > 1000000 ? 1000000 : n;
}

void perf_bw_client(struct perf_session *s, size_t size, struct perf_bw_result *r)
{
	const struct perf_opts *o = s->o;
	const uint64_t iters = o->iters ? o->iters : default_iters(o, size);
	const uint64_t dur_ns = (uint64_t)(o->duration * 1e9);
	const unsigned flags = RAGG_TP_WRITE_IMM | RAGG_TP_WRITE_SIGNAL;
	struct perf_msg m = { .op = OP_BEGIN, .mode = PERF_BW, .size = size };
	struct ragg_tp_event ev[64];
	uint64_t posted = 0, done = 0;
	bool more = true;

	perf_send(s, &m);
	perf_expect(s, OP_READY, &m);
	/* Unmeasured warm-up, about 64 MiB: the connection's windows and
	 * buffers settle for this size first. */
	uint64_t warm = ((uint64_t)64 << 20) / (size ? size : 1);
	warm = warm < 1 ? 1 : warm > 256 ? 256 : warm;
	uint64_t t0 = 0;
	while (more || done < posted) {
		if (!t0 && done == warm) {
			t0 = perf_now_ns();
			posted = done = 0;
		}
		while ((t0 ? more : posted < warm) && posted - done < (uint64_t)o->depth) {
			int rc = s->tp->write_imm(s->ep, s->src, s->src_mr, &s->remote, 0, size,
			                          (uint32_t)posted, flags, posted);
			if (rc == -EAGAIN)
				break;
			if (rc)
				perf_die("write of %zu bytes: %s", size, ragg_strerror(rc));
			posted++;
			if (t0)
				more = dur_ns ? perf_now_ns() - t0 < dur_ns : posted < iters;
		}
		int n = s->tp->poll(s->dev, ev, 64);
		if (n < 0)
			perf_die("poll: %s", ragg_strerror(n));
		for (int i = 0; i < n; i++) {
			if (ev[i].type == RAGG_TP_EV_DISCONNECTED)
				perf_die("server left: %s", ragg_strerror(ev[i].status));
			if (ev[i].type != RAGG_TP_EV_WRITE_DONE)
				continue;
			if (ev[i].status)
				perf_die("write failed: %s", ragg_strerror(ev[i].status));
			done++;
		}
		if (!n && !o->busy)
			s->tp->wait(s->dev, 100);
	}
	m = (struct perf_msg){
		.op = OP_END, .mode = PERF_BW, .size = size, .count = warm + posted
	};
	perf_send(s, &m);
	perf_expect(s, OP_DONE, &m);
	const uint64_t t1 = perf_now_ns();
	if (m.count != warm + posted)
		perf_die("server saw %llu of %llu writes land", (unsigned long long)m.count,
		         (unsigned long long)(warm + posted));

	double secs = (double)(t1 - t0) / 1e9;
	r->size = size;
	r->iters = posted;
	r->avg_MBps = (double)size * (double)posted / secs / 1e6;
	r->peak_MBps = m.peak_Bps / 1e6;
	if (r->peak_MBps < r->avg_MBps)
		r->peak_MBps = r->avg_MBps;
	r->Mpps = (double)posted / secs / 1e6;
}

void perf_bw_server(struct perf_session *s, const struct perf_msg *begin)
{
	struct perf_msg m = { .op = OP_READY, .mode = PERF_BW, .size = begin->size };
	struct ragg_tp_event ev;
	uint64_t landed = 0, wstart = 0, wbytes = 0, first = 0, last = 0;
	double peak = 0;

	perf_send(s, &m);
	for (;;) {
		if (perf_next(s, &ev))
			perf_die("client left mid-test: %s", ragg_strerror(ev.status));
		if (ev.type == RAGG_TP_EV_WRITE_LANDED) {
			uint64_t now = perf_now_ns();
			if (!landed++) {
				first = wstart = now;
			} else {
				wbytes += ev.len;
				if (now - wstart >= WINDOW_NS) {
					double rate = (double)wbytes * 1e9 / (double)(now - wstart);
					peak = rate > peak ? rate : peak;
					wstart = now;
					wbytes = 0;
				}
			}
			last = now;
			continue;
		}
		if (ev.type != RAGG_TP_EV_RECV || ev.len != sizeof(m))
			continue;
		memcpy(&m, ev.data, sizeof(m));
		if (m.op != OP_END)
			perf_die("client sent message %u mid-test", m.op);
		break;
	}
	/* A run shorter than a window: its whole span is the one window. */
	if (peak == 0 && landed > 1 && last > first)
		peak = (double)(landed - 1) * (double)begin->size * 1e9 / (double)(last - first);
	m = (struct perf_msg){ .op = OP_DONE,
		               .mode = PERF_BW,
		               .size = begin->size,
		               .count = landed,
		               .peak_Bps = peak };
	perf_send(s, &m);
}
