/*
 * Bounded staleness (RAGG_STALENESS, stale.h): the asynchronous rounds.
 *
 * Agent, per chunk: a worker's contribution is added to the chunk's next
 * sum as soon as it arrives (in the server's slot itself where that is
 * mapped here), so its slot is free again at once; the sum (weights
 * exact: N is the sum of the weights taken) goes to the chunk's server as
 * soon as the previous one was answered, so at most one is in flight and
 * what arrives meanwhile rides in the next. The server applies each sum as
 * it lands (SGD in one pass over the chunk, as in the synchronous rounds),
 * counts the clock of each worker it covered, and answers with the
 * chunk's parameters and version (the clocks a majority of the workers
 * has applied). A worker's chunk goes back to it once the sum that
 * carried its contribution was answered and the version is at least
 * t + 1 - s for its clock t; a worker that needs a newer version than the
 * agent holds waits for it, and the agent asks the server to answer when
 * the chunk gets there (one such request in flight per chunk).
 *
 * Everything here runs on the thread that owns the context.
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "compiler.h"
#include "log.h"
#include "optim/optim.h"
#include "settings.h"
#include "stale.h"

#define S_INF UINT64_MAX

struct stale_worker {
	uint64_t *ver; /* per chunk: the version received this round, 0: not yet */
	uint32_t got;
};

struct stale_agent {
	uint64_t *clock; /* per worker: the clock of its current push */
	uint64_t *next; /* per worker: the clock its next push must carry */
	/* [worker * nchunks + chunk]: its contribution is taken, its
	 * parameters not sent yet (no version new enough here) */
	uint8_t *wait;
	bool *flying; /* per chunk: a sum is at the server, unanswered */
	uint64_t *flushes; /* per chunk: sums sent (their parity) */
	uint64_t *answered; /* per chunk: sums answered (they come in order) */
	/* [worker * nchunks + chunk]: 1 + the number of the sum that carries
	 * its current clock's contribution */
	uint64_t *seq;
	uint64_t *want; /* per chunk: the version asked for, 0: none */
	uint64_t *ver; /* per chunk: the newest version received */
	/* per chunk, the next sum: contributions taken, their weight, where
	 * it accumulates and whether that is the server's slot itself */
	uint32_t *pk;
	double *ptotal;
	float **pdst;
	bool *pin;
	struct ragg__region pacc; /* the sums by parity, where no slot is mapped */
};

struct stale_server {
	/* [worker * nowned + local chunk]: the worker's clocks applied there */
	uint64_t *done;
	uint64_t *ver; /* per local chunk: its version */
	/* per local chunk: the workers with more than ver clocks applied */
	int *above;
	int *first, *nw; /* per agent: its first worker and how many */
	int quorum; /* more than half of the job's workers */
	uint64_t *flushes; /* [agent * nowned + local chunk]: sums received */
	uint64_t *want; /* [agent * nowned + local chunk]: version asked for */
	size_t nowned;
};

struct stale {
	uint64_t s;
	struct stale_worker w;
	struct stale_agent a;
	struct stale_server sv;
};

int ragg__staleness(const struct ragg_opts *o, uint64_t *s)
{
	const char *text = ragg__opt_get(o, "RAGG_STALENESS");
	if (!text || !*text) {
		*s = 0;
		return 0;
	}
	if (strcmp(text, "inf") == 0) {
		*s = S_INF;
		return 0;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || *end || errno || v > 1000000000ull) {
		ragg__error("RAGG_STALENESS=\"%s\": expected a whole number from 0 to 1000000000, "
		            "or inf",
		            text);
		return RAGG_ERR_CONFIG;
	}
	*s = v;
	return 0;
}

