/* The conformance runner and the helpers every case shares. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tpc.h"

static struct tpc_case *cases, **cases_tail = &cases;
static const struct ragg_tp_ops *selected[TPC_SLOTS];

void tpc_case_add(struct tpc_case *c)
{
	*cases_tail = c;
	cases_tail = &c->next;
}

void tpc_run(int slot, void (*body)(const struct ragg_tp_ops *tp))
{
	const struct ragg_tp_ops *tp = selected[slot];
	char why[256] = "";
	if (tp->probe(why, sizeof(why)) != 0) {
		char msg[320];
		snprintf(msg, sizeof(msg), "transport %s unusable here: %s", tp->name, why);
		RAGG_SKIP(msg);
	}
	body(tp);
}

uint64_t tpc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool tpc_is(const struct ragg_tp_ops *tp, const char *name)
{
	return strcmp(tp->name, name) == 0;
}

/* ---- logs ---- */

static char log_buf[1 << 16];
static size_t log_len;

void tpc_log(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (getenv("RAGG_TEST_VERBOSE"))
		fprintf(stderr, "[log %d] %s\n", level, line);
	size_t len = strlen(line);
	if (log_len + len + 2 > sizeof(log_buf))
		log_len = 0; /* keep the newest */
	memcpy(log_buf + log_len, line, len);
	log_len += len;
	log_buf[log_len++] = '\n';
	log_buf[log_len] = '\0';
}

bool tpc_log_has(const char *needle)
{
	return log_len && strstr(log_buf, needle) != NULL;
}

void tpc_log_clear(void)
{
	log_len = 0;
	log_buf[0] = '\0';
}

/* ---- devices and events ---- */

void tpc_params(struct ragg_tp_params *p)
{
	memset(p, 0, sizeof(*p));
	p->size = sizeof(*p);
	p->poll_mode = RAGG_POLL_BUSY;
	p->timeout_ms = 10000;
	p->max_peers = 64;
	p->log = tpc_log;
	p->log_level = RAGG_LOG_DEBUG;
	p->wake_fd = -1;
}

int tpc_world_add(struct tpc_world *w, const struct ragg_tp_params *p)
{
	RAGG_CHECK(w->ndev < TPC_MAX_DEVS);
	int i = w->ndev;
	RAGG_CHECK_OK(w->tp->open(p, &w->dev[i]));
	RAGG_CHECK(w->dev[i] != NULL && w->dev[i]->ops == w->tp);
	w->addr[i][0] = '\0';
	w->ndev++;
	return i;
}

void tpc_world_init(struct tpc_world *w, const struct ragg_tp_ops *tp, int ndev)
{
	struct ragg_tp_params p;
	memset(w, 0, sizeof(*w));
	w->tp = tp;
	tpc_params(&p);
	for (int i = 0; i < ndev; i++)
		tpc_world_add(w, &p);
}

void tpc_world_fini(struct tpc_world *w)
{
	for (int i = 0; i < w->ndev; i++)
		if (w->dev[i])
			w->tp->close(w->dev[i]);
	free(w->q);
	memset(w, 0, sizeof(*w));
}

const char *tpc_listen(struct tpc_world *w, int i)
{
	if (!w->addr[i][0]) {
		const char *host = getenv("RAGG_VM_ADDR");
		char spec[RAGG_TP_ADDR_MAX];
		snprintf(spec, sizeof(spec), "%s:0", host && *host ? host : "127.0.0.1");
		RAGG_CHECK_OK(w->tp->listen(w->dev[i], spec, w->addr[i], sizeof(w->addr[i])));
		RAGG_CHECK(w->addr[i][0] != '\0');
	}
	return w->addr[i];
}

