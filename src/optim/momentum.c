/* Heavy-ball momentum (PyTorch's SGD with momentum, no dampening):
 * v = mu * v + g; w -= lr * v. State: v. */
#include "optim/optim.h"

static void momentum_step(const struct ragg__optim_conf *conf, const struct ragg__kernels *k,
                          const struct ragg__optim_block *b, uint64_t step)
{
	(void)step;
	k->momentum(b->w, b->state[0], b->g, 1.0f, conf->lr, conf->momentum, b->n);
}

const struct ragg__optim ragg__optim_momentum = {
	.name = "momentum",
	.id = RAGG_OPT_MOMENTUM,
	.nstate = 1,
	.flags = 0,
	.step = momentum_step,
};
