/*
 * The agent: workers write gradients into its slots; once every worker's
 * chunk c of a round has landed, an engine thread forms s = sum_i n_i*g_i
 * and N = sum_i n_i, and the agent writes (N, s) into its slot on the server
 * that owns c (server c mod n). Parameters that servers write back into the
 * agent's parameter region are forwarded to each of its workers.
 *
 * Round invariants that make single accumulators safe: a worker pushes round
 * t+1 only after it pulled every chunk of round t, and a server sends round
 * t+1 parameters only after every agent's round t+1 sum arrived; so chunk c's
 * accumulator is never rewritten while its previous contents are in flight.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "core.h"
#include "log.h"

struct ragg__agent_tensor {
	int declared, server_acks;
	bool mismatch, ready;
	int status; /* the declaration's failure, 0 when it succeeded */
	struct ragg__region *wslot; /* per worker: what it writes into */
	struct ragg_tp_rdesc *wparams; /* per worker: its parameter buffer */
	struct ragg__region params; /* what servers write into */
	struct ragg__region acc; /* META (N by parity), then the sums */
	struct ragg_tp_rdesc *sslot; /* per server: our slot there */
	bool *answered_by; /* per server: its answer to our declaration arrived */
	uint32_t *arrived[2]; /* per chunk: workers landed */
	uint32_t params_landed;
	uint64_t *meta_sent; /* per server: round + 1 whose N was written */
	struct ragg__chunk_job *jobs; /* per chunk */
};

static size_t owned_chunks(size_t nchunks, int servers, int s)
{
	return (size_t)s < nchunks ? (nchunks - (size_t)s + (size_t)servers - 1) / (size_t)servers
	                           : 0;
}

static struct ragg__peer *server_peer(struct ragg_ctx *ctx, int s)
{
	return &ctx->peers[ctx->nworkers + s];
}

void ragg__agent_tensor_free(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	struct ragg__agent_tensor *at = t->agent;
	if (at->wslot)
		for (int i = 0; i < ctx->nworkers; i++)
			if (at->wslot[i].mem)
				ragg__region_free(ctx, &at->wslot[i]);
	if (at->params.mem)
		ragg__region_free(ctx, &at->params);
	if (at->acc.mem)
		ragg__region_free(ctx, &at->acc);
	if (at->jobs)
		for (size_t c = 0; c < t->nchunks; c++) {
			free(at->jobs[c].inputs);
			free(at->jobs[c].weights);
		}
	free(at->jobs);
	free(at->wslot);
	free(at->wparams);
	free(at->sslot);
	free(at->answered_by);
	free(at->arrived[0]);
	free(at->arrived[1]);
	free(at->meta_sent);
	free(at);
	t->agent = NULL;
}

/* Runs on an engine thread. */
static void agent_sum(struct ragg__job *job)
{
	struct ragg__chunk_job *cj = ragg__container_of(job, struct ragg__chunk_job, job);
	ragg_tensor_t *t = cj->t;
	struct ragg_ctx *ctx = t->ctx;
	struct ragg__agent_tensor *at = t->agent;
	size_t off = cj->chunk * t->chunk_elems * sizeof(float);
	double total = 0;

	for (int i = 0; i < ctx->nworkers; i++) {
		const double *meta = at->wslot[i].mem;
		total += meta[cj->parity];
		cj->weights[i] = (float)meta[cj->parity];
		cj->inputs[i] = (const float *)((const char *)at->wslot[i].mem +
		                                ragg__slot_offset(cj->parity, t->bytes, off));
	}
	float *out = (float *)((char *)at->acc.mem + RAGG_SLOT_META_BYTES + off);
	ctx->kernels->sum_weighted(out, cj->inputs, cj->weights, ctx->nworkers,
	                           ragg__chunk_len(t, cj->chunk) / sizeof(float));
	cj->total_weight = total;
	ragg__job_finished(ctx);
}

static void ack_workers(struct ragg_ctx *ctx, ragg_tensor_t *t, int status)
{
	struct ragg__agent_tensor *at = t->agent;
	for (int i = 0; i < ctx->nworkers; i++) {
		struct ragg__msg m = { .type = RAGG_MSG_DECLARE_ACK,
			               .tensor = (uint8_t)t->id,
			               .status = status };
		if (!status)
			m.rdesc = *ragg__region_rdesc(&at->wslot[i], &ctx->peers[i]);
		ragg__post_msg(&ctx->peers[i], &m);
	}
	if (status)
		ragg__error("tensor %d: declaration failed: %s", t->id, ragg_strerror(status));
}

