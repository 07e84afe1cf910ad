/*
 * A test job, started by ragg-run in tests/integration/run.sh. Agents and
 * servers serve; workers run one of these modes and exit non-zero on any
 * wrong value:
 *
 *   exact ROUNDS [COUNT...]
 *                   tensors of awkward sizes (COUNT floats each; default
 *                   two, of 3098 and 4097); worker i pushes values it and
 *                   the test both know, with weight i+1; after every round
 *                   each parameter must match the closed-form result of
 *                   the servers' optimizer (RAGG_OPTIMIZER: SGD,
 *                   momentum, Adam or AdamW) on the sample-weighted mean,
 *                   to float rounding; with JOB_SKIP="R W" (and
 *                   RAGG_ON_NONFINITE=skip), worker W pushes a gradient
 *                   of NaNs in round R, which the closed form leaves out
 *   inplace ROUNDS  as exact, with the parameters and gradients in
 *                   ragg_mem_alloc() memory, switching gradient buffers
 *                   mid-run (another mem_alloc one, a malloc'd one) and
 *                   checking ragg_mem_free's answers; on shm the rounds
 *                   after a buffer's first two must move (almost) no
 *                   tensor bytes through writes: the agent works in place
 *   codec ROUNDS    RAGG_COMPRESS=fp16 or bf16 with RAGG_COMPRESS_EF=off (or
 *                   RAGG_WORKER_COMPRESS one of them, the other hop none)
 *                   (RAGG_LR as set, SGD): values that the format cannot
 *                   hold; after every round each parameter must be within
 *                   the codec's bound of the exact step on the weighted
 *                   mean (half an ulp relative at the workers' encoding and
 *                   again at the agent's: lr * (uw + ua + uw ua) * sum_i
 *                   w_i |g_i| / W, u = 2^-11 for fp16, 2^-8 for bf16, 0
 *                   for a hop without a codec, plus float rounding); some
 *                   error must show (the values did travel encoded) and
 *                   the bytes a worker sends per round must be those of
 *                   the encoding, not of the floats (4 per float, over
 *                   tcp, with RAGG_WORKER_COMPRESS=none)
 *   replicas ROUNDS with RAGG_COMPRESS_PULL: one tensor of 3098 floats,
 *                   gradients no codec holds exactly, ROUNDS rounds; then
 *                   each worker prints a checksum (64-bit FNV-1a) of every
 *                   chunk of its parameters, "replicas: worker W chunk C
 *                   HASH", for run.sh to compare with the servers' (logged
 *                   at RAGG_LOG=info) and with the other workers'
 *   rounds N        N rounds of a small model (for memory and soak tests)
 *   mismatch        worker 1 declares a different size: declaring must fail
 *                   with RAGG_ERR_MISMATCH everywhere
 *   poison R W      worker W writes a NaN into its gradient while its push
 *                   of round R is in flight, behind its own check: the
 *                   round must fail on every worker, no parameter may ever
 *                   be non-finite (see poison() below)
 *   slow N MS       N rounds with a pause of MS between them
 *   settings NAME VALUE
 *                   server 1 sets NAME to VALUE with ragg_opts_set, the
 *                   others keep the environment's: every process must fail
 *                   by itself (SIGTERM from ragg-run is ignored), workers
 *                   when joining or at their first round; each prints
 *                   "settings: ROLE RANK failed with CODE after MS ms"
 *   checkers        no job (nothing is started): the checkers above must
 *                   refuse parameters that are NaN or infinite
 *
 * rounds and slow take their buffers from ragg_mem_alloc() when
 * JOB_MEMORY=ragg (read and written in place over shm), else from calloc;
 * with JOB_READY_FILE, worker 0 creates that file after its second round
 * (exact: of its first tensor),
 * so a test can hurt the job once it is surely running. JOB_COUNT sets
 * their model's size in floats (default 20000): a large one keeps engine
 * jobs in flight for most of a round.
 *
 * Every process prints "maxrss ROLE RANK KB" before it exits.
 */
#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
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

/* The closed-form trajectory every worker checks its parameters against:
 * the servers' optimizer, read from RAGG_* as the library reads it, on the
 * mean of the workers' gradients weighted by i + 1. */
struct closed_form {
	int workers, agents, me;
	enum ragg_optimizer opt;
	double lr, mu, total_w;
	/* adam, adamw: RAGG_BETA1, RAGG_BETA2, RAGG_EPS, RAGG_WEIGHT_DECAY */
	double b1, b2, eps, wd;
	size_t n;
	double *expect; /* w, in exact arithmetic */
	double *v, *ev, *ew; /* momentum, adam: v; bounds on the servers' float error in v, w */
	double *m, *em; /* adam: m and its error bound */
	size_t unchecked, checked; /* adam: element-rounds whose bound was (not) finite */
	double max_err, max_tol, max_ratio; /* largest |error|, tolerance, error / tolerance */
	int skip_round, skip_worker; /* JOB_SKIP: a contribution left out, or 0 -1 */
};

/* An Adam hyperparameter as the servers read it: a float from RAGG_*, or
 * the library's default. */
static double env_float(const char *name, float def)
{
	const char *v = getenv(name);
	return v && *v ? (double)strtof(v, NULL) : (double)def;
}

