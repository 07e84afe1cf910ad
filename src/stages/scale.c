/* Scale the chunk by a constant (its configuration): the smallest stage. */
#include "engine/engine.h"
#include "stages/stage.h"

static void scale_run(struct ragg__stage_ctx *c)
{
	c->k->scale(c->out, *(const float *)c->arg, c->n);
}

const struct ragg__stage ragg__stage_scale = {
	.name = "scale",
	.flags = RAGG_STAGE_IN_PLACE,
	.run = scale_run,
};
