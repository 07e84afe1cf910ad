/* One source into several destinations, a block at a time: the block is
 * read from memory once and then from L1 for every further copy. */
#include <string.h>

#include "engine.h"

/* Small enough to stay in L1 with room for the stores' lines. */
#define FANOUT_BLOCK (16u << 10)

void ragg__copy_fanout(void *const *dst, int k, size_t dst_off, const void *src, size_t len)
{
	const unsigned char *s = src;
	for (size_t done = 0; done < len; done += FANOUT_BLOCK) {
		size_t n = len - done < FANOUT_BLOCK ? len - done : FANOUT_BLOCK;
		for (int i = 0; i < k; i++)
			if (dst[i])
				memcpy((unsigned char *)dst[i] + dst_off + done, s + done, n);
	}
}
