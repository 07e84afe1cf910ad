/*
 * The agent's rounds. Where a peer's memory is mapped here (shm), the
 * copies happen in place: the sums read a worker's gradient straight from
 * its ragg_mem_alloc() buffer and go straight into the server's slot, and
 * an engine thread copies parameters into every mapped worker buffer in
 * one pass; a write of length 0 then carries just the immediate.
 *
 * Round invariants that make single accumulators safe: a worker pushes round
 * t+1 only after it pulled every chunk of round t, and a server sends round
 * t+1 parameters only after every agent's round t+1 sum arrived; so chunk c's
 * accumulator is never rewritten while its previous contents are in flight.
 */
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "compiler.h"
#include "log.h"

/* Runs on an engine thread. */
void ragg__agent_sum(struct ragg__job *job)
{
	struct ragg__chunk_job *cj = ragg__container_of(job, struct ragg__chunk_job, job);
	ragg_tensor_t *t = cj->t;
	struct ragg_ctx *ctx = t->ctx;
	struct ragg__agent_tensor *at = t->agent;
	double total = 0;

	for (int i = 0; i < ctx->nworkers; i++) {
		const double *meta = at->w[i].slot.mem;
		total += meta[cj->parity];
		cj->weights[i] = (float)meta[cj->parity];
	}
	ctx->kernels->sum_weighted(cj->out, cj->inputs, cj->weights, ctx->nworkers,
	                           ragg__chunk_len(t, cj->chunk) / sizeof(float));
	cj->total_weight = total;
	ragg__job_finished(ctx);
}

/* Runs on an engine thread: the chunk's parameters into every mapped
 * worker buffer, a block at a time so the source is read from memory once
 * for all of them. */
void ragg__agent_fanout(struct ragg__job *job)
{
	struct ragg__chunk_job *cj = ragg__container_of(job, struct ragg__chunk_job, job);
	ragg_tensor_t *t = cj->t;
	size_t off = cj->chunk * t->chunk_elems * sizeof(float);
	size_t len = ragg__chunk_len(t, cj->chunk);
	const uint8_t *src = (const uint8_t *)t->agent->params.mem + off;
	ragg__copy_fanout(cj->copy_to, cj->ncopy, off, src, len);
	ragg__job_finished(t->ctx);
}

/* Where chunk c's sum goes: straight into server s's slot when it is
 * mapped here, else our accumulator, written to the server afterwards. */
static float *sum_target(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	int n = ctx->opts.servers, s = (int)(c % (uint32_t)n);
	size_t chunk_bytes = t->chunk_elems * sizeof(float);
	size_t owned_bytes = ragg__owned_chunks(t->nchunks, n, s) * chunk_bytes;
	uint8_t *slot = ragg__peer_mapped(ragg__server_peer(ctx, s), &at->s[s].slot,
	                                  RAGG_SLOT_META_BYTES + 2 * owned_bytes, &at->s[s].slot_at,
	                                  &at->s[s].slot_never);
	if (slot)
		return (float *)(slot + ragg__slot_offset(parity, owned_bytes,
		                                          (c / (uint32_t)n) * chunk_bytes));
	return (float *)((char *)at->acc.mem + RAGG_SLOT_META_BYTES + c * chunk_bytes);
}

static void on_gradient(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t, int parity,
                        uint32_t c, size_t len)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__chunk_job *j = &at->jobs[c];
	size_t off = c * t->chunk_elems * sizeof(float);
	const struct ragg__agent_worker *w = &at->w[p->index];
	if (len)
		j->inputs[p->index] = (const float *)((const char *)w->slot.mem +
		                                      ragg__slot_offset(parity, t->bytes, off));
	else
		j->inputs[p->index] = (const float *)(w->grad_at + off);
	if (++at->arrived[parity][c] < (uint32_t)ctx->nworkers)
		return;
	at->arrived[parity][c] = 0;
	j->parity = parity;
	j->out = sum_target(ctx, t, parity, c);
	int rc = ragg__engine_submit(ctx->engine, &j->job);
	if (rc)
		ragg__fail(ctx, rc);
	else
		ctx->jobs_out++;
}

/* Chunk c's parameters to worker i with a write of len bytes (0: they
 * are in its buffer already). */
