/* The clipped weighted sum (differential privacy, privacy/dp_job.h):
 * out = sum_i w_i f_i g_i with f_i = min(1, b_i / ||w_i g_i||) over this
 * chunk, b_i worker i's claim for it in force this round, plus the
 * round's noise when it was drawn ahead (stages/dp_noise.c). Round 0 (the
 * declaration, worker 0's initial parameters) is summed as it is. */
#include <math.h>

#include "engine/engine.h"
#include "privacy/dp_job.h"
#include "stages/stage.h"

/* Up to this many workers per agent the noise joins the sum's pass. */
#define FUSE_MAX 64

static void clip_run(struct ragg__stage_ctx *c)
{
	const struct ragg__dp_tensor *dp = c->arg;
	if (c->round == 0) {
		c->k->sum_weighted(c->out, c->in, c->w, c->nin, c->n);
		return;
	}
	const float *b = dp->bound[c->parity & 1] + (size_t)c->chunk * (size_t)dp->nworkers;
	float *f = dp->factor + (size_t)c->chunk * (size_t)dp->nworkers;
	for (int i = 0; i < c->nin; i++) {
		/* Mostly taken as the contribution landed (privacy/dp_job.c). */
		double norm = fabs((double)c->w[i]) * ragg__dp_chunk_norm(dp, c->k, c->parity, c->chunk,
		                                                          i, c->in[i], c->n, c->round);
		if (norm <= b[i]) {
			f[i] = c->w[i];
			continue;
		}
		/* Rounded toward 0, so that |w f| ||g|| stays within the claim. */
		float s = isfinite(norm) ? nextafterf((float)(b[i] / norm), 0.0f) : 0.0f;
		f[i] = s > 0 ? c->w[i] * s : 0.0f;
	}
	/* The round's noise, drawn ahead, summed in the same pass as one more
	 * input of weight 1 (the noise stage then skips it): one pass over
	 * the chunk fewer. */
	struct ragg__dp_ahead *a = dp->ahead ? dp->ahead[c->chunk].state : NULL;
	if (a && dp->sigma > 0 && a->round == c->round && c->nin < FUSE_MAX) {
		const float *in[FUSE_MAX + 1];
		float fw[FUSE_MAX + 1];
		for (int i = 0; i < c->nin; i++) {
			in[i] = c->in[i];
			fw[i] = f[i];
		}
		in[c->nin] = a->noise;
		fw[c->nin] = 1.0f;
		c->k->sum_weighted(c->out, in, fw, c->nin + 1, c->n);
		a->added = c->round;
		return;
	}
	c->k->sum_weighted(c->out, c->in, f, c->nin, c->n);
}

const struct ragg__stage ragg__stage_dp_clip = {
	.name = "dp_clip",
	.flags = RAGG_STAGE_IN_PLACE | RAGG_STAGE_REDUCE,
	.run = clip_run,
};
