/* ragg's own wire: immediates, hello, control messages. */
#include <string.h>

#include "harness.h"
#include "proto.h"

RAGG_TEST(imm_roundtrip)
{
	int parities[] = { 0, 1 };
	int tensors[] = { 0, 1, 77, 127 };
	uint32_t chunks[] = { 0, 1, 4095, RAGG_IMM_MAX_CHUNKS - 1 };
	for (int a = 0; a < 2; a++)
		for (int b = 0; b < 4; b++)
			for (int c = 0; c < 4; c++) {
				uint32_t imm = ragg__imm_encode(parities[a], tensors[b], chunks[c]);
				RAGG_CHECK(ragg__imm_parity(imm) == parities[a]);
				RAGG_CHECK(ragg__imm_tensor(imm) == tensors[b]);
				RAGG_CHECK(ragg__imm_chunk(imm) == chunks[c]);
			}
}

static struct ragg_opts opts_for(int role, int rank, const char *key)
{
	struct ragg_opts o;
	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	o.role = role;
	o.rank = rank;
	o.workers = 8;
	o.agents = 2;
	o.servers = 2;
	strcpy(o.job_key, key);
	return o;
}

RAGG_TEST(hello_roundtrip_and_auth)
{
	struct ragg_opts o = opts_for(RAGG_ROLE_WORKER, 5, "secret");
	struct ragg__hello h, d;
	uint8_t buf[RAGG_HELLO_WIRE_BYTES];
	ragg__hello_init(&h, &o);
	size_t n = ragg__hello_encode(&h, buf);
	RAGG_CHECK(n == RAGG_HELLO_WIRE_BYTES);
	RAGG_CHECK(n <= RAGG_TP_PRIV_MAX);
	RAGG_CHECK_OK(ragg__hello_decode(buf, n, "secret", &d));
	RAGG_CHECK(d.role == RAGG_ROLE_WORKER && d.rank == 5 && d.workers == 8 && d.agents == 2 &&
	           d.servers == 2);
	/* A wrong key, a missing key, or any flipped byte fails the proof. */
	RAGG_CHECK(ragg__hello_decode(buf, n, "other", &d) == RAGG_ERR_AUTH);
	RAGG_CHECK(ragg__hello_decode(buf, n, "", &d) == RAGG_ERR_AUTH);
	buf[8] ^= 1; /* rank */
	RAGG_CHECK(ragg__hello_decode(buf, n, "secret", &d) == RAGG_ERR_AUTH);
}

RAGG_TEST(hello_rejects_malformed)
{
	struct ragg_opts o = opts_for(RAGG_ROLE_AGENT, 1, "");
	struct ragg__hello h, d;
	uint8_t buf[RAGG_HELLO_WIRE_BYTES + 4];
	ragg__hello_init(&h, &o);
	size_t n = ragg__hello_encode(&h, buf);
	RAGG_CHECK_OK(ragg__hello_decode(buf, n, "", &d));
	RAGG_CHECK(ragg__hello_decode(buf, n - 1, "", &d) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__hello_decode(buf, n + 1, "", &d) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__hello_decode(buf, 3, "", &d) == RAGG_ERR_PROTO);
	uint8_t bad[RAGG_HELLO_WIRE_BYTES];
	memcpy(bad, buf, n);
	bad[0] ^= 0xff; /* magic */
	RAGG_CHECK(ragg__hello_decode(bad, n, "", &d) == RAGG_ERR_PROTO);
	memcpy(bad, buf, n);
	bad[4] = 99; /* version */
	RAGG_CHECK(ragg__hello_decode(bad, n, "", &d) == RAGG_ERR_VERSION);
	memcpy(bad, buf, n);
	bad[6] = 9; /* role */
	RAGG_CHECK(ragg__hello_decode(bad, n, "", &d) == RAGG_ERR_PROTO);
}

