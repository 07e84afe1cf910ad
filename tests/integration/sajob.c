/*
 * Secure aggregation's test job (RAGG_SECAGG, ragg-privacy(7)), started by
 * ragg-run in tests/integration/run.sh. Agents and servers serve; workers
 * run a mode and exit non-zero on any wrong value:
 *
 *   sum ROUNDS COUNT...
 *                   tensors of COUNT floats; worker i pushes known values
 *                   with the weight 0.5 + 1.37 i, some of them beyond
 *                   RAGG_SECAGG_RANGE once weighted; SGD with RAGG_LR=1, so
 *                   each round moves the parameters by the weighted mean.
 *                   Each step must be the weighted mean of the inputs
 *                   (clipped to the range under RAGG_SECAGG=on) within the
 *                   documented bound: m / scale on the sum (one rounding
 *                   unit per worker, scale the largest power of two s with
 *                   m (range s + 1) < 2^31), 2^-22 relative for the
 *                   weights' fixed point and the decoded float, and float
 *                   rounding of the parameters. Prints the largest error
 *                   seen and the bound.
 *   push ROUNDS     ROUNDS rounds of one tensor of 5000 floats, the inputs
 *                   of sum (for the slot dumps below and the key test):
 *                   prints "push: worker R failed with NAME" on an error
 *   drop ROUNDS R VICTIM before|after|unmask COUNT
 *                   dropout (RAGG_ON_WORKER_LOSS=continue): one tensor of
 *                   COUNT floats, the inputs of sum; worker VICTIM leaves
 *                   (exits without ragg_finalize) in round R, before its
 *                   push or once its push completed, while the others wait
 *                   1 s before pushing round R. The others check every
 *                   step as sum does, against the weighted mean of all
 *                   workers before round R and of all but VICTIM from it
 *                   on; they print "drop: worker I failed with NAME" when
 *                   a round fails. unmask: VICTIM pushes round R like the
 *                   others and is lost once its agent asks it to unmask
 *                   the round (RAGG_SECAGG_TEST_EXIT_UNMASK=R, set in its
 *                   process alone), before answering: its contribution
 *                   counts in round R, the others' steps are checked with
 *                   VICTIM up to R and without it after. Worker
 *                   SAJOB_UNMASK_VICTIM, when set, is lost that way too
 *                   (in any of the three). With
 *                   SAJOB_DROPPED_FILE set, the first other worker creates
 *                   that file once its round R is done, then waits for
 *                   SAJOB_REJOINED_FILE to exist (30 s at most)
 *   dumpcheck PREFIX WORKERS ROUNDS plain|masked
 *                   no job: reads the agent's RAGG_TEST_SLOT_DUMP files of
 *                   a push run and correlates each with every worker's
 *                   true contribution w g of that round (read as floats
 *                   and as 32-bit integers): "plain" wants each worker's
 *                   own to correlate above 0.99, "masked" wants every
 *                   |correlation| below 0.1
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ragg/ragg.h>

#include "privjob.h"

static double weight_of(int i)
{
	return 0.5 + 1.37 * i;
}

/* Worker i's gradient, element j of tensor k in round r: a pattern of its
 * own, and every 97th element so large that w g leaves +-64. */
static float grad_value(int i, int k, size_t j, int r)
{
	if (j % 97 == 5)
		return (float)((j & 1 ? 1 : -1) * 100.0 / weight_of(i));
	return (float)(3.0 * sin(0.37 * (double)j * (i + 1) + 0.1 * r + k) + 0.25 * i);
}

static double sa_scale(int m, double range)
{
	double limit = (0x1p31 / m - 1) / range;
	double s = exp2(floor(log2(limit)));
	if (s >= limit)
		s /= 2;
	return s;
}

