/*
 * Secure aggregation's building blocks: a whole masked round on plain
 * buffers (encode, pairwise and self masks, the integer sum, unmasking,
 * decoding), dropouts recovered through Shamir shares, and each piece.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "harness.h"
#include "plan.h"
#include "privacy/sa_mask.h"
#include "privacy/secagg.h"

#define MAXW 8

struct worker {
	uint8_t pk[RAGG_SA_PK_BYTES], sk[RAGG_SA_SK_BYTES];
	uint8_t self[RAGG_SA_SEED_BYTES], rnd[RAGG_SA_SEED_BYTES];
	float *g;
	double weight;
	uint32_t *masked;
};

static float frand(void)
{
	return (float)randombytes_uniform(2000001) / 1e6f - 1.0f; /* [-1, 1] */
}

static void setup(struct worker *w, int m, size_t n)
{
	RAGG_CHECK(sodium_init() >= 0);
	for (int i = 0; i < m; i++) {
		ragg__sa_keypair(w[i].pk, w[i].sk);
		randombytes_buf(w[i].self, sizeof(w[i].self));
		randombytes_buf(w[i].rnd, sizeof(w[i].rnd));
		w[i].g = malloc(n * sizeof(float));
		w[i].masked = malloc(n * sizeof(uint32_t));
		RAGG_CHECK(w[i].g && w[i].masked);
		w[i].weight = i + 1;
		for (size_t e = 0; e < n; e++)
			w[i].g[e] = frand() * (e % 17 == 0 ? 3.0f : 0.5f); /* some clipped */
	}
}

/* Worker i's masked input for the round at pos, masking with the workers
 * in nb (their ranks). */
static void worker_input(struct worker *w, int i, const int *nb, int nnb, size_t n, double range,
                         double scale, const struct ragg__sa_pos *pos)
{
	ragg__sa_encode(w[i].masked, w[i].g, n, w[i].weight, range, scale, w[i].rnd, pos);
	for (int q = 0; q < nnb; q++) {
		int j = nb[q];
		uint8_t seed[RAGG_SA_SEED_BYTES];
		RAGG_CHECK_OK(ragg__sa_pair_seed(seed, w[i].sk, w[i].pk, i, w[j].pk, j));
		ragg__sa_mask(w[i].masked, n, seed, pos, i < j ? 1 : -1);
	}
	ragg__sa_mask(w[i].masked, n, w[i].self, pos, 1);
}

static double clamp(double v, double r)
{
	return v < -r ? -r : v > r ? r : v;
}

/* The decoded sum of the workers in `alive` against their clipped plain
 * sum: within one rounding unit per worker (plus float rounding). */
static void check_sum(const float *got, struct worker *w, const int *alive, int nalive, size_t n,
                      double range, double scale)
{
	for (size_t e = 0; e < n; e++) {
		double want = 0;
		for (int q = 0; q < nalive; q++)
			want += clamp(w[alive[q]].weight * w[alive[q]].g[e], range);
		double bound = nalive / scale + 1e-6 * fabs(want);
		RAGG_CHECKF(fabs(got[e] - want) <= bound, "element %zu: %.9g, expected %.9g", e,
		            got[e], want);
	}
}

RAGG_TEST(masked_round_sums_exactly)
{
	enum { M = 5 };
	size_t n = 3 * 1024 + 13;
	struct worker w[M];
	struct ragg__sa_pos pos = { .tensor = 2, .chunk = 7, .round = 11 };
	double range = 4, scale = ragg__sa_scale(M, range);
	RAGG_CHECK(scale > 0 && M * (range * scale + 1) < 0x1p31);
	setup(w, M, n);
	for (int i = 0; i < M; i++) {
		int nb[M], nnb = ragg__sa_neighbours(M, M, i, nb);
		worker_input(w, i, nb, nnb, n, range, scale, &pos);
	}
	/* The agent: integer sum, then the self masks off. */
	const uint32_t *in[M];
	uint32_t *sum = malloc(n * sizeof(uint32_t));
	float *out = malloc(n * sizeof(float));
	RAGG_CHECK(sum && out);
	for (int i = 0; i < M; i++)
		in[i] = w[i].masked;
	ragg__sa_sum(sum, in, M, n);
	for (int i = 0; i < M; i++)
		ragg__sa_mask(sum, n, w[i].self, &pos, -1);
	ragg__sa_decode(out, sum, n, scale);
	int all[M] = { 0, 1, 2, 3, 4 };
	check_sum(out, w, all, M, n, range, scale);

	/* Without removing one self mask, the result is garbage. */
	ragg__sa_mask(sum, n, w[0].self, &pos, 1);
	ragg__sa_decode(out, sum, n, scale);
	size_t off = 0;
	for (size_t e = 0; e < n; e++) {
		double want = 0;
		for (int i = 0; i < M; i++)
			want += clamp(w[i].weight * w[i].g[e], range);
		off += fabs(out[e] - want) > 1;
	}
	RAGG_CHECKF(off > n * 9 / 10, "%zu of %zu elements off", off, n);
	free(sum);
	free(out);
}

