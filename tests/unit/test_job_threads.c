/*
 * Whole jobs as threads of this process (tests/harness/thread_job.h): the
 * round logic end to end, over tcp and shm, without ragg-run.
 *
 * Worker i pushes g_i[j] = (i + 1) + j % 7 with weight n_i = i + 1; every
 * worker checks, after each round, that its parameters are the initial
 * ones minus lr times the sample-weighted mean, computed here in double.
 * Worker 0's parameters are the initial ones (round 0 broadcasts them);
 * the others start from garbage and must receive them.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "thread_job.h"

#define COUNT  3000 /* 3 chunks of 4 KiB, the last one short */
#define ROUNDS 4
#define LR     0.5f

static float initial(size_t j)
{
	return (float)(j % 11) - 5.0f;
}

static float grad(int i, size_t j, int r)
{
	return (float)(i + 1) + (float)(j % 7) + (float)r;
}

/* Parameters after `rounds` rounds, in double. */
static double expected(int workers, size_t j, int rounds)
{
	double w = initial(j);
	for (int r = 1; r <= rounds; r++) {
		double s = 0, n = 0;
		for (int i = 0; i < workers; i++) {
			s += (i + 1.0) * grad(i, j, r);
			n += i + 1.0;
		}
		w -= LR * (s / n);
	}
	return w;
}

/* 0 when every parameter is within float rounding of the reference, else
 * -ERANGE; a NaN fails (the comparison is written so that it does). */
static int check(const float *p, int workers, int rounds)
{
	for (size_t j = 0; j < COUNT; j++) {
		double want = expected(workers, j, rounds);
		if (!(fabs(p[j] - want) <= 1e-5 * (1 + fabs(want)))) {
			fprintf(stderr, "round %d parameter %zu: %.9g, expected %.9g\n", rounds,
			        j, p[j], want);
			return -ERANGE;
		}
	}
	return 0;
}

struct shape {
	int workers;
};

static int train(ragg_ctx_t *ctx, int rank, void *arg)
{
	const struct shape *s = arg;
	float *params = malloc(COUNT * sizeof(float)), *g = malloc(COUNT * sizeof(float));
	ragg_tensor_t *t;
	int rc = -1;

	if (!params || !g)
		goto out;
	for (size_t j = 0; j < COUNT; j++)
		params[j] = rank == 0 ? initial(j) : NAN;
	if ((rc = ragg_tensor_declare(ctx, "model", params, COUNT, &t)))
		goto out;
	if ((rc = check(params, s->workers, 0)))
		goto out;
	for (int r = 1; r <= ROUNDS; r++) {
		for (size_t j = 0; j < COUNT; j++)
			g[j] = grad(rank, j, r);
		if ((rc = ragg_pushpull(t, g, rank + 1, params)))
			goto out;
		if ((rc = check(params, s->workers, r)))
			goto out;
	}
out:
	free(params);
	free(g);
	return rc;
}

static void run(const char *transport, int workers, int agents, int servers)
{
	struct shape s = { .workers = workers };
	struct ragg_thread_job job = { .workers = workers,
		                       .agents = agents,
		                       .servers = servers,
		                       .transport = transport,
		                       .chunk_bytes = 4096,
		                       .lr = LR,
		                       .worker = train,
		                       .arg = &s };
	int rc = ragg_thread_job_run(&job);
	RAGG_CHECKF(rc == 0, "job failed: %s (workers %d, agents %d, servers %d)",
	            ragg_strerror(rc), job.worker_rc, job.agent_rc, job.server_rc);
}

RAGG_TEST(tcp_4_workers_2_agents_2_servers)
{
	run("tcp", 4, 2, 2);
}

RAGG_TEST(tcp_3_workers_1_agent_4_servers)
{
	/* More servers than chunks: server 3 owns none. */
	run("tcp", 3, 1, 4);
}

RAGG_TEST(shm_4_workers_2_agents_2_servers)
{
	run("shm", 4, 2, 2);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
