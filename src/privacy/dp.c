#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include <ragg/ragg.h>

#include "compiler.h"
#include "privacy/dp.h"

/* Opacus's default orders, then larger ones for small q and large T. */
const double ragg__dp_orders[RAGG_DP_NORDERS] = {
#define O10(a) a + 0.1, a + 0.2, a + 0.3, a + 0.4, a + 0.5, a + 0.6, a + 0.7, a + 0.8, a + 0.9
	O10(1.0), 2.0, O10(2.0), 3.0, O10(3.0), 4.0, O10(4.0), 5.0, O10(5.0), 6.0, O10(6.0), 7.0,
	O10(7.0), 8.0, O10(8.0), 9.0, O10(9.0), 10.0, O10(10.0),
#undef O10
	12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
	35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
	58, 59, 60, 61, 62, 63, 64, 80, 96, 128, 160, 192, 256,
};

/* log(exp(x) + exp(y)) */
static double log_add(double x, double y)
{
	double a = fmin(x, y), b = fmax(x, y);
	if (a == -INFINITY)
		return b;
	return log1p(exp(a - b)) + b;
}

/* log(erfc(x)), accurate where erfc underflows. */
static double log_erfc(double x)
{
	if (x < 26.0)
		return log(erfc(x));
	/* erfc(x) = exp(-x^2) / (x sqrt(pi)) * (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) ...) */
	double r = 1.0 / (x * x);
	return -x * x - log(x) - 0.5 * log(M_PI) +
	       log1p(-0.5 * r + 0.75 * r * r - 1.875 * r * r * r);
}

static double log_a_int(double q, double z, int a)
{
	double log_a = -INFINITY;
	for (int i = 0; i <= a; i++) {
		double log_coef = lgamma(a + 1.0) - lgamma(i + 1.0) - lgamma(a - i + 1.0) +
		                  i * log(q) + (a - i) * log1p(-q);
		log_a = log_add(log_a, log_coef + (i * (double)i - i) / (2 * z * z));
	}
	return log_a;
}

/* The i-th terms of the two halves of A_a's series at fractional a (the
 * integrals over (-inf, z0] and [z0, +inf)), in log space, given
 * log |binom(a, i)|. */
static void frac_terms(double q, double z, double a, double z0, int i, double log_coef,
                       double *log_s0, double *log_s1)
{
	double j = a - i;
	double log_t0 = log_coef + i * log(q) + j * log1p(-q);
	double log_t1 = log_coef + j * log(q) + i * log1p(-q);
	double log_e0 = log(0.5) + log_erfc((i - z0) / (M_SQRT2 * z));
	double log_e1 = log(0.5) + log_erfc((z0 - j) / (M_SQRT2 * z));
	*log_s0 = log_t0 + (i * (double)i - i) / (2 * z * z) + log_e0;
	*log_s1 = log_t1 + (j * j - j) / (2 * z * z) + log_e1;
}

/* For fractional a the binomial series has terms of both signs; their
 * absolute values are summed, which bounds A_a from above (so the RDP
 * reported is never below the true one), as Google's dp_accounting does
 * since 2023. The series stops once both halves' terms fall and are below
 * e^-30, or after 1000 terms. */
static double log_a_frac(double q, double z, double a)
{
	double log_a0 = -INFINITY, log_a1 = -INFINITY, last_s0 = -INFINITY, last_s1 = -INFINITY;
	double z0 = z * z * log(1 / q - 1) + 0.5;
	for (int i = 0; i < 1000; i++) {
		/* log |binom(a, i)|: lgamma is log |Gamma| at negative non-integers. */
		double log_s0, log_s1;
		frac_terms(q, z, a, z0, i, lgamma(a + 1) - lgamma(i + 1.0) - lgamma(a - i + 1),
		           &log_s0, &log_s1);
		log_a0 = log_add(log_a0, log_s0);
		log_a1 = log_add(log_a1, log_s1);
		if (log_s0 < last_s0 && log_s1 < last_s1 && fmax(log_s0, log_s1) < -30)
			break;
		last_s0 = log_s0;
		last_s1 = log_s1;
	}
	return log_add(log_a0, log_a1);
}

/* log(exp(x) - exp(y)), x >= y; -inf when they are equal (or x < y from
 * rounding in the alternating series). */
static double log_sub(double x, double y)
{
	if (y == -INFINITY)
		return x;
	if (x <= y)
		return -INFINITY;
	return log(expm1(x - y)) + y;
}

/* The same series with the terms' signs (Mironov et al.'s exact value, as
 * Opacus computes it): for comparison with published values only. */
