/*
 * A parameter-server shard: it owns chunks c with c mod n == its rank. Once
 * every agent's (N_j, s_j) for a chunk has landed, an engine thread forms
 * g = sum_j s_j / sum_j N_j, the exact sample-weighted mean over all
 * workers' data, applies the optimizer, and the shard writes the chunk's new
 * parameters into every agent's parameter region.
 *
 * Where an agent's parameter region is mapped here (shm), the engine
 * thread copies the new parameters into it right after the step, while
 * they are in cache, and a write of length 0 carries the immediate.
 *
 * Round 0 is the initial broadcast: the parameters become g itself (worker 0
 * pushed its parameters with weight 1, every other worker weight 0).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "core.h"
#include "elastic.h"
#include "log.h"
#include "optim/optim.h"
#include "role.h"
#include "stale.h"

/* One of the agents, for one tensor. */
struct ragg__server_agent {
	struct ragg__region slot; /* what it writes its sums into */
	struct ragg__peer_region params; /* its parameter region */
};

/* An owned chunk's job: the optimizer step, then the copies into every
 * agent's parameter region mapped here. */
struct ragg__update_job {
	struct ragg__job job;
	ragg_tensor_t *t;
	uint32_t chunk;
	int parity;
	int rc; /* out: a contribution refused by the codec, or 0 */
	int pull_rc; /* out: the update could not be encoded (RAGG_COMPRESS_PULL), or 0 */
	void *wbase; /* where the step writes: the parameters, or the pull scratch */
	double total_weight; /* out: sum of the contributions' weights */
	/* One more than agents: the parameters, in the fused SGD step. */
	const float **inputs;
	float *weights;
	void **copy_to; /* per agent: its mapped region, or NULL (sent by write) */
};

struct ragg__server_tensor {
	struct ragg__decl decl; /* the agents' declarations (role.h) */
	bool ready;
	size_t nowned, owned_bytes; /* the plan's, for this server */
	struct ragg__server_agent *a; /* per agent */
	struct ragg__region w; /* the owned parameters */
	float *g; /* gradient scratch, owned layout */
	/* RAGG_COMPRESS_PULL: the stepped parameters (scratch, then the
	 * update), the error-feedback residual, owned layout; the encoded
	 * updates, pull_stride bytes per owned chunk. */
	float *pw, *presid;
	struct ragg__region pe;
	struct ragg__optim_conf oc; /* the optimizer and its hyperparameters */
	float *state[RAGG_OPTIM_MAX_STATE]; /* its state vectors, owned layout */
	uint32_t *arrived[2]; /* per owned chunk */
	struct ragg__seen seen; /* which agents' owned chunks landed */
	uint64_t *rounds; /* per owned chunk: updates applied */
	struct ragg__update_job *jobs; /* per owned chunk */
	bool warned_zero;
};

/* With RAGG_COMPRESS_PULL, at RAGG_LOG=info: a checksum (64-bit FNV-1a
 * of the bytes) of each owned chunk's parameters, which every worker's
 * replica must match (tests/integration/run.sh compress_pull_replicas_identical). */
static void log_replica(ragg_tensor_t *t)
{
	struct ragg__server_tensor *st = t->server;
	const struct ragg__plan *pl = &t->plan;
	if (!pl->pull.codec || !st->w.mem || !st->rounds || ragg__log_get() < RAGG_LOG_INFO)
		return;
	for (size_t lc = 0; lc < st->nowned; lc++) {
		uint32_t c = ragg__plan_global(pl, t->ctx->opts.rank, lc);
		const unsigned char *p = (const unsigned char *)st->w.mem + ragg__plan_owned_off(pl, c);
		uint64_t h = 0xcbf29ce484222325ull;
		for (size_t i = 0; i < ragg__plan_chunk_len(pl, c); i++)
			h = (h ^ p[i]) * 0x100000001b3ull;
		ragg__info("tensor %d chunk %u: parameters fnv1a %016llx after %llu rounds", t->id, c,
		           (unsigned long long)h, (unsigned long long)st->rounds[lc]);
	}
}

