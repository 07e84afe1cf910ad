/*
 * The aggregation engine: summing kernels, the optimizer's update, NUMA
 * placement and the pool of pinned threads that agents and servers hand
 * chunks to.
 *
 * Kernels are picked once at start-up (AVX-512, AVX2, scalar from CPUID, or
 * OpenBLAS when RAGG_KERNELS=openblas) and called through ragg__kernels.
 */
#ifndef RAGG_ENGINE_H
#define RAGG_ENGINE_H

#include <stddef.h>
#include <stdint.h>

struct ragg__kernels {
	const char *name; /* "avx512", "avx2", "scalar", "openblas" */
	/* out[i] = sum_j w[j] * in[j][i], j < k: reads each input once, writes
	 * out once. k >= 1. */
	void (*sum_weighted)(float *out, const float *const *in, const float *w, int k, size_t n);
	/* sqrt(sum x[i]^2), accumulated in double. */
	double (*norm2)(const float *x, size_t n);
	/* x[i] *= a */
	void (*scale)(float *x, float a, size_t n);
	/* SGD: w[i] -= lr * scale * g[i] */
	void (*sgd)(float *w, const float *g, float scale, float lr, size_t n);
	/* Momentum: v[i] = mu * v[i] + scale * g[i]; w[i] -= lr * v[i] */
	void (*momentum)(float *w, float *v, const float *g, float scale, float lr, float mu,
	                 size_t n);
};

/* The kernels for `name` ("auto", "avx512", "avx2", "scalar", "openblas"),
 * NULL when unknown or not supported by this CPU. */
const struct ragg__kernels *ragg__kernels_get(const char *name);

/* A unit of work for the pool: fn(job) runs on an engine thread. */
struct ragg__job {
	void (*fn)(struct ragg__job *job);
	void *arg;
	int thread_hint; /* -1: any; else the thread that owns this chunk */
	struct ragg__job *next; /* owned by the engine while queued */
};

struct ragg__engine_conf {
	int threads; /* 0: run jobs inline in submit() */
	const char *cpus; /* hwloc cpuset list string, or NULL for automatic */
	const char *device; /* device whose NUMA node to use, or NULL */
	const char *topology_xml; /* tests: load this topology instead of the machine's */
};

struct ragg__engine;

int ragg__engine_start(const struct ragg__engine_conf *conf, struct ragg__engine **engine);
void ragg__engine_stop(struct ragg__engine *engine);
/* Queue a job; never blocks, never allocates. */
int ragg__engine_submit(struct ragg__engine *engine, struct ragg__job *job);
/* Take the finished jobs (a list through ->next) or NULL. */
struct ragg__job *ragg__engine_reap(struct ragg__engine *engine);
/* An fd readable while finished jobs wait to be reaped. */
int ragg__engine_wake_fd(const struct ragg__engine *engine);
/* Memory on the engine's NUMA node, first touched in `chunk`-sized pieces by
 * the thread that owns each piece. Free with ragg__engine_free. */
void *ragg__engine_alloc(struct ragg__engine *engine, size_t bytes, size_t chunk);
void ragg__engine_free(struct ragg__engine *engine, void *p, size_t bytes);
/* Printable description of the placement chosen. */
int ragg__engine_describe(const struct ragg__engine *engine, char *buf, size_t len);

#endif