int ragg__stale_validate(const struct ragg_opts *o)
{
	uint64_t s;
	if (ragg__staleness(o, &s))
		return RAGG_ERR_CONFIG;
	if (!s)
		return 0;
	const char *codec = ragg__opt_get(o, "RAGG_COMPRESS");
	if (codec && *codec && strcmp(codec, "none") != 0) {
		ragg__error("RAGG_STALENESS=%s with RAGG_COMPRESS=%s: asynchronous rounds carry "
		            "plain floats; use one or the other",
		            ragg__opt_get(o, "RAGG_STALENESS"), codec);
		return RAGG_ERR_CONFIG;
	}
	if (ragg__opt_long(o, "RAGG_WORKER_COMPRESS") >= 2) {
		ragg__error("RAGG_STALENESS=%s with RAGG_WORKER_COMPRESS=%s: asynchronous rounds "
		            "carry plain floats; use one or the other",
		            ragg__opt_get(o, "RAGG_STALENESS"), ragg__opt_get(o, "RAGG_WORKER_COMPRESS"));
		return RAGG_ERR_CONFIG;
	}
	if (ragg__opt_long(o, "RAGG_DP") == 1) {
		ragg__error("RAGG_STALENESS=%s with RAGG_DP=on: the privacy accounting assumes "
		            "synchronous rounds; use one or the other",
		            ragg__opt_get(o, "RAGG_STALENESS"));
		return RAGG_ERR_CONFIG;
	}
	/* A contribution names the workers it covers in a bitmap of
	 * RAGG_TP_RDESC_MAX bytes (stale.h). */
	int per_agent = (o->workers + o->agents - 1) / o->agents;
	if (per_agent > 8 * RAGG_TP_RDESC_MAX) {
		ragg__error(
		    "RAGG_STALENESS=%s with %d workers on an agent (RAGG_WORKERS=%d, "
		    "RAGG_AGENTS=%d): asynchronous rounds take at most %d workers an agent; "
		    "add agents",
		    ragg__opt_get(o, "RAGG_STALENESS"), per_agent, o->workers, o->agents,
		    8 * RAGG_TP_RDESC_MAX);
		return RAGG_ERR_CONFIG;
	}
	static const char *const sync_only[][2] = {
		{ "RAGG_COMPRESS_PULL", "the servers' updates travel as plain parameters" },
		{ "RAGG_SECAGG", "masks cancel only in a sum over the whole group" },
		{ "RAGG_ON_WORKER_LOSS", "every worker must push every clock" },
	};
	for (size_t i = 0; i < sizeof(sync_only) / sizeof(sync_only[0]); i++) {
		const char *name = sync_only[i][0], *v = ragg__opt_get(o, name);
		if (v && *v && strcmp(v, "none") != 0 && strcmp(v, "off") != 0 &&
		    strcmp(v, "fail") != 0) {
			ragg__error("RAGG_STALENESS=%s with %s=%s: %s; use one or the other",
			            ragg__opt_get(o, "RAGG_STALENESS"), name, v, sync_only[i][1]);
			return RAGG_ERR_CONFIG;
		}
	}
	return 0;
}

static uint64_t staleness(const struct ragg_ctx *ctx)
{
	uint64_t s = 0;
	if (ragg__staleness(&ctx->opts, &s))
		return 0; /* refused by ragg__opts_validate already */
	return s;
}

bool ragg__stale_round(const ragg_tensor_t *t, uint64_t round)
{
	return round >= 1 && staleness(t->ctx) != 0;
}

/* The version a worker's pull after its push of clock t must return. */
static uint64_t need_of(uint64_t s, uint64_t t)
{
	return s == S_INF || t + 1 <= s ? 0 : t + 1 - s;
}

void ragg__stale_free(ragg_tensor_t *t)
{
	struct stale *st = t->stale;
	if (!st)
		return;
	free(st->w.ver);
	free(st->a.clock);
	free(st->a.next);
	free(st->a.wait);
	free(st->a.flying);
	free(st->a.flushes);
	free(st->a.answered);
	free(st->a.seq);
	free(st->a.want);
	free(st->a.ver);
	free(st->a.pk);
	free(st->a.ptotal);
	free(st->a.pdst);
	free(st->a.pin);
	if (st->a.pacc.mem)
		ragg__region_free(t->ctx, &st->a.pacc);
	free(st->sv.done);
	free(st->sv.ver);
	free(st->sv.above);
	free(st->sv.first);
	free(st->sv.nw);
	free(st->sv.flushes);
	free(st->sv.want);
	free(st);
	t->stale = NULL;
}

/* The tensor's state, made on first use; NULL: out of memory (the job
 * fails). Each peer's queue gets room for what an asynchronous round may
 * queue on top of a synchronous one: per chunk a write and a message
 * each way, and a request. */
