/*
 * Workers that leave a running job (RAGG_ON_WORKER_LOSS), started by
 * ragg-run in tests/integration/run.sh. Agents and servers serve and print
 * how that ended; workers run one of:
 *
 *   leave R W N MS  worker W finalizes after R rounds; the others go on
 *                   for up to N rounds, MS ms apart, and must fail. Every
 *                   process prints "leave: ROLE RANK failed with CODE at
 *                   T" (T: CLOCK_REALTIME in ms), W "leave: worker W
 *                   finalized at T" just before its ragg_finalize
 *   continue R K MS RAGG_ON_WORKER_LOSS=continue and SGD: R rounds, MS ms
 *                   apart, of a model where worker i pushes g_i(j, r)
 *                   (small integers) with weight 1 + i % 2; worker K is
 *                   killed mid-job from outside (it creates
 *                   JOB_READY_FILE after its third round). After every
 *                   round each survivor checks every parameter against
 *                   the SGD step on the weighted mean with K and without
 *                   it: all of a round must match one of them, the rounds
 *                   with K must come first and there must be both kinds.
 *                   It prints "continue: worker I ok, worker K counted in
 *                   rounds 1..A, not in A+1..R, ..."
 *   continue R K MS finalize
 *                   as continue, but worker K calls ragg_finalize after
 *                   its third round instead of being killed
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ragg/ragg.h>

static const char *const roles[] = { "none", "worker", "agent", "server" };

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int failed(ragg_ctx_t *ctx, const char *mode, int rc)
{
	printf("%s: %s %d failed with %s at %lld\n", mode, roles[ragg_role(ctx)], ragg_rank(ctx),
	       ragg_strerror_name(rc), now_ms());
	fflush(stdout);
	return 1;
}

#define N_ELEMS 5000 /* five chunks of 4 KiB */

static float grad_value(int i, size_t j, int r)
{
	return (float)((int)((j * 7 + (size_t)i * 3 + (size_t)r * 5) % 16) - 8);
}

static int leave(ragg_ctx_t *ctx, int rounds, int who, int max_rounds, int pause)
{
	static float params[N_ELEMS], grad[N_ELEMS];
	int me = ragg_rank(ctx), rc;
	ragg_tensor_t *t;
	if ((rc = ragg_tensor_declare(ctx, "leave", params, N_ELEMS, &t)))
		return failed(ctx, "leave", rc);
	for (int r = 1; r <= (me == who ? rounds : max_rounds); r++) {
		for (size_t j = 0; j < N_ELEMS; j++)
			grad[j] = grad_value(me, j, r);
		if ((rc = ragg_pushpull(t, grad, 1.0, params)))
			return failed(ctx, "leave", rc);
		sleep_ms(pause);
	}
	if (me == who) {
		printf("leave: worker %d finalized at %lld\n", me, now_ms());
		return 0;
	}
	printf("leave: worker %d finished %d rounds: nothing stopped it\n", me, max_rounds);
	return 1;
}

/* The SGD step of round r on element j from w: with worker `victim`'s
 * push, or without it. */
static double step(const struct ragg_opts *o, double w, size_t j, int r, int victim, bool with)
{
	double s = 0, n = 0;
	for (int i = 0; i < o->workers; i++)
		if (with || i != victim) {
			s += (1 + i % 2) * (double)grad_value(i, j, r);
			n += 1 + i % 2;
		}
	return w - o->lr * s / n;
}

