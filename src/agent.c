/*
 * The agent: workers write gradients into its slots; once every worker's
 * chunk c of a round has landed, an engine thread forms s = sum_i n_i*g_i
 * and N = sum_i n_i, and the agent writes (N, s) into its slot on the server
 * that owns c (server c mod n). Parameters that servers write back into the
 * agent's parameter region are forwarded to each of its workers.
 *
 * This half: a tensor's declaration (every worker's, then every server's
 * answer) and the control messages that tell where buffers are, so that a
 * round can work in place where memory is shared (agent_round.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "stale.h"
#include "settings.h"
#include "compiler.h"
#include "log.h"
#include "privacy/sa_job.h"
#include "stages/stage.h"

void ragg__agent_tensor_free(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	struct ragg__agent_tensor *at = t->agent;
	if (at->w)
		for (int i = 0; i < ctx->nworkers; i++)
			if (at->w[i].slot.mem)
				ragg__region_free(ctx, &at->w[i].slot);
	if (at->params.mem)
		ragg__region_free(ctx, &at->params);
	if (at->acc.mem)
		ragg__region_free(ctx, &at->acc);
	for (size_t c = 0; c < t->plan.nchunks; c++) {
		if (at->jobs) {
			free(at->jobs[c].inputs);
			free(at->jobs[c].weights);
			free(at->jobs[c].who);
			free(at->jobs[c].skipped);
		}
		if (at->fanout)
			free(at->fanout[c].copy_to);
	}
	for (int i = 0; i < t->plan.nstages; i++)
		if (at->state[i])
			ragg__engine_free(ctx->engine, at->state[i], at->state_bytes[i]);
	free(at->chunk_state);
	free(at->jobs);
	free(at->fanout);
	free(at->w);
	free(at->s);
	free(at->arrived[0]);
	free(at->arrived[1]);
	ragg__seen_free(&at->seen_grads);
	ragg__seen_free(&at->seen_params);
	ragg__decl_free(&at->decl);
	free(at);
	t->agent = NULL;
}

static const struct ragg__region *worker_slot(ragg_tensor_t *t, int i)
{
	return &t->agent->w[i].slot;
}

static void ack_workers(struct ragg_ctx *ctx, ragg_tensor_t *t, int status)
{
	struct ragg__agent_tensor *at = t->agent;
	ragg__role_ack(ctx, t, ctx->nworkers, status, worker_slot);
	for (int i = 0; i < ctx->nworkers; i++) {
		struct ragg__peer *p = &ctx->peers[i];
		/* A worker buffer we cannot map, on a transport that maps ours:
		 * the worker copies out of our region, in parallel with the
		 * others, instead of our writing into each in turn (and into
		 * private memory, which needs ptrace permission). */
		if (!status && at->params.owner == p->tp &&
		    !ragg__peer_region_map(p, &at->w[i].params, t->plan.bytes) &&
		    at->w[i].params.never) {
			struct ragg__msg pa = { .type = RAGG_MSG_PARAMS_AT,
				                .tensor = (uint8_t)t->id,
				                .rdesc = *ragg__region_rdesc(&at->params, p) };
			ragg__post_msg(p, &pa);
			at->w[i].pulls = true;
		}
	}
}