static double log_a_frac_signed(double q, double z, double a)
{
	double log_a0 = -INFINITY, log_a1 = -INFINITY;
	double z0 = z * z * log(1 / q - 1) + 0.5;
	double log_coef = 0; /* log |binom(a, i)| */
	int sign = 1; /* sign of binom(a, i) */
	for (int i = 0; i < 1000; i++) {
		double j = a - i, log_s0, log_s1;
		frac_terms(q, z, a, z0, i, log_coef, &log_s0, &log_s1);
		if (sign > 0) {
			log_a0 = log_add(log_a0, log_s0);
			log_a1 = log_add(log_a1, log_s1);
		} else {
			log_a0 = log_sub(log_a0, log_s0);
			log_a1 = log_sub(log_a1, log_s1);
		}
		if (fmax(log_s0, log_s1) < -30 || j == 0)
			break;
		log_coef += log(fabs(j)) - log(i + 1.0);
		if (j < 0)
			sign = -sign;
	}
	return log_add(log_a0, log_a1);
}

static double rdp(double q, double z, double a, bool exact)
{
	if (q <= 0)
		return 0;
	if (!(z > 0) || isinf(a))
		return INFINITY;
	if (q >= 1)
		return a / (2 * z * z);
	double log_a = a == floor(a) && a < 1e6 ? log_a_int(q, z, (int)a)
	               : exact                  ? log_a_frac_signed(q, z, a)
	                                        : log_a_frac(q, z, a);
	return log_a / (a - 1);
}

double ragg__dp_rdp(double q, double z, double a)
{
	return rdp(q, z, a, false);
}

double ragg__dp_rdp_exact(double q, double z, double a)
{
	return rdp(q, z, a, true);
}

double ragg__dp_rdp_to_eps(const double *orders, const double *rdp, int n, double delta,
                           double *order)
{
	double best = INFINITY, best_order = NAN;
	bool none = true; /* no privacy loss at any order (q = 0) */
	for (int k = 0; k < n; k++)
		none = none && rdp[k] == 0;
	if (none) {
		if (order)
			*order = NAN;
		return 0;
	}
	for (int k = 0; k < n; k++) {
		double a = orders[k];
		if (!(a > 1) || isinf(rdp[k]) || isnan(rdp[k]))
			continue;
		double eps = rdp[k] - (log(delta) + log(a)) / (a - 1) + log((a - 1) / a);
		if (eps < best) {
			best = eps;
			best_order = a;
		}
	}
	if (order)
		*order = best_order;
	return best < 0 ? 0 : best;
}

void ragg__dp_accountant_init(struct ragg__dp_accountant *acc)
{
	memset(acc, 0, sizeof(*acc));
}

void ragg__dp_accountant_step(struct ragg__dp_accountant *acc, double q, double z)
{
	for (int k = 0; k < RAGG_DP_NORDERS; k++)
		acc->rdp[k] += ragg__dp_rdp(q, z, ragg__dp_orders[k]);
	acc->steps++;
}

double ragg__dp_accountant_eps(const struct ragg__dp_accountant *acc, double delta,
                               double *order)
{
	if (!acc->steps) {
		if (order)
			*order = NAN;
		return 0;
	}
	return ragg__dp_rdp_to_eps(ragg__dp_orders, acc->rdp, RAGG_DP_NORDERS, delta, order);
}

double ragg__dp_accountant_eps_after(const struct ragg__dp_accountant *acc, double q, double z,
                                     uint64_t steps, double delta)
{
	double rdp[RAGG_DP_NORDERS];
	for (int k = 0; k < RAGG_DP_NORDERS; k++)
		rdp[k] = acc->rdp[k] + (double)steps * ragg__dp_rdp(q, z, ragg__dp_orders[k]);
	if (!acc->steps && !steps)
		return 0;
	return ragg__dp_rdp_to_eps(ragg__dp_orders, rdp, RAGG_DP_NORDERS, delta, NULL);
}

int ragg__dp_sigma_classic(double eps, double delta, double sens, double *sigma)
{
	if (!(delta > 0 && delta < 1) || !(sens > 0) || !(eps > 0) || !isfinite(sens))
		return -EINVAL;
	if (!(eps < 1))
		return -EDOM;
	*sigma = sens * sqrt(2 * log(1.25 / delta)) / eps;
	return 0;
}

/* log Phi(x), the standard normal cdf. */
static double log_phi(double x)
{
	return log(0.5) + log_erfc(-x / M_SQRT2);
}

double ragg__dp_gaussian_delta(double eps, double sigma, double sens)
{
	/* Balle and Wang (2018), Theorem 8: the mechanism is (eps, delta)-DP
	 * iff delta >= Phi(D/(2s) - e s/D) - exp(e) Phi(-D/(2s) - e s/D). */
	double a = sens / (2 * sigma), b = eps * sigma / sens;
	double d = exp(log_phi(a - b)) - exp(eps + log_phi(-a - b));
	return d < 0 ? 0 : d;
}