static struct stale *state(ragg_tensor_t *t)
{
	if (t->stale)
		return t->stale;
	struct ragg_ctx *ctx = t->ctx;
	size_t nc = t->plan.nchunks, nw = (size_t)(ctx->nworkers > 0 ? ctx->nworkers : 1);
	size_t na = (size_t)ctx->opts.agents;
	struct stale *st = calloc(1, sizeof(*st));
	if (!st)
		goto oom;
	t->stale = st;
	st->s = staleness(ctx);
	if (ctx->opts.role == RAGG_ROLE_WORKER) {
		if (!(st->w.ver = calloc(nc, sizeof(uint64_t))))
			goto oom;
	} else if (ctx->opts.role == RAGG_ROLE_AGENT) {
		struct stale_agent *a = &st->a;
		a->clock = calloc(nw, sizeof(uint64_t));
		a->next = calloc(nw, sizeof(uint64_t));
		a->wait = calloc(nw * nc, 1);
		a->flying = calloc(nc, sizeof(bool));
		a->flushes = calloc(nc, sizeof(uint64_t));
		a->answered = calloc(nc, sizeof(uint64_t));
		a->seq = calloc(nw * nc, sizeof(uint64_t));
		a->want = calloc(nc, sizeof(uint64_t));
		a->ver = calloc(nc, sizeof(uint64_t));
		a->pk = calloc(nc, sizeof(uint32_t));
		a->ptotal = calloc(nc, sizeof(double));
		a->pdst = calloc(nc, sizeof(float *));
		a->pin = calloc(nc, sizeof(bool));
		if (!a->clock || !a->next || !a->wait || !a->flying || !a->flushes || !a->want ||
		    !a->ver || !a->pk || !a->ptotal || !a->pdst || !a->pin || !a->answered ||
		    !a->seq)
			goto oom;
		/* The synchronous rounds done so far; every chunk is there. */
		for (size_t i = 0; i < nw; i++)
			a->next[i] = t->round;
		for (size_t c = 0; c < nc; c++)
			a->ver[c] = t->round;
	} else {
		struct stale_server *sv = &st->sv;
		struct ragg__server_view v;
		if (!ragg__server_view(t, &v))
			goto oom;
		sv->nowned = ragg__plan_owned(&t->plan, ctx->opts.rank);
		size_t n = sv->nowned ? sv->nowned : 1, m = (size_t)ctx->opts.workers;
		sv->done = calloc(n * m, sizeof(uint64_t));
		sv->ver = calloc(n, sizeof(uint64_t));
		sv->above = calloc(n, sizeof(int));
		sv->first = calloc(na, sizeof(int));
		sv->nw = calloc(na, sizeof(int));
		sv->flushes = calloc(n * na, sizeof(uint64_t));
		sv->want = calloc(n * na, sizeof(uint64_t));
		if (!sv->done || !sv->ver || !sv->above || !sv->first || !sv->nw || !sv->flushes ||
		    !sv->want)
			goto oom;
		sv->quorum = ctx->opts.workers / 2 + 1;
		for (size_t j = 0; j < na; j++)
			ragg__agent_workers(&ctx->opts, (int)j, &sv->first[j], &sv->nw[j]);
		/* Each synchronous round applied every worker's clock. */
		for (size_t lc = 0; lc < sv->nowned; lc++) {
			sv->ver[lc] = v.rounds[lc];
			for (size_t i = 0; i < m; i++)
				sv->done[i * sv->nowned + lc] = v.rounds[lc];
		}
	}
	for (int i = 0; i < ctx->npeers; i++)
		if (ragg__queue_reserve(&ctx->peers[i], 4 * (uint32_t)nc + 4))
			goto oom;
	return st;
oom:
	ragg__error("tensor %d: no memory for asynchronous rounds", t->id);
	ragg__fail(ctx, -ENOMEM);
	return NULL;
}

/* A contribution's message carries in its descriptor the bitmap of the
 * agent's workers whose clock it covers (bit i: the agent's i-th). */
#define WHO_BYTES RAGG_TP_RDESC_MAX

