/*
 * Adam (Kingma and Ba), as torch.optim.Adam computes it: with g' = g +
 * wd * w (weight decay as an L2 term, when RAGG_WEIGHT_DECAY > 0),
 * m = b1*m + (1-b1)*g', v = b2*v + (1-b2)*g'^2, and bias-corrected
 * w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 * t counts this chunk's steps: chunks of one tensor are updated
 * independently and each keeps its own count. State: m, v.
 */
#include <math.h>

#include "optim/optim.h"

void ragg__optim_adam_coef(const struct ragg__optim_conf *conf, uint64_t t, int decoupled,
                           struct ragg__adam_coef *out)
{
	double b1 = conf->beta1, b2 = conf->beta2, lr = conf->lr, wd = conf->weight_decay;
	double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
	out->b1 = (float)b1;
	out->a1 = (float)(1.0 - b1);
	out->b2 = (float)b2;
	out->a2 = (float)(1.0 - b2);
	out->eps = conf->eps;
	out->step = (float)(lr / bc1);
	out->rsbc2 = (float)(1.0 / sqrt(bc2));
	out->l2 = decoupled ? 0.0f : (float)wd;
	out->keep = decoupled ? (float)(1.0 - lr * wd) : 1.0f;
}

static void adam_step(const struct ragg__optim_conf *conf, const struct ragg__kernels *k,
                      const struct ragg__optim_block *b, uint64_t step)
{
	struct ragg__adam_coef c;
	ragg__optim_adam_coef(conf, step, 0, &c);
	k->adam(b->w, b->state[0], b->state[1], b->g, &c, b->n);
}

const struct ragg__optim ragg__optim_adam = {
	.name = "adam",
	.id = RAGG_OPT_ADAM,
	.nstate = 2,
	.flags = 0,
	.step = adam_step,
};