RAGG_TEST(msg_roundtrip_and_rejects)
{
	struct ragg__msg m = { .type = RAGG_MSG_DECLARE,
		               .tensor = 3,
		               .status = -5,
		               .count = 123456789ull,
		               .chunk_bytes = 4 << 20,
		               .name_hash = 0x0123456789abcdefull };
	m.rdesc.len = 20;
	for (int i = 0; i < 20; i++)
		m.rdesc.blob[i] = (uint8_t)(i * 7);
	uint8_t buf[RAGG_MSG_WIRE_MAX];
	size_t n = ragg__msg_encode(&m, buf);
	struct ragg__msg d;
	RAGG_CHECK_OK(ragg__msg_decode(buf, n, &d));
	RAGG_CHECK(d.type == m.type && d.tensor == 3 && d.status == -5 && d.count == m.count &&
	           d.chunk_bytes == m.chunk_bytes && d.name_hash == m.name_hash &&
	           d.rdesc.len == 20 && memcmp(d.rdesc.blob, m.rdesc.blob, 20) == 0);
	RAGG_CHECK(ragg__msg_decode(buf, n - 1, &d) == RAGG_ERR_PROTO);
	RAGG_CHECK(ragg__msg_decode(buf, 5, &d) == RAGG_ERR_PROTO);
	uint8_t bad[RAGG_MSG_WIRE_MAX];
	memcpy(bad, buf, n);
	bad[0] = 0;
	RAGG_CHECK(ragg__msg_decode(bad, n, &d) == RAGG_ERR_PROTO);
	memcpy(bad, buf, n);
	bad[0] = 200;
	RAGG_CHECK(ragg__msg_decode(bad, n, &d) == RAGG_ERR_PROTO);
	memcpy(bad, buf, n);
	bad[1] = 200; /* tensor id beyond the immediate's 7 bits */
	RAGG_CHECK(ragg__msg_decode(bad, n, &d) == RAGG_ERR_PROTO);
	memcpy(bad, buf, n);
	bad[30] = RAGG_TP_RDESC_MAX + 1; /* descriptor length */
	RAGG_CHECK(ragg__msg_decode(bad, n, &d) == RAGG_ERR_PROTO);
}

/* The in-place messages: GRAD_AT carries the gradient buffer's descriptor
 * and the announcement number, GRAD_MAPPED the number it answers;
 * PARAMS_AT the agent's parameter region, PARAMS_READY a chunk's immediate. */
RAGG_TEST(inplace_msgs_roundtrip)
{
	struct ragg__msg ms[4] = {
		{ .type = RAGG_MSG_GRAD_AT, .tensor = 127, .count = UINT64_MAX - 1 },
		{ .type = RAGG_MSG_GRAD_MAPPED, .tensor = 5, .count = 3 },
		{ .type = RAGG_MSG_PARAMS_AT, .tensor = 0 },
		{ .type = RAGG_MSG_PARAMS_READY, .tensor = 9, .count = 0x89000002u },
	};
	ms[0].rdesc.len = RAGG_TP_RDESC_MAX;
	for (int i = 0; i < RAGG_TP_RDESC_MAX; i++)
		ms[0].rdesc.blob[i] = (uint8_t)(0xff - i);
	ms[2].rdesc.len = 22;
	for (int i = 0; i < 22; i++)
		ms[2].rdesc.blob[i] = (uint8_t)(i * 11 + 1);
	for (size_t k = 0; k < 4; k++) {
		const struct ragg__msg *m = &ms[k];
		uint8_t buf[RAGG_MSG_WIRE_MAX];
		size_t n = ragg__msg_encode(m, buf);
		RAGG_CHECK(n <= RAGG_MSG_WIRE_MAX && n <= RAGG_TP_MSG_MAX);
		struct ragg__msg d;
		memset(&d, 0xcc, sizeof(d));
		RAGG_CHECK_OK(ragg__msg_decode(buf, n, &d));
		RAGG_CHECKF(d.type == m->type && d.tensor == m->tensor && d.status == 0 &&
		                d.count == m->count && d.chunk_bytes == 0 && d.name_hash == 0 &&
		                d.rdesc.len == m->rdesc.len &&
		                memcmp(d.rdesc.blob, m->rdesc.blob, m->rdesc.len) == 0,
		            "message type %d", m->type);
		RAGG_CHECK(ragg__msg_decode(buf, n - 1, &d) == RAGG_ERR_PROTO);
	}
	/* All inside the accepted range (later types may follow them). */
	RAGG_CHECK(RAGG_MSG_GRAD_AT > RAGG_MSG_BYE && RAGG_MSG_LAST >= RAGG_MSG_PARAMS_READY);
}

