/* ragg_init / ragg_finalize: settings, transport choice, engine, rendezvous,
 * connections; and teardown in reverse. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <sodium.h>

#include "bootstrap/boot.h"
#include "bootstrap/kv.h"
#include "compiler.h"
#include "core.h"
#include "elastic.h"
#include "handshake.h"
#include "role.h"
#include "log.h"
#include "privacy/sa_job.h"
#include "settings.h"

int ragg__agent_of_worker(const struct ragg_opts *o, int worker)
{
	return (int)((long)worker * o->agents / o->workers);
}

/* The inverse of ragg__agent_of_worker: contiguous blocks of workers. */
void ragg__agent_workers(const struct ragg_opts *o, int agent, int *first, int *count)
{
	int lo = -1, n = 0;
	for (int w = 0; w < o->workers; w++)
		if (ragg__agent_of_worker(o, w) == agent) {
			if (lo < 0)
				lo = w;
			n++;
		}
	*first = lo < 0 ? 0 : lo;
	*count = n;
}

const char *ragg__role_name(int role)
{
	switch (role) {
	case RAGG_ROLE_WORKER:
		return "worker";
	case RAGG_ROLE_AGENT:
		return "agent";
	case RAGG_ROLE_SERVER:
		return "server";
	default:
		return "?";
	}
}

struct ragg__peer *ragg__peer_of(struct ragg_ctx *ctx, enum ragg_role role, int rank)
{
	for (int i = 0; i < ctx->npeers; i++)
		if (ctx->peers[i].role == role && ctx->peers[i].rank == rank)
			return &ctx->peers[i];
	return NULL;
}

void ragg__fail(struct ragg_ctx *ctx, int status)
{
	if (!ctx->failed)
		ctx->failed = status;
}

static int start_engine(struct ragg_ctx *ctx)
{
	const struct ragg_opts *o = &ctx->opts;
	const char *kname = ragg__opt_get(o, "RAGG_KERNELS");
	long threads = ragg__opt_long(o, "RAGG_AGG_THREADS"); /* auto: -1 */

	ctx->kernels = ragg__kernels_get(kname);
	if (!ctx->kernels) {
		ragg__error("RAGG_KERNELS=\"%s\": unknown or not supported by this CPU "
		            "(auto, avx512, avx2, scalar, openblas)",
		            kname);
		return RAGG_ERR_CONFIG;
	}
	/* Placement follows the network device: the first transport that
	 * reaches beyond this host. */
	struct ragg_tp_attr attr = { .size = sizeof(attr) };
	for (int i = 0; i < ctx->ntp; i++)
		if (!(ctx->tps[i].ops->caps & RAGG_TP_CAP_LOCAL_ONLY)) {
			ctx->tps[i].ops->query(ctx->tps[i].dev, &attr);
			break;
		}
	const char *cpus = ragg__opt_get(o, "RAGG_CPUS");
	struct ragg__engine_conf conf = {
		.threads = (int)threads,
		.cpus = *cpus ? cpus : NULL,
		.device = attr.device[0] ? attr.device : NULL,
		.kernels = kname,
		/* The fd the transports' wait already watches: finished jobs
		 * wake the progress loop with no call back into the core. */
		.wake_fd = &ctx->wake_fd,
	};
	return ragg__engine_start(&conf, &ctx->engine);
}

