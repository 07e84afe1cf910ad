/*
 * A worker's encoding and masking of one tensor for one round (the loop of
 * ragg__sa_worker_push), split over threads: the tensor's blocks of
 * RAGG_SA_FUSE_WORDS (within each chunk) are claimed in tensor order by the
 * threads of a pool kept per context (started on the first push that
 * wants them, stopped at ragg_finalize) and by the pushing thread, each
 * block encoded and then given every mask while it is in cache. The push
 * waits for each chunk in turn and writes it while the pool masks the
 * next ones. Every block's words depend only on its position, so the
 * result is the same, bit for bit, on any number of threads and in any
 * order.
 */
#ifndef RAGG_PRIVACY_SA_MASK_H
#define RAGG_PRIVACY_SA_MASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "privacy/secagg.h"

struct ragg__plan;

struct ragg__sa_mask_args {
	uint32_t *enc; /* out: the tensor's masked words */
	const float *grad;
	const struct ragg__plan *plan;
	double weight, range, scale;
	const uint8_t *rounding; /* the stochastic rounding's key */
	const uint8_t *self; /* the round's self seed */
	const uint8_t (*pair)[RAGG_SA_SEED_BYTES]; /* with each of m workers */
	const bool *masks; /* masks[j]: worker j is a neighbour */
	int m, me;
	uint32_t tensor;
	uint64_t round;
	/* RAGG_AGG_THREADS: 0 the calling thread alone; < 0 one per cpu the
	 * process may run on, at most RAGG_ENGINE_AUTO_THREADS_MAX. A thread
	 * that cannot be started leaves its run to the calling thread. */
	long threads;
};

struct ragg__sa_pool;

/* The whole tensor now, on a pool of its own. Returns how many elements
 * were clipped or NaN (SIZE_MAX: a thread of the pool did not finish). */
size_t ragg__sa_mask_tensor(const struct ragg__sa_mask_args *a);

/* Starts masking a tensor on *pool (created on first use): *a and its
 * self seed are copied, the buffers it points to must stay until
 * ragg__sa_mask_end. One thread (a->threads, or a small tensor): done
 * before it returns. 0, -ENOMEM, or -EBUSY while a job is under way. */
int ragg__sa_mask_start(struct ragg__sa_pool **pool, const struct ragg__sa_mask_args *a);

/* Chunk c is masked (the caller masks blocks up to its end meanwhile).
 * 0, or RAGG_ERR_TIMEOUT after timeout_ms. */
int ragg__sa_mask_wait_chunk(struct ragg__sa_pool *p, size_t c, long timeout_ms);

/* Every chunk is masked and no thread is in the job any more: *clipped,
 * how many elements were clipped or NaN. 0, or RAGG_ERR_TIMEOUT (the job
 * then stays under way: the pool takes no other). */
int ragg__sa_mask_end(struct ragg__sa_pool *p, long timeout_ms, size_t *clipped);

/* Stops and joins the pool's threads (within timeout_ms and a second;
 * else RAGG_ERR_TIMEOUT and the pool is not freed). NULL: nothing. */
int ragg__sa_pool_free(struct ragg__sa_pool *p, long timeout_ms);

#endif