static void post_version(struct ragg__peer *p, ragg_tensor_t *t, int32_t kind, uint64_t count,
                         uint64_t version, uint64_t extra, const uint8_t *who, uint8_t who_len)
{
	if (p->gone || p->said_bye)
		return;
	struct ragg__msg m = { .type = RAGG_MSG_VERSION,
		               .tensor = (uint8_t)t->id,
		               .status = kind,
		               .count = count,
		               .chunk_bytes = version,
		               .name_hash = extra };
	if ((kind & 0xff) == RAGG__VER_CONTRIB) {
		m.rdesc.len = who_len;
		memcpy(m.rdesc.blob, who, who_len);
	}
	ragg__post_msg(p, &m);
}

static void refuse(struct ragg_ctx *ctx, const struct ragg__peer *p, const char *why)
{
	ragg__error("version message from %s %d refused: %s", ragg__role_name(p->role), p->rank,
	            why);
	ctx->stats.frames_rejected++;
	ragg__fail_job(ctx, RAGG_ERR_PROTO);
}

/* ---- worker ---------------------------------------------------------- */

int ragg__stale_worker_pushed(ragg_tensor_t *t)
{
	struct stale *st = state(t);
	if (!st)
		return t->ctx->failed;
	memset(st->w.ver, 0, t->plan.nchunks * sizeof(uint64_t));
	st->w.got = 0;
	post_version(&t->ctx->peers[0], t, RAGG__VER_PUSH, t->round, t->round, 0, NULL, 0);
	return t->ctx->failed;
}

static bool pull_done(void *arg)
{
	ragg_tensor_t *t = arg;
	return t->worker.push_inflight == 0 && t->stale &&
	       ((struct stale *)t->stale)->w.got == t->plan.nchunks;
}

int ragg__stale_worker_pull(ragg_tensor_t *t)
{
	if (!t->worker.pushed) {
		ragg__error("tensor \"%s\": pull without a push in an asynchronous round "
		            "(RAGG_STALENESS): push first",
		            t->name);
		return -EINVAL;
	}
	int rc = ragg__wait(t->ctx, pull_done, t, "pull (a version within RAGG_STALENESS)");
	if (rc)
		return rc;
	struct stale *st = t->stale;
	uint64_t need = need_of(st->s, t->round), v = UINT64_MAX;
	for (size_t c = 0; c < t->plan.nchunks; c++)
		if (st->w.ver[c] < v)
			v = st->w.ver[c];
	/* The bound, checked on every pull. */
	if (v < need) {
		ragg__error("tensor \"%s\": clock %" PRIu64 " got parameters at version %" PRIu64
		            ", older than RAGG_STALENESS=%s allows (%" PRIu64 ")",
		            t->name, t->round, v, ragg__opt_get(&t->ctx->opts, "RAGG_STALENESS"),
		            need);
		ragg__fail_job(t->ctx, RAGG_ERR_PROTO);
		return RAGG_ERR_PROTO;
	}
	t->pull_version = v;
	return 0;
}

static void worker_on_params(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t,
                             const struct ragg__msg *m)
{
	struct stale *st = t->stale;
	uint64_t c = m->count;
	if (!st || !t->worker.pushed || c >= t->plan.nchunks || st->w.ver[c] ||
	    m->chunk_bytes == 0) {
		refuse(ctx, p, "parameters not awaited");
		return;
	}
	if (t->worker.agent_params.rdesc.len) {
		/* The agent cannot reach our buffer: copy from its region. */
		if (!t->worker.agent_params.at) {
			refuse(ctx, p, "the agent's parameter region is not mapped yet");
			return;
		}
		size_t off = ragg__plan_chunk_off(&t->plan, c);
		memcpy((char *)t->worker.params + off, t->worker.agent_params.at + off,
		       ragg__plan_chunk_len(&t->plan, c));
	}
	st->w.ver[c] = m->chunk_bytes;
	st->w.got++;
}

/* ---- agent ----------------------------------------------------------- */

/* Where chunk c's next sum (parity: its sequence number's) accumulates:
 * straight in the server's slot when it is mapped here, else our own
 * region, written to the server when the sum is sent. */
