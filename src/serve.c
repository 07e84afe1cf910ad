/* ragg_serve: agents and servers run the job's rounds until every peer
 * below them said goodbye, then say goodbye upwards. */
#include <errno.h>

#include "compiler.h"
#include "core.h"
#include "log.h"

/* Agents wait for their workers, servers for every agent. */
static bool all_below_done(void *arg)
{
	struct ragg_ctx *ctx = arg;
	for (int i = 0; i < ctx->npeers; i++) {
		const struct ragg__peer *p = &ctx->peers[i];
		bool below = ctx->opts.role == RAGG_ROLE_AGENT ? p->role == RAGG_ROLE_WORKER : true;
		if (below && !p->said_bye && !p->left)
			return false;
	}
	return true;
}

RAGG_EXPORT int ragg_serve(ragg_ctx_t *ctx)
{
	int rc;
	if (!ctx)
		return -EINVAL;
	if (ctx->opts.role == RAGG_ROLE_WORKER) {
		ragg__error("ragg_serve: workers do not serve");
		return RAGG_ERR_ROLE;
	}
	/* Workers may pause between rounds (evaluation, checkpoints): the
	 * deadline here is RAGG_SERVE_TIMEOUT_MS. A peer that dies is seen
	 * at once through its connection. */
	if ((rc = ragg__wait_for(ctx, all_below_done, ctx, "serving", ctx->opts.serve_timeout_ms)))
		return rc;
	if (ctx->opts.role == RAGG_ROLE_AGENT) {
		struct ragg__msg bye = { .type = RAGG_MSG_BYE };
		for (int s = 0; s < ctx->opts.servers; s++)
			if ((rc = ragg__post_msg(&ctx->peers[ctx->nworkers + s], &bye)))
				return rc;
	}
	ctx->leaving = true;
	return ragg__wait(ctx, ragg__queues_drained, ctx, "finishing");
}
