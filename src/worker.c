/*
 * The worker's side of a round. A push writes the weight into the agent's
 * slot (no immediate), then every chunk with an immediate; the agent learns
 * of each chunk from its completion queue, and the weight has landed before
 * the first chunk is reported because writes on one endpoint land in order.
 * Only the last write is signalled: its completion means the gradient buffer
 * may be reused. A pull waits until every chunk of the round's parameters
 * has landed in the declared buffer.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "core.h"
#include "log.h"
#include "privacy/dp_job.h"
#include "privacy/sa_job.h"
#include "role.h"
#include "settings.h"
#include "stale.h"

static int check_tensor(ragg_tensor_t *t)
{
	if (!t)
		return -EINVAL;
	if (t->ctx->failed)
		return t->ctx->failed;
	return 0;
}

/* The gradient buffer is registered on first use and kept while the caller
 * passes the same one, which is the normal case. One in shared memory is
 * announced to the agent, ahead of the push's writes, so it can map it. */
static int grad_mr(ragg_tensor_t *t, const float *grad, struct ragg_tp_mr **mr)
{
	struct ragg__peer *agent = &t->ctx->peers[0];
	const struct ragg__tp *tp = agent->tp;
	if (grad == t->worker.params) {
		*mr = t->worker.params_mr;
		return 0;
	}
	if (grad != t->worker.grad || !t->worker.grad_mr) {
		if (t->worker.grad_mr)
			tp->ops->mr_dereg(t->worker.grad_mr);
		t->worker.grad_mr = NULL;
		t->worker.grad = NULL;
		int rc = tp->ops->mr_reg(tp->dev, (void *)(uintptr_t)grad, t->plan.bytes,
		                         &t->worker.grad_mr, &t->worker.grad_rdesc);
		if (rc) {
			ragg__error("registering the gradient buffer (%zu bytes): %s",
			            t->plan.bytes, ragg_strerror(rc));
			return rc;
		}
		t->worker.grad = grad;
		/* Whatever the agent maps now, it is not this registration. */
		t->worker.grad_mapped = 0;
		t->worker.grad_announced = false;
		if (ragg__alloc_shared(t->ctx, grad, t->plan.bytes)) {
			struct ragg__msg m = { .type = RAGG_MSG_GRAD_AT,
				               .tensor = (uint8_t)t->id,
				               .count = ++t->worker.grad_seq,
				               .rdesc = t->worker.grad_rdesc };
			if ((rc = ragg__post_msg(agent, &m)))
				return rc;
			t->worker.grad_announced = true;
		}
	}
	*mr = t->worker.grad_mr;
	return 0;
}

/* The agent maps the buffer: each chunk's write carries no data, only
 * the immediate that says the chunk is ready in place. */
static bool push_in_place(const ragg_tensor_t *t, const float *grad)
{
	return grad == t->worker.grad && t->worker.grad_announced &&
	       t->worker.grad_mapped == t->worker.grad_seq;
}

/* The worker hop's encoding of chunk c of grad into our encoding buffer,
 * with this worker's error feedback (RAGG_COMPRESS, or
 * RAGG_WORKER_COMPRESS). A push encodes each chunk just before it writes
 * it, so the agent works on chunk c while we encode chunk c + 1. */
static int encode_chunk(ragg_tensor_t *t, const float *grad, size_t c)
{
	const struct ragg__plan *pl = &t->plan;
	size_t first = ragg__plan_chunk_off(pl, c) / sizeof(float);
	ssize_t r = ragg__codec_encode(
	    &pl->wcodec, grad + first, ragg__plan_chunk_elems(pl, c),
	    (char *)t->worker.enc + ragg__plan_wcontrib_off(pl, c), pl->wstride,
	    t->worker.resid ? t->worker.resid + first : NULL, ragg__plan_seed(t->round, c));
	if (r >= 0)
		return 0;
	ragg__error("tensor \"%s\": encoding chunk %zu: %s", t->name, c, ragg_strerror((int)r));
	return (int)r;
}