static float *sum_target(struct ragg_ctx *ctx, ragg_tensor_t *t, struct stale_agent *a,
                         uint32_t c, bool *in_place)
{
	const struct ragg__plan *pl = &t->plan;
	struct ragg__agent_tensor *at = t->agent;
	int s = ragg__plan_owner(pl, c), parity = (int)(a->flushes[c] & 1);
	uint8_t *slot = ragg__peer_region_map(ragg__server_peer(ctx, s), &at->s[s].slot,
	                                      ragg__plan_server_slot_bytes(pl, s));
	*in_place = slot != NULL;
	if (slot)
		return (float *)(slot + ragg__plan_server_slot_off(pl, parity, c));
	if (!a->pacc.mem &&
	    ragg__region_alloc(ctx, 2 * ragg__plan_contrib_bytes(pl), pl->chunk_bytes, &a->pacc))
		return NULL;
	return (float *)((char *)a->pacc.mem +
	                 (size_t)parity * ragg__plan_contrib_bytes(pl) +
	                 ragg__plan_contrib_off(pl, c));
}

/* Worker i's contribution of chunk c, just arrived, into the chunk's next
 * sum: its slot is free again once this returns. false: the job failed. */
static bool take(struct ragg_ctx *ctx, ragg_tensor_t *t, struct stale_agent *a, int i,
                 uint32_t c, double w)
{
	const struct ragg__plan *pl = &t->plan;
	size_t n = ragg__plan_chunk_elems(pl, c);
	const float *g = (const float *)((const char *)t->agent->w[i].slot.mem +
	                                 ragg__plan_worker_slot_off(pl, (int)(a->clock[i] & 1), c));
	bool in_place;
	if (!a->pk[c]) {
		float *dst = sum_target(ctx, t, a, c, &in_place);
		if (!dst) {
			ragg__error("tensor %d: no memory for asynchronous sums", t->id);
			ragg__fail(ctx, -ENOMEM);
			return false;
		}
		a->pdst[c] = dst;
		a->pin[c] = in_place;
	}
	float *dst = a->pdst[c];
	const float *in[2] = { dst, g };
	float wt[2] = { 1.0f, (float)w };
	int k = 2;
	if (!a->pk[c]) {
		in[0] = g;
		wt[0] = (float)w;
		k = 1;
	}
	if (ctx->kernels->sum_weighted(dst, in, wt, k, n)) {
		size_t bad = ragg__first_nonfinite(dst, n);
		ragg__error("tensor %d chunk %u: the sum of %u contributions is not finite "
		            "(element %zu); refused",
		            t->id, c, a->pk[c] + 1, ragg__plan_chunk_off(pl, c) / sizeof(float) + bad);
		ragg__fail_job(ctx, RAGG_ERR_NONFINITE);
		return false;
	}
	a->pk[c]++;
	a->ptotal[c] += w;
	size_t ic = (size_t)i * pl->nchunks + c;
	a->seq[ic] = a->flushes[c] + 1;
	return true;
}

/* Send chunk c's sum of the contributions taken since the last one to its
 * server. */
static void flush(struct ragg_ctx *ctx, ragg_tensor_t *t, struct stale_agent *a, uint32_t c)
{
	const struct ragg__plan *pl = &t->plan;
	struct ragg__agent_tensor *at = t->agent;
	size_t nc = pl->nchunks;
	if (!a->pk[c] || a->flying[c])
		return;
	uint8_t who[WHO_BYTES] = { 0 };
	for (int i = 0; i < ctx->nworkers && i < 8 * WHO_BYTES; i++)
		if (a->seq[(size_t)i * nc + c] == a->flushes[c] + 1)
			who[i / 8] |= (uint8_t)(1u << (i % 8));
	int s = ragg__plan_owner(pl, c), parity = (int)(a->flushes[c] & 1);
	struct ragg__peer *srv = ragg__server_peer(ctx, s);
	if (!a->pin[c])
		ragg__post_write(srv, a->pdst[c], ragg__region_mr(&a->pacc, srv), &at->s[s].slot.rdesc,
		                 ragg__plan_server_slot_off(pl, parity, c),
		                 ragg__plan_chunk_len(pl, c), 0, 0, 0);
	uint64_t bits;
	double total = a->ptotal[c];
	memcpy(&bits, &total, sizeof(bits));
	post_version(srv, t, RAGG__VER_CONTRIB | (int32_t)a->pk[c] << 8, c, a->flushes[c], bits,
	             who, (uint8_t)((ctx->nworkers + 7) / 8));
	a->flushes[c]++;
	a->flying[c] = true;
	a->pk[c] = 0;
	a->ptotal[c] = 0;
}

