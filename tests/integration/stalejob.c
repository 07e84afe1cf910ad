/*
 * stalejob: linear regression for the RAGG_STALENESS tests and the async
 * bench. Worker i holds 40 + 20 i samples of y = w*.x + noise (as
 * examples/linreg), pushes its mean gradient with weight n_i, and:
 *
 *   - checks after every pull that ragg_pull_version() is at least
 *     clock + 1 - s (s from RAGG_STALENESS; the clock of the k-th push after
 *     the declaration is k), and prints "stale: VIOLATION ..." if not;
 *   - with -x F, the worker of rank -w (default 0) sleeps F times -m ms
 *     per round, the others -m ms (a straggler), and with -q RANK that
 *     worker -m / F ms (one that runs ahead);
 *   - with -y ROUNDS, the slow worker runs that many rounds (else -r);
 *   - with -t SECONDS, runs rounds until that much wall time passed
 *     (else -r ROUNDS);
 *   - with -z, no data: every gradient is a constant 1e-6 (the async bench,
 *     whose model is too large for the regression).
 *
 * With -p, each worker also prints "stale: times I T1 T2 ...": when each
 * of its pulls returned, in seconds of CLOCK_MONOTONIC (one clock for
 * every process of the host).
 *
 * Each worker prints "stale: worker I rounds R seconds S min_margin M
 * checksum C" (margin: the smallest version - (clock + 1 - s) seen; C a
 * hash of its final parameters' bytes); worker 0 also prints "stale: loss
 * L" for its final parameters over every worker's data.
 *
 * Run: ragg-run -w 4 -- stalejob [-d D] [-r R] [-y R] [-t SEC] [-m MS] [-x F] [-w RANK]
 *                               [-q RANK] [-l LR] [-z] [-p]
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ragg/ragg.h>

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uni(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * 0x1.0p-52 - 1.0;
}

struct shard {
	size_t n;
	float *x, *y;
};

static void make_shard(int i, size_t d, size_t total, const double *wt, struct shard *s)
{
	uint64_t r = 1000003u * (uint64_t)(i + 1);
	double scale = sqrt(3.0 * (double)total / (double)d);
	s->n = 40 + 20 * (size_t)i;
	s->x = malloc(s->n * d * sizeof(float));
	s->y = malloc(s->n * sizeof(float));
	if (!s->x || !s->y)
		exit(1);
	for (size_t k = 0; k < s->n; k++) {
		double dot = 0;
		for (size_t j = 0; j < d; j++) {
			s->x[k * d + j] = (float)(uni(&r) * scale);
			dot += (double)s->x[k * d + j] * wt[j];
		}
		s->y[k] = (float)(dot + 0.01 * uni(&r));
	}
}

/* Summed squared error; adds the summed gradient to g when not NULL. */
static double sse(const struct shard *s, size_t d, const float *w, double *g)
{
	double e2 = 0;
	for (size_t k = 0; k < s->n; k++) {
		const float *x = s->x + k * d;
		double e = -(double)s->y[k];
		for (size_t j = 0; j < d; j++)
			e += (double)x[j] * w[j];
		e2 += e * e;
		if (g)
			for (size_t j = 0; j < d; j++)
				g[j] += e * x[j];
	}
	return e2;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "stalejob: %s: %s\n", what, ragg_strerror(rc));
	exit(1);
}

