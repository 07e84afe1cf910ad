/*
 * The agent: workers write gradients into its slots; once every worker's
 * chunk c of a round has landed, an engine thread forms s = sum_i n_i*g_i
 * and N = sum_i n_i, and the agent writes (N, s) into its slot on the server
 * that owns c (server c mod n). Parameters that servers write back into the
 * agent's parameter region are forwarded to each of its workers.
 *
 * Where a peer's memory is mapped here (shm), the copies happen in place:
 * the sums read a worker's gradient straight from its ragg_mem_alloc()
 * buffer and go straight into the server's slot, and an engine thread
 * copies parameters into every mapped worker buffer in one pass; a write
 * of length 0 then carries just the immediate.
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

/* A worker's announced gradient buffer (RAGG_MSG_GRAD_AT). */
struct ragg__wgrad {
	uint64_t seq;
	bool pending; /* mapping asked for, answer not in yet */
	struct ragg_tp_rdesc rdesc;
	const uint8_t *base; /* mapped here; NULL: its pushes copy */
};

struct ragg__agent_tensor {
	int declared, server_acks;
	bool mismatch, ready;
	int status; /* the declaration's failure, 0 when it succeeded */
	struct ragg__region *wslot; /* per worker: what it writes into */
	struct ragg_tp_rdesc *wparams; /* per worker: its parameter buffer */
	struct ragg__wgrad *wgrad; /* per worker */
	uint8_t **wparams_at; /* per worker: mapped parameter buffer, or NULL */
	bool *wparams_never; /* per worker: its buffer cannot be mapped */
	bool *wpulls; /* per worker: copies parameters out of our region itself */
	uint8_t **sslot_at; /* per server: mapped slot, or NULL */
	bool *sslot_never;
	struct ragg__region params; /* what servers write into */
	struct ragg__region acc; /* META (N by parity), then the sums */
	struct ragg_tp_rdesc *sslot; /* per server: our slot there */
	bool *answered_by; /* per server: its answer to our declaration arrived */
	uint32_t *arrived[2]; /* per chunk: workers landed */
	uint32_t params_landed;
	uint64_t *meta_sent; /* per server: round + 1 whose N was written */
	struct ragg__chunk_job *jobs; /* per chunk: the sum */
	struct ragg__chunk_job *fanout; /* per chunk: copies to workers */
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
	for (size_t c = 0; c < t->nchunks; c++) {
		if (at->jobs) {
			free(at->jobs[c].inputs);
			free(at->jobs[c].weights);
		}
		if (at->fanout)
			free(at->fanout[c].copy_to);
	}
	free(at->jobs);
	free(at->fanout);
	free(at->wslot);
	free(at->wparams);
	free(at->wgrad);
	free(at->wparams_at);
	free(at->wparams_never);
	free(at->wpulls);
	free(at->sslot_at);
	free(at->sslot_never);
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
	double total = 0;

