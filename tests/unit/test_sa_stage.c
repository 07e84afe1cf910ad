/*
 * Secure aggregation's agent stage (stages/secagg.c) on plain buffers, no
 * transport: workers' contributions masked as a worker masks them
 * (privacy/sa_job.c), their records in slot memory laid out by the plan;
 * the stage's decoded sum must be the sum of the clipped weighted inputs
 * within m / scale per element, and its N the sum of the weights.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "engine/engine.h"
#include "harness.h"
#include "plan.h"
#include "privacy/sa_job.h"
#include "stages/stage.h"

#define M 4
#define N 5003

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Run the stage over M masked workers; neighbours k (0: all); `tamper`
 * corrupts worker 1's self seed in its record after it masked. Returns the
 * largest error beyond the bound (0: within), and N's error in *nerr. */
static double masked_round(int k, int tamper, double *nerr)
{
	struct ragg__plan pl;
	RAGG_CHECK(ragg__plan_init(&pl, N, 1 << 20, 1) == 0);
	pl.secagg = true;
	const double range = 8;
	double scale = ragg__sa_scale(M, range);
	uint8_t pair[M][M][RAGG_SA_SEED_BYTES], rnd[M][RAGG_SA_SEED_BYTES];
	static float g[M][N];
	static uint32_t x[M][N];
	static float out[N];
	uint8_t *slot[M];
	double w[M], want_n = 0;
	uint64_t round = 7;
	int parity = 1;
	for (int i = 0; i < M; i++)
		for (int j = i + 1; j < M; j++) {
			randombytes_buf(pair[i][j], RAGG_SA_SEED_BYTES);
			memcpy(pair[j][i], pair[i][j], RAGG_SA_SEED_BYTES);
		}
	for (int i = 0; i < M; i++) {
		int nb[M], nn = ragg__sa_neighbours(M, k ? k : M, i, nb);
		bool masks[M] = { false };
		for (int j = 0; j < nn; j++)
			masks[nb[j]] = true;
		slot[i] = calloc(1, ragg__plan_worker_slot_bytes(&pl));
		RAGG_CHECK(slot[i] != NULL);
		uint8_t *rec = slot[i] + ragg__plan_worker_sa_off(&pl, parity);
		uint8_t *self = rec + RAGG_SA_REC_SEED;
		randombytes_buf(self, RAGG_SA_SEED_BYTES);
		randombytes_buf(rnd[i], RAGG_SA_SEED_BYTES);
		w[i] = 1.5 + 0.37 * i;
		want_n += w[i];
		for (size_t e = 0; e < N; e++)
			g[i][e] = (float)(sin(0.01 * (double)e * (i + 1)) * (e % 101 == 3 ? 40 : 2));
		struct ragg__sa_pos pos = { .tensor = 3, .chunk = 0, .round = round };
		ragg__sa_encode(x[i], g[i], N, w[i], range, scale, rnd[i], &pos);
		ragg__sa_mask(x[i], N, self, &pos, 1);
		uint64_t wq = (uint64_t)llround(w[i] * RAGG_SA_WEIGHT_SCALE) +
		              ragg__sa_weight_mask(self, 3, round);
		for (int j = 0; j < M; j++) {
			if (!masks[j])
				continue;
			ragg__sa_mask(x[i], N, pair[i][j], &pos, j > i ? 1 : -1);
			uint64_t km = ragg__sa_weight_mask(pair[i][j], 3, round);
			wq = j > i ? wq + km : wq - km;
		}
		put64(rec + RAGG_SA_REC_WEIGHT, wq);
		if (tamper && i == 1)
			self[0] ^= 1;
	}
	struct ragg__sa_tensor sa = {
		.range = range, .scale = scale, .m = M,
		.slot = (const uint8_t **)slot, .plan = &pl,
	};
	const float *in[M];
	float wts[M] = { 0 };
	for (int i = 0; i < M; i++)
		in[i] = (const float *)x[i];
	struct ragg__stage_ctx c = {
		.k = ragg__kernels_get("scalar"),
		.in = in,
		.w = wts,
		.nin = M,
		.out = out,
		.n = N,
		.arg = &sa,
		.tensor = 3,
		.chunk = 0,
		.round = round,
		.parity = parity,
	};
	ragg__stage_secagg.run(&c);
	RAGG_CHECK(c.has_total);
	*nerr = fabs(c.total - want_n);
	double beyond = 0;
	for (size_t e = 0; e < N; e++) {
		double sum = 0;
		for (int i = 0; i < M; i++)
			sum += fmax(-range, fmin(range, w[i] * g[i][e]));
		double err = fabs((double)out[e] - sum);
		double bound = M / scale + fabs(sum) * 0x1p-23;
		if (err > bound)
			beyond = fmax(beyond, err - bound);
	}
	for (int i = 0; i < M; i++)
		free(slot[i]);
	return beyond;
}

RAGG_TEST(sum_decoded_within_bound)
{
	double nerr;
	RAGG_CHECK(sodium_init() >= 0);
	double b = masked_round(0, 0, &nerr);
	RAGG_CHECKF(b == 0, "beyond the bound by %g", b);
	RAGG_CHECKF(nerr <= M * 0x1p-25, "N off by %g", nerr);
}

RAGG_TEST(sum_decoded_with_neighbours)
{
	double nerr;
	RAGG_CHECK(sodium_init() >= 0);
	double b = masked_round(2, 0, &nerr);
	RAGG_CHECKF(b == 0, "beyond the bound by %g", b);
	RAGG_CHECKF(nerr <= M * 0x1p-25, "N off by %g", nerr);
}

/* A wrong self seed in one record leaves its mask in: the sum is garbage. */
RAGG_TEST(wrong_self_seed_shows)
{
	double nerr;
	RAGG_CHECK(sodium_init() >= 0);
	double b = masked_round(0, 1, &nerr);
	RAGG_CHECKF(b > 1, "a tampered seed went unnoticed (beyond by %g)", b);
	RAGG_CHECKF(nerr > 1, "a tampered seed left N right (off by %g)", nerr);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
