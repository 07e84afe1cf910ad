/* Plain SGD: w -= lr * g. The server folds it into the weighted sum. */
#include "optim/optim.h"

static void sgd_step(const struct ragg__optim_conf *conf, const struct ragg__kernels *k,
                     const struct ragg__optim_block *b, uint64_t step)
{
	(void)step;
	k->sgd(b->w, b->g, 1.0f, conf->lr, b->n);
}

const struct ragg__optim ragg__optim_sgd = {
	.name = "sgd",
	.id = RAGG_OPT_SGD,
	.nstate = 0,
	.flags = RAGG_OPTIM_FUSED_SUM,
	.step = sgd_step,
};