void ragg__server_tensor_free(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	struct ragg__server_tensor *st = t->server;
	log_replica(t);
	if (st->a)
		for (int j = 0; j < ctx->opts.agents; j++)
			if (st->a[j].slot.mem)
				ragg__region_free(ctx, &st->a[j].slot);
	if (st->w.mem)
		ragg__region_free(ctx, &st->w);
	if (st->g)
		ragg__engine_free(ctx->engine, st->g, st->owned_bytes);
	if (st->pw)
		ragg__engine_free(ctx->engine, st->pw, st->owned_bytes ? st->owned_bytes : 64);
	if (st->presid)
		ragg__engine_free(ctx->engine, st->presid,
		                  st->owned_bytes ? st->owned_bytes : 64);
	if (st->pe.mem)
		ragg__region_free(ctx, &st->pe);
	for (int s = 0; s < RAGG_OPTIM_MAX_STATE; s++)
		if (st->state[s])
			ragg__engine_free(ctx->engine, st->state[s],
			                  st->owned_bytes ? st->owned_bytes : 64);
	if (st->jobs)
		for (size_t i = 0; i < st->nowned; i++) {
			free(st->jobs[i].inputs);
			free(st->jobs[i].weights);
			free(st->jobs[i].copy_to);
		}
	free(st->jobs);
	free(st->a);
	free(st->arrived[0]);
	free(st->arrived[1]);
	ragg__seen_free(&st->seen);
	ragg__decl_free(&st->decl);
	free(st->rounds);
	free(st);
	t->server = NULL;
}

static void server_step(struct ragg__update_job *cj, double total, size_t from, size_t n,
                        bool coded);
static void server_resync(struct ragg__update_job *cj, size_t n);
static void server_pull_step(struct ragg__update_job *cj, double total, size_t n, bool coded);

/* With a codec (RAGG_COMPRESS): g = sum_j D(s_j) / total over the chunk,
 * every agent's encoding decoded and accumulated in one pass each. */
static int server_decode(struct ragg__update_job *cj, double total, size_t n)
{
	ragg_tensor_t *t = cj->t;
	const struct ragg__plan *pl = &t->plan;
	struct ragg__server_tensor *st = t->server;
	uint64_t round = st->rounds[ragg__plan_local(pl, cj->chunk)];
	float *g = (float *)((char *)st->g + ragg__plan_owned_off(pl, cj->chunk));
	size_t len = ragg__plan_contrib_len(pl, cj->chunk, true);
	memset(g, 0, n * sizeof(float));
	for (int j = 0; j < t->ctx->opts.agents; j++) {
		const char *in = (const char *)st->a[j].slot.mem +
		                 ragg__plan_server_slot_off(pl, cj->parity, cj->chunk);
		int rc = ragg__codec_decode_accumulate(&pl->codec, in, len, g, n,
		                                       (float)(1.0 / total),
		                                       ragg__plan_seed(round, cj->chunk));
		if (rc)
			return rc;
	}
	return 0;
}

/* The step and the copies to agents go a block at a time, so each copy
 * reads what the step just wrote from the cache, not from memory. */
#define SERVER_BLOCK_ELEMS ((size_t)16384)

/* A resync round (RAGG_COMPRESS_PULL): what the replicas were owed, the
 * residual of the server's error feedback, goes into the parameters
 * before the step, and the round's parameters travel exact. */
static void server_resync(struct ragg__update_job *cj, size_t n)
{
	const struct ragg__plan *pl = &cj->t->plan;
	struct ragg__server_tensor *st = cj->t->server;
	size_t off = ragg__plan_owned_off(pl, cj->chunk);
	if (!st->presid)
		return;
	float *w = (float *)((char *)st->w.mem + off);
	float *e = (float *)((char *)st->presid + off);
	for (size_t i = 0; i < n; i++)
		w[i] += e[i];
	memset(e, 0, n * sizeof(float));
}