int ragg__dp_sigma_analytic(double eps, double delta, double sens, double *sigma)
{
	if (!(delta > 0 && delta < 1) || !(sens > 0) || !(eps > 0) || !isfinite(eps) ||
	    !isfinite(sens))
		return -EINVAL;
	/* delta(sigma) falls as sigma grows: bracket, then bisect. */
	double lo = sens * 1e-6, hi = sens;
	while (ragg__dp_gaussian_delta(eps, hi, sens) > delta) {
		lo = hi;
		hi *= 2;
		if (hi > sens * 1e12)
			return -EDOM;
	}
	while (hi - lo > 1e-12 * hi) {
		double mid = 0.5 * (lo + hi);
		if (ragg__dp_gaussian_delta(eps, mid, sens) > delta)
			lo = mid;
		else
			hi = mid;
	}
	*sigma = hi;
	return 0;
}

/*
 * Ziggurat (Marsaglia and Tsang, 2000), 128 layers of equal area V under
 * f(x) = exp(-x^2 / 2). Layer 0 is the base: a rectangle of width r and
 * height f(r) plus the tail beyond r; layer i >= 1 spans heights
 * [f(x[i]), f(x[i+1])] with width x[i]. x[0] = V / f(r) is the width a
 * base of area V would have as a rectangle.
 *
 * One 32-bit word of the stream per deviate on the fast path: bits 0-6 the
 * layer i, bit 7 the sign, bits 8-31 a 24-bit uniform u; x = u 2^-24 x[i]
 * is accepted when u < k[i] = x[i+1] / x[i] 2^24 (97.2% of words). The
 * rest are marked and resolved after each block of the stream, in rounds
 * (resolve_slice): in a round every pending word takes the next two words
 * of a second stream of the same key and position, one the uniform of its
 * wedge test y < f(x) (32 bits), the other the fresh word that replaces it
 * when the test fails (a new draw of the whole ziggurat: accepted on the
 * fast path, or pending in the next round); the tail takes its uniforms
 * from a third stream. The streams' words thus go to fixed places whatever
 * the decisions, so the rounds run without branches on them, and the
 * scalar and vector paths, which differ only in how they find the fast
 * words, give the same deviates from the same key. The 24-bit resolution
 * is that of the float the noise is added to.
 *
 * The wedge test is first made against bounds of f (below), with exp only
 * between them; the decisions are exp's.
 */
#define ZIG_LAYERS 128
#define ZIG_R      3.442619855899
#define ZIG_V      9.91256303526217e-3
/* Words of the fast stream drawn per call to libsodium (16 KiB: in L1
 * with the floats made from them, consumed as they are made); the second
 * stream, which gives about 6 words per 100 fast ones, in 1 KiB; the
 * tail's (0.06% of the fast words take it), in 256 bytes. The rejected
 * words of a block are resolved ZIG_SLICE at a time. */
#define ZIG_WORDS      4096
#define ZIG_SLOW_WORDS 256
#define ZIG_TAIL_WORDS 64
#define ZIG_SLICE      256

static double zig_x[ZIG_LAYERS + 1], zig_f[ZIG_LAYERS + 1];
static double zig_h[ZIG_LAYERS]; /* e^dmax / 2 of layer i's wedge (below) */
static int32_t zig_k[ZIG_LAYERS];
static float zig_xs[ZIG_LAYERS]; /* x[i] 2^-24 */
static pthread_once_t zig_once = PTHREAD_ONCE_INIT;

static void zig_setup(void)
{
	double f_r = exp(-0.5 * ZIG_R * ZIG_R);
	zig_x[0] = ZIG_V / f_r;
	zig_x[1] = ZIG_R;
	for (int i = 1; i < ZIG_LAYERS; i++) {
		double y = exp(-0.5 * zig_x[i] * zig_x[i]) + ZIG_V / zig_x[i];
		zig_x[i + 1] = y >= 1 ? 0 : sqrt(-2 * log(y));
	}
	zig_x[ZIG_LAYERS] = 0;
	for (int i = 0; i <= ZIG_LAYERS; i++)
		zig_f[i] = exp(-0.5 * zig_x[i] * zig_x[i]);
	for (int i = 0; i < ZIG_LAYERS; i++) {
		zig_k[i] = (int32_t)floor(zig_x[i + 1] / zig_x[i] * 0x1p24);
		zig_xs[i] = (float)(zig_x[i] * 0x1p-24);
	}
	/* Layer i's wedge holds x in [a, b), a = k[i] 2^-24 x[i] (at most
	 * x[i+1]), b = x[i]; there f(x) = f(b) e^d with d = (b^2 - x^2) / 2 in
	 * [0, dmax], and 1 + d <= e^d <= 1 + d + d^2 e^dmax / 2 (Taylor with
	 * Lagrange's remainder), h rounded up. */
	for (int i = 1; i < ZIG_LAYERS; i++) {
		double b = zig_x[i], a = zig_k[i] * 0x1p-24 * b;
		zig_h[i] = 0.5 * exp(0.5 * (b - a) * (b + a)) * (1 + 1e-9);
	}
}

/* A ChaCha20 keystream (libsodium) read 32 bits at a time: XChaCha20 with
 * the 24-byte nonce below, its HChaCha20 subkey derived once. */
