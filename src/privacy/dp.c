#include <errno.h>
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
		double j = a - i;
		/* log |binom(a, i)|: lgamma is log |Gamma| at negative non-integers. */
		double log_coef = lgamma(a + 1) - lgamma(i + 1.0) - lgamma(j + 1);
		double log_t0 = log_coef + i * log(q) + j * log1p(-q);
		double log_t1 = log_coef + j * log(q) + i * log1p(-q);
		double log_e0 = log(0.5) + log_erfc((i - z0) / (M_SQRT2 * z));
		double log_e1 = log(0.5) + log_erfc((z0 - j) / (M_SQRT2 * z));
		double log_s0 = log_t0 + (i * (double)i - i) / (2 * z * z) + log_e0;
		double log_s1 = log_t1 + (j * j - j) / (2 * z * z) + log_e1;
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
		double j = a - i;
		double log_t0 = log_coef + i * log(q) + j * log1p(-q);
		double log_t1 = log_coef + j * log(q) + i * log1p(-q);
		double log_e0 = log(0.5) + log_erfc((i - z0) / (M_SQRT2 * z));
		double log_e1 = log(0.5) + log_erfc((z0 - j) / (M_SQRT2 * z));
		double log_s0 = log_t0 + (i * (double)i - i) / (2 * z * z) + log_e0;
		double log_s1 = log_t1 + (j * j - j) / (2 * z * z) + log_e1;
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
 * Ziggurat (Marsaglia and Tsang, 2000), 256 layers of equal area V under
 * f(x) = exp(-x^2 / 2). Layer 0 is the base: a rectangle of width r and
 * height f(r) plus the tail beyond r; layer i >= 1 spans heights
 * [f(x[i]), f(x[i+1])] with width x[i]. x[0] = V / f(r) is the width a
 * base of area V would have as a rectangle.
 */
#define ZIG_LAYERS 256
#define ZIG_R      3.6541528853610088
#define ZIG_V      4.92867323399e-3

static double zig_x[ZIG_LAYERS + 1], zig_f[ZIG_LAYERS + 1];
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
}

/* A ChaCha20 keystream read 64 bits at a time. */
struct zig_stream {
	const uint8_t *key;
	uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES];
	uint64_t block; /* next 64-byte block of the stream */
	uint64_t buf[512];
	unsigned pos;
};

static const uint8_t zero_block[sizeof(((struct zig_stream *)0)->buf)];

static void stream_init(struct zig_stream *s, const struct ragg__dp_noise *nz, uint32_t tensor,
                        uint32_t chunk, uint64_t round)
{
	memset(s->nonce, 0, sizeof(s->nonce));
	for (int i = 0; i < 4; i++) {
		s->nonce[i] = (uint8_t)(tensor >> (8 * i));
		s->nonce[4 + i] = (uint8_t)(chunk >> (8 * i));
	}
	for (int i = 0; i < 8; i++)
		s->nonce[8 + i] = (uint8_t)(round >> (8 * i));
	s->key = nz->key;
	s->block = 0;
	s->pos = sizeof(s->buf) / sizeof(s->buf[0]);
}


static uint64_t stream_u64(struct zig_stream *s)
{
	if (s->pos == sizeof(s->buf) / sizeof(s->buf[0])) {
		crypto_stream_xchacha20_xor_ic((uint8_t *)s->buf, zero_block, sizeof(s->buf),
		                               s->nonce, s->block, s->key);
		s->block += sizeof(s->buf) / 64;
		s->pos = 0;
	}
	return s->buf[s->pos++];
}

/* A uniform in (0, 1): 53 random bits, never 0. */
static double stream_unit(struct zig_stream *s)
{
	return ((double)(stream_u64(s) >> 11) + 0.5) * 0x1p-53;
}

static double zig_normal(struct zig_stream *s)
{
	for (;;) {
		uint64_t w = stream_u64(s);
		int i = (int)(w & 0xff);
		double sign = (w & 0x100) ? -1.0 : 1.0;
		double x = (double)(w >> 11) * 0x1p-53 * zig_x[i];
		if (x < zig_x[i + 1])
			return sign * x;
		if (i == 0) {
			/* The tail beyond r (Marsaglia, 1964). */
			double xx, yy;
			do {
				xx = -log(stream_unit(s)) / ZIG_R;
				yy = -log(stream_unit(s));
			} while (2 * yy < xx * xx);
			return sign * (ZIG_R + xx);
		}
		double y = zig_f[i] + stream_unit(s) * (zig_f[i + 1] - zig_f[i]);
		if (y < exp(-0.5 * x * x))
			return sign * x;
	}
}

void ragg__dp_noise_init(struct ragg__dp_noise *nz)
{
	randombytes_buf(nz->key, sizeof(nz->key));
}

void ragg__dp_noise_draw(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                         uint64_t round, double *out, size_t n)
{
	struct zig_stream s;
	pthread_once(&zig_once, zig_setup);
	stream_init(&s, nz, tensor, chunk, round);
	for (size_t i = 0; i < n; i++)
		out[i] = zig_normal(&s);
	sodium_memzero(s.buf, sizeof(s.buf));
}

void ragg__dp_noise_add(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                        uint64_t round, float *out, size_t n, double sigma)
{
	struct zig_stream s;
	pthread_once(&zig_once, zig_setup);
	stream_init(&s, nz, tensor, chunk, round);
	for (size_t i = 0; i < n; i++)
		out[i] = (float)((double)out[i] + sigma * zig_normal(&s));
	sodium_memzero(s.buf, sizeof(s.buf));
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
