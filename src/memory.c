/*
 * ragg_mem_alloc(): memory that the transport to the agent shares with it,
 * so that the agent reads gradients and writes parameters in place, and
 * the peer-mapping helper the roles use for in-place sums and copies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "core.h"
#include "log.h"

/* The transport whose memory a worker's buffers should be in: the one to
 * its agent. Other roles get plain memory. */
static struct ragg__tp *alloc_tp(struct ragg_ctx *ctx)
{
	if (ctx->opts.role != RAGG_ROLE_WORKER || !ctx->npeers || !ctx->peers[0].tp)
		return NULL;
	struct ragg__tp *tp = ctx->peers[0].tp;
	return RAGG_TP_HAS_OP(tp->ops, mem_alloc) ? tp : NULL;
}

RAGG_EXPORT void *ragg_mem_alloc(ragg_ctx_t *ctx, size_t bytes)
{
	if (!ctx || !bytes)
		return NULL;
	if (ctx->nallocs == ctx->allocs_cap) {
		int cap = ctx->allocs_cap ? ctx->allocs_cap * 2 : 8;
		struct ragg__alloc *a = realloc(ctx->allocs, (size_t)cap * sizeof(*a));
		if (!a)
			return NULL;
		ctx->allocs = a;
		ctx->allocs_cap = cap;
	}
	struct ragg__alloc a = { .len = bytes, .owner = alloc_tp(ctx) };
	if (a.owner)
		a.mem = a.owner->ops->mem_alloc(a.owner->dev, bytes);
	if (!a.mem) {
		/* Still usable, only not shared: pushes from it are copied. */
		a.owner = NULL;
		if (posix_memalign(&a.mem, 4096, bytes))
			return NULL;
		memset(a.mem, 0, bytes);
	}
	ctx->allocs[ctx->nallocs++] = a;
	return a.mem;
}

static void release(struct ragg__alloc *a)
{
	if (a->owner)
		a->owner->ops->mem_free(a->owner->dev, a->mem, a->len);
	else
		free(a->mem);
}

static bool inside(const struct ragg__alloc *a, const void *p, size_t len)
{
	uintptr_t b = (uintptr_t)a->mem, q = (uintptr_t)p;
	return q >= b && q - b <= a->len && len <= a->len - (q - b);
}

RAGG_EXPORT int ragg_mem_free(ragg_ctx_t *ctx, void *p)
{
	if (!ctx || !p)
		return -EINVAL;
	for (int i = 0; i < ctx->nallocs; i++) {
		struct ragg__alloc *a = &ctx->allocs[i];
		if (a->mem != p)
			continue;
		for (int k = 0; k < ctx->ntensors; k++) {
			ragg_tensor_t *t = ctx->tensors[k];
			if (t->worker.params && inside(a, t->worker.params, t->plan.bytes)) {
				ragg__error("ragg_mem_free: tensor \"%s\" has its parameters "
				            "there; ragg_finalize releases it with the context",
				            t->name);
				return -EBUSY;
			}
			if (t->worker.grad && inside(a, t->worker.grad, t->plan.bytes)) {
				if (t->worker.pushed) {
					ragg__error("ragg_mem_free: tensor \"%s\" is being "
					            "pushed from there; pull first",
					            t->name);
					return -EBUSY;
				}
				t->ctx->peers[0].tp->ops->mr_dereg(t->worker.grad_mr);
				t->worker.grad_mr = NULL;
				t->worker.grad = NULL;
				t->worker.grad_announced = false;
			}
		}
		release(a);
		ctx->allocs[i] = ctx->allocs[--ctx->nallocs];
		return 0;
	}
	ragg__error("ragg_mem_free: %p did not come from ragg_mem_alloc", p);
	return -EINVAL;
}

void ragg__allocs_free(struct ragg_ctx *ctx)
{
	for (int i = 0; i < ctx->nallocs; i++)
		release(&ctx->allocs[i]);
	free(ctx->allocs);
	ctx->allocs = NULL;
	ctx->nallocs = ctx->allocs_cap = 0;
}

const struct ragg__alloc *ragg__alloc_shared(const struct ragg_ctx *ctx, const void *p, size_t len)
{
	for (int i = 0; i < ctx->nallocs; i++) {
		const struct ragg__alloc *a = &ctx->allocs[i];
		if (a->owner && RAGG_TP_HAS_OP(a->owner->ops, peer_map) && inside(a, p, len))
			return a;
	}
	return NULL;
}

int ragg__peer_map(struct ragg__peer *p, const struct ragg_tp_rdesc *remote, size_t need,
                   void **ptr)
{
	void *m;
	size_t len;
	if (!p->ep || !p->tp || !RAGG_TP_HAS_OP(p->tp->ops, peer_map) || !remote->len)
		return -EOPNOTSUPP;
	int rc = p->tp->ops->peer_map(p->ep, remote, &m, &len);
	if (rc)
		return rc;
	if (len < need) {
		ragg__error("%s %d's region is %zu bytes, %zu expected", ragg__role_name(p->role),
		            p->rank, len, need);
		return RAGG_ERR_BOUNDS;
	}
	*ptr = m;
	return 0;
}

uint8_t *ragg__peer_region_map(struct ragg__peer *p, struct ragg__peer_region *r, size_t need)
{
	void *m;
	if (r->at || r->never)
		return r->at;
	int rc = ragg__peer_map(p, &r->rdesc, need, &m);
	if (!rc)
		r->at = m;
	else if (ragg__peer_map_final(rc))
		r->never = true;
	return r->at;
}

bool ragg__peer_map_final(int rc)
{
	/* The region is not shared or too short, or the descriptor is not
	 * one: asking again gives the same answer. Anything else (a full
	 * control queue, memory) may pass: writes carry on meanwhile. */
	return rc == -EOPNOTSUPP || rc == RAGG_ERR_BOUNDS || rc == -EINVAL || rc == RAGG_ERR_KEY;
}
