/* The agent's stage runner on plain buffers, no transport: today's weighted
 * sum, then a scale stage added to the list. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <ragg/ragg.h>

#include "compress/codec.h"
#include "engine/engine.h"
#include "harness.h"
#include "plan.h"
#include "stages/stage.h"

#define N 1000

static void run(const struct ragg__plan *pl, float *out, const float *const *in, const float *w,
                int k, void *const *states)
{
	struct ragg__stage_ctx c = {
		.k = ragg__kernels_get("scalar"),
		.in = in,
		.w = w,
		.nin = k,
		.out = out,
		.n = N,
	};
	ragg__stages_run(pl, &c, states);
}

RAGG_TEST(sum_then_scale)
{
	static float a[N], b[N], out[N];
	for (int i = 0; i < N; i++) {
		a[i] = (float)i;
		b[i] = 1.0f;
	}
	const float *in[2] = { a, b };
	const float w[2] = { 2.0f, 3.0f };
	struct ragg__plan pl;
	RAGG_CHECK(ragg__plan_init(&pl, N, 4096, 1) == 0);

	run(&pl, out, in, w, 2, NULL);
	for (int i = 0; i < N; i++)
		RAGG_CHECKF(out[i] == 2.0f * (float)i + 3.0f, "i=%d out=%g", i, (double)out[i]);

	static const float half = 0.5f;
	struct ragg__plan_stage list[2] = { { &ragg__stage_sum, NULL },
		                            { &ragg__stage_scale, &half } };
	RAGG_CHECK(ragg__plan_set_stages(&pl, list, 2) == 0);
	RAGG_CHECK(pl.in_place);
	run(&pl, out, in, w, 2, NULL);
	for (int i = 0; i < N; i++)
		RAGG_CHECKF(out[i] == (float)i + 1.5f, "i=%d out=%g", i, (double)out[i]);
}

/* Stages see their own state and configuration, in list order. */
static int order[4], norder;
static void *seen_state[4];

static void record_run(struct ragg__stage_ctx *c)
{
	order[norder] = *(const int *)c->arg;
	seen_state[norder++] = c->state;
}

RAGG_TEST(stages_run_in_order_with_their_state)
{
	static const struct ragg__stage record = { .name = "record",
		                                   .flags = RAGG_STAGE_IN_PLACE,
		                                   .run = record_run };
	static const int one = 1, two = 2, three = 3;
	struct ragg__plan pl;
	RAGG_CHECK(ragg__plan_init(&pl, N, 4096, 1) == 0);
	struct ragg__plan_stage list[3] = { { &record, &one },
		                            { &record, &two },
		                            { &record, &three } };
	RAGG_CHECK(ragg__plan_set_stages(&pl, list, 3) == 0);
	int s0, s1, s2;
	void *states[3] = { &s0, &s1, &s2 };
	float out[N];
	run(&pl, out, NULL, NULL, 0, states);
	RAGG_CHECK(norder == 3);
	RAGG_CHECK(order[0] == 1 && order[1] == 2 && order[2] == 3);
	RAGG_CHECK(seen_state[0] == &s0 && seen_state[1] == &s1 && seen_state[2] == &s2);
}

RAGG_TEST(table_lookup)
{
	RAGG_CHECK(ragg__stage_find("sum") == &ragg__stage_sum);
	RAGG_CHECK(ragg__stage_find("scale") == &ragg__stage_scale);
	RAGG_CHECK(ragg__stage_find("nope") == NULL);
	RAGG_CHECK(ragg__stage_sum.flags & RAGG_STAGE_REDUCE);
	RAGG_CHECK(!(ragg__stage_scale.flags & RAGG_STAGE_REDUCE));
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}

/* The codec stage: round 0 is the plain weighted sum; after it, the output
 * is the encoding of sum_j w[j] * D(in[j]) (checked by decoding it), the
 * residual keeps what the encoding lost, so that over rounds the decoded
 * outputs add up to the decoded inputs' weighted sums minus the final
 * residual; a malformed contribution sets rc. */
