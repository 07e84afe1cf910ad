/*
 * The engine object: start and stop, memory placed on the engine's node,
 * and the description ragg-info prints. Threads and queues are pool.c's,
 * topology and binding placement.c's.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ragg/ragg.h>

#include "compiler.h"
#include "engine/internal.h"
#include "engine/kernels.h"
#include "log.h"

int ragg__engine_start(const struct ragg__engine_conf *conf, struct ragg__engine **engine)
{
	struct ragg__engine *e;
	int rc;

	if (!conf || !engine)
		return -EINVAL;
	const struct ragg__kernels *k = ragg__kernels_get(conf->kernels);
	if (!k) {
		ragg__error("RAGG_KERNELS=\"%s\": unknown or not supported by this CPU "
		            "(auto, avx512, avx2, scalar, openblas)",
		            conf->kernels);
		return RAGG_ERR_CONFIG;
	}
	e = aligned_alloc(64, sizeof(*e));
	if (!e)
		return -ENOMEM;
	memset(e, 0, sizeof(*e));
	e->efd = -1;
	e->kernels = k;
	if ((rc = ragg__placement_init(&e->pl, conf)))
		goto err_free;
	e->nthreads = e->pl.nthreads;
	if (e->nthreads) {
		e->threads = aligned_alloc(64, (size_t)e->nthreads * sizeof(*e->threads));
		if (!e->threads) {
			rc = -ENOMEM;
			goto err_placement;
		}
		memset(e->threads, 0, (size_t)e->nthreads * sizeof(*e->threads));
	}
	e->own_efd = !conf->wake_fd;
	e->efd = conf->wake_fd ? *conf->wake_fd : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->efd < 0) {
		rc = conf->wake_fd ? -EINVAL : -errno;
		ragg__error("engine: eventfd: %s", strerror(-rc));
		goto err_threads;
	}
	if ((rc = ragg__pool_start(e)))
		goto err_efd;
	if (ragg__log_get() >= RAGG_LOG_INFO) {
		char d[512];
		ragg__engine_describe(e, d, sizeof(d));
		ragg__info("engine: %s", d);
	}
	*engine = e;
	return 0;

err_efd:
	if (e->own_efd)
		close(e->efd);
err_threads:
	free(e->threads);
err_placement:
	ragg__placement_fini(&e->pl);
err_free:
	free(e);
	return rc;
}

void ragg__engine_drain(struct ragg__engine *e)
{
	if (e)
		ragg__pool_stop(e);
}

void ragg__engine_stop(struct ragg__engine *e)
{
	if (!e)
		return;
	ragg__pool_stop(e);
	if (e->own_efd)
		close(e->efd);
	free(e->threads);
	ragg__placement_fini(&e->pl);
	free(e);
}

/* Zeroes the pieces one thread owns: thread t of T writes pieces t, t + T,
 * ... so each page is first touched (and, without a memory binding,
 * placed) by the thread that will sum it. */
struct touch_job {
	struct ragg__job job;
	char *base;
	size_t bytes, chunk;
	int nthreads;
	atomic_int *remaining;
};

static void touch(char *base, size_t bytes, size_t chunk, int thread, int nthreads)
{
	size_t step = chunk * (size_t)nthreads;
	for (size_t off = chunk * (size_t)thread; off < bytes; off += step)
		memset(base + off, 0, bytes - off < chunk ? bytes - off : chunk);
}

void ragg__engine_touch_run(struct ragg__job *job)
{
	struct touch_job *tj = ragg__container_of(job, struct touch_job, job);
	atomic_int *remaining = tj->remaining;
	touch(tj->base, tj->bytes, tj->chunk, job->thread_hint, tj->nthreads);
	/* tj lives on the allocating thread's stack: done with it before the
	 * count lets that thread go. */
	if (atomic_fetch_sub(remaining, 1) == 1)
		ragg__futex_wake(remaining, 1);
}

