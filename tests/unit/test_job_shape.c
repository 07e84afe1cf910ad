/*
 * ragg_job_size() and ragg_ctx_opts() on the workers of a job run as
 * threads: the shape and the options each worker reads back are the job's,
 * the job key is withheld, and a bad argument leaves the output untouched.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "thread_job.h"

#define LR 0.125f

struct shape {
	int workers, agents, servers;
};

static int fail(const char *what)
{
	fprintf(stderr, "%s\n", what);
	return -ERANGE;
}

static int worker(ragg_ctx_t *ctx, int rank, void *arg)
{
	const struct shape *s = arg;
	struct ragg_opts o, before;

	if (ragg_job_size(ctx, RAGG_ROLE_WORKER) != s->workers ||
	    ragg_job_size(ctx, RAGG_ROLE_AGENT) != s->agents ||
	    ragg_job_size(ctx, RAGG_ROLE_SERVER) != s->servers)
		return fail("ragg_job_size: not the job's shape");
	if (ragg_job_size(ctx, RAGG_ROLE_NONE) != -EINVAL || ragg_job_size(ctx, 99) != -EINVAL ||
	    ragg_job_size(NULL, RAGG_ROLE_WORKER) != -EINVAL)
		return fail("ragg_job_size: a bad argument not refused");

	memset(&o, 0xa5, sizeof(o));
	o.size = sizeof(o);
	if (ragg_ctx_opts(ctx, &o))
		return fail("ragg_ctx_opts failed");
	if (o.size != sizeof(o) || o.role != RAGG_ROLE_WORKER || o.rank != rank ||
	    o.workers != s->workers || o.agents != s->agents || o.servers != s->servers ||
	    o.lr != LR || o.chunk_bytes != 4096 || o.optimizer != RAGG_OPT_SGD ||
	    strcmp(o.transport, "tcp") || o.timeout_ms <= 0)
		return fail("ragg_ctx_opts: not the options the worker joined with");
	for (size_t i = 0; i < sizeof(o.job_key); i++)
		if (o.job_key[i])
			return fail("ragg_ctx_opts: the job key came back");

	/* A caller built against ragg 1.0's structure (it ends with
	 * serve_timeout_ms) gets that prefix and nothing beyond it. */
	size_t v1 = offsetof(struct ragg_opts, serve_timeout_ms) + sizeof(int);
	memset(&o, 0x5a, sizeof(o));
	o.size = v1;
	before = o;
	if (ragg_ctx_opts(ctx, &o) || o.size != v1 || o.workers != s->workers ||
	    o.serve_timeout_ms <= 0 || memcmp((char *)&o + v1, (char *)&before + v1, sizeof(o) - v1))
		return fail("ragg_ctx_opts: the 1.0 prefix not filled, or more written");

	/* Refused, and written only on success. */
	memset(&o, 0x5a, sizeof(o));
	o.size = v1 - 1;
	before = o;
	if (ragg_ctx_opts(ctx, &o) != -EINVAL || memcmp(&o, &before, sizeof(o)))
		return fail("ragg_ctx_opts: a short structure not refused, or written");
	o.size = sizeof(o);
	if (ragg_ctx_opts(NULL, &o) != -EINVAL || ragg_ctx_opts(ctx, NULL) != -EINVAL)
		return fail("ragg_ctx_opts: NULL not refused");
	return 0;
}

static void run(int workers, int agents, int servers)
{
	struct shape s = { workers, agents, servers };
	struct ragg_thread_job job = { .workers = workers,
		                       .agents = agents,
		                       .servers = servers,
		                       .transport = "tcp",
		                       .chunk_bytes = 4096,
		                       .lr = LR,
		                       .worker = worker,
		                       .arg = &s };
	int rc = ragg_thread_job_run(&job);
	RAGG_CHECKF(rc == 0, "job failed: %s (workers %d, agents %d, servers %d)",
	            ragg_strerror(rc), job.worker_rc, job.agent_rc, job.server_rc);
}

RAGG_TEST(shape_3_workers_1_agent_2_servers)
{
	run(3, 1, 2);
}

RAGG_TEST(shape_4_workers_2_agents_1_server)
{
	run(4, 2, 1);
}

int main(int argc, char **argv)
{
	/* Every thread's ragg_opts_default() reads it: the job runs with a key. */
	setenv("RAGG_JOB_KEY", "test-job-shape", 1);
	return ragg_test_main(argc, argv);
}