static int setup_memory(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	struct ragg__agent_tensor *at = t->agent;
	const struct ragg__plan *pl = &t->plan;
	int rc;

	for (int i = 0; i < ctx->nworkers; i++)
		if ((rc = ragg__region_alloc(ctx, ragg__plan_worker_slot_bytes(pl), pl->chunk_bytes,
		                             &at->w[i].slot)))
			return rc;
	/* Our parameter region; the accumulator: META (N by parity), then sums. */
	if ((rc = ragg__region_alloc(ctx, ragg__plan_params_region_bytes(pl), pl->chunk_bytes,
	                             &at->params)) ||
	    (rc = ragg__region_alloc(ctx, RAGG_SLOT_META_BYTES + ragg__plan_contrib_bytes(pl),
	                             pl->chunk_bytes,
	                             &at->acc)))
		return rc;
	at->jobs = calloc(pl->nchunks, sizeof(*at->jobs));
	at->fanout = calloc(pl->nchunks, sizeof(*at->fanout));
	at->arrived[0] = calloc(pl->nchunks, sizeof(uint32_t));
	at->arrived[1] = calloc(pl->nchunks, sizeof(uint32_t));
	at->chunk_state = calloc(pl->nchunks * (size_t)pl->nstages, sizeof(void *));
	if (!at->jobs || !at->fanout || !at->arrived[0] || !at->arrived[1] || !at->chunk_state)
		return -ENOMEM;
	if ((rc = ragg__seen_init(&at->seen_grads, pl->nchunks, ctx->nworkers)) ||
	    (rc = ragg__seen_init(&at->seen_params, pl->nchunks, ctx->opts.servers)))
		return rc;
	/* Each stage's per-chunk state, first touched by the thread that
	 * runs the chunk (piece c belongs to thread c, as the jobs' hint). */
	for (int i = 0; i < pl->nstages; i++) {
		const struct ragg__stage *st = pl->stages[i].stage;
		size_t per = st->state_bytes ? st->state_bytes(pl->chunk_bytes) : 0;
		if (!per)
			continue;
		at->state_bytes[i] = per * pl->nchunks;
		if (!(at->state[i] = ragg__engine_alloc(ctx->engine, at->state_bytes[i], per)))
			return -ENOMEM;
		for (size_t c = 0; c < pl->nchunks; c++)
			at->chunk_state[c * (size_t)pl->nstages + (size_t)i] =
			    (uint8_t *)at->state[i] + c * per;
	}
	for (size_t c = 0; c < pl->nchunks; c++) {
		struct ragg__sum_job *j = &at->jobs[c];
		j->t = t;
		j->chunk = (uint32_t)c;
		j->job.fn = ragg__agent_sum;
		/* The same thread always sums the same chunk: it first touched
		 * that chunk's memory, which is then local to it. */
		j->job.thread_hint = (int)c;
		j->inputs = calloc((size_t)ctx->nworkers, sizeof(*j->inputs));
		j->weights = calloc((size_t)ctx->nworkers, sizeof(*j->weights));
		if (at->skip_nonfinite &&
		    !(j->skipped = calloc((size_t)ctx->nworkers, sizeof(*j->skipped))))
			return -ENOMEM;
		struct ragg__fanout_job *f = &at->fanout[c];
		f->t = t;
		f->chunk = (uint32_t)c;
		f->job.fn = ragg__agent_fanout;
		f->job.thread_hint = (int)c;
		f->copy_to = calloc((size_t)ctx->nworkers, sizeof(*f->copy_to));
		if (!j->inputs || !j->weights || !f->copy_to)
			return -ENOMEM;
	}
	/* Queues hold a whole round: a forward of every chunk to each worker,
	 * every owned chunk plus N to each server. */
	for (int i = 0; i < ctx->nworkers; i++)
		if ((rc = ragg__queue_reserve(&ctx->peers[i], (uint32_t)pl->nchunks + 2)))
			return rc;
	for (int s = 0; s < ctx->opts.servers; s++)
		if ((rc = ragg__queue_reserve(ragg__server_peer(ctx, s),
		                              (uint32_t)ragg__plan_owned(pl, s) + 3)))
			return rc;
	return 0;
}

/* The declaration from the workers, agent's part (role.h). */
static int agent_tensor_init(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	struct ragg__agent_tensor *at = calloc(1, sizeof(*at));
	if (!(t->agent = at) || !(at->w = calloc((size_t)ctx->nworkers, sizeof(*at->w))) ||
	    !(at->s = calloc((size_t)ctx->opts.servers, sizeof(*at->s))))
		return -ENOMEM;
	at->skip_nonfinite = ragg__opt_long(&ctx->opts, "RAGG_ON_NONFINITE") == 1;
	return 0;
}

static struct ragg__decl *agent_decl(ragg_tensor_t *t)
{
	return &t->agent->decl;
}

/* A worker's declaration carries its parameter buffer. */
static int agent_keep(struct ragg_ctx *ctx, ragg_tensor_t *t, int i, const struct ragg__msg *m)
{
	(void)ctx;
	if (!m->rdesc.len)
		return RAGG_ERR_PROTO;
	t->agent->w[i].params.rdesc = m->rdesc;
	return 0;
}

/* Every worker declared. A failure here still goes through the servers,
 * which tell every agent: all workers of the job then learn of it, not
 * just ours. */