static int cont(ragg_ctx_t *ctx, int rounds, int victim, int pause, bool finalize, bool join)
{
	int rejoin = 0;
	static float params[N_ELEMS], prev[N_ELEMS], grad[N_ELEMS];
	struct ragg_opts o = { .size = sizeof(o) };
	int me = ragg_rank(ctx), rc, last_with = 0, first_without = 0;
	double max_err = 0;
	ragg_tensor_t *t;
	if ((rc = ragg_ctx_opts(ctx, &o)))
		return failed(ctx, "continue", rc);
	for (size_t j = 0; j < N_ELEMS; j++)
		params[j] = me == 0 ? (float)(j % 5) : 1e6f;
	if ((rc = ragg_tensor_declare(ctx, "continue", params, N_ELEMS, &t)))
		return failed(ctx, "continue", rc);
	for (size_t j = 0; j < N_ELEMS; j++)
		if (params[j] != (float)(j % 5)) {
			printf("continue: worker %d: initial element %zu is %g\n", me, j,
			       (double)params[j]);
			return 1;
		}
	for (int r = 1; r <= rounds; r++) {
		for (size_t j = 0; j < N_ELEMS; j++)
			grad[j] = grad_value(me, j, r);
		memcpy(prev, params, sizeof(prev));
		if ((rc = ragg_pushpull(t, grad, 1 + me % 2, params)))
			return failed(ctx, "continue", rc);
		const char *jf = getenv("JOB_JOIN_FILE");
		if (join && me == 0 && r == 10 && jf) {
			FILE *f = fopen(jf, "w");
			if (f)
				fclose(f);
		}
		if (me == victim && r == 3 && finalize) {
			printf("continue: worker %d finalizes after round %d\n", me, r);
			return 0;
		}
		if (me == victim && r == 3) {
			const char *ready = getenv("JOB_READY_FILE");
			FILE *f = ready ? fopen(ready, "w") : NULL;
			if (f)
				fclose(f);
		}
		/* The step on the weighted mean with the victim and without it. */
		bool with = true, without = true;
		for (size_t j = 0; j < N_ELEMS; j++) {
			double s = 0, w = 0, sk = 0, wk = 0;
			for (int i = 0; i < o.workers; i++) {
				double n = 1 + i % 2, g = grad_value(i, j, r);
				s += n * g, w += n;
				if (i != victim)
					sk += n * g, wk += n;
			}
			double tol = 1e-5 + 1e-6 * fabs(prev[j]);
			double e1 = fabs(params[j] - (prev[j] - o.lr * s / w));
			double e2 = fabs(params[j] - (prev[j] - o.lr * sk / wk));
			with = with && e1 <= tol;
			without = without && e2 <= tol;
			max_err = fmax(max_err, fmin(e1, e2));
			if (!with && !without) {
				printf("continue: worker %d round %d element %zu: %.9g matches "
				       "neither "
				       "the step with worker %d (%.9g) nor the one without it "
				       "(%.9g)\n",
				       me, r, j, (double)params[j], victim, prev[j] - o.lr * s / w,
				       prev[j] - o.lr * sk / wk);
				return 1;
			}
		}
		if (with && !without && join && first_without && !rejoin)
			rejoin = r;
		if (with && !without && !rejoin) {
			if (first_without) {
				printf("continue: worker %d: worker %d counted in round %d after "
				       "it was "
				       "left out of round %d\n",
				       me, victim, r, first_without);
				return 1;
			}
			last_with = r;
		} else if (without && !with && !first_without)
			first_without = r;
		else if (without && !with && rejoin) {
			printf(
			    "continue: worker %d: worker %d left out of round %d after it joined "
			    "at round %d\n",
			    me, victim, r, rejoin);
			return 1;
		}
		sleep_ms(pause);
	}
	struct ragg_stats st = { .size = sizeof(st) };
	ragg_stats(ctx, &st);
	/* ragg_stats counts the declaration's broadcast as a round too. */
	if (st.rounds != (uint64_t)rounds + 1 || st.workers_lost < 1) {
		printf("continue: worker %d: ragg_stats says %llu rounds, %llu workers lost\n", me,
		       (unsigned long long)st.rounds, (unsigned long long)st.workers_lost);
		return 1;
	}
	if (!first_without || last_with < 3 || first_without != last_with + 1) {
		printf("continue: worker %d: worker %d counted up to round %d, left out from round "
		       "%d: not a job that lost it mid-way\n",
		       me, victim, last_with, first_without);
		return 1;
	}
	if (join && !rejoin) {
		printf("continue: worker %d: worker %d never joined again\n", me, victim);
		return 1;
	}
	if (join)
		printf("continue: worker %d ok, worker %d counted in rounds 1..%d, not in %d..%d, "
		       "counted again in %d..%d, workers_lost=%llu, largest error %.3g\n",
		       me, victim, last_with, first_without, rejoin - 1, rejoin, rounds,
		       (unsigned long long)st.workers_lost, max_err);
	else
		printf("continue: worker %d ok, worker %d counted in rounds 1..%d, not in %d..%d, "
		       "workers_lost=%llu, largest error %.3g\n",
		       me, victim, last_with, first_without, rounds,
		       (unsigned long long)st.workers_lost, max_err);
	return 0;
}

/* join R K MS: take worker K's rank in the running job (it left after its
 * third round), check that the parameters it gets are the job's after some
 * round m (with K in rounds 1..3, without it after), then push rounds m+1
 * to R and check each against the step with every worker. */
