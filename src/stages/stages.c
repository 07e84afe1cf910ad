/* The table of stages, and the runner that a chunk's job calls. */
#include <string.h>

#include "plan.h"
#include "stages/stage.h"

static const struct ragg__stage *const stages[] = {
	&ragg__stage_sum,
	&ragg__stage_scale,
	&ragg__stage_codec,
	&ragg__stage_dp_clip,
	&ragg__stage_dp_noise,
	&ragg__stage_secagg,
};

const struct ragg__stage *ragg__stage_find(const char *name)
{
	for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
		if (!strcmp(stages[i]->name, name))
			return stages[i];
	return NULL;
}

void ragg__stages_run(const struct ragg__plan *pl, struct ragg__stage_ctx *ctx, void *const *states)
{
	for (int i = 0; i < pl->nstages; i++) {
		ctx->state = states ? states[i] : NULL;
		ctx->arg = pl->stages[i].arg;
		pl->stages[i].stage->run(ctx);
	}
}
