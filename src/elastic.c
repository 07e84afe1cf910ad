/*
 * Workers that leave a running job: RAGG_ON_WORKER_LOSS=fail|continue
 * (elastic.h, ragg(7)).
 *
 * With continue an agent's round is all or nothing per worker: its sums
 * start once every chunk holds the contribution of every worker still in
 * its group, so a worker that leaves before that counts in none of the
 * round, one that leaves after it in all of it; the (N, s) the agent sends
 * then cover exactly the same workers in every chunk, and the server's
 * division by the sum of N stays the exact sample-weighted mean.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "compiler.h"
#include "core.h"
#include "elastic.h"
#include "handshake.h"
#include "log.h"
#include "privacy/sa_job.h"
#include "settings.h"

int ragg__elastic_init(struct ragg_ctx *ctx)
{
	ctx->on_loss_continue = ragg__opt_long(&ctx->opts, "RAGG_ON_WORKER_LOSS") == 1;
	if (ctx->on_loss_continue && ragg__opt_long(&ctx->opts, "RAGG_DP") == 1) {
		ragg__error(
		    "RAGG_ON_WORKER_LOSS=continue: not supported with RAGG_DP=on (the agents' "
		    "clipping is per worker of a whole group)");
		return RAGG_ERR_CONFIG;
	}
	if (!(ctx->workers_gone = calloc((size_t)ctx->opts.workers, 1)))
		return -ENOMEM;
	/* Room for the news of leavings, which may meet a busy queue. */
	for (int i = 0; ctx->on_loss_continue && i < ctx->npeers; i++) {
		int rc = ragg__queue_reserve(&ctx->peers[i], 4);
		if (rc)
			return rc;
	}
	return 0;
}

void ragg__elastic_free(struct ragg_ctx *ctx)
{
	free(ctx->workers_gone);
	ctx->workers_gone = NULL;
}

static int group(const struct ragg_ctx *ctx)
{
	return ctx->nworkers - ctx->group_left;
}

/* The round's sums, every chunk at once. */
static void start_round(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity)
{
	/* Secure aggregation unmasks the round with its workers first. */
	if (t->sa && ragg__sa_recover_hold(ctx, t, parity))
		return;
	t->agent->complete[parity] = 0;
	t->agent->summing = true;
	for (uint32_t c = 0; c < t->plan.nchunks && !ctx->failed; c++)
		ragg__agent_submit_sum(ctx, t, parity, c);
}

void ragg__elastic_start_round(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity)
{
	start_round(ctx, t, parity);
}

void ragg__elastic_landed(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	if (++at->arrived[parity][c] == (uint32_t)group(ctx) &&
	    ++at->complete[parity] == t->plan.nchunks)
		start_round(ctx, t, parity);
}

/* Worker p is out of the group: what of its round landed is dropped, and
 * a round that now has every survivor's contribution starts. */
static void regroup(struct ragg_ctx *ctx, const struct ragg__peer *p)
{
	for (int k = 0; k < ctx->ntensors; k++) {
		ragg_tensor_t *t = ctx->tensors[k];
		struct ragg__agent_tensor *at = t->agent;
		if (!at || !at->ready)
			continue;
		int parity = (int)(t->round & 1);
		struct ragg__seen *s = &at->seen_grads;
		uint32_t ready = 0;
		for (uint32_t c = 0; c < t->plan.nchunks; c++) {
			if (ragg__seen_has(s, parity, c, p->index)) {
				s->bits[parity][c * s->words + (size_t)p->index / 64] &=
				    ~(1ull << (p->index % 64));
				at->arrived[parity][c]--;
			}
			if (group(ctx) > 0 && at->arrived[parity][c] == (uint32_t)group(ctx))
				ready++;
		}
		at->complete[parity] = ready;
		if (ready == t->plan.nchunks)
			start_round(ctx, t, parity);
	}
}

