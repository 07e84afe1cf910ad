/*
 * Stages: what the agent does to a chunk between its workers' writes and
 * the write to the server, one small table per stage.
 *
 * The contract:
 *   - A tensor's plan lists its stages (plan.h); every stage of the list
 *     runs, in order, in the chunk's one engine job, on the engine thread
 *     that owns the chunk, once every contribution of the round landed.
 *     Stages of one chunk never run concurrently; stages of different
 *     chunks do, so a stage touches only its chunk's buffers and state.
 *   - A stage reads ctx->in[0..nin) weighted by ctx->w (a reducing stage,
 *     RAGG_STAGE_REDUCE: it writes ctx->out) or transforms ctx->out in
 *     place (every other stage). The first stage of a list reduces.
 *   - ctx->out holds ctx->n floats (the plan's stride bytes with a codec).
 *     It may be the server's slot, mapped
 *     here, when the plan allows the in-place fast path, which it does
 *     only when every stage sets RAGG_STAGE_IN_PLACE: such a stage writes
 *     nothing but its output there, and its output is as large as its
 *     input (out_bytes NULL).
 *   - Per-chunk state (state_bytes(chunk_bytes) bytes, NULL: none) is
 *     allocated once at declaration, zeroed and first touched by the
 *     thread that owns the chunk; ctx->state is the chunk's. Nothing is
 *     allocated per round.
 *   - run() returns nothing and cannot fail: what can be refused is
 *     refused when the plan is made. The one exception is a stage that
 *     decodes what senders wrote: a malformed contribution sets ctx->rc
 *     (RAGG_ERR_PROTO) and the job fails the context.
 *   - A stage that encodes (the codec stage) writes its encoding, at most
 *     the plan's stride bytes, into ctx->out; ctx->exact (round 0's
 *     broadcast) asks it for the plain weighted sum instead.
 *
 * Adding a stage: one file in src/stages/ with its table, one line in
 * stages.c's list, the file in src/Makefile.include.
 */
#ifndef RAGG_STAGE_H
#define RAGG_STAGE_H

#include <stddef.h>
#include <stdint.h>

struct ragg__kernels;

#define RAGG_STAGE_IN_PLACE (1u << 0) /* may run into the server's mapped slot */
#define RAGG_STAGE_REDUCE   (1u << 1) /* reads the contributions, writes out */

struct ragg__stage_ctx {
	const struct ragg__kernels *k;
	const float *const *in; /* the contributions, one per sender */
	const float *w; /* their weights */
	int nin;
	float *out; /* the chunk: n floats */
	size_t n;
	void *state; /* this stage's state for this chunk, or NULL */
	const void *arg; /* this stage's configuration from the plan */
	uint64_t seed; /* shared with the codec's other end (ragg__plan_seed) */
	int exact; /* round 0: contributions and output are plain floats */
	int rc; /* out: 0, or why a contribution was refused */
	/* Set by the reducing stage: some out[i] is NaN or infinite. The
	 * chunk is then refused (agent_round.c), not sent on. */
	int nonfinite;
	/* Set by a reducing stage that learns the sum of the weights itself
	 * (secure aggregation: the plain weights are 0): has_total, total. */
	int has_total;
	double total;
	/* Where the chunk is: its tensor, its index, the tensor's round and
	 * its parity (streams of noise are keyed by them). */
	uint32_t tensor, chunk;
	uint64_t round;
	int parity;
};

struct ragg__stage {
	const char *name;
	unsigned flags;
	size_t (*state_bytes)(size_t chunk_bytes); /* per chunk; NULL: none */
	size_t (*out_bytes)(size_t in_bytes); /* NULL: as large as its input */
	void (*run)(struct ragg__stage_ctx *ctx);
};

/* The stages (one file each). */
extern const struct ragg__stage ragg__stage_sum; /* out = sum_j w[j] * in[j] */
extern const struct ragg__stage ragg__stage_scale; /* out *= *(const float *)arg */
/* out = C(sum_j w[j] * D(in[j])), arg the codec spec (see codec.c) */
extern const struct ragg__stage ragg__stage_codec;
/* Differential privacy (privacy/dp_job.h): the clipped weighted sum, and
 * Gaussian noise; arg is the tensor's struct ragg__dp_tensor. */
extern const struct ragg__stage ragg__stage_dp_clip;
extern const struct ragg__stage ragg__stage_dp_noise;
/* Secure aggregation (privacy/sa_job.h): the masked integer sum, unmasked
 * and decoded; arg is the tensor's struct ragg__sa_tensor. */
extern const struct ragg__stage ragg__stage_secagg;

/* The stage called `name`, or NULL. */
const struct ragg__stage *ragg__stage_find(const char *name);

/* Run a plan's stages on one chunk: ctx carries the contributions and the
 * output; states[i] is stage i's state for this chunk (or NULL). */
struct ragg__plan;
void ragg__stages_run(const struct ragg__plan *pl, struct ragg__stage_ctx *ctx,
                      void *const *states);

#endif
