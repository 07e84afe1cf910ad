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
	if (ctx->engine) {
		r->mem = ragg__engine_alloc(ctx->engine, len, chunk);
		r->engine_mem = true;
	} else if (posix_memalign(&r->mem, 4096, len ? len : 1)) {
		r->mem = NULL;
	}
	if (!r->mem) {
		ragg__error("cannot allocate %zu bytes for a slot region", len);
		return -ENOMEM;
	}
	if (!r->engine_mem)
		memset(r->mem, 0, len);
	if ((rc = ctx->tp->mr_reg(ctx->dev, r->mem, len, &r->mr, &r->rdesc))) {
		ragg__error("registering %zu bytes: %s", len, ragg_strerror(rc));
		ragg__region_free(ctx, r);
		return rc;
	}
	return 0;
}

void ragg__region_free(struct ragg_ctx *ctx, struct ragg__region *r)
{
	if (r->mr)
		ctx->tp->mr_dereg(r->mr);
	if (r->engine_mem)
		ragg__engine_free(ctx->engine, r->mem, r->len);
	else
		free(r->mem);
	memset(r, 0, sizeof(*r));
}