struct zig_stream {
	uint8_t subkey[crypto_core_hchacha20_OUTPUTBYTES];
	uint8_t nonce[crypto_stream_chacha20_NONCEBYTES];
	uint64_t block; /* next 64-byte block of the stream */
	unsigned pos, len, cap;
	uint32_t *buf; /* cap words */
};

static const uint8_t zero_block[ZIG_WORDS * sizeof(uint32_t)];

/* Stream `which` (0: the fast words, 1: the wedges' words, 2: the tail's
 * uniforms): XChaCha20 keyed by the agent's key with nonce tensor (4
 * bytes, little endian), chunk (4), round (8), which (1), zeros (7). */
static void stream_init(struct zig_stream *s, const struct ragg__dp_noise *nz, uint32_t tensor,
                        uint32_t chunk, uint64_t round, uint8_t which, uint32_t *buf,
                        unsigned cap)
{
	uint8_t xnonce[crypto_stream_xchacha20_NONCEBYTES];
	memset(xnonce, 0, sizeof(xnonce));
	for (int i = 0; i < 4; i++) {
		xnonce[i] = (uint8_t)(tensor >> (8 * i));
		xnonce[4 + i] = (uint8_t)(chunk >> (8 * i));
	}
	for (int i = 0; i < 8; i++)
		xnonce[8 + i] = (uint8_t)(round >> (8 * i));
	xnonce[16] = which;
	/* XChaCha20 = ChaCha20 keyed by HChaCha20(key, nonce[0..16)) with
	 * nonce[16..24) (as libsodium's crypto_stream_xchacha20 computes it). */
	crypto_core_hchacha20(s->subkey, xnonce, nz->key, NULL);
	memcpy(s->nonce, xnonce + 16, sizeof(s->nonce));
	s->block = 0;
	s->pos = s->len = 0;
	s->buf = buf;
	s->cap = cap;
}

/* The next `words` words (a multiple of 16, at most cap) into buf. */
static void stream_fill(struct zig_stream *s, unsigned words)
{
	crypto_stream_chacha20_xor_ic((uint8_t *)s->buf, zero_block, words * sizeof(uint32_t),
	                              s->nonce, s->block, s->subkey);
	s->block += words / 16;
	s->pos = 0;
	s->len = words;
}

static inline uint32_t stream_u32(struct zig_stream *s)
{
	if (ragg__unlikely(s->pos == s->len))
		stream_fill(s, s->cap);
	return s->buf[s->pos++];
}

static void stream_wipe(struct zig_stream *s)
{
	sodium_memzero(s->buf, s->cap * sizeof(uint32_t));
	sodium_memzero(s, sizeof(*s));
}

/* A uniform in (0, 1) from 53 bits of the stream, never 0. */
static inline double stream_unit(struct zig_stream *s)
{
	uint64_t hi = stream_u32(s), lo = stream_u32(s);
	return ((double)(((hi << 32) | lo) >> 11) + 0.5) * 0x1p-53;
}

/* |x| in the tail beyond r (Marsaglia, 1964). */
static double zig_tail(struct zig_stream *tail)
{
	double xx, yy;
	do {
		xx = -log(stream_unit(tail)) / ZIG_R;
		yy = -log(stream_unit(tail));
	} while (2 * yy < xx * xx);
	return ZIG_R + xx;
}

/* The deviates of the m <= ZIG_SLICE rejected words w[pos[j]] into val[j],
 * in rounds (see above); exact: exp decides every wedge (tests). */
static void resolve_slice(const uint32_t *w, const uint16_t *pos, size_t m, double *val,
                          struct zig_stream *slow, struct zig_stream *tail, bool exact)
{
	uint16_t idx[ZIG_SLICE];
	uint32_t wd[ZIG_SLICE];
	for (size_t j = 0; j < m; j++) {
		idx[j] = (uint16_t)j;
		wd[j] = w[pos[j]];
	}
	while (m) {
		size_t nn = 0;
		for (size_t j = 0; j < m; j++) {
			uint32_t v = wd[j], s0 = stream_u32(slow), s1 = stream_u32(slow);
			int i = (int)(v & 127);
			double sign = (v & 128) ? -1.0 : 1.0;
			double x = (int32_t)(v >> 8) * 0x1p-24 * zig_x[i];
			double y = zig_f[i] + (s0 + 0.5) * 0x1p-32 * (zig_f[i + 1] - zig_f[i]);
			/* y < f(x) = f(b) e^d (zig_setup): below f(b) (1 + d)
			 * accepted, above f(b) (1 + d + h d^2) rejected, each with
			 * a margin of 1e-12 f(b), far more than the rounding of
			 * these products and of exp (a few 1e-16 of f(b)), so that
			 * exp, which decides in between, would decide the same. */
			double b = zig_x[i], fb = zig_f[i], d = 0.5 * (b - x) * (b + x);
			bool acc = y < fb * (1 + d - 1e-12);
			bool amb = !acc & (y < fb * (1 + d + zig_h[i] * d * d + 1e-12));
			if (ragg__unlikely(i == 0)) {
				x = zig_tail(tail);
				acc = true;
			} else if (ragg__unlikely(amb | exact)) {
				acc = y < exp(-0.5 * x * x);
			}
			/* Rejected: the fresh word s1, accepted on the fast path
			 * or pending in the next round. */
			bool fast = (int32_t)(s1 >> 8) < zig_k[s1 & 127];
			double x1 = (s1 & 128 ? -1.0 : 1.0) * ((int32_t)(s1 >> 8) * 0x1p-24 *
			                                        zig_x[s1 & 127]);
			val[idx[j]] = acc ? sign * x : x1;
			idx[nn] = idx[j];
			wd[nn] = s1;
			nn += !acc & !fast;
		}
		m = nn;
	}
}

