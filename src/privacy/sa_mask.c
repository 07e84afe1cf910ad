/* A worker's encoding and masking of a tensor, over a pool of threads
 * (sa_mask.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "engine/engine.h"
#include "log.h"
#include "plan.h"
#include "privacy/sa_job.h"
#include "privacy/sa_mask.h"

/* Fewer blocks than this per thread are not worth a thread (a block is
 * 16 KiB of words; 64 of them take a millisecond or so to mask). */
#define MIN_BLOCKS_PER_THREAD 64
#define MAX_THREADS           RAGG_ENGINE_AUTO_THREADS_MAX
/* An idle helper looks for a stop this often. */
#define IDLE_MS 1000

struct ragg__sa_pool {
	pthread_mutex_t mu;
	pthread_cond_t work; /* helpers: a job was posted, or stop */
	pthread_cond_t done; /* the caller: a chunk is masked, or a helper left the job */
	int nhelpers; /* started */
	pthread_t tid[MAX_THREADS];
	bool stop;
	uint64_t gen; /* jobs posted */
	int active; /* helpers inside the current job */
	/* the job (changed only while no helper is inside it) */
	bool running;
	int nt; /* threads it may use, the caller's included */
	struct ragg__sa_mask_args a;
	uint8_t self[RAGG_SA_SEED_BYTES]; /* a copy: the record's may be wiped meanwhile */
	size_t per_chunk, total;
	atomic_size_t next; /* the next block to claim, in tensor order */
	atomic_size_t clipped;
	atomic_size_t *masked; /* blocks masked, per chunk */
	size_t cap;
};

static size_t blocks_of(size_t n)
{
	return (n + RAGG_SA_FUSE_WORDS - 1) / RAGG_SA_FUSE_WORDS;
}

/* Block b of the tensor: encoded, then every mask added while in cache.
 * Returns how many of its elements were clipped. */
static size_t mask_block(const struct ragg__sa_mask_args *a, const uint8_t *self, size_t b)
{
	const struct ragg__plan *pl = a->plan;
	size_t per_chunk = blocks_of(pl->chunk_elems);
	size_t c = b / per_chunk, off = (b % per_chunk) * RAGG_SA_FUSE_WORDS;
	size_t first = c * pl->chunk_elems, n = ragg__plan_chunk_elems(pl, c);
	size_t len = n - off < RAGG_SA_FUSE_WORDS ? n - off : RAGG_SA_FUSE_WORDS;
	struct ragg__sa_pos pos = { .tensor = a->tensor, .chunk = (uint32_t)c, .round = a->round };
	uint32_t *x = a->enc + first + off;
	size_t clipped = ragg__sa_encode_at(x, a->grad + first + off, len, a->weight, a->range,
	                                    a->scale, a->rounding, &pos, off);
	ragg__sa_mask_at(x, len, self, &pos, 1, off);
	for (int j = 0; j < a->m; j++)
		if (a->masks[j])
			ragg__sa_mask_at(x, len, a->pair[j], &pos, j > a->me ? 1 : -1, off);
	return clipped;
}

static int cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 1;
	int n = CPU_COUNT(&set);
	return n < 1 ? 1 : n;
}

/* Every chunk but the last is whole: the last's blocks end the numbering,
 * so block b of the tensor is (b / per_chunk, b % per_chunk). */
static size_t total_blocks(const struct ragg__plan *pl)
{
	size_t per_chunk = blocks_of(pl->chunk_elems);
	return pl->nchunks ? (pl->nchunks - 1) * per_chunk +
	                         blocks_of(ragg__plan_chunk_elems(pl, pl->nchunks - 1))
	                   : 0;
}

/* The threads worth using for a tensor of `total` blocks. */
static int threads_for(long threads, size_t total)
{
	long want = threads < 0 ? cpus() : threads;
	if (want > MAX_THREADS)
		want = MAX_THREADS;
	if ((size_t)want > total / MIN_BLOCKS_PER_THREAD)
		want = (long)(total / MIN_BLOCKS_PER_THREAD);
	return want < 1 ? 1 : (int)want;
}

