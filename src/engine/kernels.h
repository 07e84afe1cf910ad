/*
 * Internal to the kernels: the tables each implementation file fills, and
 * the one tunable they share. Everything else goes through engine.h.
 */
#ifndef RAGG_ENGINE_KERNELS_H
#define RAGG_ENGINE_KERNELS_H

#include <stddef.h>

#include "engine/engine.h"

extern const struct ragg__kernels ragg__kernels_scalar;
extern const struct ragg__kernels ragg__kernels_avx2;
extern const struct ragg__kernels ragg__kernels_avx512;
extern const struct ragg__kernels ragg__kernels_openblas;

/* The portable Adam step, shared by the scalar and openblas tables. */
void ragg__adam_scalar(float *w, float *m, float *v, const float *g,
                       const struct ragg__adam_coef *c, size_t n);

/* Bytes one sum_weighted call touches, (k + 1) * n * 4, from which it
 * writes with streaming (non-temporal) stores. Read relaxed: it changes
 * only in tests and benchmarks. */
extern size_t ragg__kernels_stream_bytes;

/* Inputs summed in registers in one pass. A larger k is summed a block of
 * the output at a time: each group of inputs adds into an accumulator block
 * that stays in L1, so every input is still read once and the output
 * written once. */
#define RAGG_KERNELS_GROUP 8
#define RAGG_KERNELS_BLOCK 2048 /* floats: 8 KiB, well inside any L1d */

#endif