static void forward(struct ragg_ctx *ctx, ragg_tensor_t *t, int i, int parity, uint32_t c,
                    size_t len)
{
	struct ragg__agent_tensor *at = t->agent;
	size_t off = c * t->chunk_elems * sizeof(float);
	if (at->w[i].pulls) {
		struct ragg__msg m = { .type = RAGG_MSG_PARAMS_READY,
			               .tensor = (uint8_t)t->id,
			               .count = ragg__imm_encode(parity, t->id, c) };
		ragg__post_msg(&ctx->peers[i], &m);
		return;
	}
	ragg__post_write(&ctx->peers[i], (char *)at->params.mem + off,
	                 ragg__region_mr(&at->params, &ctx->peers[i]), &at->w[i].params, off, len,
	                 ragg__imm_encode(parity, t->id, c), RAGG_TP_WRITE_IMM, 0);
}

static void on_parameters(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__chunk_job *f = &at->fanout[c];
	int copies = 0;
	for (int i = 0; i < ctx->nworkers; i++) {
		f->copy_to[i] = ragg__peer_mapped(&ctx->peers[i], &at->w[i].params, t->bytes,
		                                  &at->w[i].params_at, &at->w[i].params_never);
		if (f->copy_to[i])
			copies++;
		else
			forward(ctx, t, i, parity, c, ragg__chunk_len(t, c));
	}
	if (copies) {
		f->parity = parity;
		int rc = ragg__engine_submit(ctx->engine, &f->job);
		if (rc)
			ragg__fail(ctx, rc);
		else
			ctx->jobs_out++;
	}
	if (++at->params_landed == t->nchunks) {
		at->params_landed = 0;
		t->round++;
		ctx->stats.rounds++;
	}
}

void ragg__agent_on_landed(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len)
{
	int id = ragg__imm_tensor(imm), parity = ragg__imm_parity(imm);
	uint32_t c = ragg__imm_chunk(imm);
	ragg_tensor_t *t = id < ctx->ntensors ? ctx->tensors[id] : NULL;
	/* Length 0: the data is in place, in the worker's mapped buffer or
	 * (from a server) in our parameter region. */
	bool in_place_ok =
	    t && t->agent->ready && (p->role == RAGG_ROLE_SERVER || t->agent->w[p->index].grad_at);
	if (!t || !t->agent->ready || c >= t->nchunks ||
	    (len != ragg__chunk_len(t, c) && !(len == 0 && in_place_ok)) ||
	    parity != (int)(t->round & 1)) {
		ragg__error("unexpected write from %s (tensor %d chunk %u parity %d length %zu)",
		            p->ep->peer, id, c, parity, len);
		ctx->stats.frames_rejected++;
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (p->role == RAGG_ROLE_WORKER) {
		if (t->agent->w[p->index].grad_pending)
			ragg__agent_map_grad(ctx, p, t);
		on_gradient(ctx, p, t, parity, c, len);
	} else
		on_parameters(ctx, t, parity, c);
}

/* A chunk's sum is ready: send N (once per server and round) and the sum.
 * A fan-out is done: tell the workers it went to. */
void ragg__agent_on_job(struct ragg_ctx *ctx, struct ragg__chunk_job *cj)
{
	ragg_tensor_t *t = cj->t;
	if (cj->kind == RAGG_JOB_FANOUT) {
		for (int i = 0; i < ctx->nworkers; i++)
			if (cj->copy_to[i])
				forward(ctx, t, i, cj->parity, cj->chunk, 0);
		return;
	}
	struct ragg__agent_tensor *at = t->agent;
	int n = ctx->opts.servers, s = (int)(cj->chunk % (uint32_t)n), parity = cj->parity;
	struct ragg__peer *srv = ragg__server_peer(ctx, s);
	size_t chunk_bytes = t->chunk_elems * sizeof(float);
	size_t owned_bytes = ragg__owned_chunks(t->nchunks, n, s) * chunk_bytes;
	size_t off = cj->chunk * chunk_bytes;
	double *meta = at->acc.mem;

	if (at->s[s].meta_sent != t->round + 1) {
		meta[parity] = cj->total_weight;
		ragg__post_write(srv, &meta[parity], ragg__region_mr(&at->acc, srv), &at->s[s].slot,
		                 (uint64_t)parity * sizeof(double), sizeof(double), 0, 0, 0);
		at->s[s].meta_sent = t->round + 1;
	}
	float *acc = (float *)((char *)at->acc.mem + RAGG_SLOT_META_BYTES + off);
	ragg__post_write(
	    srv, acc, ragg__region_mr(&at->acc, srv), &at->s[s].slot,
	    ragg__slot_offset(parity, owned_bytes, (cj->chunk / (uint32_t)n) * chunk_bytes),
	    cj->out == acc ? ragg__chunk_len(t, cj->chunk) : 0,
	    ragg__imm_encode(parity, t->id, cj->chunk), RAGG_TP_WRITE_IMM, 0);
}
