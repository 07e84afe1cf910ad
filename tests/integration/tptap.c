/*
 * A man in the middle at the transport level, for the integration tests of
 * transports whose connections are not a byte stream (shm: a unix socket
 * for the hello, a shared ring for the messages). It speaks the transport
 * through its public table, as any process on the host could.
 *   tptap tap TRANSPORT TARGET FILE [S]
 *        listen (printing "tptap: listening at ADDR"), take one
 *        connection, connect to TARGET with the same private data, accept
 *        the first with what TARGET answered, and pass messages both ways
 *        (not writes: the descriptors it forwards name TARGET's regions;
 *        a message for a side not connected yet, or out of send credits,
 *        is held and passed on in order once it can be),
 *        recording the connecting side's private data and messages into
 *        FILE; exits when either side leaves or after S seconds (default
 *        10)
 *   tptap replay TRANSPORT TARGET FILE [S]
 *        connect to TARGET with the recorded private data, send the
 *        recorded messages in order once connected, drop the answers
 *        until TARGET closes or S seconds (default 3) pass
 * FILE: records of a kind byte ('H' private data, 'M' message), a
 * little-endian u32 length and the bytes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ragg/transport.h>

static int level = RAGG_LOG_WARN;

__attribute__((format(printf, 2, 3))) static void tp_log(int lvl, const char *fmt, ...)
{
	va_list ap;
	if (lvl > level)
		return;
	va_start(ap, fmt);
	fputs("tptap: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put(FILE *f, char kind, const void *data, size_t len)
{
	uint32_t n = (uint32_t)len; /* the tests run on little-endian hosts */
	fputc(kind, f);
	fwrite(&n, 4, 1, f);
	fwrite(data, 1, len, f);
	fflush(f);
}

struct rec {
	char kind;
	uint32_t len;
	uint8_t data[RAGG_TP_PRIV_MAX > RAGG_TP_MSG_MAX ? RAGG_TP_PRIV_MAX : RAGG_TP_MSG_MAX];
};

static int get(FILE *f, struct rec *r)
{
	int k = fgetc(f);
	if (k == EOF)
		return 0;
	r->kind = (char)k;
	if (fread(&r->len, 4, 1, f) != 1 || r->len > sizeof(r->data) ||
	    fread(r->data, 1, r->len, f) != r->len)
		return -1;
	return 1;
}

static const struct ragg_tp_ops *tp;
static struct ragg_tp_dev *dev;

static void open_dev(const char *name)
{
	char why[256] = "";
	tp = ragg_transport_find(name);
	if (!tp || tp->probe(why, sizeof(why))) {
		fprintf(stderr, "tptap: transport %s unusable: %s\n", name, why);
		exit(2);
	}
	struct ragg_tp_params p = {
		.size = sizeof(p),
		.poll_mode = RAGG_POLL_BLOCK,
		.timeout_ms = 10000,
		.max_peers = 4,
		.log = tp_log,
		.log_level = level,
		.wake_fd = -1,
	};
	int rc = tp->open(&p, &dev);
	if (rc) {
		fprintf(stderr, "tptap: open %s: %s\n", name, ragg_strerror(rc));
		exit(2);
	}
}

/* Messages for one side that its endpoint could not take yet: over verbs
 * the target's first message can come before the accepted side is up (the
 * transport refuses a send until it reports the connection), or when its
 * send credits are out. Kept in order and passed on as soon as it can. */
#define HELD_MAX 64
struct held {
	int n;
	uint32_t len[HELD_MAX];
	uint8_t data[HELD_MAX][RAGG_TP_MSG_MAX];
};
static struct held held_w, held_a;

static int flush(struct ragg_tp_ep *ep, struct held *h)
{
	int done = 0, rc = 0;
	while (done < h->n && !(rc = tp->send(ep, h->data[done], h->len[done])))
		done++;
	memmove(h->len, h->len + done, (size_t)(h->n - done) * sizeof(h->len[0]));
	memmove(h->data, h->data + done, (size_t)(h->n - done) * sizeof(h->data[0]));
	h->n -= done;
	return rc;
}

static void pass(struct ragg_tp_ep *ep, struct held *h, const void *data, size_t len)
{
	if (h->n == HELD_MAX || len > RAGG_TP_MSG_MAX) {
		fprintf(stderr, "tptap: a message of %zu bytes dropped: %d held\n", len, h->n);
		return;
	}
	memcpy(h->data[h->n], data, len);
	h->len[h->n++] = (uint32_t)len;
	flush(ep, h);
}

