#ifndef RAGG_CLOCK_H
#define RAGG_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t ragg__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t ragg__now_ms(void)
{
	return ragg__now_us() / 1000u;
}

static inline void ragg__sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

#endif
