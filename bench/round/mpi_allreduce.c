/*
 * The peer figure for ragg-round: MPI_Allreduce (sum) of an fp32 buffer, as
 * Open MPI runs it on one node (shared memory). Rank 0 prints
 *   mpi: ranks=P bytes=B rounds=R median_ms=M min_ms=N
 * Built by scripts/bench with mpicc when Open MPI is installed.
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
	size_t bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : 16u << 20;
	int rounds = argc > 2 ? atoi(argv[2]) : 20, warmup = 3;
	size_t n = bytes / sizeof(float);
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
	qsort(t, (size_t)rounds, sizeof(double), cmp);
	if (rank == 0)
		printf("mpi: ranks=%d bytes=%zu rounds=%d median_ms=%.3f min_ms=%.3f\n", size,
		       bytes, rounds, t[rounds / 2], t[0]);
	free(in);
	free(out);
	free(t);
	MPI_Finalize();
	return 0;
}