/* A masked input says nothing of the plaintext: its correlation with the
 * worker's encoded values is at noise level, while the unmasked encoding
 * correlates perfectly. */
RAGG_TEST(masked_input_uncorrelated_with_plaintext)
{
	enum { M = 3 };
	size_t n = 1 << 16;
	struct worker w[M];
	struct ragg__sa_pos pos = { 0, 0, 0 };
	double range = 1, scale = ragg__sa_scale(M, range);
	setup(w, M, n);
	uint32_t *plain = malloc(n * sizeof(uint32_t));
	RAGG_CHECK(plain);
	ragg__sa_encode(plain, w[0].g, n, w[0].weight, range, scale, w[0].rnd, &pos);
	int nb[M], nnb = ragg__sa_neighbours(M, M, 0, nb);
	worker_input(w, 0, nb, nnb, n, range, scale, &pos);
	double rho[2];
	for (int v = 0; v < 2; v++) {
		const uint32_t *x = v ? w[0].masked : plain;
		double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0;
		for (size_t e = 0; e < n; e++) {
			double a = (int32_t)x[e], b = w[0].g[e];
			sa += a;
			sb += b;
			sab += a * b;
			saa += a * a;
			sbb += b * b;
		}
		double cov = sab / n - sa / n * sb / n;
		rho[v] = cov / sqrt((saa / n - sa / n * sa / n) * (sbb / n - sb / n * sb / n));
	}
	RAGG_CHECKF(rho[0] > 0.9, "plain encoding correlation %g", rho[0]);
	RAGG_CHECKF(fabs(rho[1]) < 5 / sqrt((double)n), "masked correlation %g", rho[1]);
	free(plain);
}

/* Worker 2 of 5 drops before its input lands: the agent rebuilds its
 * secret key from t = 3 shares held by survivors, recomputes the pairwise
 * seeds it had with them and removes those masks; the survivors' self
 * masks come from their shares too. The result is the survivors' sum. */
RAGG_TEST(dropout_unmasked_from_shares)
{
	enum { M = 5, T = 3, DROP = 2 };
	size_t n = 2048 + 5;
	struct worker w[M];
	struct ragg__sa_pos pos = { 1, 3, 5 };
	double range = 2, scale = ragg__sa_scale(M, range);
	setup(w, M, n);
	/* Every worker shares its secret key and self seed, t of m. */
	uint8_t sk_shares[M][M][RAGG_SA_SK_BYTES], self_shares[M][M][RAGG_SA_SEED_BYTES];
	for (int i = 0; i < M; i++) {
		RAGG_CHECK_OK(ragg__shamir_split(&sk_shares[i][0][0], w[i].sk, RAGG_SA_SK_BYTES, T, M));
		RAGG_CHECK_OK(
		    ragg__shamir_split(&self_shares[i][0][0], w[i].self, RAGG_SA_SEED_BYTES, T, M));
	}
	int alive[M - 1], na = 0;
	for (int i = 0; i < M; i++) {
		int nb[M], nnb = ragg__sa_neighbours(M, M, i, nb);
		if (i != DROP) {
			worker_input(w, i, nb, nnb, n, range, scale, &pos);
			alive[na++] = i;
		}
	}
	const uint32_t *in[M];
	for (int q = 0; q < na; q++)
		in[q] = w[alive[q]].masked;
	uint32_t *sum = malloc(n * sizeof(uint32_t));
	float *out = malloc(n * sizeof(float));
	RAGG_CHECK(sum && out);
	ragg__sa_sum(sum, in, na, n);

	/* Shares from survivors 0, 3, 4 (x = rank + 1). */
	const int from[T] = { 0, 3, 4 };
	uint8_t xs[T];
	const uint8_t *sh[T];
	uint8_t sk[RAGG_SA_SK_BYTES], pk[RAGG_SA_PK_BYTES];
	for (int k = 0; k < T; k++) {
		xs[k] = (uint8_t)(from[k] + 1);
		sh[k] = sk_shares[DROP][from[k]];
	}
	RAGG_CHECK_OK(ragg__shamir_combine(sk, sh, xs, T, RAGG_SA_SK_BYTES));
	RAGG_CHECK(sodium_memcmp(sk, w[DROP].sk, sizeof(sk)) == 0);
	crypto_scalarmult_base(pk, sk);
	for (int q = 0; q < na; q++) {
		int j = alive[q];
		uint8_t seed[RAGG_SA_SEED_BYTES];
		RAGG_CHECK_OK(ragg__sa_pair_seed(seed, sk, pk, DROP, w[j].pk, j));
		/* j added sign(j < DROP) * PRG(seed): take it away. */
		ragg__sa_mask(sum, n, seed, &pos, j < DROP ? -1 : 1);
	}
	for (int q = 0; q < na; q++) {
		int i = alive[q];
		uint8_t self[RAGG_SA_SEED_BYTES];
		for (int k = 0; k < T; k++)
			sh[k] = self_shares[i][from[k]];
		RAGG_CHECK_OK(ragg__shamir_combine(self, sh, xs, T, RAGG_SA_SEED_BYTES));
		ragg__sa_mask(sum, n, self, &pos, -1);
	}
	ragg__sa_decode(out, sum, n, scale);
	check_sum(out, w, alive, na, n, range, scale);
	free(sum);
	free(out);
}