static int tap(const char *target, const char *file, double secs)
{
	char addr[RAGG_TP_ADDR_MAX];
	struct ragg_tp_event ev[16];
	struct ragg_tp_ep *w = NULL, *a = NULL;
	FILE *f = fopen(file, "wb");
	int msgs = 0, rc;
	if (!f) {
		perror("tptap: record file");
		return 2;
	}
	if ((rc = tp->listen(dev, "", addr, sizeof(addr)))) {
		fprintf(stderr, "tptap: listen: %s\n", ragg_strerror(rc));
		return 2;
	}
	printf("tptap: listening at %s\n", addr);
	fflush(stdout);
	for (double end = now_s() + secs; now_s() < end;) {
		int n = tp->poll(dev, ev, 16);
		if (n < 0)
			return 2;
		for (int i = 0; i < n; i++) {
			struct ragg_tp_event *e = &ev[i];
			switch (e->type) {
			case RAGG_TP_EV_CONNECT_REQUEST:
				if (w) {
					tp->reject(e->ep);
					break;
				}
				w = e->ep;
				put(f, 'H', e->data, e->len);
				if ((rc = tp->connect(dev, target, e->data, e->len, NULL, &a))) {
					fprintf(stderr, "tptap: connect %s: %s\n", target,
					        ragg_strerror(rc));
					return 2;
				}
				break;
			case RAGG_TP_EV_CONNECTED:
				if (e->ep == a && (rc = tp->accept(w, e->data, e->len))) {
					fprintf(stderr, "tptap: accept: %s\n", ragg_strerror(rc));
					return 2;
				}
				break;
			case RAGG_TP_EV_RECV:
				if (e->ep == w) {
					put(f, 'M', e->data, e->len);
					msgs++;
				}
				if (e->ep == w)
					pass(a, &held_a, e->data, e->len);
				else if (e->ep == a)
					pass(w, &held_w, e->data, e->len);
				break;
			case RAGG_TP_EV_DISCONNECTED:
				if (e->ep == w || e->ep == a) {
					printf("tptap: recorded %d messages; %s left: %s\n", msgs,
					       e->ep == w ? "the connecting side" : "the target",
					       ragg_strerror(e->status));
					fclose(f);
					return 0;
				}
				break;
			default:
				break;
			}
		}
		if (w && held_w.n)
			flush(w, &held_w);
		if (a && held_a.n)
			flush(a, &held_a);
		if (!n)
			tp->wait(dev, held_w.n || held_a.n ? 1 : 50);
	}
	printf("tptap: recorded %d messages; time is up\n", msgs);
	fclose(f);
	return 0;
}

static int replay(const char *target, const char *file, double secs)
{
	struct ragg_tp_event ev[16];
	struct ragg_tp_ep *a = NULL;
	struct rec r;
	FILE *f = fopen(file, "rb");
	int rc, sent = 0;
	if (!f || get(f, &r) != 1 || r.kind != 'H') {
		fprintf(stderr, "tptap: %s: no recorded private data\n", file);
		return 2;
	}
	if ((rc = tp->connect(dev, target, r.data, r.len, NULL, &a))) {
		fprintf(stderr, "tptap: connect %s: %s\n", target, ragg_strerror(rc));
		return 2;
	}
	for (double end = now_s() + secs; now_s() < end;) {
		int n = tp->poll(dev, ev, 16);
		if (n < 0)
			return 2;
		for (int i = 0; i < n; i++) {
			if (ev[i].type == RAGG_TP_EV_CONNECTED) {
				while ((rc = get(f, &r)) == 1)
					if (r.kind == 'M') {
						pass(a, &held_a, r.data, r.len);
						sent++;
					}
			} else if (ev[i].type == RAGG_TP_EV_DISCONNECTED) {
				printf("tptap: replayed %d messages; the target closed: %s\n", sent,
				       ragg_strerror(ev[i].status));
				return 0;
			}
		}
		if (held_a.n)
			flush(a, &held_a);
		if (!n)
			tp->wait(dev, held_a.n ? 1 : 50);
	}
	printf("tptap: replayed %d messages; time is up\n", sent);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && argc <= 6 && (!strcmp(argv[1], "tap") || !strcmp(argv[1], "replay"))) {
		bool is_tap = !strcmp(argv[1], "tap");
		double secs = argc == 6 ? atof(argv[5]) : is_tap ? 10 : 3;
		open_dev(argv[2]);
		int rc = is_tap ? tap(argv[3], argv[4], secs) : replay(argv[3], argv[4], secs);
		tp->close(dev);
		return rc;
	}
	fprintf(stderr, "usage: tptap tap|replay TRANSPORT TARGET FILE [S]\n");
	return 2;
}
