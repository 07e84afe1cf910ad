/*
 * The codec table: one suite run over every entry (and the parameters
 * that change its code paths), then what each codec promises in
 * ragg-compress(7).
 *
 * For every spec: the encoded size is max_encoded_size; decode and
 * decode_accumulate agree; every length 0..67 and a long odd one, every
 * float offset 0..15 of input and output and byte offsets of the encoded
 * buffer; guard values around every written array; error feedback's
 * invariant; and decoders given truncated, oversized, foreign or garbage
 * input return an error and leave their output untouched.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ragg/ragg.h>

#include "compress/codec.h"
#include "harness.h"

#define GUARD     16
#define CANARY    12345.678f
#define SMALL_MAX 67
#define LARGE_N   100003

uint16_t ragg__fp16_from_float(float f);
size_t ragg__randk_index(uint64_t seed, size_t n, size_t j);

/* Every table entry, some twice with parameters taking other paths. */
static const char *const specs[] = { "none",   "fp16",       "bf16",    "topk:0.01", "topk:0.3",
	                             "topk:1", "randk:0.05", "randk:1", "onebit",    "qsgd:1",
	                             "qsgd:4", "qsgd:15",    "qsgd:127" };
#define NSPECS (sizeof(specs) / sizeof(specs[0]))

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static float frand(void) /* [-1, 1) */
{
	return (float)((double)(next64() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void *xalloc(size_t bytes)
{
	void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
	RAGG_CHECK(p != NULL);
	return p;
}

static struct ragg__codec_spec spec_of(const char *text)
{
	struct ragg__codec_spec s;
	RAGG_CHECK_OK(ragg__codec_parse(text, &s));
	return s;
}

/* Fills an input with a spread of magnitudes (many binades, ties). */
static void fill(float *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float v = frand() * ldexpf(1.0f, (int)(next64() % 20) - 10);
		g[i] = next64() % 17 == 0 ? 0.25f : v;
	}
}

static void poison(float *base, size_t off, size_t n, float inside)
{
	for (size_t i = 0; i < GUARD; i++)
		base[off - GUARD + i] = base[off + n + i] = CANARY;
	for (size_t i = 0; i < n; i++)
		base[off + i] = inside;
}

static void check_guards(const float *base, size_t off, size_t n, const char *what)
{
	for (size_t i = 0; i < GUARD; i++) {
		RAGG_CHECKF(base[off - GUARD + i] == CANARY, "%s wrote before its output (n=%zu)",
		            what, n);
		RAGG_CHECKF(base[off + n + i] == CANARY, "%s wrote past its output (n=%zu)", what,
		            n);
	}
}

static int same(float a, float b)
{
	return memcmp(&a, &b, 4) == 0;
}

/* ---- the table and the parser ---- */

RAGG_TEST(compress_table)
{
	struct ragg__codec_spec s;
	for (size_t i = 0; ragg__codec_at(i); i++) {
		const struct ragg__codec *c = ragg__codec_at(i);
		int covered = 0;
		RAGG_CHECK(c->size == sizeof(struct ragg__codec));
		RAGG_CHECK(c->payload_size && c->encode_payload && c->decode_payload);
		RAGG_CHECK(ragg__codec_find(c->name) == c);
		for (size_t j = 0; j < i; j++)
			RAGG_CHECKF(ragg__codec_at(j)->id != c->id, "%s reuses an id", c->name);
		for (size_t j = 0; j < NSPECS; j++)
			covered |= strncmp(specs[j], c->name, strlen(c->name)) == 0;
		RAGG_CHECKF(covered, "%s is not in the suite's spec list", c->name);
		RAGG_CHECK_OK(ragg__codec_parse(c->name, &s));
		RAGG_CHECK(s.codec == c && s.param == c->param_default);
		RAGG_CHECK(s.error_feedback == !!(c->flags & RAGG_CODEC_LOSSY));
	}
	RAGG_CHECK(ragg__codec_at(7) == NULL);
	RAGG_CHECK_OK(ragg__codec_parse("topk:0.25", &s));
	RAGG_CHECK(s.codec == &ragg__codec_topk && s.param == 0.25);
	RAGG_CHECK_OK(ragg__codec_parse("qsgd:3", &s));
	RAGG_CHECK(s.param == 3);
	RAGG_CHECK_OK(ragg__codec_set_error_feedback(&s, 0));
	RAGG_CHECK(s.error_feedback == 0 && ragg__codec_state_size(&s, 100) == 0);
	RAGG_CHECK_OK(ragg__codec_parse("none", &s));
	RAGG_CHECK(ragg__codec_set_error_feedback(&s, 1) == -EINVAL);
	static const char *const bad[] = {
		"",
		":",
		"nonesuch",
		"fp16x",
		"FP16",
		"none:1",
		"fp16:",
		"topk:",
		"topk:0",
		"topk:-0.1",
		"topk:1.5",
		"topk:abc",
		"topk:0.1x",
		"topk:nan",
		"topk:inf",
		"topk: 0.1",
		"qsgd:2.5",
		"qsgd:0",
		"qsgd:128",
		"qsgd:1e9",
		"onebit:2",
		"randk:0.1:2",
		"topk:0.0000000000000000000000000001",
		"averyveryveryveryverylongcodecname:1",
	};
	s.codec = NULL;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		RAGG_CHECKF(ragg__codec_parse(bad[i], &s) == -EINVAL && s.codec == NULL,
		            "\"%s\" accepted", bad[i]);
	RAGG_CHECK(ragg__codec_parse(NULL, &s) == -EINVAL);
	RAGG_CHECK(ragg__codec_k(0.01, 0) == 0 && ragg__codec_k(0.01, 1) == 1);
	RAGG_CHECK(ragg__codec_k(0.01, 1000) == 10 && ragg__codec_k(0.01, 1001) == 11);
	RAGG_CHECK(ragg__codec_k(1, 7) == 7);
}

/* ---- the conformance suite ---- */

/* Encodes g (n floats) into a fresh buffer at byte offset boff; returns it
 * (base in *base) and its length. */
static unsigned char *encode_at(const struct ragg__codec_spec *s, const float *g, size_t n,
                                size_t boff, void *state, uint64_t seed, size_t *len,
                                unsigned char **base)
{
	size_t cap = ragg__codec_max_encoded_size(s, n);
	unsigned char *b = xalloc(cap + boff + 64);
	ssize_t r;
	memset(b, 0xa5, cap + boff + 64);
	r = ragg__codec_encode(s, g, n, b + boff, cap, state, seed);
	RAGG_CHECKF(r == (ssize_t)cap, "%s n=%zu: encode returned %zd, max %zu", s->codec->name, n,
	            r, cap);
	for (size_t i = 0; i < 64; i++)
		RAGG_CHECKF(b[boff + cap + i] == 0xa5, "%s wrote past its encoding",
		            s->codec->name);
	*len = (size_t)r;
	*base = b;
	return b + boff;
}

static void roundtrip(const struct ragg__codec_spec *s, size_t n, size_t ia, size_t oa, size_t boff)
{
	float *gb = xalloc((n + 16) * 4), *g = gb + ia;
	float *ob = xalloc((n + 2 * GUARD + 16) * 4), *ab = xalloc((n + 2 * GUARD + 16) * 4);
	float *keep = xalloc((n + 1) * 4);
	size_t off = GUARD + oa, len;
	unsigned char *base, *enc;
	uint64_t seed = next64();
	const float w = -0.75f;

	fill(g, n);
	memcpy(keep, g, n * 4);
	enc = encode_at(s, g, n, boff, NULL, seed, &len, &base);
	RAGG_CHECK(memcmp(keep, g, n * 4) == 0); /* input only read */
	poison(ob, off, n, NAN);
	RAGG_CHECK_OK(ragg__codec_decode(s, enc, len, ob + off, n, seed));
	check_guards(ob, off, n, s->codec->name);
	/* decode_accumulate into a known base = base + w * decode */
	poison(ab, off, n, 0);
	for (size_t i = 0; i < n; i++)
		ab[off + i] = (float)i * 0.5f;
	RAGG_CHECK_OK(ragg__codec_decode_accumulate(s, enc, len, ab + off, n, w, seed));
	check_guards(ab, off, n, s->codec->name);
	for (size_t i = 0; i < n; i++) {
		float want = (float)i * 0.5f + w * ob[off + i];
		RAGG_CHECKF(fabsf(ab[off + i] - want) <= 1e-6f * (fabsf(want) + (float)i),
		            "%s n=%zu i=%zu: accumulate %.9g, decode gives %.9g", s->codec->name, n,
		            i, ab[off + i], want);
	}
	/* lossless codecs are exact */
	if (!(s->codec->flags & RAGG_CODEC_LOSSY))
		RAGG_CHECK(memcmp(ob + off, g, n * 4) == 0);
	free(gb), free(ob), free(ab), free(keep), free(base);
}

RAGG_TEST_T(compress_roundtrip_all, 300)
{
	for (size_t c = 0; c < NSPECS; c++) {
		struct ragg__codec_spec s = spec_of(specs[c]);
		RAGG_CHECK_OK(ragg__codec_set_error_feedback(&s, 0));
		for (size_t n = 0; n <= SMALL_MAX; n++)
			for (size_t a = 0; a < 16; a++)
				roundtrip(&s, n, a, (a * 7) % 16, a % 8);
		roundtrip(&s, LARGE_N, 3, 5, 1);
		roundtrip(&s, 4096, 0, 0, 0);
	}
}

/* g <- g + e; c = C(g); e <- g - D(c): over T rounds the decoded outputs
 * sum to the inputs' sum minus the final residual. */
RAGG_TEST_T(compress_error_feedback, 120)
{
	enum { T = 40 };
	const size_t ns[] = { 1, 63, 1000, 4099 };
	for (size_t c = 0; c < NSPECS; c++) {
		struct ragg__codec_spec s = spec_of(specs[c]);
		if (!(s.codec->flags & RAGG_CODEC_LOSSY)) {
			RAGG_CHECK(ragg__codec_state_size(&s, 100) == 0);
			continue;
		}
		for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
			size_t n = ns[ni], len;
			float *g = xalloc(n * 4), *d = xalloc(n * 4);
			double *sum_in = calloc(n, sizeof(double)),
			       *sum_out = calloc(n, sizeof(double));
			double maxabs = 0;
			float *e;
			RAGG_CHECK(ragg__codec_state_size(&s, n) == n * 4);
			e = xalloc(ragg__codec_state_size(&s, n));
			memset(e, 0x7f, n * 4);
			ragg__codec_state_init(&s, e, n);
			for (int t = 0; t < T; t++) {
				unsigned char *base, *enc;
				uint64_t seed = (uint64_t)t * 1000003u + n;
				fill(g, n);
				enc = encode_at(&s, g, n, 0, e, seed, &len, &base);
				RAGG_CHECK_OK(ragg__codec_decode(&s, enc, len, d, n, seed));
				for (size_t i = 0; i < n; i++) {
					sum_in[i] += g[i];
					sum_out[i] += d[i];
					maxabs = fmax(maxabs, fabs(g[i]) + fabs(e[i]));
				}
				free(base);
			}
			for (size_t i = 0; i < n; i++) {
				double want = sum_in[i] - e[i];
				RAGG_CHECKF(fabs(sum_out[i] - want) <= 4e-7 * T * maxabs,
				            "%s n=%zu i=%zu: sum D %.9g, sum g - e %.9g", specs[c],
				            n, i, sum_out[i], want);
			}
			free(g), free(d), free(e), free(sum_in), free(sum_out);
		}
	}
}

/* Checks that a decoder refuses `in` and leaves the output untouched. */
static void refused(const struct ragg__codec_spec *s, const void *in, size_t len, size_t n,
                    uint64_t seed, const char *what)
{
	float *ob = xalloc((n + 2 * GUARD) * 4);
	poison(ob, GUARD, n, 7.0f);
	RAGG_CHECKF(ragg__codec_decode(s, in, len, ob + GUARD, n, seed) < 0, "%s: %s accepted",
	            s->codec->name, what);
	RAGG_CHECKF(ragg__codec_decode_accumulate(s, in, len, ob + GUARD, n, 2.0f, seed) < 0,
	            "%s: %s accepted by decode_accumulate", s->codec->name, what);
	check_guards(ob, GUARD, n, s->codec->name);
	for (size_t i = 0; i < n; i++)
		RAGG_CHECKF(ob[GUARD + i] == 7.0f, "%s: %s: output written although refused",
		            s->codec->name, what);
	free(ob);
}

RAGG_TEST_T(compress_refuses_bad_input, 120)
{
	const size_t ns[] = { 0, 1, 64, 65, 1000 };
	for (size_t c = 0; c < NSPECS; c++) {
		struct ragg__codec_spec s = spec_of(specs[c]);
		s.error_feedback = 0;
		for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
			size_t n = ns[ni], len;
			float *g = xalloc((n + 1) * 4);
			unsigned char *base, *enc, *big, *junk;
			uint64_t seed = 42 + n;
			fill(g, n);
			enc = encode_at(&s, g, n, 0, NULL, seed, &len, &base);
			/* truncated, at every length below the true one (sampled) */
			for (size_t l = 0; l < len; l += l < 40 ? 1 : len / 7 + 1)
				refused(&s, enc, l, n, seed, "a truncated buffer");
			refused(&s, enc, len - 1, n, seed, "a buffer one byte short");
			/* oversized: the true encoding followed by a byte */
			big = xalloc(len + 1);
			memcpy(big, enc, len);
			big[len] = 0;
			refused(&s, big, len + 1, n, seed, "an oversized buffer");
			/* any bit of the header flipped */
			for (size_t bit = 0; bit < 8 * RAGG_CODEC_HEADER; bit++) {
				memcpy(big, enc, len);
				big[bit / 8] ^= (unsigned char)(1u << (bit % 8));
				refused(&s, big, len, n, seed, "a corrupted header");
			}
			/* another n, another codec or param */
			if (n)
				refused(&s, enc, len, n - 1, seed, "a buffer for another n");
			refused(&s, enc, len, n + 1, seed, "a buffer for another n");
			for (size_t o = 0; o < NSPECS; o++) {
				struct ragg__codec_spec t = spec_of(specs[o]);
				if (o == c || (t.codec == s.codec && t.param == s.param))
					continue;
				refused(&t, enc, len, n, seed, specs[c]);
			}
			/* garbage: random bytes of the right length */
			junk = xalloc(len + 1);
			for (int r = 0; r < 20; r++) {
				for (size_t i = 0; i < len; i++)
					junk[i] = (unsigned char)next64();
				refused(&s, junk, len, n, seed, "random bytes");
			}
			free(g), free(base), free(big), free(junk);
		}
	}
}

