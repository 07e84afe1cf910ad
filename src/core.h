/*
 * The core's shared structures: the context, its peers and tensors.
 *
 * Threading: one thread (the caller's) owns the context, its peers, queues
 * and tensor bookkeeping, and drives all progress. Engine threads only run
 * jobs, which touch the slot and accumulator memory of one chunk; a chunk's
 * job is submitted after its last contribution landed and reaped before the
 * chunk's results are written anywhere, so no lock guards any of this.
 */
#ifndef RAGG_CORE_H
#define RAGG_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "plan.h"
#include "proto.h"

#include <ragg/ragg.h>
#include <ragg/transport.h>

struct ragg__kv;
struct ragg__boot;
struct ragg__role_ops;
struct ragg__kv_server;

/* A transport this process has open: at most one device each. */
#define RAGG_MAX_TP 3
struct ragg__tp {
	const struct ragg_tp_ops *ops;
	struct ragg_tp_dev *dev;
	int index; /* in ctx->tps */
	char addr[RAGG_TP_ADDR_MAX]; /* where it listens; "" when not */
};

/* A write or control message that met a full queue, kept in order per peer
 * until the transport takes it. The queue is sized when tensors are
 * declared, never per round. */
struct ragg__op {
	bool is_msg;
	uint32_t imm;
	unsigned flags;
	const void *laddr;
	struct ragg_tp_mr *lmr;
	const struct ragg_tp_rdesc *remote;
	uint64_t roff;
	size_t len;
	uint64_t cookie;
	struct ragg__msg msg;
};

struct ragg__peer {
	struct ragg_ctx *ctx;
	struct ragg__tp *tp; /* the transport of this hop, once chosen */
	struct ragg_tp_ep *ep;
	enum ragg_role role;
	int rank;
	int index; /* position among this process's peers of that role */
	bool connected, said_bye, gone; /* connected: handshake done */
	/* An agent's worker out of its group (elastic.c): it said goodbye or
	 * was lost; told: its leaving was judged (failed the job or was
	 * announced) because a round went on without it. */
	bool left, left_told;
	/* A worker that reconnected with the rank of one that left: its
	 * declarations so far; join_msg: its first, waiting for a round
	 * boundary (elastic.c). */
	int join_declared;
	bool join_waiting;
	struct ragg__msg join_msg;
	struct ragg__hs *hs; /* handshake.h */
	uint32_t settings_seen; /* job-wide settings received and agreed */
	bool settings_differ; /* one differed: linger until ours have left */
	struct ragg__op *queue;
	uint32_t qcap, qhead, qlen;
};

/* A peer's region this process writes into or reads from, and its
 * mapping here (RAGG_TP_EV_PEER_MAPPED brings a pending answer). */
struct ragg__peer_region {
	struct ragg_tp_rdesc rdesc; /* as the peer described it; len 0: none yet */
	uint8_t *at; /* mapped here, or NULL */
	bool never; /* it cannot be mapped: writes reach it */
	bool pending; /* asked for, the answer not in yet */
};

/* A registered region of this process, registered with every transport
 * the process has open, since peers of either may write into it. */
struct ragg__region {
	void *mem;
	size_t len;
	struct ragg__tp *owner; /* its mem_alloc gave the memory; NULL: engine */
	struct ragg_tp_mr *mr[RAGG_MAX_TP];
	struct ragg_tp_rdesc rdesc[RAGG_MAX_TP];
};

struct ragg__agent_tensor;
struct ragg__server_tensor;

