/* The tcp frame header and region descriptor: encode, decode, and refuse
 * what is malformed. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "harness.h"
#include "tcp.h"
#include "wire.h"

static void roundtrip(const struct ragg__tcp_frame *f)
{
	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	struct ragg__tcp_frame d;
	ragg__tcp_frame_encode(f, hdr);
	RAGG_CHECK_OK(ragg__tcp_frame_decode(hdr, &d));
	RAGG_CHECK(d.version == RAGG__TCP_VERSION && d.type == f->type && d.flags == f->flags &&
	           d.imm == f->imm && d.region == f->region && d.key == f->key &&
	           d.offset == f->offset && d.length == f->length);
}

RAGG_TEST(frame_roundtrip)
{
	struct ragg__tcp_frame f[] = {
		{ .type = RAGG__TCP_HELLO },
		{ .type = RAGG__TCP_HELLO, .length = RAGG_TP_PRIV_MAX },
		{ .type = RAGG__TCP_ACCEPT, .length = 33 },
		{ .type = RAGG__TCP_MSG, .length = RAGG_TP_MSG_MAX },
		{ .type = RAGG__TCP_ERR, .imm = (uint32_t)RAGG_ERR_KEY },
		{ .type = RAGG__TCP_ERR, .imm = (uint32_t)-ECONNREFUSED },
		{ .type = RAGG__TCP_WRITE },
		{ .type = RAGG__TCP_WRITE,
		  .flags = RAGG__TCP_F_IMM,
		  .imm = UINT32_MAX,
		  .region = UINT32_MAX,
		  .key = UINT64_MAX,
		  .offset = UINT64_MAX,
		  .length = RAGG__TCP_MAX_WRITE },
		{ .type = RAGG__TCP_WRITE,
		  .flags = RAGG__TCP_F_IMM,
		  .imm = 0x01020304,
		  .region = 0x05060708,
		  .key = 0x1112131415161718ull,
		  .offset = 0x2122232425262728ull,
		  .length = (uint64_t)256 << 20 },
	};
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(f); i++)
		roundtrip(&f[i]);
}

RAGG_TEST(frame_layout)
{
	/* Little-endian on the wire, whatever the host: peers of either
	 * byte order agree. */
	struct ragg__tcp_frame f = { .type = RAGG__TCP_WRITE,
		                     .flags = RAGG__TCP_F_IMM,
		                     .imm = 0x01020304,
		                     .region = 0x05060708,
		                     .key = 0x1112131415161718ull,
		                     .offset = 0x2122232425262728ull,
		                     .length = 0x31 };
	static const uint8_t want[RAGG__TCP_HDR_SIZE] = {
		'R',
		'G',
		'T',
		'P',
		RAGG__TCP_VERSION,
		RAGG__TCP_WRITE,
		1,
		0,
		0x04,
		0x03,
		0x02,
		0x01,
		0x08,
		0x07,
		0x06,
		0x05,
		0x18,
		0x17,
		0x16,
		0x15,
		0x14,
		0x13,
		0x12,
		0x11,
		0x28,
		0x27,
		0x26,
		0x25,
		0x24,
		0x23,
		0x22,
		0x21,
		0x31,
		0,
		0,
		0,
		0,
		0,
		0,
		0,
	};
	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	ragg__tcp_frame_encode(&f, hdr);
	RAGG_CHECK(memcmp(hdr, want, sizeof(want)) == 0);
}

static int decode_patched(const struct ragg__tcp_frame *f, int at, uint8_t byte)
{
	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	struct ragg__tcp_frame d;
	ragg__tcp_frame_encode(f, hdr);
	if (at >= 0)
		hdr[at] = byte;
	memset(&d, 0xAB, sizeof(d));
	int rc = ragg__tcp_frame_decode(hdr, &d);
	if (rc && rc != RAGG_ERR_VERSION) {
		/* Output untouched on failure. */
		struct ragg__tcp_frame untouched;
		memset(&untouched, 0xAB, sizeof(untouched));
		RAGG_CHECK(memcmp(&d, &untouched, sizeof(d)) == 0);
	}
	return rc;
}

