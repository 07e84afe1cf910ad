/*
 * Progress: one loop turns transport events and finished engine jobs into
 * the roles' handlers, then hands queued operations to the transport.
 *
 * Handlers never call the transport's poll themselves: a write that meets a
 * full queue (-EAGAIN) waits in the peer's queue, in order, and is retried
 * here. That keeps handlers free of re-entry and keeps per-peer order, which
 * the protocol relies on (a weight lands before the data it weighs).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "compiler.h"
#include "core.h"
#include "elastic.h"
#include "handshake.h"
#include "log.h"
#include "role.h"

#define EVENTS_PER_POLL 64

int ragg__queue_reserve(struct ragg__peer *p, uint32_t more)
{
	uint32_t cap = p->qcap + more;
	struct ragg__op *q = calloc(cap, sizeof(*q));
	if (!q)
		return -ENOMEM;
	/* Unroll the ring into the new array, oldest first. */
	for (uint32_t i = 0; i < p->qlen; i++)
		q[i] = p->queue[(p->qhead + i) % p->qcap];
	free(p->queue);
	p->queue = q;
	p->qcap = cap;
	p->qhead = 0;
	return 0;
}

static int op_issue(struct ragg__peer *p, const struct ragg__op *op)
{
	const struct ragg_tp_ops *tp = p->tp->ops;
	if (op->is_msg) {
		uint8_t buf[RAGG_MSG_WIRE_MAX];
		return tp->send(p->ep, buf, ragg__msg_encode(&op->msg, buf));
	}
	return tp->write_imm(p->ep, op->laddr, op->lmr, op->remote, op->roff, op->len, op->imm,
	                     op->flags, op->cookie);
}

static int op_enqueue(struct ragg__peer *p, const struct ragg__op *op)
{
	struct ragg_ctx *ctx = p->ctx;
	int rc;

	if (p->gone)
		return RAGG_ERR_PEER_LOST;
	/* Until a peer is connected its operations wait in the queue: a
	 * worker may declare while its agent still connects to servers. */
	if (p->qlen == 0 && p->connected) {
		rc = op_issue(p, op);
		if (rc != -EAGAIN) {
			if (rc) {
				ragg__error("write to %s: %s", p->ep->peer, ragg_strerror(rc));
				ragg__fail(ctx, rc);
			} else if (!op->is_msg) {
				ctx->stats.writes_posted++;
				ctx->stats.bytes_sent += op->len;
			}
			return rc;
		}
	}
	if (p->qlen == p->qcap) {
		/* The queue is sized for a whole round of every tensor; a full
		 * one means a protocol invariant broke. */
		ragg__error("operation queue to %s overflowed (%u)", p->ep->peer, p->qcap);
		ragg__fail(ctx, -ENOBUFS);
		return -ENOBUFS;
	}
	p->queue[(p->qhead + p->qlen) % p->qcap] = *op;
	p->qlen++;
	return 0;
}

int ragg__post_write(struct ragg__peer *p, const void *laddr, struct ragg_tp_mr *lmr,
                     const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len, uint32_t imm,
                     unsigned flags, uint64_t cookie)
{
	struct ragg__op op = {
		.imm = imm,
		.flags = flags,
		.laddr = laddr,
		.lmr = lmr,
		.remote = remote,
		.roff = roff,
		.len = len,
		.cookie = cookie,
	};
	return op_enqueue(p, &op);
}

int ragg__post_msg(struct ragg__peer *p, const struct ragg__msg *msg)
{
	struct ragg__op op = { .is_msg = true, .msg = *msg };
	return op_enqueue(p, &op);
}

static void flush_queues(struct ragg_ctx *ctx)
{
	for (int i = 0; i < ctx->npeers; i++) {
		struct ragg__peer *p = &ctx->peers[i];
		while (p->qlen && p->connected && !p->gone) {
			struct ragg__op *op = &p->queue[p->qhead];
			int rc = op_issue(p, op);
			if (rc == -EAGAIN)
				break;
			if (rc) {
				ragg__error("write to %s: %s", p->ep->peer, ragg_strerror(rc));
				ragg__fail(ctx, rc);
				return;
			}
			if (!op->is_msg) {
				ctx->stats.writes_posted++;
				ctx->stats.bytes_sent += op->len;
			}
			p->qhead = (p->qhead + 1) % p->qcap;
			p->qlen--;
		}
	}
}

