/*
 * Gradient codecs: one table of functions per codec, one line each in
 * codec.c's table, looked up by a spec string "name[:param]".
 *
 * Contract (every entry, checked by tests/unit/compress_codecs.c):
 *
 *   ragg__codec_encode(spec, in, n, out, out_cap, state, seed)
 *       Compresses n floats into out and returns the bytes written (> 0),
 *       or a negative error: -ENOSPC if out_cap < max_encoded_size,
 *       -EINVAL for a NULL argument or n > RAGG_CODEC_MAX_N. `in` is only
 *       read. With error feedback on, state holds the residual e and the
 *       call computes g = in + e, c = C(g), e = g - D(c); D(c) is what the
 *       decoder produces bit for bit, so nothing is lost over the rounds.
 *   ragg__codec_decode(spec, in, len, out, n, seed)
 *       out[0..n) = D(in); 0 or a negative error.
 *   ragg__codec_decode_accumulate(spec, in, len, out, n, weight, seed)
 *       out[i] += weight * D(in)[i]; 0 or a negative error. The server's sum
 *       is fused with decoding this way.
 *   Decoders read only in[0..len), write only out[0..n), and check the
 *   whole input before writing anything: a truncated, oversized, foreign
 *   (other codec, other n, other param) or malformed buffer returns
 *   RAGG_ERR_PROTO and leaves out untouched.
 *   ragg__codec_max_encoded_size(spec, n)
 *       The size every encoding of n floats has (all codecs here have a
 *       fixed size for a given n and param, header included); what the
 *       tensor plan sizes a slot with.
 *   ragg__codec_state_size(spec, n), ragg__codec_state_init(spec, state, n)
 *       Per-chunk encoder state (the residual, n floats, when error
 *       feedback is on; 0 bytes otherwise). The caller allocates it,
 *       64-byte aligned, on the thread that owns the chunk, and passes it
 *       to every encode of that chunk. Decoding needs no state.
 *   `seed` is shared by encoder and decoder per (round, chunk): randk's
 *   indices and qsgd's stochastic rounding come from it (a libsodium
 *   stream keyed by it); the other codecs ignore it.
 *
 * No call allocates, aborts or keeps global state; encode and decode may
 * run on any number of threads at once, each on its own state.
 *
 * Wire format: a 16-byte header, then the codec's payload:
 *   u8 codec id, u8 format version (1), u16 zero, u32 n, f32 param,
 *   u32 payload bytes        (little endian, as the hosts that run ragg)
 */
#ifndef RAGG_COMPRESS_CODEC_H
#define RAGG_COMPRESS_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RAGG_CODEC_HEADER  16
#define RAGG_CODEC_VERSION 1
#define RAGG_CODEC_MAX_N   ((size_t)1 << 30) /* floats in one chunk */

enum {
	RAGG_CODEC_LOSSY = 1u << 0, /* D(C(g)) != g in general */
	RAGG_CODEC_PARAM = 1u << 1, /* takes ":param" (else refuses one) */
	RAGG_CODEC_SEEDED = 1u << 2, /* uses the seed */
	RAGG_CODEC_INTEGER = 1u << 3, /* param is a whole number */
};

struct ragg__codec_spec;

/* One codec. Payload functions see only the payload (header handled by
 * codec.c); decode_payload is given a payload whose length was checked
 * against payload_size and must validate its content before writing. */
struct ragg__codec {
	size_t size; /* sizeof(struct ragg__codec): the table can grow */
	const char *name;
	uint8_t id;
	unsigned flags;
	double param_default, param_min, param_max;
	size_t (*payload_size)(const struct ragg__codec_spec *s, size_t n);
	void (*encode_payload)(const struct ragg__codec_spec *s, const float *in, size_t n,
	                       void *out, uint64_t seed);
	/* accumulate = 0: out = D; else out += weight * D */
	int (*decode_payload)(const struct ragg__codec_spec *s, const void *in, float *out,
	                      size_t n, int accumulate, float weight, uint64_t seed);
	/* Optional, NULL: error feedback in one pass over the chunk, bit for
	 * bit what the three passes give (e <- e + in; out = C(e);
	 * e <- e - D(out)) for finite values. */
	void (*encode_ef_payload)(const struct ragg__codec_spec *s, const float *in, float *e,
	                          size_t n, void *out, uint64_t seed);
};

/* A codec with its parameter and error-feedback switch, as parsed. */
struct ragg__codec_spec {
	const struct ragg__codec *codec;
	double param;
	int error_feedback;
};

/* Parses "name[:param]" (param a decimal number within the codec's
 * bounds, nothing trailing). Error feedback starts on for lossy codecs.
 * 0, or -EINVAL (spec not written). */
int ragg__codec_parse(const char *text, struct ragg__codec_spec *spec);
/* Table access: entry i (NULL past the end), by name (NULL if absent). */
const struct ragg__codec *ragg__codec_at(size_t i);
const struct ragg__codec *ragg__codec_find(const char *name);
/* Switches error feedback (refused with -EINVAL for a lossless codec). */
int ragg__codec_set_error_feedback(struct ragg__codec_spec *spec, int on);

size_t ragg__codec_max_encoded_size(const struct ragg__codec_spec *s, size_t n);
size_t ragg__codec_state_size(const struct ragg__codec_spec *s, size_t n);
void ragg__codec_state_init(const struct ragg__codec_spec *s, void *state, size_t n);
ssize_t ragg__codec_encode(const struct ragg__codec_spec *s, const float *in, size_t n, void *out,
                           size_t out_cap, void *state, uint64_t seed);
int ragg__codec_decode(const struct ragg__codec_spec *s, const void *in, size_t len, float *out,
                       size_t n, uint64_t seed);
int ragg__codec_decode_accumulate(const struct ragg__codec_spec *s, const void *in, size_t len,
                                  float *out, size_t n, float weight, uint64_t seed);

/* Shared by the codec files. */
/* k = ceil(r * n), at least 1 when n > 0, at most n. */
size_t ragg__codec_k(double r, size_t n);
/* A keystream of 32-bit words from ChaCha20 keyed by (seed, purpose):
 * words [first, first + count) into w (count <= RAGG_CODEC_STREAM_WORDS). */
#define RAGG_CODEC_STREAM_WORDS 256
void ragg__codec_stream(uint64_t seed, uint32_t purpose, uint64_t first, uint32_t *w, size_t count);

/* F16C / AVX2 availability; both 0 while ragg__codec_scalar_only is set
 * (tests and benchmarks, to run the portable paths on any CPU). */
int ragg__codec_have_f16c(void);
int ragg__codec_have_avx2(void);
extern int ragg__codec_scalar_only;

extern const struct ragg__codec ragg__codec_none, ragg__codec_fp16, ragg__codec_bf16,
    ragg__codec_topk, ragg__codec_randk, ragg__codec_onebit, ragg__codec_qsgd;

#ifdef __cplusplus
}
#endif

#endif