static int cf_init(struct closed_form *cf, ragg_ctx_t *ctx, size_t n)
{
	struct ragg_opts o = { .size = sizeof(o) };
	int rc = ragg_opts_default(&o);
	if (rc)
		return rc;
	memset(cf, 0, sizeof(*cf));
	cf->workers = o.workers;
	cf->agents = o.agents;
	cf->me = ragg_rank(ctx);
	cf->opt = o.optimizer;
	/* The servers compute with these floats: so does the closed form. */
	cf->lr = o.lr;
	cf->mu = o.momentum;
	cf->b1 = env_float("RAGG_BETA1", 0.9f);
	cf->b2 = env_float("RAGG_BETA2", 0.999f);
	cf->eps = env_float("RAGG_EPS", 1e-8f);
	cf->wd = env_float("RAGG_WEIGHT_DECAY", 0.0f);
	for (int i = 0; i < cf->workers; i++)
		cf->total_w += i + 1;
	const char *skip = getenv("JOB_SKIP");
	cf->skip_worker = -1;
	if (skip && sscanf(skip, "%d %d", &cf->skip_round, &cf->skip_worker) != 2)
		return -EINVAL;
	cf->n = n;
	cf->expect = malloc(n * sizeof(double));
	cf->v = calloc(n, sizeof(double));
	cf->ev = calloc(n, sizeof(double));
	cf->ew = calloc(n, sizeof(double));
	cf->m = calloc(n, sizeof(double));
	cf->em = calloc(n, sizeof(double));
	if (!cf->expect || !cf->v || !cf->ev || !cf->ew || !cf->m || !cf->em)
		return -ENOMEM;
	for (size_t j = 0; j < n; j++)
		cf->expect[j] = (double)(j % 5);
	return 0;
}

static void cf_free(struct closed_form *cf)
{
	free(cf->expect);
	free(cf->v);
	free(cf->ev);
	free(cf->ew);
	free(cf->m);
	free(cf->em);
}

/* "sgd lr=0.25" or "momentum mu=0.5 lr=0.25": what was checked. */
static const char *cf_describe(const struct closed_form *cf, char *buf, size_t len)
{
	if (cf->opt == RAGG_OPT_MOMENTUM)
		snprintf(buf, len, "momentum mu=%g lr=%g", cf->mu, cf->lr);
	else if (cf->opt == RAGG_OPT_ADAM || cf->opt == RAGG_OPT_ADAMW)
		snprintf(buf, len, "%s b1=%g b2=%g eps=%g wd=%g lr=%g",
		         cf->opt == RAGG_OPT_ADAM ? "adam" : "adamw", (float)cf->b1, (float)cf->b2,
		         (float)cf->eps, (float)cf->wd, cf->lr);
	else
		snprintf(buf, len, "sgd lr=%g", cf->lr);
	return buf;
}

/* Worker 0's initial values must win; the others hold junk. */
static void cf_initial(const struct closed_form *cf, float *params)
{
	for (size_t j = 0; j < cf->n; j++)
		params[j] = cf->me == 0 ? (float)(j % 5) : 1e6f;
}

static void cf_grad(const struct closed_form *cf, float *grad, int r)
{
	for (size_t j = 0; j < cf->n; j++)
		grad[j] = grad_value(cf->me, j, r);
}

/*
 * One momentum round for element j: v <- mu*v + g, w <- w - lr*v in exact
 * arithmetic, and bounds on how far the servers' floats may have drifted
 * from it (the tolerance). With u = 2^-24 and a the number of agents:
 * the agents' sums s_j are of small integers, exact; the server's
 * g = fl(1/T) * sum_j s_j is within (a+1)u * sum_i N_i|g_i| / T of the
 * mean, in any summation order; the update of v and then of w rounds
 * twice each (once with FMA). Here g counts (a+2)u and each rounding 2u,
 * not u(1+u), which leaves room for the second-order terms (and the
 * reference's own double rounding, ~2^-53). The bound stays near 1e-5
 * over a few rounds (run.sh's jobs print it, and how much of it the
 * error used): a wrong mu, a v not kept or not per element, a skipped
 * block are off by 0.01 or much more.
 */
static double cf_momentum(struct closed_form *cf, size_t j, double g, double abs_sum)
{
	const double u = 0x1p-24;
	double mu = cf->mu, lr = cf->lr;
	double eg = (cf->agents + 2) * u * abs_sum;
	double v = cf->v[j], ev = cf->ev[j], w = cf->expect[j], ew = cf->ew[j];
	double v1 = mu * v + g;
	double ev1 = fabs(mu) * ev + eg + 2 * u * (fabs(mu) * (fabs(v) + ev) + fabs(g) + eg);
	double w1 = w - lr * v1;
	double ew1 = ew + fabs(lr) * ev1 + 2 * u * (fabs(w) + ew + fabs(lr) * (fabs(v1) + ev1));
	cf->v[j] = v1;
	cf->ev[j] = ev1;
	cf->expect[j] = w1;
	cf->ew[j] = ew1;
	return ew1;
}

/*
 * One Adam (AdamW) step t for element j, in exact arithmetic: with g' = g +
 * wd*w (Adam) or g' = g (AdamW), m <- b1*m + (1-b1)*g', v <- b2*v +
 * (1-b2)*g'^2, w <- keep*w - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps),
 * keep = 1 - lr*wd for AdamW, 1 for Adam; and, as for momentum, bounds on
 * the servers' float error carried through every operation: the mean g as
 * above, each product or sum 1u to 2u (a few more where the server's
 * constants, 1-b1 and the bias corrections, are rounded), the square root
 * at most min(sqrt(e), e / (2 sqrt(v))) for an error e in v. Where the
 * denominator's bound reaches the denominator itself (v ~ 0 but not known
 * to be: the workers' gradients cancel in a round before any other reached
 * the element, and the server's g, rounding noise of a few u, is scaled up
 * to a full step), the element is not checked this round and its w
 * restarts from the servers' value (m and v keep their finite bounds);
 * run.sh bounds how many element-rounds that may be.
 */