static void push(struct tpc_world *w, int dev, const struct ragg_tp_event *ev)
{
	if (w->qlen == w->qcap) {
		w->qcap = w->qcap ? w->qcap * 2 : 64;
		w->q = realloc(w->q, w->qcap * sizeof(*w->q));
		RAGG_CHECK(w->q != NULL);
		for (size_t k = 0; k < w->qlen; k++)
			if (w->q[k].ev.data && w->q[k].ev.len)
				w->q[k].ev.data = w->q[k].data;
	}
	struct tpc_ev *e = &w->q[w->qlen++];
	e->dev = dev;
	e->ev = *ev;
	/* Data is valid only until the next poll(): keep a copy. */
	if (ev->data && ev->len) {
		RAGG_CHECKF(ev->len <= sizeof(e->data), "event %d carries %zu bytes", ev->type,
		            ev->len);
		memcpy(e->data, ev->data, ev->len);
		e->ev.data = e->data;
	}
}

int tpc_pump(struct tpc_world *w)
{
	struct ragg_tp_event evs[32];
	int total = 0;
	for (int i = 0; i < w->ndev; i++) {
		if (!w->dev[i])
			continue;
		int n = w->tp->poll(w->dev[i], evs, (int)RAGG_ARRAY_SIZE(evs));
		RAGG_CHECKF(n >= 0, "poll: %s", ragg_strerror(n));
		for (int k = 0; k < n; k++)
			push(w, i, &evs[k]);
		total += n;
	}
	if (!total && w->ndev) {
		int i = w->next_wait++ % w->ndev;
		if (w->dev[i])
			RAGG_CHECK_OK(w->tp->wait(w->dev[i], 1));
	}
	return total;
}

static bool match(const struct tpc_ev *e, int dev, enum ragg_tp_event_type type,
                  const struct ragg_tp_ep *ep)
{
	return e->dev == dev && e->ev.type == type && (!ep || e->ev.ep == ep);
}

bool tpc_take(struct tpc_world *w, int dev, enum ragg_tp_event_type type, struct ragg_tp_ep *ep,
              struct tpc_ev *out)
{
	for (size_t i = 0; i < w->qlen; i++) {
		if (!match(&w->q[i], dev, type, ep))
			continue;
		if (out) {
			*out = w->q[i];
			if (out->ev.data && out->ev.len) {
				uint8_t *h = w->held[w->nheld++ % RAGG_ARRAY_SIZE(w->held)];
				memcpy(h, w->q[i].data, out->ev.len);
				out->ev.data = h;
			}
		}
		memmove(&w->q[i], &w->q[i + 1], (w->qlen - i - 1) * sizeof(*w->q));
		w->qlen--;
		/* Moving entries moved their data buffers too. */
		for (size_t k = i; k < w->qlen; k++)
			if (w->q[k].ev.data && w->q[k].ev.len)
				w->q[k].ev.data = w->q[k].data;
		return true;
	}
	return false;
}

size_t tpc_count(const struct tpc_world *w, int dev, enum ragg_tp_event_type type,
                 const struct ragg_tp_ep *ep)
{
	size_t n = 0;
	for (size_t i = 0; i < w->qlen; i++)
		n += match(&w->q[i], dev, type, ep);
	return n;
}

bool tpc_wait_for(struct tpc_world *w, int dev, enum ragg_tp_event_type type, struct ragg_tp_ep *ep,
                  int timeout_ms, struct tpc_ev *out)
{
	uint64_t deadline = tpc_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (tpc_take(w, dev, type, ep, out))
			return true;
		if (tpc_now_ms() > deadline)
			return false;
		tpc_pump(w);
	}
}

static const char *ev_name(int type)
{
	static const char *const n[] = { "?",           "CONNECT_REQUEST", "CONNECTED",
		                         "WRITE_DONE",  "WRITE_LANDED",    "RECV",
		                         "DISCONNECTED" };
	return type > 0 && type < (int)RAGG_ARRAY_SIZE(n) ? n[type] : "?";
}

struct tpc_ev tpc_expect(struct tpc_world *w, int dev, enum ragg_tp_event_type type,
                         struct ragg_tp_ep *ep, int timeout_ms)
{
	struct tpc_ev e;
	if (!tpc_wait_for(w, dev, type, ep, timeout_ms, &e)) {
		for (size_t i = 0; i < w->qlen; i++)
			fprintf(stderr, "  queued: dev %d %s status %d\n", w->q[i].dev,
			        ev_name(w->q[i].ev.type), w->q[i].ev.status);
		ragg_test_fail(__FILE__, __LINE__, "tpc_expect", "no %s on device %d within %d ms",
		               ev_name(type), dev, timeout_ms);
	}
	return e;
}