/* A valid header over a random payload: whatever the decoder says, it
 * stays inside its output, and a refusal writes nothing. */
RAGG_TEST(compress_random_payloads)
{
	const size_t n = 300;
	float *ob = xalloc((n + 2 * GUARD) * 4), *g = xalloc(n * 4);
	size_t refusals[NSPECS] = { 0 };
	for (size_t c = 0; c < NSPECS; c++) {
		struct ragg__codec_spec s = spec_of(specs[c]);
		size_t len;
		unsigned char *base, *enc;
		s.error_feedback = 0;
		fill(g, n);
		enc = encode_at(&s, g, n, 0, NULL, 1, &len, &base);
		for (int r = 0; r < 200; r++) {
			for (size_t i = RAGG_CODEC_HEADER; i < len; i++)
				enc[i] = (unsigned char)next64();
			poison(ob, GUARD, n, 7.0f);
			int rc = ragg__codec_decode(&s, enc, len, ob + GUARD, n, 1);
			check_guards(ob, GUARD, n, specs[c]);
			if (rc < 0) {
				refusals[c]++;
				for (size_t i = 0; i < n; i++)
					RAGG_CHECK(ob[GUARD + i] == 7.0f);
			}
		}
		free(base);
	}
	/* codecs with structure in their payload notice random bytes */
	for (size_t c = 0; c < NSPECS; c++)
		if (!strncmp(specs[c], "topk:0", 6) || !strcmp(specs[c], "onebit") ||
		    !strncmp(specs[c], "qsgd:", 5))
			RAGG_CHECKF(refusals[c] > 150, "%s refused %zu of 200", specs[c],
			            refusals[c]);
	free(ob), free(g);
}

