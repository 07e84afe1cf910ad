/*
 * ragg-round: time the whole round (push -> aggregate -> update -> pull) of
 * an fp32 model, the figure to set beside an allreduce of the same size.
 * Start it with ragg-run; worker 0 prints
 *   round: transport=T workers=W bytes=B rounds=R median_ms=M min_ms=N ... cpu_ms=C
 * (C: worker 0's process CPU time, user and system, per timed round).
 * Usage: ragg-round [-b BYTES] [-r ROUNDS] [-w WARMUP] [-M]
 *                   [BYTES:ROUNDS[:WARMUP[:SECONDS]]...]
 * Parameters and gradients live in ragg_mem_alloc() memory, which same-host
 * agents read and write in place; -M puts them in malloc() memory instead.
 * With BYTES:ROUNDS[:WARMUP] arguments, one job times each of those sizes in
 * turn (one tensor each, all declared first; warm-up 3 unless given) and
 * prints one line per size, instead of the one size of -b, -r and -w: a
 * benchmark of several sizes then pays the job's start-up once.
 * SECONDS (a time box, e.g. 1.5) ends the warm-up after WARMUP rounds or
 * SECONDS seconds, whichever comes first (at least one round), and the timed
 * rounds after ROUNDS rounds or SECONDS seconds (at least min(ROUNDS, 3)),
 * as worker 0's clock says: before every round the workers agree through a
 * one-element control tensor (starting at zero, worker 0 pushes 1 to stop,
 * every worker stops when its parameter moves), so they all run the same
 * rounds. Without SECONDS there is no control tensor and no time box.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ragg/ragg.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* CPU time of this process, all its threads, user and system. */