static double cf_adam(struct closed_form *cf, size_t j, double g, double abs_sum, int t)
{
	const double u = 0x1p-24;
	int decoupled = cf->opt == RAGG_OPT_ADAMW;
	double b1 = cf->b1, b2 = cf->b2, lr = cf->lr, wd = cf->wd;
	double l2 = decoupled ? 0 : wd, keep = decoupled ? 1 - lr * wd : 1;
	double bc1 = 1 - pow(b1, t), rs = 1 / sqrt(1 - pow(b2, t));
	double w = cf->expect[j], ew = cf->ew[j], m = cf->m[j], em = cf->em[j];
	double v = cf->v[j], ev = cf->ev[j];
	double eg = (cf->agents + 2) * u * abs_sum;
	double gi = g + l2 * w, egi = eg + l2 * ew + 3 * u * (fabs(g) + fabs(l2 * w));
	double m1 = b1 * m + (1 - b1) * gi;
	double em1 = b1 * em + (1 - b1) * egi + 4 * u * (fabs(b1 * m) + fabs((1 - b1) * gi) + em);
	double v1 = b2 * v + (1 - b2) * gi * gi;
	double ev1 = b2 * ev + (1 - b2) * (2 * fabs(gi) + egi) * egi +
	             5 * u * (fabs(b2 * v) + (1 - b2) * gi * gi + ev);
	double sv = sqrt(v1);
	double esv = sv > 0 ? fmin(sqrt(ev1), ev1 / (2 * sv)) : sqrt(ev1);
	double d = sv * rs + cf->eps, ed = (esv + 3 * u * sv) * rs + 2 * u * d;
	double q = m1 / d;
	double eq = d > 2 * ed ? em1 / d + fabs(m1) * ed / (d * (d - ed)) + u * fabs(q) : INFINITY;
	double st = lr / bc1 * q, est = lr / bc1 * eq + 2 * u * fabs(st);
	double w1 = keep * w - st;
	double ew1 = keep * ew + est + 3 * u * (fabs(keep * w) + fabs(st)) + 2 * u * fabs(w);
	cf->m[j] = m1;
	cf->em[j] = em1;
	cf->v[j] = v1;
	cf->ev[j] = ev1;
	cf->expect[j] = w1;
	cf->ew[j] = ew1;
	return ew1;
}

/* The parameters after round r (0: as declared), to float rounding. */
static int cf_check(struct closed_form *cf, const float *params, int k, int r)
{
	for (size_t j = 0; j < cf->n; j++) {
		double tol = 0;
		if (r > 0) {
			double g = 0, abs_sum = 0, total_w = cf->total_w;
			for (int i = 0; i < cf->workers; i++) {
				if (r == cf->skip_round && i == cf->skip_worker) {
					total_w -= i + 1;
					continue;
				}
				double x = (i + 1) * (double)grad_value(i, j, r);
				g += x;
				abs_sum += fabs(x);
			}
			g /= total_w;
			abs_sum /= total_w;
			if (cf->opt == RAGG_OPT_MOMENTUM) {
				tol = cf_momentum(cf, j, g, abs_sum);
			} else if (cf->opt == RAGG_OPT_ADAM || cf->opt == RAGG_OPT_ADAMW) {
				tol = cf_adam(cf, j, g, abs_sum, r);
			} else {
				cf->expect[j] -= cf->lr * g;
				tol = 1e-5 * fmax(1.0, fabs(cf->expect[j]));
			}
		}
		if (!isfinite(tol)) {
			cf->expect[j] = params[j];
			cf->ew[j] = 0;
			cf->unchecked++;
			continue;
		}
		cf->checked += r > 0;
		double err = fabs(params[j] - cf->expect[j]);
		/* Written so that a NaN error fails: NaN > tol is false. */
		if (!(err <= tol)) {
			fprintf(stderr,
			        "job: tensor %d round %d element %zu: %.9g, expected %.9g "
			        "(error %.3g, tolerance %.3g)\n",
			        k, r, j, params[j], cf->expect[j], err, tol);
			return 1;
		}
		cf->max_err = fmax(cf->max_err, err);
		cf->max_tol = fmax(cf->max_tol, tol);
		if (tol > 0)
			cf->max_ratio = fmax(cf->max_ratio, err / tol);
	}
	return 0;
}

/* Weights that are negative, NaN or infinite are refused by every push
 * call and change nothing: the round that follows must still be exact. */
static int refuse_poisoned_weights(ragg_tensor_t *t, const float *grad, float *params)
{
	static const double bad[] = { -1.0, NAN, -NAN, INFINITY, -INFINITY };
	ragg_req_t *req = NULL;
	int rc;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if ((rc = ragg_push(t, grad, bad[i])) != -EINVAL ||
		    (rc = ragg_ipush(t, grad, bad[i], &req)) != -EINVAL ||
		    (rc = ragg_pushpull(t, grad, bad[i], params)) != -EINVAL) {
			fprintf(stderr,
			        "job: a push with weight %g returned %s, expected -EINVAL\n",
			        bad[i], ragg_strerror_name(rc));
			return 1;
		}
	}
	if (req) {
		fprintf(stderr, "job: a refused ragg_ipush returned a request\n");
		return 1;
	}
	return 0;
}

/* With RAGG_CHECK_GRADIENT=on, a gradient with a NaN or an infinity
 * (first, middle or last element) is refused by every push call with
 * RAGG_ERR_NONFINITE and changes nothing: the round that follows must still
 * be exact. */
static int refuse_poisoned_gradients(ragg_tensor_t *t, float *grad, size_t n, float *params)
{
	static const float bad[] = { NAN, -NAN, INFINITY, -INFINITY };
	size_t at[] = { 0, n / 2, n - 1 };
	ragg_req_t *req = NULL;
	int rc;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
			float keep = grad[at[k]];
			grad[at[k]] = bad[i];
			if ((rc = ragg_push(t, grad, 1.0)) != RAGG_ERR_NONFINITE ||
			    (rc = ragg_ipush(t, grad, 1.0, &req)) != RAGG_ERR_NONFINITE ||
			    (rc = ragg_pushpull(t, grad, 0.0, params)) != RAGG_ERR_NONFINITE) {
				fprintf(stderr,
				        "job: a push with %g at element %zu returned %s, expected "
				        "RAGG_ERR_NONFINITE\n",
				        bad[i], at[k], ragg_strerror_name(rc));
				return 1;
			}
			grad[at[k]] = keep;
		}
	if (req) {
		fprintf(stderr, "job: a refused ragg_ipush returned a request\n");
		return 1;
	}
	return 0;
}

