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
#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "compiler.h"
#include "elastic.h"
#include "log.h"
#include "privacy/dp_job.h"
#include "privacy/sa_job.h"
#include "role.h"
#include "stages/stage.h"

/* The worker whose contribution is the job's k-th. */
static int sum_worker(const struct ragg_ctx *ctx, const struct ragg__sum_job *sj, int k)
{
	return sj->nin < ctx->nworkers ? sj->who[k] : k;
}

static void sum_scan(struct ragg__sum_job *sj, int nin, double total);

/*
 * RAGG_ON_NONFINITE=skip, on an engine thread: every worker's weight and
 * part of the chunk are read once more before the sum, and a worker whose
 * weight or gradient is not finite is left out of this chunk's sum and of
 * its total weight N (the others move down in the arrays, which the next
 * round fills anew). When no worker is left the chunk is refused, as it is
 * when the sum of finite parts overflows. Not with encoded rounds,
 * differential privacy or secure aggregation (their contributions are not
 * plain floats, or are accounted for): those refuse as by default.
 */
static void skip_nonfinite(struct ragg__sum_job *sj)
{
	ragg_tensor_t *t = sj->t;
	const struct ragg__plan *pl = &t->plan;
	struct ragg__agent_tensor *at = t->agent;
	size_t n = ragg__plan_chunk_elems(pl, sj->chunk);
	struct ragg_ctx *ctx = t->ctx;
	double total = 0;
	int kept = 0;

	/* Indexed by worker: those out of the group (elastic.h) stay 0. */
	memset(sj->skipped, 0, (size_t)ctx->nworkers);
	for (int k = 0; k < sj->nin; k++) {
		int i = sum_worker(ctx, sj, k);
		const double *meta = at->w[i].slot.mem;
		double w = meta[sj->parity];
		/* 1: the weight is not a finite number >= 0; 2: the gradient. */
		uint8_t bad = !(w >= 0.0 && w <= FLT_MAX)                       ? 1
		              : ragg__first_nonfinite(sj->inputs[k], n) < n ? 2
		                                                            : 0;
		sj->skipped[i] = bad;
		if (bad) {
			sj->nskipped++;
			continue;
		}
		total += w;
		sj->inputs[kept] = sj->inputs[k];
		sj->weights[kept] = (float)w;
		kept++;
	}
	if (kept == 0) {
		sj->poison = -4; /* nobody left to sum: refused */
		return;
	}
	sum_scan(sj, kept, total);
}

/* Runs on an engine thread: the plan's stages on the chunk. */
void ragg__agent_sum(struct ragg__job *job)
{
	struct ragg__sum_job *sj = ragg__container_of(job, struct ragg__sum_job, job);
	ragg_tensor_t *t = sj->t;
	const struct ragg__plan *pl = &t->plan;
	struct ragg_ctx *ctx = t->ctx;
	struct ragg__agent_tensor *at = t->agent;
	double total = 0;

	sj->poison = -1;
	sj->rc = 0;
	sj->nskipped = 0;
	if (ragg__unlikely(at->skip_nonfinite) && !t->dp && !t->sa && !ragg__plan_wcoded(pl, sj->round)) {
		skip_nonfinite(sj);
		return;
	}
	for (int i = 0; i < sj->nin; i++) {
		const double *meta = at->w[sum_worker(ctx, sj, i)].slot.mem;
		double w = meta[sj->parity];
		/* A worker that skipped its own check: NaN, infinite, negative,
		 * or too large for a float. */
		if (!(w >= 0.0 && w <= FLT_MAX) && sj->poison < 0)
			sj->poison = i, sj->poison_at = SIZE_MAX;
		total += w;
		sj->weights[i] = (float)w;
	}
	if (sj->poison >= 0)
		return;
	sum_scan(sj, sj->nin, total);
}

/* The stages over the first nin contributions; a sum that is not finite is
 * refused, naming the worker whose part of the chunk is not. */