/* A round whose update travels encoded (RAGG_COMPRESS_PULL): the step
 * runs on a copy of the parameters, the update u = stepped - w is encoded
 * with the server's error feedback, and the parameters advance by the
 * decoded update, D(C(u)), exactly what every agent adds to its replica. */
static void server_pull_step(struct ragg__update_job *cj, double total, size_t n, bool coded)
{
	ragg_tensor_t *t = cj->t;
	const struct ragg__plan *pl = &t->plan;
	struct ragg__server_tensor *st = t->server;
	size_t lc = ragg__plan_local(pl, cj->chunk);
	size_t off = ragg__plan_owned_off(pl, cj->chunk);
	float *w = (float *)((char *)st->w.mem + off);
	float *u = (float *)((char *)st->pw + off);
	memcpy(u, w, n * sizeof(float));
	cj->wbase = st->pw;
	for (size_t from = 0; total > 0 && from < n; from += SERVER_BLOCK_ELEMS) {
		size_t m = n - from < SERVER_BLOCK_ELEMS ? n - from : SERVER_BLOCK_ELEMS;
		server_step(cj, total, from, m, coded);
	}
	cj->wbase = st->w.mem;
	for (size_t i = 0; i < n; i++)
		u[i] -= w[i];
	uint8_t *enc = (uint8_t *)st->pe.mem + lc * pl->pull_stride;
	size_t len = ragg__plan_pull_len(pl, cj->chunk);
	uint64_t seed = ragg__plan_pull_seed(st->rounds[lc], cj->chunk);
	ssize_t r = ragg__codec_encode(&pl->pull, u, n, enc, len,
	                               st->presid ? (char *)st->presid + off : NULL, seed);
	if (r < 0) {
		cj->pull_rc = (int)r;
		return;
	}
	cj->pull_rc = ragg__codec_decode_accumulate(&pl->pull, enc, len, w, n, 1.0f, seed);
}


/* Runs on an engine thread. */
static void server_update(struct ragg__job *job)
{
	struct ragg__update_job *cj = ragg__container_of(job, struct ragg__update_job, job);
	const struct ragg__plan *pl = &cj->t->plan;
	struct ragg_ctx *ctx = cj->t->ctx;
	struct ragg__server_tensor *st = cj->t->server;
	double total = 0;

	for (int j = 0; j < ctx->opts.agents; j++)
		total += ((const double *)st->a[j].slot.mem)[cj->parity];
	cj->total_weight = total;
	size_t n = ragg__plan_chunk_elems(pl, cj->chunk);
	size_t off = ragg__plan_chunk_off(pl, cj->chunk);
	uint64_t round = st->rounds[ragg__plan_local(pl, cj->chunk)];
	bool coded = ragg__plan_coded(pl, round);
	bool pull_coded = ragg__plan_pull_coded(pl, round);
	cj->rc = 0;
	cj->pull_rc = 0;
	cj->wbase = st->w.mem;
	if (coded && total > 0 && (cj->rc = server_decode(cj, total, n)))
		return;
	if (pl->pull.codec && round > 0) {
		if (!pull_coded) {
			server_resync(cj, n);
		} else {
			server_pull_step(cj, total, n, coded);
			return;
		}
	}
	const uint8_t *w = (const uint8_t *)st->w.mem + ragg__plan_owned_off(pl, cj->chunk);
	for (size_t from = 0; from < n; from += SERVER_BLOCK_ELEMS) {
		size_t m = n - from < SERVER_BLOCK_ELEMS ? n - from : SERVER_BLOCK_ELEMS;
		if (total > 0)
			server_step(cj, total, from, m, coded);
		ragg__copy_fanout(cj->copy_to, ctx->opts.agents, off + from * sizeof(float),
		                  w + from * sizeof(float), m * sizeof(float));
	}
}

