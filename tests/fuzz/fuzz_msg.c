/* libFuzzer target: ragg__msg_decode, the control messages. A message it
 * accepts must encode back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ragg__msg m;
	uint8_t again[RAGG_MSG_WIRE_MAX];
	if (ragg__msg_decode(data, size, &m))
		return 0;
	if (ragg__msg_encode(&m, again) != size || memcmp(again, data, size) != 0)
		abort();
	return 0;
}
