/* Differential privacy in a job's rounds: a tensor's state, the worker's
 * claims and the agent's check of them (privacy/dp_job.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "agent.h"
#include "compiler.h"
#include "core.h"
#include "engine/engine.h"
#include "log.h"
#include "privacy/dp_job.h"
#include "settings.h"
#include "stages/stage.h"

bool ragg__dp_on(const struct ragg_opts *o)
{
	return ragg__opt_long(o, "RAGG_DP") == 1;
}

int ragg__dp_tensor_init(struct ragg_ctx *ctx, ragg_tensor_t *t)
{
	const struct ragg_opts *o = &ctx->opts;
	if (!ragg__dp_on(o))
		return 0;
	/* Both would be the reducing stage: clipping needs plain floats. */
	if (t->plan.codec.codec || t->plan.wcodec.codec) {
		ragg__error("tensor \"%s\": RAGG_DP=on cannot be combined with RAGG_COMPRESS or "
		            "RAGG_WORKER_COMPRESS (clipping needs the workers' plain gradients)",
		            t->name);
		return RAGG_ERR_CONFIG;
	}
	struct ragg__dp_tensor *dp = calloc(1, sizeof(*dp));
	if (!dp)
		return -ENOMEM;
	t->dp = dp;
	dp->clip = ragg__opt_double(o, "RAGG_DP_CLIP");
	int rc = ragg__dp_multiplier(o, &dp->z);
	if (rc)
		return rc;
	dp->sigma = dp->z * dp->clip;
	struct ragg__plan *pl = &t->plan;
	pl->claims = true;
	if (o->role == RAGG_ROLE_AGENT) {
		size_t n = pl->nchunks * (size_t)ctx->nworkers;
		dp->nworkers = ctx->nworkers;
		ragg__dp_noise_init(&dp->noise);
		dp->bound[0] = calloc(n, sizeof(float));
		dp->bound[1] = calloc(n, sizeof(float));
		dp->factor = calloc(n, sizeof(float));
		dp->taken = calloc((size_t)ctx->nworkers, sizeof(uint64_t));
		dp->ahead = calloc(pl->nchunks, sizeof(*dp->ahead));
		if (!dp->bound[0] || !dp->bound[1] || !dp->factor || !dp->taken || !dp->ahead)
			return -ENOMEM;
		for (int p = 0; p < 2; p++) {
			dp->norm[p] = calloc(n, sizeof(*dp->norm[p]));
			dp->norm_job[p] = calloc(n, sizeof(*dp->norm_job[p]));
			if (!dp->norm[p] || !dp->norm_job[p])
				return -ENOMEM;
		}
	}
	const struct ragg__plan_stage st[] = {
		{ .stage = &ragg__stage_dp_clip, .arg = dp },
		{ .stage = &ragg__stage_dp_noise, .arg = dp },
	};
	return ragg__plan_set_stages(pl, st, 2);
}

void ragg__dp_tensor_free(ragg_tensor_t *t)
{
	struct ragg__dp_tensor *dp = t->dp;
	if (!dp)
		return;
	if (dp->claims_mr) {
		const struct ragg__tp *tp = t->ctx->peers[0].tp;
		tp->ops->mr_dereg(dp->claims_mr);
	}
	free(dp->claims);
	free(dp->bound[0]);
	free(dp->bound[1]);
	free(dp->factor);
	free(dp->taken);
	free(dp->ahead);
	for (int p = 0; p < 2; p++) {
		free(dp->norm[p]);
		free(dp->norm_job[p]);
	}
	free(dp->step_rdp);
	sodium_memzero(&dp->noise, sizeof(dp->noise));
	free(dp);
	t->dp = NULL;
}

void ragg__dp_claims(const struct ragg__kernels *k, const struct ragg__plan *pl, const float *grad,
                     double w, double clip, float *claims)
{
	double total = 0, aw = fabs(w);
	double *norm = NULL;
	/* Per-chunk norms first (kept in the output as floats would round
	 * them twice): in double, on the stack for the usual few chunks. */
	double small[64];
	norm = pl->nchunks <= 64 ? small : malloc(pl->nchunks * sizeof(double));
	for (size_t c = 0; c < pl->nchunks; c++) {
		double v = norm ? aw * k->norm2(grad + c * pl->chunk_elems, ragg__plan_chunk_elems(pl, c))
		                : 0;
		if (norm)
			norm[c] = v;
		total += v * v;
	}
	total = sqrt(total);
	double s = total > clip ? clip / total : 1.0;
	for (size_t c = 0; c < pl->nchunks; c++)
		claims[c] = norm ? (float)(norm[c] * s) : 0.0f;
	if (norm != small)
		free(norm);
}

