/*
 * The codec table, the spec parser, the header every encoding starts with,
 * and error feedback, done once for all codecs.
 *
 * Error feedback needs D(C(g)) at the encoder. Rather than a scratch
 * buffer, the residual itself is the scratch: e <- e + in (so e holds g),
 * c = C(e), then decode_accumulate(c, e, weight -1) leaves e = g - D(c).
 * The decoder is the one the receiver runs, so the residual is exactly
 * what the receiver did not get.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <ragg/ragg.h>

#include "compress/codec.h"

/* One line per codec; the ids are on the wire and never reused. */
static const struct ragg__codec *const codecs[] = {
	&ragg__codec_none,  &ragg__codec_fp16,   &ragg__codec_bf16, &ragg__codec_topk,
	&ragg__codec_randk, &ragg__codec_onebit, &ragg__codec_qsgd,
};

const struct ragg__codec *ragg__codec_at(size_t i)
{
	return i < sizeof(codecs) / sizeof(codecs[0]) ? codecs[i] : NULL;
}

const struct ragg__codec *ragg__codec_find(const char *name)
{
	for (size_t i = 0; name && i < sizeof(codecs) / sizeof(codecs[0]); i++)
		if (strcmp(codecs[i]->name, name) == 0)
			return codecs[i];
	return NULL;
}

int ragg__codec_parse(const char *text, struct ragg__codec_spec *spec)
{
	char name[32];
	const char *colon;
	size_t len;
	const struct ragg__codec *c;
	double param;

	if (!text || !spec)
		return -EINVAL;
	colon = strchr(text, ':');
	len = colon ? (size_t)(colon - text) : strlen(text);
	if (len == 0 || len >= sizeof(name))
		return -EINVAL;
	memcpy(name, text, len);
	name[len] = '\0';
	c = ragg__codec_find(name);
	if (!c)
		return -EINVAL;
	param = c->param_default;
	if (colon) {
		char *end;
		if (!(c->flags & RAGG_CODEC_PARAM) || colon[1] == '\0' || colon[1] == ' ' ||
		    strlen(colon + 1) > 24)
			return -EINVAL;
		errno = 0;
		param = strtod(colon + 1, &end);
		if (errno || *end != '\0' || !isfinite(param))
			return -EINVAL;
	}
	if ((c->flags & RAGG_CODEC_PARAM) && !(param >= c->param_min && param <= c->param_max))
		return -EINVAL;
	if ((c->flags & RAGG_CODEC_INTEGER) && param != floor(param))
		return -EINVAL;
	/* Seeded codecs draw from libsodium's ChaCha20; sodium_init() only
	 * picks the fastest implementation, and may run any number of times. */
	if ((c->flags & RAGG_CODEC_SEEDED) && sodium_init() < 0)
		return -EINVAL;
	spec->codec = c;
	spec->param = param;
	spec->error_feedback = !!(c->flags & RAGG_CODEC_LOSSY);
	return 0;
}

int ragg__codec_set_error_feedback(struct ragg__codec_spec *spec, int on)
{
	if (!spec || !spec->codec || (on && !(spec->codec->flags & RAGG_CODEC_LOSSY)))
		return -EINVAL;
	spec->error_feedback = !!on;
	return 0;
}

size_t ragg__codec_k(double r, size_t n)
{
	double k;
	if (n == 0)
		return 0;
	k = ceil(r * (double)n);
	if (k < 1)
		return 1;
	return k >= (double)n ? n : (size_t)k;
}

void ragg__codec_stream(uint64_t seed, uint32_t purpose, uint64_t first, uint32_t *w, size_t count)
{
	static const unsigned char zero[RAGG_CODEC_STREAM_WORDS * 4];
	unsigned char key[crypto_stream_chacha20_KEYBYTES] = { 0 };
	unsigned char nonce[crypto_stream_chacha20_NONCEBYTES] = { 0 };

	for (int i = 0; i < 8; i++)
		key[i] = (unsigned char)(seed >> (8 * i));
	for (int i = 0; i < 4; i++)
		nonce[i] = (unsigned char)(purpose >> (8 * i));
	/* 64-byte blocks: word `first` starts block first / 16. */
	unsigned char head[64];
	size_t skip = (size_t)(first % 16);
	uint64_t block = first / 16;
	if (skip) {
		size_t take = 16 - skip < count ? 16 - skip : count;
		crypto_stream_chacha20_xor_ic(head, zero, 64, nonce, block, key);
		memcpy(w, head + 4 * skip, 4 * take);
		w += take;
		count -= take;
		block++;
	}
	if (count)
		crypto_stream_chacha20_xor_ic((unsigned char *)w, zero, 4 * count, nonce, block,
		                              key);
	sodium_memzero(key, sizeof(key));
}

