#include <errno.h>
#include <math.h>
#include <string.h>

#include <sodium.h>

#include "privacy/secagg.h"

/* Keystream words of ChaCha20 (XChaCha20: a 24-byte nonce names the
 * position and the use, a 64-bit block counter) in blocks of BLOCK_WORDS. */
#define BLOCK_WORDS 1024
static const uint8_t zeros[BLOCK_WORDS * 4];

enum { USE_MASK = 1, USE_ROUNDING = 2 };

static void nonce_of(uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES],
                     const struct ragg__sa_pos *pos, uint8_t use)
{
	memset(nonce, 0, crypto_stream_xchacha20_NONCEBYTES);
	for (int i = 0; i < 4; i++) {
		nonce[i] = (uint8_t)(pos->tensor >> (8 * i));
		nonce[4 + i] = (uint8_t)(pos->chunk >> (8 * i));
	}
	for (int i = 0; i < 8; i++)
		nonce[8 + i] = (uint8_t)(pos->round >> (8 * i));
	nonce[16] = use;
}

/* Words [64/4 * block, ...) of the keystream into buf (little-endian
 * words on every host). */
static void keystream(uint32_t *buf, size_t words, const uint8_t *nonce, uint64_t block,
                      const uint8_t key[32])
{
	crypto_stream_xchacha20_xor_ic((uint8_t *)buf, zeros, words * 4, nonce, block, key);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	for (size_t i = 0; i < words; i++)
		buf[i] = __builtin_bswap32(buf[i]);
#endif
}

double ragg__sa_scale(int m, double range)
{
	if (m < 1 || !(range > 0) || !isfinite(range))
		return 0;
	/* m * (range * s + 1) < 2^31  <=>  s < (2^31 / m - 1) / range */
	double limit = (0x1p31 / m - 1) / range;
	if (!(limit > 0))
		return 0;
	double s = exp2(floor(log2(limit)));
	if (s >= limit)
		s /= 2;
	return s >= 0x1p-60 ? s : 0;
}

/* The vector kernels unless ragg__sa_force_scalar says otherwise. */
static int force_scalar;

void ragg__sa_force_scalar(bool on)
{
	__atomic_store_n(&force_scalar, on, __ATOMIC_RELAXED);
}

static bool vector(void)
{
	return !__atomic_load_n(&force_scalar, __ATOMIC_RELAXED) && ragg__sa_have_avx2();
}

size_t ragg__sa_encode_scalar(uint32_t *out, const float *in, const uint32_t *u, size_t n,
                              double weight, double range, double scale)
{
	size_t clipped = 0;
	for (size_t i = 0; i < n; i++) {
		double v = weight * in[i];
		if (!(v >= -range && v <= range)) {
			clipped++;
			v = isnan(v) ? 0 : v < 0 ? -range : range;
		}
		/* floor(y + U), U uniform in [0, 1): E = y. */
		double q = floor(v * scale + u[i] * 0x1p-32);
		out[i] = (uint32_t)(int64_t)q;
	}
	return clipped;
}

size_t ragg__sa_encode(uint32_t *out, const float *in, size_t n, double weight, double range,
                       double scale, const uint8_t key[RAGG_SA_SEED_BYTES],
                       const struct ragg__sa_pos *pos)
{
	return ragg__sa_encode_at(out, in, n, weight, range, scale, key, pos, 0);
}

size_t ragg__sa_encode_at(uint32_t *out, const float *in, size_t n, double weight, double range,
                          double scale, const uint8_t key[RAGG_SA_SEED_BYTES],
                          const struct ragg__sa_pos *pos, size_t first)
{
	uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES];
	uint32_t u[BLOCK_WORDS];
	size_t clipped = 0;
	nonce_of(nonce, pos, USE_ROUNDING);
	for (size_t done = 0; done < n; done += BLOCK_WORDS) {
		size_t m = n - done < BLOCK_WORDS ? n - done : BLOCK_WORDS;
		keystream(u, m, nonce, (first + done) / 16, key);
		clipped += vector()
		               ? ragg__sa_encode_avx2(out + done, in + done, u, m, weight, range, scale)
		               : ragg__sa_encode_scalar(out + done, in + done, u, m, weight, range, scale);
	}
	sodium_memzero(u, sizeof(u));
	return clipped;
}

void ragg__sa_mask(uint32_t *x, size_t n, const uint8_t seed[RAGG_SA_SEED_BYTES],
                   const struct ragg__sa_pos *pos, int sign)
{
	ragg__sa_mask_at(x, n, seed, pos, sign, 0);
}

void ragg__sa_mask_at(uint32_t *x, size_t n, const uint8_t seed[RAGG_SA_SEED_BYTES],
                      const struct ragg__sa_pos *pos, int sign, size_t first)
{
	uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES];
	uint32_t k[BLOCK_WORDS];
	nonce_of(nonce, pos, USE_MASK);
	for (size_t done = 0; done < n; done += BLOCK_WORDS) {
		size_t m = n - done < BLOCK_WORDS ? n - done : BLOCK_WORDS;
		keystream(k, m, nonce, (first + done) / 16, seed);
		uint32_t *y = x + done;
		if (vector())
			ragg__sa_add_avx2(y, k, m, sign);
		else if (sign > 0)
			for (size_t i = 0; i < m; i++)
				y[i] += k[i];
		else
			for (size_t i = 0; i < m; i++)
				y[i] -= k[i];
	}
	sodium_memzero(k, sizeof(k));
}