int ragg__dp_bounds(const float *in, size_t n, double clip, float *out)
{
	double sum = 0;
	bool bad = false;
	/* Read each claim once: the copy is what is checked and enforced. */
	for (size_t i = 0; i < n; i++) {
		float v = in[i];
		out[i] = v;
		bad = bad || !isfinite(v) || v < 0;
		sum += (double)v * v;
	}
	if (bad) {
		memset(out, 0, n * sizeof(float));
		return -1;
	}
	if (sum <= clip * clip)
		return 0;
	/* Scale down; float rounding may leave the total a hair above C^2,
	 * so shrink until it is not. */
	double s = clip / sqrt(sum);
	for (;;) {
		double again = 0;
		for (size_t i = 0; i < n; i++) {
			out[i] = (float)((double)out[i] * s);
			again += (double)out[i] * out[i];
		}
		if (again <= clip * clip)
			return 1;
		s = 1.0 - 0x1p-20;
	}
}

int ragg__dp_worker_push(ragg_tensor_t *t, const float *grad, double weight, int parity)
{
	struct ragg__dp_tensor *dp = t->dp;
	const struct ragg__plan *pl = &t->plan;
	struct ragg__peer *agent = &t->ctx->peers[0];
	size_t bytes = pl->nchunks * sizeof(float);
	int rc;
	if (!dp->claims) {
		struct ragg_tp_rdesc unused;
		const struct ragg__tp *tp = agent->tp;
		if (posix_memalign((void **)&dp->claims, 64, 2 * bytes)) {
			dp->claims = NULL;
			return -ENOMEM;
		}
		if ((rc = tp->ops->mr_reg(tp->dev, dp->claims, 2 * bytes, &dp->claims_mr, &unused))) {
			ragg__error("tensor \"%s\": registering the privacy claims: %s", t->name,
			            ragg_strerror(rc));
			free(dp->claims);
			dp->claims = NULL;
			dp->claims_mr = NULL;
			return rc;
		}
	}
	float *claims = dp->claims + (size_t)parity * pl->nchunks;
	/* A worker runs no engine: its kernels are the CPU's best. */
	const struct ragg__kernels *k = t->ctx->kernels ? t->ctx->kernels : ragg__kernels_get(NULL);
	ragg__dp_claims(k, pl, grad, weight, dp->clip, claims);
	return ragg__post_write(agent, claims, dp->claims_mr, &t->worker.agent_slot,
	                        ragg__plan_worker_claims_off(pl, parity), bytes, 0, 0, 0);
}

void ragg__dp_agent_landed(struct ragg_ctx *ctx, ragg_tensor_t *t, int worker, int parity)
{
	struct ragg__dp_tensor *dp = t->dp;
	const struct ragg__plan *pl = &t->plan;
	if (dp->taken[worker] == t->round + 1)
		return;
	dp->taken[worker] = t->round + 1;
	const float *in = (const float *)((const char *)t->agent->w[worker].slot.mem +
	                                  ragg__plan_worker_claims_off(pl, parity));
	float tmp[64], *b = pl->nchunks <= 64 ? tmp : malloc(pl->nchunks * sizeof(float));
	int rc = -1;
	if (b)
		rc = ragg__dp_bounds(in, pl->nchunks, dp->clip, b);
	else
		ragg__error("tensor \"%s\": no memory for worker %d's claims: its contribution "
		            "counts as 0 this round",
		            t->name, ctx->first_worker + worker);
	for (size_t c = 0; c < pl->nchunks; c++)
		dp->bound[parity][c * (size_t)dp->nworkers + (size_t)worker] = b && rc >= 0 ? b[c] : 0;
	if (b != tmp)
		free(b);
	if (rc && t->round)
		ragg__warn("tensor \"%s\" round %llu: worker %d's norm claims %s", t->name,
		           (unsigned long long)t->round, ctx->first_worker + worker,
		           rc < 0 ? "are not finite and non-negative: its contribution counts as 0"
		                  : "exceed RAGG_DP_CLIP: scaled down to it");
}

void ragg__dp_norm_run(struct ragg__job *job)
{
	struct ragg__dp_norm_job *j = (struct ragg__dp_norm_job *)job;
	*j->res = (struct ragg__dp_norm){
		.in = j->in,
		.n = j->n,
		.round1 = j->round + 1,
		.norm = j->k->norm2(j->in, j->n),
	};
}

