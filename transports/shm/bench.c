/*
 * shm-bench: what an shm write costs next to the copy it is. Two processes,
 * as in a job: the parent receives into a region from mem_alloc() (the
 * writer maps it and memcpy()s) and into an ordinary malloc'd one (the
 * writer uses process_vm_writev); the child writes, and in the same run
 * times a plain memcpy() of the same size between two buffers of its own.
 * All buffers are touched before timing, so no page fault of the receiver
 * is counted; the writer's first touch of its mapping happens in a warm-up
 * write.
 *
 *   shm-bench [-m MAX_BYTES] [-s MIN_BYTES] [-r REPEATS] [-b]
 *
 * -b: the receiver polls without sleeping, so the writer never has to wake
 * it (no system call per write at all); by default it sleeps when idle, as
 * a blocking receiver does, and each write may cost the writer a wakeup.
 *
 * A write is complete when write_imm() returns (the copy is done in it),
 * so the writer's clock measures data landed in the receiver's memory.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ragg/transport.h>

struct target {
	const char *name;
	struct ragg_tp_rdesc rd;
};

static const struct ragg_tp_ops *tp;
static bool busy;

static void die(const char *what, int rc)
{
	fprintf(stderr, "shm-bench: %s: %s\n", what, ragg_strerror(rc));
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *touched(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("shm-bench: mmap");
		exit(1);
	}
	memset(p, 1, len);
	return p;
}

static struct ragg_tp_dev *open_dev(void)
{
	struct ragg_tp_params p = {
		.size = sizeof(p),
		.poll_mode = RAGG_POLL_BLOCK,
		.timeout_ms = 30000,
		.max_peers = 1,
		.wake_fd = -1,
	};
	struct ragg_tp_dev *dev;
	char why[256] = "";
	int rc = tp->probe(why, sizeof(why));
	if (rc)
		die(why, rc);
	if ((rc = tp->open(&p, &dev)))
		die("open", rc);
	return dev;
}

/* The next event of a type; others (landings, mostly) are dropped. One
 * at a time, so nothing that follows the one wanted is lost. */
static struct ragg_tp_event next(struct ragg_tp_dev *dev, enum ragg_tp_event_type type)
{
	struct ragg_tp_event ev;
	for (;;) {
		int n = tp->poll(dev, &ev, 1);
		if (n < 0)
			die("poll", n);
		if (n && ev.type == type)
			return ev;
		if (n && ev.type == RAGG_TP_EV_DISCONNECTED)
			die("peer left", ev.status);
		if (!n)
			tp->wait(dev, 100);
	}
}

/* Receiver: take landings in batches until the writer's last message. */
static void serve(struct ragg_tp_dev *dev)
{
	struct ragg_tp_event ev[64];
	for (;;) {
		int n = tp->poll(dev, ev, 64);
		if (n < 0)
			die("poll", n);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == RAGG_TP_EV_RECV)
				return;
			if (ev[i].type == RAGG_TP_EV_DISCONNECTED)
				die("writer left", ev[i].status);
		}
		if (!n && !busy)
			tp->wait(dev, 100);
	}
}

static void write_all(struct ragg_tp_dev *dev, struct ragg_tp_ep *ep, const void *src,
                      const struct ragg_tp_rdesc *rd, size_t len, unsigned iters)
{
	struct ragg_tp_event ev[64];
	for (unsigned i = 0; i < iters;) {
		int rc = tp->write_imm(ep, src, NULL, rd, 0, len, i, RAGG_TP_WRITE_IMM, 0);
		if (rc == 0) {
			i++;
			continue;
		}
		if (rc != -EAGAIN)
			die("write_imm", rc);
		if (tp->poll(dev, ev, 64) == 0)
			tp->wait(dev, 100);
	}
}