static int post_push(ragg_tensor_t *t, const float *grad, double weight)
{
	struct ragg_ctx *ctx = t->ctx;
	struct ragg__peer *agent = &ctx->peers[0];
	struct ragg_tp_mr *mr;
	int parity = (int)(t->round & 1);
	int rc;

	if (t->worker.push_inflight || t->worker.pushed) {
		ragg__error("tensor \"%s\": pushed already this round; pull before pushing again",
		            t->name);
		return -EBUSY;
	}
	if (!grad || !(weight >= 0.0) || !isfinite(weight)) {
		ragg__error("tensor \"%s\": push needs a gradient and a finite weight >= 0",
		            t->name);
		return -EINVAL;
	}
	/* A NaN or an infinity would make every replica's parameters NaN.
	 * The agents' sums always catch it (and fail the job); with
	 * RAGG_CHECK_GRADIENT=on it is refused here, before anything is
	 * sent, at the cost of one read of the gradient. */
	size_t n = t->plan.bytes / sizeof(float), bad = n;
	if (ctx->check_gradient)
		bad = ragg__first_nonfinite(grad, n);
	if (ragg__unlikely(bad < n)) {
		ragg__error("tensor \"%s\": the gradient is not finite (element %zu of %zu is %g); "
		            "nothing was pushed",
		            t->name, bad, n, (double)grad[bad]);
		return RAGG_ERR_NONFINITE;
	}
	if (t->dp && (rc = ragg__dp_budget_check(t)))
		return rc;
	const struct ragg__plan *pl = &t->plan;
	bool coded = ragg__plan_wcoded(pl, t->round);
	/* Secure aggregation: the masked encoding travels, and its record. */
	const void *sa_src = NULL;
	if (t->sa && t->round > 0) {
		if ((rc = ragg__sa_worker_push(t, grad, weight, parity, &sa_src, &mr)))
			return rc;
	} else if (coded) {
		mr = t->worker.enc_mr;
	} else if ((rc = grad_mr(t, grad, &mr)))
		return rc;
	/* Asynchronous rounds: data only, then the push's version message. */
	bool async = ragg__stale_round(t, t->round);
	bool in_place = !coded && !sa_src && !async && push_in_place(t, grad);
	/* Under secure aggregation the weight travels masked in the record. */
	t->worker.weight_src[parity] = sa_src ? 0.0 : weight;
	rc = ragg__post_write(agent, &t->worker.weight_src[parity], t->worker.weight_mr,
	                      &t->worker.agent_slot, (uint64_t)parity * sizeof(double),
	                      sizeof(double), 0, 0, 0);
	if (!rc && t->dp && !t->sa)
		rc = ragg__dp_worker_push(t, grad, weight, parity);
	for (size_t c = 0; !rc && c < pl->nchunks; c++) {
		bool last = c + 1 == pl->nchunks;
		/* Encoding cannot fail with the plan's sizes; if it did, part
		 * of the push has left, and the job cannot go on. */
		if (coded && !sa_src && (rc = encode_chunk(t, grad, c))) {
			ragg__fail(ctx, rc);
			break;
		}
		/* Secure aggregation masks the next chunks meanwhile. */
		if (sa_src && (rc = ragg__sa_worker_chunk(t, c))) {
			ragg__fail(ctx, rc);
			break;
		}
		const char *src = sa_src  ? (const char *)sa_src + ragg__plan_chunk_off(pl, c)
		                  : coded ? (const char *)t->worker.enc + ragg__plan_wcontrib_off(pl, c)
		                          : (const char *)grad + ragg__plan_chunk_off(pl, c);
		rc = ragg__post_write(
		    agent, src, mr, &t->worker.agent_slot, ragg__plan_worker_slot_off(pl, parity, c),
		    in_place ? 0 : ragg__plan_wcontrib_len(pl, c, coded),
		    ragg__imm_encode(parity, t->id, (uint32_t)c),
		    (async ? 0 : RAGG_TP_WRITE_IMM) | (last ? RAGG_TP_WRITE_SIGNAL : 0),
		    (uint64_t)t->id);
	}
	if (sa_src) {
		int rc2 = ragg__sa_worker_masked(t);
		if (!rc && rc2)
			ragg__fail(ctx, rc = rc2);
	}
	if (!rc && async)
		rc = ragg__stale_worker_pushed(t);
	if (rc)
		return rc;
	t->worker.push_inflight = 1;
	t->worker.pushed = true;
	return 0;
}

static bool push_done(void *arg)
{
	return ((ragg_tensor_t *)arg)->worker.push_inflight == 0;
}