/* g = sum_j s_j / sum_j N_j, then the optimizer (or, in round 0, the
 * initial parameters), for elements [from, from + n) of the chunk. With
 * `coded`, g was decoded already (server_decode). */
static void server_step(struct ragg__update_job *cj, double total, size_t from, size_t n,
                        bool coded)
{
	ragg_tensor_t *t = cj->t;
	struct ragg_ctx *ctx = t->ctx;
	struct ragg__server_tensor *st = t->server;
	const struct ragg__kernels *k = ctx->kernels;
	size_t lc = ragg__plan_local(&t->plan, cj->chunk);
	size_t off = ragg__plan_owned_off(&t->plan, cj->chunk) + from * sizeof(float);
	float inv = (float)(1.0 / total);
	for (int j = 0; j < ctx->opts.agents; j++) {
		cj->weights[j] = inv;
		cj->inputs[j] = (const float *)((const char *)st->a[j].slot.mem +
		                                ragg__plan_server_slot_off(&t->plan, cj->parity,
		                                                           cj->chunk) +
		                                from * sizeof(float));
	}
	float *w = (float *)((char *)cj->wbase + off);
	float *g = (float *)((char *)st->g + off);
	if (st->rounds[lc] == 0) {
		k->sum_weighted(w, cj->inputs, cj->weights, ctx->opts.agents, n);
		return;
	}
	const struct ragg__optim *op = st->oc.optim;
	if (coded && (op->flags & RAGG_OPTIM_FUSED_SUM)) {
		/* w <- w - lr * g, g decoded. */
		cj->inputs[0] = g;
		cj->weights[0] = -st->oc.lr;
		cj->inputs[1] = w;
		cj->weights[1] = 1.0f;
		k->sum_weighted(w, cj->inputs, cj->weights, 2, n);
		return;
	}
	if (op->flags & RAGG_OPTIM_FUSED_SUM) {
		/* w <- w - lr * sum_j s_j / N in one pass over the chunk: the
		 * parameters are one more input of the weighted sum. */
		int a = ctx->opts.agents;
		for (int j = 0; j < a; j++)
			cj->weights[j] = -st->oc.lr * inv;
		cj->inputs[a] = w;
		cj->weights[a] = 1.0f;
		k->sum_weighted(w, cj->inputs, cj->weights, a + 1, n);
		return;
	}
	if (!coded)
		k->sum_weighted(g, cj->inputs, cj->weights, ctx->opts.agents, n);
	struct ragg__optim_block b = { .w = w, .g = g, .n = n };
	for (int s = 0; s < op->nstate; s++)
		b.state[s] = (float *)((char *)st->state[s] + off);
	/* rounds[lc] counts round 0's broadcast: the first step is step 1. */
	op->step(&st->oc, k, &b, st->rounds[lc]);
}