static void sum_scan(struct ragg__sum_job *sj, int nin, double total)
{
	ragg_tensor_t *t = sj->t;
	const struct ragg__plan *pl = &t->plan;
	struct ragg_ctx *ctx = t->ctx;
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__stage_ctx sc = {
		.k = ctx->kernels,
		.in = sj->inputs,
		.w = sj->weights,
		.nin = nin,
		.out = sj->out,
		.n = ragg__plan_chunk_elems(pl, sj->chunk),
		.seed = ragg__plan_seed(sj->round, sj->chunk),
		.exact = sj->round == 0,
		.tensor = (uint32_t)t->id,
		.chunk = sj->chunk,
		.round = sj->round,
		.parity = sj->parity,
	};
	ragg__stages_run(pl, &sc, &at->chunk_state[(size_t)sj->chunk * (size_t)pl->nstages]);
	sj->total_weight = sc.has_total ? sc.total : total;
	sj->rc = sc.rc;
	if (ragg__likely(!sc.nonfinite))
		return;
	/* The sum is poisoned: find the culprit (once, on the way to an
	 * error). The chunk goes nowhere: ragg__agent_on_job refuses it. */
	sj->poison = -2;
	/* Encoded contributions are not floats to scan. */
	if (ragg__plan_wcoded(pl, sj->round))
		sj->poison = -3;
	for (int i = 0; i < nin && sj->poison == -2; i++) {
		size_t at_i = ragg__first_nonfinite(sj->inputs[i], sc.n);
		if (at_i < sc.n) {
			sj->poison = i;
			sj->poison_at = at_i;
			break;
		}
	}
}

/* A chunk's sum would carry a NaN or an infinity to the servers: the round
 * is refused, the job fails with RAGG_ERR_NONFINITE naming the worker, and
 * the peers are told why. Nothing reaches the servers' parameters. */
static void refuse_poisoned(struct ragg_ctx *ctx, const struct ragg__sum_job *sj)
{
	const ragg_tensor_t *t = sj->t;
	const struct ragg__plan *pl = &t->plan;
	/* An agent knows a tensor by its declaration order (and name hash);
	 * its round counts the pushes of each worker, from 1. */
	if (sj->poison == -4) {
		ragg__error("tensor %d round %llu chunk %u: every worker's weight or gradient is "
		            "not finite, none is left to sum (RAGG_ON_NONFINITE=skip); the round "
		            "is refused",
		            t->id, (unsigned long long)t->round, sj->chunk);
	} else if (sj->poison == -3) {
		ragg__error("tensor %d round %llu chunk %u: the workers' encoded gradients decode "
		            "to a sum that is not finite; the round is refused",
		            t->id, (unsigned long long)t->round, sj->chunk);
	} else if (sj->poison == -2) {
		ragg__error("tensor %d round %llu chunk %u: the weighted sum overflowed (every "
		            "gradient and weight was finite); the round is refused",
		            t->id, (unsigned long long)t->round, sj->chunk);
	} else {
		int wi = sum_worker(ctx, sj, sj->poison);
		const struct ragg__peer *w = &ctx->peers[wi];
		if (sj->poison_at == SIZE_MAX)
			ragg__error("tensor %d round %llu: worker %d pushed the weight %g, not a "
			            "finite number >= 0; the round is refused",
			            t->id, (unsigned long long)t->round, w->rank,
			            ((const double *)t->agent->w[wi].slot.mem)[sj->parity]);
		else
			ragg__error("tensor %d round %llu: worker %d pushed a non-finite gradient "
			            "(element %zu is %g); the round is refused",
			            t->id, (unsigned long long)t->round, w->rank,
			            ragg__plan_chunk_off(pl, sj->chunk) / sizeof(float) + sj->poison_at,
			            (double)sj->inputs[sj->poison][sj->poison_at]);
	}
	ragg__fail_job(ctx, RAGG_ERR_NONFINITE);
}

/* Runs on an engine thread: the chunk's parameters into every mapped
 * worker buffer, a block at a time so the source is read from memory once
 * for all of them. */
void ragg__agent_fanout(struct ragg__job *job)
{
	struct ragg__fanout_job *fj = ragg__container_of(job, struct ragg__fanout_job, job);
	ragg_tensor_t *t = fj->t;
	const struct ragg__plan *pl = &t->plan;
	size_t off = ragg__plan_chunk_off(pl, fj->chunk);
	const uint8_t *src = (const uint8_t *)t->agent->params.mem + off;
	fj->rc = 0;
	if (fj->decode) {
		/* Our replica advances by exactly what the server's did. */
		const uint8_t *enc =
		    (const uint8_t *)t->agent->params.mem + ragg__plan_pull_off(pl, fj->chunk);
		fj->rc = ragg__codec_decode_accumulate(
		    &pl->pull, enc, ragg__plan_pull_len(pl, fj->chunk), (float *)(uintptr_t)src,
		    ragg__plan_chunk_elems(pl, fj->chunk), 1.0f,
		    ragg__plan_pull_seed(fj->round, fj->chunk));
		if (fj->rc)
			return;
	}
	ragg__copy_fanout(fj->copy_to, t->ctx->nworkers, off, src,
	                  ragg__plan_chunk_len(&t->plan, fj->chunk));
}