/* Chunk c of our parameter region, at version v, to worker i. */
static void send_params(struct ragg_ctx *ctx, ragg_tensor_t *t, int i, uint32_t c, uint64_t v)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__peer *p = &ctx->peers[i];
	size_t off = ragg__plan_chunk_off(&t->plan, c), len = ragg__plan_chunk_len(&t->plan, c);
	if (p->gone || p->said_bye)
		return;
	uint8_t *mapped = ragg__peer_region_map(p, &at->w[i].params, t->plan.bytes);
	if (mapped)
		memcpy(mapped + off, (char *)at->params.mem + off, len);
	else if (!at->w[i].pulls)
		ragg__post_write(p, (char *)at->params.mem + off, ragg__region_mr(&at->params, p),
		                 &at->w[i].params.rdesc, off, len, 0, 0, 0);
	post_version(p, t, RAGG__VER_PARAMS, c, v, 0, NULL, 0);
}

/* What chunk c can do now: the next sum, parameters to the workers
 * waiting for a version we now hold, a request for a newer version. */
static void agent_advance(struct ragg_ctx *ctx, ragg_tensor_t *t, struct stale_agent *a,
                          uint32_t c)
{
	size_t nc = t->plan.nchunks;
	uint64_t blocked = 0;
	flush(ctx, t, a, c);
	for (int i = 0; i < ctx->nworkers; i++) {
		uint8_t *w = &a->wait[(size_t)i * nc + c];
		if (!*w)
			continue;
		uint64_t need = need_of(((struct stale *)t->stale)->s, a->clock[i]);
		/* Its own contribution must be applied too. */
		if (a->answered[c] < a->seq[(size_t)i * nc + c])
			continue;
		if (a->ver[c] >= need) {
			send_params(ctx, t, i, c, a->ver[c]);
			*w = 0;
		} else if (!blocked || need < blocked) {
			blocked = need;
		}
	}
	if (blocked && !a->want[c]) {
		a->want[c] = blocked;
		post_version(ragg__server_peer(ctx, ragg__plan_owner(&t->plan, c)), t,
		             RAGG__VER_WANT, c, blocked, 0, NULL, 0);
	}
}

static void agent_on_push(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t,
                          struct stale_agent *a, const struct ragg__msg *m)
{
	int i = p->index;
	size_t nc = t->plan.nchunks;
	if (m->count != a->next[i]) {
		refuse(ctx, p, "a push out of order (its clock is not the next one)");
		return;
	}
	for (size_t c = 0; c < nc; c++)
		if (a->wait[(size_t)i * nc + c]) {
			refuse(ctx, p, "a push before the previous one was answered");
			return;
		}
	double w = ((const double *)t->agent->w[i].slot.mem)[m->count & 1];
	if (!(w >= 0.0 && w <= FLT_MAX)) {
		ragg__error("tensor %d clock %" PRIu64 ": worker %d pushed the weight %g, not a "
		            "finite number >= 0; refused",
		            t->id, m->count, p->rank, w);
		ragg__fail_job(ctx, RAGG_ERR_NONFINITE);
		return;
	}
	a->clock[i] = m->count;
	a->next[i]++;
	for (uint32_t c = 0; c < nc; c++) {
		if (!take(ctx, t, a, i, c, w))
			return;
		a->wait[(size_t)i * nc + c] = 1;
		agent_advance(ctx, t, a, c);
	}
}

static void agent_on_reply(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t,
                           struct stale_agent *a, const struct ragg__msg *m)
{
	uint64_t c = m->count;
	int which = m->status >> 8;
	size_t nc = t->plan.nchunks;
	if (c >= nc || ragg__plan_owner(&t->plan, c) != p->index ||
	    (which == 1 && !a->flying[c]) || (which == 2 && !a->want[c]) ||
	    (which != 1 && which != 2)) {
		refuse(ctx, p, "an answer to no request");
		return;
	}
	if (which == 1) {
		a->flying[c] = false;
		a->answered[c]++;
	} else {
		a->want[c] = 0;
	}
	if (m->chunk_bytes > a->ver[c])
		a->ver[c] = m->chunk_bytes;
	agent_advance(ctx, t, a, (uint32_t)c);
}

/* ---- server ---------------------------------------------------------- */