static int sum_mode(ragg_ctx_t *ctx, int rounds, int nt, char **counts)
{
	int m = ragg_job_size(ctx, RAGG_ROLE_WORKER), me = ragg_rank(ctx), rc;
	size_t most = 0;
	const char *sa_env = getenv("RAGG_SECAGG");
	int secagg = sa_env && !strcmp(sa_env, "on");
	double range = env_double("RAGG_SECAGG_RANGE", 64);
	/* Every agent's group is at most the job: its bound is the largest. */
	double scale = sa_scale(m, range), W = 0;
	for (int i = 0; i < m; i++)
		W += weight_of(i);
	ragg_tensor_t *t[8];
	float *params[8], *grad[8];
	size_t n[8];
	double worst = 0, worst_bound = 0, seen = 0;
	if (nt > 8)
		return 2;
	for (int k = 0; k < nt; k++) {
		char name[16];
		n[k] = strtoul(counts[k], NULL, 10);
		most = n[k] > most ? n[k] : most;
		params[k] = calloc(n[k], sizeof(float));
		grad[k] = calloc(n[k], sizeof(float));
		if (!params[k] || !grad[k])
			return 1;
		snprintf(name, sizeof(name), "t%d", k);
		if ((rc = ragg_tensor_declare(ctx, name, params[k], n[k], &t[k])))
			return fail("declare", rc);
	}
	float *old = malloc(sizeof(float) * most);
	if (!old)
		return 1;
	for (int r = 1; r <= rounds; r++) {
		for (int k = 0; k < nt; k++) {
			for (size_t j = 0; j < n[k]; j++)
				grad[k][j] = grad_value(me, k, j, r);
			memcpy(old, params[k], n[k] * sizeof(float));
			if ((rc = ragg_pushpull(t[k], grad[k], weight_of(me), params[k])))
				return fail("pushpull", rc);
			for (size_t j = 0; j < n[k]; j++) {
				double mean = 0, amean = 0;
				for (int i = 0; i < m; i++) {
					double v = weight_of(i) * grad_value(i, k, j, r);
					if (secagg)
						v = fmax(-range, fmin(range, v));
					mean += v;
					amean += fabs(v);
				}
				mean /= W;
				amean /= W;
				double step = (double)old[j] - (double)params[k][j];
				double big = fmax(fabs(old[j]), fabs(params[k][j]));
				double bound = (secagg ? m / scale / W : 0) + amean * 0x1p-22 +
				               4 * big * 0x1p-24;
				double err = fabs(step - mean);
				seen = fmax(seen, err);
				if (err > bound || !isfinite(params[k][j])) {
					fprintf(stderr,
					        "sum: worker %d tensor %d round %d element %zu: step %.9g, "
					        "weighted mean %.9g: error %.3g above the bound %.3g\n",
					        me, k, r, j, step, mean, err, bound);
					return 1;
				}
				if (err / bound > worst / (worst_bound ? worst_bound : 1))
					worst = err, worst_bound = bound;
			}
		}
	}
	printf("sum: worker %d ok secagg=%s max_err=%.3g bound_there=%.3g quantum=%.3g\n", me,
	       secagg ? "on" : "off", seen, worst_bound, secagg ? m / scale / W : 0.0);
	free(old);
	for (int k = 0; k < nt; k++) {
		free(params[k]);
		free(grad[k]);
	}
	/* Under secure aggregation the values did travel quantised. */
	return secagg && !(seen > 0) ? 1 : 0;
}

