/* Gaussian noise N(0, (zC)^2) on every element of the agent's sum
 * (differential privacy, privacy/dp.h), from the tensor's key and a stream
 * per (tensor, chunk, round). Not on round 0 (the declaration). */
#include "privacy/dp_job.h"
#include "stages/stage.h"

static void noise_run(struct ragg__stage_ctx *c)
{
	const struct ragg__dp_tensor *dp = c->arg;
	if (c->round == 0 || !(dp->sigma > 0))
		return;
	ragg__dp_noise_add(&dp->noise, c->tensor, c->chunk, c->round, c->out, c->n, dp->sigma);
}

const struct ragg__stage ragg__stage_dp_noise = {
	.name = "dp_noise",
	.flags = RAGG_STAGE_IN_PLACE,
	.run = noise_run,
};