/* resolve_slice with 8 lanes of double (AVX-512): the same words in the
 * same places, the same arithmetic (the *_round_ intrinsics keep each
 * product and sum rounded on its own, as in the scalar code), the lanes
 * that need exp or the tail done in lane order, so the same deviates. */
#define RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
__attribute__((target("avx512f,avx512vl"))) static void
resolve_slice_avx512(const uint32_t *w, const uint16_t *pos, size_t m, double *val,
                     struct zig_stream *slow, struct zig_stream *tail, bool exact)
{
	uint32_t idx[ZIG_SLICE + 8], wd[ZIG_SLICE + 8], s0[ZIG_SLICE + 8], s1[ZIG_SLICE + 8];
	for (size_t j = 0; j < m; j++) {
		idx[j] = (uint32_t)j;
		wd[j] = w[pos[j]];
	}
	const __m256i m127 = _mm256_set1_epi32(127), zero = _mm256_setzero_si256();
	const __m512i sbit = _mm512_set1_epi64((long long)0x8000000000000000ull);
	const __m512d c24 = _mm512_set1_pd(0x1p-24), c32 = _mm512_set1_pd(0x1p-32),
	              half = _mm512_set1_pd(0.5), one = _mm512_set1_pd(1.0),
	              eps = _mm512_set1_pd(1e-12);
	while (m) {
		for (size_t j = 0; j < m; j++) {
			s0[j] = stream_u32(slow);
			s1[j] = stream_u32(slow);
		}
		size_t nn = 0;
		for (size_t j = 0; j < m; j += 8) {
			__mmask8 valid = m - j >= 8 ? 0xff : (__mmask8)((1u << (m - j)) - 1);
			__m256i v = _mm256_maskz_loadu_epi32(valid, wd + j);
			__m256i id = _mm256_maskz_loadu_epi32(valid, idx + j);
			__m256i a0 = _mm256_maskz_loadu_epi32(valid, s0 + j);
			__m256i a1 = _mm256_maskz_loadu_epi32(valid, s1 + j);
			__m256i li = _mm256_and_si256(v, m127);
			__m512d b = _mm512_i32gather_pd(li, zig_x, 8);
			__m512d fb = _mm512_i32gather_pd(li, zig_f, 8);
			__m512d f1 = _mm512_i32gather_pd(li, zig_f + 1, 8);
			__m512d h = _mm512_i32gather_pd(li, zig_h, 8);
			__m512d x = _mm512_mul_round_pd(
			    _mm512_mul_round_pd(_mm512_cvtepi32_pd(_mm256_srli_epi32(v, 8)), c24, RN), b,
			    RN);
			__m512d us = _mm512_mul_round_pd(
			    _mm512_add_round_pd(_mm512_cvtepu32_pd(a0), half, RN), c32, RN);
			__m512d y = _mm512_add_round_pd(
			    fb, _mm512_mul_round_pd(us, _mm512_sub_round_pd(f1, fb, RN), RN), RN);
			__m512d d = _mm512_mul_round_pd(
			    _mm512_mul_round_pd(half, _mm512_sub_round_pd(b, x, RN), RN),
			    _mm512_add_round_pd(b, x, RN), RN);
			__m512d od = _mm512_add_round_pd(one, d, RN);
			__m512d lo = _mm512_mul_round_pd(fb, _mm512_sub_round_pd(od, eps, RN), RN);
			__m512d hdd = _mm512_mul_round_pd(_mm512_mul_round_pd(h, d, RN), d, RN);
			__m512d hi = _mm512_mul_round_pd(
			    fb, _mm512_add_round_pd(_mm512_add_round_pd(od, hdd, RN), eps, RN), RN);
			__mmask8 acc = _mm512_mask_cmp_pd_mask(valid, y, lo, _CMP_LT_OQ);
			__mmask8 amb = (__mmask8)(_mm512_mask_cmp_pd_mask(valid, y, hi, _CMP_LT_OQ) & ~acc);
			__mmask8 tl = _mm256_mask_cmpeq_epi32_mask(valid, li, zero);
			__mmask8 slowl = exact ? valid : (__mmask8)(amb | tl);
			if (ragg__unlikely(slowl)) {
				double xs[8], ys[8];
				_mm512_storeu_pd(xs, x);
				_mm512_storeu_pd(ys, y);
				for (int l = 0; l < 8; l++) {
					if (!(slowl >> l & 1))
						continue;
					bool ok;
					if (tl >> l & 1) {
						xs[l] = zig_tail(tail);
						ok = true;
					} else {
						ok = ys[l] < exp(-0.5 * xs[l] * xs[l]);
					}
					acc = (__mmask8)(ok ? acc | 1u << l : acc & ~(1u << l));
				}
				x = _mm512_loadu_pd(xs);
			}
			/* sign * x: the sign bit of the word (bit 7) into bit 63. */
			__m512i sg = _mm512_slli_epi64(_mm512_cvtepu32_epi64(v), 56);
			x = _mm512_castsi512_pd(
			    _mm512_xor_si512(_mm512_castpd_si512(x), _mm512_and_si512(sg, sbit)));
			/* The fresh word. */
			__m256i l1 = _mm256_and_si256(a1, m127), u1 = _mm256_srli_epi32(a1, 8);
			__m256i k1 = _mm256_i32gather_epi32(zig_k, l1, 4);
			__mmask8 fast = _mm256_cmpgt_epi32_mask(k1, u1);
			__m512d x1 = _mm512_mul_round_pd(
			    _mm512_mul_round_pd(_mm512_cvtepi32_pd(u1), c24, RN),
			    _mm512_i32gather_pd(l1, zig_x, 8), RN);
			__m512i sg1 = _mm512_slli_epi64(_mm512_cvtepu32_epi64(a1), 56);
			x1 = _mm512_castsi512_pd(
			    _mm512_xor_si512(_mm512_castpd_si512(x1), _mm512_and_si512(sg1, sbit)));
			double vv[8];
			uint32_t ii[8];
			_mm512_storeu_pd(vv, _mm512_mask_blend_pd(acc, x1, x));
			_mm256_storeu_si256((__m256i *)ii, id);
			for (size_t l = 0; l < 8 && j + l < m; l++)
				val[ii[l]] = vv[l];
			__mmask8 pend = (__mmask8)(valid & ~acc & ~fast);
			_mm256_storeu_si256((__m256i *)(idx + nn), _mm256_maskz_compress_epi32(pend, id));
			_mm256_storeu_si256((__m256i *)(wd + nn), _mm256_maskz_compress_epi32(pend, a1));
			nn += (size_t)__builtin_popcount(pend);
		}
		m = nn;
	}
}
#undef RN

