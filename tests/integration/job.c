/*
 * A test job, started by ragg-run in tests/integration/run.sh. Agents and
 * servers serve; workers run one of these modes and exit non-zero on any
 * wrong value:
 *
 *   exact ROUNDS    two tensors of awkward sizes; worker i pushes values it
 *                   and the test both know, with weight i+1; after every
 *                   round each parameter must match the closed-form SGD
 *                   result on the sample-weighted mean (to float rounding)
 *   rounds N        N rounds of a small model (for memory and soak tests)
 *   mismatch        worker 1 declares a different size: declaring must fail
 *                   with RAGG_ERR_MISMATCH everywhere
 *   slow N MS       N rounds with a pause of MS between them
 *
 * Every process prints "maxrss ROLE RANK KB" before it exits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <ragg/ragg.h>

static int fail(const char *what, int rc)
{
	fprintf(stderr, "job: %s: %s (%s)\n", what, ragg_strerror(rc), ragg_strerror_name(rc));
	return 1;
}

static void report_rss(ragg_ctx_t *ctx)
{
	static const char *const names[] = { "none", "worker", "agent", "server" };
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("maxrss %s %d %ld\n", names[ragg_role(ctx)], ragg_rank(ctx), ru.ru_maxrss);
}

/* The value worker i pushes for element j in round r: small integers, so
 * every weighted sum and mean below is exact in float. */
static float grad_value(int i, size_t j, int r)
{
	return (float)((int)((j * 7 + (size_t)i * 3 + (size_t)r) % 16) - 8);
}

static int exact(ragg_ctx_t *ctx, int rounds)
{
	const size_t sizes[2] = { 1031 * 3 + 5, 4096 + 1 }; /* chunk tails, several servers */
	int m = 0, me = ragg_rank(ctx), rc;
	struct ragg_stats st = { .size = sizeof(st) };
	const char *w = getenv("RAGG_WORKERS");
	m = w ? atoi(w) : 1;
	for (int k = 0; k < 2; k++) {
		size_t n = sizes[k];
		float *params = malloc(n * sizeof(float)), *grad = malloc(n * sizeof(float));
		double *expect = malloc(n * sizeof(double));
		ragg_tensor_t *t;
		char name[32];
		if (!params || !grad || !expect)
			return fail("memory", -12);
		/* Worker 0's initial values must win; the others hold junk. */
		for (size_t j = 0; j < n; j++)
			params[j] = me == 0 ? (float)(j % 5) : 1e6f;
		snprintf(name, sizeof(name), "exact.%d", k);
		if ((rc = ragg_tensor_declare(ctx, name, params, n, &t)))
			return fail("declare", rc);
		for (size_t j = 0; j < n; j++) {
			expect[j] = (double)(j % 5);
			if (params[j] != (float)expect[j]) {
				fprintf(stderr, "job: initial parameter %zu is %g, expected %g\n",
				        j, params[j], expect[j]);
				return 1;
			}
		}
		const char *lr_s = getenv("RAGG_LR");
		double lr = lr_s ? atof(lr_s) : 0.01;
		double total_w = 0;
		for (int i = 0; i < m; i++)
			total_w += i + 1;
		for (int r = 1; r <= rounds; r++) {
			for (size_t j = 0; j < n; j++)
				grad[j] = grad_value(me, j, r);
			if ((rc = ragg_pushpull(t, grad, me + 1, params)))
				return fail("pushpull", rc);
			for (size_t j = 0; j < n; j++) {
				double g = 0;
				for (int i = 0; i < m; i++)
					g += (i + 1) * (double)grad_value(i, j, r);
				expect[j] -= lr * (g / total_w);
				double tol = 1e-5 * fmax(1.0, fabs(expect[j]));
				if (fabs(params[j] - expect[j]) > tol) {
					fprintf(stderr,
					        "job: tensor %d round %d element %zu: %.9g, "
					        "expected %.9g\n",
					        k, r, j, params[j], expect[j]);
					return 1;
				}
			}
		}
		free(params);
		free(grad);
		free(expect);
	}
	ragg_stats(ctx, &st);
	printf("exact: worker %d ok, %llu rounds, %llu bytes sent\n", me,
	       (unsigned long long)st.rounds, (unsigned long long)st.bytes_sent);
	return 0;
}

static int run_rounds(ragg_ctx_t *ctx, int rounds, int pause_ms)
{
	size_t n = 20000;
	float *params = calloc(n, sizeof(float)), *grad = calloc(n, sizeof(float));
	ragg_tensor_t *t;
	int rc;
	if (!params || !grad)
		return fail("memory", -12);
	if ((rc = ragg_tensor_declare(ctx, "model", params, n, &t)))
		return fail("declare", rc);
	for (int r = 0; r < rounds; r++) {
		for (size_t j = 0; j < n; j++)
			grad[j] = (float)((j + (size_t)r) % 3);
		if ((rc = ragg_pushpull(t, grad, 1.0, params)))
			return fail("pushpull", rc);
		if (pause_ms) {
			struct timespec ts = { .tv_sec = pause_ms / 1000,
				               .tv_nsec = (pause_ms % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	free(params);
	free(grad);
	return 0;
}

static int mismatch(ragg_ctx_t *ctx)
{
	size_t n = ragg_rank(ctx) == 1 ? 1001 : 1000;
	float *params = calloc(n, sizeof(float));
	ragg_tensor_t *t;
	int rc = ragg_tensor_declare(ctx, "model", params, n, &t);
	free(params);
	if (rc != RAGG_ERR_MISMATCH) {
		fprintf(stderr, "job: declare returned %s, expected RAGG_ERR_MISMATCH\n",
		        ragg_strerror_name(rc));
		return 1;
	}
	printf("mismatch: refused as expected\n");
	return 0;
}

int main(int argc, char **argv)
{
	ragg_ctx_t *ctx;
	int rc, status;
	if (argc < 2) {
		fprintf(stderr, "usage: job exact ROUNDS | rounds N | mismatch | slow N MS\n");
		return 2;
	}
	if ((rc = ragg_init(NULL, &ctx)))
		return fail("init", rc);
	if (ragg_role(ctx) != RAGG_ROLE_WORKER) {
		rc = ragg_serve(ctx);
		/* In the mismatch test the workers leave without a tensor; the
		 * goodbye still arrives. */
		report_rss(ctx);
		int rc2 = ragg_finalize(ctx);
		if (rc)
			return fail("serve", rc);
		return rc2 ? fail("finalize", rc2) : 0;
	}
	if (strcmp(argv[1], "exact") == 0 && argc == 3)
		status = exact(ctx, atoi(argv[2]));
	else if (strcmp(argv[1], "rounds") == 0 && argc == 3)
		status = run_rounds(ctx, atoi(argv[2]), 0);
	else if (strcmp(argv[1], "slow") == 0 && argc == 4)
		status = run_rounds(ctx, atoi(argv[2]), atoi(argv[3]));
	else if (strcmp(argv[1], "mismatch") == 0)
		status = mismatch(ctx);
	else {
		fprintf(stderr, "job: unknown mode\n");
		status = 2;
	}
	report_rss(ctx);
	if ((rc = ragg_finalize(ctx)) && !status)
		status = fail("finalize", rc);
	return status;
}
