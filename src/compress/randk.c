/*
 * randk:r: k = ceil(r * n) elements chosen at random, values only.
 * Payload: k x f32. Ratio n / k = about 1 / r. r in (0, 1], default 0.01.
 *
 * The indices are not sent: encoder and decoder both derive them from the
 * seed shared per (round, chunk). They are pi(0), ..., pi(k - 1) for a
 * pseudo-random permutation pi of [0, n): a 4-round Feistel network on
 * 2 x h bits (2^2h >= n) whose round function is SipHash-2-4
 * (libsodium's crypto_shorthash) under a key drawn from the seed's
 * ChaCha20 stream, walked in cycles until the image falls below n. So the
 * k indices are distinct, need no memory of size n, and the values are
 * sent in the order pi gives. Values are not rescaled by n / k: with error
 * feedback what is not sent this round is sent later.
 */
#include "config.h"

#include <string.h>

#include <sodium.h>

#include "compress/codec.h"

#define RANDK_PURPOSE 0x6b646e72u /* "rndk" */

struct perm {
	unsigned char key[crypto_shorthash_KEYBYTES];
	unsigned h; /* bits per half */
	uint64_t n;
};

static void perm_init(struct perm *p, uint64_t seed, size_t n)
{
	uint32_t w[16];
	ragg__codec_stream(seed, RANDK_PURPOSE, 0, w, 16);
	memcpy(p->key, w, sizeof(p->key));
	p->n = n;
	p->h = 1;
	while (((uint64_t)1 << (2 * p->h)) < n)
		p->h++;
}

static uint64_t feistel(const struct perm *p, uint64_t x)
{
	uint64_t mask = ((uint64_t)1 << p->h) - 1, l = x >> p->h, r = x & mask;
	for (uint32_t round = 0; round < 4; round++) {
		unsigned char in[12], out[crypto_shorthash_BYTES];
		uint64_t f;
		memcpy(in, &round, 4);
		memcpy(in + 4, &r, 8);
		crypto_shorthash(out, in, sizeof(in), p->key);
		memcpy(&f, out, 8);
		uint64_t t = r;
		r = (l ^ f) & mask;
		l = t;
	}
	return (l << p->h) | r;
}

/* A permutation of [0, 2^2h) restricted to [0, n) by cycle walking is a
 * permutation of [0, n); n <= 2^2h < 4n, so a walk takes < 4 steps on
 * average. */
static uint64_t perm_at(const struct perm *p, uint64_t i)
{
	uint64_t x = feistel(p, i);
	while (x >= p->n)
		x = feistel(p, x);
	return x;
}

static size_t randk_size(const struct ragg__codec_spec *s, size_t n)
{
	return ragg__codec_k(s->param, n) * 4;
}

static void randk_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                         uint64_t seed)
{
	size_t k = ragg__codec_k(s->param, n);
	unsigned char *o = out;
	struct perm p;
	if (k == 0)
		return;
	perm_init(&p, seed, n);
	for (size_t j = 0; j < k; j++)
		memcpy(o + 4 * j, &in[perm_at(&p, j)], 4);
	sodium_memzero(&p, sizeof(p));
}

static int randk_decode(const struct ragg__codec_spec *s, const void *in, float *out, size_t n,
                        int accumulate, float weight, uint64_t seed)
{
	size_t k = ragg__codec_k(s->param, n);
	const unsigned char *v = in;
	struct perm p;
	if (!accumulate)
		memset(out, 0, n * sizeof(float));
	if (k == 0)
		return 0;
	perm_init(&p, seed, n);
	for (size_t j = 0; j < k; j++) {
		uint64_t u = perm_at(&p, j);
		float x;
		memcpy(&x, v + 4 * j, 4);
		out[u] = accumulate ? out[u] + weight * x : x;
	}
	sodium_memzero(&p, sizeof(p));
	return 0;
}

/* Exposed for the tests: the indices a seed selects. */
size_t ragg__randk_index(uint64_t seed, size_t n, size_t j);
size_t ragg__randk_index(uint64_t seed, size_t n, size_t j)
{
	struct perm p;
	perm_init(&p, seed, n);
	return (size_t)perm_at(&p, j);
}

const struct ragg__codec ragg__codec_randk = {
	.size = sizeof(struct ragg__codec),
	.name = "randk",
	.id = 5,
	.flags = RAGG_CODEC_LOSSY | RAGG_CODEC_PARAM | RAGG_CODEC_SEEDED,
	.param_default = 0.01,
	.param_min = 1e-9,
	.param_max = 1.0,
	.payload_size = randk_size,
	.encode_payload = randk_encode,
	.decode_payload = randk_decode,
};