/* Tell the processes that should know that worker `rank` left; `from`:
 * whom we learned it from (NULL: we saw it ourselves). */
static void note_left(struct ragg_ctx *ctx, int rank, const struct ragg__peer *from)
{
	if (ctx->workers_gone[rank])
		return;
	ctx->workers_gone[rank] = 1;
	ctx->workers_left++;
	ctx->stats.workers_lost++;
	ragg__warn("worker %d left the job (continue): %d workers remain", rank,
	           ctx->opts.workers - ctx->workers_left);
	struct ragg__msg m = { .type = RAGG_MSG_WORKER_LEFT, .count = (uint64_t)rank };
	for (int i = 0; i < ctx->npeers; i++) {
		struct ragg__peer *q = &ctx->peers[i];
		if (!q->connected || q->gone || q->said_bye || q->left || q == from)
			continue;
		/* An agent tells its servers what it saw, and its workers what it
		 * saw or heard; a server tells every agent. */
		if (ctx->opts.role == RAGG_ROLE_AGENT && q->role == RAGG_ROLE_SERVER && from)
			continue;
		if (ctx->opts.role != RAGG_ROLE_WORKER)
			ragg__post_msg(q, &m);
	}
}

/* A round goes on without worker p, which left (`how`). */
static void judge(struct ragg_ctx *ctx, struct ragg__peer *p, const char *how)
{
	p->left_told = true;
	ctx->left_untold--;
	if (!ctx->on_loss_continue) {
		ragg__error(
		    "worker %d %s while the job goes on (RAGG_ON_WORKER_LOSS=fail): the job "
		    "fails",
		    p->rank, how);
		ctx->lost_worker = p->rank + 1;
		ragg__fail_job(ctx, RAGG_ERR_PEER_LOST);
		return;
	}
	note_left(ctx, p->rank, NULL);
	if (ragg__sa_on(&ctx->opts))
		ragg__sa_recover_lost(ctx, p);
	regroup(ctx, p);
}

static void leave_group(struct ragg_ctx *ctx, struct ragg__peer *p)
{
	if (p->left)
		return;
	p->left = true;
	ctx->group_left++;
	ctx->left_untold++;
}

/* Agent: a worker's contribution to the current round has landed. */
static bool agent_round_open(const struct ragg_ctx *ctx)
{
	for (int k = 0; k < ctx->ntensors; k++) {
		const ragg_tensor_t *t = ctx->tensors[k];
		if (!t->agent || !t->agent->ready)
			continue;
		for (uint32_t c = 0; c < t->plan.nchunks; c++)
			if (t->agent->arrived[t->round & 1][c])
				return true;
	}
	return false;
}

bool ragg__elastic_missed(struct ragg_ctx *ctx)
{
	for (int i = 0; i < ctx->nworkers && ctx->left_untold && !ctx->failed; i++) {
		struct ragg__peer *p = &ctx->peers[i];
		if (p->left && !p->left_told)
			judge(ctx, p, p->said_bye ? "finalized" : "was lost");
	}
	return ctx->failed != 0;
}

bool ragg__elastic_agent_gone(struct ragg_ctx *ctx)
{
	if (ctx->failed || ctx->opts.role != RAGG_ROLE_SERVER)
		return false;
	for (int i = 0; i < ctx->npeers; i++) {
		const struct ragg__peer *a = &ctx->peers[i];
		if (!a->said_bye)
			continue;
		int first, n;
		ragg__agent_workers(&ctx->opts, a->rank, &first, &n);
		if (n == 1)
			ragg__error(
			    "worker %d finalized or left while the job goes on (agent %d has no "
			    "workers left): the job fails",
			    first, a->rank);
		else
			ragg__error(
			    "workers %d to %d finalized or left while the job goes on (agent %d "
			    "has no workers left): the job fails",
			    first, first + n - 1, a->rank);
		ctx->lost_worker = first + 1;
		ragg__fail_job(ctx, RAGG_ERR_PEER_LOST);
		return true;
	}
	return false;
}