/* Claims and masks blocks below `upto` until none is left there. */
static void claim(struct ragg__sa_pool *p, size_t upto)
{
	size_t clipped = 0;
	for (;;) {
		size_t b = atomic_load_explicit(&p->next, memory_order_relaxed);
		do {
			if (b >= upto)
				goto out;
		} while (!atomic_compare_exchange_weak(&p->next, &b, b + 1));
		clipped += mask_block(&p->a, p->self, b);
		size_t c = b / p->per_chunk;
		size_t need = blocks_of(ragg__plan_chunk_elems(p->a.plan, c));
		if (atomic_fetch_add(&p->masked[c], 1) + 1 == need) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_broadcast(&p->done);
			pthread_mutex_unlock(&p->mu);
		}
	}
out:
	atomic_fetch_add(&p->clipped, clipped);
}

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *helper(void *arg)
{
	struct ragg__sa_pool *p = arg;
	uint64_t seen = 0;
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		if (p->gen == seen || !p->running) {
			struct timespec ts;
			deadline_in(&ts, IDLE_MS);
			pthread_cond_timedwait(&p->work, &p->mu, &ts);
			continue;
		}
		seen = p->gen;
		int me = p->active++;
		/* Only as many helpers as the job may use. */
		if (me + 1 < p->nt) {
			pthread_mutex_unlock(&p->mu);
			claim(p, p->total);
			pthread_mutex_lock(&p->mu);
		}
		p->active--;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static struct ragg__sa_pool *pool_new(void)
{
	struct ragg__sa_pool *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;
	if (!p)
		return NULL;
	if (pthread_condattr_init(&ca)) {
		free(p);
		return NULL;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	bool ok = !pthread_mutex_init(&p->mu, NULL);
	ok = ok && !pthread_cond_init(&p->work, &ca);
	ok = ok && !pthread_cond_init(&p->done, &ca);
	pthread_condattr_destroy(&ca);
	if (!ok) {
		free(p);
		return NULL;
	}
	return p;
}

int ragg__sa_pool_free(struct ragg__sa_pool *p, long timeout_ms)
{
	int rc = 0;
	if (!p)
		return 0;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts); /* pthread_timedjoin_np's clock */
	ts.tv_sec += timeout_ms / 1000 + 1;
	for (int i = 0; i < p->nhelpers; i++)
		if (pthread_timedjoin_np(p->tid[i], NULL, &ts)) {
			/* A helper that does not stop: the pool cannot be freed. */
			ragg__error("secure aggregation: a masking thread did not stop within %ld ms",
			            timeout_ms);
			rc = RAGG_ERR_TIMEOUT;
		}
	if (rc)
		return rc;
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	sodium_memzero(p->self, sizeof(p->self));
	free(p->masked);
	free(p);
	return 0;
}

int ragg__sa_mask_start(struct ragg__sa_pool **pool, const struct ragg__sa_mask_args *a)
{
	const struct ragg__plan *pl = a->plan;
	size_t total = total_blocks(pl);
	int nt = threads_for(a->threads, total);
	struct ragg__sa_pool *p = *pool;
	if (!p && !(p = *pool = pool_new()))
		return -ENOMEM;
	if (p->running)
		return -EBUSY;
	if (pl->nchunks > p->cap) {
		atomic_size_t *m = calloc(pl->nchunks, sizeof(*m));
		if (!m)
			return -ENOMEM;
		free(p->masked);
		p->masked = m;
		p->cap = pl->nchunks;
	}
	/* Helpers started once, as many as the largest job wanted; one that
	 * cannot be started leaves its share to the others and the caller. */
	while (p->nhelpers < nt - 1 &&
	       pthread_create(&p->tid[p->nhelpers], NULL, helper, p) == 0)
		p->nhelpers++;
	pthread_mutex_lock(&p->mu);
	p->a = *a;
	memcpy(p->self, a->self, sizeof(p->self));
	p->nt = nt;
	p->per_chunk = blocks_of(pl->chunk_elems);
	p->total = total;
	atomic_store(&p->next, 0);
	atomic_store(&p->clipped, 0);
	for (size_t c = 0; c < pl->nchunks; c++)
		atomic_store(&p->masked[c], 0);
	p->running = true;
	if (nt > 1) {
		p->gen++;
		pthread_cond_broadcast(&p->work);
	}
	pthread_mutex_unlock(&p->mu);
	/* One thread: all of it now, on the caller. */
	if (nt == 1)
		claim(p, total);
	return 0;
}

/* Waits (under p->mu) until cond(p, c) or the deadline. */
static int wait_until(struct ragg__sa_pool *p, bool (*cond)(struct ragg__sa_pool *, size_t),
                      size_t c, long timeout_ms)
{
	struct timespec ts;
	deadline_in(&ts, timeout_ms);
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	while (!cond(p, c) && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&p->done, &p->mu, &ts);
	bool ok = cond(p, c);
	pthread_mutex_unlock(&p->mu);
	return ok ? 0 : RAGG_ERR_TIMEOUT;
}

static bool chunk_masked(struct ragg__sa_pool *p, size_t c)
{
	return atomic_load(&p->masked[c]) == blocks_of(ragg__plan_chunk_elems(p->a.plan, c));
}

int ragg__sa_mask_wait_chunk(struct ragg__sa_pool *p, size_t c, long timeout_ms)
{
	if (!p || !p->running || c >= p->a.plan->nchunks)
		return -EINVAL;
	/* Help with the blocks up to the end of c, then wait for the
	 * helpers' last ones. */
	size_t end = (c + 1) * p->per_chunk;
	claim(p, end < p->total ? end : p->total);
	if (chunk_masked(p, c))
		return 0;
	int rc = wait_until(p, chunk_masked, c, timeout_ms);
	if (rc)
		ragg__error("secure aggregation: chunk %zu of tensor %u not masked within %ld ms", c,
		            p->a.tensor, timeout_ms);
	return rc;
}

int ragg__sa_mask_end(struct ragg__sa_pool *p, long timeout_ms, size_t *clipped)
{
	if (!p || !p->running)
		return -EINVAL;
	int rc = 0;
	for (size_t c = 0; c < p->a.plan->nchunks && !rc; c++)
		rc = ragg__sa_mask_wait_chunk(p, c, timeout_ms);
	if (rc)
		return rc;
	/* No helper may still be inside the job when the next one is set. */
	struct timespec ts;
	int w = 0;
	deadline_in(&ts, timeout_ms);
	pthread_mutex_lock(&p->mu);
	while (p->active && w != ETIMEDOUT)
		w = pthread_cond_timedwait(&p->done, &p->mu, &ts);
	if (!p->active) {
		p->running = false;
		*clipped = atomic_load(&p->clipped);
		sodium_memzero(p->self, sizeof(p->self));
	} else {
		rc = RAGG_ERR_TIMEOUT;
	}
	pthread_mutex_unlock(&p->mu);
	if (rc)
		ragg__error("secure aggregation: a masking thread did not leave its job within "
		            "%ld ms",
		            timeout_ms);
	return rc;
}

size_t ragg__sa_mask_tensor(const struct ragg__sa_mask_args *a)
{
	size_t total = total_blocks(a->plan), clipped = 0;
	struct ragg__sa_pool *p = NULL;
	if (threads_for(a->threads, total) > 1 && ragg__sa_mask_start(&p, a) == 0) {
		int rc = ragg__sa_mask_end(p, 60000, &clipped);
		if (!rc)
			ragg__sa_pool_free(p, 60000);
		return rc ? SIZE_MAX : clipped;
	}
	/* One thread, or no pool: all of it here. */
	ragg__sa_pool_free(p, 60000);
	for (size_t b = 0; b < total; b++)
		clipped += mask_block(a, a->self, b);
	return clipped;
}
