/*
 * The engine's thread pool: every job runs once and is reaped once, hints
 * pick the thread and keep submission order, the wake fd is readable
 * exactly while something waits, idle threads sleep, stop runs what is
 * still queued. Run under ThreadSanitizer as well (see engine.mk).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ragg/ragg.h>

#include "compiler.h"
#include "engine/engine.h"
#include "harness.h"

struct tjob {
	struct ragg__job job;
	atomic_int runs;
	int reaped;
	int thread; /* engine thread it ran on, from the thread's name */
	unsigned seq;
	unsigned prev_seq; /* seq of the job its thread ran just before */
};

static _Thread_local unsigned last_seq_on_thread;

static int engine_thread_index(void)
{
	char name[16] = "";
	pthread_getname_np(pthread_self(), name, sizeof(name));
	return strncmp(name, "ragg-eng/", 9) == 0 ? atoi(name + 9) : -1;
}

static void count_fn(struct ragg__job *job)
{
	struct tjob *t = ragg__container_of(job, struct tjob, job);
	atomic_fetch_add(&t->runs, 1);
	t->thread = engine_thread_index();
	t->prev_seq = last_seq_on_thread;
	last_seq_on_thread = t->seq;
}

static struct ragg__engine *start(int threads)
{
	struct ragg__engine *e = NULL;
	struct ragg__engine_conf conf = { .threads = threads };
	RAGG_CHECK_OK(ragg__engine_start(&conf, &e));
	RAGG_CHECK(ragg__engine_threads(e) == threads);
	return e;
}

static int readable(struct ragg__engine *e, int timeout_ms)
{
	struct pollfd p = { .fd = ragg__engine_wake_fd(e), .events = POLLIN };
	int n = poll(&p, 1, timeout_ms);
	RAGG_CHECK(n >= 0);
	return n > 0 && (p.revents & POLLIN);
}

/* With nothing left to reap the fd goes quiet. It may read ready for a
 * moment after a reap (a worker between its write and its arm, see
 * pool.c); a reap then returns nothing and clears it. */
static void settles_unreadable(struct ragg__engine *e)
{
	for (int i = 0; i < 1000 && readable(e, 0); i++) {
		RAGG_CHECK(ragg__engine_reap(e) == NULL);
		usleep(1000);
	}
	RAGG_CHECK(!readable(e, 0));
}

/* Reap until `want` jobs came back, sleeping on the fd in between. */
static int reap_all(struct ragg__engine *e, int want)
{
	int got = 0;
	while (got < want) {
		struct ragg__job *j = ragg__engine_reap(e);
		if (!j) {
			RAGG_CHECKF(readable(e, 10000), "no wake-up with %d of %d jobs reaped", got,
			            want);
			continue;
		}
		for (; j; j = j->next) {
			struct tjob *t = ragg__container_of(j, struct tjob, job);
			RAGG_CHECK(t->reaped == 0);
			RAGG_CHECK(atomic_load(&t->runs) == 1);
			t->reaped = 1;
			got++;
		}
	}
	return got;
}

RAGG_TEST(many_jobs_each_reaped_once)
{
	enum { N = 20000, ROUNDS = 3, THREADS = 3 };
	struct ragg__engine *e = start(THREADS);
	struct tjob *jobs = calloc(N, sizeof(*jobs));
	RAGG_CHECK(jobs != NULL);
	for (int r = 0; r < ROUNDS; r++) {
		/* The same jobs again each round, as the core reuses its chunk
		 * jobs. */
		for (int i = 0; i < N; i++) {
			atomic_store(&jobs[i].runs, 0);
			jobs[i].reaped = 0;
			jobs[i].job.fn = count_fn;
			jobs[i].job.thread_hint = i % 4 == 3 ? -1 : i % 7;
			jobs[i].seq = (unsigned)(r * N + i + 1);
			RAGG_CHECK_OK(ragg__engine_submit(e, &jobs[i].job));
		}
		RAGG_CHECK(reap_all(e, N) == N);
		RAGG_CHECK(ragg__engine_reap(e) == NULL);
		for (int i = 0; i < N; i++) {
			if (jobs[i].job.thread_hint >= 0)
				RAGG_CHECKF(jobs[i].thread == jobs[i].job.thread_hint % THREADS,
				            "job %d (hint %d) ran on thread %d", i,
				            jobs[i].job.thread_hint, jobs[i].thread);
			else
				RAGG_CHECK(jobs[i].thread >= 0 && jobs[i].thread < THREADS);
		}
	}
	RAGG_CHECK(ragg__engine_reap(e) == NULL);
	settles_unreadable(e);
	ragg__engine_stop(e);
	free(jobs);
}