RAGG_TEST(shamir_threshold)
{
	RAGG_CHECK(sodium_init() >= 0);
	uint8_t secret[32], shares[6][32], got[32];
	randombytes_buf(secret, sizeof(secret));
	RAGG_CHECK_OK(ragg__shamir_split(&shares[0][0], secret, 32, 4, 6));
	/* Every 4 of the 6 give the secret back. */
	int subsets = 0;
	for (int mask = 0; mask < 64; mask++) {
		if (__builtin_popcount(mask) != 4)
			continue;
		const uint8_t *sh[4];
		uint8_t xs[4];
		int k = 0;
		for (int i = 0; i < 6; i++)
			if (mask >> i & 1) {
				sh[k] = shares[i];
				xs[k++] = (uint8_t)(i + 1);
			}
		RAGG_CHECK_OK(ragg__shamir_combine(got, sh, xs, 4, 32));
		RAGG_CHECK(memcmp(got, secret, 32) == 0);
		subsets++;
	}
	RAGG_CHECK(subsets == 15);
	/* Three are not enough. */
	const uint8_t *sh3[3] = { shares[0], shares[2], shares[5] };
	uint8_t xs3[3] = { 1, 3, 6 };
	RAGG_CHECK_OK(ragg__shamir_combine(got, sh3, xs3, 3, 32));
	RAGG_CHECK(memcmp(got, secret, 32) != 0);
	/* Bad arguments. */
	uint8_t xs_dup[4] = { 1, 2, 2, 3 }, xs_zero[4] = { 0, 1, 2, 3 };
	const uint8_t *sh4[4] = { shares[0], shares[1], shares[1], shares[2] };
	RAGG_CHECK(ragg__shamir_combine(got, sh4, xs_dup, 4, 32) == -EINVAL);
	RAGG_CHECK(ragg__shamir_combine(got, sh4, xs_zero, 4, 32) == -EINVAL);
	RAGG_CHECK(ragg__shamir_split(&shares[0][0], secret, 32, 0, 6) == -EINVAL);
	RAGG_CHECK(ragg__shamir_split(&shares[0][0], secret, 32, 7, 6) == -EINVAL);
	/* t = 1: every share is the secret. */
	RAGG_CHECK_OK(ragg__shamir_split(&shares[0][0], secret, 32, 1, 3));
	RAGG_CHECK(memcmp(shares[2], secret, 32) == 0);
}