void ragg__write_rejected(struct ragg_ctx *ctx, const struct ragg__peer *p, uint32_t imm,
                          size_t len, const char *why)
{
	ragg__error("unexpected write from %s %d (%s): tensor %d chunk %u parity %d length %zu: "
	            "bad %s",
	            ragg__role_name(p->role), p->rank, p->ep->peer, ragg__imm_tensor(imm),
	            ragg__imm_chunk(imm), ragg__imm_parity(imm), len, why);
	ctx->stats.frames_rejected++;
	ragg__fail(ctx, RAGG_ERR_PROTO);
}

void ragg__fail_job(struct ragg_ctx *ctx, int status)
{
	if (ctx->failed)
		return;
	ragg__fail(ctx, status);
	struct ragg__msg bye = { .type = RAGG_MSG_BYE,
		                 .status = status,
		                 .count = (uint64_t)ctx->lost_worker };
	for (int i = 0; i < ctx->npeers; i++) {
		struct ragg__peer *q = &ctx->peers[i];
		if (q->connected && !q->gone && !q->said_bye && !ragg__post_msg(q, &bye))
			ctx->told_failure = true;
	}
}

static void on_disconnected(struct ragg_ctx *ctx, const struct ragg_tp_event *ev)
{
	struct ragg__peer *p = ev->ep->user;
	if (!p) {
		/* A connection we never accepted: nothing of ours refers to it. */
		struct ragg__tp *tp = ragg__tp_of_dev(ctx, ev->ep->dev);
		if (tp)
			tp->ops->ep_close(ev->ep);
		return;
	}
	if (p->ep != ev->ep)
		return;
	if (!p->connected && ragg__hs_we_accept(ctx, p)) {
		/* Gone before its handshake finished: not the job's loss. */
		ragg__hs_fail(ctx, p, RAGG_ERR_PEER_LOST, "the connection closed");
		return;
	}
	p->gone = true;
	if (p->said_bye || ctx->leaving)
		return;
	ctx->stats.peers_dropped++;
	if (ragg__elastic_peer_lost(ctx, p))
		return;
	if (!p->connected)
		ragg__error("connection to %s %d (%s) failed: %s%s", ragg__role_name(p->role),
		            p->rank, ev->ep->peer, ragg_strerror(ev->status),
		            ev->status == -ECONNREFUSED
		                ? " (refused: is it running, with the same RAGG_JOB_KEY "
		                  "and job shape? its log says why)"
		                : "");
	else
		ragg__error("%s %d (%s) lost: %s", ragg__role_name(p->role), p->rank, ev->ep->peer,
		            ragg_strerror(ev->status));
	/* A refusal of a malformed or out-of-slot write keeps its reason;
	 * everything else is the peer's loss. */
	int why = ev->status;
	bool keep = why == RAGG_ERR_BOUNDS || why == RAGG_ERR_KEY || why == RAGG_ERR_PROTO ||
	            why == RAGG_ERR_VERSION || why == RAGG_ERR_AUTH || (!p->connected && why);
	ragg__fail(ctx, keep ? why : RAGG_ERR_PEER_LOST);
}

