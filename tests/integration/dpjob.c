/*
 * The differential-privacy test job, started by ragg-run in
 * tests/integration/run.sh with RAGG_DP=on, one agent, one server, SGD.
 * Agents and servers serve; workers run one of these modes and exit
 * non-zero on any wrong value:
 *
 *   clip            (RAGG_DP_NOISE=0, RAGG_LR=1, two workers) worker 0
 *                   pushes a gradient of norm 100 C spread over every
 *                   chunk, worker 1 one of norm C / 2, both weight 1;
 *                   parameters start at 0, so after the round they are
 *                   -(clipped g0 + g1) / 2. Each worker checks that g0's
 *                   part is g0 scaled to norm C (at most C, and not merely
 *                   smaller) and that g1 arrived untouched.
 *   spent ROUNDS    ROUNDS rounds; after each, ragg_dp_spent must count
 *                   exactly the rounds done (not the declaration) and give
 *                   what ragg_dp_epsilon gives for RAGG_DP_SAMPLE_RATE,
 *                   RAGG_DP_NOISE and RAGG_DP_DELTA (read from the
 *                   environment here); worker 0 prints "spent: steps=N
 *                   epsilon=E".
 *   noise ROUNDS    (one worker, RAGG_LR=1, weight 1) the worker pushes
 *                   zeros, so each round moves the parameters by minus the
 *                   agent's noise: over 2^20 elements, each round's must
 *                   have mean 0 and standard deviation z C within 1%, and
 *                   consecutive rounds' correlation under 0.01 (each
 *                   round's noise drawn ahead, after the previous round's
 *                   sum left); prints "noise: round R mean M std S corr C".
 *                   The sigma expected is DPJOB_SIGMA when set (the one
 *                   RAGG_DP_EPSILON should give), else RAGG_DP_NOISE times
 *                   RAGG_DP_CLIP.
 *   budget MOST     (RAGG_DP_MAX_EPSILON set) rounds until ragg_pushpull
 *                   fails with RAGG_ERR_BUDGET, at most MOST: it must stop
 *                   exactly before the first round R whose epsilon
 *                   (ragg_dp_epsilon for R steps) exceeds the budget, with
 *                   R - 1 steps spent, and refuse the next push too; worker
 *                   0 prints "budget: stopped before round R steps=S
 *                   epsilon=E next=F max=M".
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ragg/ragg.h>

#include "privjob.h"

#define COUNT (3 * 1024 + 517) /* four 4 KiB chunks, the last short */

/* A vector of the given L2 norm, reproducible from a seed. */
static void vec(uint64_t seed, double norm, double *out, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		out[i] = (double)(seed >> 11) * 0x1p-53 - 0.5 + (i % 7 == 0 ? 1.0 : 0.0);
		s += out[i] * out[i];
	}
	for (size_t i = 0; i < n; i++)
		out[i] *= norm / sqrt(s);
}

