/*
 * ragg: gradient aggregation for data-parallel training.
 *
 * Workers push gradients into agents with one-sided writes; agents sum them
 * sample-weighted and forward the sums to parameter-server shards, which apply
 * the optimizer and send the parameters back through the agents.
 *
 * Every function returns 0 or a negative code: a negative errno value, or one
 * of ragg's own codes below (from -256 down). Output arguments are written
 * only on success. The library never aborts and never prints unless RAGG_LOG
 * asks it to.
 */
#ifndef RAGG_RAGG_H
#define RAGG_RAGG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RAGG_BUILDING) && defined(__GNUC__)
#define RAGG_API __attribute__((visibility("default")))
#else
#define RAGG_API
#endif

/* ragg's own error codes; ragg_strerror() names every one. */
#define RAGG_ERRNO_MAP(X)                                                                          \
	X(RAGG_ERR_PEER_LOST, -256, "peer lost (connection closed or failed)")                     \
	X(RAGG_ERR_AUTH, -257, "authentication failed (wrong RAGG_JOB_KEY?)")                      \
	X(RAGG_ERR_PROTO, -258, "protocol error (malformed frame)")                                \
	X(RAGG_ERR_VERSION, -259, "protocol version mismatch")                                     \
	X(RAGG_ERR_TIMEOUT, -260, "timed out (see RAGG_TIMEOUT_MS)")                               \
	X(RAGG_ERR_CONFIG, -261, "invalid configuration")                                          \
	X(RAGG_ERR_ROLE, -262, "operation not valid for this process's role")                      \
	X(RAGG_ERR_NO_TRANSPORT, -263, "no usable transport")                                      \
	X(RAGG_ERR_BOUNDS, -264, "remote write outside its slot refused")                          \
	X(RAGG_ERR_KEY, -265, "remote write with a wrong memory key refused")                      \
	X(RAGG_ERR_MISMATCH, -266, "settings or tensor declarations differ between processes")     \
	X(RAGG_ERR_MEMLOCK, -267, "memory registration failed: locked-memory limit (ulimit -l)")   \
	X(RAGG_ERR_NONFINITE, -268, "a gradient or weight is NaN or infinite: refused")            \
	X(RAGG_ERR_BUDGET, -269, "privacy budget spent (RAGG_DP_MAX_EPSILON)")                     \
	X(RAGG_ERR_ABORTED, -270, "the job was aborted (ragg_abort); the log gives who and why")

enum ragg_errno {
#define RAGG_X_ENUM(name, value, text) name = value,
	RAGG_ERRNO_MAP(RAGG_X_ENUM)
#undef RAGG_X_ENUM
};

enum ragg_role {
	RAGG_ROLE_NONE = 0,
	RAGG_ROLE_WORKER,
	RAGG_ROLE_AGENT,
	RAGG_ROLE_SERVER,
};

enum ragg_poll {
	RAGG_POLL_ADAPTIVE = 0, /* spin briefly, then block */
	RAGG_POLL_BUSY,
	RAGG_POLL_BLOCK,
};

enum ragg_optimizer {
	RAGG_OPT_SGD = 0, /* w <- w - lr*g */
	RAGG_OPT_MOMENTUM, /* v <- mu*v + g; w <- w - lr*v */
	RAGG_OPT_ADAM, /* bias-corrected Adam; weight decay added to g (RAGG_BETA1, ...) */
	RAGG_OPT_ADAMW, /* Adam with decoupled weight decay: w <- w - lr*wd*w */
};

/* Bytes of struct ragg_opts's opaque area; see ragg_opts_set(3). */
#define RAGG_OPTS_EXT_BYTES 1024

/*
 * Options for ragg_init(). Fill with ragg_opts_default() (which reads every
 * RAGG_* variable), then override fields, or any setting by name with
 * ragg_opts_set(). `size` must be sizeof(struct ragg_opts) so the struct can
 * grow. Settings without a field of their own are kept in `ext`, which
 * belongs to the library: all zero means every such setting at its default,
 * and the struct may be copied with its value.
 */