static void on_recv(struct ragg_ctx *ctx, const struct ragg_tp_event *ev)
{
	struct ragg__peer *p = ev->ep->user;
	struct ragg__msg m;
	/* Handshake gate: until both proofs check, only handshake messages
	 * pass (handshake.h); a connection a failed handshake dropped says
	 * nothing more. */
	if (p && p->ep != ev->ep)
		return;
	if (p && ragg__hs_is_msg(ev->data, ev->len)) {
		ragg__hs_on_msg(ctx, p, ev);
		return;
	}
	if (p && !p->connected) {
		ctx->stats.frames_rejected++;
		ragg__hs_fail(ctx, p, RAGG_ERR_AUTH, "a control message before the handshake");
		return;
	}
	if (!p || ragg__msg_decode(ev->data, ev->len, &m)) {
		ragg__error("malformed control message from %s", ev->ep->peer);
		ctx->stats.frames_rejected++;
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (m.type == RAGG_MSG_ABORT) {
		ragg__abort_on_msg(ctx, p, &m);
		return;
	}
	if (m.type == RAGG_MSG_BYE) {
		if (!p->said_bye)
			ctx->byes++;
		p->said_bye = true;
		/* A goodbye with a reason: the job failed there; it fails here
		 * too, for the same reason, and the news goes on once. */
		if (m.status < 0 && !ctx->failed) {
			if (m.count && m.count <= (uint64_t)ctx->opts.workers) {
				ctx->lost_worker = (int)m.count;
				ragg__error("%s %d stopped the job: worker %d left: %s",
				            ragg__role_name(p->role), p->rank, (int)m.count - 1,
				            ragg_strerror(m.status));
			} else
				ragg__error("%s %d stopped the job: %s", ragg__role_name(p->role),
				            p->rank, ragg_strerror(m.status));
			ragg__fail_job(ctx, m.status);
		} else if (!m.status)
			ragg__elastic_on_bye(ctx, p);
		return;
	}
	if (m.type == RAGG_MSG_WORKER_LEFT) {
		ragg__elastic_on_msg(ctx, p, &m);
		return;
	}
	if (m.type == RAGG_MSG_SETTING) {
		ragg__agreement_on_msg(ctx, p, &m);
		return;
	}
	if (ctx->failed)
		return; /* a failed process takes on no more work while it lingers */
	ctx->role->on_msg(ctx, p, &m);
}

static void on_peer_mapped(struct ragg_ctx *ctx, const struct ragg_tp_event *ev)
{
	struct ragg__peer *p = ev->ep->user;
	if (!p)
		return;
	if (ctx->role->on_peer_mapped)
		ctx->role->on_peer_mapped(ctx, p);
}

static void on_landed(struct ragg_ctx *ctx, const struct ragg_tp_event *ev)
{
	struct ragg__peer *p = ev->ep->user;
	if (!p || p->ep != ev->ep)
		return;
	if (ragg__unlikely(!p->connected)) {
		ctx->stats.frames_rejected++;
		ragg__hs_fail(ctx, p, RAGG_ERR_AUTH, "a write before the handshake");
		return;
	}
	ctx->stats.writes_landed++;
	ctx->stats.bytes_received += ev->len;
	ctx->role->on_landed(ctx, p, ev->imm, ev->len);
}

/*
 * Finished jobs wake the loop through the engine's completion fd, which is
 * ctx->wake_fd, the fd the transports' wait watches: the engine makes it
 * readable once a finished job waits and reap drains it (see pool.c), so
 * a job ends without calling back into the core and no wake-up is lost.
 */
static int reap_jobs(struct ragg_ctx *ctx)
{
	int n = 0;
	/* Not only while jobs are out: a job's signal can come after the
	 * loop took the job itself (the engine lists it, then signals), and
	 * left undrained it would make every later wait return at once. */
	if (!ctx->engine)
		return 0;
	bool woken = ctx->woken;
	ctx->woken = false;
	struct ragg__job *j =
	    woken ? ragg__engine_reap_woken(ctx->engine) : ragg__engine_reap(ctx->engine);
	while (j) {
		struct ragg__job *next = j->next;
		ctx->role->on_job(ctx, j);
		j = next;
		ctx->jobs_out--;
		n++;
	}
	return n;
}

static void dispatch(struct ragg_ctx *ctx, const struct ragg_tp_event *ev, int n);

/* Returns the number of things that happened, or the job's sticky error. */
int ragg__progress(struct ragg_ctx *ctx)
{
	struct ragg_tp_event ev[EVENTS_PER_POLL];
	int total = 0;

	if (ragg__unlikely(ctx->hs_dead))
		ragg__hs_reap(ctx);
	ragg__hs_sweep(ctx);

	for (int d = 0; d < ctx->ntp; d++) {
		int n = ctx->tps[d].ops->poll(ctx->tps[d].dev, ev, EVENTS_PER_POLL);
		if (n < 0) {
			ragg__fail(ctx, n);
			return n;
		}
		dispatch(ctx, ev, n);
		total += n;
	}
	total += reap_jobs(ctx);
	flush_queues(ctx);
	return ctx->failed ? ctx->failed : total;
}

static void dispatch(struct ragg_ctx *ctx, const struct ragg_tp_event *ev, int n)
{
	for (int i = 0; i < n; i++) {
		switch (ev[i].type) {
		case RAGG_TP_EV_CONNECT_REQUEST:
			ragg__on_connect_request(ctx, &ev[i]);
			break;
		case RAGG_TP_EV_CONNECTED:
			ragg__on_connected(ctx, &ev[i]);
			break;
		case RAGG_TP_EV_WRITE_DONE:
			if (ctx->role->on_write_done)
				ctx->role->on_write_done(ctx, ev[i].cookie);
			break;
		case RAGG_TP_EV_WRITE_LANDED:
			on_landed(ctx, &ev[i]);
			break;
		case RAGG_TP_EV_RECV:
			on_recv(ctx, &ev[i]);
			break;
		case RAGG_TP_EV_DISCONNECTED:
			on_disconnected(ctx, &ev[i]);
			break;
		case RAGG_TP_EV_PEER_MAPPED:
			on_peer_mapped(ctx, &ev[i]);
			break;
		}
	}
}

bool ragg__queues_drained(void *arg)
{
	struct ragg_ctx *ctx = arg;
	for (int i = 0; i < ctx->npeers; i++)
		if (ctx->peers[i].qlen && !ctx->peers[i].gone)
			return false;
	return true;
}

/* Spinning only pays while this thread has a core to itself. Preemptions
 * since the last look mean other threads wanted ours (an oversubscribed
 * host: more processes than cores), and each spin then delays the very
 * peer we wait for; so adaptive polling blocks at once for a while. */
#define RAGG_SPIN_OFF_US 500000u
static void check_contention(struct ragg_ctx *ctx, uint64_t now)
{
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru))
		return;
	if (ru.ru_nivcsw != ctx->nivcsw)
		ctx->spin_off_until_us = now + RAGG_SPIN_OFF_US;
	ctx->nivcsw = ru.ru_nivcsw;
}

