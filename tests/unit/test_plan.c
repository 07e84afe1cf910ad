/* The tensor plan: chunk geometry at awkward sizes, and the check of a
 * landed write refusing each field it checks. */
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "plan.h"
#include "proto.h"
#include "stages/stage.h"

#define CB 4096u /* the smallest chunk, 1024 floats */
#define CE (CB / 4u)

/* Every geometry function against a brute-force walk of the chunks. */
static void check_geometry(size_t count, size_t chunk_bytes, int servers)
{
	struct ragg__plan pl;
	RAGG_CHECK(ragg__plan_init(&pl, count, chunk_bytes, servers) == 0);
	size_t ce = chunk_bytes / 4;
	RAGG_CHECK(pl.bytes == count * 4);
	RAGG_CHECK(pl.nchunks == (count + ce - 1) / ce);
	size_t covered = 0;
	size_t owned[16] = { 0 };
	for (size_t c = 0; c < pl.nchunks; c++) {
		RAGG_CHECK(ragg__plan_chunk_off(&pl, c) == covered * 4);
		size_t len = ragg__plan_chunk_len(&pl, c);
		RAGG_CHECK(len > 0 && len <= chunk_bytes && len % 4 == 0);
		RAGG_CHECK(c + 1 == pl.nchunks || len == chunk_bytes);
		RAGG_CHECK(ragg__plan_chunk_elems(&pl, c) * 4 == len);
		RAGG_CHECK(ragg__plan_contrib_len(&pl, c, false) == len);
		int s = ragg__plan_owner(&pl, c);
		RAGG_CHECK(s == (int)(c % (size_t)servers));
		RAGG_CHECK(ragg__plan_local(&pl, c) == owned[s]);
		RAGG_CHECK(ragg__plan_global(&pl, s, owned[s]) == c);
		RAGG_CHECK(ragg__plan_owned_off(&pl, c) == owned[s] * chunk_bytes);
		/* Both parities of the chunk fit in the sender's slot. */
		RAGG_CHECK(ragg__plan_server_slot_off(&pl, 1, c) + len <=
		           ragg__plan_server_slot_bytes(&pl, s));
		RAGG_CHECK(ragg__plan_server_slot_off(&pl, 1, c) -
		               ragg__plan_server_slot_off(&pl, 0, c) ==
		           ragg__plan_owned_bytes(&pl, s));
		RAGG_CHECK(ragg__plan_worker_slot_off(&pl, 0, c) ==
		           RAGG_SLOT_META_BYTES + covered * 4);
		RAGG_CHECK(ragg__plan_worker_slot_off(&pl, 1, c) + len <=
		           ragg__plan_worker_slot_bytes(&pl));
		owned[s]++;
		covered += len / 4;
	}
	RAGG_CHECK(covered == count);
	for (int s = 0; s < servers; s++) {
		RAGG_CHECK(ragg__plan_owned(&pl, s) == owned[s]);
		RAGG_CHECK(ragg__plan_owned_bytes(&pl, s) == owned[s] * chunk_bytes);
		RAGG_CHECK(ragg__plan_server_slot_bytes(&pl, s) ==
		           RAGG_SLOT_META_BYTES + 2 * owned[s] * chunk_bytes);
	}
}

RAGG_TEST(geometry_awkward_sizes)
{
	check_geometry(1, CB, 1); /* one element */
	check_geometry(1, CB, 3); /* one element, servers without chunks */
	check_geometry(CE, CB, 1); /* exactly one chunk */
	check_geometry(3 * CE, CB, 3); /* an exact multiple, one each */
	check_geometry(6 * CE, CB, 4); /* an exact multiple, uneven owners */
	check_geometry(3 * CE + 1, CB, 2); /* a one-element tail */
	check_geometry(5 * CE - 1, CB, 3); /* a tail one short */
	check_geometry(2 * CE + 7, CB, 5); /* fewer chunks than servers */
	check_geometry(12345, 4100, 3); /* a chunk not a power of two */
	check_geometry(1000003, 65536, 7);
}

RAGG_TEST(geometry_fewer_chunks_than_servers)
{
	struct ragg__plan pl;
	RAGG_CHECK(ragg__plan_init(&pl, 2 * CE + 1, CB, 5) == 0);
	RAGG_CHECK(pl.nchunks == 3);
	RAGG_CHECK(ragg__plan_owned(&pl, 0) == 1 && ragg__plan_owned(&pl, 2) == 1);
	RAGG_CHECK(ragg__plan_owned(&pl, 3) == 0 && ragg__plan_owned(&pl, 4) == 0);
	RAGG_CHECK(ragg__plan_chunk_len(&pl, 2) == 4);
	RAGG_CHECK(ragg__plan_server_slot_bytes(&pl, 4) == RAGG_SLOT_META_BYTES);
}