static bool pull_done(void *arg)
{
	ragg_tensor_t *t = arg;
	return t->worker.landed[t->round & 1] == t->plan.nchunks;
}

void ragg__worker_on_write_done(struct ragg_ctx *ctx, uint64_t cookie)
{
	if (cookie < (uint64_t)ctx->ntensors)
		ctx->tensors[cookie]->worker.push_inflight = 0;
}

static void copy_chunk(ragg_tensor_t *t, uint32_t c)
{
	size_t off = ragg__plan_chunk_off(&t->plan, c);
	void *dst = t->worker.params;
	ragg__copy_fanout(&dst, 1, off, t->worker.agent_params.at + off,
	                  ragg__plan_chunk_len(&t->plan, c));
	t->worker.landed[t->round & 1]++;
}

/* Map the agent's parameter region, then copy what was announced so far. */
static void map_agent_params(ragg_tensor_t *t)
{
	struct ragg__peer *agent = &t->ctx->peers[0];
	void *m;
	int rc = ragg__peer_map(agent, &t->worker.agent_params.rdesc, t->plan.bytes, &m);
	if (rc && !ragg__peer_map_final(rc))
		return;
	t->worker.agent_params.pending = false;
	if (rc) {
		ragg__error("tensor \"%s\": cannot map the agent's parameter region: %s", t->name,
		            ragg_strerror(rc));
		ragg__fail(t->ctx, rc);
		return;
	}
	t->worker.agent_params.at = m;
	for (uint32_t i = 0; i < t->worker.ncopy_pending; i++)
		copy_chunk(t, t->worker.copy_pending[i]);
	t->worker.ncopy_pending = 0;
}

/* Chunk `imm` of a round's parameters is ready: written into our buffer
 * (len bytes, or 0 where the agent copied it in place), or, with `pull`,
 * in the agent's region for us to copy. */
static void params_ready(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len,
                         bool pull)
{
	int id = ragg__imm_tensor(imm), parity = ragg__imm_parity(imm);
	uint32_t c = ragg__imm_chunk(imm);
	ragg_tensor_t *t = id < ctx->ntensors ? ctx->tensors[id] : NULL;
	/* Length 0: the agent copied them into our buffer in place; a chunk
	 * to copy ourselves needs the agent's region announced first. */
	struct ragg__expect e = {
		.plan = t ? &t->plan : NULL,
		.parity = t ? (int)(t->round & 1) : 0,
		.owner = -1,
		.sender_ok = !pull || (t && t->worker.agent_params.rdesc.len),
		.room = t && t->worker.landed[parity] + t->worker.ncopy_pending < t->plan.nchunks,
		.in_place_ok = true,
	};
	const char *why;
	if (ragg__plan_check_write(&e, c, parity, len, &why)) {
		ragg__write_rejected(ctx, p, imm, len, why);
		return;
	}
	if (!pull) {
		t->worker.landed[parity]++;
		return;
	}
	if (t->worker.agent_params.at) {
		copy_chunk(t, c);
		return;
	}
	/* Copied once the mapping is answered (ragg__worker_on_peer_mapped). */
	t->worker.copy_pending[t->worker.ncopy_pending++] = c;
}

void ragg__worker_on_peer_mapped(struct ragg_ctx *ctx, struct ragg__peer *p)
{
	(void)p;
	for (int k = 0; k < ctx->ntensors; k++)
		if (ctx->tensors[k]->worker.agent_params.pending)
			map_agent_params(ctx->tensors[k]);
}

void ragg__worker_on_landed(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len)
{
	params_ready(ctx, p, imm, len, false);
}