/* The rejected words of a block of n, marked by bit p of rej[p / 64],
 * resolved in order: out[p] = fma(sigma, deviate, out[p] or 0), or
 * dout[p] = deviate. */
static void resolve_marked(float *out, double *dout, const uint32_t *w, const uint64_t *rej,
                           size_t n, float sigma, struct zig_stream *slow,
                           struct zig_stream *tail, bool store, bool exact, bool v512)
{
	uint16_t pos[ZIG_SLICE];
	double val[ZIG_SLICE];
	size_t m = 0, g = 0, groups = (n + 63) / 64;
	uint64_t bits = groups ? rej[0] : 0;
	for (;;) {
		while (!bits && ++g < groups)
			bits = rej[g];
		bool end = !bits;
		if (!end) {
			pos[m++] = (uint16_t)(g * 64 + (size_t)__builtin_ctzll(bits));
			bits &= bits - 1;
		}
		if (m == ZIG_SLICE || (end && m)) {
			if (v512)
				resolve_slice_avx512(w, pos, m, val, slow, tail, exact);
			else
				resolve_slice(w, pos, m, val, slow, tail, exact);
			for (size_t j = 0; j < m; j++)
				if (out)
					out[pos[j]] = fmaf(sigma, (float)val[j],
					                   store ? 0.0f : out[pos[j]]);
				else
					dout[pos[j]] = val[j];
			m = 0;
		}
		if (end)
			break;
	}
}

/* The fast path's value of w as the vector path computes it, in float. */
static inline float zig_fast(uint32_t w)
{
	float x = (float)(w >> 8) * zig_xs[w & 127];
	return (w & 128) ? -x : x;
}

/* 8 lanes: the layer's k and x 2^-24 gathered, compared, the accepted
 * lanes written (a rejected lane keeps out's value) and the rejected ones
 * marked in rej (zeroed by the caller) for resolve_marked. Returns the
 * words done (a multiple of 8); n <= ZIG_WORDS. */