void tpc_pair(struct tpc_world *w, int s, int c, const void *cpriv, size_t clen, const void *spriv,
              size_t slen, struct ragg_tp_ep **sep, struct ragg_tp_ep **cep)
{
	const char *addr = tpc_listen(w, s);
	struct ragg_tp_ep *ce = NULL;
	RAGG_CHECK_OK(w->tp->connect(w->dev[c], addr, cpriv, clen, (void *)0x5eed, &ce));
	RAGG_CHECK(ce != NULL && ce->user == (void *)0x5eed && ce->dev == w->dev[c]);

	struct tpc_ev req = tpc_expect(w, s, RAGG_TP_EV_CONNECT_REQUEST, NULL, TPC_DEADLINE_MS);
	RAGG_CHECK(req.ev.ep != NULL && req.ev.ep->dev == w->dev[s]);
	RAGG_CHECKF(req.ev.len == clen, "request carries %zu bytes, sent %zu", req.ev.len, clen);
	RAGG_CHECK(clen == 0 || memcmp(req.ev.data, cpriv, clen) == 0);
	RAGG_CHECK_OK(w->tp->accept(req.ev.ep, spriv, slen));

	struct tpc_ev con = tpc_expect(w, c, RAGG_TP_EV_CONNECTED, ce, TPC_DEADLINE_MS);
	RAGG_CHECKF(con.ev.len == slen, "connected carries %zu bytes, sent %zu", con.ev.len, slen);
	RAGG_CHECK(slen == 0 || memcmp(con.ev.data, spriv, slen) == 0);
	RAGG_CHECK_OK(con.ev.status);
	struct tpc_ev acc = tpc_expect(w, s, RAGG_TP_EV_CONNECTED, req.ev.ep, TPC_DEADLINE_MS);
	RAGG_CHECK_OK(acc.ev.status);
	if (sep)
		*sep = req.ev.ep;
	if (cep)
		*cep = ce;
}

void tpc_write(struct tpc_world *w, struct ragg_tp_ep *ep, const void *laddr,
               struct ragg_tp_mr *lmr, const struct ragg_tp_rdesc *rd, uint64_t roff, size_t len,
               uint32_t imm, unsigned flags, uint64_t cookie)
{
	uint64_t deadline = tpc_now_ms() + TPC_DEADLINE_MS;
	for (;;) {
		int rc = w->tp->write_imm(ep, laddr, lmr, rd, roff, len, imm, flags, cookie);
		if (rc == 0)
			return;
		RAGG_CHECKF(rc == -EAGAIN, "write_imm: %s", ragg_strerror(rc));
		RAGG_CHECKF(tpc_now_ms() < deadline, "write_imm: queue full for %d ms",
		            TPC_DEADLINE_MS);
		tpc_pump(w);
	}
}

/* ---- memory ---- */

void tpc_fill(uint8_t *buf, size_t len, uint64_t seed)
{
	/* xorshift64*, 8 bytes at a time: no period short enough to hide a
	 * misplaced block. */
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		uint64_t v = x * 0x2545F4914F6CDD1Dull;
		memcpy(buf + i, &v, 8);
	}
	for (; i < len; i++)
		buf[i] = (uint8_t)(x >> (8 * (i & 7)) ^ i);
}

void tpc_slot_init(struct tpc_world *w, int dev, struct tpc_slot *s, size_t len)
{
	memset(s, 0, sizeof(*s));
	s->guard = 4096;
	s->len = len;
	s->base = malloc(len + 2 * s->guard);
	RAGG_CHECK(s->base != NULL);
	memset(s->base, TPC_GUARD_BYTE, len + 2 * s->guard);
	s->addr = s->base + s->guard;
	memset(s->addr, 0, len);
	RAGG_CHECK_OK(w->tp->mr_reg(w->dev[dev], s->addr, len, &s->mr, &s->rd));
	RAGG_CHECK(s->mr != NULL && s->rd.len > 0 && s->rd.len <= RAGG_TP_RDESC_MAX);
}

