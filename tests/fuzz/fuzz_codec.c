/* libFuzzer target: every codec's decoder (src/compress), plain and
 * accumulating. Input: byte 0 picks the codec, bytes 1-2 the number of
 * floats n (1..4096), byte 3 the seed and the code path, the rest is the encoded
 * buffer, truncated, oversized or garbage as the fuzzer makes it. A decoder
 * must return 0 or an error, read nothing outside the buffer and write
 * nothing outside out[0..n) (both are exact-size heap blocks: ASan sees any
 * overrun), and leave out untouched when it refuses. A buffer it accepts
 * re-decodes to the same values; an encoding of finite values always
 * decodes. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/codec.h"

static const char *const specs[] = { "none", "fp16", "bf16", "onebit", "topk:0.01", "topk:0.5",
	                             "randk:0.25", "qsgd:15", "qsgd:1" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	struct ragg__codec_spec s;
	if (ragg__codec_parse(specs[data[0] % (sizeof(specs) / sizeof(specs[0]))], &s))
		abort();
	size_t n = 1 + (((size_t)data[1] << 8 | data[2]) % 4096);
	uint64_t seed = 0x1234u ^ (data[3] >> 1);
	/* Bit 0 of byte 3: the portable paths, else the vector ones (where
	 * the CPU has them). */
	__atomic_store_n(&ragg__codec_scalar_only, data[3] & 1, __ATOMIC_RELAXED);
	size_t len = size - 4;
	/* The buffer alone, in a block of its exact size. */
	uint8_t *in = malloc(len ? len : 1);
	float *out = malloc(n * sizeof(float)), *keep = malloc(n * sizeof(float));
	float *again = malloc(n * sizeof(float));
	if (!in || !out || !keep || !again)
		abort();
	memcpy(in, data + 4, len);
	for (size_t i = 0; i < n; i++)
		out[i] = keep[i] = (float)i * 0.5f - 3.0f;

	int rc = ragg__codec_decode(&s, in, len, out, n, seed);
	if (rc && memcmp(out, keep, n * sizeof(float)))
		abort(); /* refused, yet wrote */
	if (!rc) {
		if (ragg__codec_decode(&s, in, len, again, n, seed) ||
		    memcmp(out, again, n * sizeof(float)))
			abort(); /* not deterministic */
	}
	memcpy(out, keep, n * sizeof(float));
	int rc2 = ragg__codec_decode_accumulate(&s, in, len, out, n, 0.5f, seed);
	if ((rc2 != 0) != (rc != 0))
		abort(); /* the two decoders disagree on validity */
	if (rc2 && memcmp(out, keep, n * sizeof(float)))
		abort();

	/* An encoding of finite values (the fuzzer's bytes as small ints). */
	for (size_t i = 0; i < n; i++)
		keep[i] = (float)(int8_t)(i < len ? in[i] : (uint8_t)i) / 8.0f;
	size_t cap = ragg__codec_max_encoded_size(&s, n);
	uint8_t *enc = malloc(cap);
	void *state = NULL;
	size_t st = ragg__codec_state_size(&s, n);
	if (st && posix_memalign(&state, 64, st))
		abort();
	if (!enc)
		abort();
	if (st)
		ragg__codec_state_init(&s, state, n);
	ssize_t w = ragg__codec_encode(&s, keep, n, enc, cap, state, seed);
	if (w <= 0 || (size_t)w > cap || ragg__codec_decode(&s, enc, (size_t)w, out, n, seed))
		abort();
	for (size_t i = 0; i < n; i++)
		if (!isfinite(out[i]))
			abort();
	free(enc);
	free(state);
	free(in);
	free(out);
	free(keep);
	free(again);
	return 0;
}