/* Our accumulator's chunk c. */
static float *acc_chunk(ragg_tensor_t *t, uint32_t c)
{
	return (float *)((char *)t->agent->acc.mem + RAGG_SLOT_META_BYTES +
	                 ragg__plan_contrib_off(&t->plan, c));
}

/* Where chunk c's stages write: straight into its server's slot when the
 * plan allows it and the slot is mapped here, else our accumulator,
 * written to the server afterwards. */
static float *sum_target(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c)
{
	const struct ragg__plan *pl = &t->plan;
	struct ragg__agent_tensor *at = t->agent;
	int s = ragg__plan_owner(pl, c);
	uint8_t *slot = pl->in_place
	                    ? ragg__peer_region_map(ragg__server_peer(ctx, s), &at->s[s].slot,
	                                            ragg__plan_server_slot_bytes(pl, s))
	                    : NULL;
	if (slot)
		return (float *)(slot + ragg__plan_server_slot_off(pl, parity, c));
	return acc_chunk(t, c);
}

static void on_gradient(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t, int parity,
                        uint32_t c, size_t len)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__sum_job *j = &at->jobs[c];
	const struct ragg__agent_worker *w = &at->w[p->index];
	/* Workers left and not judged yet: this round goes on without them. */
	if (ragg__unlikely(ctx->left_untold) && ragg__elastic_missed(ctx))
		return;
	if (len)
		j->inputs[p->index] =
		    (const float *)((const char *)w->slot.mem +
		                    ragg__plan_worker_slot_off(&t->plan, parity, c));
	else
		j->inputs[p->index] =
		    (const float *)(w->grad.at + ragg__plan_chunk_off(&t->plan, c));
	if (c == 0)
		ragg__sa_test_dump(ctx, t, p->rank, j->inputs[p->index]);
	if (t->sa)
		ragg__sa_agent_landed(t, p->index, w->slot.mem);
	else if (t->dp) {
		ragg__dp_agent_landed(ctx, t, p->index, parity);
		ragg__dp_agent_chunk_landed(ctx, t, p->index, parity, c, j->inputs[p->index]);
	}
	ragg__seen_mark(&at->seen_grads, parity, c, p->index);
	if (ragg__unlikely(ctx->on_loss_continue)) {
		ragg__elastic_landed(ctx, t, parity, c);
		return;
	}
	if (++at->arrived[parity][c] < (uint32_t)ctx->nworkers)
		return;
	ragg__agent_submit_sum(ctx, t, parity, c);
}

void ragg__agent_submit_sum(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__sum_job *j = &at->jobs[c];
	at->arrived[parity][c] = 0;
	ragg__seen_clear(&at->seen_grads, parity, c);
	j->parity = parity;
	j->round = t->round;
	j->out = sum_target(ctx, t, parity, c);
	j->nin = ctx->nworkers;
	if (ragg__unlikely(ctx->group_left && ctx->on_loss_continue)) {
		/* Only the group's contributions, in worker order. */
		if (!j->who && !(j->who = calloc((size_t)ctx->nworkers, sizeof(*j->who)))) {
			ragg__fail(ctx, -ENOMEM);
			return;
		}
		j->nin = 0;
		for (int i = 0; i < ctx->nworkers; i++)
			if (!ctx->peers[i].left ||
			    (t->sa && ragg__sa_recover_counted(t, parity, i))) {
				j->inputs[j->nin] = j->inputs[i];
				j->who[j->nin++] = i;
			}
	}
	int rc = ragg__engine_submit(ctx->engine, &j->job);
	if (rc)
		ragg__fail(ctx, rc);
	else
		ctx->jobs_out++;
}

/* Chunk c's parameters to worker i with a write of len bytes (0: they
 * are in its buffer already). */