RAGG_TEST(chunk_rule_and_bad_plans)
{
	RAGG_CHECK(ragg__plan_chunk_bytes_ok(4096));
	RAGG_CHECK(ragg__plan_chunk_bytes_ok(4100));
	RAGG_CHECK(ragg__plan_chunk_bytes_ok(4 << 20));
	RAGG_CHECK(!ragg__plan_chunk_bytes_ok(4092));
	RAGG_CHECK(!ragg__plan_chunk_bytes_ok(4098));
	RAGG_CHECK(!ragg__plan_chunk_bytes_ok(0));

	struct ragg__plan pl, before;
	memset(&pl, 0x5a, sizeof(pl));
	before = pl;
	RAGG_CHECK(ragg__plan_init(&pl, 10, 4092, 1) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__plan_init(&pl, 10, 4097, 1) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__plan_init(&pl, 0, CB, 1) == -EINVAL);
	RAGG_CHECK(ragg__plan_init(&pl, 10, CB, 0) == -EINVAL);
	/* More chunks than an immediate names. */
	RAGG_CHECK(ragg__plan_init(&pl, (size_t)RAGG_IMM_MAX_CHUNKS * CE + 1, CB, 1) == -EINVAL);
	/* A chunk size far beyond the tensor (a peer's declaration found by
	 * tests/fuzz decl): both parities of a server's slot would wrap
	 * size_t around. */
	RAGG_CHECK(ragg__plan_init(&pl, (size_t)1 << 34, 0xf700000000001000ull, 2) == -EINVAL);
	/* Outputs written only on success. */
	RAGG_CHECK(memcmp(&pl, &before, sizeof(pl)) == 0);
	RAGG_CHECK(ragg__plan_init(&pl, (size_t)RAGG_IMM_MAX_CHUNKS * CE, CB, 1) == 0);
}

RAGG_TEST(default_stages_allow_in_place)
{
	struct ragg__plan pl;
	RAGG_CHECK(ragg__plan_init(&pl, 10, CB, 1) == 0);
	RAGG_CHECK(pl.nstages == 1 && pl.stages[0].stage == &ragg__stage_sum);
	RAGG_CHECK(pl.in_place);
	RAGG_CHECK(pl.codec.codec == NULL && pl.stride == pl.chunk_bytes);
}

/* A codec: the codec stage alone, no in-place path, a slot stride that
 * holds both the floats (round 0) and the encoding of the longest chunk,
 * contributions of the encoding's length after round 0; "none" undoes it. */
RAGG_TEST(codec_plan)
{
	struct ragg__plan pl;
	struct ragg__codec_spec s;
	const size_t count = 3 * CE + 7;
	RAGG_CHECK(ragg__plan_init(&pl, count, CB, 2) == 0);
	RAGG_CHECK(ragg__codec_parse("topk:1", &s) == 0);
	RAGG_CHECK(ragg__plan_set_codec(&pl, &s) == 0);
	RAGG_CHECK(pl.nstages == 1 && pl.stages[0].stage == &ragg__stage_codec);
	RAGG_CHECK(pl.stages[0].arg == &pl && !pl.in_place);
	/* The workers encode with it too by default (RAGG_WORKER_COMPRESS=same). */
	RAGG_CHECK(pl.wcodec.codec == s.codec && pl.wstride == pl.stride);
	RAGG_CHECK(pl.stride >= ragg__codec_max_encoded_size(&s, CE) && pl.stride > CB);
	RAGG_CHECK(!ragg__plan_coded(&pl, 0) && ragg__plan_coded(&pl, 1));
	for (size_t c = 0; c < pl.nchunks; c++) {
		RAGG_CHECK(ragg__plan_contrib_len(&pl, c, true) ==
		           ragg__codec_max_encoded_size(&s, ragg__plan_chunk_elems(&pl, c)));
		RAGG_CHECK(ragg__plan_contrib_len(&pl, c, true) <= pl.stride);
		RAGG_CHECK(ragg__plan_worker_slot_off(&pl, 1, c) + pl.stride <=
		           ragg__plan_worker_slot_bytes(&pl));
		RAGG_CHECK(ragg__plan_server_slot_off(&pl, 1, c) + pl.stride <=
		           ragg__plan_server_slot_bytes(&pl, ragg__plan_owner(&pl, c)));
	}
	/* A coded write of the floats' length, or of length 0, is refused. */
	struct ragg__expect e = { .plan = &pl, .parity = 1, .owner = -1, .sender_ok = true,
		                  .room = true, .in_place_ok = true, .coded = true };
	const char *why;
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, ragg__plan_contrib_len(&pl, 0, true), &why) == 0);
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, CB, &why) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, 0, &why) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__plan_set_codec(&pl, NULL) == 0);
	RAGG_CHECK(pl.codec.codec == NULL && pl.stride == CB);
	RAGG_CHECK(pl.stages[0].stage == &ragg__stage_sum && pl.in_place);
}