struct ragg_opts {
	size_t size;
	enum ragg_role role;
	int rank; /* within the role */
	int workers, agents, servers;
	char root[256]; /* rendezvous host:port */
	char transport[32]; /* "tcp", "verbs", "shm", "auto" or a list: "shm,tcp" */
	size_t chunk_bytes; /* model partition size, default 4 MiB */
	float lr;
	float momentum; /* used with RAGG_OPT_MOMENTUM */
	enum ragg_optimizer optimizer;
	int timeout_ms; /* deadline for every wait */
	enum ragg_poll poll;
	int spin_us; /* adaptive: spin this long before blocking */
	char job_key[128]; /* shared secret; empty: none */
	int serve_timeout_ms; /* agents, servers: longest without any traffic */
	unsigned char ext[RAGG_OPTS_EXT_BYTES]; /* opaque: use ragg_opts_set() */
};

struct ragg_stats {
	size_t size;
	uint64_t rounds; /* rounds completed by this process */
	uint64_t bytes_sent;
	uint64_t bytes_received;
	uint64_t writes_posted;
	uint64_t writes_landed;
	uint64_t frames_rejected; /* malformed or out-of-slot writes refused */
	uint64_t peers_dropped;
	uint64_t wait_blocks; /* times a wait went to sleep */
	uint64_t workers_lost; /* workers that left the job (RAGG_ON_WORKER_LOSS=continue) */
	/* Agents, RAGG_ON_NONFINITE=skip: workers' contributions to a round
	 * (of one tensor) left out for a NaN or an infinity. */
	uint64_t contributions_skipped;
};

typedef struct ragg_ctx ragg_ctx_t;
typedef struct ragg_tensor ragg_tensor_t;
typedef struct ragg_req ragg_req_t;

/* Defaults overridden by RAGG_* environment variables. */
RAGG_API int ragg_opts_default(struct ragg_opts *opts);

/*
 * Set one setting by its variable's name ("RAGG_LR", "RAGG_OPTIMIZER", ...)
 * from text, checked as the environment's value would be; NULL or "" puts
 * it back to its default. 0, -ENOENT for a name that is no setting,
 * RAGG_ERR_CONFIG for a value it does not take, -EINVAL for bad arguments,
 * -ENOSPC when `ext` is full. opts is unchanged on failure.
 */
RAGG_API int ragg_opts_set(struct ragg_opts *opts, const char *name, const char *value);

/* Join the job: rendezvous, connect to peers. opts NULL: all from RAGG_*. */
RAGG_API int ragg_init(const struct ragg_opts *opts, ragg_ctx_t **ctx);

/* Leave the job and release everything (tensors included). */
RAGG_API int ragg_finalize(ragg_ctx_t *ctx);

/*
 * Stop the whole job on purpose: every connected peer is told `reason`
 * (text, cut at 200 bytes; NULL is ""), passes it on, logs it naming this
 * process and fails with RAGG_ERR_ABORTED; then everything is released as
 * by ragg_finalize(); ctx is freed. 0, or -EINVAL (nothing done) for a
 * NULL ctx.
 */
RAGG_API int ragg_abort(ragg_ctx_t *ctx, const char *reason);

/* This process's role and rank. */
RAGG_API enum ragg_role ragg_role(const ragg_ctx_t *ctx);
RAGG_API int ragg_rank(const ragg_ctx_t *ctx);
/* The transport this process uses ("tcp", "verbs", ...). */
RAGG_API const char *ragg_transport_name(const ragg_ctx_t *ctx);
/* The number of processes of `role` in the job; -EINVAL for a NULL ctx or
 * RAGG_ROLE_NONE. */
RAGG_API int ragg_job_size(const ragg_ctx_t *ctx, enum ragg_role role);
/* The options the context runs with, after ragg_init() filled and checked
 * them (job_key comes back empty). Set out->size first; *out is written
 * only on success. */
RAGG_API int ragg_ctx_opts(const ragg_ctx_t *ctx, struct ragg_opts *out);

