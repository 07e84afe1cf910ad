/*
 * none: the floats as they are. Payload: n x f32. Lossless, ratio 1
 * (plus the 16-byte header); the reference the other codecs are measured
 * against, and what a chunk uses when compression is off.
 */
#include "config.h"

#include <string.h>

#include "compress/codec.h"

static size_t none_size(const struct ragg__codec_spec *s, size_t n)
{
	(void)s;
	return n * sizeof(float);
}

static void none_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                        uint64_t seed)
{
	(void)s, (void)seed;
	memcpy(out, in, n * sizeof(float));
}

static int none_decode(const struct ragg__codec_spec *s, const void *in, float *out, size_t n,
                       int accumulate, float weight, uint64_t seed)
{
	const unsigned char *p = in;
	(void)s, (void)seed;
	if (!accumulate) {
		memcpy(out, in, n * sizeof(float));
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		float v;
		memcpy(&v, p + 4 * i, 4);
		out[i] += weight * v;
	}
	return 0;
}

const struct ragg__codec ragg__codec_none = {
	.size = sizeof(struct ragg__codec),
	.name = "none",
	.id = 1,
	.flags = 0,
	.payload_size = none_size,
	.encode_payload = none_encode,
	.decode_payload = none_decode,
};
