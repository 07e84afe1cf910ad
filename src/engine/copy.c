/*
 * One source into several destinations. The parameters a fan-out writes
 * are not read again by this thread (the peers read them, later), so the
 * lines go out with streaming stores: a normal store first reads each
 * destination line into the cache, which for a fan-out to k buffers is k
 * reads of memory for nothing. The source is read once, a block at a time,
 * however many destinations there are.
 */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "engine.h"

/* Small enough to stay in L1 with room for the stores' lines. */
#define FANOUT_BLOCK (16u << 10)

static void copy_plain(void *const *dst, int k, size_t dst_off, const unsigned char *s,
                       size_t len)
{
	for (size_t done = 0; done < len; done += FANOUT_BLOCK) {
		size_t n = len - done < FANOUT_BLOCK ? len - done : FANOUT_BLOCK;
		for (int i = 0; i < k; i++)
			if (dst[i])
				memcpy((unsigned char *)dst[i] + dst_off + done, s + done, n);
	}
}

/* Every destination 32-byte aligned at dst_off, whole vectors only. */
__attribute__((target("avx2"))) static void copy_stream(void *const *dst, int k, size_t dst_off,
                                                        const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len; i += 32) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(s + i));
		for (int j = 0; j < k; j++)
			if (dst[j])
				_mm256_stream_si256((__m256i *)((unsigned char *)dst[j] + dst_off + i),
				                    v);
	}
	_mm_sfence();
}

void ragg__copy_fanout(void *const *dst, int k, size_t dst_off, const void *src, size_t len)
{
	const unsigned char *s = src;
	/* One destination: a plain head brings it to the vectors' alignment
	 * (a malloc'd buffer rarely starts on one). */
	size_t head = k == 1 && dst[0] ? (32 - ((uintptr_t)dst[0] + dst_off) % 32) % 32 : 0;
	if (head && len >= head + FANOUT_BLOCK) {
		memcpy((unsigned char *)dst[0] + dst_off, s, head);
		dst_off += head;
		s += head;
		len -= head;
	}
	bool aligned = true;
	for (int i = 0; i < k; i++)
		if (dst[i] && ((uintptr_t)dst[i] + dst_off) % 32)
			aligned = false;
	size_t body = len & ~(size_t)31;
	if (aligned && body >= FANOUT_BLOCK && __builtin_cpu_supports("avx2")) {
		copy_stream(dst, k, dst_off, s, body);
		copy_plain(dst, k, dst_off + body, s + body, len - body);
		return;
	}
	copy_plain(dst, k, dst_off, s, len);
}