void ragg__agent_forward(struct ragg_ctx *ctx, ragg_tensor_t *t, int i, int parity, uint32_t c,
                         size_t len)
{
	struct ragg__agent_tensor *at = t->agent;
	size_t off = ragg__plan_chunk_off(&t->plan, c);
	if (at->w[i].pulls) {
		struct ragg__msg m = { .type = RAGG_MSG_PARAMS_READY,
			               .tensor = (uint8_t)t->id,
			               .count = ragg__imm_encode(parity, t->id, c) };
		ragg__post_msg(&ctx->peers[i], &m);
		return;
	}
	ragg__post_write(&ctx->peers[i], (char *)at->params.mem + off,
	                 ragg__region_mr(&at->params, &ctx->peers[i]), &at->w[i].params.rdesc, off,
	                 len, ragg__imm_encode(parity, t->id, c), RAGG_TP_WRITE_IMM, 0);
}

static void on_parameters(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t,
                          int parity, uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__fanout_job *f = &at->fanout[c];
	int copies = 0;
	ragg__seen_mark(&at->seen_params, parity, c, p->index);
	/* An encoded update: an engine thread applies it to our parameters,
	 * then copies them; the workers hear of the chunk after that. */
	f->decode = ragg__plan_pull_coded(&t->plan, t->round);
	f->round = t->round;
	for (int i = 0; i < ctx->nworkers; i++) {
		if (ragg__unlikely(ctx->peers[i].left)) {
			f->copy_to[i] = NULL; /* out of the group (elastic.h) */
			continue;
		}
		f->copy_to[i] =
		    ragg__peer_region_map(&ctx->peers[i], &at->w[i].params, t->plan.bytes);
		if (f->copy_to[i])
			copies++;
		else if (!f->decode)
			ragg__agent_forward(ctx, t, i, parity, c,
			                    ragg__plan_chunk_len(&t->plan, c));
	}
	if (copies || f->decode) {
		f->parity = parity;
		int rc = ragg__engine_submit(ctx->engine, &f->job);
		if (rc)
			ragg__fail(ctx, rc);
		else
			ctx->jobs_out++;
	}
	/* The chunk's noise for the next round, queued behind its fan-out. */
	if (t->dp)
		ragg__dp_agent_summed(ctx, t, c, t->round);
	if (++at->params_landed == t->plan.nchunks) {
		at->params_landed = 0;
		for (size_t k = 0; k < t->plan.nchunks; k++)
			ragg__seen_clear(&at->seen_params, parity, k);
		t->round++;
		ctx->stats.rounds++;
		at->summing = false;
		if (ragg__unlikely(ctx->join_waiting))
			ragg__elastic_round_done(ctx);
	}
}

void ragg__agent_on_landed(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len)
{
	int id = ragg__imm_tensor(imm), parity = ragg__imm_parity(imm);
	uint32_t c = ragg__imm_chunk(imm);
	ragg_tensor_t *t = id < ctx->ntensors ? ctx->tensors[id] : NULL;
	bool from_worker = p->role == RAGG_ROLE_WORKER;
	/* Length 0: the data is in place, in the worker's mapped buffer or
	 * (from a server) in our parameter region. */
	bool ready = t && t->agent->ready;
	struct ragg__expect e = {
		.plan = ready ? &t->plan : NULL,
		.parity = t ? (int)(t->round & 1) : 0,
		/* A server writes only the chunks it owns. */
		.owner = from_worker ? -1 : p->index,
		/* Nothing counts after a worker's goodbye. */
		.sender_ok = !p->said_bye,
		/* Once per sender, chunk and round. */
		.room = ready && c < t->plan.nchunks &&
		        !ragg__seen_has(from_worker ? &t->agent->seen_grads : &t->agent->seen_params,
		                        parity, c, p->index),
		.in_place_ok = !from_worker || (t && t->agent->w[p->index].grad.at),
		/* Workers' contributions are encoded (after round 0). */
		.wcoded = from_worker && t && ragg__plan_wcoded(&t->plan, t->round),
		/* A server's update is, with RAGG_COMPRESS_PULL. */
		.pull_coded = !from_worker && t && ragg__plan_pull_coded(&t->plan, t->round),
	};
	const char *why;
	if (ragg__plan_check_write(&e, c, parity, len, &why)) {
		ragg__write_rejected(ctx, p, imm, len, why);
		return;
	}
	if (from_worker)
		on_gradient(ctx, p, t, parity, c, len);
	else
		on_parameters(ctx, p, t, parity, c);
}

/* A chunk's sum is ready: send N (once per server and round) and the sum
 * (length 0 where the stages wrote it into the server's slot). A fan-out
 * is done: tell the workers it went to. */