static int drop_mode(ragg_ctx_t *ctx, int rounds, int at, int victim, int after, size_t n,
                     int unmask)
{
	int m = ragg_job_size(ctx, RAGG_ROLE_WORKER), me = ragg_rank(ctx), rc = 0;
	double range = env_double("RAGG_SECAGG_RANGE", 64), scale = sa_scale(m, range);
	double seen = 0, quantum = 0;
	float *params = calloc(n, sizeof(float)), *grad = calloc(n, sizeof(float));
	float *old = calloc(n, sizeof(float));
	ragg_tensor_t *t;
	if (!params || !grad || !old)
		return 1;
	if ((rc = ragg_tensor_declare(ctx, "d", params, n, &t)))
		return fail("declare", rc);
	for (int r = 1; r <= rounds; r++) {
		for (size_t j = 0; j < n; j++)
			grad[j] = grad_value(me, 0, j, r);
		if (unmask && me == victim && r == at) {
			/* The library exits in the round's unmasking. */
			ragg_pushpull(t, grad, weight_of(me), params);
			fprintf(stderr, "drop: worker %d outlived the unmasking of round %d\n", me,
			        r);
			return 1;
		}
		if (me == victim && r == at) {
			if (after) {
				ragg_req_t *req;
				if ((rc = ragg_ipush(t, grad, weight_of(me), &req)) ||
				    (rc = ragg_wait(req)))
					return fail("ipush", rc);
				usleep(300000);
			}
			printf("drop: worker %d leaves %s its push of round %d\n", me,
			       after ? "after" : "before", r);
			fflush(stdout);
			_exit(0);
		}
		if (r == at && !unmask)
			usleep(1000000);
		memcpy(old, params, n * sizeof(float));
		if ((rc = ragg_pushpull(t, grad, weight_of(me), params))) {
			printf("drop: worker %d failed with %s in round %d\n", me,
			       ragg_strerror_name(rc), r);
			return 1;
		}
		/* The round went on without VICTIM: its agent has seen it gone. */
		const char *done = getenv("SAJOB_DROPPED_FILE");
		if (r == at && me == (victim ? 0 : 1) && done && *done) {
			FILE *f = fopen(done, "w");
			if (f)
				fclose(f);
			/* Then waits (30 s at most) for SAJOB_REJOINED_FILE. */
			const char *back = getenv("SAJOB_REJOINED_FILE");
			for (int i = 0; back && *back && i < 1500 && access(back, F_OK); i++)
				usleep(20000);
		}
		double W = 0;
		for (int i = 0; i < m; i++)
			if (r < at + unmask || i != victim)
				W += weight_of(i);
		quantum = m / scale / W;
		for (size_t j = 0; j < n; j++) {
			double mean = 0, amean = 0;
			for (int i = 0; i < m; i++) {
				if (r >= at + unmask && i == victim)
					continue;
				double v = fmax(-range, fmin(range, weight_of(i) * grad_value(i, 0, j, r)));
				mean += v;
				amean += fabs(v);
			}
			mean /= W;
			amean /= W;
			double step = (double)old[j] - (double)params[j];
			double big = fmax(fabs(old[j]), fabs(params[j]));
			double bound = quantum + amean * 0x1p-22 + 4 * big * 0x1p-24;
			double err = fabs(step - mean);
			seen = fmax(seen, err);
			if (err > bound || !isfinite(params[j])) {
				fprintf(stderr,
				        "drop: worker %d round %d element %zu: step %.9g, weighted mean "
				        "%.9g: error %.3g above the bound %.3g\n",
				        me, r, j, step, mean, err, bound);
				return 1;
			}
		}
	}
	printf("drop: worker %d ok, rounds 1..%d with worker %d, %d..%d without, max_err=%.3g "
	       "quantum=%.3g\n",
	       me, at - 1 + unmask, victim, at + unmask, rounds, seen, quantum);
	free(params);
	free(grad);
	free(old);
	return 0;
}

#define PUSH_COUNT 5000

static int push_mode(ragg_ctx_t *ctx, int rounds)
{
	int me = ragg_rank(ctx), rc;
	float *params = calloc(PUSH_COUNT, sizeof(float)), *grad = calloc(PUSH_COUNT, sizeof(float));
	ragg_tensor_t *t;
	if (!params || !grad)
		return 1;
	rc = ragg_tensor_declare(ctx, "p", params, PUSH_COUNT, &t);
	for (int r = 1; !rc && r <= rounds; r++) {
		for (size_t j = 0; j < PUSH_COUNT; j++)
			grad[j] = grad_value(me, 0, j, r);
		rc = ragg_pushpull(t, grad, weight_of(me), params);
	}
	free(params);
	free(grad);
	if (rc) {
		printf("push: worker %d failed with %s\n", me, ragg_strerror_name(rc));
		return 1;
	}
	printf("push: worker %d ok\n", me);
	return 0;
}