RAGG_TEST(compress_encode_errors)
{
	float g[100];
	unsigned char out[1024];
	fill(g, 100);
	for (size_t c = 0; c < NSPECS; c++) {
		struct ragg__codec_spec s = spec_of(specs[c]);
		float e[100] = { 0 };
		size_t need = ragg__codec_max_encoded_size(&s, 100);
		RAGG_CHECK(need <= sizeof(out));
		memset(out, 0x5a, sizeof(out));
		RAGG_CHECK(ragg__codec_encode(&s, g, 100, out, need - 1, e, 1) == -ENOSPC);
		for (size_t i = 0; i < sizeof(out); i++)
			RAGG_CHECK(out[i] == 0x5a);
		for (size_t i = 0; i < 100; i++)
			RAGG_CHECK(e[i] == 0); /* residual untouched on error */
		if (s.error_feedback)
			RAGG_CHECK(ragg__codec_encode(&s, g, 100, out, need, NULL, 1) == -EINVAL);
		RAGG_CHECK(ragg__codec_encode(&s, NULL, 100, out, need, e, 1) == -EINVAL);
		RAGG_CHECK(ragg__codec_encode(&s, g, RAGG_CODEC_MAX_N + 1, out, sizeof(out), e,
		                              1) == -EINVAL);
	}
}

