/* libFuzzer target: the declaration, as an agent or a server receives it.
 * Input: byte 0 picks the number of servers (1..16), byte 1 the codec
 * (RAGG_COMPRESS), byte 2 a write to check (its chunk and parity), the
 * rest is a control message. A RAGG_MSG_DECLARE that decodes gives the
 * count and chunk size a peer asks for; ragg__plan_init and
 * ragg__plan_set_codec must refuse what they cannot lay out, and for what
 * they accept every offset the roles compute from the plan must stay
 * inside the regions the plan sizes (no size_t wrap-around), the chunks
 * must tile the tensor, the servers must own every chunk once, and the
 * write check must accept exactly the expected length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "proto.h"
#include "stages/stage.h"

/* The stages' tables as the plan sees them (their flags); the stages
 * themselves do not run here. */
const struct ragg__stage ragg__stage_sum = { .name = "sum",
	                                     .flags = RAGG_STAGE_IN_PLACE | RAGG_STAGE_REDUCE };
const struct ragg__stage ragg__stage_codec = { .name = "codec", .flags = RAGG_STAGE_REDUCE };

static const char *const specs[] = { "none", "fp16", "bf16", "onebit", "topk:0.01", "topk:0.5",
	                             "randk:0.25", "qsgd:15", "qsgd:1" };

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			abort();                                                                   \
	} while (0)

/* end = off + len without wrapping, and within size. */
static int inside(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

static void check_chunk(const struct ragg__plan *pl, size_t c)
{
	size_t len = ragg__plan_chunk_len(pl, c);
	CHECK(len > 0 && len <= pl->chunk_bytes && len % sizeof(float) == 0);
	CHECK(inside(ragg__plan_chunk_off(pl, c), len, pl->bytes));
	int s = ragg__plan_owner(pl, c);
	CHECK(s >= 0 && s < pl->servers);
	CHECK(ragg__plan_local(pl, c) < ragg__plan_owned(pl, s));
	CHECK(ragg__plan_global(pl, s, ragg__plan_local(pl, c)) == c);
	for (int coded = 0; coded <= (pl->codec.codec ? 1 : 0); coded++) {
		size_t cl = ragg__plan_contrib_len(pl, c, coded);
		CHECK(cl > 0 && cl <= pl->stride);
		CHECK(inside(ragg__plan_contrib_off(pl, c), cl, ragg__plan_contrib_bytes(pl)));
		for (int parity = 0; parity < 2; parity++) {
			CHECK(inside(ragg__plan_worker_slot_off(pl, parity, c), cl,
			             ragg__plan_worker_slot_bytes(pl)));
			CHECK(inside(ragg__plan_server_slot_off(pl, parity, c), cl,
			             ragg__plan_server_slot_bytes(pl, s)));
		}
	}
	CHECK(inside(ragg__plan_owned_off(pl, c), len, ragg__plan_owned_bytes(pl, s)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ragg__msg m;
	struct ragg__plan pl;
	struct ragg__codec_spec spec;
	if (size < 3 || ragg__msg_decode(data + 3, size - 3, &m) || m.type != RAGG_MSG_DECLARE)
		return 0;
	int servers = 1 + data[0] % 16;
	if (ragg__plan_init(&pl, m.count, m.chunk_bytes, servers))
		return 0;
	if (ragg__codec_parse(specs[data[1] % (sizeof(specs) / sizeof(specs[0]))], &spec))
		abort();
	if (ragg__plan_set_codec(&pl, &spec))
		return 0;
	CHECK(pl.nchunks >= 1 && pl.nchunks <= RAGG_IMM_MAX_CHUNKS);
	CHECK(pl.count == m.count && pl.bytes == pl.count * sizeof(float));
	CHECK((pl.nchunks - 1) * pl.chunk_elems < pl.count &&
	      pl.nchunks * pl.chunk_elems >= pl.count);
	size_t owned = 0;
	for (int s = 0; s < servers; s++)
		owned += ragg__plan_owned(&pl, s);
	CHECK(owned == pl.nchunks);
	/* Every chunk when there are few, else the edges and a sample. */
	if (pl.nchunks <= 4096) {
		for (size_t c = 0; c < pl.nchunks; c++)
			check_chunk(&pl, c);
	} else {
		size_t picks[] = { 0, 1, pl.nchunks / 2, pl.nchunks - 2, pl.nchunks - 1,
			           (size_t)data[2] * 7919 % pl.nchunks };
		for (size_t i = 0; i < sizeof(picks) / sizeof(picks[0]); i++)
			check_chunk(&pl, picks[i]);
	}
	/* The write check: the expected length of the chunk passes, one
	 * byte more or less, or a chunk past the end, does not. */
	uint32_t c = (uint32_t)(data[2] >> 1) % pl.nchunks;
	int parity = data[2] & 1;
	const char *why;
	for (int coded = 0; coded <= (pl.codec.codec ? 1 : 0); coded++) {
		struct ragg__expect e = { .plan = &pl, .parity = parity, .owner = -1,
			                  .sender_ok = true, .room = true, .coded = coded };
		size_t len = ragg__plan_contrib_len(&pl, c, coded);
		CHECK(ragg__plan_check_write(&e, c, parity, len, &why) == 0);
		CHECK(ragg__plan_check_write(&e, c, parity, len + 1, &why) == RAGG_ERR_PROTO);
		CHECK(ragg__plan_check_write(&e, c, parity, len - 1, &why) == RAGG_ERR_PROTO);
		CHECK(ragg__plan_check_write(&e, c, !parity, len, &why) == RAGG_ERR_PROTO);
		CHECK(ragg__plan_check_write(&e, (uint32_t)pl.nchunks, parity, len, &why) ==
		      RAGG_ERR_PROTO);
	}
	return 0;
}
