/*
 * Secure aggregation's building blocks (Bonawitz et al., CCS 2017; the
 * sparse SecAgg+ of Bell et al., CCS 2020): fixed-point encoding modulo
 * 2^32, pairwise and self masks expanded from 32-byte seeds by ChaCha20,
 * the agent's integer sum, decoding, pairwise seed agreement over X25519,
 * Shamir sharing of seeds, and the neighbour graph. All randomness and
 * crypto from libsodium.
 *
 * Encoding. A worker's contribution v = n_i g_i is clipped element-wise to
 * [-range, range] and scaled by `scale`, then rounded stochastically
 * (unbiased: E[q] = v scale) to an integer taken modulo 2^32. The agent's
 * sum of m encodings, read as a signed 32-bit integer, is exact as long as
 * m * (range * scale + 1) < 2^31; ragg__sa_scale() picks the largest
 * power-of-two scale with that margin. Each decoded element is then within
 * m / scale of the sum of the clipped inputs (one rounding unit per
 * worker), and is unbiased.
 *
 * Masks. Worker i adds, for each neighbour j, +PRG(s_ij) when i < j and
 * -PRG(s_ij) when i > j, and +PRG(b_i) (its self mask); PRG(s) is the
 * ChaCha20 keystream of key s and a nonce naming (tensor, chunk, round),
 * read as 32-bit words, so every chunk of every round has fresh masks from
 * the same seeds. In the sum the pairwise masks cancel; the agent removes
 * the self masks with the b_i that the survivors' shares reveal.
 */
#ifndef RAGG_PRIVACY_SECAGG_H
#define RAGG_PRIVACY_SECAGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAGG_SA_SEED_BYTES 32
#define RAGG_SA_PK_BYTES   32
#define RAGG_SA_SK_BYTES   32

/* Where in the job a mask or rounding stream is used. */
struct ragg__sa_pos {
	uint32_t tensor, chunk;
	uint64_t round;
};

/* The largest power of two s with m * (range * s + 1) < 2^31, or 0 when
 * none (range not positive and finite, m < 1, or range too large). */
double ragg__sa_scale(int m, double range);

/* out[i] = stochastic_round(clamp(weight * in[i], +-range) * scale) mod
 * 2^32, the rounding's uniforms from ChaCha20 under `key` at `pos` (a
 * worker's private key). NaN counts as 0. Returns how many elements were
 * clipped or NaN. */
size_t ragg__sa_encode(uint32_t *out, const float *in, size_t n, double weight, double range,
                       double scale, const uint8_t key[RAGG_SA_SEED_BYTES],
                       const struct ragg__sa_pos *pos);

/* x[i] += sign * PRG(seed, pos)[i] modulo 2^32; sign is +1 or -1. */
void ragg__sa_mask(uint32_t *x, size_t n, const uint8_t seed[RAGG_SA_SEED_BYTES],
                   const struct ragg__sa_pos *pos, int sign);

/* The same two on words [first, first + n) of the position's streams
 * (first a multiple of RAGG_SA_BLOCK_ALIGN), so that a chunk can be
 * encoded and masked a block at a time while the block is in cache. */
#define RAGG_SA_BLOCK_ALIGN 16
size_t ragg__sa_encode_at(uint32_t *out, const float *in, size_t n, double weight, double range,
                          double scale, const uint8_t key[RAGG_SA_SEED_BYTES],
                          const struct ragg__sa_pos *pos, size_t first);
void ragg__sa_mask_at(uint32_t *x, size_t n, const uint8_t seed[RAGG_SA_SEED_BYTES],
                      const struct ragg__sa_pos *pos, int sign, size_t first);

/* out[i] = sum_j in[j][i] modulo 2^32 (out may be in[0]). */
void ragg__sa_sum(uint32_t *out, const uint32_t *const *in, int k, size_t n);

/* out[i] = (int32_t)sum[i] / scale. */
void ragg__sa_decode(float *out, const uint32_t *sum, size_t n, double scale);

/* The arithmetic after the keystream, in the scalar loop that defines it
 * and in AVX2 (secagg_avx2.c, bit for bit the same; used where
 * ragg__sa_have_avx2() and not ragg__sa_force_scalar(true), a switch for
 * tests and benchmarks). The encoding of n elements with their rounding
 * words u, returning how many were clipped or NaN; x += sign * k; the sum
 * of ragg__sa_sum. */
bool ragg__sa_have_avx2(void);
void ragg__sa_force_scalar(bool on);
size_t ragg__sa_encode_scalar(uint32_t *out, const float *in, const uint32_t *u, size_t n,
                              double weight, double range, double scale);
size_t ragg__sa_encode_avx2(uint32_t *out, const float *in, const uint32_t *u, size_t n,
                            double weight, double range, double scale);
void ragg__sa_add_avx2(uint32_t *x, const uint32_t *k, size_t n, int sign);
void ragg__sa_sum_avx2(uint32_t *out, const uint32_t *const *in, int k, size_t n);

/* A fresh X25519 key pair. */
void ragg__sa_keypair(uint8_t pk[RAGG_SA_PK_BYTES], uint8_t sk[RAGG_SA_SK_BYTES]);
/* The seed workers i and j share: BLAKE2b over the X25519 shared secret
 * and both public keys in rank order, so both compute the same seed.
 * 0, or -EINVAL when the peer's key is a low-order point. */
int ragg__sa_pair_seed(uint8_t seed[RAGG_SA_SEED_BYTES], const uint8_t my_sk[RAGG_SA_SK_BYTES],
                       const uint8_t my_pk[RAGG_SA_PK_BYTES], int me,
                       const uint8_t peer_pk[RAGG_SA_PK_BYTES], int peer);

/* Shamir's secret sharing, byte-wise over GF(2^8) (the AES field), with
 * random coefficients from libsodium: share k (k = 0 .. n-1) is the
 * polynomial at x = k + 1; any t shares give the secret back, t - 1 say
 * nothing of it. shares is n rows of len bytes. 0, or -EINVAL unless
 * 1 <= t <= n <= 255. */
int ragg__shamir_split(uint8_t *shares, const uint8_t *secret, size_t len, int t, int n);
/* The secret from t shares: share[k] taken at x = xs[k] (distinct, 1..255).
 * 0, or -EINVAL for repeated or zero x. */
int ragg__shamir_combine(uint8_t *secret, const uint8_t *const *share, const uint8_t *xs, int t,
                         size_t len);

/* SecAgg+'s sparse graph: worker i of m masks with the k workers nearest
 * it on a ring, k/2 on each side (a Harary graph; k even, k < m), or with
 * every other worker when k >= m - 1. Writes the neighbours' ranks in
 * increasing order and returns their number. */
int ragg__sa_neighbours(int m, int k, int i, int *out);

#endif