int ragg__wait(struct ragg_ctx *ctx, bool (*done)(void *arg), void *arg, const char *what)
{
	return ragg__wait_for(ctx, done, arg, what, ctx->opts.timeout_ms);
}

int ragg__wait_for(struct ragg_ctx *ctx, bool (*done)(void *arg), void *arg, const char *what,
                   int timeout_ms)
{
	const struct ragg_opts *o = &ctx->opts;
	uint64_t now = ragg__now_us();
	uint64_t idle_since = now;

	for (;;) {
		int n = ragg__progress(ctx);
		if (n < 0)
			return n;
		if (done(arg))
			return 0;
		now = ragg__now_us();
		if (n > 0) {
			idle_since = now;
			continue;
		}
		/* The deadline counts time without any progress, so a long
		 * round on a slow peer is not mistaken for a hang. */
		uint64_t idle_us = now - idle_since;
		if (idle_us >= (uint64_t)timeout_ms * 1000u) {
			ragg__error("%s: no progress for %d ms", what, timeout_ms);
			return RAGG_ERR_TIMEOUT;
		}
		if (o->poll == RAGG_POLL_BUSY ||
		    (o->poll == RAGG_POLL_ADAPTIVE && idle_us < (uint64_t)o->spin_us &&
		     now >= ctx->spin_off_until_us))
			continue;
		if (o->poll == RAGG_POLL_ADAPTIVE)
			check_contention(ctx, now);
		uint64_t left_ms = ((uint64_t)timeout_ms * 1000u - idle_us + 999u) / 1000u;
		ctx->stats.wait_blocks++;
		ragg__transports_wait(ctx, left_ms > 1000u ? 1000 : (int)left_ms);
		ctx->woken = true;
	}
}