RAGG_TEST(codec_stage)
{
	static float a[N], b[N], sum[N], dec[N], total_in[N], total_out[N];
	static unsigned char ea[8192], eb[8192], out[8192];
	struct ragg__plan pl;
	struct ragg__codec_spec s;
	RAGG_CHECK(ragg__plan_init(&pl, N, 4096, 1) == 0);
	RAGG_CHECK(ragg__codec_parse("onebit", &s) == 0);
	RAGG_CHECK(ragg__plan_set_codec(&pl, &s) == 0);
	RAGG_CHECK(!pl.in_place && pl.stride <= sizeof(out));
	size_t sb = ragg__stage_codec.state_bytes(pl.chunk_bytes);
	void *state = NULL;
	RAGG_CHECK(posix_memalign(&state, 64, sb) == 0);
	memset(state, 0, sb);
	void *states[1] = { state };
	const float w[2] = { 2.0f, 3.0f };
	size_t len = ragg__codec_max_encoded_size(&s, N);

	/* Round 0: plain floats in, plain weighted sum out. */
	for (int i = 0; i < N; i++) {
		a[i] = (float)i;
		b[i] = 1.0f;
	}
	const float *in[2] = { a, b };
	struct ragg__stage_ctx c = { .k = ragg__kernels_get("scalar"), .in = in, .w = w,
		                     .nin = 2, .out = sum, .n = N, .exact = 1 };
	ragg__stages_run(&pl, &c, states);
	RAGG_CHECK(c.rc == 0);
	for (int i = 0; i < N; i++)
		RAGG_CHECKF(sum[i] == 2.0f * (float)i + 3.0f, "i=%d out=%g", i, (double)sum[i]);

	memset(total_in, 0, sizeof(total_in));
	memset(total_out, 0, sizeof(total_out));
	const float *ein[2] = { (const float *)(void *)ea, (const float *)(void *)eb };
	for (int r = 1; r <= 20; r++) {
		for (int i = 0; i < N; i++) {
			a[i] = (float)((i * 7 + r * 3) % 11) - 5.0f;
			b[i] = 0.25f * (float)((i * 5 + r) % 9) - 1.0f;
		}
		struct ragg__codec_spec plain = s;
		plain.error_feedback = 0;
		RAGG_CHECK(ragg__codec_encode(&plain, a, N, ea, sizeof(ea), NULL, r) == (ssize_t)len);
		RAGG_CHECK(ragg__codec_encode(&plain, b, N, eb, sizeof(eb), NULL, r) == (ssize_t)len);
		RAGG_CHECK(ragg__codec_decode_accumulate(&plain, ea, len, total_in, N, w[0], r) == 0);
		RAGG_CHECK(ragg__codec_decode_accumulate(&plain, eb, len, total_in, N, w[1], r) == 0);
		struct ragg__stage_ctx d = { .k = ragg__kernels_get("scalar"), .in = ein, .w = w,
			                     .nin = 2, .out = (float *)(void *)out, .n = N,
			                     .seed = (uint64_t)r };
		ragg__stages_run(&pl, &d, states);
		RAGG_CHECK(d.rc == 0);
		RAGG_CHECK(ragg__codec_decode(&s, out, len, dec, N, r) == 0);
		for (int i = 0; i < N; i++)
			total_out[i] += dec[i];
	}
	/* sum of outputs = sum of inputs - residual (in the state after the
	 * chunk's sum, 64-byte aligned). */
	const float *resid = (const float *)((const char *)state + (N * sizeof(float) + 63) / 64 * 64);
	for (int i = 0; i < N; i++)
		RAGG_CHECKF(fabsf(total_out[i] - (total_in[i] - resid[i])) <=
		                1e-4f * (1.0f + fabsf(total_in[i])),
		            "i=%d out %g, in %g - residual %g", i, (double)total_out[i],
		            (double)total_in[i], (double)resid[i]);
	/* A foreign header: refused, nothing written. */
	ea[0] ^= 0xff;
	memset(out, 0xa5, sizeof(out));
	struct ragg__stage_ctx e = { .k = ragg__kernels_get("scalar"), .in = ein, .w = w,
		                     .nin = 2, .out = (float *)(void *)out, .n = N, .seed = 1 };
	ragg__stages_run(&pl, &e, states);
	RAGG_CHECK(e.rc == RAGG_ERR_PROTO);
	RAGG_CHECK(out[0] == 0xa5 && out[len - 1] == 0xa5);
	free(state);
}
