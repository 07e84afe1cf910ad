/*
 * The pool of engine threads.
 *
 * Submit pushes a job onto its thread's lock-free stack (one CAS) and wakes
 * the thread only if it sleeps; the thread takes its whole stack with one
 * exchange, reverses it to submission order and runs it. Finished jobs go
 * onto one shared stack that reap takes whole, and the eventfd is written
 * only when that stack turns non-empty. Nothing allocates, nothing locks;
 * an idle thread sleeps on a futex (the machine is often shared by many
 * ranks: no spinning).
 *
 * Sleeping without losing a wake-up: the thread stores SLEEPING, then
 * re-reads its stack; a submitter pushes, then reads the state. Both are
 * sequentially consistent, so at least one of them sees the other: either
 * the thread finds the job, or the submitter finds SLEEPING, swaps it to
 * AWAKE and calls futex_wake (the thread's futex_wait on SLEEPING then
 * returns at once or is woken).
 *
 * The eventfd must be readable whenever finished jobs wait, and must not
 * stay readable once they are reaped, or a poll loop would spin. A worker
 * pushes, and if the stack was empty writes the fd and then sets
 * efd_armed; reap swaps efd_armed to 0, drains the fd if it was set, and
 * only then takes the stack. A write followed by its arm either is
 * drained by a later reap or leaves efd_armed set, which makes the next
 * reap drain it; and the write for the job that made the stack non-empty
 * comes after the last take, so no drain can have hidden it. The one gap
 * is a worker preempted between its write and its arm: the fd then reads
 * ready with nothing to reap until the worker runs again, which on a busy
 * host is long enough for a loop that sleeps on the fd to spin thousands
 * of times. So a loop that slept reaps with ragg__engine_reap_woken, which
 * drains the fd unconditionally before it takes the stack: a stray write
 * then costs at most one more wake-up. Reap with efd_armed clear and the
 * stack empty costs no system call.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compiler.h"
#include "engine/internal.h"
#include "log.h"

enum { AWAKE = 0, SLEEPING = 1 };

long ragg__futex_wait(atomic_int *word, int val)
{
	return syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

long ragg__futex_wake(atomic_int *word, int n)
{
	return syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Push onto a LIFO stack; returns the previous head. */
static struct ragg__job *push(struct ragg__job *_Atomic *head, struct ragg__job *job)
{
	struct ragg__job *old = atomic_load_explicit(head, memory_order_relaxed);
	do
		job->next = old;
	while (!atomic_compare_exchange_weak(head, &old, job));
	return old;
}

static struct ragg__job *reverse(struct ragg__job *list)
{
	struct ragg__job *out = NULL;
	while (list) {
		struct ragg__job *next = list->next;
		list->next = out;
		out = list;
		list = next;
	}
	return out;
}

static void wake(struct ragg__engine_thread *t)
{
	if (atomic_load(&t->state) == SLEEPING && atomic_exchange(&t->state, AWAKE) == SLEEPING)
		ragg__futex_wake(&t->state, 1);
}

static void finish(struct ragg__engine *e, struct ragg__job *job)
{
	if (push(&e->done, job))
		return;
	uint64_t one = 1;
	/* Only EAGAIN (counter saturated, still readable) can fail here. */
	ssize_t w = write(e->efd, &one, sizeof(one));
	(void)w;
	atomic_store(&e->efd_armed, 1);
}

static void run_list(struct ragg__engine *e, struct ragg__job *job)
{
	while (job) {
		struct ragg__job *next = job->next;
		/* Decided before running: an internal job may be gone once its
		 * function has signalled completion. */
		if (job->fn == ragg__engine_touch_run) {
			job->fn(job);
		} else {
			job->fn(job);
			finish(e, job);
		}
		job = next;
	}
}

