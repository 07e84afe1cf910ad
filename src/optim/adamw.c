/*
 * AdamW (Loshchilov and Hutter), as torch.optim.AdamW computes it: the
 * weight decay is decoupled from the gradient, w -= lr * wd * w, before
 * Adam's bias-corrected step on g itself (see adam.c). PyTorch's default
 * wd is 0.01; here RAGG_WEIGHT_DECAY defaults to 0 for every optimizer.
 */
#include "optim/optim.h"

static void adamw_step(const struct ragg__optim_conf *conf, const struct ragg__kernels *k,
                       const struct ragg__optim_block *b, uint64_t step)
{
	struct ragg__adam_coef c;
	ragg__optim_adam_coef(conf, step, 1, &c);
	k->adam(b->w, b->state[0], b->state[1], b->g, &c, b->n);
}

const struct ragg__optim ragg__optim_adamw = {
	.name = "adamw",
	.id = RAGG_OPT_ADAMW,
	.nstate = 2,
	.flags = 0,
	.step = adamw_step,
};