/* counts: the tensors' sizes from the command line, none for the default. */
static int exact(ragg_ctx_t *ctx, int rounds, int ncounts, char **counts)
{
	size_t sizes[8] = { 1031 * 3 + 5, 4096 + 1 }; /* chunk tails, several servers */
	int ntensors = ncounts ? ncounts : 2, me = ragg_rank(ctx), rc;
	const char *cg = getenv("RAGG_CHECK_GRADIENT");
	bool check_gradient = cg && strcmp(cg, "on") == 0;
	if (ncounts > (int)(sizeof(sizes) / sizeof(sizes[0]))) {
		fprintf(stderr, "job: exact: at most %zu tensors\n",
		        sizeof(sizes) / sizeof(sizes[0]));
		return 2;
	}
	for (int k = 0; k < ncounts; k++) {
		char *end;
		sizes[k] = strtoul(counts[k], &end, 10);
		if (end == counts[k] || *end || sizes[k] == 0) {
			fprintf(stderr, "job: exact: bad tensor size \"%s\"\n", counts[k]);
			return 2;
		}
	}
	double max_err = 0, max_tol = 0, max_ratio = 0;
	size_t unchecked = 0, checked = 0;
	char what[96] = "";
	struct ragg_stats st = { .size = sizeof(st) };
	for (int k = 0; k < ntensors; k++) {
		size_t n = sizes[k];
		struct closed_form cf;
		float *params = malloc(n * sizeof(float)), *grad = malloc(n * sizeof(float));
		ragg_tensor_t *t;
		char name[32];
		if (!params || !grad)
			return fail("memory", -ENOMEM);
		if ((rc = cf_init(&cf, ctx, n)))
			return fail("closed form", rc);
		cf_initial(&cf, params);
		snprintf(name, sizeof(name), "exact.%d", k);
		if ((rc = ragg_tensor_declare(ctx, name, params, n, &t)))
			return fail("declare", rc);
		if (cf_check(&cf, params, k, 0))
			return 1;
		for (int r = 1; r <= rounds; r++) {
			cf_grad(&cf, grad, r);
			if (r == cf.skip_round && me == cf.skip_worker)
				for (size_t j = 0; j < n; j++)
					grad[j] = NAN;
			if (r == 1 && k == 0 &&
			    (refuse_poisoned_weights(t, grad, params) ||
			     (check_gradient && refuse_poisoned_gradients(t, grad, n, params))))
				return 1;
			if ((rc = ragg_pushpull(t, grad, me + 1, params)))
				return fail("pushpull", rc);
			if (cf_check(&cf, params, k, r))
				return 1;
			const char *ready = getenv("JOB_READY_FILE");
			if (r == 2 && k == 0 && me == 0 && ready) {
				FILE *f = fopen(ready, "w");
				if (f)
					fclose(f);
			}
		}
		cf_describe(&cf, what, sizeof(what));
		max_err = fmax(max_err, cf.max_err);
		max_tol = fmax(max_tol, cf.max_tol);
		max_ratio = fmax(max_ratio, cf.max_ratio);
		unchecked += cf.unchecked;
		checked += cf.checked;
		free(params);
		free(grad);
		cf_free(&cf);
	}
	ragg_stats(ctx, &st);
	printf("exact: worker %d ok, %s, %llu rounds, %llu bytes sent, largest error %.3g, "
	       "largest tolerance %.3g, at worst %.0f%% of the tolerance used%s\n",
	       me, what, (unsigned long long)st.rounds, (unsigned long long)st.bytes_sent, max_err,
	       max_tol, 100 * max_ratio, unchecked ? ", some elements unchecked" : "");
	if (unchecked)
		printf("exact: worker %d: %zu of %zu element-rounds not checked (the mean gradient "
		       "cancels to 0, v is 0: the float g is rounding noise that Adam scales up)\n",
		       me, unchecked, unchecked + checked);
	return 0;
}

/* ---- codec ---- */

/* Worker i's value for element j in round r: an integer plus a fraction
 * neither fp16 nor bf16 holds exactly, never 0. */
static double codec_value(int i, size_t j, int r)
{
	return grad_value(i, j, r) +
	       0.9 * ((double)((j * 13 + (size_t)i * 5 + (size_t)r * 3) % 97) + 0.5) / 97.0;
}

/* Half an ulp of a codec (relative), 0 for none, -1 for any other. */
static double codec_ulp(const char *spec)
{
	return !spec || !strcmp(spec, "none") ? 0
	       : !strcmp(spec, "fp16")        ? 0x1p-11
	       : !strcmp(spec, "bf16")        ? 0x1p-8
	                                      : -1;
}