/* RAGG_WORKER_COMPRESS apart from the push codec: none keeps the codec
 * stage and the agents' encoded writes, while the workers' slots hold
 * floats and their writes may be in place; fp16 without a push codec
 * makes only the workers' writes encoded. */
RAGG_TEST(worker_codec_plan)
{
	struct ragg__plan pl;
	struct ragg__codec_spec s, h;
	const size_t count = 3 * CE + 7;
	const char *why;
	RAGG_CHECK(ragg__plan_init(&pl, count, CB, 2) == 0);
	RAGG_CHECK(ragg__codec_parse("onebit", &s) == 0);
	RAGG_CHECK(ragg__plan_set_codec(&pl, &s) == 0);
	size_t coded_slot = ragg__plan_worker_slot_bytes(&pl);
	RAGG_CHECK(ragg__plan_set_worker_codec(&pl, NULL) == 0);
	RAGG_CHECK(pl.stages[0].stage == &ragg__stage_codec && pl.stages[0].arg == &pl);
	RAGG_CHECK(pl.wcodec.codec == NULL && pl.wstride == CB && pl.codec.codec == s.codec);
	RAGG_CHECK(!ragg__plan_wcoded(&pl, 1) && ragg__plan_coded(&pl, 1));
	RAGG_CHECK(ragg__plan_worker_slot_bytes(&pl) == ragg__slot_bytes(count * sizeof(float)));
	RAGG_CHECK(ragg__plan_worker_slot_bytes(&pl) != coded_slot);
	struct ragg__expect e = { .plan = &pl, .parity = 1, .owner = -1, .sender_ok = true,
		                  .room = true, .in_place_ok = true };
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, CB, &why) == 0);
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, 0, &why) == 0);
	/* fp16 on the worker hop alone. */
	RAGG_CHECK(ragg__plan_set_codec(&pl, NULL) == 0);
	RAGG_CHECK(ragg__codec_parse("fp16", &h) == 0);
	RAGG_CHECK(ragg__plan_set_worker_codec(&pl, &h) == 0);
	RAGG_CHECK(pl.stages[0].stage == &ragg__stage_codec && !pl.in_place);
	RAGG_CHECK(ragg__plan_wcoded(&pl, 1) && !ragg__plan_wcoded(&pl, 0) && !ragg__plan_coded(&pl, 1));
	RAGG_CHECK(pl.wstride >= CB && pl.stride == CB);
	e.wcoded = true;
	for (size_t c = 0; c < pl.nchunks; c++) {
		size_t len = ragg__plan_wcontrib_len(&pl, c, true);
		RAGG_CHECK(len == ragg__codec_max_encoded_size(&h, ragg__plan_chunk_elems(&pl, c)));
		RAGG_CHECK(ragg__plan_worker_slot_off(&pl, 1, c) + len <=
		           ragg__plan_worker_slot_bytes(&pl));
		RAGG_CHECK(ragg__plan_check_write(&e, (uint32_t)c, 1, len, &why) == 0);
	}
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, CB, &why) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, 0, &why) == RAGG_ERR_PROTO);
	/* The agents' writes are floats. */
	e.wcoded = false;
	e.owner = 0;
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, ragg__plan_contrib_len(&pl, 0, false), &why) == 0);
}

/* RAGG_COMPRESS_PULL: which rounds travel encoded, where each chunk's
 * update lands in an agent's parameter region, and what lengths a landed
 * update may have. */