RAGG_TEST(frame_rejects)
{
	const struct ragg__tcp_frame w = { .type = RAGG__TCP_WRITE, .length = 8 };
	const struct ragg__tcp_frame h = { .type = RAGG__TCP_HELLO };

	/* Bad magic, in each byte. */
	for (int i = 0; i < 4; i++)
		RAGG_CHECK(decode_patched(&w, i, 0) == RAGG_ERR_PROTO);
	/* Another version: named as such, and the version reported. */
	uint8_t hdr[RAGG__TCP_HDR_SIZE];
	struct ragg__tcp_frame d;
	ragg__tcp_frame_encode(&h, hdr);
	hdr[4] = RAGG__TCP_VERSION + 1;
	RAGG_CHECK(ragg__tcp_frame_decode(hdr, &d) == RAGG_ERR_VERSION);
	RAGG_CHECK(d.version == RAGG__TCP_VERSION + 1);
	RAGG_CHECK(decode_patched(&h, 4, 0) == RAGG_ERR_VERSION);
	/* Unknown types. */
	RAGG_CHECK(decode_patched(&h, 5, 0) == RAGG_ERR_PROTO);
	RAGG_CHECK(decode_patched(&h, 5, RAGG__TCP_ERR + 1) == RAGG_ERR_PROTO);
	RAGG_CHECK(decode_patched(&h, 5, 255) == RAGG_ERR_PROTO);
	/* Unknown flags. */
	RAGG_CHECK(decode_patched(&w, 6, 2) == RAGG_ERR_PROTO);
	RAGG_CHECK(decode_patched(&w, 7, 0x80) == RAGG_ERR_PROTO);
	RAGG_CHECK(decode_patched(&h, 6, 1) == RAGG_ERR_PROTO);

	/* Lengths past each type's limit, and the 64-bit extremes. */
	struct ragg__tcp_frame f[] = {
		{ .type = RAGG__TCP_HELLO, .length = RAGG_TP_PRIV_MAX + 1 },
		{ .type = RAGG__TCP_ACCEPT, .length = RAGG_TP_PRIV_MAX + 1 },
		{ .type = RAGG__TCP_MSG, .length = RAGG_TP_MSG_MAX + 1 },
		{ .type = RAGG__TCP_ERR, .imm = (uint32_t)-1, .length = 1 },
		{ .type = RAGG__TCP_WRITE, .length = RAGG__TCP_MAX_WRITE + 1 },
		{ .type = RAGG__TCP_WRITE, .length = UINT64_MAX },
		{ .type = RAGG__TCP_MSG, .length = UINT64_MAX },
		/* Fields a type does not use must be zero. */
		{ .type = RAGG__TCP_HELLO, .region = 1 },
		{ .type = RAGG__TCP_HELLO, .key = 1 },
		{ .type = RAGG__TCP_MSG, .offset = 1 },
		{ .type = RAGG__TCP_ACCEPT, .imm = 1 },
		/* An error frame says which error, a real one. */
		{ .type = RAGG__TCP_ERR, .imm = 0 },
		{ .type = RAGG__TCP_ERR, .imm = 5 },
		{ .type = RAGG__TCP_ERR, .imm = (uint32_t)-100000 },
	};
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(f); i++)
		RAGG_CHECKF(decode_patched(&f[i], -1, 0) == RAGG_ERR_PROTO, "case %zu accepted", i);
}

RAGG_TEST(frame_random_bytes)
{
	/* Random headers are refused, never crash, and the rare one that
	 * decodes keeps every field inside its type's limits. */
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 200000; i++) {
		uint8_t hdr[RAGG__TCP_HDR_SIZE];
		for (size_t k = 0; k < sizeof(hdr); k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			hdr[k] = (uint8_t)x;
		}
		if (i & 1) { /* valid magic and version, random rest */
			memcpy(hdr, "RGTP", 4);
			hdr[4] = RAGG__TCP_VERSION;
			hdr[5] = (uint8_t)(1 + (x >> 8) % 6);
		}
		struct ragg__tcp_frame d;
		if (ragg__tcp_frame_decode(hdr, &d) == 0) {
			RAGG_CHECK(d.type >= RAGG__TCP_HELLO && d.type <= RAGG__TCP_ERR);
			RAGG_CHECK(d.length <= RAGG__TCP_MAX_WRITE);
		}
	}
}

RAGG_TEST(rdesc)
{
	struct ragg__tcp_rdesc d = { .region = 0xDEADBEEF,
		                     .key = 0x0123456789ABCDEFull,
		                     .length = (uint64_t)1 << 40 };
	struct ragg_tp_rdesc blob;
	struct ragg__tcp_rdesc e;
	ragg__tcp_rdesc_pack(&d, &blob);
	RAGG_CHECK(blob.len == RAGG__TCP_RDESC_LEN && blob.len <= RAGG_TP_RDESC_MAX);
	RAGG_CHECK_OK(ragg__tcp_rdesc_unpack(&blob, &e));
	RAGG_CHECK(e.region == d.region && e.key == d.key && e.length == d.length);

	struct ragg_tp_rdesc bad = blob;
	bad.len--;
	RAGG_CHECK(ragg__tcp_rdesc_unpack(&bad, &e) == -EINVAL);
	bad = blob;
	bad.blob[0]++;
	RAGG_CHECK(ragg__tcp_rdesc_unpack(&bad, &e) == -EINVAL);
	RAGG_CHECK(ragg__tcp_rdesc_unpack(NULL, &e) == -EINVAL);
}

RAGG_TEST(addr_split)
{
	struct {
		const char *in, *host, *port;
		int rc;
	} c[] = {
		{ "127.0.0.1:80", "127.0.0.1", "80", 0 },
		{ "host.example:1", "host.example", "1", 0 },
		{ "[::1]:5000", "::1", "5000", 0 },
		{ "[fe80::1%eth0]:7", "fe80::1%eth0", "7", 0 },
		{ "[::1]", "::1", "", 0 },
		{ "::1", "::1", "", 0 },
		{ "localhost", "localhost", "", 0 },
		{ ":9", "", "9", 0 },
		{ "", "", "", 0 },
		{ "h:p0rt", NULL, NULL, -EINVAL },
		{ "[::1", NULL, NULL, -EINVAL },
		{ "[::1]x", NULL, NULL, -EINVAL },
		{ "[::1]:x", NULL, NULL, -EINVAL },
	};
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(c); i++) {
		char host[64], port[16];
		int rc = ragg__tcp_addr_split(c[i].in, host, sizeof(host), port, sizeof(port));
		RAGG_CHECKF(rc == c[i].rc, "\"%s\": %d", c[i].in, rc);
		if (!rc)
			RAGG_CHECKF(!strcmp(host, c[i].host) && !strcmp(port, c[i].port),
			            "\"%s\" -> \"%s\" \"%s\"", c[i].in, host, port);
	}
	char small[4], port[16];
	RAGG_CHECK(ragg__tcp_addr_split("longhost:1", small, sizeof(small), port, sizeof(port)) ==
	           -ENAMETOOLONG);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