void ragg__worker_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	ragg_tensor_t *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	if (m->type == RAGG_MSG_SA_KEY) {
		ragg__sa_worker_on_key(ctx, p, m);
		return;
	}
	if (m->type == RAGG_MSG_SA_RECOVER) {
		ragg__sa_recover_worker_msg(ctx, p, m);
		return;
	}
	if (m->type == RAGG_MSG_VERSION) {
		ragg__stale_on_msg(ctx, p, m);
		return;
	}
	if (m->type == RAGG_MSG_GRAD_MAPPED && t && m->count && m->count <= t->worker.grad_seq) {
		/* An answer to an older announcement is stale: ignored. */
		if (m->count == t->worker.grad_seq && t->worker.grad_announced)
			t->worker.grad_mapped = t->worker.grad_seq;
		return;
	}
	if (m->type == RAGG_MSG_PARAMS_READY && m->count <= UINT32_MAX) {
		params_ready(ctx, p, (uint32_t)m->count, 0, true);
		return;
	}
	if (m->type == RAGG_MSG_PARAMS_AT && t && t->worker.acked &&
	    !t->worker.agent_params.rdesc.len && m->rdesc.len) {
		if (!(t->worker.copy_pending =
		          calloc(t->plan.nchunks, sizeof(*t->worker.copy_pending)))) {
			ragg__fail(ctx, -ENOMEM);
			return;
		}
		t->worker.agent_params.rdesc = m->rdesc;
		t->worker.agent_params.pending = true;
		map_agent_params(t);
		return;
	}
	if (m->type != RAGG_MSG_DECLARE_ACK || !t || t->worker.acked) {
		ragg__error("unexpected control message %d from agent %d", m->type, p->rank);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	t->worker.ack_status = m->status;
	t->worker.join_round = m->count;
	t->worker.agent_slot = m->rdesc;
	t->worker.acked = true;
}

const struct ragg__role_ops ragg__worker_role = {
	.name = "worker",
	.on_msg = ragg__worker_on_msg,
	.on_landed = ragg__worker_on_landed,
	.on_write_done = ragg__worker_on_write_done,
	.on_peer_mapped = ragg__worker_on_peer_mapped,
};

RAGG_EXPORT int ragg_push(ragg_tensor_t *t, const float *grad, double weight)
{
	int rc = check_tensor(t);
	if (rc || (rc = post_push(t, grad, weight)))
		return rc;
	return ragg__wait(t->ctx, push_done, t, "push");
}

RAGG_EXPORT int ragg_pull(ragg_tensor_t *t, float *params)
{
	int rc = check_tensor(t);
	if (rc)
		return rc;
	/* The round ends once our own push has left too, so the next push may
	 * reuse the parity's slots. */
	if (ragg__stale_round(t, t->round)) {
		if ((rc = ragg__stale_worker_pull(t)))
			return rc;
	} else if ((rc = ragg__wait(t->ctx, push_done, t, "push")) ||
	           (rc = ragg__wait(t->ctx, pull_done, t, "pull")))
		return rc;
	else
		t->pull_version = t->round + 1;
	t->worker.landed[t->round & 1] = 0;
	t->worker.pushed = false;
	t->round++;
	/* The round is over, so an ipush of it is complete too. */
	if (t->ctx->req.t == t)
		t->ctx->req.done = true;
	t->ctx->stats.rounds++;
	if (params && params != t->worker.params)
		memcpy(params, t->worker.params, t->plan.bytes);
	return 0;
}

RAGG_EXPORT int ragg_pushpull(ragg_tensor_t *t, const float *grad, double weight, float *params)
{
	int rc = ragg_push(t, grad, weight);
	return rc ? rc : ragg_pull(t, params);
}

RAGG_EXPORT int ragg_ipush(ragg_tensor_t *t, const float *grad, double weight, ragg_req_t **req)
{
	int rc = check_tensor(t);
	if (rc)
		return rc;
	if (!req)
		return -EINVAL;
	struct ragg_req *r = &t->ctx->req;
	if (r->t && !r->done) {
		ragg__error("ragg_ipush: the previous request has not completed");
		return -EBUSY;
	}
	if ((rc = post_push(t, grad, weight)))
		return rc;
	r->t = t;
	r->done = false;
	*req = r;
	return 0;
}

RAGG_EXPORT int ragg_wait(ragg_req_t *req)
{
	if (!req || !req->t)
		return -EINVAL;
	int rc = ragg__wait(req->t->ctx, push_done, req->t, "push");
	if (!rc)
		req->done = true;
	return rc;
}

RAGG_EXPORT int ragg_test(ragg_req_t *req, int *done)
{
	if (!req || !req->t || !done)
		return -EINVAL;
	int rc = ragg__progress(req->t->ctx);
	if (rc < 0)
		return rc;
	req->done = req->t->worker.push_inflight == 0;
	*done = req->done;
	return 0;
}
