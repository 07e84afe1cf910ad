/*
 * Differential privacy in a job's rounds (ragg-privacy(7)): what a tensor
 * carries when RAGG_DP=on, the worker's norm claims and the agent's check
 * of them. The agent's stages (stages/dp_clip.c, stages/dp_noise.c) read
 * this state; the Gaussian noise and the accountant are privacy/dp.h.
 *
 * Enforcement. A worker's contribution to the agent's sum is w * g, its
 * weight times its gradient, and what is bounded is its L2 norm over the
 * whole tensor: ||w g|| <= C. The worker never changes its gradient: with
 * each push it sends claims, one per chunk, c_k = ||w g_k|| * min(1,
 * C / ||w g||). On the first write of a round from that worker the agent
 * (event loop) copies the claims into its own memory, once per worker and
 * round, so every chunk of the round sees the same claims whatever the
 * worker writes later; non-finite or negative claims become 0, and claims
 * whose squares sum above C^2 are scaled down until they do not. Each
 * chunk's job then scales worker i's chunk by min(1, b_k / ||w g_k||), its
 * claim b_k, as it sums it: an honest worker's gradient is clipped to C
 * over the whole tensor (the same factor on every chunk), and any sender's
 * contribution has norm at most sqrt(sum_k b_k^2) <= C, whatever it wrote.
 */
#ifndef RAGG_PRIVACY_DP_JOB_H
#define RAGG_PRIVACY_DP_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "privacy/dp.h"

struct ragg_ctx;
struct ragg_tensor;
struct ragg_opts;
struct ragg_tp_mr;
struct ragg__kernels;
struct ragg__plan;

/* The noise stage's per-chunk state: the chunk's noise for `round`, drawn
 * ahead (stages/dp_noise.c). */
#define RAGG_DP_AHEAD_HEADER 64
struct ragg__dp_ahead {
	uint64_t round; /* whose noise `noise` holds; 0: none */
	uint64_t added; /* the round whose sum the clip stage added it to */
	uint8_t pad[RAGG_DP_AHEAD_HEADER - 2 * sizeof(uint64_t)];
	float noise[];
};

struct ragg__dp_tensor;

/* The engine job that draws a chunk's noise ahead. The job is first, so a
 * struct ragg__job * is one of these. */
struct ragg__dp_ahead_job {
	struct ragg__job job;
	const struct ragg__dp_tensor *dp;
	struct ragg__dp_ahead *state;
	uint32_t tensor, chunk;
	uint64_t round;
	size_t n;
	bool busy; /* queued or not yet reaped (the event loop's) */
};
void ragg__dp_ahead_run(struct ragg__job *job);

/* Worker i's norm of chunk c, taken on the chunk's thread as its write
 * landed (the read pass of clipping, off the sum's path): what it was
 * taken of and for which round, so that the sum uses it only for exactly
 * that contribution. Written and read by the chunk's thread only. */
struct ragg__dp_norm {
	const float *in;
	size_t n;
	uint64_t round1; /* the round + 1; 0: none */
	double norm; /* ||in[0..n)||, by the kernels' norm2 */
};

/* The engine job that takes one such norm. The job is first, so a struct
 * ragg__job * is one of these. busy: queued or not yet reaped (the event
 * loop's, which alone submits and reaps it). */
struct ragg__dp_norm_job {
	struct ragg__job job;
	const struct ragg__kernels *k;
	struct ragg__dp_norm *res;
	const float *in;
	size_t n;
	uint64_t round;
	bool busy;
};
void ragg__dp_norm_run(struct ragg__job *job);

struct ragg__dp_tensor {
	double clip; /* C: RAGG_DP_CLIP */
	double z; /* noise multiplier: RAGG_DP_NOISE or from RAGG_DP_EPSILON */
	double sigma; /* z * C */
	double *step_rdp; /* worker: one round's RDP at each order (RAGG_DP_MAX_EPSILON) */
	struct ragg__dp_noise noise; /* agent: this tensor's key */
	/* agent: the claims in force, [parity][chunk * nworkers + worker],
	 * and per worker the round + 1 they were taken for. */
	int nworkers;
	float *bound[2];
	uint64_t *taken;
	float *factor; /* [chunk * nworkers + worker]: the chunk's job's */
	struct ragg__dp_ahead_job *ahead; /* per chunk */
	/* [parity][chunk * nworkers + worker]: the norms taken as the
	 * contributions landed, and their jobs. */
	struct ragg__dp_norm *norm[2];
	struct ragg__dp_norm_job *norm_job[2];
	/* worker: the claims it sends, [parity][chunk], registered. */
	float *claims;
	struct ragg_tp_mr *claims_mr;
};

