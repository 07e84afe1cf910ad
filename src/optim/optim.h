/*
 * The server's optimizers: a table of entries, one file each. An entry
 * names its per-element state vectors (momentum's v, Adam's m and v) and
 * steps a block of the parameters w with the averaged gradient g; the
 * server allocates the state on the engine's memory, zeroed, and calls
 * `step` on the engine thread that owns the chunk, a block at a time.
 *
 * Adding an optimizer: one file here with its entry (and, if it needs one,
 * a kernel in src/engine), one line in optim.c's table, one value of enum
 * ragg_optimizer, its name in RAGG_OPTIMIZER's parser and in ragg(7).
 */
#ifndef RAGG_OPTIM_H
#define RAGG_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include <ragg/ragg.h>

#include "engine/engine.h"

/* The most state vectors any entry keeps per element. */
#define RAGG_OPTIM_MAX_STATE 2

/* Capability: step is exactly w -= conf->lr * g, so the server may fold
 * it into the weighted sum that forms g (the parameters are one more input,
 * with weight 1, and each contribution's weight is scaled by -lr): one pass
 * over the chunk instead of two, and no gradient scratch is read. */
#define RAGG_OPTIM_FUSED_SUM 0x1u

struct ragg__optim;

/* Hyperparameters, read once (ragg__optim_conf_read) and the same for every
 * chunk of the process. */
struct ragg__optim_conf {
	const struct ragg__optim *optim;
	float lr;
	float momentum; /* momentum */
	float beta1, beta2, eps; /* adam, adamw */
	float weight_decay; /* adam: added to g (L2); adamw: decoupled, w -= lr*wd*w */
};

/* n elements of one chunk: w, the entry's state vectors, and g. */
struct ragg__optim_block {
	float *w;
	float *state[RAGG_OPTIM_MAX_STATE];
	const float *g;
	size_t n;
};

struct ragg__optim {
	const char *name; /* as in RAGG_OPTIMIZER */
	enum ragg_optimizer id;
	int nstate; /* float state vectors per element, <= RAGG_OPTIM_MAX_STATE */
	unsigned flags; /* RAGG_OPTIM_* capabilities */
	/* One update of the block, the chunk's step-th (1 for the first), with
	 * the kernels k. Never fails and never allocates. */
	void (*step)(const struct ragg__optim_conf *conf, const struct ragg__kernels *k,
	             const struct ragg__optim_block *b, uint64_t step);
};

extern const struct ragg__optim ragg__optim_sgd;
extern const struct ragg__optim ragg__optim_momentum;
extern const struct ragg__optim ragg__optim_adam;
extern const struct ragg__optim ragg__optim_adamw;

/* The table, in RAGG_OPTIMIZER's order; *n gets its length. */
const struct ragg__optim *const *ragg__optim_table(size_t *n);

/* The entry named `name` (case-insensitive) or numbered `id`; NULL if none. */
const struct ragg__optim *ragg__optim_find(const char *name);
const struct ragg__optim *ragg__optim_by_id(enum ragg_optimizer id);

/* The optimizer of o (o->optimizer, o->lr, o->momentum) with the
 * hyperparameters RAGG_BETA1, RAGG_BETA2, RAGG_EPS, RAGG_WEIGHT_DECAY.
 * 0, or RAGG_ERR_CONFIG (logged, naming the setting); *out is written only
 * on success. */
int ragg__optim_conf_read(const struct ragg_opts *o, struct ragg__optim_conf *out);

/* Adam's per-step scalars for the kernels (bias corrections of step t). */
void ragg__optim_adam_coef(const struct ragg__optim_conf *conf, uint64_t t, int decoupled,
                           struct ragg__adam_coef *out);

#endif