__attribute__((target("avx2,fma"))) static size_t add_avx2(float *out, size_t n,
                                                              const uint32_t *w, float sigma,
                                                              uint64_t *rej, bool store)
{
	const __m256i m127 = _mm256_set1_epi32(127), sbit = _mm256_set1_epi32((int)0x80000000u);
	const __m256 vs = _mm256_set1_ps(sigma);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i ww = _mm256_loadu_si256((const __m256i *)(w + i));
		__m256i idx = _mm256_and_si256(ww, m127);
		__m256i u = _mm256_srli_epi32(ww, 8);
		__m256i k = _mm256_i32gather_epi32(zig_k, idx, 4);
		__m256 xs = _mm256_i32gather_ps(zig_xs, idx, 4);
		__m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(u), xs);
		x = _mm256_xor_ps(x, _mm256_castsi256_ps(
		                         _mm256_and_si256(_mm256_slli_epi32(ww, 24), sbit)));
		__m256 acc = _mm256_castsi256_ps(_mm256_cmpgt_epi32(k, u));
		if (store) {
			_mm256_storeu_ps(out + i, _mm256_fmadd_ps(vs, x, _mm256_setzero_ps()));
		} else {
			__m256 o = _mm256_loadu_ps(out + i);
			_mm256_storeu_ps(out + i, _mm256_blendv_ps(o, _mm256_fmadd_ps(vs, x, o), acc));
		}
		rej[i / 64] |= (uint64_t)(_mm256_movemask_ps(acc) ^ 0xff) << (i % 64);
	}
	return i;
}

/* The same with 16 lanes; the 128-entry tables live in registers and are
 * read by permutes (vpermt2ps covers 32 entries, two blends pick among
 * four) instead of gathers. */
__attribute__((target("avx512f"))) static size_t add_avx512(float *out, size_t n,
                                                             const uint32_t *w, float sigma,
                                                             uint64_t *rej, bool store)
{
	__m512 xs[8];
	__m512i ks[8];
	for (int j = 0; j < 8; j++) {
		xs[j] = _mm512_loadu_ps(zig_xs + 16 * j);
		ks[j] = _mm512_loadu_si512((const void *)(zig_k + 16 * j));
	}
	const __m512i m127 = _mm512_set1_epi32(127), b5 = _mm512_set1_epi32(32),
	              b6 = _mm512_set1_epi32(64), sbit = _mm512_set1_epi32((int)0x80000000u);
	const __m512 vs = _mm512_set1_ps(sigma);
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512i ww = _mm512_loadu_si512((const void *)(w + i));
		__m512i idx = _mm512_and_si512(ww, m127);
		__mmask16 hi5 = _mm512_test_epi32_mask(ww, b5), hi6 = _mm512_test_epi32_mask(ww, b6);
		__m512 xlo = _mm512_mask_blend_ps(hi5, _mm512_permutex2var_ps(xs[0], idx, xs[1]),
		                                  _mm512_permutex2var_ps(xs[2], idx, xs[3]));
		__m512 xhi = _mm512_mask_blend_ps(hi5, _mm512_permutex2var_ps(xs[4], idx, xs[5]),
		                                  _mm512_permutex2var_ps(xs[6], idx, xs[7]));
		__m512 xsel = _mm512_mask_blend_ps(hi6, xlo, xhi);
		__m512i klo = _mm512_mask_blend_epi32(hi5, _mm512_permutex2var_epi32(ks[0], idx, ks[1]),
		                                      _mm512_permutex2var_epi32(ks[2], idx, ks[3]));
		__m512i khi = _mm512_mask_blend_epi32(hi5, _mm512_permutex2var_epi32(ks[4], idx, ks[5]),
		                                      _mm512_permutex2var_epi32(ks[6], idx, ks[7]));
		__m512i k = _mm512_mask_blend_epi32(hi6, klo, khi);
		__m512i u = _mm512_srli_epi32(ww, 8);
		__m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(u), xsel);
		x = _mm512_castsi512_ps(_mm512_xor_si512(
		    _mm512_castps_si512(x), _mm512_and_si512(_mm512_slli_epi32(ww, 24), sbit)));
		__mmask16 reject = _mm512_cmpge_epi32_mask(u, k);
		/* Every lane written when storing (the rejected ones are
		 * overwritten below); when adding, the accepted ones only. */
		if (store)
			_mm512_storeu_ps(out + i, _mm512_fmadd_ps(vs, x, _mm512_setzero_ps()));
		else
			_mm512_mask_storeu_ps(out + i, (__mmask16)~reject,
			                      _mm512_fmadd_ps(vs, x, _mm512_loadu_ps(out + i)));
		rej[i / 64] |= (uint64_t)reject << (i % 64);
	}
	return i;
}
/* Skylake-SP and its refreshes lower the clock after 512-bit code (see
 * engine/kernels.c): AVX2 there. */
static bool have_avx512(void)
{
	static int have = -1;
	int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
	if (h < 0) {
		__builtin_cpu_init();
		h = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
		    !__builtin_cpu_is("skylake-avx512") &&
		    !__builtin_cpu_is("cascadelake") && !__builtin_cpu_is("cooperlake");
		__atomic_store_n(&have, h, __ATOMIC_RELAXED);
	}
	return h;
}

