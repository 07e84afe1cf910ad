/*
 * The agent's per-tensor state, shared by its two halves: agent.c (a
 * tensor's declaration and the control messages about its buffers) and
 * agent_round.c (a round's data: sums up, parameters down).
 */
#ifndef RAGG_AGENT_H
#define RAGG_AGENT_H

#include "core.h"
#include "role.h"

/* One of the agent's workers, for one tensor. */
struct ragg__agent_worker {
	struct ragg__region slot; /* what it writes its gradient into */
	struct ragg__peer_region params; /* its parameter buffer */
	bool pulls; /* it copies parameters out of our region itself */
	/* Its announced gradient buffer (RAGG_MSG_GRAD_AT). */
	uint64_t grad_seq;
	struct ragg__peer_region grad; /* not mapped here: its pushes copy */
	/* RAGG_ON_NONFINITE=skip: round + 1 whose contribution was last
	 * dropped (logged and counted once per round, not per chunk). */
	uint64_t skipped_round;
};

/* One of the servers, for one tensor. */
struct ragg__agent_server {
	struct ragg__peer_region slot; /* our slot there */
	bool answered; /* its answer to our declaration arrived */
	uint64_t meta_sent; /* round + 1 whose N was written */
};

/* The chunk's job: run the plan's stages on the workers' contributions. */
struct ragg__sum_job {
	struct ragg__job job;
	ragg_tensor_t *t;
	uint32_t chunk;
	int parity;
	uint64_t round; /* the round it sums (round 0 is exact; seeds) */
	int rc; /* out: the stages' refusal of a contribution, or 0 */
	double total_weight; /* out: sum of the contributions' weights */
	const float **inputs; /* one per worker, set as each lands */
	float *weights;
	float *out; /* the stages' output: our accumulator or the server's slot */
	/* out: -1, or why the chunk is refused: the worker index whose weight
	 * or gradient (element poison_at of the chunk) is not finite, or -2
	 * (every input finite, the sum overflowed) */
	int poison;
	size_t poison_at;
	/* The contributions summed: inputs[k] is worker who[k]'s (who NULL:
	 * worker k's), k < nin; fewer than the group once workers left. */
	int nin;
	int *who;
	/* RAGG_ON_NONFINITE=skip: per worker, 1 when its part of this chunk
	 * was left out of the sum (its weight or gradient was not finite). */
	uint8_t *skipped;
	int nskipped;
};

/* The chunk's parameters into every worker buffer mapped here. */
struct ragg__fanout_job {
	struct ragg__job job;
	ragg_tensor_t *t;
	uint32_t chunk;
	int parity;
	void **copy_to; /* per worker: its mapped buffer, or NULL (sent by write) */
	/* RAGG_COMPRESS_PULL: first add the decoded update of `round` that
	 * landed in the pull area to our parameters; rc its outcome. */
	bool decode;
	uint64_t round;
	int rc;
};

struct ragg__agent_tensor {
	struct ragg__decl decl; /* the workers' declarations (role.h) */
	int server_acks;
	bool ready;
	struct ragg__agent_worker *w; /* per worker */
	struct ragg__agent_server *s; /* per server */
	struct ragg__region params; /* what servers write into */
	struct ragg__region acc; /* META (N by parity), then the sums */
	uint32_t *arrived[2]; /* per chunk: workers landed */
	struct ragg__seen seen_grads; /* which workers' chunks landed */
	struct ragg__seen seen_params; /* which servers' chunks landed */
	uint32_t params_landed;
	struct ragg__sum_job *jobs; /* per chunk: the stages */
	bool skip_nonfinite; /* RAGG_ON_NONFINITE=skip */
	struct ragg__fanout_job *fanout; /* per chunk: copies to workers */
	/* Per stage of the plan: its per-chunk states back to back (chunk c's
	 * at c * state_bytes), first touched by c's thread; NULL: none. */
	void *state[RAGG_PLAN_MAX_STAGES];
	size_t state_bytes[RAGG_PLAN_MAX_STAGES];
	void **chunk_state; /* per chunk: nstages pointers into state[] */
	uint32_t complete[2]; /* RAGG_ON_WORKER_LOSS=continue: chunks all landed */
	bool summing; /* continue: the round's sums started, its parameters not all back */
};

static inline struct ragg__peer *ragg__server_peer(struct ragg_ctx *ctx, int s)
{
	return &ctx->peers[ctx->nworkers + s];
}

/* agent_round.c: the engine's two jobs. */
void ragg__agent_sum(struct ragg__job *job);
void ragg__agent_fanout(struct ragg__job *job);
/* Chunk c of the round (parity) has every contribution it will get: run
 * its stages. */
void ragg__agent_submit_sum(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c);
/* Chunk c's parameters to worker i, as those of the round of `parity`
 * (len bytes written; 0: they are in its buffer already). */
void ragg__agent_forward(struct ragg_ctx *ctx, ragg_tensor_t *t, int i, int parity, uint32_t c,
                         size_t len);

/* elastic.c: RAGG_ON_WORKER_LOSS=continue's rounds: chunk c's contribution
 * of worker p counted; the round's sums start once every chunk has all its
 * group's (all or nothing per round and worker). */
void ragg__elastic_landed(struct ragg_ctx *ctx, ragg_tensor_t *t, int parity, uint32_t c);
/* A rejoining worker's declaration. */
void ragg__elastic_on_declare(struct ragg_ctx *ctx, struct ragg__peer *p,
                              const struct ragg__msg *m);
/* A round of t completed: rejoining workers may join now. */
void ragg__elastic_round_done(struct ragg_ctx *ctx);

/* agent.c: map worker p's announced gradient buffer; tell it once it is. */
void ragg__agent_map_grad(struct ragg_ctx *ctx, struct ragg__peer *p, ragg_tensor_t *t);

#endif