/* A worker's state for one tensor. */
struct ragg__worker_tensor {
	float *params;
	/* A gradient buffer in ragg_mem_alloc() memory is announced to the
	 * agent; once it answers that it maps it, pushes leave it in place. */
	uint32_t grad_seq; /* announcements sent */
	uint32_t grad_mapped; /* the announcement the agent maps */
	bool grad_announced; /* the registered gradient buffer was announced */
	struct ragg_tp_rdesc grad_rdesc;
	/* The agent's parameter region, when it cannot map ours: we copy
	 * each chunk out of it as it is announced, or, while our mapping of
	 * it is still being set up, once it is (copy_pending). */
	struct ragg__peer_region agent_params;
	uint32_t *copy_pending; /* chunks announced before the mapping */
	uint32_t ncopy_pending;
	struct ragg_tp_mr *params_mr;
	struct ragg_tp_rdesc params_rdesc;
	struct ragg_tp_rdesc agent_slot;
	const float *grad;
	struct ragg_tp_mr *grad_mr;
	double *weight_src; /* [2], registered: the weight travels from here */
	struct ragg_tp_mr *weight_mr;
	/* With a codec (plan.codec): the encoded chunks, contribution layout,
	 * registered; and the error-feedback residual (plan.count floats, or
	 * NULL without error feedback). */
	void *enc;
	struct ragg_tp_mr *enc_mr;
	float *resid;
	uint32_t landed[2];
	uint32_t push_inflight;
	bool pushed; /* this round's push was posted */
	uint64_t join_round; /* joining a running job: 1 + the round it joins at; else 0 */
	bool acked;
	int ack_status;
};

struct ragg_tensor {
	struct ragg_ctx *ctx;
	int id;
	char name[64];
	uint64_t name_hash;
	struct ragg__plan plan; /* fixed at declaration */
	uint64_t round; /* rounds completed */

	struct ragg__worker_tensor worker;
	struct ragg__agent_tensor *agent;
	struct ragg__server_tensor *server;
	struct ragg__dp_tensor *dp; /* RAGG_DP=on (privacy/dp_job.h), else NULL */
	struct ragg__sa_tensor *sa; /* RAGG_SECAGG=on (privacy/sa_job.h), else NULL */
	void *stale; /* asynchronous rounds' state (stale.c), else NULL */
	uint64_t pull_version; /* worker: the version the last pull returned */
};

struct ragg_req {
	ragg_tensor_t *t;
	bool done;
};

#define RAGG_MAX_TENSORS 128

/* The transports a hop may use, in order of preference. */
struct ragg__hop {
	struct ragg__tp *tps[RAGG_MAX_TP];
	int n;
};

struct ragg_ctx {
	struct ragg_opts opts;
	const struct ragg__role_ops *role; /* what this process's role does */
	int hs_dead; /* connections a failed handshake left to close */
	uint64_t hs_next_sweep_us; /* next check of handshake deadlines */
	struct ragg__tp tps[RAGG_MAX_TP];
	int ntp;
	struct ragg__hop hop_workers; /* workers <-> agents */
	struct ragg__hop hop_servers; /* agents <-> servers */
	char tp_names[64]; /* for ragg_transport_name */
	struct ragg__engine *engine;
	const struct ragg__kernels *kernels;
	struct ragg__kv_server *kv_server;

	/* worker: peers[0] is its agent. agent: its workers, then every
	 * server. server: every agent. */
	struct ragg__peer *peers;
	int npeers;
	int first_worker, nworkers; /* agent: its workers' global ranks */

	struct ragg__alloc *allocs; /* ragg_mem_alloc() blocks */
	int nallocs, allocs_cap;

	ragg_tensor_t *tensors[RAGG_MAX_TENSORS];
	int ntensors;
	struct ragg_req req; /* ragg_ipush's single outstanding request */