static int codec_mode(ragg_ctx_t *ctx, int rounds)
{
	/* The agent -> server hop's codec, and the worker -> agent hop's
	 * (RAGG_WORKER_COMPRESS, the same by default). */
	const char *spec = getenv("RAGG_COMPRESS"), *wspec = getenv("RAGG_WORKER_COMPRESS");
	if (!wspec || !strcmp(wspec, "same"))
		wspec = spec;
	double ua = codec_ulp(spec), uw = codec_ulp(wspec);
	const char *ef = getenv("RAGG_COMPRESS_EF");
	struct ragg_opts o = { .size = sizeof(o) };
	int rc, me = ragg_rank(ctx);
	if (ua < 0 || uw < 0 || ua + uw == 0 || !ef || strcmp(ef, "off")) {
		fprintf(stderr, "job: codec: needs RAGG_COMPRESS or RAGG_WORKER_COMPRESS fp16|bf16, "
		                "the other none, fp16 or bf16, and RAGG_COMPRESS_EF=off\n");
		return 2;
	}
	if ((rc = ragg_opts_default(&o)))
		return fail("settings", rc);
	const size_t sizes[2] = { 1031 * 3 + 5, 4096 + 1 };
	double lr = o.lr, max_err = 0, max_ratio = 0, W = 0;
	for (int i = 0; i < o.workers; i++)
		W += i + 1;
	for (int k = 0; k < 2; k++) {
		size_t n = sizes[k];
		float *params = malloc(n * sizeof(float)), *grad = malloc(n * sizeof(float));
		ragg_tensor_t *t;
		char name[32];
		if (!params || !grad)
			return fail("memory", -ENOMEM);
		for (size_t j = 0; j < n; j++)
			params[j] = (float)(j % 5);
		snprintf(name, sizeof(name), "codec.%d", k);
		if ((rc = ragg_tensor_declare(ctx, name, params, n, &t)))
			return fail("declare", rc);
		struct ragg_stats a = { .size = sizeof(a) }, b = { .size = sizeof(b) };
		ragg_stats(ctx, &a);
		for (int r = 1; r <= rounds; r++) {
			for (size_t j = 0; j < n; j++)
				grad[j] = (float)codec_value(me, j, r);
			float *before = malloc(n * sizeof(float));
			if (!before)
				return fail("memory", -ENOMEM);
			memcpy(before, params, n * sizeof(float));
			if ((rc = ragg_pushpull(t, grad, me + 1, params)))
				return fail("pushpull", rc);
			for (size_t j = 0; j < n; j++) {
				double mean = 0, mag = 0;
				for (int i = 0; i < o.workers; i++) {
					double g = (float)codec_value(i, j, r);
					mean += (i + 1) * g;
					mag += (i + 1) * fabs(g);
				}
				mean /= W;
				mag /= W;
				double want = before[j] - lr * mean;
				double tol = lr * (uw + ua + uw * ua) * mag +
				             8 * 0x1p-24 * (fabs(want) + fabs(before[j]) + lr * mag);
				double err = fabs(params[j] - want);
				max_err = fmax(max_err, err);
				max_ratio = fmax(max_ratio, err / tol);
				if (!(err <= tol)) {
					fprintf(stderr,
					        "job: codec %s tensor %d round %d element %zu: %.9g, "
					        "expected %.9g (error %.3g, bound %.3g)\n",
					        spec, k, r, j, params[j], want, err, tol);
					return 1;
				}
			}
			free(before);
		}
		ragg_stats(ctx, &b);
		/* Per round: the encoding of every chunk (2 bytes or so per
		 * float) and the weight; never the floats (4 per float). With
		 * the worker hop uncompressed, the floats (over tcp; over shm
		 * they are read in place, nothing is written). */
		double per_float = (double)(b.bytes_sent - a.bytes_sent) / rounds / (double)n;
		const char *tp = getenv("RAGG_TRANSPORT");
		bool shm = tp && !strcmp(tp, "shm");
		printf("codec: worker %d tensor %d: %.3f bytes sent per float per round\n", me, k,
		       per_float);
		if (uw > 0 ? !(per_float > 1.9 && per_float < 2.6)
		           : !shm && !(per_float > 3.9 && per_float < 4.6)) {
			fprintf(stderr, "job: codec: %.3f bytes per float per round: not %s\n",
			        per_float, wspec);
			return 1;
		}
		free(params);
		free(grad);
	}
	if (!(max_err > 0)) {
		fprintf(stderr, "job: codec %s: no error at all: the values did not travel encoded\n",
		        spec);
		return 1;
	}
	printf("codec: worker %d ok, %s, largest error %.3g, at worst %.0f%% of the bound\n", me,
	       spec, max_err, 100 * max_ratio);
	return 0;
}

/* ---- replicas ---- */

static int replicas(ragg_ctx_t *ctx, int rounds)
{
	const size_t n = 1031 * 3 + 5;
	struct ragg_opts o = { .size = sizeof(o) };
	int rc, me = ragg_rank(ctx);
	ragg_tensor_t *t;
	if ((rc = ragg_opts_default(&o)))
		return fail("settings", rc);
	float *params = malloc(n * sizeof(float)), *grad = malloc(n * sizeof(float));
	if (!params || !grad)
		return fail("memory", -ENOMEM);
	for (size_t j = 0; j < n; j++)
		params[j] = (float)(j % 5) * 0.1f;
	if ((rc = ragg_tensor_declare(ctx, "replicas", params, n, &t)))
		return fail("declare", rc);
	for (int r = 1; r <= rounds; r++) {
		for (size_t j = 0; j < n; j++)
			grad[j] = (float)(codec_value(me, j, r) * 0.01 * (1 + (j % 3)));
		if ((rc = ragg_pushpull(t, grad, me + 1, params)))
			return fail("pushpull", rc);
	}
	size_t per = o.chunk_bytes / sizeof(float);
	for (size_t c = 0; c * per < n; c++) {
		const unsigned char *p = (const unsigned char *)(params + c * per);
		size_t len = (n - c * per < per ? n - c * per : per) * sizeof(float);
		uint64_t h = 0xcbf29ce484222325ull;
		for (size_t i = 0; i < len; i++)
			h = (h ^ p[i]) * 0x100000001b3ull;
		printf("replicas: worker %d chunk %zu %016llx\n", me, c, (unsigned long long)h);
	}
	free(params);
	free(grad);
	return 0;
}

/* ---- inplace ---- */

struct inplace_run {
	ragg_ctx_t *ctx;
	ragg_tensor_t *t;
	struct closed_form cf;
	float *params;
	int k, r; /* tensor, rounds done */
	bool shm; /* the agent is reached over shm: in place must happen */
	struct ragg_stats mark; /* stats when the current window opened */
};

static int check_rc(const char *what, int rc, int want)
{
	if (rc == want)
		return 0;
	fprintf(stderr, "job: %s returned %s, expected %s\n", what, ragg_strerror_name(rc),
	        ragg_strerror_name(want));
	return 1;
}

/* One exact round, its gradient pushed from grad. */
static int ip_round(struct inplace_run *ip, float *grad)
{
	int rc;
	cf_grad(&ip->cf, grad, ++ip->r);
	if ((rc = ragg_pushpull(ip->t, grad, ip->cf.me + 1, ip->params)))
		return fail("pushpull", rc);
	return cf_check(&ip->cf, ip->params, ip->k, ip->r);
}

static void ip_mark(struct inplace_run *ip)
{
	ip->mark.size = sizeof(ip->mark);
	ragg_stats(ip->ctx, &ip->mark);
}

/* Since ip_mark(), `rounds` rounds from one mapped gradient buffer into
 * mapped parameters: on shm every chunk's write carries no data either
 * way, only the weight (8 bytes) goes; well under a quarter of the tensor
 * per round, whatever the layout, is proof enough that nothing is copied. */