void ragg__server_on_job(struct ragg_ctx *ctx, struct ragg__job *job)
{
	struct ragg__update_job *cj = ragg__container_of(job, struct ragg__update_job, job);
	ragg_tensor_t *t = cj->t;
	const struct ragg__plan *pl = &t->plan;
	struct ragg__server_tensor *st = t->server;
	size_t lc = ragg__plan_local(pl, cj->chunk);

	if (cj->rc) {
		ragg__error("tensor %d chunk %u: an agent's contribution does not decode under "
		            "RAGG_COMPRESS=%s: %s",
		            t->id, cj->chunk, pl->codec.codec->name, ragg_strerror(cj->rc));
		ragg__fail(ctx, cj->rc);
		return;
	}
	if (cj->pull_rc) {
		ragg__error("tensor %d chunk %u: the update cannot be encoded under "
		            "RAGG_COMPRESS_PULL=%s: %s",
		            t->id, cj->chunk, pl->pull.codec->name, ragg_strerror(cj->pull_rc));
		ragg__fail(ctx, cj->pull_rc);
		return;
	}
	if (!(cj->total_weight > 0) && !st->warned_zero) {
		ragg__warn("tensor %d: a round with total weight 0 leaves the parameters unchanged",
		           t->id);
		st->warned_zero = true;
	}
	bool pull_coded = ragg__plan_pull_coded(pl, st->rounds[lc]);
	st->rounds[lc]++;
	if (lc == 0)
		ctx->stats.rounds++;
	if (pull_coded) {
		/* The encoded update, into each agent's pull area. */
		for (int j = 0; j < ctx->opts.agents; j++)
			ragg__post_write(&ctx->peers[j], (char *)st->pe.mem + lc * pl->pull_stride,
			                 ragg__region_mr(&st->pe, &ctx->peers[j]),
			                 &st->a[j].params.rdesc, ragg__plan_pull_off(pl, cj->chunk),
			                 ragg__plan_pull_len(pl, cj->chunk),
			                 ragg__imm_encode(cj->parity, t->id, cj->chunk),
			                 RAGG_TP_WRITE_IMM, 0);
		return;
	}
	/* Length 0 where the job copied them in place already. */
	for (int j = 0; j < ctx->opts.agents; j++)
		ragg__post_write(
		    &ctx->peers[j], (char *)st->w.mem + ragg__plan_owned_off(pl, cj->chunk),
		    ragg__region_mr(&st->w, &ctx->peers[j]), &st->a[j].params.rdesc,
		    ragg__plan_chunk_off(pl, cj->chunk),
		    cj->copy_to[j] ? 0 : ragg__plan_chunk_len(pl, cj->chunk),
		    ragg__imm_encode(cj->parity, t->id, cj->chunk), RAGG_TP_WRITE_IMM, 0);
}

static const struct ragg__region *agent_slot(ragg_tensor_t *t, int j)
{
	return &t->server->a[j].slot;
}

static void ack_agents(struct ragg_ctx *ctx, ragg_tensor_t *t, int status)
{
	ragg__role_ack(ctx, t, ctx->opts.agents, status, agent_slot);
}

