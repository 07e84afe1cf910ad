/* The weighted sum of the workers' contributions: s = sum_i n_i * g_i,
 * checked for finiteness in the same pass. */
#include "engine/engine.h"
#include "stages/stage.h"

static void sum_run(struct ragg__stage_ctx *c)
{
	c->nonfinite = c->k->sum_weighted(c->out, c->in, c->w, c->nin, c->n);
}

const struct ragg__stage ragg__stage_sum = {
	.name = "sum",
	.flags = RAGG_STAGE_IN_PLACE | RAGG_STAGE_REDUCE,
	.run = sum_run,
};