/* RAGG_ON_NONFINITE=skip: a worker's contribution left out is logged and
 * counted once per tensor and round, whatever number of its chunks. */
static void log_skipped(struct ragg_ctx *ctx, const struct ragg__sum_job *sj)
{
	const ragg_tensor_t *t = sj->t;
	struct ragg__agent_tensor *at = t->agent;
	for (int i = 0; i < ctx->nworkers; i++) {
		if (!sj->skipped[i] || at->w[i].skipped_round == sj->round + 1)
			continue;
		at->w[i].skipped_round = sj->round + 1;
		ctx->stats.contributions_skipped++;
		ragg__warn("tensor %d round %llu: worker %d pushed a %s that is not finite; its "
		           "contribution is left out of the round (RAGG_ON_NONFINITE=skip)",
		           t->id, (unsigned long long)sj->round, ctx->peers[i].rank,
		           sj->skipped[i] == 1 ? "weight" : "gradient");
	}
}

void ragg__agent_on_job(struct ragg_ctx *ctx, struct ragg__job *job)
{
	if (ragg__dp_job_reaped(job))
		return;
	if (job->fn == ragg__agent_fanout) {
		struct ragg__fanout_job *fj = ragg__container_of(job, struct ragg__fanout_job, job);
		if (fj->rc) {
			ragg__error("tensor \"%s\" chunk %u: a server's update does not decode "
			            "under RAGG_COMPRESS_PULL=%s: %s",
			            fj->t->name, fj->chunk, fj->t->plan.pull.codec->name,
			            ragg_strerror(fj->rc));
			ragg__fail(ctx, fj->rc);
			return;
		}
		for (int i = 0; i < ctx->nworkers; i++)
			if (fj->copy_to[i])
				ragg__agent_forward(ctx, fj->t, i, fj->parity, fj->chunk, 0);
			else if (fj->decode && !ctx->peers[i].left)
				ragg__agent_forward(ctx, fj->t, i, fj->parity, fj->chunk,
				                    ragg__plan_chunk_len(&fj->t->plan, fj->chunk));
		return;
	}
	struct ragg__sum_job *sj = ragg__container_of(job, struct ragg__sum_job, job);
	if (ragg__unlikely(sj->poison != -1)) {
		refuse_poisoned(ctx, sj);
		return;
	}
	if (ragg__unlikely(sj->nskipped))
		log_skipped(ctx, sj);
	ragg_tensor_t *t = sj->t;
	const struct ragg__plan *pl = &t->plan;
	struct ragg__agent_tensor *at = t->agent;
	int s = ragg__plan_owner(pl, sj->chunk), parity = sj->parity;
	struct ragg__peer *srv = ragg__server_peer(ctx, s);
	double *meta = at->acc.mem;

	if (sj->rc) {
		ragg__error("tensor \"%s\" chunk %u: a worker's contribution does not decode "
		            "as %s (RAGG_COMPRESS, RAGG_WORKER_COMPRESS): %s",
		            t->name, sj->chunk, pl->wcodec.codec ? pl->wcodec.codec->name : "floats",
		            ragg_strerror(sj->rc));
		ragg__fail(ctx, sj->rc);
		return;
	}
	if (at->s[s].meta_sent != t->round + 1) {
		meta[parity] = sj->total_weight;
		ragg__post_write(srv, &meta[parity], ragg__region_mr(&at->acc, srv),
		                 &at->s[s].slot.rdesc, (uint64_t)parity * sizeof(double),
		                 sizeof(double), 0, 0, 0);
		at->s[s].meta_sent = t->round + 1;
	}
	float *acc = acc_chunk(t, sj->chunk);
	ragg__post_write(srv, acc, ragg__region_mr(&at->acc, srv), &at->s[s].slot.rdesc,
	                 ragg__plan_server_slot_off(pl, parity, sj->chunk),
	                 sj->out == acc
	                     ? ragg__plan_contrib_len(pl, sj->chunk, ragg__plan_coded(pl, sj->round))
	                     : 0,
	                 ragg__imm_encode(parity, t->id, sj->chunk), RAGG_TP_WRITE_IMM, 0);
}

const struct ragg__role_ops ragg__agent_role = {
	.name = "agent",
	.on_msg = ragg__agent_on_msg,
	.on_landed = ragg__agent_on_landed,
	.on_job = ragg__agent_on_job,
	.on_peer_mapped = ragg__agent_on_peer_mapped,
};