/*
 * Declare a model tensor of `count` floats; collective over the workers, in
 * the same order with the same name and count (agents and servers learn it
 * in ragg_serve). Registers all memory once. `params` is the buffer that
 * pulls land in; worker 0's values at declare time become the initial
 * parameters everywhere.
 */
RAGG_API int ragg_tensor_declare(ragg_ctx_t *ctx, const char *name, float *params, size_t count,
                                 ragg_tensor_t **tensor);

/*
 * Memory (page aligned, zeroed) that the transport to this worker's agent
 * shares with it when they are on one host (shm). Parameters declared in
 * it are written by the agent in place, and gradients pushed from it are
 * read by the agent in place: no copy on either side. Such a gradient must
 * then stay unchanged until the round's ragg_pull() returns. Elsewhere it is
 * ordinary memory. NULL when out of memory.
 */
RAGG_API void *ragg_mem_alloc(ragg_ctx_t *ctx, size_t bytes);
/* -EBUSY while a tensor's parameters are in it or a push from it is in
 * flight. Every block is released by ragg_finalize() anyway. */
RAGG_API int ragg_mem_free(ragg_ctx_t *ctx, void *p);

/* Push this round's gradient with weight (usually the sample count). */
RAGG_API int ragg_push(ragg_tensor_t *t, const float *grad, double weight);

/* Wait for the round's parameters; copies into params unless it is the
 * declared buffer (where they landed already). */
RAGG_API int ragg_pull(ragg_tensor_t *t, float *params);

/* The version of the parameters the last ragg_pull() of t returned: the
 * smallest over the tensor's chunks of floor(contributions applied /
 * workers); with RAGG_STALENESS=0 the number of rounds completed. 0, or
 * -EINVAL (NULL argument, or not a worker's tensor). See ragg(7). */
RAGG_API int ragg_pull_version(ragg_tensor_t *t, uint64_t *version);

/* Push then pull. */
RAGG_API int ragg_pushpull(ragg_tensor_t *t, const float *grad, double weight, float *params);

/* Non-blocking push; complete with ragg_wait() or ragg_test(). The grad
 * buffer must stay unchanged until then. */
RAGG_API int ragg_ipush(ragg_tensor_t *t, const float *grad, double weight, ragg_req_t **req);
RAGG_API int ragg_wait(ragg_req_t *req);
/* *done = 1 when complete (the request is then released), else 0. */
RAGG_API int ragg_test(ragg_req_t *req, int *done);

/* Agent and server roles: run until the workers finalize. */
RAGG_API int ragg_serve(ragg_ctx_t *ctx);

RAGG_API int ragg_stats(const ragg_ctx_t *ctx, struct ragg_stats *stats);

/* Differential privacy: the eps spent after `steps` rounds of the
 * Gaussian mechanism with noise multiplier z (noise sigma = z times the
 * clipping norm) and Poisson sampling rate q in [0, 1], at delta in (0, 1),
 * by ragg's RDP accountant; *order (may be NULL) is the Renyi order that
 * gave it. 0, or -EINVAL. Needs no context. */
RAGG_API int ragg_dp_epsilon(double q, double z, uint64_t steps, double delta, double *eps,
                             double *order);

/* Differential privacy spent by this process's rounds so far (RAGG_DP=on;
 * a worker's or an agent's: a server counts no whole rounds and says 0):
 * *eps at RAGG_DP_DELTA after *steps (may be NULL) rounds, every tensor's
 * round after its declaration counted as one step of the Gaussian
 * mechanism with RAGG_DP_NOISE and RAGG_DP_SAMPLE_RATE; +inf when RAGG_DP
 * is off. 0, or -EINVAL. */
RAGG_API int ragg_dp_spent(const ragg_ctx_t *ctx, double *eps, uint64_t *steps);

/* Static text for any return code of ragg or a negative errno. */
RAGG_API const char *ragg_strerror(int status);
/* The symbolic name ("RAGG_ERR_TIMEOUT", "ECONNREFUSED", ...). */
RAGG_API const char *ragg_strerror_name(int status);

#ifdef __cplusplus
}
#endif
#endif
