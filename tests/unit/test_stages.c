/* The agent's stage runner on plain buffers, no transport: today's weighted
 * sum, then a scale stage added to the list. */
#include <string.h>

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