static int setup_memory(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	struct ragg__agent_tensor *at = t->agent;
	size_t chunk_bytes = t->chunk_elems * sizeof(float);
	size_t slot_bytes = RAGG_SLOT_META_BYTES + 2 * t->bytes;
	int rc;

	for (int i = 0; i < ctx->nworkers; i++)
		if ((rc = ragg__region_alloc(ctx, slot_bytes, chunk_bytes, &at->wslot[i])))
			return rc;
	if ((rc = ragg__region_alloc(ctx, t->bytes, chunk_bytes, &at->params)) ||
	    (rc = ragg__region_alloc(ctx, RAGG_SLOT_META_BYTES + t->bytes, chunk_bytes, &at->acc)))
		return rc;
	at->jobs = calloc(t->nchunks, sizeof(*at->jobs));
	at->arrived[0] = calloc(t->nchunks, sizeof(uint32_t));
	at->arrived[1] = calloc(t->nchunks, sizeof(uint32_t));
	if (!at->jobs || !at->arrived[0] || !at->arrived[1])
		return -ENOMEM;
	for (size_t c = 0; c < t->nchunks; c++) {
		struct ragg__chunk_job *j = &at->jobs[c];
		j->t = t;
		j->chunk = (uint32_t)c;
		j->job.fn = agent_sum;
		/* The same thread always sums the same chunk: it first touched
		 * that chunk's memory, which is then local to it. */
		j->job.thread_hint = (int)c;
		j->inputs = calloc((size_t)ctx->nworkers, sizeof(*j->inputs));
		j->weights = calloc((size_t)ctx->nworkers, sizeof(*j->weights));
		if (!j->inputs || !j->weights)
			return -ENOMEM;
	}
	/* Queues hold a whole round: a forward of every chunk to each worker,
	 * every owned chunk plus N to each server. */
	for (int i = 0; i < ctx->nworkers; i++)
		if ((rc = ragg__queue_reserve(&ctx->peers[i], (uint32_t)t->nchunks + 2)))
			return rc;
	for (int s = 0; s < ctx->opts.servers; s++)
		if ((rc = ragg__queue_reserve(
		         server_peer(ctx, s),
		         (uint32_t)owned_chunks(t->nchunks, ctx->opts.servers, s) + 3)))
			return rc;
	return 0;
}

static int new_tensor(struct ragg_ctx *ctx, const struct ragg__msg *m, ragg_tensor_t **out)
{
	ragg_tensor_t *t;
	int rc;
	if (m->chunk_bytes < 4096 || m->chunk_bytes % sizeof(float))
		return RAGG_ERR_PROTO;
	if ((rc = ragg__tensor_new(ctx, m->tensor, NULL, m->name_hash, m->count, m->chunk_bytes,
	                           &t)))
		return rc;
	struct ragg__agent_tensor *at = calloc(1, sizeof(*at));
	t->agent = at;
	if (!at || !(at->wslot = calloc((size_t)ctx->nworkers, sizeof(*at->wslot))) ||
	    !(at->wparams = calloc((size_t)ctx->nworkers, sizeof(*at->wparams))) ||
	    !(at->sslot = calloc((size_t)ctx->opts.servers, sizeof(*at->sslot))) ||
	    !(at->answered_by = calloc((size_t)ctx->opts.servers, sizeof(bool))) ||
	    !(at->meta_sent = calloc((size_t)ctx->opts.servers, sizeof(*at->meta_sent)))) {
		ragg__tensor_free(t);
		return -ENOMEM;
	}
	ctx->tensors[ctx->ntensors++] = t;
	*out = t;
	return 0;
}

