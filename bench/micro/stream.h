/* STREAM's copy and triad (McCalpin), the machine's bandwidth yardstick:
 * plain compiled loops with ordinary stores, as STREAM itself is built. */
#ifndef RAGG_MICRO_STREAM_H
#define RAGG_MICRO_STREAM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* c[i] = a[i] */
void ragg_micro_copy(float *c, const float *a, size_t n);
/* a[i] = b[i] + s * c[i] */
void ragg_micro_triad(float *a, const float *b, const float *c, float s, size_t n);

#ifdef __cplusplus
}
#endif

#endif