static void server_reply(struct ragg_ctx *ctx, ragg_tensor_t *t, int j, uint32_t c, int which,
                         uint64_t v, bool copy)
{
	struct ragg__peer *p = &ctx->peers[j];
	struct ragg__server_view sv;
	if (p->gone || p->said_bye || !ragg__server_view(t, &sv))
		return;
	if (!copy) {
		post_version(p, t, RAGG__VER_REPLY | which << 8, c, v, 0, NULL, 0);
		return;
	}
	const struct ragg__plan *pl = &t->plan;
	struct ragg__peer_region *pr = ragg__server_agent_params(t, j);
	size_t off = ragg__plan_chunk_off(pl, c), len = ragg__plan_chunk_len(pl, c);
	const char *src = (const char *)sv.w + ragg__plan_owned_off(pl, c);
	uint8_t *mapped = ragg__peer_region_map(p, pr, pl->bytes);
	if (mapped)
		memcpy(mapped + off, src, len);
	else
		ragg__post_write(p, src, ragg__region_mr(sv.w_region, p), &pr->rdesc, off, len, 0, 0,
		                 0);
	post_version(p, t, RAGG__VER_REPLY | which << 8, c, v, 0, NULL, 0);
}

/* Chunk lc's version: the largest v such that more than half of the
 * workers have every clock below v applied there. */
static uint64_t version_of(const struct stale_server *s, size_t lc)
{
	return s->ver[lc];
}

/* Worker g's next clock is applied to chunk lc: its version moves on
 * once a majority has more clocks applied than it counts. */
static void count_clock(const struct ragg_ctx *ctx, struct stale_server *s, int g, size_t lc)
{
	if (++s->done[(size_t)g * s->nowned + lc] == s->ver[lc] + 1)
		s->above[lc]++;
	while (s->above[lc] >= s->quorum) {
		s->ver[lc]++;
		s->above[lc] = 0;
		for (int i = 0; i < ctx->opts.workers; i++)
			if (s->done[(size_t)i * s->nowned + lc] > s->ver[lc])
				s->above[lc]++;
	}
}

static void server_on_contrib(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t,
                              struct stale_server *s, const struct ragg__msg *m)
{
	const struct ragg__plan *pl = &t->plan;
	struct ragg__server_view v;
	uint64_t c = m->count;
	int j = p->index, k = m->status >> 8;
	double total;
	memcpy(&total, &m->name_hash, sizeof(total));
	if (c >= pl->nchunks || ragg__plan_owner(pl, c) != ctx->opts.rank || k < 1 ||
	    k > ctx->opts.workers || !(total >= 0.0 && total <= DBL_MAX) ||
	    !ragg__server_view(t, &v)) {
		refuse(ctx, p, "a contribution with a bad chunk, count or weight");
		return;
	}
	size_t lc = ragg__plan_local(pl, c);
	uint64_t *fl = &s->flushes[(size_t)j * s->nowned + lc];
	if (m->chunk_bytes != *fl) {
		refuse(ctx, p, "a contribution with the wrong sequence number");
		return;
	}
	/* Whose clocks it covers: k of the agent's workers, each once. */
	int nw = s->nw[j], ones = 0;
	bool who_ok = m->rdesc.len == (nw + 7) / 8;
	for (int b = 0; who_ok && b < 8 * m->rdesc.len; b++)
		if (m->rdesc.blob[b / 8] >> (b % 8) & 1) {
			ones++;
			who_ok = b < nw;
		}
	if (!who_ok || ones != k) {
		refuse(ctx, p, "a contribution whose workers do not match its count");
		return;
	}
	int parity = (int)(*fl & 1);
	(*fl)++;
	size_t n = ragg__plan_chunk_elems(pl, c), off = ragg__plan_owned_off(pl, c);
	if (total > 0) {
		const float *in = (const float *)((const char *)ragg__server_agent_slot(t, j)->mem +
		                                  ragg__plan_server_slot_off(pl, parity, c));
		float inv = (float)(1.0 / total);
		float *w = (float *)((char *)v.w + off);
		if (v.oc->optim->flags & RAGG_OPTIM_FUSED_SUM) {
			/* w <- w - lr * s_j / N_j in one pass, as the servers'
			 * synchronous rounds do. */
			const float *ins[2] = { in, w };
			float wts[2] = { -v.oc->lr * inv, 1.0f };
			ctx->kernels->sum_weighted(w, ins, wts, 2, n);
		} else {
			float *g = (float *)((char *)v.g + off);
			ctx->kernels->sum_weighted(g, &in, &inv, 1, n);
			struct ragg__optim_block b = { .w = w, .g = g, .n = n };
			for (int q = 0; q < v.nstate; q++)
				b.state[q] = (float *)((char *)v.state[q] + off);
			v.oc->optim->step(v.oc, ctx->kernels, &b, v.rounds[lc]);
		}
		v.rounds[lc]++;
	}
	for (int b = 0; b < nw; b++)
		if (m->rdesc.blob[b / 8] >> (b % 8) & 1)
			count_clock(ctx, s, s->first[j] + b, lc);
	if (lc == 0)
		ctx->stats.rounds++;
	uint64_t ver = version_of(s, lc);
	server_reply(ctx, t, j, (uint32_t)c, 1, ver, true);
	for (int q = 0; q < ctx->opts.agents; q++) {
		uint64_t *w = &s->want[(size_t)q * s->nowned + lc];
		if (*w && *w <= ver) {
			*w = 0;
			/* Agent j has these parameters already, from the answer
			 * just sent on the same endpoint. */
			server_reply(ctx, t, q, (uint32_t)c, 2, ver, q != j);
		}
	}
}

