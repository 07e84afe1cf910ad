/*
 * A worker's encoding and masking of one tensor for one round (the loop of
 * ragg__sa_worker_push), split over threads: the tensor's blocks of
 * RAGG_SA_FUSE_WORDS (within each chunk) are cut into contiguous runs, one
 * per thread, each block encoded and then given every mask while it is in
 * cache. Every block's words depend only on its position, so the result is
 * the same, bit for bit, on any number of threads.
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

/* Returns how many elements were clipped or NaN. */
size_t ragg__sa_mask_tensor(const struct ragg__sa_mask_args *a);

#endif