/* Jobs for one thread run in submission order. */
RAGG_TEST(hinted_jobs_keep_order)
{
	enum { N = 5000 };
	struct ragg__engine *e = start(2);
	struct tjob *jobs = calloc(N, sizeof(*jobs));
	RAGG_CHECK(jobs != NULL);
	for (int i = 0; i < N; i++) {
		jobs[i].job.fn = count_fn;
		jobs[i].job.thread_hint = 1;
		jobs[i].seq = (unsigned)i + 1;
		RAGG_CHECK_OK(ragg__engine_submit(e, &jobs[i].job));
	}
	reap_all(e, N);
	for (int i = 0; i < N; i++)
		RAGG_CHECKF(jobs[i].prev_seq == (unsigned)i, "job %d ran after %u", i,
		            jobs[i].prev_seq);
	ragg__engine_stop(e);
	free(jobs);
}

struct gate_job {
	struct ragg__job job;
	atomic_int open, entered;
};

static void gate_fn(struct ragg__job *job)
{
	struct gate_job *g = ragg__container_of(job, struct gate_job, job);
	atomic_store(&g->entered, 1);
	while (!atomic_load(&g->open))
		usleep(1000);
}

/* Readable only once a job has finished, not readable after the reap. */
RAGG_TEST(wake_fd_semantics)
{
	struct ragg__engine *e = start(1);
	RAGG_CHECK(ragg__engine_wake_fd(e) >= 0);
	RAGG_CHECK(!readable(e, 0));
	RAGG_CHECK(ragg__engine_reap(e) == NULL);

	struct gate_job g = { .job = { .fn = gate_fn, .thread_hint = 0 } };
	RAGG_CHECK_OK(ragg__engine_submit(e, &g.job));
	while (!atomic_load(&g.entered))
		usleep(1000);
	RAGG_CHECK(!readable(e, 50)); /* running, not finished */
	RAGG_CHECK(ragg__engine_reap(e) == NULL);
	atomic_store(&g.open, 1);
	RAGG_CHECK(readable(e, 10000));
	RAGG_CHECK(readable(e, 0)); /* level-triggered until reaped */
	struct ragg__job *j = ragg__engine_reap(e);
	RAGG_CHECK(j == &g.job && j->next == NULL);
	settles_unreadable(e);
	RAGG_CHECK(ragg__engine_reap(e) == NULL);

	/* Several finished jobs: one wake-up, one reap returns them all. */
	struct tjob t[5];
	memset(t, 0, sizeof(t));
	for (int i = 0; i < 5; i++) {
		t[i].job.fn = count_fn;
		t[i].job.thread_hint = 0;
		RAGG_CHECK_OK(ragg__engine_submit(e, &t[i].job));
	}
	for (int i = 0; i < 5; i++)
		while (atomic_load(&t[i].runs) == 0)
			usleep(1000);
	RAGG_CHECK(readable(e, 10000));
	int n = 0;
	for (j = ragg__engine_reap(e); j; j = j->next)
		n++;
	/* The last job's push may trail its run by a moment. */
	if (n < 5) {
		RAGG_CHECK(readable(e, 10000));
		for (j = ragg__engine_reap(e); j; j = j->next)
			n++;
	}
	RAGG_CHECK(n == 5);
	settles_unreadable(e);
	ragg__engine_stop(e);
}

/* threads = 0: the job runs inside submit and still comes back by reap. */
RAGG_TEST(inline_mode)
{
	struct ragg__engine *e = start(0);
	struct tjob t = { .job = { .fn = count_fn, .thread_hint = 3 } };
	RAGG_CHECK(!readable(e, 0));
	RAGG_CHECK_OK(ragg__engine_submit(e, &t.job));
	RAGG_CHECK(atomic_load(&t.runs) == 1);
	RAGG_CHECK(t.thread == -1); /* ran on this thread */
	RAGG_CHECK(readable(e, 0));
	RAGG_CHECK(ragg__engine_reap(e) == &t.job);
	RAGG_CHECK(!readable(e, 0));
	RAGG_CHECK(ragg__engine_submit(e, NULL) == -EINVAL);
	ragg__engine_stop(e);
}

static atomic_int slow_runs;

static void slow_fn(struct ragg__job *job)
{
	struct tjob *t = ragg__container_of(job, struct tjob, job);
	atomic_fetch_add(&t->runs, 1);
	atomic_fetch_add(&slow_runs, 1);
	if (t->seq % 100 == 0)
		usleep(2000);
}

