/*
 * A ragg program as an integrator writes it, built out of the tree against
 * an installed ragg with pkg-config (tests/install/run.sh). Every role runs
 * it; each worker checks the job's shape, the learning rate, and three
 * rounds of sample-weighted SGD against the value worked out by hand.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <ragg/ragg.h>

#define COUNT 10000

static int fail(const char *what, int rc)
{
	fprintf(stderr, "install-job: %s: %s (%s)\n", what, ragg_strerror(rc), ragg_strerror_name(rc));
	return 1;
}

int main(void)
{
	ragg_ctx_t *ctx;
	ragg_tensor_t *t;
	struct ragg_opts o = { .size = sizeof(o) };
	int rc, rank, workers;
	float *w, *g;

	if ((rc = ragg_init(NULL, &ctx)))
		return fail("ragg_init", rc);
	if (ragg_role(ctx) != RAGG_ROLE_WORKER) {
		rc = ragg_serve(ctx);
		int rc2 = ragg_finalize(ctx);
		return rc || rc2;
	}
	rank = ragg_rank(ctx);
	workers = ragg_job_size(ctx, RAGG_ROLE_WORKER);
	if ((rc = ragg_ctx_opts(ctx, &o)))
		return fail("ragg_ctx_opts", rc);
	if (workers != atoi(getenv("RAGG_WORKERS")) || ragg_job_size(ctx, RAGG_ROLE_AGENT) != o.agents ||
	    ragg_job_size(ctx, RAGG_ROLE_SERVER) != o.servers || o.lr != 0.5f || o.job_key[0]) {
		fprintf(stderr, "install-job: shape %d/%d/%d lr %g: not the job's\n", workers,
		        ragg_job_size(ctx, RAGG_ROLE_AGENT), ragg_job_size(ctx, RAGG_ROLE_SERVER), o.lr);
		return 1;
	}
	w = ragg_mem_alloc(ctx, COUNT * sizeof(float));
	g = ragg_mem_alloc(ctx, COUNT * sizeof(float));
	if (!w || !g)
		return fail("ragg_mem_alloc", -12);
	for (int i = 0; i < COUNT; i++)
		w[i] = rank == 0 ? 1.0f : 7.0f; /* worker 0's values win */
	if ((rc = ragg_tensor_declare(ctx, "w", w, COUNT, &t)))
		return fail("ragg_tensor_declare", rc);
	/* Worker r pushes r+1 with weight r+1: the weighted mean is
	 * sum (r+1)^2 / sum (r+1) = (2m+1)/3 for m workers. */
	for (int i = 0; i < COUNT; i++)
		g[i] = (float)(rank + 1);
	for (int round = 0; round < 3; round++)
		if ((rc = ragg_pushpull(t, g, rank + 1, w)))
			return fail("ragg_pushpull", rc);
	double want = 1.0 - 3 * 0.5 * (2.0 * workers + 1) / 3;
	for (int i = 0; i < COUNT; i++)
		if (fabs(w[i] - want) > 1e-5) {
			fprintf(stderr, "install-job: w[%d] = %.9g, want %.9g\n", i, w[i], want);
			return 1;
		}
	printf("install-job: worker %d of %d ok, lr %g, w = %g\n", rank, workers, o.lr, w[0]);
	return ragg_finalize(ctx) ? 1 : 0;
}