static int ip_window(struct inplace_run *ip, const char *what, int rounds)
{
	struct ragg_stats now = { .size = sizeof(now) };
	ragg_stats(ip->ctx, &now);
	unsigned long long sent = now.bytes_sent - ip->mark.bytes_sent,
	                   recv = now.bytes_received - ip->mark.bytes_received,
	                   tensor = (unsigned long long)rounds * ip->cf.n * sizeof(float);
	printf("inplace: worker %d tensor %d %s: %llu bytes sent, %llu received over %d "
	       "rounds of %zu-byte tensors\n",
	       ip->cf.me, ip->k, what, sent, recv, rounds, ip->cf.n * sizeof(float));
	if (!ip->shm)
		return 0;
	if (sent * 4 >= tensor || recv * 4 >= tensor) {
		fprintf(stderr,
		        "job: tensor %d %s: %llu bytes sent and %llu received over %d rounds "
		        "(%llu tensor bytes): not in place\n",
		        ip->k, what, sent, recv, rounds, tensor);
		return 1;
	}
	return 0;
}

/* Since ip_mark(), one round whose gradient could not be read in place:
 * on shm at least the tensor's bytes went out. */
static int ip_copied(struct inplace_run *ip, const char *what)
{
	struct ragg_stats now = { .size = sizeof(now) };
	ragg_stats(ip->ctx, &now);
	unsigned long long sent = now.bytes_sent - ip->mark.bytes_sent,
	                   tensor = (unsigned long long)ip->cf.n * sizeof(float);
	if (ip->shm && sent < tensor) {
		fprintf(stderr, "job: tensor %d %s: %llu bytes sent for a %llu-byte gradient\n",
		        ip->k, what, sent, tensor);
		return 1;
	}
	return 0;
}

static int inplace(ragg_ctx_t *ctx, int rounds)
{
	const size_t sizes[2] = { 1031 * 3 + 5, 4096 + 1 };
	struct inplace_run ip = { .ctx = ctx, .shm = !strcmp(ragg_transport_name(ctx), "shm") };
	int rc;
	if (rounds < 3) {
		fprintf(stderr, "job: inplace needs at least 3 rounds\n");
		return 2;
	}
	for (ip.k = 0; ip.k < 2; ip.k++) {
		size_t n = sizes[ip.k], bytes = n * sizeof(float);
		float *ga = ragg_mem_alloc(ctx, bytes), *gb = ragg_mem_alloc(ctx, bytes);
		float *gm = malloc(bytes);
		char name[32];
		ip.r = 0;
		ip.params = ragg_mem_alloc(ctx, bytes);
		if (!ip.params || !ga || !gb || !gm)
			return fail("memory", -ENOMEM);
		if ((rc = cf_init(&ip.cf, ctx, n)))
			return fail("closed form", rc);
		if (((uintptr_t)ip.params | (uintptr_t)ga | (uintptr_t)gb) & 4095) {
			fprintf(stderr, "job: ragg_mem_alloc memory not page aligned\n");
			return 1;
		}
		for (size_t j = 0; j < n; j++)
			if (ip.params[j] != 0 || ga[j] != 0 || gb[j] != 0) {
				fprintf(stderr, "job: ragg_mem_alloc memory not zeroed at %zu\n",
				        j);
				return 1;
			}
		cf_initial(&ip.cf, ip.params);
		snprintf(name, sizeof(name), "inplace.%d", ip.k);
		if ((rc = ragg_tensor_declare(ctx, name, ip.params, n, &ip.t)))
			return fail("declare", rc);
		if (cf_check(&ip.cf, ip.params, ip.k, 0))
			return 1;

		/* Buffer A: the first push announces it and copies, the
		 * agent's answer may take another round; from then on in
		 * place. */
		for (int i = 0; i < rounds; i++) {
			if (i == 2)
				ip_mark(&ip);
			if (ip_round(&ip, ga))
				return 1;
		}
		if (ip_window(&ip, "buffer A", rounds - 2) ||
		    check_rc("ragg_mem_free(params)", ragg_mem_free(ctx, ip.params), -EBUSY))
			return 1;

		/* Buffer B: announced afresh. Freed while its push is out:
		 * refused, and the round still comes out right. */
		cf_grad(&ip.cf, gb, ++ip.r);
		if ((rc = ragg_push(ip.t, gb, ip.cf.me + 1)))
			return fail("push", rc);
		if (check_rc("ragg_mem_free(pushed gradient)", ragg_mem_free(ctx, gb), -EBUSY))
			return 1;
		if ((rc = ragg_pull(ip.t, ip.params)))
			return fail("pull", rc);
		if (cf_check(&ip.cf, ip.params, ip.k, ip.r) || ip_round(&ip, gb))
			return 1;
		ip_mark(&ip);
		if (ip_round(&ip, gb) || ip_round(&ip, gb) || ip_window(&ip, "buffer B", 2))
			return 1;
		/* A is no one's gradient any more (the agent may still map
		 * it: its mapping is its own). */
		if (check_rc("ragg_mem_free(old gradient)", ragg_mem_free(ctx, ga), 0))
			return 1;

		/* A malloc'd gradient for one round: copied, never read in
		 * place, whatever the agent still maps (B). On shm its bytes
		 * must travel; the values alone would show a stale B only
		 * because B holds another round's gradient. */
		ip_mark(&ip);
		if (ip_round(&ip, gm) || ip_copied(&ip, "malloc'd buffer"))
			return 1;

		/* Back to B: announced again, in place again by its third
		 * round. */
		if (ip_round(&ip, gb) || ip_round(&ip, gb))
			return 1;
		ip_mark(&ip);
		if (ip_round(&ip, gb) || ip_window(&ip, "buffer B again", 1))
			return 1;

		/* Freeing the registered gradient between rounds is allowed;
		 * the next buffer starts over. */
		if (check_rc("ragg_mem_free(current gradient)", ragg_mem_free(ctx, gb), 0))
			return 1;
		float *gc = ragg_mem_alloc(ctx, bytes);
		if (!gc)
			return fail("memory", -12);
		for (int i = 0; i < 3; i++)
			if (ip_round(&ip, gc))
				return 1;

		/* Not ours: refused. The parameters stay in use. */
		if (check_rc("ragg_mem_free(params)", ragg_mem_free(ctx, ip.params), -EBUSY) ||
		    check_rc("ragg_mem_free(malloc'd)", ragg_mem_free(ctx, gm), -EINVAL) ||
		    check_rc("ragg_mem_free(inside a block)", ragg_mem_free(ctx, ip.params + 1),
		             -EINVAL) ||
		    check_rc("ragg_mem_free(NULL)", ragg_mem_free(ctx, NULL), -EINVAL) ||
		    check_rc("ragg_mem_free(ctx NULL)", ragg_mem_free(NULL, gc), -EINVAL))
			return 1;
		if (ragg_mem_alloc(ctx, 0) || ragg_mem_alloc(NULL, 4096)) {
			fprintf(stderr, "job: ragg_mem_alloc of nothing returned memory\n");
			return 1;
		}
		/* params and gc are left to ragg_finalize. */
		free(gm);
		cf_free(&ip.cf);
	}
	struct ragg_stats st = { .size = sizeof(st) };
	ragg_stats(ctx, &st);
	printf("inplace: worker %d ok%s, %llu rounds, %llu bytes sent\n", ip.cf.me,
	       ip.shm ? ", in place checked" : "", (unsigned long long)st.rounds,
	       (unsigned long long)st.bytes_sent);
	return 0;
}