RAGG_TEST(pair_seeds_agree_and_low_order_refused)
{
	RAGG_CHECK(sodium_init() >= 0);
	uint8_t pa[32], sa[32], pb[32], sb[32], s1[32], s2[32], s3[32];
	ragg__sa_keypair(pa, sa);
	ragg__sa_keypair(pb, sb);
	RAGG_CHECK_OK(ragg__sa_pair_seed(s1, sa, pa, 0, pb, 1));
	RAGG_CHECK_OK(ragg__sa_pair_seed(s2, sb, pb, 1, pa, 0));
	RAGG_CHECK(memcmp(s1, s2, 32) == 0);
	/* A substituted key gives another seed. */
	uint8_t pc[32], sc[32];
	ragg__sa_keypair(pc, sc);
	RAGG_CHECK_OK(ragg__sa_pair_seed(s3, sa, pa, 0, pc, 1));
	RAGG_CHECK(memcmp(s1, s3, 32) != 0);
	uint8_t zero[32] = { 0 };
	RAGG_CHECK(ragg__sa_pair_seed(s3, sa, pa, 0, zero, 1) == -EINVAL);
}

RAGG_TEST(neighbour_graph_symmetric)
{
	for (int m = 2; m <= 40; m++)
		for (int k = 2; k <= m + 1; k += 2) {
			int nb[64], in[64][64] = { { 0 } };
			for (int i = 0; i < m; i++) {
				int c = ragg__sa_neighbours(m, k, i, nb);
				int want = k >= m - 1 ? m - 1 : k;
				RAGG_CHECKF(c == want, "m %d k %d i %d: %d neighbours", m, k, i, c);
				for (int q = 0; q < c; q++) {
					RAGG_CHECK(nb[q] != i && nb[q] >= 0 && nb[q] < m);
					RAGG_CHECK(q == 0 || nb[q] > nb[q - 1]);
					in[i][nb[q]] = 1;
				}
			}
			for (int i = 0; i < m; i++)
				for (int j = 0; j < m; j++)
					RAGG_CHECK(in[i][j] == in[j][i]);
		}
}

/* Stochastic rounding is unbiased: 0.3 encoded over many positions
 * averages 0.3 * scale within 4 standard errors; clipping and NaN are
 * counted and bounded. */
RAGG_TEST(encoding_unbiased_and_clipped)
{
	RAGG_CHECK(sodium_init() >= 0);
	uint8_t key[32];
	randombytes_buf(key, sizeof(key));
	size_t n = 1 << 16;
	float *g = malloc(n * sizeof(float));
	uint32_t *q = malloc(n * sizeof(uint32_t));
	RAGG_CHECK(g && q);
	double scale = 1.0; /* one unit = 1: the rounding is visible */
	for (size_t e = 0; e < n; e++)
		g[e] = 0.3f;
	struct ragg__sa_pos pos = { 0, 0, 0 };
	RAGG_CHECK(ragg__sa_encode(q, g, n, 1, 10, scale, key, &pos) == 0);
	double s = 0;
	for (size_t e = 0; e < n; e++) {
		int32_t v = (int32_t)q[e];
		RAGG_CHECK(v == 0 || v == 1);
		s += v;
	}
	double mean = s / n, se = sqrt(0.3 * 0.7 / n);
	RAGG_CHECKF(fabs(mean - (double)0.3f) < 4 * se, "mean %g", mean);
	g[0] = 100;
	g[1] = -100;
	g[2] = NAN;
	g[3] = INFINITY;
	RAGG_CHECK(ragg__sa_encode(q, g, 8, 1, 10, 4, key, &pos) == 4);
	RAGG_CHECK((int32_t)q[0] == 40 && (int32_t)q[1] == -40 && (int32_t)q[2] == 0 &&
	           (int32_t)q[3] == 40);
	/* The scale keeps m sums of clipped values inside int32. */
	RAGG_CHECK(ragg__sa_scale(1000, 1) > 0 && 1000 * (1 * ragg__sa_scale(1000, 1) + 1) < 0x1p31);
	RAGG_CHECK(ragg__sa_scale(0, 1) == 0 && ragg__sa_scale(4, 0) == 0 &&
	           ragg__sa_scale(4, INFINITY) == 0 && ragg__sa_scale(4, 1e30) == 0);
	free(g);
	free(q);
}

/* The vector kernels give, bit for bit, what the scalar loops give:
 * encodings of awkward sizes, offsets, weights and values (NaN, infinities,
 * the range's edges, -0, a scale that leaves int32), masks of both signs,
 * and sums of 1 to 9 inputs, in place too. */