static int clip(ragg_ctx_t *ctx, int me)
{
	double C = env_double("RAGG_DP_CLIP", 1);
	float *params = calloc(COUNT, sizeof(float)), *grad = malloc(COUNT * sizeof(float));
	double *g0 = malloc(COUNT * sizeof(double)), *g1 = malloc(COUNT * sizeof(double));
	ragg_tensor_t *t;
	int rc;
	if (!params || !grad || !g0 || !g1)
		return fail("memory", -12);
	vec(1, 100 * C, g0, COUNT);
	vec(2, C / 2, g1, COUNT);
	if ((rc = ragg_tensor_declare(ctx, "dp.clip", params, COUNT, &t)))
		return fail("declare", rc);
	for (size_t i = 0; i < COUNT; i++)
		grad[i] = (float)(me == 0 ? g0[i] : g1[i]);
	if ((rc = ragg_pushpull(t, grad, 1.0, params)))
		return fail("pushpull", rc);
	/* params = -(s0 + g1) / 2: s0 = -2 params - g1 is worker 0's share. */
	double n0 = 0, err0 = 0, err1 = 0;
	for (size_t i = 0; i < COUNT; i++) {
		double s0 = -2.0 * params[i] - g1[i];
		n0 += s0 * s0;
		double want = g0[i] * C / (100 * C);
		err0 += (s0 - want) * (s0 - want);
	}
	n0 = sqrt(n0);
	err0 = sqrt(err0);
	/* g1's part: what is left once the clipped g0 is taken out. */
	for (size_t i = 0; i < COUNT; i++) {
		double s1 = -2.0 * params[i] - g0[i] / 100;
		err1 += (s1 - g1[i]) * (s1 - g1[i]);
	}
	err1 = sqrt(err1);
	printf("clip: worker %d: C=%g pushed norm %g, its share %.7g, off the whole-tensor clip by "
	       "%.3g, the honest worker's share off by %.3g\n",
	       me, C, 100 * C, n0, err0, err1);
	/* Float rounding of a sum of two values of norm C or less: 1e-5 C. */
	if (!(n0 <= C * (1 + 1e-5)) || !(err0 <= 1e-5 * C) || !(err1 <= 1e-5 * C)) {
		fprintf(stderr, "dpjob: clip: worker %d: the agent did not clip to C = %g\n", me, C);
		return 1;
	}
	printf("clip: worker %d ok\n", me);
	free(params);
	free(grad);
	free(g0);
	free(g1);
	return 0;
}

static int spent(ragg_ctx_t *ctx, int me, int rounds)
{
	double q = env_double("RAGG_DP_SAMPLE_RATE", 1), z = env_double("RAGG_DP_NOISE", 1),
	       delta = env_double("RAGG_DP_DELTA", 1e-5);
	float params[1024] = { 0 }, grad[1024];
	ragg_tensor_t *t;
	double eps, want;
	uint64_t steps;
	int rc;
	if ((rc = ragg_tensor_declare(ctx, "dp.spent", params, 1024, &t)))
		return fail("declare", rc);
	if ((rc = ragg_dp_spent(ctx, &eps, &steps)) || steps != 0 || eps != 0) {
		fprintf(stderr, "dpjob: spent: after the declaration: %llu steps, eps %g\n",
		        (unsigned long long)steps, eps);
		return 1;
	}
	for (int r = 1; r <= rounds; r++) {
		for (int i = 0; i < 1024; i++)
			grad[i] = (float)(0.001 * (i % 13) * (me + 1));
		if ((rc = ragg_pushpull(t, grad, 1.0, params)))
			return fail("pushpull", rc);
		if ((rc = ragg_dp_spent(ctx, &eps, &steps)) ||
		    (rc = ragg_dp_epsilon(q, z, (uint64_t)r, delta, &want, NULL)))
			return fail("epsilon", rc);
		if (steps != (uint64_t)r || eps != want || !(eps > 0) || !isfinite(eps)) {
			fprintf(stderr,
			        "dpjob: spent: round %d: %llu steps, eps %.17g; ragg_dp_epsilon "
			        "gives %.17g\n",
			        r, (unsigned long long)steps, eps, want);
			return 1;
		}
	}
	if (me == 0)
		printf("spent: steps=%llu epsilon=%.6g\n", (unsigned long long)steps, eps);
	return 0;
}