static double cpu_ms(void)
{
	struct rusage u;
	if (getrusage(RUSAGE_SELF, &u) != 0)
		return 0;
	return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
	       (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

#define MAX_SIZES 16

struct size_run {
	size_t bytes;
	int rounds, warmup;
	double box_ms; /* time box of the warm-up and of the timed rounds; 0: none */
	float *params, *grad;
	ragg_tensor_t *tensor;
};

/* BYTES:ROUNDS[:WARMUP]; 0 when well formed. */
static int parse_spec(const char *a, struct size_run *z)
{
	char *end;
	z->bytes = strtoull(a, &end, 0);
	if (*end != ':')
		return -1;
	z->rounds = (int)strtol(end + 1, &end, 10);
	z->warmup = 3;
	z->box_ms = 0;
	if (*end == ':')
		z->warmup = (int)strtol(end + 1, &end, 10);
	if (*end == ':') {
		const char *b = end + 1;
		z->box_ms = strtod(b, &end) * 1e3;
		if (end == b || !(z->box_ms > 0) || z->box_ms > 86400e3)
			return -1;
	}
	return *end || z->bytes < sizeof(float) || z->rounds < 1 || z->warmup < 0 ? -1 : 0;
}

/* The time boxes' agreement: a one-element tensor, at zero until worker 0
 * asks to stop. */
struct control {
	ragg_tensor_t *tensor;
	float *param, *grad;
};

/* One agreement before a round: worker 0 votes `stop`, the others nothing;
 * returns 1 when every worker is to stop, 0 to go on, -1 on an error. */
static int agree(struct control *c, int rank, int stop)
{
	float before = c->param[0];
	c->grad[0] = rank == 0 && stop ? 1.0f : 0.0f;
	int rc = ragg_pushpull(c->tensor, c->grad, 1.0, c->param);
	if (rc) {
		fprintf(stderr, "ragg-round: control round: %s\n", ragg_strerror(rc));
		return -1;
	}
	return c->param[0] != before;
}

/* Whether the next round of a phase is run: not past `max` rounds, and
 * with a time box, not once worker 0 has spent `box_ms` since `t0` and done
 * `min` rounds. 1: run it, 0: the phase is over, -1: error. */
static int go_on(struct control *c, int rank, int done, int min, int max, double box_ms,
                 double t0)
{
	if (done >= max)
		return 0;
	if (box_ms <= 0)
		return 1;
	int stop = agree(c, rank, done >= min && now_ms() - t0 >= box_ms);
	return stop < 0 ? -1 : !stop;
}

int main(int argc, char **argv)
{
	size_t bytes = 16u << 20;
	int rounds = 20, warmup = 3, plain = 0, c, rc;
	struct size_run runs[MAX_SIZES];
	int nruns = 0;
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
			fprintf(stderr, "usage: ragg-round [-b BYTES] [-r ROUNDS] [-w WARMUP] [-M] "
			                "[BYTES:ROUNDS[:WARMUP[:SECONDS]]...]\n");
			return 2;
		}
	}
	for (; optind < argc; optind++) {
		if (nruns == MAX_SIZES || parse_spec(argv[optind], &runs[nruns])) {
			fprintf(stderr, "ragg-round: \"%s\": want BYTES:ROUNDS[:WARMUP[:SECONDS]] (at most %d)\n",
			        argv[optind], MAX_SIZES);
			return 2;
		}
		nruns++;
	}
	if (!nruns) {
		runs[0] = (struct size_run){ .bytes = bytes, .rounds = rounds, .warmup = warmup };
		nruns = 1;
	}
	for (int i = 0; i < nruns; i++)
		if (runs[i].bytes / sizeof(float) == 0 || runs[i].rounds < 1 || runs[i].warmup < 0)
			return 2;
	int boxed = 0;
	for (int i = 0; i < nruns; i++)
		boxed |= runs[i].box_ms > 0;
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
	/* Every tensor is declared before any round, in the same order on
	 * every worker (declare is collective). */
	for (int i = 0; i < nruns; i++) {
		struct size_run *z = &runs[i];
		size_t n = z->bytes / sizeof(float);
		char name[32];
		if (plain) {
			z->params = calloc(n, sizeof(float));
			z->grad = malloc(n * sizeof(float));
		} else {
			z->params = ragg_mem_alloc(ctx, n * sizeof(float));
			z->grad = ragg_mem_alloc(ctx, n * sizeof(float));
		}
		if (!z->params || !z->grad)
			return 1;
		for (size_t k = 0; k < n; k++)
			z->grad[k] = (float)(k % 7) * 0.25f;
		snprintf(name, sizeof(name), nruns == 1 ? "model" : "model%d", i);
		if ((rc = ragg_tensor_declare(ctx, name, z->params, n, &z->tensor))) {
			fprintf(stderr, "ragg-round: declare: %s\n", ragg_strerror(rc));
			return 1;
		}
	}
	/* Declared last, so that the models' names and order are as without
	 * a time box. */
	struct control ctl = { 0 };
	if (boxed) {
		ctl.param = plain ? calloc(1, sizeof(float)) : ragg_mem_alloc(ctx, sizeof(float));
		ctl.grad = plain ? malloc(sizeof(float)) : ragg_mem_alloc(ctx, sizeof(float));
		if (!ctl.param || !ctl.grad)
			return 1;
		ctl.param[0] = 0;
		if ((rc = ragg_tensor_declare(ctx, "control", ctl.param, 1, &ctl.tensor))) {
			fprintf(stderr, "ragg-round: declare: %s\n", ragg_strerror(rc));
			return 1;
		}
	}
	int rank = ragg_rank(ctx);
	for (int i = 0; i < nruns; i++) {
		struct size_run *z = &runs[i];
		double *t = calloc((size_t)z->rounds, sizeof(double));
		if (!t)
			return 1;
		struct ragg_stats s0 = { .size = sizeof(s0) }, s1 = { .size = sizeof(s1) };
		double cpu0 = 0;
		int warm = 0, n = 0, more;
		double p0 = now_ms();
		while ((more = go_on(&ctl, rank, warm, 1, z->warmup, z->box_ms, p0)) > 0) {
			if ((rc = ragg_pushpull(z->tensor, z->grad, 1.0, z->params))) {
				fprintf(stderr, "ragg-round: round: %s\n", ragg_strerror(rc));
				return 1;
			}
			warm++;
		}
		if (more < 0)
			return 1;
		ragg_stats(ctx, &s0);
		cpu0 = cpu_ms();
		p0 = now_ms();
		int min = z->rounds < 3 ? z->rounds : 3;
		while ((more = go_on(&ctl, rank, n, min, z->rounds, z->box_ms, p0)) > 0) {
			double t0 = now_ms();
			if ((rc = ragg_pushpull(z->tensor, z->grad, 1.0, z->params))) {
				fprintf(stderr, "ragg-round: round: %s\n", ragg_strerror(rc));
				return 1;
			}
			t[n++] = now_ms() - t0;
		}
		if (more < 0)
			return 1;
		ragg_stats(ctx, &s1);
		/* The control rounds are the time box's, not the round's: CPU
		 * time and bytes include them only with a time box. */
		double cpu = (cpu_ms() - cpu0) / n;
		qsort(t, (size_t)n, sizeof(double), cmp);
		if (rank == 0) {
			const char *w = getenv("RAGG_WORKERS");
			/* What a worker's pushes carried: the tensor when copied,
			 * only the weight when the agent read the gradient in
			 * place. */
			printf("round: transport=%s workers=%s memory=%s bytes=%zu rounds=%d "
			       "median_ms=%.3f min_ms=%.3f sent_per_round=%.0f cpu_ms=%.3f",
			       ragg_transport_name(ctx), w ? w : "1", plain ? "malloc" : "ragg",
			       z->bytes, n, t[n / 2], t[0], (double)(s1.bytes_sent - s0.bytes_sent) / n,
			       cpu);
			if (z->box_ms > 0)
				printf(" warmup=%d box_s=%g", warm, z->box_ms / 1e3);
			printf("\n");
			fflush(stdout);
		}
		free(t);
	}
	if (plain) {
		for (int i = 0; i < nruns; i++) {
			free(runs[i].params);
			free(runs[i].grad);
		}
		free(ctl.param);
		free(ctl.grad);
	}
	return ragg_finalize(ctx) ? 1 : 0;
}
