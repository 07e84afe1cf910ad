/*
 * Bounded staleness (RAGG_STALENESS=s, s > 0): rounds after the initial
 * broadcast run asynchronously. Every contribution and every parameter
 * chunk travels as a write without an immediate followed, on the same
 * endpoint, by a RAGG_MSG_VERSION message that carries its version and
 * that the receiver checks on arrival; writes and messages of one
 * endpoint land in order, so the message means the data is there.
 *
 *   worker -> agent  push of clock t (status RAGG__VER_PUSH, count t)
 *   agent  -> server the weighted sum of the contributions that arrived,
 *                    (RAGG__VER_CONTRIB | contributions << 8, count chunk,
 *                    chunk_bytes its sequence number, name_hash the bits
 *                    of its weight as a double, rdesc the bitmap of the
 *                    agent's workers whose next clock it covers)
 *   agent  -> server "answer when the chunk's version reaches n"
 *                    (RAGG__VER_WANT, count chunk, chunk_bytes n)
 *   server -> agent  the chunk's parameters at version v (RAGG__VER_REPLY,
 *                    count chunk, chunk_bytes v)
 *   agent  -> worker the same (RAGG__VER_PARAMS)
 *
 * The version of a chunk is the largest v such that more than half of
 * the job's workers have every clock below v applied to it (the server
 * counts each worker's clocks from the bitmaps): with every worker in
 * lockstep it is the number of synchronous rounds done, and a minority of
 * slow workers does not hold it back. The bitmap limits an agent to
 * 8 * RAGG_TP_RDESC_MAX workers (refused at ragg_init otherwise).
 * s = 0 never comes here: the synchronous path stays as it is.
 */
#ifndef RAGG_STALE_H
#define RAGG_STALE_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

#define RAGG__VER_PUSH    1
#define RAGG__VER_CONTRIB 2
#define RAGG__VER_WANT    3
#define RAGG__VER_REPLY   4
#define RAGG__VER_PARAMS  5

/* RAGG_STALENESS parsed: 0 (synchronous), s, or UINT64_MAX (inf).
 * RAGG_ERR_CONFIG (logged) when it is not one. */
int ragg__staleness(const struct ragg_opts *o, uint64_t *s);
/* ragg__opts_validate's check: the value, and the settings it cannot
 * go with. 0 or RAGG_ERR_CONFIG (logged). */
int ragg__stale_validate(const struct ragg_opts *o);

/* Whether round `round` of t runs asynchronously (s > 0, round >= 1). */
bool ragg__stale_round(const ragg_tensor_t *t, uint64_t round);

/* worker: after the push's data writes, its version message. */
int ragg__stale_worker_pushed(ragg_tensor_t *t);
/* worker: ragg_pull of an asynchronous round. */
int ragg__stale_worker_pull(ragg_tensor_t *t);

/* A RAGG_MSG_VERSION from p, at any role. */
void ragg__stale_on_msg(struct ragg_ctx *ctx, struct ragg__peer *p, const struct ragg__msg *m);

/* Per-tensor state, freed with the tensor. */
void ragg__stale_free(ragg_tensor_t *t);

/* server.c: what the asynchronous path needs of a server tensor. */
struct ragg__server_view {
	float *w, *g; /* owned parameters and gradient scratch, owned layout */
	float *state[4];
	int nstate;
	const struct ragg__optim_conf *oc;
	uint64_t *rounds; /* per owned chunk: updates applied (the step) */
	const struct ragg__region *w_region;
};
bool ragg__server_view(ragg_tensor_t *t, struct ragg__server_view *v);
/* Agent j's slot region at this server, and its parameter region there. */
const struct ragg__region *ragg__server_agent_slot(ragg_tensor_t *t, int j);
struct ragg__peer_region *ragg__server_agent_params(ragg_tensor_t *t, int j);

#endif