void ragg__elastic_on_bye(struct ragg_ctx *ctx, struct ragg__peer *p)
{
	if (ctx->failed)
		return;
	if (ctx->opts.role == RAGG_ROLE_SERVER) {
		/* Other agents' contributions wait for one that will not come. */
		if (ragg__server_round_open(ctx))
			ragg__elastic_agent_gone(ctx);
		return;
	}
	if (ctx->opts.role != RAGG_ROLE_AGENT || p->role != RAGG_ROLE_WORKER)
		return;
	leave_group(ctx, p);
	/* A goodbye at the job's end is no loss: it is one once a round
	 * goes on without the worker (now, or at the next landed write). */
	if (agent_round_open(ctx))
		judge(ctx, p, "finalized");
}

bool ragg__elastic_peer_lost(struct ragg_ctx *ctx, struct ragg__peer *p)
{
	if (ctx->opts.role != RAGG_ROLE_AGENT || p->role != RAGG_ROLE_WORKER || !p->connected ||
	    ctx->failed)
		return false;
	if (ctx->on_loss_continue)
		ragg__warn("worker %d (%s) lost: %s", p->rank, p->ep->peer,
		           ragg_strerror(RAGG_ERR_PEER_LOST));
	leave_group(ctx, p);
	judge(ctx, p, "was lost");
	return true;
}

void ragg__elastic_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	bool ok = m->count < (uint64_t)ctx->opts.workers && ctx->on_loss_continue &&
	          (ctx->opts.role == RAGG_ROLE_AGENT ? p->role == RAGG_ROLE_SERVER
	                                             : p->role == RAGG_ROLE_AGENT);
	if (!ok) {
		ragg__error("unexpected news of a worker leaving from %s %d",
		            ragg__role_name(p->role), p->rank);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (!ctx->failed)
		note_left(ctx, (int)m->count, p);
}

/*
 * Joining. A worker that left may come back, or another process take its
 * rank: the agent readies the rank's place when the new connection comes
 * (ragg__elastic_rejoin), and the worker joins the group at a round
 * boundary of every tensor, when no round's sums are under way: from then
 * on each tensor's current round waits for its push too. Each declaration
 * of the newcomer is answered with the round it joins at and the current
 * parameters, sent as those of the round before.
 */
bool ragg__elastic_rejoin(struct ragg_ctx *ctx, struct ragg__peer *p)
{
	if (!ctx->on_loss_continue || ctx->opts.role != RAGG_ROLE_AGENT ||
	    p->role != RAGG_ROLE_WORKER || !p->left || !p->gone || ctx->failed)
		return false;
	if (ragg__sa_on(&ctx->opts)) {
		ragg__error("worker %d connects again: refused under RAGG_SECAGG=on (the others' "
		            "pairwise seeds are with its lost keys); the job goes on without it",
		            p->rank);
		return false;
	}
	p->tp->ops->ep_close(p->ep);
	ragg__hs_free(p);
	p->ep = NULL;
	p->tp = NULL;
	if (p->said_bye)
		ctx->byes--;
	p->connected = p->said_bye = p->gone = false;
	p->settings_seen = 0;
	p->settings_differ = false;
	p->qhead = p->qlen = 0;
	p->join_declared = 0;
	p->join_waiting = false;
	for (int k = 0; k < ctx->ntensors; k++) {
		struct ragg__agent_worker *w = &ctx->tensors[k]->agent->w[p->index];
		memset(&w->params, 0, sizeof(w->params));
		memset(&w->grad, 0, sizeof(w->grad));
		w->grad_seq = 0;
		w->pulls = false;
	}
	ragg__info("worker %d connects again: it joins the job once it has declared its tensors",
	           p->rank);
	return ragg__agreement_send(ctx, p) == 0;
}

/* Answer the newcomer's declaration of t: its slot, the round it joins
 * at, and the current parameters. */
