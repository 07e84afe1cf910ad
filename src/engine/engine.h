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

#ifdef __cplusplus
extern "C" { /* bench/micro's shim */
#endif

/* One Adam step's scalars, computed once per step in double and rounded:
 * step = lr / (1 - b1^t) and rsbc2 = 1 / sqrt(1 - b2^t) (bias correction,
 * as PyTorch), l2 = the weight decay Adam adds to the gradient, keep =
 * 1 - lr * wd, AdamW's decoupled decay (1 for Adam). */
struct ragg__adam_coef {
	float b1, a1, b2, a2; /* a1 = 1 - b1, a2 = 1 - b2 */
	float eps, step, rsbc2, l2, keep;
};

struct ragg__kernels {
	const char *name; /* "avx512", "avx2", "scalar", "openblas" */
	/* out[i] = sum_j w[j] * in[j][i], j < k: reads each input once, writes
	 * out once. k >= 1. Returns nonzero when some out[i] is NaN or
	 * infinite (as it is whenever a weight or an input is), found in the
	 * same pass without a branch per element; 0 when all are finite. */
	int (*sum_weighted)(float *out, const float *const *in, const float *w, int k, size_t n);
	/* sqrt(sum x[i]^2), accumulated in double. */
	double (*norm2)(const float *x, size_t n);
	/* x[i] *= a */
	void (*scale)(float *x, float a, size_t n);
	/* SGD: w[i] -= lr * scale * g[i] */
	void (*sgd)(float *w, const float *g, float scale, float lr, size_t n);
	/* Momentum: v[i] = mu * v[i] + scale * g[i]; w[i] -= lr * v[i] */
	void (*momentum)(float *w, float *v, const float *g, float scale, float lr, float mu,
	                 size_t n);
	/* Adam / AdamW on one block, with the coefficients of one step (below):
	 * g' = g + c->l2 * w; m = b1*m + a1*g'; v = b2*v + a2*g'^2;
	 * w = c->keep * w - c->step * m / (sqrt(v) * c->rsbc2 + c->eps). */
	void (*adam)(float *w, float *m, float *v, const float *g, const struct ragg__adam_coef *c,
	             size_t n);
};

/* The kernels for `name` ("auto", "avx512", "avx2", "scalar", "openblas"),
 * NULL when unknown or not supported by this CPU. NULL or "" mean "auto":
 * AVX-512 where the CPU and OS support it (except the Skylake-SP family,
 * which slows its clock for 512-bit FMAs), else AVX2+FMA, else scalar.
 *
 * All buffers hold floats at their natural alignment, any further
 * alignment and any length (tails included) are handled. In sum_weighted,
 * out may be exactly one of in[j] (accumulate in place); no other overlap.
 * A sum that touches many bytes ((k + 1) * n * 4 >= 64 MiB) writes out
 * with streaming stores, fenced before the call returns. */
const struct ragg__kernels *ragg__kernels_get(const char *name);

/* The index of the first NaN or infinite x[i], or n when all are finite.
 * Reads x at memory speed (no branch per element); any alignment. */
size_t ragg__first_nonfinite(const float *x, size_t n);

/* dst[i] + dst_off gets the len bytes at src, for each non-NULL dst[i] of
 * k, reading src from memory once. */
void ragg__copy_fanout(void *const *dst, int k, size_t dst_off, const void *src, size_t len);

/* A unit of work for the pool: fn(job) runs on an engine thread. */
struct ragg__job {
	void (*fn)(struct ragg__job *job);
	void *arg;
	int thread_hint; /* -1: any; else the thread that owns this chunk */
	struct ragg__job *next; /* owned by the engine while queued */
};

#define RAGG_ENGINE_AUTO_THREADS_MAX 8

struct ragg__engine_conf {
	/* 0: run jobs inline in submit(); < 0: one per core of the node, at
	 * most RAGG_ENGINE_AUTO_THREADS_MAX */
	int threads;
	const char *cpus; /* hwloc cpuset list string, or NULL for automatic */
	const char *device; /* device whose NUMA node to use, or NULL */
	const char *topology_xml; /* tests: load this topology instead of the machine's */
	const char *kernels; /* RAGG_KERNELS: as ragg__kernels_get(); NULL: "auto" */
	/* The completion fd (ragg__engine_wake_fd): NULL, the engine makes
	 * its own eventfd; else *wake_fd, a non-blocking eventfd of the
	 * caller's, which the caller closes after ragg__engine_stop. A caller
	 * that waits on it already (a transport's wait) then needs no other. */
	const int *wake_fd;
};

/*
 * Placement. The NUMA node is the one nearest conf->device, an hwloc OS
 * device name (RDMA device "mlx5_0", optionally with ":port", or network
 * interface "eth0") or a PCI bus id ("0000:3b:00.0"); without a device, or
 * when it is not found, the first NUMA node. Every thread is bound to that
 * node's cores (those the calling thread may run on), or, when conf->cpus
 * is given, thread i to the i-th cpu of that list, cycling. Memory is
 * bound to the node (or to the nodes of conf->cpus).
 *
 * topology_xml is a path to an hwloc XML file, an XML document itself
 * (starts with '<') or "synthetic:<hwloc synthetic description>". Such a
 * topology is not this machine's: placement is computed from it but no
 * binding is applied.
 */

struct ragg__engine;

/* 0, -EINVAL (bad conf), RAGG_ERR_CONFIG (unknown kernels or cpus, device
 * topology unreadable), -ENOMEM, or a thread/eventfd creation error. */
int ragg__engine_start(const struct ragg__engine_conf *conf, struct ragg__engine **engine);
/* Runs every job still queued and joins the threads; the engine stays
 * valid for ragg__engine_free (and ragg__engine_alloc, which then touches
 * memory on the calling thread), and submit returns -ESHUTDOWN. Once it
 * returns no job runs or will run, so the memory jobs read and write may
 * be freed or unmapped. Idempotent; ragg__engine_stop drains too. */
void ragg__engine_drain(struct ragg__engine *engine);
/* Runs every job still queued, joins the threads, frees the engine. Jobs
 * finished but not reaped are simply dropped (their memory is the
 * caller's). Nothing may be submitted concurrently. */
void ragg__engine_stop(struct ragg__engine *engine);
/* Queue a job; never blocks, never allocates. A job with thread_hint >= 0
 * runs on thread thread_hint % threads, in submission order among the jobs
 * of that thread; others go round-robin. With threads == 0 the job runs
 * before submit returns. -EINVAL, -ESHUTDOWN once stop has begun. */
int ragg__engine_submit(struct ragg__engine *engine, struct ragg__job *job);
/* Take the finished jobs (a list through ->next, in completion order per
 * thread) or NULL. Every submitted job is reaped exactly once. */
struct ragg__job *ragg__engine_reap(struct ragg__engine *engine);
/* The same, after a sleep on the wake fd: drains the fd whether or not a
 * finished job says it wrote it (one read), so a signal whose job was
 * already reaped cannot keep the fd readable. */
struct ragg__job *ragg__engine_reap_woken(struct ragg__engine *engine);
/* An fd readable while finished jobs wait to be reaped (it may rarely be
 * readable with none: reap then returns NULL and clears it). */
int ragg__engine_wake_fd(const struct ragg__engine *engine);
/* Memory on the engine's NUMA node, zeroed and first touched in
 * `chunk`-sized pieces by the thread that owns each piece: piece i belongs
 * to thread i % threads (the thread_hint to give its jobs). Page aligned.
 * NULL when out of memory. Free with ragg__engine_free. Not for the hot
 * path: it waits for the owning threads. */
void *ragg__engine_alloc(struct ragg__engine *engine, size_t bytes, size_t chunk);
void ragg__engine_free(struct ragg__engine *engine, void *p, size_t bytes);
/* Printable description of the placement chosen, one line of key=value
 * ("node=1 device=mlx5_0 cpus=2-3 threads=2 binding=node memory=bind:1
 * kernels=avx512 topology=this-system"). 0, or -ENOSPC when truncated. */
int ragg__engine_describe(const struct ragg__engine *engine, char *buf, size_t len);

/* The kernels chosen from conf->kernels. */
const struct ragg__kernels *ragg__engine_kernels(const struct ragg__engine *engine);
/* Number of engine threads, 0 when jobs run inline. */
int ragg__engine_threads(const struct ragg__engine *engine);

/* What the engine asked of hwloc, for tests and ragg-info. On a loaded
 * topology (tests) nothing is applied; on this machine `applied` says the
 * binding calls succeeded. Strings use hwloc's list syntax ("2-3,6"). */
struct ragg__engine_placement {
	int node; /* OS index of the NUMA node used, -1 when the topology has none */
	int device_node; /* node of conf->device; -1: none given or not found */
	int threads;
	int per_cpu; /* 1: one cpu per thread (conf->cpus); 0: whole node */
	int this_system; /* 0: a loaded topology, bindings only recorded */
	int membind_policy; /* hwloc_membind_policy_t given to hwloc_alloc_membind */
	char cpus[256]; /* cpus the threads are bound to, all threads together */
	char mem_nodes[64]; /* nodeset given to hwloc_alloc_membind */
};
int ragg__engine_get_placement(const struct ragg__engine *engine,
                               struct ragg__engine_placement *out);
/* The cpuset thread `thread` asked for (`asked`) and, on this machine, the
 * one hwloc_get_cpubind reports it got (`got`, "" on a loaded topology).
 * 0, or -EINVAL for a thread that does not exist. */
int ragg__engine_thread_binding(const struct ragg__engine *engine, int thread, char *asked,
                                size_t asked_len, char *got, size_t got_len);

/* A contribution to a chunk has landed; the last of them submits the
 * chunk's job. *pending counts contributions still awaited and is re-armed
 * by the caller for the next round. The per-chunk counter is the only
 * shared write on this path. 1: this call submitted the job, 0: more are
 * awaited, < 0: the submit error. */
static inline int ragg__engine_arrive(struct ragg__engine *engine, unsigned *pending,
                                      struct ragg__job *job)
{
	if (__atomic_sub_fetch(pending, 1, __ATOMIC_ACQ_REL) != 0)
		return 0;
	int rc = ragg__engine_submit(engine, job);
	return rc < 0 ? rc : 1;
}

#ifdef __cplusplus
}
#endif

#endif