static int join_job(ragg_ctx_t *ctx, int rounds, int pause)
{
	static float params[N_ELEMS], prev[N_ELEMS], grad[N_ELEMS];
	static double traj[N_ELEMS];
	struct ragg_opts o = { .size = sizeof(o) };
	int me = ragg_rank(ctx), rc, at = 0;
	ragg_tensor_t *t;
	if ((rc = ragg_ctx_opts(ctx, &o)))
		return failed(ctx, "join", rc);
	for (size_t j = 0; j < N_ELEMS; j++)
		params[j] = 1e6f, traj[j] = (double)(j % 5);
	if ((rc = ragg_tensor_declare(ctx, "continue", params, N_ELEMS, &t)))
		return failed(ctx, "join", rc);
	for (int m = 1; m < rounds && !at; m++) {
		bool match = m >= 3;
		for (size_t j = 0; j < N_ELEMS; j++) {
			traj[j] = step(&o, traj[j], j, m, me, m <= 3);
			match = match && fabs(params[j] - traj[j]) <= 1e-3 + 1e-5 * fabs(traj[j]);
		}
		if (match)
			at = m + 1;
	}
	if (!at) {
		printf("join: worker %d: the parameters it got are the job's after no round\n", me);
		return 1;
	}
	for (int r = at; r <= rounds; r++) {
		for (size_t j = 0; j < N_ELEMS; j++)
			grad[j] = grad_value(me, j, r);
		memcpy(prev, params, sizeof(prev));
		if ((rc = ragg_pushpull(t, grad, 1 + me % 2, params)))
			return failed(ctx, "join", rc);
		for (size_t j = 0; j < N_ELEMS; j++) {
			double want = step(&o, prev[j], j, r, me, true);
			if (fabs(params[j] - want) > 1e-5 + 1e-6 * fabs(prev[j])) {
				printf("join: worker %d round %d element %zu: %.9g, expected %.9g "
				       "(the step "
				       "with its push)\n",
				       me, r, j, (double)params[j], want);
				return 1;
			}
		}
		sleep_ms(pause);
	}
	printf("join: worker %d joined at round %d with the job's parameters after round %d; "
	       "rounds %d..%d ok\n",
	       me, at, at - 1, at, rounds);
	return 0;
}

int main(int argc, char **argv)
{
	ragg_ctx_t *ctx;
	int rc, status;
	bool is_leave = argc == 6 && strcmp(argv[1], "leave") == 0;
	bool is_cont =
	    (argc == 5 ||
	     (argc == 6 && (strcmp(argv[5], "finalize") == 0 || strcmp(argv[5], "join") == 0))) &&
	    strcmp(argv[1], "continue") == 0;
	bool is_join = argc == 5 && strcmp(argv[1], "join") == 0;
	if (!is_leave && !is_cont && !is_join) {
		fprintf(stderr, "usage: elastic leave R W N MS | continue R K MS [finalize|join] | "
		                "join R K MS\n");
		return 2;
	}
	const char *mode = argv[1];
	/* Every process must end by itself, not be stopped by ragg-run. */
	if (is_leave)
		signal(SIGTERM, SIG_IGN);
	if ((rc = ragg_init(NULL, &ctx))) {
		printf("%s: init failed with %s at %lld\n", mode, ragg_strerror_name(rc), now_ms());
		return 1;
	}
	if (ragg_role(ctx) != RAGG_ROLE_WORKER) {
		rc = ragg_serve(ctx);
		struct ragg_stats st = { .size = sizeof(st) };
		ragg_stats(ctx, &st);
		if (rc)
			status = failed(ctx, mode, rc);
		else {
			printf("%s: %s %d served, workers_lost=%llu\n", mode, roles[ragg_role(ctx)],
			       ragg_rank(ctx), (unsigned long long)st.workers_lost);
			status = 0;
		}
		rc = ragg_finalize(ctx);
		return status ? status : rc != 0;
	}
	if (is_leave)
		status = leave(ctx, atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	else if (is_join)
		status = join_job(ctx, atoi(argv[2]), atoi(argv[4]));
	else
		status = cont(ctx, atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), argc == 6,
		              argc == 6 && strcmp(argv[5], "join") == 0);
	int me = ragg_rank(ctx);
	rc = ragg_finalize(ctx);
	if (rc && !status) {
		printf("%s: worker %d failed with %s at %lld\n", mode, me, ragg_strerror_name(rc),
		       now_ms());
		status = 1;
	}
	return status;
}
