/*
 * Shared by the engine's files: the engine object, the placement it
 * computed, and the pool's per-thread state. Nothing outside src/engine/
 * includes this; the core sees engine.h only.
 */
#ifndef RAGG_ENGINE_INTERNAL_H
#define RAGG_ENGINE_INTERNAL_H

#include <hwloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "engine/engine.h"

/* Where the engine runs, decided once at start. */
struct ragg__placement {
	hwloc_topology_t topo;
	int this_system; /* 0: a loaded topology, bindings are only recorded */
	int node; /* OS index, -1 when the topology has no NUMA node */
	int device_node;
	int per_cpu;
	int nthreads;
	char device[64]; /* conf->device as given, "" when none */
	hwloc_bitmap_t cpuset; /* union of thread_cpus */
	hwloc_bitmap_t nodeset; /* where memory is bound */
	hwloc_bitmap_t *thread_cpus; /* nthreads entries */
};

int ragg__placement_init(struct ragg__placement *pl, const struct ragg__engine_conf *conf);
void ragg__placement_fini(struct ragg__placement *pl);
/* Bind the calling thread as thread `index`. 0, or a negative errno. */
int ragg__placement_bind_self(const struct ragg__placement *pl, int index);
void *ragg__placement_alloc(const struct ragg__placement *pl, size_t bytes);
void ragg__placement_free(const struct ragg__placement *pl, void *p, size_t bytes);

/*
 * One engine thread. `head` is a lock-free LIFO that any thread pushes to
 * and only the owner empties (by exchange, so no ABA); `state` is the
 * futex word the owner sleeps on. Each sits on its own cache line, away
 * from the fields only the owner touches.
 */
struct ragg__engine_thread {
	_Alignas(64) struct ragg__job *_Atomic head;
	_Alignas(64) atomic_int state;
	_Alignas(64) struct ragg__engine *engine;
	int index;
	int bind_rc;
	int started; /* pthread created: stop must join it */
	pthread_t tid;
	char got[256]; /* cpuset the thread reports after binding */
};

struct ragg__engine {
	struct ragg__placement pl;
	const struct ragg__kernels *kernels;
	int nthreads;
	struct ragg__engine_thread *threads;
	int efd;
	bool own_efd; /* efd is ours to close */
	atomic_int ready; /* threads that finished binding; futex word */
	atomic_int stopping;
	_Alignas(64) atomic_uint rr;
	/* Finished jobs (LIFO, pushed by every thread, emptied by reap) and
	 * whether the eventfd may hold a count that reap must drain. */
	_Alignas(64) struct ragg__job *_Atomic done;
	_Alignas(64) atomic_int efd_armed;
};

int ragg__pool_start(struct ragg__engine *e);
void ragg__pool_stop(struct ragg__engine *e);

/* Jobs the engine submits to itself (first touch): run on their thread but
 * never handed to reap; the job signals its own completion. */
void ragg__engine_touch_run(struct ragg__job *job);

long ragg__futex_wait(atomic_int *word, int val);
long ragg__futex_wake(atomic_int *word, int n);

#endif