static void encdec(const char *spec, const float *g, float *d, size_t n, uint64_t seed,
                   unsigned char **enc_out, size_t *len_out);

/* Each structural check of a payload, one at a time, on a valid encoding. */
RAGG_TEST(compress_payload_checks)
{
	enum { N = 200 };
	float g[N];
	unsigned char *enc;
	size_t len;
	fill(g, N);
	{ /* topk: an index out of range, repeated, or out of order */
		struct ragg__codec_spec s = spec_of("topk:0.1");
		uint32_t bad[][2] = { { 0, N }, { 1, 0 } }; /* (slot, value) */
		s.error_feedback = 0;
		for (int b = 0; b < 3; b++) {
			float d[N];
			encdec("topk:0.1", g, d, N, 0, &enc, &len);
			unsigned char *idx = enc + RAGG_CODEC_HEADER;
			if (b < 2) {
				memcpy(idx + 4 * bad[b][0], &bad[b][1], 4);
				if (b == 1) /* slot 1 = slot 0's index: a repeat */
					memcpy(idx + 4, idx, 4);
			} else { /* swap two indices */
				unsigned char t[4];
				memcpy(t, idx, 4), memcpy(idx, idx + 4, 4), memcpy(idx + 4, t, 4);
			}
			refused(&s, enc, len, N, 0, "a malformed topk index list");
			free(enc);
		}
	}
	{ /* onebit: a negative scale; a padding bit set */
		struct ragg__codec_spec s = spec_of("onebit");
		float d[N], neg = -1.0f;
		s.error_feedback = 0;
		encdec("onebit", g, d, N, 0, &enc, &len);
		memcpy(enc + RAGG_CODEC_HEADER, &neg, 4);
		refused(&s, enc, len, N, 0, "a negative onebit scale");
		free(enc);
		encdec("onebit", g, d, N, 0, &enc, &len);
		enc[len - 1] |= 0x80;
		refused(&s, enc, len, N, 0, "a onebit padding bit");
		free(enc);
	}
	{ /* qsgd: a negative norm; a level above s; a padding bit */
		struct ragg__codec_spec s = spec_of("qsgd:4");
		float d[N], neg = -1.0f;
		s.error_feedback = 0;
		encdec("qsgd:4", g, d, N, 0, &enc, &len);
		memcpy(enc + RAGG_CODEC_HEADER, &neg, 4);
		refused(&s, enc, len, N, 0, "a negative qsgd norm");
		free(enc);
		encdec("qsgd:4", g, d, N, 0, &enc, &len);
		enc[RAGG_CODEC_HEADER + 4] |= 0x0e; /* element 0: level 7 > 4 */
		refused(&s, enc, len, N, 0, "a qsgd level above s");
		free(enc);
		encdec("qsgd:4", g, d, N, 0, &enc, &len);
		enc[len - 1] |= 0x80;
		refused(&s, enc, len, N, 0, "a qsgd padding bit");
		free(enc);
	}
}

/* ---- what each codec promises ---- */