/* Whether RAGG_DP is on in these settings. */
bool ragg__dp_on(const struct ragg_opts *o);

/* privacy/dp_budget.c. The noise multiplier z of these settings:
 * RAGG_DP_NOISE, or with RAGG_DP_EPSILON > 0 the one the mechanism of
 * RAGG_DP_MECHANISM gives for (RAGG_DP_EPSILON, RAGG_DP_DELTA) at
 * sensitivity 1 (sigma = z C). 0 or RAGG_ERR_CONFIG, logged. */
int ragg__dp_multiplier(const struct ragg_opts *o, double *z);
/* The settings' check at ragg_init: 0 or RAGG_ERR_CONFIG, logged. */
int ragg__dp_opts_check(const struct ragg_opts *o);
/* Worker, before pushing a round of t (RAGG_DP=on): RAGG_ERR_BUDGET,
 * logged, when the job's epsilon after this round would exceed
 * RAGG_DP_MAX_EPSILON; else 0 (or -ENOMEM). */
int ragg__dp_budget_check(struct ragg_tensor *t);

/* A tensor's privacy state, when RAGG_DP=on (t->dp, else left NULL): its
 * plan gets the claims and the agent's stages (clipped sum, noise). Every
 * role calls it as the tensor is made. 0, -ENOMEM or -EINVAL. */
int ragg__dp_tensor_init(struct ragg_ctx *ctx, struct ragg_tensor *t);
void ragg__dp_tensor_free(struct ragg_tensor *t);

/* Worker: compute the claims of this push and write them to the agent's
 * slot (no immediate; they land before the chunks). 0 or an error. */
int ragg__dp_worker_push(struct ragg_tensor *t, const float *grad, double weight, int parity);

/* Agent, event loop: worker i's write of the round landed; take its claims
 * if this is the first of the round. */
void ragg__dp_agent_landed(struct ragg_ctx *ctx, struct ragg_tensor *t, int worker, int parity);

/* Agent, event loop: worker i's chunk c (`in`) of this round landed: take
 * its norm on the chunk's thread, ahead of the sum (stages/dp_clip.c
 * falls back to taking it itself). */
void ragg__dp_agent_chunk_landed(struct ragg_ctx *ctx, struct ragg_tensor *t, int worker,
                                 int parity, uint32_t c, const float *in);
/* Agent, event loop: whether `job` is one of privacy's own engine jobs
 * (drawing noise ahead, taking a norm), now reaped: nothing else to do. */
bool ragg__dp_job_reaped(struct ragg__job *job);
/* The chunk's thread: worker i's norm of chunk c for this sum, taken as
 * it landed when it was of exactly `in` and this round, else now. */
double ragg__dp_chunk_norm(const struct ragg__dp_tensor *dp, const struct ragg__kernels *k,
                           int parity, uint32_t c, int i, const float *in, size_t n,
                           uint64_t round);

/* Agent, event loop: chunk c's parameters of `round` came back (its
 * fan-out, if any, is queued): draw its noise of the next round on the
 * chunk's thread, behind the fan-out, while the workers push. */
void ragg__dp_agent_summed(struct ragg_ctx *ctx, struct ragg_tensor *t, uint32_t c, uint64_t round);

/* The claims an honest worker sends for grad (plan pl) with weight w. */
void ragg__dp_claims(const struct ragg__kernels *k, const struct ragg__plan *pl, const float *grad,
                     double w, double clip, float *claims);
/* The bounds the agent enforces for claims `in` (n of them): 0 when taken
 * as they are, 1 when scaled down to a total of C, -1 when refused (all 0). */
int ragg__dp_bounds(const float *in, size_t n, double clip, float *out);

/* The round's privacy steps: rounds after a tensor's first (its
 * declaration, which sends worker 0's initial parameters, not data). */
uint64_t ragg__dp_steps(const struct ragg_ctx *ctx);

#endif