	uint32_t jobs_out; /* submitted to the engine, not yet reaped */
	bool woken; /* the loop slept since it last reaped (see reap_jobs) */
	uint64_t spin_off_until_us; /* adaptive polling blocks at once until then */
	long nivcsw; /* this thread's preemptions when last looked */
	/* eventfd: the engine's completion fd (ragg__engine_wake_fd), which
	 * the transports' wait watches; readable while finished jobs wait. */
	int wake_fd;
	int failed; /* sticky: first fatal error of the job */
	bool leaving; /* our goodbye is sent: peers closing is expected */
	int byes; /* peers that said goodbye */
	/* RAGG_ON_WORKER_LOSS (elastic.c): workers that leave or are lost. */
	bool on_loss_continue;
	bool check_gradient; /* RAGG_CHECK_GRADIENT=on: workers scan each push */
	int left_untold; /* agent: workers left, not yet judged */
	int lost_worker; /* rank + 1 of the worker whose leaving failed the job; 0: none */
	uint8_t *workers_gone; /* per job-wide worker rank: known to have left */
	int workers_left; /* how many of them */
	int group_left; /* agent: its workers out of its group */
	int join_waiting; /* agent: rejoining workers waiting for a round boundary */
	/* An abort (abort.c): told to, or relayed to, the peers once. */
	bool aborting;
	/* A goodbye with a reason went out (ragg__fail_job): like an abort,
	 * it is given time to leave before teardown. */
	bool told_failure;
	char abort_reason[RAGG_ABORT_REASON_MAX];
	uint8_t abort_len;
	struct ragg_stats stats;
	struct ragg__sa_ctx *sa; /* RAGG_SECAGG=on: keys (privacy/sa_job.h) */
};

/* A block from ragg_mem_alloc(). */
struct ragg__alloc {
	void *mem;
	size_t len;
	struct ragg__tp *owner; /* its mem_alloc gave it; NULL: plain memory */
};

/* memory.c */
/* The ragg_mem_alloc() block holding [p, p + len) if it is shared memory
 * a same-host peer can map, else NULL. */
const struct ragg__alloc *ragg__alloc_shared(const struct ragg_ctx *ctx, const void *p, size_t len);
void ragg__allocs_free(struct ragg_ctx *ctx);
/* Load/store access to at least `need` bytes of a peer's region through
 * its transport: 0 and *ptr; -EINPROGRESS (ask again later); another
 * negative code: never (not mappable, or shorter than need). */
int ragg__peer_map(struct ragg__peer *p, const struct ragg_tp_rdesc *remote, size_t need,
                   void **ptr);
/* Whether a ragg__peer_map() failure is for good (else: try later). */
bool ragg__peer_map_final(int rc);
/* r mapped here: r->at once it is; NULL while it is not yet, or (then
 * r->never is set) never will be. */
uint8_t *ragg__peer_region_map(struct ragg__peer *p, struct ragg__peer_region *r, size_t need);

/* context.c */
const char *ragg__role_name(int role);
struct ragg__peer *ragg__peer_of(struct ragg_ctx *ctx, enum ragg_role role, int rank);
void ragg__fail(struct ragg_ctx *ctx, int status);
/* progress.c: fail with `status` and tell every peer why (a goodbye that
 * carries it), so the job ends with this reason everywhere rather than
 * with a lost peer. */
void ragg__fail_job(struct ragg_ctx *ctx, int status);

/* abort.c: the job aborted by `role` `rank` for `reason` (len bytes):
 * fail with RAGG_ERR_ABORTED and tell every peer but `from` (NULL: all),
 * once. ragg__abort_on_msg handles a received RAGG_MSG_ABORT;
 * ragg__abort_flush lets the news (an abort, or a failure ragg__fail_job
 * told) leave before teardown (at most 1 s). */
void ragg__abort_job(struct ragg_ctx *ctx, const struct ragg__peer *from, int role, int rank,
                     const char *reason, size_t len);
void ragg__abort_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);
void ragg__abort_flush(struct ragg_ctx *ctx);
int ragg__agent_of_worker(const struct ragg_opts *o, int worker);
void ragg__agent_workers(const struct ragg_opts *o, int agent, int *first, int *count);

/* connect.c: listen and publish (agents, servers), then establish every
 * connection of this process's role. */
int ragg__listen_job(struct ragg_ctx *ctx, struct ragg__boot *b);
int ragg__connect_job(struct ragg_ctx *ctx, struct ragg__boot *b);
void ragg__on_connect_request(struct ragg_ctx *ctx, const struct ragg_tp_event *ev);
void ragg__on_connected(struct ragg_ctx *ctx, const struct ragg_tp_event *ev);
/* Settings agreement: the messages each peer is sent (reserve queue room
 * for them), and one received from p. */
uint32_t ragg__agreement_msgs(void);
/* Queue our job-wide settings for peer p (sent once it is connected). */
int ragg__agreement_send(struct ragg_ctx *ctx, struct ragg__peer *p);
void ragg__agreement_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);

