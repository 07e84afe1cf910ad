/*
 * The roles as tables: what the progress loop hands to the role this
 * process plays. Shared code dispatches through ctx->role and never
 * branches on the role itself; an operation a role has no use for is NULL.
 */
#ifndef RAGG_ROLE_H
#define RAGG_ROLE_H

#include <stdbool.h>
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

/*
 * Declarations from below, the same for agents (from their workers) and
 * servers (from the agents): tensors are declared in order, each sender
 * declares each once, the senders must agree on the name, the count and
 * the chunk size, and a sender may report a failure of its own. What each
 * role keeps of it is a struct ragg__decl in its per-tensor state; what
 * differs is a table of four operations.
 */
struct ragg__decl {
	int declared; /* senders whose declaration arrived */
	bool mismatch; /* one differed in name, count or chunk size */
	int status; /* a failure a sender reported, or ours; 0: none */
	bool *from; /* per sender: its declaration arrived */
};

struct ragg_tensor;
struct ragg__decl_ops {
	const char *sender; /* "worker", "agent": for the log */
	/* Give a new tensor this role's state; 0 or a negative code. */
	int (*tensor_init)(struct ragg_ctx *ctx, struct ragg_tensor *t);
	struct ragg__decl *(*decl)(struct ragg_tensor *t);
	/* Sender `index` declared: keep what its message carries; 0, or
	 * RAGG_ERR_PROTO when it lacks what this role needs. */
	int (*keep)(struct ragg_ctx *ctx, struct ragg_tensor *t, int index,
	            const struct ragg__msg *m);
	/* Every sender declared (mismatch and status as they stand). */
	void (*complete)(struct ragg_ctx *ctx, struct ragg_tensor *t, const struct ragg__msg *m);
};

/* Handle peer p's declaration m; `senders` is how many declare. A broken
 * one (out of order, twice, invalid) fails the context. */
void ragg__role_on_declare(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m,
                           int senders, const struct ragg__decl_ops *ops);
/* Answer each of the `senders` (ctx->peers[0 .. senders)) with status
 * and, when it is 0, the slot region slot(t, i) it is to write into. */
struct ragg__region;
void ragg__role_ack(struct ragg_ctx *ctx, struct ragg_tensor *t, int senders, int status,
                    const struct ragg__region *(*slot)(struct ragg_tensor *t, int i));
/* Free what the declaration's bookkeeping holds. */
void ragg__decl_free(struct ragg__decl *d);

#endif