int ragg__codec_scalar_only;

int ragg__codec_have_f16c(void)
{
	if (__atomic_load_n(&ragg__codec_scalar_only, __ATOMIC_RELAXED))
		return 0;
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
	       __builtin_cpu_supports("fma");
}

int ragg__codec_have_avx2(void)
{
	if (__atomic_load_n(&ragg__codec_scalar_only, __ATOMIC_RELAXED))
		return 0;
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int spec_ok(const struct ragg__codec_spec *s)
{
	return s && s->codec && s->codec->size >= sizeof(struct ragg__codec);
}

size_t ragg__codec_max_encoded_size(const struct ragg__codec_spec *s, size_t n)
{
	if (!spec_ok(s) || n > RAGG_CODEC_MAX_N)
		return 0;
	return RAGG_CODEC_HEADER + s->codec->payload_size(s, n);
}

size_t ragg__codec_state_size(const struct ragg__codec_spec *s, size_t n)
{
	if (!spec_ok(s) || !s->error_feedback)
		return 0;
	return n * sizeof(float);
}

void ragg__codec_state_init(const struct ragg__codec_spec *s, void *state, size_t n)
{
	if (state && spec_ok(s) && s->error_feedback)
		memset(state, 0, n * sizeof(float));
}

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

ssize_t ragg__codec_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                           size_t out_cap, void *state, uint64_t seed)
{
	unsigned char *h = out;
	size_t payload;
	float fparam;
	const float *g = in;

	if (!spec_ok(s) || (!in && n) || !out || n > RAGG_CODEC_MAX_N ||
	    (s->error_feedback && !state && n))
		return -EINVAL;
	payload = s->codec->payload_size(s, n);
	if (out_cap < RAGG_CODEC_HEADER + payload)
		return -ENOSPC;
	int fused = s->error_feedback && s->codec->encode_ef_payload;
	if (s->error_feedback && !fused) {
		float *e = state;
		for (size_t i = 0; i < n; i++)
			e[i] += in[i];
		g = e;
	}
	fparam = (float)s->param;
	h[0] = s->codec->id;
	h[1] = RAGG_CODEC_VERSION;
	h[2] = h[3] = 0;
	put32(h + 4, (uint32_t)n);
	memcpy(h + 8, &fparam, 4);
	put32(h + 12, (uint32_t)payload);
	if (fused) {
		s->codec->encode_ef_payload(s, in, state, n, h + RAGG_CODEC_HEADER, seed);
		return (ssize_t)(RAGG_CODEC_HEADER + payload);
	}
	s->codec->encode_payload(s, g, n, h + RAGG_CODEC_HEADER, seed);
	if (s->error_feedback && n) {
		/* Cannot fail: the payload was just written by this codec. */
		if (s->codec->decode_payload(s, h + RAGG_CODEC_HEADER, state, n, 1, -1.0f, seed))
			return RAGG_ERR_PROTO;
	}
	return (ssize_t)(RAGG_CODEC_HEADER + payload);
}

static int decode(const struct ragg__codec_spec *s, const void *in, size_t len, float *out,
                  size_t n, int accumulate, float weight, uint64_t seed)
{
	const unsigned char *h = in;
	size_t payload;
	float fparam = 0, want;

	if (!spec_ok(s) || !in || (!out && n) || n > RAGG_CODEC_MAX_N)
		return -EINVAL;
	payload = s->codec->payload_size(s, n);
	if (len != RAGG_CODEC_HEADER + payload)
		return RAGG_ERR_PROTO;
	want = (float)s->param;
	memcpy(&fparam, h + 8, 4);
	if (h[0] != s->codec->id || h[1] != RAGG_CODEC_VERSION || h[2] || h[3] ||
	    get32(h + 4) != n || memcmp(&fparam, &want, 4) != 0 || get32(h + 12) != payload)
		return RAGG_ERR_PROTO;
	return s->codec->decode_payload(s, h + RAGG_CODEC_HEADER, out, n, accumulate, weight, seed);
}

int ragg__codec_decode(const struct ragg__codec_spec *s, const void *in, size_t len, float *out,
                       size_t n, uint64_t seed)
{
	return decode(s, in, len, out, n, 0, 1.0f, seed);
}

int ragg__codec_decode_accumulate(const struct ragg__codec_spec *s, const void *in, size_t len,
                                  float *out, size_t n, float weight, uint64_t seed)
{
	return decode(s, in, len, out, n, 1, weight, seed);
}