static void encdec(const char *spec, const float *g, float *d, size_t n, uint64_t seed,
                   unsigned char **enc_out, size_t *len_out)
{
	struct ragg__codec_spec s = spec_of(spec);
	size_t len;
	unsigned char *base, *enc;
	s.error_feedback = 0;
	enc = encode_at(&s, g, n, 0, NULL, seed, &len, &base);
	RAGG_CHECK_OK(ragg__codec_decode(&s, enc, len, d, n, seed));
	if (enc_out) {
		*enc_out = base;
		*len_out = len;
	} else {
		free(base);
	}
}

static float bits_float(uint32_t x)
{
	float f;
	memcpy(&f, &x, 4);
	return f;
}

/* fp16 and bf16: half an ulp over the normal range; overflow; NaN. */
RAGG_TEST(compress_fp16_bf16)
{
	enum { N = 200003 };
	float *g = xalloc(N * 4), *d = xalloc(N * 4);
	unsigned char *enc;
	size_t len;
	/* fp16: normal range [2^-14, 65504] */
	for (size_t i = 0; i < N; i++) {
		float m = 1.0f + (float)(next64() % 1000000) / 1000000.0f;
		g[i] = ldexpf(m, (int)(next64() % 30) - 14) * (i % 2 ? -1.0f : 1.0f);
		if (fabsf(g[i]) > 65504.0f)
			g[i] = 65504.0f;
	}
	encdec("fp16", g, d, N, 0, NULL, NULL);
	for (size_t i = 0; i < N; i++)
		RAGG_CHECKF(fabsf(d[i] - g[i]) <= ldexpf(fabsf(g[i]), -11) &&
		                signbit(d[i]) == signbit(g[i]),
		            "fp16 %.9g -> %.9g", g[i], d[i]);
	/* the vector path (when the CPU has F16C) and the scalar one agree on
	 * every kind of bit pattern, NaNs and subnormals included */
	for (size_t i = 0; i < N; i++)
		g[i] = bits_float((uint32_t)next64());
	for (size_t i = 0; i < 4096; i++)
		g[i] = bits_float(0x33000000u +
		                  (uint32_t)(next64() % 0x5800000u)); /* subnormal halves */
	encdec("fp16", g, d, N, 0, &enc, &len);
	for (size_t i = 0; i < N; i++) {
		uint16_t h;
		memcpy(&h, enc + RAGG_CODEC_HEADER + 2 * i, 2);
		RAGG_CHECKF(h == ragg__fp16_from_float(g[i]),
		            "fp16 of %.9g: vector %04x scalar %04x", g[i], h,
		            ragg__fp16_from_float(g[i]));
		if (isnan(g[i]))
			RAGG_CHECK(isnan(d[i]) && signbit(d[i]) == signbit(g[i]));
	}
	free(enc);
	/* edges: overflow to inf, ties to even, subnormals, zero signs */
	{
		const float in[] = { 65504.0f,
			             65519.99f,
			             65520.0f,
			             -65520.0f,
			             1e6f,
			             -INFINITY,
			             1.0f + ldexpf(1, -11),
			             1.0f + 3 * ldexpf(1, -11),
			             ldexpf(1, -24),
			             ldexpf(1, -25),
			             ldexpf(3, -26),
			             -0.0f,
			             NAN,
			             -NAN };
		const float want[] = { 65504.0f,
			               65504.0f,
			               INFINITY,
			               -INFINITY,
			               INFINITY,
			               -INFINITY,
			               1.0f,
			               1.0f + ldexpf(1, -9),
			               ldexpf(1, -24),
			               0.0f,
			               ldexpf(1, -24),
			               -0.0f,
			               NAN,
			               -NAN };
		float out[14];
		encdec("fp16", in, out, 14, 0, NULL, NULL);
		for (int i = 0; i < 14; i++)
			RAGG_CHECKF(
			    isnan(want[i]) ? isnan(out[i]) && signbit(out[i]) == signbit(want[i])
			                   : same(out[i], want[i]),
			    "fp16 edge %d: %.9g -> %.9g, want %.9g", i, in[i], out[i], want[i]);
	}
	/* bf16: half an ulp (2^-8 relative) over fp32's normal range */
	for (size_t i = 0; i < N; i++) {
		uint32_t x = (uint32_t)next64() & 0xff7fffffu; /* finite, below max */
		if (((x >> 23) & 0xff) == 0)
			x |= 1u << 23;
		g[i] = bits_float(x);
		if (fabsf(g[i]) > 3.38e38f)
			g[i] = 1.0f;
	}
	encdec("bf16", g, d, N, 0, NULL, NULL);
	for (size_t i = 0; i < N; i++)
		RAGG_CHECKF(fabs((double)d[i] - g[i]) <= ldexp(fabs(g[i]), -8) &&
		                signbit(d[i]) == signbit(g[i]),
		            "bf16 %.9g -> %.9g", g[i], d[i]);
	/* every kind of bit pattern, NaNs included, through the vector path
	 * and the tail: round to nearest even on the bits, NaN quietened */
	for (size_t i = 0; i < N; i++)
		g[i] = bits_float(next64() % 4 ? (uint32_t)next64()
		                               : 0x7f800000u | (uint32_t)next64());
	encdec("bf16", g, d, N, 0, &enc, &len);
	for (size_t i = 0; i < N; i++) {
		uint32_t x, want;
		uint16_t h;
		memcpy(&x, &g[i], 4);
		want = (x & 0x7fffffffu) > 0x7f800000u ? (x >> 16) | 0x40u
		                                       : (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
		memcpy(&h, enc + RAGG_CODEC_HEADER + 2 * i, 2);
		RAGG_CHECKF(h == want, "bf16 of %.9g: %04x, want %04x", g[i], h, want);
		RAGG_CHECK(!!isnan(d[i]) == !!isnan(g[i]));
	}
	free(enc);
	{
		const float in[] = { 1.0f + ldexpf(1, -8),
			             1.0f + 3 * ldexpf(1, -8),
			             3.4028235e38f,
			             -3.4028235e38f,
			             NAN,
			             -NAN,
			             bits_float(0x7f800001u),
			             INFINITY,
			             -0.0f };
		const float want[] = {
			1.0f, 1.0f + ldexpf(1, -6), INFINITY, -INFINITY, NAN, -NAN, NAN, INFINITY,
			-0.0f
		};
		float out[9];
		encdec("bf16", in, out, 9, 0, NULL, NULL);
		for (int i = 0; i < 9; i++)
			RAGG_CHECKF(isnan(want[i])
			                ? isnan(out[i]) && signbit(out[i]) == signbit(want[i])
			                : same(out[i], want[i]),
			            "bf16 edge %d: %.9g -> %.9g", i, in[i], out[i]);
	}
	free(g), free(d);
}

static uint32_t mag(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	return x & 0x7fffffffu;
}

/* topk: exactly k largest magnitudes, ties to the lowest indices. */
RAGG_TEST(compress_topk)
{
	const size_t ns[] = { 1, 5, 100, 1000, 65537 };
	const char *const rs[] = { "topk:0.01", "topk:0.1", "topk:0.5", "topk:1" };
	for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++)
		for (size_t b = 0; b < sizeof(rs) / sizeof(rs[0]); b++) {
			size_t n = ns[a], k, len;
			struct ragg__codec_spec s = spec_of(rs[b]);
			float *g = xalloc(n * 4), *d = xalloc(n * 4);
			char *sel = calloc(n, 1);
			unsigned char *enc;
			uint32_t minsel = UINT32_MAX, maxun = 0;
			fill(g, n); /* many ties at 0.25 */
			k = ragg__codec_k(s.param, n);
			encdec(rs[b], g, d, n, 0, &enc, &len);
			RAGG_CHECK(len == RAGG_CODEC_HEADER + 8 * k);
			for (size_t j = 0; j < k; j++) {
				uint32_t u;
				memcpy(&u, enc + RAGG_CODEC_HEADER + 4 * j, 4);
				RAGG_CHECK(u < n && !sel[u]);
				sel[u] = 1;
			}
			for (size_t i = 0; i < n; i++) {
				if (sel[i]) {
					RAGG_CHECK(same(d[i], g[i]));
					minsel = mag(g[i]) < minsel ? mag(g[i]) : minsel;
				} else {
					RAGG_CHECK(d[i] == 0);
					maxun = mag(g[i]) > maxun ? mag(g[i]) : maxun;
				}
			}
			RAGG_CHECKF(k == n || minsel >= maxun, "%s n=%zu: kept %08x, dropped %08x",
			            rs[b], n, minsel, maxun);
			/* ties: no dropped element of the k-th magnitude precedes a kept one */
			for (size_t i = 0, seen_drop = 0; i < n; i++) {
				if (mag(g[i]) != minsel)
					continue;
				if (!sel[i])
					seen_drop = 1;
				else
					RAGG_CHECKF(!seen_drop,
					            "%s n=%zu: tie broken against the index", rs[b],
					            n);
			}
			free(g), free(d), free(sel), free(enc);
		}
	/* NaN counts as the largest magnitude: always sent */
	{
		float g[8] = { 1, 2, NAN, 4, 5, -INFINITY, 7, 8 }, d[8];
		encdec("topk:0.25", g, d, 8, 0, NULL, NULL);
		RAGG_CHECK(isnan(d[2]) && isinf(d[5]) && d[7] == 0);
	}
}