/* Buffers of a tensor to free once ragg_finalize has returned. */
static void *after_finalize[2];

static int run_rounds(ragg_ctx_t *ctx, int rounds, int pause_ms)
{
	const char *count = getenv("JOB_COUNT");
	size_t n = count && *count ? strtoul(count, NULL, 10) : 20000;
	const char *mem = getenv("JOB_MEMORY");
	bool own = mem && strcmp(mem, "ragg") == 0;
	float *params = own ? ragg_mem_alloc(ctx, n * sizeof(float)) : calloc(n, sizeof(float));
	float *grad = own ? ragg_mem_alloc(ctx, n * sizeof(float)) : calloc(n, sizeof(float));
	ragg_tensor_t *t;
	int rc;
	if (!params || !grad)
		return fail("memory", -12);
	if ((rc = ragg_tensor_declare(ctx, "model", params, n, &t)))
		return fail("declare", rc);
	for (int r = 0; r < rounds; r++) {
		for (size_t j = 0; j < n; j++)
			grad[j] = (float)((j + (size_t)r) % 3);
		if ((rc = ragg_pushpull(t, grad, 1.0, params))) {
			/* A failed job (a peer killed) ends as cleanly as a
			 * finished one: LeakSanitizer checks the chaos runs. The
			 * buffers are the tensor's for its life (ragg_push(3)):
			 * they are freed after ragg_finalize. */
			if (!own) {
				after_finalize[0] = params;
				after_finalize[1] = grad;
			}
			return fail("pushpull", rc);
		}
		const char *ready = getenv("JOB_READY_FILE");
		if (r == 1 && ready && ragg_rank(ctx) == 0) {
			FILE *f = fopen(ready, "w");
			if (f)
				fclose(f);
		}
		if (pause_ms) {
			struct timespec ts = { .tv_sec = pause_ms / 1000,
				               .tv_nsec = (pause_ms % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
	}
	if (!own) {
		free(params);
		free(grad);
	}
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/*
 * poison R W: rounds of a model of JOB_COUNT floats (gradients in
 * ragg_mem_alloc() memory) in which, in round R, worker W poisons its
 * gradient behind its own check: it pushes a finite gradient with
 * ragg_ipush, then writes a NaN into the buffer at once, while the push is
 * still in flight (the last element, over tcp, still queued behind
 * megabytes; the one the agent reads in place, over shm, where the other
 * workers push 300 ms later). The agents must refuse the round: no worker
 * may ever see a non-finite parameter, and every worker's round R must
 * fail. Each worker prints "poison: worker I round R: CODE".
 */
static int poison(ragg_ctx_t *ctx, int bad_round, int culprit)
{
	const char *count = getenv("JOB_COUNT");
	size_t n = count && *count ? strtoul(count, NULL, 10) : 20000;
	int me = ragg_rank(ctx), rc = 0, r;
	float *params = ragg_mem_alloc(ctx, n * sizeof(float));
	float *grad = ragg_mem_alloc(ctx, n * sizeof(float));
	ragg_tensor_t *t;
	ragg_req_t *req;
	if (!params || !grad)
		return fail("memory", -ENOMEM);
	if ((rc = ragg_tensor_declare(ctx, "model", params, n, &t)))
		return fail("declare", rc);
	for (r = 1; r <= bad_round; r++) {
		for (size_t j = 0; j < n; j++)
			grad[j] = (float)((j + (size_t)r) % 3);
		if (r == bad_round && me == culprit) {
			if ((rc = ragg_ipush(t, grad, 1.0, &req)))
				break;
			grad[n - 1] = NAN;
			if ((rc = ragg_wait(req)) || (rc = ragg_pull(t, params)))
				break;
		} else {
			if (r == bad_round)
				sleep_ms(300);
			if ((rc = ragg_pushpull(t, grad, 1.0, params)))
				break;
		}
		for (size_t j = 0; j < n; j++)
			if (!isfinite(params[j])) {
				printf("poison: worker %d round %d: parameter %zu is %g\n", me, r, j,
				       params[j]);
				return 1;
			}
	}
	printf("poison: worker %d round %d: %s\n", me, r > bad_round ? bad_round : r,
	       rc ? ragg_strerror_name(rc) : "ok");
	return rc && r == bad_round ? 0 : 1;
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

static double ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static int settings_refused(const char *name, const char *value)
{
	static const char *const roles[] = { "none", "worker", "agent", "server" };
	struct timespec t0;
	struct ragg_opts o;
	ragg_ctx_t *ctx = NULL;
	ragg_tensor_t *t;
	float params[1024] = { 0 };
	int rc;

	/* Each process must fail by itself, not be stopped by ragg-run. */
	signal(SIGTERM, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((rc = ragg_opts_default(&o)))
		return fail("opts", rc);
	if (o.role == RAGG_ROLE_SERVER && o.rank == 1 && (rc = ragg_opts_set(&o, name, value)))
		return fail("ragg_opts_set", rc);
	rc = ragg_init(&o, &ctx);
	if (!rc && o.role != RAGG_ROLE_WORKER)
		rc = ragg_serve(ctx);
	else if (!rc && !(rc = ragg_tensor_declare(ctx, "model", params, 1024, &t)))
		rc = ragg_pushpull(t, params, 1.0, params);
	if (ctx)
		ragg_finalize(ctx);
	if (!rc) {
		printf("settings: %s %d was not refused\n", roles[o.role], o.rank);
		return 1;
	}
	printf("settings: %s %d failed with %s after %.0f ms\n", roles[o.role], o.rank,
	       ragg_strerror_name(rc), ms_since(&t0));
	return 1;
}

/* The closed-form checker, fed poisoned parameters: each must be refused. */
static int checkers(void)
{
	static const float poison[] = { NAN, -NAN, INFINITY, -INFINITY };
	static const char *const names[] = { "NaN", "-NaN", "+inf", "-inf" };
	int caught = 0;
	for (int p = 0; p < 4; p++)
		for (int r = 0; r < 2; r++) {
			struct closed_form cf = { .workers = 3, .agents = 2, .me = 0, .lr = 0.25 };
			float params[16];
			cf.n = 16;
			cf.total_w = 6;
			cf.expect = calloc(16, sizeof(double));
			cf.v = calloc(16, sizeof(double));
			cf.ev = calloc(16, sizeof(double));
			cf.ew = calloc(16, sizeof(double));
			if (!cf.expect || !cf.v || !cf.ev || !cf.ew)
				return fail("memory", -ENOMEM);
			for (size_t j = 0; j < 16; j++)
				cf.expect[j] = (double)(j % 5);
			cf_initial(&cf, params);
			/* Round 0 compares with the initial values, round 1 with
			 * a step of SGD; one element is poisoned either way. */
			if (r == 1)
				for (size_t j = 0; j < 16; j++) {
					double g = 0;
					for (int i = 0; i < cf.workers; i++)
						g += (i + 1) * (double)grad_value(i, j, 1);
					params[j] = (float)(cf.expect[j] - cf.lr * g / cf.total_w);
				}
			params[7] = poison[p];
			if (cf_check(&cf, params, 0, r))
				caught++;
			else
				fprintf(stderr, "job: checkers: %s in round %d went through\n",
				        names[p], r);
			cf_free(&cf);
		}
	printf("checkers: %d of 8 poisoned results refused\n", caught);
	return caught == 8 ? 0 : 1;
}

int main(int argc, char **argv)
{
	ragg_ctx_t *ctx;
	int rc, status;
	if (argc == 2 && strcmp(argv[1], "checkers") == 0)
		return checkers();
	if (argc < 2) {
		fprintf(stderr, "usage: job exact ROUNDS [COUNT...] | codec ROUNDS | replicas ROUNDS | inplace ROUNDS | rounds N | "
		                "mismatch | slow N MS | poison R W | settings NAME VALUE | "
		                "checkers\n");
		return 2;
	}
	if (strcmp(argv[1], "settings") == 0 && argc == 4)
		return settings_refused(argv[2], argv[3]);
	/* Every process must end by itself, not be stopped by ragg-run. */
	if (strcmp(argv[1], "poison") == 0)
		signal(SIGTERM, SIG_IGN);
	if ((rc = ragg_init(NULL, &ctx)))
		return fail("init", rc);
	if (ragg_role(ctx) != RAGG_ROLE_WORKER) {
		rc = ragg_serve(ctx);
		if (ragg_role(ctx) == RAGG_ROLE_SERVER) {
			struct ragg_stats st = { .size = sizeof(st) };
			if (!ragg_stats(ctx, &st))
				printf("bytes sent server %d %llu\n", ragg_rank(ctx),
				       (unsigned long long)st.bytes_sent);
		}
		/* In the mismatch test the workers leave without a tensor; the
		 * goodbye still arrives. */
		report_rss(ctx);
		struct ragg_stats st = { .size = sizeof(st) };
		if (!ragg_stats(ctx, &st) && st.contributions_skipped)
			printf("skipped %s %d %llu\n", ragg_role(ctx) == RAGG_ROLE_AGENT ? "agent" : "server",
			       ragg_rank(ctx), (unsigned long long)st.contributions_skipped);
		int rc2 = ragg_finalize(ctx);
		if (rc)
			return fail("serve", rc);
		return rc2 ? fail("finalize", rc2) : 0;
	}
	if (strcmp(argv[1], "exact") == 0 && argc >= 3)
		status = exact(ctx, atoi(argv[2]), argc - 3, argv + 3);
	else if (strcmp(argv[1], "codec") == 0 && argc == 3)
		status = codec_mode(ctx, atoi(argv[2]));
	else if (strcmp(argv[1], "replicas") == 0 && argc == 3)
		status = replicas(ctx, atoi(argv[2]));
	else if (strcmp(argv[1], "inplace") == 0 && argc == 3)
		status = inplace(ctx, atoi(argv[2]));
	else if (strcmp(argv[1], "rounds") == 0 && argc == 3)
		status = run_rounds(ctx, atoi(argv[2]), 0);
	else if (strcmp(argv[1], "slow") == 0 && argc == 4)
		status = run_rounds(ctx, atoi(argv[2]), atoi(argv[3]));
	else if (strcmp(argv[1], "mismatch") == 0)
		status = mismatch(ctx);
	else if (strcmp(argv[1], "poison") == 0 && argc == 4)
		status = poison(ctx, atoi(argv[2]), atoi(argv[3]));
	else {
		fprintf(stderr, "job: unknown mode\n");
		status = 2;
	}
	report_rss(ctx);
	if ((rc = ragg_finalize(ctx)) && !status)
		status = fail("finalize", rc);
	free(after_finalize[0]);
	free(after_finalize[1]);
	return status;
}