/* A job-wide setting travels as a name hash and a 64-bit value. */
RAGG_TEST(setting_msg_roundtrip)
{
	struct ragg__msg m = { .type = RAGG_MSG_SETTING,
		               .count = 0x3f847ae147ae147bull, /* 0.01 as a double */
		               .chunk_bytes = 8,
		               .name_hash = ragg__name_hash("RAGG_LR") };
	uint8_t buf[RAGG_MSG_WIRE_MAX];
	size_t n = ragg__msg_encode(&m, buf);
	RAGG_CHECK(n <= RAGG_TP_MSG_MAX);
	struct ragg__msg d;
	RAGG_CHECK_OK(ragg__msg_decode(buf, n, &d));
	RAGG_CHECK(d.type == RAGG_MSG_SETTING && d.count == m.count && d.chunk_bytes == 8 &&
	           d.name_hash == m.name_hash);
	RAGG_CHECK(ragg__name_hash("RAGG_LR") != ragg__name_hash("RAGG_EPS"));
	RAGG_CHECK(ragg__msg_decode(buf, n - 1, &d) == RAGG_ERR_PROTO);
}

RAGG_TEST(msg_type_past_last_refused)
{
	struct ragg__msg m = { .type = RAGG_MSG_GRAD_MAPPED, .tensor = 1, .count = 1 };
	uint8_t buf[RAGG_MSG_WIRE_MAX];
	size_t n = ragg__msg_encode(&m, buf);
	struct ragg__msg d = { .type = 0 };
	RAGG_CHECK_OK(ragg__msg_decode(buf, n, &d));
	const int past[] = { RAGG_MSG_LAST + 1, RAGG_MSG_LAST + 2, 0x7f, 0xff };
	for (size_t i = 0; i < sizeof(past) / sizeof(past[0]); i++) {
		buf[0] = (uint8_t)past[i];
		memset(&d, 0, sizeof(d));
		RAGG_CHECKF(ragg__msg_decode(buf, n, &d) == RAGG_ERR_PROTO, "type %d accepted",
		            past[i]);
		/* Refused means the output is left alone. */
		RAGG_CHECK(d.type == 0 && d.count == 0);
	}
}

/* An abort carries the aborting role and rank and up to
 * RAGG_ABORT_REASON_MAX bytes of reason; a longer reason is cut when
 * encoded and refused when decoded, as is one naming no role. */
RAGG_TEST(abort_msg_roundtrip_and_bounds)
{
	char reason[RAGG_ABORT_REASON_MAX + 50];
	memset(reason, 'x', sizeof(reason));
	memcpy(reason, "disk full", 9);
	struct ragg__msg m = { .type = RAGG_MSG_ABORT,
		               .tensor = RAGG_ROLE_WORKER,
		               .status = RAGG_ERR_ABORTED,
		               .count = 3,
		               .text = reason,
		               .text_len = 9 };
	uint8_t buf[RAGG_MSG_WIRE_MAX];
	size_t n = ragg__msg_encode(&m, buf);
	struct ragg__msg d;
	RAGG_CHECK_OK(ragg__msg_decode(buf, n, &d));
	RAGG_CHECK(d.type == RAGG_MSG_ABORT && d.tensor == RAGG_ROLE_WORKER && d.count == 3 &&
	           d.status == RAGG_ERR_ABORTED && d.text_len == 9 &&
	           memcmp(d.text, "disk full", 9) == 0);
	RAGG_CHECK(ragg__msg_decode(buf, n - 1, &d) == RAGG_ERR_PROTO);
	/* The longest: cut to the bound, within one transport message. */
	m.text_len = (uint8_t)(RAGG_ABORT_REASON_MAX + 40);
	n = ragg__msg_encode(&m, buf);
	RAGG_CHECK(n == RAGG_MSG_HEAD_BYTES + RAGG_ABORT_REASON_MAX && n <= RAGG_TP_MSG_MAX);
	RAGG_CHECK_OK(ragg__msg_decode(buf, n, &d));
	RAGG_CHECK(d.text_len == RAGG_ABORT_REASON_MAX);
	uint8_t big[RAGG_MSG_WIRE_MAX + 1];
	memcpy(big, buf, n);
	big[RAGG_MSG_HEAD_BYTES - 1] = RAGG_ABORT_REASON_MAX + 1;
	big[n] = 'x';
	RAGG_CHECK(ragg__msg_decode(big, n + 1, &d) == RAGG_ERR_PROTO);
	memcpy(big, buf, n);
	big[1] = 0; /* no role */
	RAGG_CHECK(ragg__msg_decode(big, n, &d) == RAGG_ERR_PROTO);
	memcpy(big, buf, n);
	big[1] = RAGG_ROLE_SERVER + 1;
	RAGG_CHECK(ragg__msg_decode(big, n, &d) == RAGG_ERR_PROTO);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
