/*
 * MPI_Allreduce (sum, float) of several model sizes in one launch, the peer
 * figure for scripts/bench compare. Arguments: BYTES:ROUNDS[:WARMUP[:SECONDS]]
 * (warm-up rounds, untimed: 3 unless given). SECONDS is a time box: the
 * warm-up ends after WARMUP rounds or SECONDS seconds (at least one round),
 * the timed rounds after ROUNDS rounds or SECONDS seconds (at least
 * min(ROUNDS, 3)), by rank 0's clock. Rank 0 prints, per size,
 *   mpi: ranks=P bytes=B rounds=R median_ms=M min_ms=N [warmup=W box_s=S]
 * Every round starts after a barrier (with a time box, an MPI_Allreduce of
 * rank 0's vote to stop, which is one); rank 0 times the allreduce alone.
 * Built by scripts/bench with mpicc.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

/* Whether the next round of a phase is run (see above); a barrier. */
static int go_on(int rank, int done, int min, int max, double box_s, double t0)
{
	if (done >= max)
		return 0;
	if (box_s <= 0) {
		MPI_Barrier(MPI_COMM_WORLD);
		return 1;
	}
	int stop = rank == 0 && done >= min && MPI_Wtime() - t0 >= box_s, all = 0;
	MPI_Allreduce(&stop, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	return !all;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int rank, size;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	for (int a = 1; a < argc; a++) {
		char *end;
		size_t bytes = strtoull(argv[a], &end, 0);
		int rounds = 20, warmup = 3, bad = 0;
		double box_s = 0;
		if (*end == ':') {
			rounds = (int)strtol(end + 1, &end, 10);
			if (*end == ':')
				warmup = (int)strtol(end + 1, &end, 10);
			if (*end == ':') {
				const char *b = end + 1;
				box_s = strtod(b, &end);
				bad = end == b || !(box_s > 0) || box_s > 86400;
			}
		}
		size_t n = bytes / sizeof(float);
		if (n == 0 || rounds < 1 || warmup < 0 || bad || *end) {
			if (rank == 0)
				fprintf(stderr,
				        "mpi_sizes: \"%s\": want BYTES:ROUNDS[:WARMUP[:SECONDS]]\n",
				        argv[a]);
			MPI_Abort(MPI_COMM_WORLD, 2);
		}
		float *in = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
		double *t = calloc((size_t)rounds, sizeof(double));
		if (!in || !out || !t)
			MPI_Abort(MPI_COMM_WORLD, 1);
		for (size_t i = 0; i < n; i++)
			in[i] = (float)(i % 7) * 0.25f;
		int warm = 0, done = 0;
		double p0 = MPI_Wtime();
		while (go_on(rank, warm, 1, warmup, box_s, p0)) {
			MPI_Allreduce(in, out, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
			warm++;
		}
		int min = rounds < 3 ? rounds : 3;
		p0 = MPI_Wtime();
		while (go_on(rank, done, min, rounds, box_s, p0)) {
			double t0 = MPI_Wtime();
			MPI_Allreduce(in, out, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
			t[done++] = (MPI_Wtime() - t0) * 1e3;
		}
		/* The sum is checked, so that a broken run is not a fast one. */
		float want = (float)size * (float)((n - 1) % 7) * 0.25f;
		if (out[n - 1] != want) {
			fprintf(stderr, "mpi_sizes: rank %d: sum %g, want %g\n", rank, out[n - 1], want);
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
		qsort(t, (size_t)done, sizeof(double), cmp);
		if (rank == 0) {
			printf("mpi: ranks=%d bytes=%zu rounds=%d median_ms=%.3f min_ms=%.3f", size,
			       bytes, done, t[done / 2], t[0]);
			if (box_s > 0)
				printf(" warmup=%d box_s=%g", warm, box_s);
			printf("\n");
		}
		fflush(stdout);
		free(in);
		free(out);
		free(t);
	}
	MPI_Finalize();
	return 0;
}
