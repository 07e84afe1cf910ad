/*
 * A whole job as threads of one process: every server, agent and worker is
 * a thread with its own context, joined over a real transport (tcp on
 * 127.0.0.1, or shm) and the built-in rendezvous on a free loopback port.
 * The round logic can then be tested and debugged in one process, under a
 * debugger or a sanitizer, without ragg-run (Gloo runs its ranks as threads
 * the same way).
 *
 *   static int train(ragg_ctx_t *ctx, int rank, void *arg) { ... return 0; }
 *   struct ragg_thread_job job = { .workers = 4, .agents = 2, .servers = 2,
 *                                  .transport = "tcp", .worker = train };
 *   int rc = ragg_thread_job_run(&job);
 *
 * Each thread fills its options with ragg_opts_default() (so RAGG_* in the
 * environment apply, as they would to every process of a job), then sets
 * its role, rank, the job's shape, the rendezvous address and what `job`
 * gives. Servers and agents run ragg_serve(); workers run job->worker.
 */
#ifndef RAGG_THREAD_JOB_H
#define RAGG_THREAD_JOB_H

#include <stddef.h>

#include <ragg/ragg.h>

struct ragg_thread_job {
	int workers, agents, servers;
	const char *transport; /* NULL: RAGG_TRANSPORT or its default */
	size_t chunk_bytes; /* 0: the default */
	float lr; /* 0: the default */
	int timeout_ms; /* 0: 30000 */
	/* Called on each worker thread between ragg_init and ragg_finalize;
	 * returns 0 when everything it checked held. */
	int (*worker)(ragg_ctx_t *ctx, int rank, void *arg);
	void *arg;
	/* Out: each role's first failure (ragg_init, the worker function,
	 * ragg_serve or ragg_finalize), 0 when none. */
	int worker_rc, agent_rc, server_rc;
};

/* Runs the job to its end. 0 when every thread succeeded; else the first
 * failure met (the per-role codes say where). -EINVAL for a bad shape,
 * a negative errno when a thread could not be started. */
int ragg_thread_job_run(struct ragg_thread_job *job);

#endif
