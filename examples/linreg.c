/*
 * linreg: linear regression trained with ragg, checked against the
 * single-process reference.
 *
 * Synthetic data y = w*.x + noise, D features, worker i holding
 * BASE + STEP*i samples (unequal on purpose: the aggregate must be the
 * sample-weighted mean). Each worker pushes the mean gradient of its own
 * samples with weight n_i; the servers apply w <- w - lr*g with the exact
 * mean over all data, which is full-batch gradient descent.
 *
 * Worker 0 regenerates every worker's data (it is all derived from seeds),
 * runs full-batch gradient descent in double precision alongside, and prints
 * the loss per round and, last, the largest difference between the two
 * parameter vectors relative to the largest reference parameter.
 *
 * With RAGG_COMPRESS the gradients travel compressed and the trajectory
 * departs from the reference: -e sets the largest relative difference
 * accepted (default 1e-5; -e inf: none), and the loss is what to compare.
 *
 * With RAGG_DP=on (ragg-privacy(7)) the agents clip and noise the
 * gradients, so the parameters no longer follow the reference: worker 0
 * then prints, each round, the loss, the reference's (non-private) loss and
 * the epsilon spent (ragg_dp_spent), and last the ratio of the two losses.
 *
 * Run:  ragg-run -w 8 -a 2 -s 2 -- linreg [-d FEATURES] [-r ROUNDS] [-l LR] [-e MAXERR] [-n NOISE]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ragg/ragg.h>

#define BASE_SAMPLES 40
#define STEP_SAMPLES 20

/* The amplitude of the labels' noise (-n): the loss the model converges to. */
static double noise = 0.01;

struct rng {
	uint64_t s;
};

/* splitmix64: reproducible data from a seed on every process. */
static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_uniform(struct rng *r) /* in [-1, 1) */
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-52 - 1.0;
}

struct shard {
	size_t n, d;
	float *x; /* n x d, row-major */
	float *y;
};

static size_t samples_of(int worker)
{
	return BASE_SAMPLES + STEP_SAMPLES * (size_t)worker;
}

/* Features scaled so that each row's squared norm is the total sample
 * count: the Hessian X'X/N then has its non-zero eigenvalues near 1 and a
 * learning rate of 0.5 converges quickly. */
static int make_shard(int worker, size_t d, size_t n_total, const double *w_true, struct shard *s)
{
	struct rng r = { .s = 1000003u * (uint64_t)(worker + 1) };
	double scale = sqrt(3.0 * (double)n_total / (double)d);
	s->n = samples_of(worker);
	s->d = d;
	s->x = malloc(s->n * d * sizeof(float));
	s->y = malloc(s->n * sizeof(float));
	if (!s->x || !s->y)
		return -1;
	for (size_t k = 0; k < s->n; k++) {
		double dot = 0;
		for (size_t j = 0; j < d; j++) {
			float v = (float)(rng_uniform(&r) * scale);
			s->x[k * d + j] = v;
			dot += (double)v * w_true[j];
		}
		s->y[k] = (float)(dot + noise * rng_uniform(&r));
	}
	return 0;
}

static void true_weights(size_t d, double *w)
{
	struct rng r = { .s = 42 };
	for (size_t j = 0; j < d; j++)
		w[j] = rng_uniform(&r);
}

/* Mean gradient and summed squared error of the shard at w (double). */
static double shard_grad(const struct shard *s, const double *w, double *grad_sum)
{
	double sse = 0;
	for (size_t k = 0; k < s->n; k++) {
		const float *x = s->x + k * s->d;
		double e = -(double)s->y[k];
		for (size_t j = 0; j < s->d; j++)
			e += (double)x[j] * w[j];
		sse += e * e;
		if (grad_sum)
			for (size_t j = 0; j < s->d; j++)
				grad_sum[j] += e * (double)x[j];
	}
	return sse;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "linreg: %s: %s (%s)\n", what, ragg_strerror(rc), ragg_strerror_name(rc));
	exit(1);
}

static int serve(ragg_ctx_t *ctx)
{
	int rc = ragg_serve(ctx);
	if (rc)
		fprintf(stderr, "linreg: serve: %s\n", ragg_strerror(rc));
	int rc2 = ragg_finalize(ctx);
	return rc || rc2 ? 1 : 0;
}