static bool have_avx2(void)
{
	static int have = -1;
	int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
	if (h < 0) {
		__builtin_cpu_init();
		h = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
		__atomic_store_n(&have, h, __ATOMIC_RELAXED);
	}
	return h;
}

/* out[i] += sigma * N(0, 1), in float, or (dout) the deviates in double;
 * isa: 0 scalar, 1 AVX2 (when the CPU has it), 2 the best the CPU has,
 * -1 scalar with exp deciding every wedge (tests).
 * store: out is not read, out[i] = fma(sigma, N(0, 1), 0), the same floats
 * as adding to zeros. */
static void noise(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                  uint64_t round, float *out, double *dout, size_t n, float sigma, int isa,
                  bool store)
{
	struct zig_stream fast, slow, tail;
	uint32_t fast_buf[ZIG_WORDS], slow_buf[ZIG_SLOW_WORDS], tail_buf[ZIG_TAIL_WORDS];
	uint64_t rej[ZIG_WORDS / 64];
	pthread_once(&zig_once, zig_setup);
	stream_init(&fast, nz, tensor, chunk, round, 0, fast_buf, ZIG_WORDS);
	stream_init(&slow, nz, tensor, chunk, round, 1, slow_buf, ZIG_SLOW_WORDS);
	stream_init(&tail, nz, tensor, chunk, round, 2, tail_buf, ZIG_TAIL_WORDS);
	bool v512 = out && isa == 2 && have_avx512();
	bool vec = out && isa >= 1 && have_avx2();
	size_t done = 0;
	while (done < n) {
		size_t m = n - done < ZIG_WORDS ? n - done : ZIG_WORDS, i = 0;
		stream_fill(&fast, (unsigned)(m + 15) & ~15u);
		memset(rej, 0, sizeof(rej));
		if (v512)
			i = add_avx512(out + done, m, fast.buf, sigma, rej, store);
		else if (vec)
			i = add_avx2(out + done, m, fast.buf, sigma, rej, store);
		for (; i < m; i++) {
			uint32_t w = fast.buf[i];
			if ((int32_t)(w >> 8) < zig_k[w & 127]) {
				if (out)
					out[done + i] =
					    fmaf(sigma, zig_fast(w), store ? 0.0f : out[done + i]);
				else
					dout[done + i] = (w & 128 ? -1.0 : 1.0) * (double)(w >> 8) *
					                 0x1p-24 * zig_x[w & 127];
			} else {
				rej[i / 64] |= 1ull << (i % 64);
			}
		}
		resolve_marked(out ? out + done : NULL, dout ? dout + done : NULL, fast.buf, rej, m,
		               sigma, &slow, &tail, store, isa < 0, v512);
		done += m;
	}
	stream_wipe(&fast);
	stream_wipe(&slow);
	stream_wipe(&tail);
}

void ragg__dp_noise_init(struct ragg__dp_noise *nz)
{
	randombytes_buf(nz->key, sizeof(nz->key));
}

void ragg__dp_noise_draw(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                         uint64_t round, double *out, size_t n)
{
	noise(nz, tensor, chunk, round, NULL, out, n, 0, 0, false);
}

void ragg__dp_noise_draw_exp(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                             uint64_t round, double *out, size_t n)
{
	noise(nz, tensor, chunk, round, NULL, out, n, 0, -1, false);
}

void ragg__dp_noise_add(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                        uint64_t round, float *out, size_t n, double sigma)
{
	noise(nz, tensor, chunk, round, out, NULL, n, (float)sigma, 2, false);
}

void ragg__dp_noise_set(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                        uint64_t round, float *out, size_t n, double sigma)
{
	noise(nz, tensor, chunk, round, out, NULL, n, (float)sigma, 2, true);
}

void ragg__dp_noise_add_avx2(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                             uint64_t round, float *out, size_t n, double sigma)
{
	noise(nz, tensor, chunk, round, out, NULL, n, (float)sigma, 1, false);
}

void ragg__dp_noise_add_scalar(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                               uint64_t round, float *out, size_t n, double sigma)
{
	noise(nz, tensor, chunk, round, out, NULL, n, (float)sigma, 0, false);
}

RAGG_EXPORT int ragg_dp_epsilon(double q, double z, uint64_t steps, double delta, double *eps,
                                double *order)
{
	struct ragg__dp_accountant acc;
	double o = NAN, e;
	if (!eps || !(q >= 0 && q <= 1) || !(z >= 0) || isinf(z) || !(delta > 0 && delta < 1))
		return -EINVAL;
	ragg__dp_accountant_init(&acc);
	if (steps) {
		for (int k = 0; k < RAGG_DP_NORDERS; k++)
			acc.rdp[k] = (double)steps * ragg__dp_rdp(q, z, ragg__dp_orders[k]);
		acc.steps = steps;
	}
	e = ragg__dp_accountant_eps(&acc, delta, &o);
	*eps = e;
	if (order)
		*order = o;
	return 0;
}
