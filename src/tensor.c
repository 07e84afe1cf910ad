/* Tensor layout shared by every role, and the worker's collective
 * ragg_tensor_declare. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "core.h"
#include "stale.h"
#include "log.h"
#include "settings.h"
#include "privacy/dp_job.h"
#include "privacy/sa_job.h"

int ragg__tensor_new(struct ragg_ctx *ctx, int id, const char *name, uint64_t name_hash,
                     size_t count, size_t chunk_bytes, ragg_tensor_t **out)
{
	struct ragg__plan plan;
	int rc = ragg__plan_init(&plan, count, chunk_bytes, ctx->opts.servers);
	if (rc) {
		ragg__error("tensor \"%s\": %zu floats in %zu-byte chunks over %d servers: %s "
		            "(at most %u chunks; a chunk is a multiple of 4 bytes, at least %u)",
		            name ? name : "", count, chunk_bytes, ctx->opts.servers,
		            ragg_strerror(rc), RAGG_IMM_MAX_CHUNKS, RAGG_PLAN_MIN_CHUNK_BYTES);
		return rc;
	}
	ragg_tensor_t *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ctx = ctx;
	t->id = id;
	snprintf(t->name, sizeof(t->name), "%s", name ? name : "");
	t->name_hash = name_hash;
	t->plan = plan;
	struct ragg__codec_spec cs;
	if ((rc = ragg__opts_codec(&ctx->opts, &cs)) || (rc = ragg__plan_set_codec(&t->plan, &cs))) {
		ragg__error("tensor \"%s\": RAGG_COMPRESS: %s", t->name, ragg_strerror(rc));
		free(t);
		return rc;
	}
	if ((rc = ragg__opts_worker_codec(&ctx->opts, &cs)) ||
	    (rc = ragg__plan_set_worker_codec(&t->plan, &cs))) {
		ragg__error("tensor \"%s\": RAGG_WORKER_COMPRESS: %s", t->name, ragg_strerror(rc));
		free(t);
		return rc;
	}
	uint64_t resync;
	if ((rc = ragg__opts_pull_codec(&ctx->opts, &cs, &resync)) ||
	    (rc = ragg__plan_set_pull(&t->plan, &cs, resync))) {
		ragg__error("tensor \"%s\": RAGG_COMPRESS_PULL: %s", t->name, ragg_strerror(rc));
		free(t);
		return rc;
	}
	if ((rc = ragg__dp_tensor_init(ctx, t)) || (rc = ragg__sa_tensor_init(ctx, t))) {
		ragg__sa_tensor_free(t);
		ragg__dp_tensor_free(t);
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void ragg__tensor_free(ragg_tensor_t *t)
{
	struct ragg_ctx *ctx = t->ctx;
	if (t->agent)
		ragg__agent_tensor_free(ctx, t);
	if (t->server)
		ragg__server_tensor_free(ctx, t);
	ragg__stale_free(t);
	const struct ragg__tp *tp = ctx->peers[0].tp;
	if (t->worker.params_mr)
		tp->ops->mr_dereg(t->worker.params_mr);
	if (t->worker.grad_mr)
		tp->ops->mr_dereg(t->worker.grad_mr);
	if (t->worker.weight_mr)
		tp->ops->mr_dereg(t->worker.weight_mr);
	if (t->worker.enc_mr)
		tp->ops->mr_dereg(t->worker.enc_mr);
	free(t->worker.enc);
	free(t->worker.resid);
	free(t->worker.weight_src);
	free(t->worker.copy_pending);
	ragg__dp_tensor_free(t);
	ragg__sa_tensor_free(t);
	free(t);
}

static bool acked(void *arg)
{
	return ((ragg_tensor_t *)arg)->worker.acked;
}

RAGG_EXPORT int ragg_tensor_declare(ragg_ctx_t *ctx, const char *name, float *params, size_t count,
                                    ragg_tensor_t **out)
{
	ragg_tensor_t *t;
	struct ragg_tp_rdesc unused;
	int rc;

	if (!ctx || !name || !out || (!params && count))
		return -EINVAL;
	if (ctx->opts.role != RAGG_ROLE_WORKER) {
		ragg__error("ragg_tensor_declare: only workers declare tensors; agents and servers "
		            "learn them in ragg_serve");
		return RAGG_ERR_ROLE;
	}
	if (ctx->failed)
		return ctx->failed;
	if (ctx->ntensors == RAGG_MAX_TENSORS) {
		ragg__error("ragg_tensor_declare: at most %d tensors", RAGG_MAX_TENSORS);
		return -ENOSPC;
	}
	if ((rc = ragg__tensor_new(ctx, ctx->ntensors, name, ragg__name_hash(name), count,
	                           ctx->opts.chunk_bytes, &t)))
		return rc;
	t->worker.params = params;
	rc = -ENOMEM;
	if (posix_memalign((void **)&t->worker.weight_src, 64, 2 * sizeof(double)))
		goto err;
	/* A worker talks to its agent only, over one transport. */
	const struct ragg__tp *tp = ctx->peers[0].tp;
	if ((rc = tp->ops->mr_reg(tp->dev, params, t->plan.bytes, &t->worker.params_mr,
	                          &t->worker.params_rdesc)))
		goto err_reg;
	if ((rc = tp->ops->mr_reg(tp->dev, t->worker.weight_src, 2 * sizeof(double),
	                          &t->worker.weight_mr, &unused)))
		goto err_reg;
	/* With a codec, pushes travel from the encoding buffer; the residual
	 * of error feedback is this worker's, for the whole tensor. */
	if (t->plan.wcodec.codec) {
		size_t eb = ragg__plan_wcontrib_bytes(&t->plan);
		rc = -ENOMEM;
		if (posix_memalign(&t->worker.enc, 64, eb))
			goto err;
		memset(t->worker.enc, 0, eb);
		if (t->plan.wcodec.error_feedback &&
		    !(t->worker.resid = calloc(t->plan.count, sizeof(float))))
			goto err;
		if ((rc = tp->ops->mr_reg(tp->dev, t->worker.enc, eb, &t->worker.enc_mr, &unused)))
			goto err_reg;
	}
	/* A push is one weight (and, with RAGG_DP, the claims) plus every
	 * chunk; the queue holds a round. */
	if ((rc = ragg__queue_reserve(&ctx->peers[0],
	                              (uint32_t)t->plan.nchunks + 2 + (t->dp ? 1 : 0))))
		goto err;
	ctx->tensors[ctx->ntensors++] = t;

	struct ragg__msg m = {
		.type = RAGG_MSG_DECLARE,
		.tensor = (uint8_t)t->id,
		.count = t->plan.count,
		.chunk_bytes = t->plan.chunk_bytes,
		.name_hash = t->name_hash,
		.rdesc = t->worker.params_rdesc,
	};
	if ((rc = ragg__post_msg(&ctx->peers[0], &m)) ||
	    (rc = ragg__wait(ctx, acked, t, "declaring a tensor")))
		return rc;
	if (t->worker.ack_status) {
		ragg__error("tensor \"%s\": %s", name, ragg_strerror(t->worker.ack_status));
		return t->worker.ack_status;
	}
	if (t->worker.join_round > 1) {
		/* Joining a running job (RAGG_ON_WORKER_LOSS=continue): the agent
		 * sends the current parameters as the round's before the one we
		 * join at. */
		t->round = t->worker.join_round - 2;
		if ((rc = ragg_pull(t, params)))
			return rc;
		*out = t;
		return 0;
	}
	/* Round 0 sets the parameters everywhere to worker 0's: its weight is
	 * 1 and every other worker's 0, so the servers' weighted mean is
	 * exactly worker 0's values. */
	/* Zero the others' values first: they are about to be replaced, and
	 * 0 * NaN would poison the sum. */
	if (ctx->opts.rank != 0)
		memset(params, 0, t->plan.bytes);
	if ((rc = ragg_pushpull(t, params, ctx->opts.rank == 0 ? 1.0 : 0.0, params)))
		return rc;
	*out = t;
	return 0;
err_reg:
	ragg__error("tensor \"%s\": registering memory: %s", name, ragg_strerror(rc));
err:
	ragg__tensor_free(t);
	return rc;
}