static void on_worker_declare(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	ragg_tensor_t *t;
	int rc;

	if (m->tensor == ctx->ntensors && ctx->ntensors < RAGG_MAX_TENSORS) {
		if ((rc = new_tensor(ctx, m, &t))) {
			ragg__error("worker %d declared an invalid tensor: %s", p->rank,
			            ragg_strerror(rc));
			ragg__fail(ctx, rc);
			return;
		}
	} else if (m->tensor < ctx->ntensors) {
		t = ctx->tensors[m->tensor];
	} else {
		ragg__error("worker %d declared tensor %u out of order", p->rank, m->tensor);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	struct ragg__agent_tensor *at = t->agent;
	if (at->wparams[p->index].len) {
		ragg__error("worker %d declared tensor %d twice", p->rank, t->id);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (m->count != t->count || m->chunk_bytes != t->chunk_elems * sizeof(float) ||
	    m->name_hash != t->name_hash) {
		ragg__error("worker %d declared tensor %d with %llu floats in %llu-byte chunks, "
		            "others differently (name or size)",
		            p->rank, t->id, (unsigned long long)m->count,
		            (unsigned long long)m->chunk_bytes);
		at->mismatch = true;
	}
	at->wparams[p->index] = m->rdesc;
	if (++at->declared < ctx->nworkers)
		return;
	/* A failure here still goes through the servers, which tell every
	 * agent: all workers of the job then learn of it, not just ours. */
	if (at->mismatch)
		at->status = RAGG_ERR_MISMATCH;
	else if ((rc = setup_memory(ctx, t)))
		at->status = rc;
	for (int s = 0; s < ctx->opts.servers; s++) {
		struct ragg__msg d = *m;
		d.status = at->status;
		if (!at->status)
			d.rdesc = *ragg__region_rdesc(&at->params, server_peer(ctx, s));
		else
			d.rdesc.len = 0;
		ragg__post_msg(server_peer(ctx, s), &d);
	}
}

static void on_server_ack(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	ragg_tensor_t *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	if (!t || t->agent->declared < ctx->nworkers || t->agent->answered_by[p->index] ||
	    t->agent->server_acks == ctx->opts.servers) {
		ragg__error("unexpected declaration answer from server %d", p->rank);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	struct ragg__agent_tensor *at = t->agent;
	if (m->status && !at->status)
		at->status = m->status;
	at->sslot[p->index] = m->rdesc;
	at->answered_by[p->index] = true;
	if (++at->server_acks < ctx->opts.servers)
		return;
	at->ready = at->status == 0;
	ack_workers(ctx, t, at->status);
}

void ragg__agent_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_DECLARE)
		on_worker_declare(ctx, p, m);
	else if (p->role == RAGG_ROLE_SERVER && m->type == RAGG_MSG_DECLARE_ACK)
		on_server_ack(ctx, p, m);
	else {
		ragg__error("unexpected control message %d from %s", m->type, p->ep->peer);
		ragg__fail(ctx, RAGG_ERR_PROTO);
	}
}

static void on_gradient(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t, int parity,
                        uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	if (++at->arrived[parity][c] < (uint32_t)ctx->nworkers)
		return;
	at->arrived[parity][c] = 0;
	at->jobs[c].parity = parity;
	int rc = ragg__engine_submit(ctx->engine, &at->jobs[c].job);
	if (rc)
		ragg__fail(ctx, rc);
	else
		ctx->jobs_out++;
}

static void on_parameters(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	size_t off = c * t->chunk_elems * sizeof(float);
	for (int i = 0; i < ctx->nworkers; i++)
		ragg__post_write(&ctx->peers[i], (char *)at->params.mem + off,
		                 ragg__region_mr(&at->params, &ctx->peers[i]), &at->wparams[i], off,
		                 ragg__chunk_len(t, c), ragg__imm_encode(parity, t->id, c),
		                 RAGG_TP_WRITE_IMM, 0);
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
	if (!t || !t->agent->ready || c >= t->nchunks || len != ragg__chunk_len(t, c) ||
	    parity != (int)(t->round & 1)) {
		ragg__error("unexpected write from %s (tensor %d chunk %u parity %d length %zu)",
		            p->ep->peer, id, c, parity, len);
		ctx->stats.frames_rejected++;
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (p->role == RAGG_ROLE_WORKER)
		on_gradient(ctx, p, t, parity, c);
	else
		on_parameters(ctx, t, parity, c);
}

/* A chunk's sum is ready: send N (once per server and round) and the sum. */
void ragg__agent_on_job(struct ragg_ctx *ctx, struct ragg__chunk_job *cj)
{
	ragg_tensor_t *t = cj->t;
	struct ragg__agent_tensor *at = t->agent;
	int n = ctx->opts.servers, s = (int)(cj->chunk % (uint32_t)n), parity = cj->parity;
	struct ragg__peer *srv = server_peer(ctx, s);
	size_t chunk_bytes = t->chunk_elems * sizeof(float);
	size_t owned_bytes = owned_chunks(t->nchunks, n, s) * chunk_bytes;
	size_t off = cj->chunk * chunk_bytes;
	double *meta = at->acc.mem;

	if (at->meta_sent[s] != t->round + 1) {
		meta[parity] = cj->total_weight;
		ragg__post_write(srv, &meta[parity], ragg__region_mr(&at->acc, srv), &at->sslot[s],
		                 (uint64_t)parity * sizeof(double), sizeof(double), 0, 0, 0);
		at->meta_sent[s] = t->round + 1;
	}
	ragg__post_write(
	    srv, (char *)at->acc.mem + RAGG_SLOT_META_BYTES + off, ragg__region_mr(&at->acc, srv),
	    &at->sslot[s],
	    ragg__slot_offset(parity, owned_bytes, (cj->chunk / (uint32_t)n) * chunk_bytes),
	    ragg__chunk_len(t, cj->chunk), ragg__imm_encode(parity, t->id, cj->chunk),
	    RAGG_TP_WRITE_IMM, 0);
}