int main(int argc, char **argv)
{
	size_t d = 2000;
	int rounds = 20, slow = 0, quick = -1, slow_rounds = -1, c, synth = 0, times = 0;
	double secs = 0, ms = 0, factor = 1, lr = 0.5;
	while ((c = getopt(argc, argv, "d:r:y:t:m:x:w:q:l:zp")) != -1) {
		switch (c) {
		case 'd': d = strtoul(optarg, NULL, 10); break;
		case 'r': rounds = atoi(optarg); break;
		case 't': secs = atof(optarg); break;
		case 'm': ms = atof(optarg); break;
		case 'x': factor = atof(optarg); break;
		case 'w': slow = atoi(optarg); break;
		case 'q': quick = atoi(optarg); break;
		case 'y': slow_rounds = atoi(optarg); break;
		case 'l': lr = atof(optarg); break;
		case 'z': synth = 1; break;
		case 'p': times = 1; break;
		default: return 2;
		}
	}
	struct ragg_opts o;
	ragg_ctx_t *ctx;
	int rc;
	if ((rc = ragg_opts_default(&o)))
		die("settings", rc);
	o.lr = (float)lr;
	if (!getenv("RAGG_CHUNK_BYTES"))
		o.chunk_bytes = 8192;
	if ((rc = ragg_init(&o, &ctx)))
		die("init", rc);
	if (ragg_role(ctx) != RAGG_ROLE_WORKER) {
		rc = ragg_serve(ctx);
		int rc2 = ragg_finalize(ctx);
		return rc || rc2;
	}
	const char *st = getenv("RAGG_STALENESS");
	uint64_t s = st && *st ? (strcmp(st, "inf") == 0 ? UINT64_MAX : strtoull(st, NULL, 10)) : 0;
	int me = ragg_rank(ctx), m = o.workers;
	double *wt = malloc(d * sizeof(double)), *g = malloc(d * sizeof(double));
	float *params = ragg_mem_alloc(ctx, d * sizeof(float));
	float *grad = ragg_mem_alloc(ctx, d * sizeof(float));
	struct shard *sh = calloc((size_t)m, sizeof(*sh));
	if (!wt || !g || !params || !grad || !sh)
		die("memory", -12);
	uint64_t r = 42;
	for (size_t j = 0; j < d; j++)
		wt[j] = uni(&r);
	size_t total = 0;
	for (int i = 0; i < m; i++)
		total += 40 + 20 * (size_t)i;
	for (int i = 0; i < m; i++)
		if (!synth && (i == me || me == 0))
			make_shard(i, d, total, wt, &sh[i]);
	r = 7u + (uint64_t)me;
	for (size_t j = 0; j < d; j++)
		params[j] = (float)(0.1 * uni(&r));
	ragg_tensor_t *t;
	if ((rc = ragg_tensor_declare(ctx, "stale.w", params, d, &t)))
		die("declare", rc);
	double margin = INFINITY, t0 = now();
	unsigned sleep_us = (unsigned)(ms * 1000 *
	                               (me == slow ? factor : me == quick ? 1 / factor : 1));
	if (me == slow && slow_rounds >= 0)
		rounds = slow_rounds;
	int k;
	size_t ntimes = 0, captimes = 1024;
	double *at = malloc(captimes * sizeof(double));
	if (!at)
		die("memory", -12);
	for (k = 1; secs > 0 ? now() - t0 < secs : k <= rounds; k++) {
		if (synth) {
			for (size_t j = 0; j < d; j++)
				grad[j] = 1e-6f;
		} else {
			memset(g, 0, d * sizeof(double));
			sse(&sh[me], d, params, g);
			for (size_t j = 0; j < d; j++)
				grad[j] = (float)(g[j] / (double)sh[me].n);
		}
		if (sleep_us)
			usleep(sleep_us);
		if ((rc = ragg_pushpull(t, grad, 40.0 + 20.0 * me, params)))
			die("pushpull", rc);
		if (ntimes < captimes)
			at[ntimes++] = now();
		uint64_t v;
		if ((rc = ragg_pull_version(t, &v)))
			die("pull_version", rc);
		uint64_t need = s == UINT64_MAX || (uint64_t)k + 1 <= s ? 0 : (uint64_t)k + 1 - s;
		if (v < need)
			printf("stale: VIOLATION worker %d clock %d version %" PRIu64 " needs %" PRIu64 "\n",
			       me, k, v, need);
		if ((double)v - (double)need < margin)
			margin = (double)v - (double)need;
	}
	double el = now() - t0;
	if (times) {
		printf("stale: times %d", me);
		for (size_t i = 0; i < ntimes; i++)
			printf(" %.6f", at[i]);
		printf("\n");
	}
	free(at);
	uint64_t h = 1469598103934665603ull;
	const unsigned char *b = (const unsigned char *)params;
	for (size_t j = 0; j < d * sizeof(float); j++)
		h = (h ^ b[j]) * 1099511628211ull;
	printf("stale: worker %d rounds %d seconds %.3f min_margin %g checksum %016" PRIx64 "\n", me,
	       k - 1, el, margin, h);
	if (me == 0 && !synth) {
		double e2 = 0;
		for (int i = 0; i < m; i++)
			e2 += sse(&sh[i], d, params, NULL);
		printf("stale: loss %.9g\n", e2 / (2.0 * (double)total));
	}
	if ((rc = ragg_finalize(ctx)))
		die("finalize", rc);
	for (int i = 0; i < m; i++) {
		free(sh[i].x);
		free(sh[i].y);
	}
	free(sh);
	free(wt);
	free(g);
	return 0;
}
