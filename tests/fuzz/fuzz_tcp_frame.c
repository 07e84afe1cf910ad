/* libFuzzer target: the tcp transport's frame header, as the receive path
 * meets it: the precheck on every prefix, then the decoder on a whole
 * header. A header the decoder accepts must encode back to the same
 * bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transports/tcp/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t hdr[RAGG__TCP_HDR_SIZE], again[RAGG__TCP_HDR_SIZE];
	struct ragg__tcp_frame f;
	size_t got = size < sizeof(hdr) ? size : sizeof(hdr);
	memcpy(hdr, data, got);
	for (size_t i = 0; i <= got; i++)
		if (ragg__tcp_frame_precheck(hdr, i))
			return 0;
	if (got < sizeof(hdr) || ragg__tcp_frame_decode(hdr, &f))
		return 0;
	ragg__tcp_frame_encode(&f, again);
	if (memcmp(again, hdr, sizeof(hdr)) != 0)
		abort();
	return 0;
}