static void join_ack(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t,
                     const struct ragg__msg *m)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__agent_worker *w = &at->w[p->index];
	w->params.rdesc = m->rdesc;
	struct ragg__msg a = { .type = RAGG_MSG_DECLARE_ACK,
		               .tensor = (uint8_t)t->id,
		               .count = t->round + 1,
		               .rdesc = *ragg__region_rdesc(&w->slot, p) };
	ragg__post_msg(p, &a);
	/* As ack_workers (agent.c): a buffer we cannot map, on a transport
	 * that maps ours, copies out of our region. */
	if (at->params.owner == p->tp && !ragg__peer_region_map(p, &w->params, t->plan.bytes) &&
	    w->params.never) {
		struct ragg__msg pa = { .type = RAGG_MSG_PARAMS_AT,
			                .tensor = (uint8_t)t->id,
			                .rdesc = *ragg__region_rdesc(&at->params, p) };
		ragg__post_msg(p, &pa);
		w->pulls = true;
	}
	int parity = (int)((t->round - 1) & 1);
	for (uint32_t c = 0; c < t->plan.nchunks; c++)
		ragg__agent_forward(ctx, t, p->index, parity, c, ragg__plan_chunk_len(&t->plan, c));
	p->join_declared++;
	ragg__info("worker %d joined tensor %d at round %llu", p->rank, t->id,
	           (unsigned long long)t->round);
}

static bool summing(const struct ragg_ctx *ctx)
{
	for (int k = 0; k < ctx->ntensors; k++)
		if (ctx->tensors[k]->agent->summing)
			return true;
	return false;
}

/* The newcomer joins every tensor's group. */
static void join_group(struct ragg_ctx *ctx, struct ragg__peer *p)
{
	p->left = false;
	p->left_told = false;
	p->join_waiting = false;
	ctx->join_waiting--;
	ctx->group_left--;
	if (ctx->workers_gone[p->rank]) {
		ctx->workers_gone[p->rank] = 0;
		ctx->workers_left--;
	}
	for (int k = 0; k < ctx->ntensors; k++) {
		ragg_tensor_t *t = ctx->tensors[k];
		struct ragg__agent_tensor *at = t->agent;
		int parity = (int)(t->round & 1);
		uint32_t ready = 0;
		for (uint32_t c = 0; c < t->plan.nchunks; c++)
			ready += at->arrived[parity][c] == (uint32_t)group(ctx);
		at->complete[parity] = ready;
	}
	ragg__warn("worker %d joined the job: %d workers", p->rank,
	           ctx->opts.workers - ctx->workers_left);
	join_ack(ctx, p, ctx->tensors[0], &p->join_msg);
}

void ragg__elastic_round_done(struct ragg_ctx *ctx)
{
	for (int i = 0; i < ctx->nworkers && ctx->join_waiting && !summing(ctx); i++)
		if (ctx->peers[i].join_waiting)
			join_group(ctx, &ctx->peers[i]);
}

void ragg__elastic_on_declare(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	ragg_tensor_t *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	bool same = t && t->agent->ready && m->tensor == p->join_declared &&
	            m->count == t->plan.count && m->chunk_bytes == t->plan.chunk_bytes &&
	            m->name_hash == t->name_hash && m->rdesc.len && !p->join_waiting;
	if (!same) {
		ragg__error("worker %d rejoining: its declaration of tensor %d is not the job's "
		            "next one",
		            p->rank, m->tensor);
		struct ragg__msg a = { .type = RAGG_MSG_DECLARE_ACK,
			               .tensor = m->tensor,
			               .status = RAGG_ERR_MISMATCH };
		ragg__post_msg(p, &a);
		return;
	}
	if (!p->left) {
		join_ack(ctx, p, t, m);
		return;
	}
	/* Its first: it joins the group at a round boundary. */
	p->join_msg = *m;
	p->join_waiting = true;
	ctx->join_waiting++;
	ragg__elastic_round_done(ctx);
}