void tpc_slot_fini(struct tpc_world *w, struct tpc_slot *s)
{
	if (s->mr)
		RAGG_CHECK_OK(w->tp->mr_dereg(s->mr));
	free(s->base);
	memset(s, 0, sizeof(*s));
}

void tpc_slot_check_untouched(const struct tpc_slot *s, int fill)
{
	for (size_t i = 0; i < s->guard; i++) {
		RAGG_CHECKF(s->base[i] == TPC_GUARD_BYTE, "guard byte %zu before the slot changed",
		            s->guard - i);
		RAGG_CHECKF(s->addr[s->len + i] == TPC_GUARD_BYTE,
		            "guard byte %zu after the slot changed", i);
	}
	if (fill >= 0)
		for (size_t i = 0; i < s->len; i++)
			RAGG_CHECKF(s->addr[i] == (uint8_t)fill, "slot byte %zu changed", i);
}

/* ---- runner ---- */

static void register_cases(int slot)
{
	for (struct tpc_case *c = cases; c; c = c->next) {
		if (c->only && strcmp(c->only, selected[slot]->name) != 0)
			continue;
		if (c->when && !c->when(selected[slot])) {
			/* Not a failure, and not a skip (nothing is missing
			 * here): the case has nothing to test. Said, so the
			 * lower count is explained. */
			fprintf(stderr, "tp-conformance: %s/%s not run: %s has no %s\n",
			        selected[slot]->name, c->name, selected[slot]->name,
			        c->needs ? c->needs : "such op");
			continue;
		}
		struct ragg_test *t = calloc(1, sizeof(*t));
		char *name = malloc(strlen(selected[slot]->name) + strlen(c->name) + 2);
		if (!t || !name)
			exit(2);
		sprintf(name, "%s/%s", selected[slot]->name, c->name);
		t->name = name;
		t->fn = c->slot[slot];
		t->timeout_s = c->timeout_s;
		ragg_test_register(t);
	}
}

static void usage(const char *prog)
{
	fprintf(stderr,
	        "usage: %s [--transport NAME] [TRANSPORT/CASE ...]\n"
	        "  Runs the transport conformance suite against every built-in transport,\n"
	        "  or only NAME (also from RAGG_TRANSPORT). RAGG_VM_ADDR sets the address\n"
	        "  to listen on (default 127.0.0.1).\n",
	        prog);
}

int main(int argc, char **argv)
{
	const char *only = getenv("RAGG_TRANSPORT");
	char **args = calloc((size_t)argc + 1, sizeof(*args));
	int nargs = 0, nsel = 0, usable = 0;
	char why[256] = "";

	if (!args)
		return 2;
	args[nargs++] = argv[0];
	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "--transport") || !strcmp(argv[i], "-t")) && i + 1 < argc) {
			only = argv[++i];
		} else if (!strncmp(argv[i], "--transport=", 12)) {
			only = argv[i] + 12;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(argv[0]);
			return 0;
		} else {
			args[nargs++] = argv[i];
		}
	}
	if (only && (!*only || !strcmp(only, "auto")))
		only = NULL;
	for (const struct ragg_tp_ops *const *t = ragg_transport_list(); *t && nsel < TPC_SLOTS;
	     t++) {
		if (only && strcmp((*t)->name, only) != 0)
			continue;
		RAGG_CHECK((*t)->size >= sizeof(struct ragg_tp_ops));
		RAGG_CHECKF(ragg_transport_check(*t, why, sizeof(why)) == 0, "%s: %s", (*t)->name,
		            why);
		selected[nsel] = *t;
		if ((*t)->probe(why, sizeof(why)) == 0)
			usable++;
		else
			fprintf(stderr, "tp-conformance: transport %s unusable here: %s\n",
			        (*t)->name, why);
		register_cases(nsel++);
	}
	int rc = 77;
	if (!nsel)
		fprintf(stderr, "tp-conformance: transport %s is not built into this library\n",
		        only ? only : "(any)");
	else if (usable)
		rc = ragg_test_main(nargs, args);
	free(args);
	return rc;
}
