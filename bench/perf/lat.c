/*
 * Latency: ping-pong of write_imm. The client writes `size` bytes with an
 * immediate into the server's buffer; the server, seeing it land, writes
 * the same back; half the round trip is one sample, as in ib_write_lat.
 * Both sides spin in poll() meanwhile.
 */
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include "perf.h"

/* Duration mode keeps at most this many samples. */
#define MAX_SAMPLES (1u << 22)

static uint64_t default_iters(size_t size)
{
	uint64_t n = ((uint64_t)1 << 30) / (size ? size : 1);
	return n < 10 ? 10 : n > 1000 ? 1000 : n;
}

/* Samples are taken in cycles where the CPU has a cheap counter (as
 * perftest does) and converted with the rate measured over the whole run;
 * elsewhere in nanoseconds. */
static inline uint64_t ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __rdtsc();
#else
	return perf_now_ns();
#endif
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples. */
static double pct(const uint64_t *v, uint64_t n, double p)
{
	uint64_t k = (uint64_t)(p * (double)n + 0.999999);
	k = k < 1 ? 1 : k > n ? n : k;
	return (double)v[k - 1];
}

void perf_lat_client(struct perf_session *s, size_t size, struct perf_lat_result *r)
{
	const struct perf_opts *o = s->o;
	const uint64_t dur_ns = (uint64_t)(o->duration * 1e9);
	const uint64_t want = dur_ns ? MAX_SAMPLES : o->iters ? o->iters : default_iters(size);
	struct perf_msg m = { .op = OP_BEGIN, .mode = PERF_LAT, .size = size };
	uint64_t *rtt = malloc(want * sizeof(*rtt));
	uint64_t n = 0;
	if (!rtt)
		perf_die("cannot allocate %llu samples", (unsigned long long)want);

	perf_send(s, &m);
	perf_expect(s, OP_READY, &m);
	const uint64_t start = perf_now_ns(), start_ticks = ticks();
	while (n < want && (!dur_ns || perf_now_ns() - start < dur_ns)) {
		struct ragg_tp_event ev;
		uint64_t t0 = ticks();
		perf_write(s, s->src, s->src_mr, size, (uint32_t)n, RAGG_TP_WRITE_IMM, 0);
		for (;;) {
			if (perf_next(s, &ev))
				perf_die("server left: %s", ragg_strerror(ev.status));
			if (ev.type == RAGG_TP_EV_WRITE_LANDED)
				break;
		}
		uint64_t t1 = ticks();
		if (ev.imm != (uint32_t)n || ev.len != size)
			perf_die("echo %u of %zu bytes, expected %u of %zu", ev.imm, ev.len,
			         (uint32_t)n, size);
		rtt[n++] = t1 - t0;
	}
	const double ns_per_tick = (double)(perf_now_ns() - start) / (double)(ticks() - start_ticks);
	m = (struct perf_msg){ .op = OP_END, .mode = PERF_LAT, .size = size, .count = n };
	perf_send(s, &m);
	perf_expect(s, OP_DONE, &m);

	qsort(rtt, n, sizeof(*rtt), cmp_u64);
	double sum = 0;
	for (uint64_t i = 0; i < n; i++)
		sum += (double)rtt[i];
	/* One way: half the round trip, in microseconds. */
	const double k = ns_per_tick / 2000.0;
	r->size = size;
	r->iters = n;
	r->min_us = (double)rtt[0] * k;
	r->max_us = (double)rtt[n - 1] * k;
	r->median_us = pct(rtt, n, 0.5) * k;
	r->p99_us = pct(rtt, n, 0.99) * k;
	r->p999_us = pct(rtt, n, 0.999) * k;
	r->avg_us = sum / (double)n * k;
	free(rtt);
}

void perf_lat_server(struct perf_session *s, const struct perf_msg *begin)
{
	struct perf_msg m = { .op = OP_READY, .mode = PERF_LAT, .size = begin->size };
	struct ragg_tp_event ev;
	uint64_t n = 0;

	perf_send(s, &m);
	for (;;) {
		if (perf_next(s, &ev))
			perf_die("client left mid-test: %s", ragg_strerror(ev.status));
		if (ev.type == RAGG_TP_EV_WRITE_LANDED) {
			perf_write(s, s->buf, s->mr, ev.len, ev.imm, RAGG_TP_WRITE_IMM, 0);
			n++;
			continue;
		}
		if (ev.type != RAGG_TP_EV_RECV || ev.len != sizeof(m))
			continue;
		memcpy(&m, ev.data, sizeof(m));
		if (m.op != OP_END)
			perf_die("client sent message %u mid-test", m.op);
		break;
	}
	m = (struct perf_msg){ .op = OP_DONE, .mode = PERF_LAT, .size = begin->size, .count = n };
	perf_send(s, &m);
}