/* randk: encoder and decoder agree on the indices from the seed. */
RAGG_TEST(compress_randk)
{
	const size_t n = 10007;
	struct ragg__codec_spec s = spec_of("randk:0.05");
	size_t k = ragg__codec_k(0.05, n), len, differ = 0;
	float *g = xalloc(n * 4), *d = xalloc(n * 4), *d2 = xalloc(n * 4);
	char *sel = calloc(n, 1);
	unsigned char *base, *enc;
	double hits = 0;
	for (size_t i = 0; i < n; i++)
		g[i] = (float)i + 1.0f; /* nonzero and tells where it came from */
	s.error_feedback = 0;
	enc = encode_at(&s, g, n, 0, NULL, 77, &len, &base);
	RAGG_CHECK(len == RAGG_CODEC_HEADER + 4 * k);
	RAGG_CHECK_OK(ragg__codec_decode(&s, enc, len, d, n, 77));
	for (size_t j = 0; j < k; j++) {
		size_t u = ragg__randk_index(77, n, j);
		float v;
		memcpy(&v, enc + RAGG_CODEC_HEADER + 4 * j, 4);
		RAGG_CHECK(u < n && !sel[u] && v == g[u]);
		sel[u] = 1;
	}
	for (size_t i = 0; i < n; i++)
		RAGG_CHECK(sel[i] ? d[i] == g[i] : d[i] == 0);
	/* another seed selects other indices */
	RAGG_CHECK_OK(ragg__codec_decode(&s, enc, len, d2, n, 78));
	for (size_t i = 0; i < n; i++)
		differ += d2[i] != d[i];
	RAGG_CHECK(differ > k);
	/* coverage over seeds is uniform: each index chosen ~ T k / n times */
	for (uint64_t seed = 0; seed < 200; seed++)
		for (size_t j = 0; j < k; j++)
			hits += ragg__randk_index(seed, n, j) < n / 2;
	RAGG_CHECKF(fabs(hits / (200.0 * (double)k) - 0.5) < 0.02, "%.4f",
	            hits / (200.0 * (double)k));
	free(g), free(d), free(d2), free(sel), free(base);
}

