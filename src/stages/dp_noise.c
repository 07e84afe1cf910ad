/*
 * Gaussian noise N(0, (zC)^2) on every element of the agent's sum
 * (differential privacy, privacy/dp.h), from the tensor's key and a stream
 * per (tensor, chunk, round). Not on round 0 (the declaration).
 *
 * The noise depends on nothing but the key and the position, so the agent
 * draws the next round's while the workers compute and push it (a job of
 * the chunk's own thread, queued as the chunk's parameters come back,
 * behind its fan-out: ragg__dp_agent_summed); the stage then only adds it
 * (the declaration round's parameters start round 1's), or, when the clip
 * stage already summed it in with the workers' chunks, nothing.
 * A round whose noise was not drawn ahead (the job could not be queued)
 * draws it here, the same stream.
 */

#include "engine/engine.h"
#include "privacy/dp_job.h"
#include "stages/stage.h"

static size_t noise_state_bytes(size_t chunk_bytes)
{
	return RAGG_DP_AHEAD_HEADER + chunk_bytes;
}

static void noise_run(struct ragg__stage_ctx *c)
{
	const struct ragg__dp_tensor *dp = c->arg;
	struct ragg__dp_ahead *a = c->state;
	if (c->round == 0 || !(dp->sigma > 0))
		return;
	if (a && a->added == c->round)
		return; /* the clip stage summed it in (stages/dp_clip.c) */
	if (a && a->round == c->round) {
		const float *in[2] = { c->out, a->noise };
		static const float one[2] = { 1.0f, 1.0f };
		c->k->sum_weighted(c->out, in, one, 2, c->n);
		return;
	}
	ragg__dp_noise_add(&dp->noise, c->tensor, c->chunk, c->round, c->out, c->n, dp->sigma);
}

void ragg__dp_ahead_run(struct ragg__job *job)
{
	struct ragg__dp_ahead_job *j = (struct ragg__dp_ahead_job *)job;
	struct ragg__dp_ahead *a = j->state;
	ragg__dp_noise_set(&j->dp->noise, j->tensor, j->chunk, j->round, a->noise, j->n,
	                   j->dp->sigma);
	a->round = j->round;
}

const struct ragg__stage ragg__stage_dp_noise = {
	.name = "dp_noise",
	.flags = RAGG_STAGE_IN_PLACE,
	.state_bytes = noise_state_bytes,
	.run = noise_run,
};