/* Stop with work still queued: all of it runs, exactly once. */
RAGG_TEST(stop_with_queued_jobs)
{
	enum { N = 3000 };
	struct ragg__engine *e = start(2);
	struct tjob *jobs = calloc(N, sizeof(*jobs));
	RAGG_CHECK(jobs != NULL);
	for (int i = 0; i < N; i++) {
		jobs[i].job.fn = slow_fn;
		jobs[i].job.thread_hint = -1;
		jobs[i].seq = (unsigned)i;
		RAGG_CHECK_OK(ragg__engine_submit(e, &jobs[i].job));
	}
	RAGG_CHECK(atomic_load(&slow_runs) < N); /* some are still queued */
	ragg__engine_stop(e);
	RAGG_CHECK(atomic_load(&slow_runs) == N);
	for (int i = 0; i < N; i++)
		RAGG_CHECKF(atomic_load(&jobs[i].runs) == 1, "job %d ran %d times", i,
		            atomic_load(&jobs[i].runs));
	free(jobs);
}

/* Many threads submitting at once (the core's progress thread and jobs
 * that chain work), one reaping. */
struct submitter {
	pthread_t tid;
	struct ragg__engine *e;
	struct tjob *jobs;
	int n;
};

static void *submit_main(void *arg)
{
	struct submitter *s = arg;
	for (int i = 0; i < s->n; i++) {
		s->jobs[i].job.fn = count_fn;
		s->jobs[i].job.thread_hint = i % 3 ? -1 : i;
		if (ragg__engine_submit(s->e, &s->jobs[i].job))
			return (void *)1;
	}
	return NULL;
}

RAGG_TEST(concurrent_submitters)
{
	enum { SUBMITTERS = 4, PER = 10000 };
	struct ragg__engine *e = start(2);
	struct submitter s[SUBMITTERS];
	for (int i = 0; i < SUBMITTERS; i++) {
		s[i] = (struct submitter){ .e = e, .n = PER };
		s[i].jobs = calloc(PER, sizeof(struct tjob));
		RAGG_CHECK(s[i].jobs != NULL);
		RAGG_CHECK(pthread_create(&s[i].tid, NULL, submit_main, &s[i]) == 0);
	}
	int got = reap_all(e, SUBMITTERS * PER);
	for (int i = 0; i < SUBMITTERS; i++) {
		void *rc;
		pthread_join(s[i].tid, &rc);
		RAGG_CHECK(rc == NULL);
		free(s[i].jobs);
	}
	RAGG_CHECK(got == SUBMITTERS * PER);
	RAGG_CHECK(ragg__engine_reap(e) == NULL);
	ragg__engine_stop(e);
}

/* The per-chunk arrival counter: the last of k contributions submits. */
struct arrival {
	pthread_t tid;
	struct ragg__engine *e;
	unsigned *pending;
	struct ragg__job *job;
	int submitted;
};

static void *arrive_main(void *arg)
{
	struct arrival *a = arg;
	int rc = ragg__engine_arrive(a->e, a->pending, a->job);
	a->submitted = rc;
	return NULL;
}

RAGG_TEST(arrival_counter)
{
	enum { K = 6, ROUNDS = 200 };
	struct ragg__engine *e = start(2);
	struct tjob t = { .job = { .fn = count_fn, .thread_hint = 0 } };
	for (int r = 0; r < ROUNDS; r++) {
		unsigned pending = K;
		struct arrival a[K];
		atomic_store(&t.runs, 0);
		t.reaped = 0;
		for (int i = 0; i < K; i++) {
			a[i] = (struct arrival){ .e = e, .pending = &pending, .job = &t.job };
			RAGG_CHECK(pthread_create(&a[i].tid, NULL, arrive_main, &a[i]) == 0);
		}
		int submitted = 0;
		for (int i = 0; i < K; i++) {
			pthread_join(a[i].tid, NULL);
			RAGG_CHECK(a[i].submitted >= 0);
			submitted += a[i].submitted;
		}
		RAGG_CHECK(submitted == 1);
		RAGG_CHECK(reap_all(e, 1) == 1);
	}
	ragg__engine_stop(e);
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* Idle threads sleep: a quarter second idle costs next to no CPU. */
RAGG_TEST(idle_threads_sleep)
{
	struct ragg__engine *e = start(4);
	struct tjob t = { .job = { .fn = count_fn, .thread_hint = -1 } };
	RAGG_CHECK_OK(ragg__engine_submit(e, &t.job));
	reap_all(e, 1);
	double before = cpu_seconds();
	struct timespec ts = { 0, 250 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	double used = cpu_seconds() - before;
	RAGG_CHECKF(used < 0.02, "idle engine used %.3f s of CPU in 0.25 s", used);
	ragg__engine_stop(e);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
