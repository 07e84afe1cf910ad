/*
 * Differential privacy at the agent: the Gaussian mechanism's calibration,
 * its noise, and a Rényi-DP accountant.
 *
 * Accountant. The agent's release of one round is the sampled Gaussian
 * mechanism: each worker's contribution bounded in L2 norm by C, noise
 * N(0, (zC)^2 I) added to the sum, and, when workers (or samples) are
 * Poisson-subsampled with rate q, the subsampled mechanism. Its RDP at
 * order a is computed as in Mironov, Talwar and Zhang, "Rényi Differential
 * Privacy of the Sampled Gaussian Mechanism" (2019), §3.3: log A_a by the
 * binomial series for integer a and by the two erfc series for fractional
 * a (their terms' absolute values summed: an upper bound), in log space. Rounds compose by adding RDP at every order; the
 * conversion to (eps, delta) is the tighter one of Balle et al.,
 * "Hypothesis testing interpretations and Rényi differential privacy"
 * (2020), Theorem 21 — the one Opacus and Google's dp_accounting use:
 *   eps(a) = rdp(a) - (log delta + log a) / (a - 1) + log((a - 1) / a),
 * minimised over the orders.
 *
 * Noise. ChaCha20 streams (libsodium) per (agent key, tensor, chunk,
 * round); the first's 32-bit words become normal deviates by the ziggurat
 * method of Marsaglia and Tsang (2000) with 128 layers (the tail beyond
 * r = 3.4426 by Marsaglia's exponential rejection), exact up to the 2^-24
 * resolution of the uniform in each word, which is that of the float the
 * noise is added to. The 2.8% of words that miss the fast path are resolved
 * after each block in rounds that give every one the same words of a second
 * stream whatever the decisions (a third for the tail), so that they run
 * without branches. Vectorised (AVX-512 with the tables in registers and the
 * rounds 8 lanes wide, else AVX2 with gathers) where the CPU has it, with
 * the same deviates as the scalar code.
 */
#ifndef RAGG_PRIVACY_DP_H
#define RAGG_PRIVACY_DP_H

#include <stddef.h>
#include <stdint.h>

/* The orders the accountant evaluates: 1.1 .. 10.9 by 0.1 and 12 .. 63
 * (Opacus's default), then 64, 80, 96, 128, 160, 192 and 256 for small
 * sampling rates and long jobs. */
#define RAGG_DP_NORDERS 158
extern const double ragg__dp_orders[RAGG_DP_NORDERS];

/* RDP of the Poisson-subsampled Gaussian mechanism with sampling rate q in
 * [0, 1] and noise multiplier z >= 0 at order a > 1, for one step. +inf
 * when z == 0 and q > 0. */
double ragg__dp_rdp(double q, double z, double a);
/* The same with the exact signed series at fractional orders (Opacus's
 * computation), where ragg__dp_rdp sums the terms' absolute values (an
 * upper bound, as Google's dp_accounting does): the two differ by about
 * 1e-4 relative at Opacus's test point, by 3% at order 1.5 with q 0.01,
 * z 2.5. The accountant uses the bound. */
double ragg__dp_rdp_exact(double q, double z, double a);

/* The smallest eps over `n` orders for the given total RDP values, and the
 * order reaching it (NULL: not wanted). +inf when every order is +inf. */
double ragg__dp_rdp_to_eps(const double *orders, const double *rdp, int n, double delta,
                           double *order);

/* An accountant: RDP summed over the rounds done so far. */
struct ragg__dp_accountant {
	double rdp[RAGG_DP_NORDERS];
	uint64_t steps;
};
void ragg__dp_accountant_init(struct ragg__dp_accountant *acc);
/* One more round with rate q and multiplier z. */
void ragg__dp_accountant_step(struct ragg__dp_accountant *acc, double q, double z);
/* eps spent so far at delta (0 before any step), and its order. */
double ragg__dp_accountant_eps(const struct ragg__dp_accountant *acc, double delta,
                               double *order);
/* What eps the accountant would report after `steps` rounds with q, z. */
double ragg__dp_accountant_eps_after(const struct ragg__dp_accountant *acc, double q, double z,
                                     uint64_t steps, double delta);

/* Gaussian mechanism calibration for L2 sensitivity `sens`: the sigma that
 * gives (eps, delta)-DP. The classic bound (Dwork and Roth, Theorem A.1)
 * holds for 0 < eps < 1 only: -EDOM otherwise. The analytic one (Balle and
 * Wang, 2018, Theorem 8, by bisection on sigma to a relative 1e-12) holds
 * for every eps > 0. 0 and *sigma, or -EINVAL for a parameter out of range. */
int ragg__dp_sigma_classic(double eps, double delta, double sens, double *sigma);
int ragg__dp_sigma_analytic(double eps, double delta, double sens, double *sigma);
/* delta of the Gaussian mechanism with sigma at eps (the analytic
 * mechanism's exact curve), for tests and the calibration above. */
double ragg__dp_gaussian_delta(double eps, double sigma, double sens);

/* Gaussian noise. A key per agent (randombytes_buf), then a stream per
 * (tensor, chunk, round) from it; out[i] += sigma * N(0, 1) for i < n.
 * Blocks of the stream are drawn in fixed order, so the same key and
 * position always give the same noise (tests; replay of a round). */
#define RAGG_DP_KEY_BYTES 32
struct ragg__dp_noise {
	uint8_t key[RAGG_DP_KEY_BYTES];
};
void ragg__dp_noise_init(struct ragg__dp_noise *nz); /* a fresh random key */
void ragg__dp_noise_add(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                        uint64_t round, float *out, size_t n, double sigma);
/* out[i] = sigma * N(0, 1): the floats ragg__dp_noise_add gives on zeros,
 * without reading out (the noise drawn ahead of a round). */
void ragg__dp_noise_set(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                        uint64_t round, float *out, size_t n, double sigma);
/* The same with the AVX2 code (or scalar where the CPU lacks AVX2), not
 * AVX-512: tests and the noise's benchmark. */
void ragg__dp_noise_add_avx2(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                             uint64_t round, float *out, size_t n, double sigma);
/* The same with the scalar code only (tests: all give the same floats). */
void ragg__dp_noise_add_scalar(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                               uint64_t round, float *out, size_t n, double sigma);
/* The same deviates into a double buffer (tests, without float rounding). */
void ragg__dp_noise_draw(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                         uint64_t round, double *out, size_t n);
/* The same with exp deciding every wedge of the ziggurat, where the code
 * above decides most by bounds of exp (tests: the same deviates). */
void ragg__dp_noise_draw_exp(const struct ragg__dp_noise *nz, uint32_t tensor, uint32_t chunk,
                             uint64_t round, double *out, size_t n);

#endif