	for (int i = 0; i < ctx->nworkers; i++) {
		const double *meta = at->wslot[i].mem;
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
static void agent_fanout(struct ragg__job *job)
{
	struct ragg__chunk_job *cj = ragg__container_of(job, struct ragg__chunk_job, job);
	ragg_tensor_t *t = cj->t;
	size_t off = cj->chunk * t->chunk_elems * sizeof(float);
	size_t len = ragg__chunk_len(t, cj->chunk);
	const uint8_t *src = (const uint8_t *)t->agent->params.mem + off;
	ragg__copy_fanout(cj->copy_to, cj->ncopy, off, src, len);
	ragg__job_finished(t->ctx);
}

static void ack_workers(struct ragg_ctx *ctx, ragg_tensor_t *t, int status)
{
	struct ragg__agent_tensor *at = t->agent;
	for (int i = 0; i < ctx->nworkers; i++) {
		struct ragg__peer *p = &ctx->peers[i];
		struct ragg__msg m = { .type = RAGG_MSG_DECLARE_ACK,
			               .tensor = (uint8_t)t->id,
			               .status = status };
		if (!status)
			m.rdesc = *ragg__region_rdesc(&at->wslot[i], p);
		ragg__post_msg(p, &m);
		/* A worker buffer we cannot map, on a transport that maps ours:
		 * the worker copies out of our region, in parallel with the
		 * others, instead of our writing into each in turn. */
		if (!status && at->params.owner == p->tp &&
		    !ragg__peer_mapped(p, &at->wparams[i], t->bytes, &at->wparams_at[i],
		                       &at->wparams_never[i]) &&
		    at->wparams_never[i]) {
			struct ragg__msg pa = { .type = RAGG_MSG_PARAMS_AT,
				                .tensor = (uint8_t)t->id,
				                .rdesc = *ragg__region_rdesc(&at->params, p) };
			ragg__post_msg(p, &pa);
		}
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
	at->fanout = calloc(t->nchunks, sizeof(*at->fanout));
	at->arrived[0] = calloc(t->nchunks, sizeof(uint32_t));
	at->arrived[1] = calloc(t->nchunks, sizeof(uint32_t));
	if (!at->jobs || !at->fanout || !at->arrived[0] || !at->arrived[1])
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
		struct ragg__chunk_job *f = &at->fanout[c];
		f->t = t;
		f->kind = RAGG_JOB_FANOUT;
		f->chunk = (uint32_t)c;
		f->job.fn = agent_fanout;
		f->job.thread_hint = (int)c;
		f->ncopy = ctx->nworkers;
		f->copy_to = calloc((size_t)ctx->nworkers, sizeof(*f->copy_to));
		if (!j->inputs || !j->weights || !f->copy_to)
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
	    !(at->wgrad = calloc((size_t)ctx->nworkers, sizeof(*at->wgrad))) ||
	    !(at->wparams_at = calloc((size_t)ctx->nworkers, sizeof(*at->wparams_at))) ||
	    !(at->wparams_never = calloc((size_t)ctx->nworkers, sizeof(bool))) ||
	    !(at->wpulls = calloc((size_t)ctx->nworkers, sizeof(bool))) ||
	    !(at->sslot_at = calloc((size_t)ctx->opts.servers, sizeof(*at->sslot_at))) ||
	    !(at->sslot_never = calloc((size_t)ctx->opts.servers, sizeof(bool))) ||
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

/* Map a worker's announced gradient buffer; tell it once it is. */
static void map_grad(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t)
{
	struct ragg__wgrad *g = &t->agent->wgrad[p->index];
	void *m;
	int rc = ragg__peer_map(p, &g->rdesc, t->bytes, &m);
	if (rc && !ragg__peer_map_final(rc))
		return;
	g->pending = false;
	if (rc) {
		ragg__debug("worker %d's gradient buffer stays remote: %s", p->rank,
		            ragg_strerror(rc));
		return;
	}
	g->base = m;
	struct ragg__msg a = { .type = RAGG_MSG_GRAD_MAPPED,
		               .tensor = (uint8_t)t->id,
		               .count = g->seq };
	ragg__post_msg(p, &a);
}

static void on_grad_at(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	ragg_tensor_t *t = m->tensor < ctx->ntensors ? ctx->tensors[m->tensor] : NULL;
	if (!t || !t->agent->ready || m->count <= t->agent->wgrad[p->index].seq) {
		ragg__error("unexpected gradient buffer announcement from worker %d", p->rank);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	/* Its pushes copy until we answer, so the old mapping is done with. */
	struct ragg__wgrad *g = &t->agent->wgrad[p->index];
	*g = (struct ragg__wgrad){ .seq = m->count, .pending = true, .rdesc = m->rdesc };
	map_grad(ctx, p, t);
}

void ragg__agent_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m)
{
	if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_DECLARE)
		on_worker_declare(ctx, p, m);
	else if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_GRAD_AT)
		on_grad_at(ctx, p, m);
	else if (p->role == RAGG_ROLE_WORKER && m->type == RAGG_MSG_PARAMS_MAPPED &&
	         m->tensor < ctx->ntensors && ctx->tensors[m->tensor]->agent->wparams_never[p->index])
		ctx->tensors[m->tensor]->agent->wpulls[p->index] = true;
	else if (p->role == RAGG_ROLE_SERVER && m->type == RAGG_MSG_DECLARE_ACK)
		on_server_ack(ctx, p, m);
	else {
		ragg__error("unexpected control message %d from %s", m->type, p->ep->peer);
		ragg__fail(ctx, RAGG_ERR_PROTO);
	}
}

/* Where chunk c's sum goes: straight into server s's slot when it is
 * mapped here, else our accumulator, written to the server afterwards. */
static float *sum_target(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	int n = ctx->opts.servers, s = (int)(c % (uint32_t)n);
	size_t chunk_bytes = t->chunk_elems * sizeof(float);
	size_t owned_bytes = owned_chunks(t->nchunks, n, s) * chunk_bytes;
	uint8_t *slot = ragg__peer_mapped(server_peer(ctx, s), &at->sslot[s],
	                                  RAGG_SLOT_META_BYTES + 2 * owned_bytes, &at->sslot_at[s],
	                                  &at->sslot_never[s]);
	if (slot)
		return (float *)(slot +
		                 ragg__slot_offset(parity, owned_bytes, (c / (uint32_t)n) * chunk_bytes));
	return (float *)((char *)at->acc.mem + RAGG_SLOT_META_BYTES + c * chunk_bytes);
}

static void on_gradient(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t, int parity,
                        uint32_t c, size_t len)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__chunk_job *j = &at->jobs[c];
	size_t off = c * t->chunk_elems * sizeof(float);
	const struct ragg__wgrad *g = &at->wgrad[p->index];
	if (len)
		j->inputs[p->index] = (const float *)((const char *)at->wslot[p->index].mem +
		                                      ragg__slot_offset(parity, t->bytes, off));
	else
		j->inputs[p->index] = (const float *)(g->base + off);
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
	ragg__post_write(&ctx->peers[i], (char *)at->params.mem + off,
	                 ragg__region_mr(&at->params, &ctx->peers[i]), &at->wparams[i], off, len,
	                 ragg__imm_encode(parity, t->id, c), RAGG_TP_WRITE_IMM, 0);
}

static void on_parameters(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c)
{
	struct ragg__agent_tensor *at = t->agent;
	struct ragg__chunk_job *f = &at->fanout[c];
	int copies = 0;
	for (int i = 0; i < ctx->nworkers; i++) {
		f->copy_to[i] = ragg__peer_mapped(&ctx->peers[i], &at->wparams[i], t->bytes,
		                                  &at->wparams_at[i], &at->wparams_never[i]);
		if (f->copy_to[i])
			copies++;
		else
			forward(ctx, t, i, parity, c, at->wpulls[i] ? 0 : ragg__chunk_len(t, c));
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
	bool in_place_ok = t && t->agent->ready &&
	                   (p->role == RAGG_ROLE_SERVER || t->agent->wgrad[p->index].base);
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
		if (t->agent->wgrad[p->index].pending)
			map_grad(ctx, p, t);
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
	float *acc = (float *)((char *)at->acc.mem + RAGG_SLOT_META_BYTES + off);
	ragg__post_write(
	    srv, acc, ragg__region_mr(&at->acc, srv), &at->sslot[s],
	    ragg__slot_offset(parity, owned_bytes, (cj->chunk / (uint32_t)n) * chunk_bytes),
	    cj->out == acc ? ragg__chunk_len(t, cj->chunk) : 0,
	    ragg__imm_encode(parity, t->id, cj->chunk), RAGG_TP_WRITE_IMM, 0);
}