RAGG_TEST(vector_kernels_match_scalar)
{
	RAGG_CHECK(sodium_init() >= 0);
	if (!ragg__sa_have_avx2())
		RAGG_SKIP("no AVX2 on this CPU: only the scalar loops run");
	static const size_t sizes[] = { 1, 3, 4, 5, 31, 33, 1023, 1025, 4099, 9001 };
	static const double weights[] = { 1, 3, -2.5, 0, 1e-30, 7.77, 1048576 };
	static const double ranges[] = { 10, 64, 0.001 };
	const size_t N = 9001;
	float *g = malloc(N * sizeof(float));
	uint32_t *a = malloc(N * sizeof(uint32_t)), *b = malloc(N * sizeof(uint32_t));
	uint32_t *in[9];
	RAGG_CHECK(g && a && b);
	for (size_t e = 0; e < N; e++) {
		uint32_t r = randombytes_random();
		if (e % 5 == 0)
			memcpy(&g[e], &r, sizeof(float)); /* any bits: NaN, inf, tiny, huge */
		else
			g[e] = (float)((int32_t)r * 1e-8);
	}
	static const float edge[] = { NAN, INFINITY, -INFINITY, -0.0f, 10, -10, 64, -64, 0.001f };
	memcpy(g, edge, sizeof(edge));
	uint8_t key[32];
	randombytes_buf(key, sizeof(key));
	struct ragg__sa_pos pos = { 3, 1, 7 };
	int cases = 0;
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		size_t n = sizes[si];
		for (size_t wi = 0; wi < sizeof(weights) / sizeof(weights[0]); wi++)
			for (size_t ri = 0; ri < sizeof(ranges) / sizeof(ranges[0]); ri++) {
				double sc = ri == 2 ? 0x1p40 : ragg__sa_scale(4, ranges[ri]);
				size_t first = (si % 3) * RAGG_SA_BLOCK_ALIGN;
				ragg__sa_force_scalar(true);
				size_t c1 = ragg__sa_encode_at(a, g, n, weights[wi], ranges[ri], sc,
				                               key, &pos, first);
				ragg__sa_force_scalar(false);
				size_t c2 = ragg__sa_encode_at(b, g, n, weights[wi], ranges[ri], sc,
				                               key, &pos, first);
				RAGG_CHECKF(c1 == c2 && memcmp(a, b, n * sizeof(uint32_t)) == 0,
				            "encode n %zu weight %g range %g: differs", n, weights[wi],
				            ranges[ri]);
				cases++;
			}
		for (int sign = -1; sign <= 1; sign += 2) {
			ragg__sa_force_scalar(true);
			ragg__sa_mask_at(a, n, key, &pos, sign, RAGG_SA_BLOCK_ALIGN);
			ragg__sa_force_scalar(false);
			ragg__sa_mask_at(b, n, key, &pos, sign, RAGG_SA_BLOCK_ALIGN);
			RAGG_CHECKF(memcmp(a, b, n * sizeof(uint32_t)) == 0, "mask n %zu sign %d", n,
			            sign);
		}
	}
	for (int j = 0; j < 9; j++) {
		in[j] = malloc(N * sizeof(uint32_t));
		RAGG_CHECK(in[j]);
		randombytes_buf(in[j], N * sizeof(uint32_t));
	}
	for (int k = 1; k <= 9; k++)
		for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
			size_t n = sizes[si];
			ragg__sa_force_scalar(true);
			ragg__sa_sum(a, (const uint32_t *const *)in, k, n);
			ragg__sa_force_scalar(false);
			ragg__sa_sum(b, (const uint32_t *const *)in, k, n);
			RAGG_CHECKF(memcmp(a, b, n * sizeof(uint32_t)) == 0, "sum k %d n %zu", k, n);
			/* In place: out is in[0]. */
			memcpy(b, in[0], n * sizeof(uint32_t));
			uint32_t *keep = in[0];
			in[0] = b;
			ragg__sa_sum(b, (const uint32_t *const *)in, k, n);
			in[0] = keep;
			RAGG_CHECKF(memcmp(a, b, n * sizeof(uint32_t)) == 0, "in-place sum k %d n %zu",
			            k, n);
		}
	RAGG_CHECK(cases == 210);
	for (int j = 0; j < 9; j++)
		free(in[j]);
	free(g);
	free(a);
	free(b);
}

/* A worker's tensor encoded and masked over 1, 2, 3 and 8 threads (and
 * "auto") gives, bit for bit, what the block loop on one thread gives:
 * chunks of an awkward size, the last one short, blocks cut mid-chunk
 * between threads. */