static void writer(const char *addr, size_t min, size_t max, int repeats)
{
	struct ragg_tp_dev *dev = open_dev();
	struct ragg_tp_ep *ep;
	struct target t[2] = { { "mem_alloc (mapped, memcpy)", { 0 } },
		               { "malloc (process_vm_writev)", { 0 } } };
	int rc = tp->connect(dev, addr, NULL, 0, NULL, &ep);
	if (rc)
		die("connect", rc);
	struct ragg_tp_event ev = next(dev, RAGG_TP_EV_CONNECTED);
	memcpy(&t[0].rd, ev.data, sizeof(t[0].rd));
	ev = next(dev, RAGG_TP_EV_RECV);
	memcpy(&t[1].rd, ev.data, sizeof(t[1].rd));
	uint8_t *src = touched(max), *dst = touched(max);

	printf("# shm-bench: one writer process, one %s receiver; GB/s = 10^9 bytes/s, best of "
	       "%d\n",
	       busy ? "polling" : "sleeping", repeats);
	printf("# %-10s %8s %14s %14s %7s %14s %7s\n", "bytes", "iters", "memcpy", "shm:mem_alloc",
	       "ratio", "shm:malloc", "ratio");
	for (size_t len = min; len <= max; len *= 2) {
		unsigned iters = (unsigned)(((size_t)4 << 30) / len);
		iters = iters < 8 ? 8 : iters > 4096 ? 4096 : iters;
		double best[3] = { 0, 0, 0 };
		for (int r = 0; r < repeats; r++) {
			double t0 = now_s();
			for (unsigned i = 0; i < iters; i++) {
				memcpy(dst, src, len);
				/* Keep the compiler from merging the copies. */
				__asm__ volatile("" : : "r"(dst) : "memory");
			}
			double bw = (double)len * iters / (now_s() - t0) / 1e9;
			best[0] = bw > best[0] ? bw : best[0];
			for (int k = 0; k < 2; k++) {
				write_all(dev, ep, src, &t[k].rd, len, 1); /* warm-up */
				t0 = now_s();
				write_all(dev, ep, src, &t[k].rd, len, iters);
				bw = (double)len * iters / (now_s() - t0) / 1e9;
				best[1 + k] = bw > best[1 + k] ? bw : best[1 + k];
			}
		}
		printf("  %-10zu %8u %14.2f %14.2f %7.2f %14.2f %7.2f\n", len, iters, best[0],
		       best[1], best[1] / best[0], best[2], best[2] / best[0]);
		fflush(stdout);
	}
	while ((rc = tp->send(ep, "quit", 4)) == -EAGAIN)
		tp->poll(dev, &ev, 1);
	/* Until the receiver has it and hangs up. */
	next(dev, RAGG_TP_EV_DISCONNECTED);
	tp->ep_close(ep);
	tp->close(dev);
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);
	switch (*end) {
	case 'K':
	case 'k':
		v <<= 10;
		break;
	case 'M':
	case 'm':
		v <<= 20;
		break;
	case 'G':
	case 'g':
		v <<= 30;
		break;
	default:
		break;
	}
	return (size_t)v;
}

int main(int argc, char **argv)
{
	size_t min = (size_t)1 << 20, max = (size_t)256 << 20;
	int repeats = 3, c;
	while ((c = getopt(argc, argv, "s:m:r:bh")) != -1) {
		switch (c) {
		case 'b':
			busy = true;
			break;
		case 's':
			min = parse_size(optarg);
			break;
		case 'm':
			max = parse_size(optarg);
			break;
		case 'r':
			repeats = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: shm-bench [-s MIN] [-m MAX] [-r REPEATS] [-b]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (!min || min > max || repeats < 1) {
		fprintf(stderr, "shm-bench: need 0 < MIN <= MAX and REPEATS >= 1\n");
		return 2;
	}
	tp = ragg_transport_find("shm");
	if (!tp) {
		fprintf(stderr, "shm-bench: no shm transport in this library\n");
		return 1;
	}
	struct ragg_tp_dev *dev = open_dev();
	char addr[RAGG_TP_ADDR_MAX];
	int rc = tp->listen(dev, NULL, addr, sizeof(addr));
	if (rc)
		die("listen", rc);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		/* Only the listen address is the child's business here. */
		writer(addr, min, max, repeats);
		_exit(0);
	}

	uint8_t *shared = tp->mem_alloc(dev, max);
	uint8_t *priv = touched(max);
	if (!shared)
		die("mem_alloc", -ENOMEM);
	memset(shared, 1, max);
	struct ragg_tp_mr *m1, *m2;
	struct ragg_tp_rdesc rd[2];
	if ((rc = tp->mr_reg(dev, shared, max, &m1, &rd[0])) ||
	    (rc = tp->mr_reg(dev, priv, max, &m2, &rd[1])))
		die("mr_reg", rc);
	struct ragg_tp_event ev = next(dev, RAGG_TP_EV_CONNECT_REQUEST);
	struct ragg_tp_ep *ep = ev.ep;
	if ((rc = tp->accept(ep, &rd[0], sizeof(rd[0]))))
		die("accept", rc);
	next(dev, RAGG_TP_EV_CONNECTED);
	while ((rc = tp->send(ep, &rd[1], sizeof(rd[1]))) == -EAGAIN)
		tp->poll(dev, &ev, 1);
	if (rc)
		die("send", rc);
	serve(dev);
	tp->ep_close(ep);
	int st;
	waitpid(pid, &st, 0);
	tp->mr_dereg(m1);
	tp->mr_dereg(m2);
	tp->mem_free(dev, shared, max);
	munmap(priv, max);
	tp->close(dev);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
