/* The role tables (role.h), one per role, defined in each role's file,
 * and what agents and servers share: the declaration from below. */
#include <errno.h>
#include <stdlib.h>

#include "core.h"
#include "log.h"
#include "role.h"

const struct ragg__role_ops *ragg__role_ops_of(enum ragg_role role)
{
	switch (role) {
	case RAGG_ROLE_WORKER:
		return &ragg__worker_role;
	case RAGG_ROLE_AGENT:
		return &ragg__agent_role;
	case RAGG_ROLE_SERVER:
		return &ragg__server_role;
	default:
		return NULL;
	}
}

void ragg__decl_free(struct ragg__decl *d)
{
	free(d->from);
	d->from = NULL;
}

/* Tensor m->tensor: the next one (created here), or one declared before. */
static ragg_tensor_t *declared_tensor(struct ragg_ctx *ctx, struct ragg__peer *p,
                                      const struct ragg__msg *m, int senders,
                                      const struct ragg__decl_ops *ops)
{
	ragg_tensor_t *t = NULL;
	int rc;
	if (m->tensor < ctx->ntensors)
		return ctx->tensors[m->tensor];
	if (m->tensor != ctx->ntensors || ctx->ntensors >= RAGG_MAX_TENSORS) {
		ragg__error("%s %d declared tensor %u out of order", ops->sender, p->rank,
		            m->tensor);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return NULL;
	}
	rc = ragg__tensor_new(ctx, m->tensor, NULL, m->name_hash, m->count, m->chunk_bytes, &t);
	if (!rc && !(rc = ops->tensor_init(ctx, t))) {
		struct ragg__decl *d = ops->decl(t);
		if (!(d->from = calloc((size_t)senders, sizeof(*d->from))))
			rc = -ENOMEM;
	}
	if (rc) {
		if (t)
			ragg__tensor_free(t);
		ragg__error("%s %d declared an invalid tensor: %s", ops->sender, p->rank,
		            ragg_strerror(rc));
		ragg__fail(ctx, rc);
		return NULL;
	}
	ctx->tensors[ctx->ntensors++] = t;
	return t;
}

void ragg__role_on_declare(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m,
                           int senders, const struct ragg__decl_ops *ops)
{
	ragg_tensor_t *t = declared_tensor(ctx, p, m, senders, ops);
	if (!t)
		return;
	struct ragg__decl *d = ops->decl(t);
	/* Once per sender: a second declaration would count twice and redo
	 * the set-up of a tensor whose jobs may be running. */
	if (d->from[p->index] || d->declared >= senders) {
		ragg__error("%s %d declared tensor %d twice", ops->sender, p->rank, t->id);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	if (m->count != t->plan.count || m->chunk_bytes != t->plan.chunk_bytes ||
	    m->name_hash != t->name_hash) {
		ragg__error("%s %d declared tensor %d with %llu floats in %llu-byte chunks, "
		            "others differently (name or size)",
		            ops->sender, p->rank, t->id, (unsigned long long)m->count,
		            (unsigned long long)m->chunk_bytes);
		d->mismatch = true;
	}
	if (m->status && !d->status)
		d->status = m->status;
	if (ops->keep(ctx, t, p->index, m)) {
		ragg__error("%s %d declared tensor %d without the region it must name",
		            ops->sender, p->rank, t->id);
		ragg__fail(ctx, RAGG_ERR_PROTO);
		return;
	}
	d->from[p->index] = true;
	if (++d->declared == senders)
		ops->complete(ctx, t, m);
}

void ragg__role_ack(struct ragg_ctx *ctx, ragg_tensor_t *t, int senders, int status,
                    const struct ragg__region *(*slot)(ragg_tensor_t *t, int i))
{
	for (int i = 0; i < senders; i++) {
		struct ragg__msg m = { .type = RAGG_MSG_DECLARE_ACK,
			               .tensor = (uint8_t)t->id,
			               .status = status };
		if (!status)
			m.rdesc = *ragg__region_rdesc(slot(t, i), &ctx->peers[i]);
		ragg__post_msg(&ctx->peers[i], &m);
	}
	if (status)
		ragg__error("tensor %d: declaration failed: %s", t->id, ragg_strerror(status));
}
