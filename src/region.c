/* Registered regions: allocated once at declare time (on the engine's NUMA
 * node for agents and servers), registered once, released at finalize. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "log.h"

int ragg__region_alloc(struct ragg_ctx *ctx, size_t len, size_t chunk, struct ragg__region *r)
{
	int rc;
	memset(r, 0, sizeof(*r));
	r->len = len;
	/* Memory a transport provides (shm: shared with same-host peers)
	 * wins, since only there can those peers write; otherwise the
	 * engine's, on its NUMA node. */
	for (int i = 0; i < ctx->ntp && !r->mem; i++)
		if (RAGG_TP_HAS_OP(ctx->tps[i].ops, mem_alloc) &&
		    (r->mem = ctx->tps[i].ops->mem_alloc(ctx->tps[i].dev, len)))
			r->owner = &ctx->tps[i];
	if (!r->mem && ctx->engine)
		r->mem = ragg__engine_alloc(ctx->engine, len, chunk);
	if (!r->mem && !ctx->engine && posix_memalign(&r->mem, 4096, len ? len : 1) == 0)
		memset(r->mem, 0, len);
	if (!r->mem) {
		ragg__error("cannot allocate %zu bytes for a slot region", len);
		return -ENOMEM;
	}
	for (int i = 0; i < ctx->ntp; i++) {
		struct ragg__tp *tp = &ctx->tps[i];
		if ((rc = tp->ops->mr_reg(tp->dev, r->mem, len, &r->mr[i], &r->rdesc[i]))) {
			ragg__error("registering %zu bytes with %s: %s", len, tp->ops->name,
			            ragg_strerror(rc));
			ragg__region_free(ctx, r);
			return rc;
		}
	}
	return 0;
}

void ragg__region_free(struct ragg_ctx *ctx, struct ragg__region *r)
{
	for (int i = 0; i < ctx->ntp; i++)
		if (r->mr[i])
			ctx->tps[i].ops->mr_dereg(r->mr[i]);
	if (r->owner)
		r->owner->ops->mem_free(r->owner->dev, r->mem, r->len);
	else if (ctx->engine)
		ragg__engine_free(ctx->engine, r->mem, r->len);
	else
		free(r->mem);
	memset(r, 0, sizeof(*r));
}