static int noise(ragg_ctx_t *ctx, int rounds)
{
	double sigma = env_double("DPJOB_SIGMA", 0) > 0
	                   ? env_double("DPJOB_SIGMA", 0)
	                   : env_double("RAGG_DP_NOISE", 1) * env_double("RAGG_DP_CLIP", 1);
	size_t n = 1u << 20;
	float *params = calloc(n, sizeof(float)), *grad = calloc(n, sizeof(float));
	double *prev = calloc(n, sizeof(double)), *d = calloc(n, sizeof(double));
	ragg_tensor_t *t;
	int rc, bad = 0;
	if (!params || !grad || !prev || !d)
		return fail("memory", -12);
	if ((rc = ragg_tensor_declare(ctx, "dp.noise", params, n, &t)))
		return fail("declare", rc);
	for (int r = 1; r <= rounds; r++) {
		float *before = malloc(n * sizeof(float));
		if (!before)
			return fail("memory", -12);
		memcpy(before, params, n * sizeof(float));
		if ((rc = ragg_pushpull(t, grad, 1.0, params)))
			return fail("pushpull", rc);
		double m = 0, v = 0, c = 0, pv = 0;
		for (size_t i = 0; i < n; i++) {
			d[i] = (double)before[i] - params[i];
			m += d[i];
		}
		m /= (double)n;
		for (size_t i = 0; i < n; i++) {
			v += (d[i] - m) * (d[i] - m);
			c += d[i] * prev[i];
			pv += prev[i] * prev[i];
		}
		double sd = sqrt(v / (double)(n - 1));
		double corr = r > 1 ? c / sqrt(v * pv) : 0;
		printf("noise: round %d mean %.3g std %.6g (sigma %g) corr %.3g\n", r, m, sd, sigma,
		       corr);
		if (!(fabs(m) < 0.01 * sigma) || !(fabs(sd / sigma - 1) < 0.01) ||
		    !(fabs(corr) < 0.01))
			bad = 1;
		memcpy(prev, d, n * sizeof(double));
		free(before);
	}
	free(params);
	free(grad);
	free(prev);
	free(d);
	return bad;
}

static int budget(ragg_ctx_t *ctx, int me, int most)
{
	double q = env_double("RAGG_DP_SAMPLE_RATE", 1), z = env_double("RAGG_DP_NOISE", 1),
	       delta = env_double("RAGG_DP_DELTA", 1e-5), max = env_double("RAGG_DP_MAX_EPSILON", 0);
	float params[1024] = { 0 }, grad[1024];
	ragg_tensor_t *t;
	double eps, next;
	uint64_t steps;
	int rc = 0, r;
	if ((rc = ragg_tensor_declare(ctx, "dp.budget", params, 1024, &t)))
		return fail("declare", rc);
	for (r = 1; r <= most; r++) {
		for (int i = 0; i < 1024; i++)
			grad[i] = (float)(0.001 * (i % 13) * (me + 1));
		if ((rc = ragg_pushpull(t, grad, 1.0, params)) == RAGG_ERR_BUDGET)
			break;
		if (rc)
			return fail("pushpull", rc);
	}
	if (rc != RAGG_ERR_BUDGET) {
		fprintf(stderr, "dpjob: budget: %d rounds and no RAGG_ERR_BUDGET\n", most);
		return 1;
	}
	if ((rc = ragg_dp_spent(ctx, &eps, &steps)) ||
	    (rc = ragg_dp_epsilon(q, z, (uint64_t)r, delta, &next, NULL)))
		return fail("epsilon", rc);
	if (r < 2 || steps != (uint64_t)r - 1 || !(eps <= max) || !(next > max)) {
		fprintf(stderr,
		        "dpjob: budget: stopped before round %d with %llu steps, eps %.17g, next "
		        "%.17g, max %g\n",
		        r, (unsigned long long)steps, eps, next, max);
		return 1;
	}
	if ((rc = ragg_push(t, grad, 1.0)) != RAGG_ERR_BUDGET) {
		fprintf(stderr, "dpjob: budget: a second push gave %s\n", ragg_strerror_name(rc));
		return 1;
	}
	if (me == 0)
		printf("budget: stopped before round %d steps=%llu epsilon=%.6g next=%.6g max=%g\n", r,
		       (unsigned long long)steps, eps, next, max);
	return 0;
}

static int worker(ragg_ctx_t *ctx, int argc, char **argv)
{
	int me = ragg_rank(ctx);
	if (!strcmp(argv[1], "clip"))
		return clip(ctx, me);
	if (!strcmp(argv[1], "noise") && argc > 2)
		return noise(ctx, atoi(argv[2]));
	if (!strcmp(argv[1], "spent") && argc > 2)
		return spent(ctx, me, atoi(argv[2]));
	if (!strcmp(argv[1], "budget") && argc > 2)
		return budget(ctx, me, atoi(argv[2]));
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	return privjob_main("dpjob", argc, argv, worker);
}