static int setup_memory(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	struct ragg__server_tensor *st = t->server;
	const struct ragg__plan *pl = &t->plan;
	size_t chunk_bytes = pl->chunk_bytes;
	int rc;

	st->nowned = ragg__plan_owned(pl, ctx->opts.rank);
	st->owned_bytes = ragg__plan_owned_bytes(pl, ctx->opts.rank);
	for (int j = 0; j < ctx->opts.agents; j++)
		if ((rc = ragg__region_alloc(ctx, ragg__plan_server_slot_bytes(pl, ctx->opts.rank),
		                             chunk_bytes, &st->a[j].slot)))
			return rc;
	if ((rc = ragg__region_alloc(ctx, st->owned_bytes ? st->owned_bytes : 64, chunk_bytes,
	                             &st->w)))
		return rc;
	st->g =
	    ragg__engine_alloc(ctx->engine, st->owned_bytes ? st->owned_bytes : 64, chunk_bytes);
	st->jobs = calloc(st->nowned ? st->nowned : 1, sizeof(*st->jobs));
	st->arrived[0] = calloc(st->nowned ? st->nowned : 1, sizeof(uint32_t));
	st->arrived[1] = calloc(st->nowned ? st->nowned : 1, sizeof(uint32_t));
	st->rounds = calloc(st->nowned ? st->nowned : 1, sizeof(uint64_t));
	if (!st->g || !st->jobs || !st->arrived[0] || !st->arrived[1] || !st->rounds)
		return -ENOMEM;
	if ((rc = ragg__seen_init(&st->seen, st->nowned, ctx->opts.agents)))
		return rc;
	if ((rc = ragg__optim_conf_read(&ctx->opts, &st->oc)))
		return rc;
	if (pl->pull.codec) {
		size_t ob = st->owned_bytes ? st->owned_bytes : 64;
		if ((rc = ragg__region_alloc(ctx, st->nowned ? st->nowned * pl->pull_stride : 64,
		                             chunk_bytes, &st->pe)))
			return rc;
		if (!(st->pw = ragg__engine_alloc(ctx->engine, ob, chunk_bytes)))
			return -ENOMEM;
		if (pl->pull.error_feedback) {
			if (!(st->presid = ragg__engine_alloc(ctx->engine, ob, chunk_bytes)))
				return -ENOMEM;
			memset(st->presid, 0, st->owned_bytes);
		}
	}
	for (int s = 0; s < st->oc.optim->nstate; s++) {
		st->state[s] = ragg__engine_alloc(
		    ctx->engine, st->owned_bytes ? st->owned_bytes : 64, chunk_bytes);
		if (!st->state[s])
			return -ENOMEM;
		memset(st->state[s], 0, st->owned_bytes);
	}
	for (size_t i = 0; i < st->nowned; i++) {
		struct ragg__update_job *j = &st->jobs[i];
		j->t = t;
		j->chunk = ragg__plan_global(pl, ctx->opts.rank, i);
		j->job.fn = server_update;
		j->job.thread_hint = (int)i;
		/* One more input than agents: the parameters, in the fused SGD step. */
		j->inputs = calloc((size_t)ctx->opts.agents + 1, sizeof(*j->inputs));
		j->weights = calloc((size_t)ctx->opts.agents + 1, sizeof(*j->weights));
		j->copy_to = calloc((size_t)ctx->opts.agents, sizeof(*j->copy_to));
		if (!j->inputs || !j->weights || !j->copy_to)
			return -ENOMEM;
	}
	for (int j = 0; j < ctx->opts.agents; j++)
		if ((rc = ragg__queue_reserve(&ctx->peers[j], (uint32_t)st->nowned + 2)))
			return rc;
	return 0;
}

/* The declaration from the agents, server's part (role.h). */
static int server_tensor_init(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	struct ragg__server_tensor *st = calloc(1, sizeof(*st));
	if (!(t->server = st) || !(st->a = calloc((size_t)ctx->opts.agents, sizeof(*st->a))))
		return -ENOMEM;
	return 0;
}

static struct ragg__decl *server_decl(ragg_tensor_t *t)
{
	return &t->server->decl;
}

/* An agent's declaration carries its parameter region (none when it
 * reports a failure). */
static int server_keep(struct ragg_ctx *ctx, ragg_tensor_t *t, int j, const struct ragg__msg *m)
{
	(void)ctx;
	if (!m->rdesc.len && !m->status)
		return RAGG_ERR_PROTO;
	t->server->a[j].params.rdesc = m->rdesc;
	return 0;
}

static void server_declared(struct ragg_ctx *ctx, ragg_tensor_t *t, const struct ragg__msg *m)
{
	struct ragg__server_tensor *st = t->server;
	(void)m;
	if (st->decl.mismatch || st->decl.status) {
		ack_agents(ctx, t, st->decl.status ? st->decl.status : RAGG_ERR_MISMATCH);
		return;
	}
	int rc = setup_memory(ctx, t);
	st->ready = rc == 0;
	ack_agents(ctx, t, rc);
}

static const struct ragg__decl_ops server_decl_ops = {
	.sender = "agent",
	.tensor_init = server_tensor_init,
	.decl = server_decl,
	.keep = server_keep,
	.complete = server_declared,
};

void ragg__server_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	if (m->type == RAGG_MSG_DECLARE) {
		ragg__role_on_declare(ctx, p, m, ctx->opts.agents, &server_decl_ops);
		return;
	}
	if (m->type == RAGG_MSG_VERSION) {
		ragg__stale_on_msg(ctx, p, m);
		return;
	}
	ragg__error("unexpected control message %d from %s", m->type, p->ep->peer);
	ragg__fail(ctx, RAGG_ERR_PROTO);
}

