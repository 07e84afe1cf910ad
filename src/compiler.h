#ifndef RAGG_COMPILER_H
#define RAGG_COMPILER_H

#include <stddef.h>

#define RAGG_EXPORT __attribute__((visibility("default")))
#define ragg__container_of(ptr, type, member)                                                      \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#define RAGG_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ragg__likely(x)    __builtin_expect(!!(x), 1)
#define ragg__unlikely(x)  __builtin_expect(!!(x), 0)

#endif