RAGG_TEST(tensor_mask_threads_match)
{
	RAGG_CHECK(sodium_init() >= 0);
	const int M = 5, ME = 2;
	struct ragg__plan pl;
	size_t count = 3 * 300007 + 1234; /* 4 chunks, 74 blocks each at most */
	RAGG_CHECK_OK(ragg__plan_init(&pl, count, 300007 * sizeof(float), 1));
	RAGG_CHECK(pl.nchunks == 4);
	float *g = malloc(count * sizeof(float));
	uint32_t *want = malloc(count * sizeof(uint32_t)), *got = malloc(count * sizeof(uint32_t));
	RAGG_CHECK(g && want && got);
	for (size_t e = 0; e < count; e++)
		g[e] = frand() * 3;
	uint8_t rnd[32], self[32], pair[5][RAGG_SA_SEED_BYTES];
	bool masks[5] = { true, true, false, true, true };
	randombytes_buf(rnd, sizeof(rnd));
	randombytes_buf(self, sizeof(self));
	randombytes_buf(pair, sizeof(pair));
	double scale = ragg__sa_scale(M, 2.5);
	size_t want_clipped = 0;
	for (size_t c = 0; c < pl.nchunks; c++) {
		struct ragg__sa_pos pos = { 7, (uint32_t)c, 11 };
		size_t first = c * pl.chunk_elems, n = ragg__plan_chunk_elems(&pl, c);
		want_clipped += ragg__sa_encode(want + first, g + first, n, 1.5, 2.5, scale, rnd, &pos);
		ragg__sa_mask(want + first, n, self, &pos, 1);
		for (int j = 0; j < M; j++)
			if (masks[j])
				ragg__sa_mask(want + first, n, pair[j], &pos, j > ME ? 1 : -1);
	}
	RAGG_CHECK(want_clipped > 0);
	static const long threads[] = { 0, 1, 2, 3, 8, -1 };
	for (size_t i = 0; i < sizeof(threads) / sizeof(threads[0]); i++) {
		struct ragg__sa_mask_args a = {
			.enc = got, .grad = g, .plan = &pl, .weight = 1.5, .range = 2.5,
			.scale = scale, .rounding = rnd, .self = self,
			.pair = (const uint8_t(*)[RAGG_SA_SEED_BYTES])pair, .masks = masks,
			.m = M, .me = ME, .tensor = 7, .round = 11, .threads = threads[i],
		};
		memset(got, 0xa5, count * sizeof(uint32_t));
		size_t clipped = ragg__sa_mask_tensor(&a);
		RAGG_CHECKF(clipped == want_clipped && memcmp(got, want, count * sizeof(uint32_t)) == 0,
		            "%ld threads: differs", threads[i]);
	}
	/* A push's way: one pool for every job, each chunk checked as soon
	 * as it is said masked (the rest still under way), twice over. */
	struct ragg__sa_pool *pool = NULL;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < sizeof(threads) / sizeof(threads[0]); i++) {
			struct ragg__sa_mask_args a = {
				.enc = got, .grad = g, .plan = &pl, .weight = 1.5, .range = 2.5,
				.scale = scale, .rounding = rnd, .self = self,
				.pair = (const uint8_t(*)[RAGG_SA_SEED_BYTES])pair, .masks = masks,
				.m = M, .me = ME, .tensor = 7, .round = 11, .threads = threads[i],
			};
			uint8_t copy[32];
			memcpy(copy, self, sizeof(copy));
			a.self = copy;
			memset(got, 0xa5, count * sizeof(uint32_t));
			RAGG_CHECK_OK(ragg__sa_mask_start(&pool, &a));
			/* The job keeps its own copy of the self seed. */
			memset(copy, 0, sizeof(copy));
			RAGG_CHECK(ragg__sa_mask_start(&pool, &a) == -EBUSY);
			for (size_t c = 0; c < pl.nchunks; c++) {
				size_t first = c * pl.chunk_elems, n = ragg__plan_chunk_elems(&pl, c);
				RAGG_CHECK_OK(ragg__sa_mask_wait_chunk(pool, c, 10000));
				RAGG_CHECKF(memcmp(got + first, want + first, n * sizeof(uint32_t)) == 0,
				            "pool, %ld threads: chunk %zu differs", threads[i], c);
			}
			size_t clipped = 0;
			RAGG_CHECK_OK(ragg__sa_mask_end(pool, 10000, &clipped));
			RAGG_CHECKF(clipped == want_clipped &&
			                memcmp(got, want, count * sizeof(uint32_t)) == 0,
			            "pool, %ld threads: differs", threads[i]);
		}
	RAGG_CHECK_OK(ragg__sa_pool_free(pool, 10000));
	free(g);
	free(want);
	free(got);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