int main(int argc, char **argv)
{
	size_t d = 10000;
	int rounds = 30, c;
	double lr = 0.5, max_err = 1e-5;
	struct ragg_opts o;
	ragg_ctx_t *ctx;
	int rc;

	while ((c = getopt(argc, argv, "d:r:l:e:n:")) != -1) {
		switch (c) {
		case 'd':
			d = (size_t)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'l':
			lr = atof(optarg);
			break;
		case 'e':
			max_err = strtod(optarg, NULL);
			break;
		case 'n':
			noise = strtod(optarg, NULL);
			break;
		default:
			fprintf(stderr, "usage: linreg [-d FEATURES] [-r ROUNDS] [-l LR] [-e MAXERR] [-n NOISE]\n");
			return 2;
		}
	}
	if (d < 1 || rounds < 1 || !(max_err > 0) || !(noise >= 0))
		return 2;
	if ((rc = ragg_opts_default(&o)))
		die("settings", rc);
	o.lr = (float)lr;
	/* Small chunks unless the user chose: the model then spans several
	 * chunks and servers, as a large model would. */
	if (!getenv("RAGG_CHUNK_BYTES"))
		o.chunk_bytes = 8192;
	if ((rc = ragg_init(&o, &ctx)))
		die("init", rc);
	if (ragg_role(ctx) != RAGG_ROLE_WORKER)
		return serve(ctx);

	int me = ragg_rank(ctx), m = o.workers;
	double *w_true = malloc(d * sizeof(double));
	double *wd = calloc(d, sizeof(double)), *gd = calloc(d, sizeof(double));
	/* Memory the agent reads and writes in place when it is on this host
	 * (shm); ordinary memory otherwise. Released by ragg_finalize. */
	float *params = ragg_mem_alloc(ctx, d * sizeof(float));
	float *grad = ragg_mem_alloc(ctx, d * sizeof(float));
	struct shard *shards = calloc((size_t)m, sizeof(*shards));
	if (!w_true || !wd || !gd || !params || !grad || !shards)
		die("memory", -12);
	true_weights(d, w_true);
	size_t n_total = 0;
	for (int i = 0; i < m; i++)
		n_total += samples_of(i);
	/* Worker 0 needs everybody's data for the reference; the others only
	 * their own. */
	for (int i = 0; i < m; i++)
		if ((i == me || me == 0) && make_shard(i, d, n_total, w_true, &shards[i]))
			die("memory", -12);
	/* Only worker 0's initial values count: the others start elsewhere to
	 * show that declaring broadcasts worker 0's. */
	struct rng r = { .s = 7u + (uint64_t)me };
	for (size_t j = 0; j < d; j++)
		params[j] = (float)(0.1 * rng_uniform(&r));
	ragg_tensor_t *t;
	if ((rc = ragg_tensor_declare(ctx, "linreg.w", params, d, &t)))
		die("declare", rc);
	/* Every worker now holds worker 0's values; the reference starts there. */
	for (size_t j = 0; j < d; j++)
		wd[j] = params[j];

	const struct shard *mine = &shards[me];
	double loss = 0, loss_ref = 0, eps = 0;
	/* Before any round: 0 with RAGG_DP=on, +inf with it off. */
	if ((rc = ragg_dp_spent(ctx, &eps, NULL)))
		die("dp_spent", rc);
	int dp = !isinf(eps);
	double *pw = malloc(d * sizeof(double)), *g = malloc(d * sizeof(double));
	if (!pw || !g)
		die("memory", -12);
	for (int round = 1; round <= rounds; round++) {
		/* This worker's mean gradient at the parameters it holds. */
		for (size_t j = 0; j < d; j++) {
			pw[j] = params[j];
			g[j] = gd[j] = 0;
		}
		shard_grad(mine, pw, g);
		for (size_t j = 0; j < d; j++)
			grad[j] = (float)(g[j] / (double)mine->n);
		if ((rc = ragg_pushpull(t, grad, (double)mine->n, params)))
			die("pushpull", rc);
		if (me == 0) {
			/* Reference: one full-batch step in double. */
			for (int i = 0; i < m; i++)
				shard_grad(&shards[i], wd, gd);
			for (size_t j = 0; j < d; j++)
				wd[j] -= lr * gd[j] / (double)n_total;
			double sse = 0, sse_ref = 0;
			for (size_t j = 0; j < d; j++)
				pw[j] = params[j];
			for (int i = 0; i < m; i++) {
				sse += shard_grad(&shards[i], pw, NULL);
				sse_ref += shard_grad(&shards[i], wd, NULL);
			}
			loss = sse / (2.0 * (double)n_total);
			loss_ref = sse_ref / (2.0 * (double)n_total);
			if (!dp) {
				printf("round %d loss %.9g reference %.9g\n", round, loss, loss_ref);
			} else {
				if ((rc = ragg_dp_spent(ctx, &eps, NULL)))
					die("dp_spent", rc);
				printf("round %d loss %.9g reference %.9g epsilon %.6g\n", round,
				       loss, loss_ref, eps);
			}
		}
	}
	int status = 0;
	if (me == 0 && dp) {
		printf("linreg: workers=%d agents=%d servers=%d transport=%s rounds=%d dp=on "
		       "loss=%.6g reference_loss=%.6g loss_ratio=%.4g epsilon=%.6g\n",
		       o.workers, o.agents, o.servers, ragg_transport_name(ctx), rounds, loss,
		       loss_ref, loss / loss_ref, eps);
		status = isfinite(loss) ? 0 : 1;
	} else if (me == 0) {
		/* fmax() drops a NaN argument, so a NaN or infinite value is
		 * counted apart: such a run must fail however the reference
		 * went, never read as an error of 0. */
		double num = 0, den = 0;
		size_t bad = 0;
		for (size_t j = 0; j < d; j++) {
			if (!isfinite(params[j]) || !isfinite(wd[j]))
				bad++;
			else
				num = fmax(num, fabs((double)params[j] - wd[j]));
			den = fmax(den, fabs(wd[j]));
		}
		double err = bad || !isfinite(loss) ? NAN : num / den;
		printf("linreg: workers=%d agents=%d servers=%d transport=%s rounds=%d loss=%.6g "
		       "max_rel_err_vs_reference=%.3g\n",
		       o.workers, o.agents, o.servers, ragg_transport_name(ctx), rounds, loss, err);
		if (bad) {
			fprintf(stderr,
			        "linreg: %zu of %zu parameters (trained or reference) are NaN or "
			        "infinite\n",
			        bad, d);
			status = 1;
		} else if (!(err < max_err)) {
			fprintf(
			    stderr,
			    "linreg: the trained parameters differ from the reference by %.3g\n",
			    err);
			status = 1;
		}
	}
	if ((rc = ragg_finalize(ctx)))
		die("finalize", rc);
	for (int i = 0; i < m; i++) {
		free(shards[i].x);
		free(shards[i].y);
	}
	free(shards);
	free(w_true);
	free(wd);
	free(gd);
	free(pw);
	free(g);
	return status;
}