static int alloc_peers(struct ragg_ctx *ctx)
{
	const struct ragg_opts *o = &ctx->opts;
	int n = 0;
	switch (o->role) {
	case RAGG_ROLE_WORKER:
		n = 1;
		break;
	case RAGG_ROLE_AGENT:
		ragg__agent_workers(o, o->rank, &ctx->first_worker, &ctx->nworkers);
		n = ctx->nworkers + o->servers;
		break;
	default:
		n = o->agents;
		break;
	}
	ctx->peers = calloc((size_t)n, sizeof(*ctx->peers));
	if (!ctx->peers)
		return -ENOMEM;
	ctx->npeers = n;
	for (int i = 0; i < n; i++) {
		struct ragg__peer *p = &ctx->peers[i];
		p->ctx = ctx;
		switch (o->role) {
		case RAGG_ROLE_WORKER:
			p->role = RAGG_ROLE_AGENT;
			p->rank = ragg__agent_of_worker(o, o->rank);
			p->index = 0;
			break;
		case RAGG_ROLE_AGENT:
			p->role = i < ctx->nworkers ? RAGG_ROLE_WORKER : RAGG_ROLE_SERVER;
			p->index = i < ctx->nworkers ? i : i - ctx->nworkers;
			p->rank = i < ctx->nworkers ? ctx->first_worker + i : i - ctx->nworkers;
			break;
		default:
			p->role = RAGG_ROLE_AGENT;
			p->rank = p->index = i;
			break;
		}
		/* Room for the control messages of set-up (the settings
		 * agreement's among them) and shutdown. */
		int rc = ragg__queue_reserve(p, 8 + ragg__agreement_msgs());
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Teardown, in an order that holds at any moment of a job: ragg_serve and
 * every wait return as soon as the job fails (a peer lost, a refused
 * declaration, a timeout), with engine jobs still running. Those jobs read
 * worker slots, write server slots and agent regions that may be a peer's
 * shared memory mapped through an endpoint, and signal ctx->wake_fd.
 *
 * Invariant: the engine is drained (every queued job run, its threads
 * joined) before any memory a job may touch is freed or unmapped. So:
 * 1. drain the engine; 2. close the endpoints (a transport may still read
 * queued writes out of tensor memory, and closing unmaps what peers
 * shared); 3. free tensors and allocations (the engine object stays valid
 * for ragg__engine_free); 4. free the engine itself, then the rest.
 */
static void destroy(struct ragg_ctx *ctx)
{
	ragg__engine_drain(ctx->engine);
	for (int i = 0; i < ctx->npeers; i++) {
		if (ctx->peers[i].ep)
			ctx->peers[i].tp->ops->ep_close(ctx->peers[i].ep);
		ragg__hs_free(&ctx->peers[i]);
		free(ctx->peers[i].queue);
	}
	for (int i = 0; i < ctx->ntensors; i++)
		ragg__tensor_free(ctx->tensors[i]);
	ragg__sa_ctx_free(ctx);
	ragg__allocs_free(ctx);
	free(ctx->peers);
	ragg__elastic_free(ctx);
	if (ctx->engine)
		ragg__engine_stop(ctx->engine);
	ragg__transports_close(ctx);
	ragg__kv_server_stop(ctx->kv_server);
	if (ctx->wake_fd >= 0)
		close(ctx->wake_fd);
	free(ctx);
}

RAGG_EXPORT int ragg_init(const struct ragg_opts *opts, ragg_ctx_t **out)
{
	struct ragg_ctx *ctx;
	struct ragg__boot boot = { 0 };
	int rc;

	if (!out)
		return -EINVAL;
	if (sodium_init() < 0)
		return -ENOSYS;
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->stats.size = sizeof(ctx->stats);
	ctx->wake_fd = -1;
	if (opts) {
		memcpy(&ctx->opts, opts,
		       opts->size < sizeof(ctx->opts) ? opts->size : sizeof(ctx->opts));
		ragg__logging_setup(&ctx->opts);
	} else if ((rc = ragg_opts_default(&ctx->opts)))
		goto err;
	if ((rc = ragg__opts_validate(&ctx->opts)))
		goto err;
	if (!(ctx->role = ragg__role_ops_of(ctx->opts.role))) {
		rc = RAGG_ERR_ROLE;
		goto err;
	}
	if ((rc = alloc_peers(ctx)) || (rc = ragg__elastic_init(ctx)))
		goto err;
	ctx->check_gradient = strcmp(ragg__opt_get(&ctx->opts, "RAGG_CHECK_GRADIENT"), "on") == 0;
	ctx->wake_fd = -1;
	if (ctx->opts.role != RAGG_ROLE_WORKER &&
	    (ctx->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		rc = -errno;
		goto err;
	}
	if ((rc = ragg__transports_open(ctx)))
		goto err;
	if ((rc = ragg__boot_open(&ctx->opts, &boot, &ctx->kv_server))) {
		ragg__boot_close(&boot);
		goto err;
	}
	/* The engine places itself next to the device in use, which is
	 * known once listening; peers may declare tensors as soon as they
	 * are connected, so it runs before that. */
	rc = ragg__listen_job(ctx, &boot);
	if (!rc && ctx->opts.role != RAGG_ROLE_WORKER)
		rc = start_engine(ctx);
	if (!rc)
		rc = ragg__connect_job(ctx, &boot);
	ragg__boot_close(&boot);
	if (rc)
		goto err;
	*out = ctx;
	return 0;
err:
	destroy(ctx);
	return rc;
}

RAGG_EXPORT int ragg_finalize(ragg_ctx_t *ctx)
{
	int rc = 0;
	if (!ctx)
		return -EINVAL;
	/* A worker says goodbye so its agent can tell a finished job from a
	 * lost peer; agents and servers did so when ragg_serve returned. One
	 * that leaves in the middle of a round (a push not pulled: its pull
	 * timed out, say) has not finished: it leaves as a lost peer, or the
	 * agent would end its part of the job as if it were complete. */
	bool mid_round = false;
	for (int i = 0; i < ctx->ntensors; i++)
		if (ctx->opts.role == RAGG_ROLE_WORKER && ctx->tensors[i]->worker.pushed)
			mid_round = true;
	if (ctx->opts.role == RAGG_ROLE_WORKER && !ctx->failed && !mid_round &&
	    ctx->peers[0].connected) {
		struct ragg__msg bye = { .type = RAGG_MSG_BYE };
		rc = ragg__post_msg(&ctx->peers[0], &bye);
		ctx->leaving = true;
		if (!rc)
			rc = ragg__wait(ctx, ragg__queues_drained, ctx, "sending goodbye");
	}
	if (!rc)
		rc = ctx->failed;
	ragg__abort_flush(ctx);
	destroy(ctx);
	return rc;
}

RAGG_EXPORT enum ragg_role ragg_role(const ragg_ctx_t *ctx)
{
	return ctx ? ctx->opts.role : RAGG_ROLE_NONE;
}

RAGG_EXPORT int ragg_rank(const ragg_ctx_t *ctx)
{
	return ctx ? ctx->opts.rank : -1;
}

RAGG_EXPORT const char *ragg_transport_name(const ragg_ctx_t *ctx)
{
	return ctx ? ctx->tp_names : "";
}

RAGG_EXPORT int ragg_job_size(const ragg_ctx_t *ctx, enum ragg_role role)
{
	if (!ctx)
		return -EINVAL;
	switch (role) {
	case RAGG_ROLE_WORKER:
		return ctx->opts.workers;
	case RAGG_ROLE_AGENT:
		return ctx->opts.agents;
	case RAGG_ROLE_SERVER:
		return ctx->opts.servers;
	default:
		return -EINVAL;
	}
}

/* The size of struct ragg_opts in ragg 1.0: a caller built against it gets
 * that prefix when the structure has grown since. */
#define RAGG_OPTS_SIZE_1_0 (offsetof(struct ragg_opts, serve_timeout_ms) + sizeof(int))

RAGG_EXPORT int ragg_ctx_opts(const ragg_ctx_t *ctx, struct ragg_opts *out)
{
	struct ragg_opts o;

	if (!ctx || !out || out->size < RAGG_OPTS_SIZE_1_0)
		return -EINVAL;
	o = ctx->opts;
	/* The job key is a secret the caller handed in; it is not handed back. */
	sodium_memzero(o.job_key, sizeof(o.job_key));
	o.size = out->size < sizeof(o) ? out->size : sizeof(o);
	memcpy(out, &o, o.size);
	sodium_memzero(&o, sizeof(o));
	return 0;
}

RAGG_EXPORT int ragg_stats(const ragg_ctx_t *ctx, struct ragg_stats *stats)
{
	/* A caller built before workers_lost gets the fields it knows. */
	size_t known = offsetof(struct ragg_stats, workers_lost);
	if (!ctx || !stats || stats->size < known)
		return -EINVAL;
	struct ragg_stats s = ctx->stats;
	s.size = stats->size < sizeof(s) ? stats->size : sizeof(s);
	memcpy(stats, &s, s.size);
	return 0;
}