void ragg__sa_sum(uint32_t *out, const uint32_t *const *in, int k, size_t n)
{
	if (vector()) {
		ragg__sa_sum_avx2(out, in, k, n);
		return;
	}
	const uint32_t *first = in[0];
	for (size_t i = 0; i < n; i++) {
		uint32_t s = first[i];
		for (int j = 1; j < k; j++)
			s += in[j][i];
		out[i] = s;
	}
}

void ragg__sa_decode(float *out, const uint32_t *sum, size_t n, double scale)
{
	double inv = 1 / scale;
	for (size_t i = 0; i < n; i++)
		out[i] = (float)((double)(int32_t)sum[i] * inv);
}

void ragg__sa_keypair(uint8_t pk[RAGG_SA_PK_BYTES], uint8_t sk[RAGG_SA_SK_BYTES])
{
	randombytes_buf(sk, RAGG_SA_SK_BYTES);
	crypto_scalarmult_base(pk, sk);
}

int ragg__sa_pair_seed(uint8_t seed[RAGG_SA_SEED_BYTES], const uint8_t my_sk[RAGG_SA_SK_BYTES],
                       const uint8_t my_pk[RAGG_SA_PK_BYTES], int me,
                       const uint8_t peer_pk[RAGG_SA_PK_BYTES], int peer)
{
	uint8_t shared[crypto_scalarmult_BYTES];
	crypto_generichash_state h;
	if (crypto_scalarmult(shared, my_sk, peer_pk) != 0)
		return -EINVAL;
	const uint8_t *lo = me < peer ? my_pk : peer_pk, *hi = me < peer ? peer_pk : my_pk;
	static const uint8_t label[] = "ragg secagg pair seed";
	crypto_generichash_init(&h, NULL, 0, RAGG_SA_SEED_BYTES);
	crypto_generichash_update(&h, label, sizeof(label));
	crypto_generichash_update(&h, shared, sizeof(shared));
	crypto_generichash_update(&h, lo, RAGG_SA_PK_BYTES);
	crypto_generichash_update(&h, hi, RAGG_SA_PK_BYTES);
	crypto_generichash_final(&h, seed, RAGG_SA_SEED_BYTES);
	sodium_memzero(shared, sizeof(shared));
	return 0;
}

/* GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1, in constant
 * time (no tables, no data-dependent branches). */
static uint8_t gf_mul(uint8_t a, uint8_t b)
{
	uint8_t p = 0;
	for (int i = 0; i < 8; i++) {
		p ^= (uint8_t)(-(b & 1) & a);
		uint8_t hi = (uint8_t)-(a >> 7);
		a = (uint8_t)((a << 1) ^ (hi & 0x1b));
		b >>= 1;
	}
	return p;
}

/* a^254 = a^-1 (0 for 0). */
static uint8_t gf_inv(uint8_t a)
{
	uint8_t r = 1, x = a;
	for (int e = 254; e; e >>= 1) {
		if (e & 1)
			r = gf_mul(r, x);
		x = gf_mul(x, x);
	}
	return r;
}

int ragg__shamir_split(uint8_t *shares, const uint8_t *secret, size_t len, int t, int n)
{
	uint8_t coef[255];
	if (t < 1 || n < t || n > 255)
		return -EINVAL;
	for (size_t b = 0; b < len; b++) {
		coef[0] = secret[b];
		randombytes_buf(coef + 1, (size_t)t - 1);
		for (int k = 0; k < n; k++) {
			/* Horner at x = k + 1. */
			uint8_t x = (uint8_t)(k + 1), y = 0;
			for (int d = t - 1; d >= 0; d--)
				y = (uint8_t)(gf_mul(y, x) ^ coef[d]);
			shares[(size_t)k * len + b] = y;
		}
	}
	sodium_memzero(coef, sizeof(coef));
	return 0;
}

int ragg__shamir_combine(uint8_t *secret, const uint8_t *const *share, const uint8_t *xs, int t,
                         size_t len)
{
	uint8_t lambda[255];
	if (t < 1 || t > 255)
		return -EINVAL;
	/* Lagrange basis at 0: lambda_k = prod_{j != k} x_j / (x_j - x_k);
	 * in GF(2^8) subtraction is xor. */
	for (int k = 0; k < t; k++) {
		uint8_t num = 1, den = 1;
		if (!xs[k])
			return -EINVAL;
		for (int j = 0; j < t; j++) {
			if (j == k)
				continue;
			if (xs[j] == xs[k])
				return -EINVAL;
			num = gf_mul(num, xs[j]);
			den = gf_mul(den, (uint8_t)(xs[j] ^ xs[k]));
		}
		lambda[k] = gf_mul(num, gf_inv(den));
	}
	for (size_t b = 0; b < len; b++) {
		uint8_t s = 0;
		for (int k = 0; k < t; k++)
			s ^= gf_mul(lambda[k], share[k][b]);
		secret[b] = s;
	}
	return 0;
}

int ragg__sa_neighbours(int m, int k, int i, int *out)
{
	int n = 0;
	if (k >= m - 1) {
		for (int j = 0; j < m; j++)
			if (j != i)
				out[n++] = j;
		return n;
	}
	int half = k / 2;
	/* Ring distance 1..half on each side, then sorted. */
	for (int j = 0; j < m; j++) {
		int d = (j - i + m) % m;
		if (j != i && (d <= half || m - d <= half))
			out[n++] = j;
	}
	return n;
}