RAGG_TEST(pull_codec_rounds_area_and_lengths)
{
	struct ragg__plan pl;
	struct ragg__codec_spec s;
	RAGG_CHECK(ragg__plan_init(&pl, 3 * CE + 5, CB, 2) == 0);
	RAGG_CHECK(ragg__plan_params_region_bytes(&pl) == pl.bytes);
	RAGG_CHECK(ragg__codec_parse("onebit", &s) == 0);
	RAGG_CHECK(ragg__plan_set_pull(&pl, &s, 3) == 0);
	RAGG_CHECK(!ragg__plan_pull_coded(&pl, 0) && ragg__plan_pull_coded(&pl, 1) &&
	           ragg__plan_pull_coded(&pl, 2) && !ragg__plan_pull_coded(&pl, 3) &&
	           ragg__plan_pull_coded(&pl, 4) && !ragg__plan_pull_coded(&pl, 6));
	for (size_t c = 0; c < pl.nchunks; c++) {
		RAGG_CHECK(ragg__plan_pull_off(&pl, c) >= pl.bytes);
		RAGG_CHECK(ragg__plan_pull_off(&pl, c) % 64 == 0);
		RAGG_CHECK(ragg__plan_pull_len(&pl, c) ==
		           ragg__codec_max_encoded_size(&s, ragg__plan_chunk_elems(&pl, c)));
		RAGG_CHECK(ragg__plan_pull_off(&pl, c) + ragg__plan_pull_len(&pl, c) <=
		           ragg__plan_params_region_bytes(&pl));
	}
	struct ragg__expect e = { .plan = &pl, .parity = 1, .owner = -1, .sender_ok = true,
		                  .room = true, .in_place_ok = true, .pull_coded = true };
	const char *why;
	RAGG_CHECK(ragg__plan_check_write(&e, 3, 1, ragg__plan_pull_len(&pl, 3), &why) == 0);
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, ragg__plan_chunk_len(&pl, 0), &why) ==
	           RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, 0, &why) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__plan_check_write(&e, 3, 1, ragg__plan_pull_len(&pl, 0), &why) ==
	           RAGG_ERR_PROTO);
	e.pull_coded = false;
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, ragg__plan_chunk_len(&pl, 0), &why) == 0);
	RAGG_CHECK(ragg__plan_set_pull(&pl, NULL, 0) == 0);
	RAGG_CHECK(!ragg__plan_pull_coded(&pl, 1) && ragg__plan_params_region_bytes(&pl) == pl.bytes);
	RAGG_CHECK(ragg__plan_set_pull(&pl, &s, 0) == 0);
	RAGG_CHECK(ragg__plan_pull_coded(&pl, 100) && ragg__plan_pull_coded(&pl, 1000));
}

/* A stage that cannot run in the server's slot turns the fast path off,
 * once, for the whole tensor. */
static void noop_run(struct ragg__stage_ctx *c)
{
	(void)c;
}

RAGG_TEST(stage_without_in_place_disables_fast_path)
{
	static const struct ragg__stage encode = { .name = "encode", .run = noop_run };
	struct ragg__plan pl;
	RAGG_CHECK(ragg__plan_init(&pl, 10, CB, 1) == 0);
	struct ragg__plan_stage list[2] = { { &ragg__stage_sum, NULL }, { &encode, NULL } };
	RAGG_CHECK(ragg__plan_set_stages(&pl, list, 2) == 0);
	RAGG_CHECK(!pl.in_place && pl.nstages == 2);
	list[1].stage = &ragg__stage_scale;
	RAGG_CHECK(ragg__plan_set_stages(&pl, list, 2) == 0);
	RAGG_CHECK(pl.in_place);
	RAGG_CHECK(ragg__plan_set_stages(&pl, list, 0) == -EINVAL);
	RAGG_CHECK(ragg__plan_set_stages(&pl, list, RAGG_PLAN_MAX_STAGES + 1) == -EINVAL);
}

static int check(const struct ragg__expect *e, uint32_t c, int parity, size_t len, const char **why)
{
	*why = "untouched";
	return ragg__plan_check_write(e, c, parity, len, why);
}

