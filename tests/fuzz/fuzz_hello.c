/* libFuzzer target: ragg__hello_decode, the connection's private data,
 * without a job key and with one (the first byte chooses). A hello it
 * accepts must encode back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ragg__hello h;
	uint8_t again[RAGG_HELLO_WIRE_BYTES];
	if (!size)
		return 0;
	const char *key = data[0] & 1 ? "fuzz-key" : NULL;
	data++;
	size--;
	if (ragg__hello_decode(data, size, key, &h))
		return 0;
	if (ragg__hello_encode(&h, again) != size || memcmp(again, data, size) != 0)
		abort();
	return 0;
}