void ragg__dp_agent_chunk_landed(struct ragg_ctx *ctx, ragg_tensor_t *t, int worker, int parity,
                                 uint32_t c, const float *in)
{
	struct ragg__dp_tensor *dp = t->dp;
	/* Round 0 (the declaration) is summed unclipped; an engine-less
	 * context would run the job here, on the event loop. */
	if (!dp->norm_job[0] || !t->round || !ctx->engine || !ragg__engine_threads(ctx->engine))
		return;
	size_t at = (size_t)c * (size_t)dp->nworkers + (size_t)worker;
	struct ragg__dp_norm_job *j = &dp->norm_job[parity & 1][at];
	if (j->busy)
		return; /* the last one not reaped yet: the sum takes it itself */
	*j = (struct ragg__dp_norm_job){
		.job = { .fn = ragg__dp_norm_run, .thread_hint = (int)c },
		.k = ctx->kernels,
		.res = &dp->norm[parity & 1][at],
		.in = in,
		.n = ragg__plan_chunk_elems(&t->plan, c),
		.round = t->round,
		.busy = true,
	};
	/* On the chunk's thread, ahead of its sum: the sum reads the result
	 * after it, on the same thread. Failing is harmless. */
	if (!ragg__engine_submit(ctx->engine, &j->job))
		ctx->jobs_out++;
	else
		j->busy = false;
}

bool ragg__dp_job_reaped(struct ragg__job *job)
{
	if (job->fn == ragg__dp_norm_run) {
		((struct ragg__dp_norm_job *)job)->busy = false;
		return true;
	}
	if (job->fn == ragg__dp_ahead_run) {
		((struct ragg__dp_ahead_job *)job)->busy = false;
		return true;
	}
	return false;
}

double ragg__dp_chunk_norm(const struct ragg__dp_tensor *dp, const struct ragg__kernels *k,
                           int parity, uint32_t c, int i, const float *in, size_t n,
                           uint64_t round)
{
	if (dp->norm[0] && i < dp->nworkers) {
		const struct ragg__dp_norm *r =
		    &dp->norm[parity & 1][(size_t)c * (size_t)dp->nworkers + (size_t)i];
		if (r->round1 == round + 1 && r->in == in && r->n == n)
			return r->norm;
	}
	return k->norm2(in, n);
}

void ragg__dp_agent_summed(struct ragg_ctx *ctx, ragg_tensor_t *t, uint32_t c, uint64_t round)
{
	struct ragg__dp_tensor *dp = t->dp;
	const struct ragg__plan *pl = &t->plan;
	/* The noise stage is the plan's second; its state holds the noise. */
	void *state = t->agent->chunk_state[(size_t)c * (size_t)pl->nstages + 1];
	if (!(dp->sigma > 0) || !state)
		return;
	struct ragg__dp_ahead_job *j = &dp->ahead[c];
	if (j->busy)
		return; /* the last one not reaped yet: the round draws inline */
	*j = (struct ragg__dp_ahead_job){
		.job = { .fn = ragg__dp_ahead_run, .thread_hint = (int)c },
		.dp = dp,
		.state = state,
		.tensor = (uint32_t)t->id,
		.chunk = c,
		.round = round + 1,
		.n = ragg__plan_chunk_elems(pl, c),
		.busy = true,
	};
	/* Queued on the chunk's thread behind the chunk's fan-out (not in
	 * front of it: the workers wait for that), and ahead of the next
	 * round's sum of c. Failing is harmless: that round draws its noise
	 * inline. */
	if (!ragg__engine_submit(ctx->engine, &j->job))
		ctx->jobs_out++;
	else
		j->busy = false;
}

uint64_t ragg__dp_steps(const struct ragg_ctx *ctx)
{
	uint64_t n = 0;
	for (int i = 0; i < ctx->ntensors; i++)
		n += ctx->tensors[i]->round ? ctx->tensors[i]->round - 1 : 0;
	return n;
}

RAGG_EXPORT int ragg_dp_spent(const ragg_ctx_t *ctx, double *eps, uint64_t *steps)
{
	if (!ctx || !eps)
		return -EINVAL;
	const struct ragg_opts *o = &ctx->opts;
	uint64_t n = ragg__dp_steps(ctx);
	if (steps)
		*steps = n;
	if (!ragg__dp_on(o)) {
		*eps = INFINITY;
		return 0;
	}
	double z;
	int rc = ragg__dp_multiplier(o, &z);
	if (rc)
		return rc;
	return ragg_dp_epsilon(ragg__opt_double(o, "RAGG_DP_SAMPLE_RATE"), z, n,
	                       ragg__opt_double(o, "RAGG_DP_DELTA"), eps, NULL);
}
