/*
 * MPI_Allreduce (sum, float) of several model sizes in one launch, the peer
 * figure for scripts/bench compare. Arguments: BYTES:ROUNDS[:WARMUP] (warm-up
 * rounds, untimed: 3 unless given). Rank 0
 * prints, per size,
 *   mpi: ranks=P bytes=B rounds=R median_ms=M min_ms=N
 * Every round starts after a barrier; rank 0 times the allreduce alone.
 * Built by scripts/bench with mpicc.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

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
		int rounds = 20, warmup = 3;
		if (*end == ':') {
			rounds = (int)strtol(end + 1, &end, 10);
			if (*end == ':')
				warmup = (int)strtol(end + 1, &end, 10);
		}
		size_t n = bytes / sizeof(float);
		if (n == 0 || rounds < 1 || warmup < 0 || *end) {
			if (rank == 0)
				fprintf(stderr, "mpi_sizes: \"%s\": want BYTES:ROUNDS[:WARMUP]\n",
				        argv[a]);
			MPI_Abort(MPI_COMM_WORLD, 2);
		}
		float *in = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
		double *t = calloc((size_t)rounds, sizeof(double));
		if (!in || !out || !t)
			MPI_Abort(MPI_COMM_WORLD, 1);
		for (size_t i = 0; i < n; i++)
			in[i] = (float)(i % 7) * 0.25f;
		for (int r = -warmup; r < rounds; r++) {
			MPI_Barrier(MPI_COMM_WORLD);
			double t0 = MPI_Wtime();
			MPI_Allreduce(in, out, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
			if (r >= 0)
				t[r] = (MPI_Wtime() - t0) * 1e3;
		}
		/* The sum is checked, so that a broken run is not a fast one. */
		float want = (float)size * (float)((n - 1) % 7) * 0.25f;
		if (out[n - 1] != want) {
			fprintf(stderr, "mpi_sizes: rank %d: sum %g, want %g\n", rank, out[n - 1], want);
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
		qsort(t, (size_t)rounds, sizeof(double), cmp);
		if (rank == 0)
			printf("mpi: ranks=%d bytes=%zu rounds=%d median_ms=%.3f min_ms=%.3f\n", size,
			       bytes, rounds, t[rounds / 2], t[0]);
		fflush(stdout);
		free(in);
		free(out);
		free(t);
	}
	MPI_Finalize();
	return 0;
}
