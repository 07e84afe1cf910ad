/*
 * ragg-round: time the whole round (push -> aggregate -> update -> pull) of
 * an fp32 model, the figure to set beside an allreduce of the same size.
 * Start it with ragg-run; worker 0 prints
 *   round: transport=T workers=W bytes=B rounds=R median_ms=M min_ms=N
 * Usage: ragg-round [-b BYTES] [-r ROUNDS] [-w WARMUP] [-M]
 * Parameters and gradients live in ragg_mem_alloc() memory, which same-host
 * agents read and write in place; -M puts them in malloc() memory instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ragg/ragg.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	size_t bytes = 16u << 20;
	int rounds = 20, warmup = 3, plain = 0, c, rc;
	while ((c = getopt(argc, argv, "b:r:w:M")) != -1) {
		switch (c) {
		case 'b':
			bytes = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		case 'w':
			warmup = atoi(optarg);
			break;
		case 'M':
			plain = 1;
			break;
		default:
			fprintf(stderr, "usage: ragg-round [-b BYTES] [-r ROUNDS] [-w WARMUP] [-M]\n");
			return 2;
		}
	}
	size_t n = bytes / sizeof(float);
	if (n == 0 || rounds < 1 || warmup < 0)
		return 2;
	ragg_ctx_t *ctx;
	if ((rc = ragg_init(NULL, &ctx))) {
		fprintf(stderr, "ragg-round: init: %s\n", ragg_strerror(rc));
		return 1;
	}
	if (ragg_role(ctx) != RAGG_ROLE_WORKER) {
		rc = ragg_serve(ctx);
		if (rc)
			fprintf(stderr, "ragg-round: serve: %s\n", ragg_strerror(rc));
		return ragg_finalize(ctx) || rc ? 1 : 0;
	}
	float *params, *grad;
	if (plain) {
		params = calloc(n, sizeof(float));
		grad = malloc(n * sizeof(float));
	} else {
		params = ragg_mem_alloc(ctx, n * sizeof(float));
		grad = ragg_mem_alloc(ctx, n * sizeof(float));
	}
	double *t = calloc((size_t)rounds, sizeof(double));
	ragg_tensor_t *tensor;
	if (!params || !grad || !t)
		return 1;
	for (size_t i = 0; i < n; i++)
		grad[i] = (float)(i % 7) * 0.25f;
	if ((rc = ragg_tensor_declare(ctx, "model", params, n, &tensor))) {
		fprintf(stderr, "ragg-round: declare: %s\n", ragg_strerror(rc));
		return 1;
	}
	struct ragg_stats s0 = { .size = sizeof(s0) }, s1 = { .size = sizeof(s1) };
	for (int r = -warmup; r < rounds; r++) {
		if (r == 0)
			ragg_stats(ctx, &s0);
		double t0 = now_ms();
		if ((rc = ragg_pushpull(tensor, grad, 1.0, params))) {
			fprintf(stderr, "ragg-round: round: %s\n", ragg_strerror(rc));
			return 1;
		}
		if (r >= 0)
			t[r] = now_ms() - t0;
	}
	ragg_stats(ctx, &s1);
	qsort(t, (size_t)rounds, sizeof(double), cmp);
	if (ragg_rank(ctx) == 0) {
		const char *w = getenv("RAGG_WORKERS");
		/* What a worker's pushes carried: the tensor when copied, only
		 * the weight when the agent read the gradient in place. */
		printf("round: transport=%s workers=%s memory=%s bytes=%zu rounds=%d "
		       "median_ms=%.3f min_ms=%.3f sent_per_round=%.0f\n",
		       ragg_transport_name(ctx), w ? w : "1", plain ? "malloc" : "ragg", bytes,
		       rounds, t[rounds / 2], t[0],
		       (double)(s1.bytes_sent - s0.bytes_sent) / rounds);
	}
	if (plain) {
		free(params);
		free(grad);
	}
	free(t);
	return ragg_finalize(ctx) ? 1 : 0;
}