RAGG_TEST(validator_refuses_each_field)
{
	struct ragg__plan pl;
	/* 3 chunks over 2 servers: the last one a 5-float tail. */
	RAGG_CHECK(ragg__plan_init(&pl, 2 * CE + 5, CB, 2) == 0);
	const struct ragg__expect good = {
		.plan = &pl,
		.parity = 1,
		.owner = -1,
		.sender_ok = true,
		.room = true,
	};
	const char *why;

	RAGG_CHECK(check(&good, 0, 1, CB, &why) == 0 && !strcmp(why, "untouched"));
	RAGG_CHECK(check(&good, 2, 1, 20, &why) == 0);

	struct ragg__expect e = good;
	e.plan = NULL;
	RAGG_CHECK(check(&e, 0, 1, CB, &why) == RAGG_ERR_PROTO && !strcmp(why, "tensor"));

	e = good;
	e.sender_ok = false;
	RAGG_CHECK(check(&e, 0, 1, CB, &why) == RAGG_ERR_PROTO && !strcmp(why, "sender"));

	RAGG_CHECK(check(&good, 3, 1, CB, &why) == RAGG_ERR_PROTO && !strcmp(why, "chunk"));
	RAGG_CHECK(check(&good, UINT32_MAX, 1, CB, &why) == RAGG_ERR_PROTO &&
	           !strcmp(why, "chunk"));
	e = good;
	e.owner = 1; /* a server that owns chunk 1 only */
	RAGG_CHECK(check(&e, 1, 1, CB, &why) == 0);
	RAGG_CHECK(check(&e, 2, 1, 20, &why) == RAGG_ERR_PROTO && !strcmp(why, "chunk"));

	RAGG_CHECK(check(&good, 0, 0, CB, &why) == RAGG_ERR_PROTO && !strcmp(why, "parity"));

	RAGG_CHECK(check(&good, 0, 1, CB - 4, &why) == RAGG_ERR_PROTO && !strcmp(why, "length"));
	RAGG_CHECK(check(&good, 0, 1, CB + 4, &why) == RAGG_ERR_PROTO && !strcmp(why, "length"));
	RAGG_CHECK(check(&good, 2, 1, CB, &why) == RAGG_ERR_PROTO && !strcmp(why, "length"));
	/* Length 0 (data in place) only where the receiver allows it. */
	RAGG_CHECK(check(&good, 0, 1, 0, &why) == RAGG_ERR_PROTO && !strcmp(why, "length"));
	e = good;
	e.in_place_ok = true;
	RAGG_CHECK(check(&e, 0, 1, 0, &why) == 0);
	RAGG_CHECK(check(&e, 0, 1, CB, &why) == 0);

	e = good;
	e.room = false;
	RAGG_CHECK(check(&e, 0, 1, CB, &why) == RAGG_ERR_PROTO && !strcmp(why, "round"));
}

/* Exactly once: a sender's second write of a chunk in one round is seen
 * (and the validator, told there is no room, refuses it as "round"); the
 * bits are per parity and cleared with the chunk's round. */
RAGG_TEST(seen_once_per_sender_chunk_round)
{
	struct ragg__seen s;
	RAGG_CHECK_OK(ragg__seen_init(&s, 5, 130)); /* three words per chunk */
	for (int snd = 0; snd < 130; snd += 43) {
		RAGG_CHECK(!ragg__seen_has(&s, 1, 3, snd));
		ragg__seen_mark(&s, 1, 3, snd);
		RAGG_CHECK(ragg__seen_has(&s, 1, 3, snd));
		RAGG_CHECK(!ragg__seen_has(&s, 0, 3, snd)); /* other parity */
		RAGG_CHECK(!ragg__seen_has(&s, 1, 2, snd) && !ragg__seen_has(&s, 1, 4, snd));
	}
	RAGG_CHECK(!ragg__seen_has(&s, 1, 3, 1) && !ragg__seen_has(&s, 1, 3, 128));
	ragg__seen_mark(&s, 1, 4, 129);
	ragg__seen_clear(&s, 1, 3);
	for (int snd = 0; snd < 130; snd++)
		RAGG_CHECK(!ragg__seen_has(&s, 1, 3, snd));
	RAGG_CHECK(ragg__seen_has(&s, 1, 4, 129));
	ragg__seen_free(&s);

	struct ragg__plan pl;
	const char *why = NULL;
	RAGG_CHECK_OK(ragg__plan_init(&pl, 10000, 4096, 2));
	struct ragg__expect e = { .plan = &pl, .parity = 1, .owner = -1, .sender_ok = true,
		                  .room = false };
	RAGG_CHECK(ragg__plan_check_write(&e, 0, 1, ragg__plan_contrib_len(&pl, 0, false), &why) ==
	           RAGG_ERR_PROTO);
	RAGG_CHECK(why && strcmp(why, "round") == 0);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