static double corr(const double *a, const double *b, size_t n)
{
	double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (isfinite(a[i]))
			ma += a[i], mb += b[i], k++;
	if (!k)
		return 0;
	ma /= (double)k;
	mb /= (double)k;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(a[i]))
			continue;
		sab += (a[i] - ma) * (b[i] - mb);
		saa += (a[i] - ma) * (a[i] - ma);
		sbb += (b[i] - mb) * (b[i] - mb);
	}
	return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

static int dumpcheck(const char *prefix, int m, int rounds, int masked)
{
	static float raw[PUSH_COUNT];
	static double asf[PUSH_COUNT], asi[PUSH_COUNT], truth[PUSH_COUNT];
	double worst = 0, own_min = 1;
	int files = 0;
	for (int r = 1; r <= rounds; r++)
		for (int w = 0; w < m; w++) {
			char path[512];
			snprintf(path, sizeof(path), "%s.w%d.r%d", prefix, w, r);
			FILE *f = fopen(path, "rb");
			if (!f) {
				fprintf(stderr, "dumpcheck: no %s\n", path);
				return 1;
			}
			size_t n = fread(raw, sizeof(float), PUSH_COUNT, f);
			fclose(f);
			if (n < 1000) {
				fprintf(stderr, "dumpcheck: %s holds %zu elements\n", path, n);
				return 1;
			}
			files++;
			for (size_t j = 0; j < n; j++) {
				int32_t v;
				memcpy(&v, &raw[j], sizeof(v));
				asf[j] = raw[j];
				asi[j] = v;
			}
			for (int i = 0; i < m; i++) {
				for (size_t j = 0; j < n; j++)
					truth[j] = weight_of(i) * grad_value(i, 0, j, r);
				/* Under the plain sum the agent reads g, not w g:
				 * the same correlation. */
				double cf = corr(asf, truth, n), ci = corr(asi, truth, n);
				double c = fmax(fabs(cf), fabs(ci));
				worst = fmax(worst, c);
				if (i == w)
					own_min = fmin(own_min, cf);
			}
		}
	printf("dumpcheck: %d dumps, largest |correlation| with any worker's input %.4f, smallest "
	       "with its own (as floats) %.4f\n",
	       files, worst, own_min);
	if (masked)
		return worst < 0.1 ? 0 : 1;
	return own_min > 0.99 ? 0 : 1;
}

static int worker(ragg_ctx_t *ctx, int argc, char **argv)
{
	if (!strcmp(argv[1], "sum") && argc >= 4)
		return sum_mode(ctx, atoi(argv[2]), argc - 3, argv + 3);
	if (!strcmp(argv[1], "drop") && argc == 7)
		return drop_mode(ctx, atoi(argv[2]), atoi(argv[3]), atoi(argv[4]),
		                 !strcmp(argv[5], "after"), strtoul(argv[6], NULL, 10),
		                 !strcmp(argv[5], "unmask"));
	if (!strcmp(argv[1], "push"))
		return push_mode(ctx, atoi(argv[2]));
	return 2;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "dumpcheck"))
		return dumpcheck(argv[2], atoi(argv[3]), atoi(argv[4]), !strcmp(argv[5], "masked"));
	if (argc < 3)
		return 2;
	/* drop ... unmask: the victim alone is lost in the round's unmasking;
	 * and worker SAJOB_UNMASK_VICTIM too, whatever the mode. */
	const char *role = getenv("RAGG_ROLE"), *rank = getenv("RAGG_RANK");
	const char *also = getenv("SAJOB_UNMASK_VICTIM");
	if (argc == 7 && !strcmp(argv[1], "drop") && role && !strcmp(role, "worker") && rank &&
	    ((!strcmp(argv[5], "unmask") && atoi(rank) == atoi(argv[4])) ||
	     (also && *also && atoi(rank) == atoi(also))))
		setenv("RAGG_SECAGG_TEST_EXIT_UNMASK", argv[3], 1);
	return privjob_main("sajob", argc, argv, worker);
}