bool ragg__server_round_open(struct ragg_ctx *ctx)
{
	for (int k = 0; k < ctx->ntensors; k++) {
		const struct ragg__server_tensor *st = ctx->tensors[k]->server;
		for (size_t lc = 0; st && st->ready && lc < st->nowned; lc++)
			if (st->arrived[0][lc] || st->arrived[1][lc])
				return true;
	}
	return false;
}

void ragg__server_on_landed(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len)
{
	/* An agent said goodbye: a round that goes on misses its workers. */
	if (ragg__unlikely(ctx->byes) && ragg__elastic_agent_gone(ctx))
		return;
	int id = ragg__imm_tensor(imm), parity = ragg__imm_parity(imm);
	uint32_t c = ragg__imm_chunk(imm);
	ragg_tensor_t *t = id < ctx->ntensors ? ctx->tensors[id] : NULL;
	const struct ragg__plan *pl = t && t->server->ready ? &t->plan : NULL;
	/* Length 0: the agent summed into our slot in place. Each owned
	 * chunk keeps its own round count, hence its own parity. */
	struct ragg__expect e = {
		.plan = pl,
		.owner = ctx->opts.rank,
		.sender_ok = !p->said_bye,
		.in_place_ok = true,
	};
	if (pl && c < pl->nchunks && ragg__plan_owner(pl, c) == ctx->opts.rank) {
		size_t lc = ragg__plan_local(pl, c);
		e.parity = (int)(t->server->rounds[lc] & 1);
		/* Once per agent, chunk and round. */
		e.room = !ragg__seen_has(&t->server->seen, parity, lc, p->index);
		/* After round 0, a codec's encoding. */
		e.coded = ragg__plan_coded(pl, t->server->rounds[lc]);
	}
	const char *why;
	if (ragg__plan_check_write(&e, c, parity, len, &why)) {
		ragg__write_rejected(ctx, p, imm, len, why);
		return;
	}
	struct ragg__server_tensor *st = t->server;
	size_t lc = ragg__plan_local(pl, c);
	ragg__seen_mark(&st->seen, parity, lc, p->index);
	if (++st->arrived[parity][lc] < (uint32_t)ctx->opts.agents)
		return;
	st->arrived[parity][lc] = 0;
	ragg__seen_clear(&st->seen, parity, lc);
	st->jobs[lc].parity = parity;
	for (int j = 0; j < ctx->opts.agents; j++)
		st->jobs[lc].copy_to[j] =
		    ragg__peer_region_map(&ctx->peers[j], &st->a[j].params, t->plan.bytes);
	int rc = ragg__engine_submit(ctx->engine, &st->jobs[lc].job);
	if (rc)
		ragg__fail(ctx, rc);
	else
		ctx->jobs_out++;
}

const struct ragg__role_ops ragg__server_role = {
	.name = "server",
	.on_msg = ragg__server_on_msg,
	.on_landed = ragg__server_on_landed,
	.on_job = ragg__server_on_job,
};

bool ragg__server_view(ragg_tensor_t *t, struct ragg__server_view *v)
{
	struct ragg__server_tensor *st = t->server;
	if (!st || !st->ready)
		return false;
	v->w = st->w.mem;
	v->g = st->g;
	v->oc = &st->oc;
	v->nstate = st->oc.optim->nstate;
	for (int s = 0; s < RAGG_OPTIM_MAX_STATE; s++)
		v->state[s] = st->state[s];
	v->rounds = st->rounds;
	v->w_region = &st->w;
	return true;
}

const struct ragg__region *ragg__server_agent_slot(ragg_tensor_t *t, int j)
{
	return &t->server->a[j].slot;
}

struct ragg__peer_region *ragg__server_agent_params(ragg_tensor_t *t, int j)
{
	return &t->server->a[j].params;
}
