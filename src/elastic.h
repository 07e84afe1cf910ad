/*
 * Workers that leave a running job (RAGG_ON_WORKER_LOSS, ragg(7)).
 *
 * A worker leaves by its goodbye (ragg_finalize) or by its connection's
 * loss. Its agent takes it out of its group at once; the leaving is judged
 * when a round goes on without it (a goodbye at the job's end is not a
 * loss): with fail the job fails with RAGG_ERR_PEER_LOST naming it, its
 * goodbye carrying the rank to every process; with continue the agent's
 * rounds go on with the survivors and a RAGG_MSG_WORKER_LEFT tells every
 * process. Servers see an agent whose group ended while the others go on
 * and fail the job the same way.
 */
#ifndef RAGG_ELASTIC_H
#define RAGG_ELASTIC_H

#include <stdbool.h>

struct ragg_ctx;
struct ragg__peer;
struct ragg__msg;
struct ragg_tensor;

/* Read RAGG_ON_WORKER_LOSS; 0 or a negative code (a setting it refuses). */
int ragg__elastic_init(struct ragg_ctx *ctx);
void ragg__elastic_free(struct ragg_ctx *ctx);
/* Agent: start the sums of t's round (parity) now that secure aggregation
 * unmasked it (privacy/sa_recover.h). */
void ragg__elastic_start_round(struct ragg_ctx *ctx, struct ragg_tensor *t, int parity);
/* Peer p said a plain goodbye (p->said_bye is set). */
void ragg__elastic_on_bye(struct ragg_ctx *ctx, struct ragg__peer *p);
/* Peer p's connection is gone without a goodbye: true when that is a
 * worker leaving the job, handled here; false: the caller's loss. */
bool ragg__elastic_peer_lost(struct ragg_ctx *ctx, struct ragg__peer *p);
/* Agent, a worker's write landed while workers left unjudged: judge them.
 * True when that failed the job. */
bool ragg__elastic_missed(struct ragg_ctx *ctx);
/* Server, an agent's write landed after another agent's goodbye: the job
 * fails (true) naming that agent's workers. */
bool ragg__elastic_agent_gone(struct ragg_ctx *ctx);
/* Agent, RAGG_ON_WORKER_LOSS=continue: a worker connects with the rank of
 * worker p, which left: true when p is made ready for it. */
bool ragg__elastic_rejoin(struct ragg_ctx *ctx, struct ragg__peer *p);
/* RAGG_MSG_WORKER_LEFT from p. */
void ragg__elastic_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);

#endif