static void *worker_main(void *arg)
{
	struct ragg__engine_thread *t = arg;
	struct ragg__engine *e = t->engine;
	char name[16];

	snprintf(name, sizeof(name), "ragg-eng/%d", t->index);
	pthread_setname_np(pthread_self(), name);
	t->bind_rc = ragg__placement_bind_self(&e->pl, t->index);
	if (t->bind_rc)
		ragg__warn("engine: thread %d: cpu binding failed: %s", t->index,
		           strerror(-t->bind_rc));
	t->got[0] = 0;
	if (e->pl.this_system) {
		hwloc_bitmap_t got = hwloc_bitmap_alloc();
		if (got && hwloc_get_cpubind(e->pl.topo, got, HWLOC_CPUBIND_THREAD) == 0)
			hwloc_bitmap_list_snprintf(t->got, sizeof(t->got), got);
		hwloc_bitmap_free(got);
	}
	atomic_fetch_add(&e->ready, 1);
	ragg__futex_wake(&e->ready, INT_MAX);

	for (;;) {
		struct ragg__job *list = atomic_exchange(&t->head, NULL);
		if (list) {
			run_list(e, reverse(list));
			continue;
		}
		if (atomic_load(&e->stopping))
			break;
		atomic_store(&t->state, SLEEPING);
		if (atomic_load(&t->head) || atomic_load(&e->stopping)) {
			atomic_store(&t->state, AWAKE);
			continue;
		}
		ragg__futex_wait(&t->state, SLEEPING);
		atomic_store(&t->state, AWAKE);
	}
	return NULL;
}

int ragg__pool_start(struct ragg__engine *e)
{
	sigset_t all, old;
	int rc = 0;

	if (!e->nthreads)
		return 0;
	/* Engine threads take no signals: they belong to the application's
	 * threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < e->nthreads; i++) {
		struct ragg__engine_thread *t = &e->threads[i];
		t->engine = e;
		t->index = i;
		if ((rc = pthread_create(&t->tid, NULL, worker_main, t))) {
			ragg__error("engine: cannot start thread %d: %s", i, strerror(rc));
			rc = -rc;
			break;
		}
		t->started = 1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		ragg__pool_stop(e);
		return rc;
	}
	/* Wait until every thread is bound, so that describe and the first
	 * allocation see the final placement. */
	for (int n; (n = atomic_load(&e->ready)) < e->nthreads;)
		ragg__futex_wait(&e->ready, n);
	return 0;
}

void ragg__pool_stop(struct ragg__engine *e)
{
	atomic_store(&e->stopping, 1);
	for (int i = 0; i < e->nthreads; i++)
		if (e->threads[i].started)
			wake(&e->threads[i]);
	for (int i = 0; i < e->nthreads; i++)
		if (e->threads[i].started) {
			pthread_join(e->threads[i].tid, NULL);
			e->threads[i].started = 0;
		}
	/* A job may have queued one more as its thread was leaving: every
	 * accepted job runs exactly once, here if need be. */
	for (int i = 0; i < e->nthreads; i++)
		run_list(e, reverse(atomic_exchange(&e->threads[i].head, NULL)));
}

int ragg__engine_submit(struct ragg__engine *e, struct ragg__job *job)
{
	if (ragg__unlikely(!e || !job || !job->fn))
		return -EINVAL;
	if (ragg__unlikely(atomic_load_explicit(&e->stopping, memory_order_relaxed)))
		return -ESHUTDOWN;
	if (!e->nthreads) {
		job->next = NULL;
		run_list(e, job);
		return 0;
	}
	unsigned i = job->thread_hint >= 0
	                 ? (unsigned)job->thread_hint
	                 : atomic_fetch_add_explicit(&e->rr, 1, memory_order_relaxed);
	struct ragg__engine_thread *t = &e->threads[i % (unsigned)e->nthreads];
	push(&t->head, job);
	wake(t);
	return 0;
}

struct ragg__job *ragg__engine_reap_woken(struct ragg__engine *e)
{
	uint64_t n;
	atomic_store(&e->efd_armed, 0);
	ssize_t r = read(e->efd, &n, sizeof(n));
	(void)r;
	return reverse(atomic_exchange(&e->done, NULL));
}

struct ragg__job *ragg__engine_reap(struct ragg__engine *e)
{
	if (!atomic_load(&e->efd_armed) && !atomic_load_explicit(&e->done, memory_order_relaxed))
		return NULL;
	if (atomic_exchange(&e->efd_armed, 0)) {
		uint64_t n;
		ssize_t r = read(e->efd, &n, sizeof(n));
		(void)r;
	}
	return reverse(atomic_exchange(&e->done, NULL));
}

int ragg__engine_wake_fd(const struct ragg__engine *e)
{
	return e ? e->efd : -EINVAL;
}
