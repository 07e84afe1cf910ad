/*
 * The roles as tables: what the progress loop hands to the role this
 * process plays. Shared code dispatches through ctx->role and never
 * branches on the role itself; an operation a role has no use for is NULL.
 */
#ifndef RAGG_ROLE_H
#define RAGG_ROLE_H

#include <stddef.h>
#include <stdint.h>

#include <ragg/ragg.h>

struct ragg_ctx;
struct ragg__peer;
struct ragg__msg;
struct ragg__job;

struct ragg__role_ops {
	const char *name;
	/* A control message from peer p (not a goodbye, which the loop keeps). */
	void (*on_msg)(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);
	/* A write of p's landed: its immediate and length, unchecked. */
	void (*on_landed)(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len);
	/* One of our signalled writes finished. */
	void (*on_write_done)(struct ragg_ctx *ctx, uint64_t cookie);
	/* An engine job of ours finished; reaped on the context's thread. */
	void (*on_job)(struct ragg_ctx *ctx, struct ragg__job *job);
	/* Mappings of p's regions that were in progress got their answer. */
	void (*on_peer_mapped)(struct ragg_ctx *ctx, struct ragg__peer *p);
};

extern const struct ragg__role_ops ragg__worker_role;
extern const struct ragg__role_ops ragg__agent_role;
extern const struct ragg__role_ops ragg__server_role;

/* The table of `role`, or NULL for none. */
const struct ragg__role_ops *ragg__role_ops_of(enum ragg_role role);

#endif