static void agent_declared(struct ragg_ctx *ctx, ragg_tensor_t *t, const struct ragg__msg *m)
{
	struct ragg__agent_tensor *at = t->agent;
	int rc;
	if (at->decl.mismatch)
		at->decl.status = RAGG_ERR_MISMATCH;
	else if (!at->decl.status && (rc = setup_memory(ctx, t)))
		at->decl.status = rc;
	for (int s = 0; s < ctx->opts.servers; s++) {
		struct ragg__msg d = *m;
		d.status = at->decl.status;
		if (!at->decl.status)
			d.rdesc = *ragg__region_rdesc(&at->params, ragg__server_peer(ctx, s));
		else
			d.rdesc.len = 0;
		ragg__post_msg(ragg__server_peer(ctx, s), &d);
	}
}

static const struct ragg__decl_ops agent_decl_ops = {
	.sender = "worker",
	.tensor_init = agent_tensor_init,
	.decl = agent_decl,
	.keep = agent_keep,
	.complete = agent_declared,
};

static void on_server_ack(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	ragg_tensor_t *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	if (!t || t->agent->decl.declared < ctx->nworkers || t->agent->s[p->index].answered ||
	    t->agent->server_acks == ctx->opts.servers) {
		ragg__error("unexpected declaration answer from server %d", p->rank);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	struct ragg__agent_tensor *at = t->agent;
	if (m->status && !at->decl.status)
		at->decl.status = m->status;
	at->s[p->index].slot.rdesc = m->rdesc;
	at->s[p->index].answered = true;
	if (++at->server_acks < ctx->opts.servers)
		return;
	at->ready = at->decl.status == 0;
	ack_workers(ctx, t, at->decl.status);
}

/* Map a worker's announced gradient buffer; tell it once it is. */
void ragg__agent_map_grad(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t)
{
	struct ragg__agent_worker *w = &t->agent->w[p->index];
	void *m;
	int rc = ragg__peer_map(p, &w->grad.rdesc, t->plan.bytes, &m);
	if (rc && !ragg__peer_map_final(rc))
		return;
	w->grad.pending = false;
	if (rc) {
		ragg__debug("worker %d's gradient buffer stays remote: %s", p->rank,
		            ragg_strerror(rc));
		return;
	}
	w->grad.at = m;
	struct ragg__msg a = { .type = RAGG_MSG_GRAD_MAPPED,
		               .tensor = (uint8_t)t->id,
		               .count = w->grad_seq };
	ragg__post_msg(p, &a);
}

static void on_grad_at(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	ragg_tensor_t *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	if (!t || !t->agent->ready || m->count <= t->agent->w[p->index].grad_seq) {
		ragg__error("unexpected gradient buffer announcement from worker %d", p->rank);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	/* Its pushes copy until we answer, so the old mapping is done with. */
	struct ragg__agent_worker *w = &t->agent->w[p->index];
	w->grad_seq = m->count;
	w->grad.pending = true;
	w->grad.rdesc = m->rdesc;
	w->grad.at = NULL;
	ragg__agent_map_grad(ctx, p, t);
}

/* The transport answered our mapping questions to worker p: finish the
 * gradient mappings that waited, so its next push is in place. */
void ragg__agent_on_peer_mapped(struct ragg_ctx *ctx, struct ragg__peer *p)
{
	if (p->role != RAGG_ROLE_WORKER)
		return;
	for (int k = 0; k < ctx->ntensors; k++)
		if (ctx->tensors[k]->agent->w[p->index].grad.pending)
			ragg__agent_map_grad(ctx, p, ctx->tensors[k]);
}

void ragg__agent_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_DECLARE &&
	    (p->left || p->join_declared))
		ragg__elastic_on_declare(ctx, p, m); /* a worker rejoining (elastic.h) */
	else if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_DECLARE)
		ragg__role_on_declare(ctx, p, m, ctx->nworkers, &agent_decl_ops);
	else if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_GRAD_AT)
		on_grad_at(ctx, p, m);
	else if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_SA_KEY)
		ragg__sa_agent_on_key(ctx, p, m);
	else if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_SA_RECOVER)
		ragg__sa_recover_agent_msg(ctx, p, m);
	else if (p->role == RAGG_ROLE_SERVER && m->type == RAGG_MSG_DECLARE_ACK)
		on_server_ack(ctx, p, m);
	else if (m->type == RAGG_MSG_VERSION)
		ragg__stale_on_msg(ctx, p, m);
	else {
		ragg__error("unexpected control message %d from %s", m->type, p->ep->peer);
		ragg__fail(ctx, RAGG_ERR_PROTO);
	}
}
