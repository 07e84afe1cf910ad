/* A worker's encoding and masking of a tensor, over threads (sa_mask.h). */
#include "config.h"

#include <pthread.h>
#include <sched.h>

#include "engine/engine.h"
#include "plan.h"
#include "privacy/sa_job.h"
#include "privacy/sa_mask.h"

/* Fewer blocks than this per thread are not worth a thread (a block is
 * 16 KiB of words; 64 of them take a millisecond or so to mask). */
#define MIN_BLOCKS_PER_THREAD 64
#define MAX_THREADS           RAGG_ENGINE_AUTO_THREADS_MAX

struct run {
	const struct ragg__sa_mask_args *a;
	size_t lo, hi; /* blocks [lo, hi) in tensor order */
	size_t clipped;
	pthread_t tid;
};

static size_t blocks_of(size_t n)
{
	return (n + RAGG_SA_FUSE_WORDS - 1) / RAGG_SA_FUSE_WORDS;
}

static void *run_blocks(void *arg)
{
	struct run *r = arg;
	const struct ragg__sa_mask_args *a = r->a;
	const struct ragg__plan *pl = a->plan;
	size_t per_chunk = blocks_of(pl->chunk_elems);
	for (size_t b = r->lo; b < r->hi; b++) {
		size_t c = b / per_chunk, off = (b % per_chunk) * RAGG_SA_FUSE_WORDS;
		size_t first = c * pl->chunk_elems, n = ragg__plan_chunk_elems(pl, c);
		size_t len = n - off < RAGG_SA_FUSE_WORDS ? n - off : RAGG_SA_FUSE_WORDS;
		struct ragg__sa_pos pos = { .tensor = a->tensor, .chunk = (uint32_t)c,
			                    .round = a->round };
		uint32_t *x = a->enc + first + off;
		r->clipped += ragg__sa_encode_at(x, a->grad + first + off, len, a->weight, a->range,
		                                 a->scale, a->rounding, &pos, off);
		ragg__sa_mask_at(x, len, a->self, &pos, 1, off);
		for (int j = 0; j < a->m; j++)
			if (a->masks[j])
				ragg__sa_mask_at(x, len, a->pair[j], &pos, j > a->me ? 1 : -1, off);
	}
	return NULL;
}

static int cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 1;
	int n = CPU_COUNT(&set);
	return n < 1 ? 1 : n;
}

size_t ragg__sa_mask_tensor(const struct ragg__sa_mask_args *a)
{
	const struct ragg__plan *pl = a->plan;
	/* Every chunk but the last is whole: the last's blocks end the
	 * numbering, so block b of the tensor is (b / per_chunk, b % per_chunk). */
	size_t per_chunk = blocks_of(pl->chunk_elems);
	size_t total = pl->nchunks ? (pl->nchunks - 1) * per_chunk +
	                                 blocks_of(ragg__plan_chunk_elems(pl, pl->nchunks - 1))
	                           : 0;
	long want = a->threads < 0 ? cpus() : a->threads;
	if (want > MAX_THREADS)
		want = MAX_THREADS;
	if ((size_t)want > total / MIN_BLOCKS_PER_THREAD)
		want = (long)(total / MIN_BLOCKS_PER_THREAD);
	int nt = want < 1 ? 1 : (int)want;
	struct run runs[MAX_THREADS];
	bool started[MAX_THREADS] = { false };
	for (int t = 0; t < nt; t++)
		runs[t] = (struct run){ .a = a, .lo = total * (size_t)t / (size_t)nt,
			                .hi = total * (size_t)(t + 1) / (size_t)nt };
	for (int t = 1; t < nt; t++)
		started[t] = pthread_create(&runs[t].tid, NULL, run_blocks, &runs[t]) == 0;
	run_blocks(&runs[0]);
	size_t clipped = runs[0].clipped;
	for (int t = 1; t < nt; t++) {
		if (started[t])
			pthread_join(runs[t].tid, NULL);
		else
			run_blocks(&runs[t]);
		clipped += runs[t].clipped;
	}
	return clipped;
}