void *ragg__engine_alloc(struct ragg__engine *e, size_t bytes, size_t chunk)
{
	if (!e || !bytes)
		return NULL;
	char *p = ragg__placement_alloc(&e->pl, bytes);
	if (!p) {
		ragg__error("engine: cannot allocate %zu bytes on NUMA node %d", bytes, e->pl.node);
		return NULL;
	}
	if (!chunk || chunk > bytes)
		chunk = bytes;
	int n = e->nthreads;
	size_t pieces = (bytes + chunk - 1) / chunk;
	if (n > 1 && pieces < (size_t)n)
		n = (int)pieces;
	if (!n || atomic_load(&e->stopping)) {
		touch(p, bytes, chunk, 0, 1);
		return p;
	}
	/* One job per owning thread, on this stack: alloc waits for them. */
	struct touch_job jobs[64];
	atomic_int remaining;
	for (int first = 0; first < n; first += (int)RAGG_ARRAY_SIZE(jobs)) {
		int batch =
		    n - first < (int)RAGG_ARRAY_SIZE(jobs) ? n - first : (int)RAGG_ARRAY_SIZE(jobs);
		atomic_init(&remaining, batch);
		for (int i = 0; i < batch; i++) {
			jobs[i] = (struct touch_job){
				.job = { .fn = ragg__engine_touch_run, .thread_hint = first + i },
				.base = p,
				.bytes = bytes,
				.chunk = chunk,
				.nthreads = e->nthreads,
				.remaining = &remaining,
			};
			ragg__engine_submit(e, &jobs[i].job);
		}
		for (int left; (left = atomic_load(&remaining)) > 0;)
			ragg__futex_wait(&remaining, left);
	}
	return p;
}

void ragg__engine_free(struct ragg__engine *e, void *p, size_t bytes)
{
	if (e && p)
		ragg__placement_free(&e->pl, p, bytes);
}

const struct ragg__kernels *ragg__engine_kernels(const struct ragg__engine *e)
{
	return e->kernels;
}

int ragg__engine_threads(const struct ragg__engine *e)
{
	return e->nthreads;
}

int ragg__engine_get_placement(const struct ragg__engine *e, struct ragg__engine_placement *out)
{
	if (!e || !out)
		return -EINVAL;
	struct ragg__engine_placement p = {
		.node = e->pl.node,
		.device_node = e->pl.device_node,
		.threads = e->nthreads,
		.per_cpu = e->pl.per_cpu,
		.this_system = e->pl.this_system,
		.membind_policy = HWLOC_MEMBIND_BIND,
	};
	hwloc_bitmap_list_snprintf(p.cpus, sizeof(p.cpus), e->pl.cpuset);
	hwloc_bitmap_list_snprintf(p.mem_nodes, sizeof(p.mem_nodes), e->pl.nodeset);
	*out = p;
	return 0;
}

int ragg__engine_thread_binding(const struct ragg__engine *e, int thread, char *asked,
                                size_t asked_len, char *got, size_t got_len)
{
	if (!e || thread < 0 || thread >= e->nthreads)
		return -EINVAL;
	if (asked && asked_len)
		hwloc_bitmap_list_snprintf(asked, asked_len, e->pl.thread_cpus[thread]);
	if (got && got_len)
		snprintf(got, got_len, "%s", e->threads[thread].got);
	return 0;
}

int ragg__engine_describe(const struct ragg__engine *e, char *buf, size_t len)
{
	struct ragg__engine_placement p;
	char dev[96] = "none";
	int n;

	if (!e || !buf || !len)
		return -EINVAL;
	ragg__engine_get_placement(e, &p);
	if (e->pl.device[0])
		snprintf(dev, sizeof(dev), p.device_node >= 0 ? "%s" : "%s(not-found)",
		         e->pl.device);
	n = snprintf(buf, len,
	             "node=%d device=%s cpus=%s threads=%d%s binding=%s memory=bind:%s kernels=%s "
	             "stream=%zuMiB topology=%s",
	             p.node, dev, p.cpus, p.threads, p.threads ? "" : "(inline)",
	             p.per_cpu ? "cpu" : "node", p.mem_nodes, e->kernels->name,
	             __atomic_load_n(&ragg__kernels_stream_bytes, __ATOMIC_RELAXED) >> 20,
	             p.this_system ? "this-system" : "loaded");
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}