/* progress.c */
int ragg__progress(struct ragg_ctx *ctx);
/* Drive progress until done(arg) or RAGG_TIMEOUT_MS without any progress. */
int ragg__wait(struct ragg_ctx *ctx, bool (*done)(void *arg), void *arg, const char *what);
/* A wait condition: every queued operation handed to the transport. */
bool ragg__queues_drained(void *arg);
int ragg__wait_for(struct ragg_ctx *ctx, bool (*done)(void *arg), void *arg, const char *what,
                   int timeout_ms);
int ragg__post_write(struct ragg__peer *p, const void *laddr, struct ragg_tp_mr *lmr,
                     const struct ragg_tp_rdesc *remote, uint64_t roff, size_t len, uint32_t imm,
                     unsigned flags, uint64_t cookie);
int ragg__post_msg(struct ragg__peer *p, const struct ragg__msg *msg);
/* Make room for `more` queued operations on p (called at declare time). */
int ragg__queue_reserve(struct ragg__peer *p, uint32_t more);

/* A landed write that ragg__plan_check_write refused (`why`): logged,
 * counted, and the job fails with RAGG_ERR_PROTO. */
void ragg__write_rejected(struct ragg_ctx *ctx, const struct ragg__peer *p, uint32_t imm,
                          size_t len, const char *why);

/* regions (region.c) */
int ragg__region_alloc(struct ragg_ctx *ctx, size_t len, size_t chunk, struct ragg__region *r);
void ragg__region_free(struct ragg_ctx *ctx, struct ragg__region *r);
/* The region as seen by peer p: our registration with p's transport. */
static inline struct ragg_tp_mr *ragg__region_mr(const struct ragg__region *r,
                                                 const struct ragg__peer *p)
{
	return r->mr[p->tp->index];
}
static inline const struct ragg_tp_rdesc *ragg__region_rdesc(const struct ragg__region *r,
                                                             const struct ragg__peer *p)
{
	return &r->rdesc[p->tp->index];
}

/* transports.c: choosing, opening and waiting on this process's transports. */
int ragg__transports_open(struct ragg_ctx *ctx);
void ragg__transports_close(struct ragg_ctx *ctx);
struct ragg__tp *ragg__tp_of_dev(struct ragg_ctx *ctx, const struct ragg_tp_dev *dev);
void ragg__transports_wait(struct ragg_ctx *ctx, int timeout_ms);

/* role handlers */
void ragg__worker_on_landed(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len);
void ragg__worker_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);
void ragg__worker_on_write_done(struct ragg_ctx *ctx, uint64_t cookie);
void ragg__agent_on_landed(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len);
void ragg__agent_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);
void ragg__agent_on_job(struct ragg_ctx *ctx, struct ragg__job *job);
void ragg__agent_tensor_free(struct ragg_ctx *ctx, ragg_tensor_t *t);
/* Mappings of peer p's regions that were in progress are answered
 * (RAGG_TP_EV_PEER_MAPPED). */
void ragg__agent_on_peer_mapped(struct ragg_ctx *ctx, struct ragg__peer *p);
void ragg__worker_on_peer_mapped(struct ragg_ctx *ctx, struct ragg__peer *p);
void ragg__server_on_landed(struct ragg_ctx *ctx, struct ragg__peer *p, uint32_t imm, size_t len);
void ragg__server_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);
void ragg__server_on_job(struct ragg_ctx *ctx, struct ragg__job *job);
void ragg__server_tensor_free(struct ragg_ctx *ctx, ragg_tensor_t *t);
/* Some agent's contribution to a round landed and the round waits for more. */
bool ragg__server_round_open(struct ragg_ctx *ctx);

/* tensor.c: shared layout for every role. */
int ragg__tensor_new(struct ragg_ctx *ctx, int id, const char *name, uint64_t name_hash,
                     size_t count, size_t chunk_bytes, ragg_tensor_t **out);
void ragg__tensor_free(ragg_tensor_t *t);
#endif
