/*
 * A job one worker aborts, started by ragg-run in tests/integration/run.sh
 * (abort_reason_reaches_peers):
 *
 *   abortjob W R REASON
 *
 * Rounds of a small model (JOB_COUNT floats, default 20000); worker W
 * calls ragg_abort(ctx, REASON) after its round R, the others go on with
 * rounds until a call fails. Every process prints, at its end,
 *
 *   abortjob: ROLE RANK CODE at MS
 *
 * with CODE the ragg_strerror_name of how its last call ended ("aborted"
 * for worker W, after ragg_abort returned 0) and MS the wall clock in
 * milliseconds, which the test compares with the abort's.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ragg/ragg.h>

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *role_name(ragg_ctx_t *ctx)
{
	static const char *const names[] = { "none", "worker", "agent", "server" };
	return names[ragg_role(ctx)];
}

int main(int argc, char **argv)
{
	ragg_ctx_t *ctx;
	int rc;
	if (argc != 4) {
		fprintf(stderr, "usage: abortjob WORKER ROUND REASON\n");
		return 2;
	}
	int culprit = atoi(argv[1]), at = atoi(argv[2]);
	/* Every process must end by itself, not be stopped by ragg-run. */
	signal(SIGTERM, SIG_IGN);
	if ((rc = ragg_init(NULL, &ctx))) {
		fprintf(stderr, "abortjob: init: %s\n", ragg_strerror_name(rc));
		return 1;
	}
	const char *role = role_name(ctx);
	int me = ragg_rank(ctx);
	if (ragg_role(ctx) != RAGG_ROLE_WORKER) {
		rc = ragg_serve(ctx);
		long long t = now_ms();
		int rc2 = ragg_finalize(ctx);
		printf("abortjob: %s %d %s at %lld (finalize %s)\n", role, me,
		       rc ? ragg_strerror_name(rc) : "ok", t, rc2 ? ragg_strerror_name(rc2) : "ok");
		return rc ? 1 : 0;
	}
	const char *count = getenv("JOB_COUNT");
	size_t n = count && *count ? strtoul(count, NULL, 10) : 20000;
	float *params = calloc(n, sizeof(float)), *grad = calloc(n, sizeof(float));
	ragg_tensor_t *tensor;
	if (!params || !grad || (rc = ragg_tensor_declare(ctx, "model", params, n, &tensor))) {
		fprintf(stderr, "abortjob: declare: %s\n", ragg_strerror_name(rc));
		return 1;
	}
	for (int r = 0; r < 1000000; r++) {
		for (size_t j = 0; j < n; j++)
			grad[j] = (float)((j + (size_t)r) % 3);
		if (me == culprit && r == at) {
			long long t = now_ms();
			rc = ragg_abort(ctx, argv[3]);
			printf("abortjob: %s %d aborted at %lld (ragg_abort %s)\n", role, me, t,
			       rc ? ragg_strerror_name(rc) : "ok");
			free(params);
			free(grad);
			return rc ? 1 : 0;
		}
		if ((rc = ragg_pushpull(tensor, grad, 1.0, params)))
			break;
	}
	long long t = now_ms();
	int rc2 = ragg_finalize(ctx);
	printf("abortjob: %s %d %s at %lld (finalize %s)\n", role, me, ragg_strerror_name(rc), t,
	       rc2 ? ragg_strerror_name(rc2) : "ok");
	free(params);
	free(grad);
	return 1;
}