/* onebit: signs exact, scale = mean |g|; NaN makes the chunk NaN. */
RAGG_TEST(compress_onebit)
{
	const size_t ns[] = { 1, 63, 64, 65, 1000, 100003 };
	for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++) {
		size_t n = ns[a];
		float *g = xalloc(n * 4), *d = xalloc(n * 4);
		double mean = 0;
		fill(g, n);
		g[0] = -0.0f;
		for (size_t i = 0; i < n; i++)
			mean += fabs(g[i]);
		mean /= (double)n;
		encdec("onebit", g, d, n, 0, NULL, NULL);
		for (size_t i = 0; i < n; i++) {
			RAGG_CHECK(signbit(d[i]) == signbit(g[i]));
			RAGG_CHECKF(fabs(fabs(d[i]) - mean) <= 1e-6 * mean, "n=%zu: %.9g vs %.9g",
			            n, d[i], mean);
		}
		g[n / 2] = NAN;
		encdec("onebit", g, d, n, 0, NULL, NULL);
		for (size_t i = 0; i < n; i++)
			RAGG_CHECK(isnan(d[i]));
		free(g), free(d);
	}
}

/* qsgd: |D - g| <= norm / s, and unbiased over many seeds. */
RAGG_TEST_T(compress_qsgd, 120)
{
	enum { N = 1030, T = 4000 };
	const char *const ss[] = { "qsgd:1", "qsgd:4", "qsgd:15" };
	float *g = xalloc(N * 4), *d = xalloc(N * 4);
	double *mean = calloc(N, sizeof(double));
	for (size_t a = 0; a < 3; a++) {
		double s = spec_of(ss[a]).param, norm[3] = { 0 };
		fill(g, N);
		for (size_t i = 0; i < N; i++)
			norm[i / 512] += (double)g[i] * g[i];
		for (int b = 0; b < 3; b++)
			norm[b] = sqrt(norm[b]);
		memset(mean, 0, N * sizeof(double));
		for (uint64_t t = 0; t < T; t++) {
			encdec(ss[a], g, d, N, t, NULL, NULL);
			for (size_t i = 0; i < N; i++) {
				RAGG_CHECKF(fabs(d[i] - g[i]) <= norm[i / 512] / s * (1 + 1e-5),
				            "%s: |%.9g - %.9g| > norm/s", ss[a], d[i], g[i]);
				mean[i] += d[i];
			}
		}
		/* each draw lies within norm/s of g, so its standard deviation is at
		 * most norm / (2 s); the mean of T draws is within 5 of those
		 * deviations divided by sqrt T (N such tests: a false alarm has
		 * probability ~ N 6e-7) */
		for (size_t i = 0; i < N; i++) {
			double bound = 5 * norm[i / 512] / (2 * s * sqrt(T)) + 1e-6 * fabs(g[i]);
			RAGG_CHECKF(fabs(mean[i] / T - g[i]) <= bound,
			            "%s i=%zu: mean %.9g, g %.9g, bound %.3g", ss[a], i,
			            mean[i] / T, g[i], bound);
		}
	}
	/* a NaN poisons its bucket only */
	g[600] = NAN;
	encdec("qsgd:15", g, d, N, 1, NULL, NULL);
	for (size_t i = 0; i < N; i++)
		RAGG_CHECK(!!isnan(d[i]) == (i / 512 == 1));
	free(g), free(d), free(mean);
}

/* The portable paths, forced, give what the vector ones give: the same
 * bits for fp16 and bf16 and onebit's signs, onebit's scale to rounding. */