static void server_on_want(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t,
                           struct stale_server *s, const struct ragg__msg *m)
{
	const struct ragg__plan *pl = &t->plan;
	uint64_t c = m->count;
	if (c >= pl->nchunks || ragg__plan_owner(pl, c) != ctx->opts.rank || !m->chunk_bytes) {
		refuse(ctx, p, "a request for a chunk this server does not own");
		return;
	}
	size_t lc = ragg__plan_local(pl, c);
	uint64_t *w = &s->want[(size_t)p->index * s->nowned + lc];
	if (*w) {
		refuse(ctx, p, "a second request for the same chunk");
		return;
	}
	uint64_t ver = version_of(s, lc);
	if (ver >= m->chunk_bytes)
		server_reply(ctx, t, p->index, (uint32_t)c, 2, ver, true);
	else
		*w = m->chunk_bytes;
}

void ragg__stale_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	ragg_tensor_t *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	int kind = m->status & 0xff;
	struct ragg__server_view v;
	bool ok = t && staleness(ctx) != 0;
	if (ok && ctx->opts.role != RAGG_ROLE_SERVER)
		ok = t->round >= 1;
	if (ok && ctx->opts.role == RAGG_ROLE_AGENT)
		ok = t->agent && t->agent->ready;
	if (ok && ctx->opts.role == RAGG_ROLE_SERVER)
		ok = ragg__server_view(t, &v);
	if (!ok) {
		refuse(ctx, p, "no asynchronous round of that tensor");
		return;
	}
	struct stale *st = state(t);
	if (!st)
		return;
	if (ctx->opts.role == RAGG_ROLE_WORKER && kind == RAGG__VER_PARAMS)
		worker_on_params(ctx, p, t, m);
	else if (ctx->opts.role == RAGG_ROLE_AGENT && p->role == RAGG_ROLE_WORKER &&
	         kind == RAGG__VER_PUSH)
		agent_on_push(ctx, p, t, &st->a, m);
	else if (ctx->opts.role == RAGG_ROLE_AGENT && p->role == RAGG_ROLE_SERVER &&
	         kind == RAGG__VER_REPLY)
		agent_on_reply(ctx, p, t, &st->a, m);
	else if (ctx->opts.role == RAGG_ROLE_SERVER && kind == RAGG__VER_CONTRIB)
		server_on_contrib(ctx, p, t, &st->sv, m);
	else if (ctx->opts.role == RAGG_ROLE_SERVER && kind == RAGG__VER_WANT)
		server_on_want(ctx, p, t, &st->sv, m);
	else
		refuse(ctx, p, "a kind this role does not take");
}

RAGG_EXPORT int ragg_pull_version(ragg_tensor_t *t, uint64_t *version)
{
	if (!t || !version || t->ctx->opts.role != RAGG_ROLE_WORKER)
		return -EINVAL;
	*version = t->pull_version;
	return 0;
}