RAGG_TEST(compress_scalar_paths)
{
	enum { N = 70001 };
	const char *const vec[] = { "fp16", "bf16", "onebit" };
	float *g = xalloc(N * 4), *dv = xalloc(N * 4), *ds = xalloc(N * 4);
	for (size_t c = 0; c < 3; c++) {
		unsigned char *ev, *es;
		size_t lv, ls;
		fill(g, N);
		for (size_t i = 0; i < N; i += 97)
			g[i] = bits_float((uint32_t)next64()); /* NaNs, infs, subnormals */
		if (c == 2)
			for (size_t i = 0; i < N; i += 97)
				g[i] = 1.0f;
		ragg__codec_scalar_only = 0;
		encdec(vec[c], g, dv, N, 0, &ev, &lv);
		ragg__codec_scalar_only = 1;
		encdec(vec[c], g, ds, N, 0, &es, &ls);
		ragg__codec_scalar_only = 0;
		RAGG_CHECK(lv == ls);
		if (c < 2) {
			RAGG_CHECKF(memcmp(ev, es, lv) == 0,
			            "%s: scalar and vector encodings differ", vec[c]);
			RAGG_CHECK(memcmp(dv, ds, N * 4) == 0);
		} else {
			float sv, ss;
			memcpy(&sv, ev + RAGG_CODEC_HEADER, 4);
			memcpy(&ss, es + RAGG_CODEC_HEADER, 4);
			RAGG_CHECK(memcmp(ev + RAGG_CODEC_HEADER + 8, es + RAGG_CODEC_HEADER + 8,
			                  lv - RAGG_CODEC_HEADER - 8) == 0);
			RAGG_CHECKF(fabsf(sv - ss) <= 1e-6f * ss, "onebit scale %.9g vs %.9g", sv,
			            ss);
			for (size_t i = 0; i < N; i++)
				RAGG_CHECK(signbit(dv[i]) == signbit(ds[i]) && fabsf(ds[i]) == ss);
		}
		free(ev), free(es);
	}
	/* and the whole suite's round trip on the portable paths */
	ragg__codec_scalar_only = 1;
	for (size_t c = 0; c < NSPECS; c++) {
		struct ragg__codec_spec s = spec_of(specs[c]);
		s.error_feedback = 0;
		for (size_t n = 0; n <= SMALL_MAX; n++)
			roundtrip(&s, n, n % 16, (n * 5) % 16, n % 8);
		roundtrip(&s, 4099, 1, 2, 3);
	}
	ragg__codec_scalar_only = 0;
	free(g), free(dv), free(ds);
}

/* fp16, bf16 and onebit fuse error feedback (encode_ef_payload): over
 * many rounds, on the vector and the portable paths, every encoding and
 * every residual is bit for bit what the three passes give (e += in,
 * C(e) with error feedback off, e += -1 * D(c)). Lengths that leave
 * vector tails. */
RAGG_TEST(compress_fused_error_feedback)
{
	const char *const fused[] = { "fp16", "bf16", "onebit" };
	const size_t lens[] = { 1, 7, 8, 15, 16, 17, 4099, 70001 };
	for (size_t c = 0; c < 3; c++)
		for (int scalar = 0; scalar < 2; scalar++)
			for (size_t L = 0; L < sizeof(lens) / sizeof(lens[0]); L++) {
				size_t n = lens[L];
				struct ragg__codec_spec ef = spec_of(fused[c]), off = ef;
				off.error_feedback = 0;
				RAGG_CHECK(ef.error_feedback && ef.codec->encode_ef_payload);
				size_t cap = ragg__codec_max_encoded_size(&ef, n);
				float *g = xalloc(n * 4), *e = xalloc(n * 4), *r = xalloc(n * 4);
				unsigned char *a = xalloc(cap), *b = xalloc(cap);
				memset(e, 0, n * 4);
				memset(r, 0, n * 4);
				ragg__codec_scalar_only = scalar;
				for (int round = 0; round < 5; round++) {
					fill(g, n);
					for (size_t i = 0; i < n; i += 5)
						g[i] *= 1e-3f * (float)(round + 1);
					RAGG_CHECK(ragg__codec_encode(&ef, g, n, a, cap, e, 7) == (ssize_t)cap);
					for (size_t i = 0; i < n; i++)
						r[i] += g[i];
					RAGG_CHECK(ragg__codec_encode(&off, r, n, b, cap, NULL, 7) ==
					           (ssize_t)cap);
					RAGG_CHECK(ragg__codec_decode_accumulate(&off, b, cap, r, n, -1.0f,
					                                         7) == 0);
					RAGG_CHECKF(memcmp(a, b, cap) == 0,
					            "%s n=%zu scalar=%d round %d: encodings differ",
					            fused[c], n, scalar, round);
					RAGG_CHECKF(memcmp(e, r, n * 4) == 0,
					            "%s n=%zu scalar=%d round %d: residuals differ",
					            fused[c], n, scalar, round);
				}
				ragg__codec_scalar_only = 0;
				free(g), free(e), free(r), free(a), free(b);
			}
}

/* Ratios as documented in ragg-compress(7), at n = 2^20. */
RAGG_TEST(compress_ratios)
{
	const struct {
		const char *spec;
		double ratio;
	} want[] = { { "none", 1 },       { "fp16", 2 },         { "bf16", 2 },
		     { "topk:0.01", 50 }, { "randk:0.01", 100 }, { "onebit", 32 },
		     { "qsgd:1", 15.5 },  { "qsgd:15", 6.32 },   { "qsgd:127", 3.97 } };
	const size_t n = 1 << 20;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct ragg__codec_spec s = spec_of(want[i].spec);
		double r = (double)(4 * n) / (double)ragg__codec_max_encoded_size(&s, n);
		RAGG_CHECKF(fabs(r / want[i].ratio - 1) < 0.01, "%s: ratio %.2f, documented %.2f",
		            want[i].spec, r, want[i].ratio);
		fprintf(stderr, "ratio %s: %.2f\n", want[i].spec, r);
	}
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
