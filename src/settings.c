#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compiler.h"
#include "settings.h"
#include "log.h"
#include "optim/optim.h"
#include "stale.h"
#include "plan.h"
#include "privacy/dp_job.h"
#include "compress/codec.h"
#include "../transports/util/settings.h"

#define SPEC_SIZE(lo, hi)                                                                          \
	{                                                                                          \
		.kind = RAGG__TP_SIZE, .width = sizeof(size_t), .min = (lo), .max = (hi)           \
	}
#define SPEC_INT(lo, hi, fl)                                                                       \
	{                                                                                          \
		.kind = RAGG__TP_INT, .width = sizeof(long), .min = (lo), .max = (hi),             \
		.flags = (fl)                                                                      \
	}
#define SPEC_DOUBLE(lo, hi, fl)                                                                    \
	{                                                                                          \
		.kind = RAGG__TP_DOUBLE, .width = sizeof(double), .dmin = (lo), .dmax = (hi),      \
		.flags = (fl)                                                                      \
	}
#define SPEC_CHOICE(list)                                                                          \
	{                                                                                          \
		.kind = RAGG__TP_CHOICE, .width = sizeof(long), .choices = (list)                  \
	}
#define SPEC_TEXT(cap)                                                                             \
	{                                                                                          \
		.kind = RAGG__TP_STRING, .width = (cap)                                            \
	}
#define FIELD(kind, member) RAGG__OPT_##kind, offsetof(struct ragg_opts, member)
#define EXT                 RAGG__OPT_EXT, 0
#define JOB                 RAGG__SETTING_JOB_WIDE

/* Text rows kept in ext hold at most this much (with the NUL). */
#define TEXT_MAX 256

const struct ragg__setting ragg__settings[] = {
	{ "RAGG_ROLE", "none", SPEC_CHOICE("none|worker|agent|server"), 0, FIELD(INT, role),
	  "worker, agent or server (none: from the launcher's rank, see below)" },
	{ "RAGG_RANK", "0", SPEC_INT(0, 65534, 0), 0, FIELD(INT, rank), "rank within the role" },
	/* The hello carries the job's shape in 16 bits each. */
	{ "RAGG_WORKERS", "1", SPEC_INT(1, 65535, 0), 0, FIELD(INT, workers),
	  "number of workers in the job" },
	{ "RAGG_AGENTS", "1", SPEC_INT(1, 1 << 12, 0), 0, FIELD(INT, agents),
	  "number of agents in the job" },
	{ "RAGG_SERVERS", "1", SPEC_INT(1, 1 << 12, 0), 0, FIELD(INT, servers),
	  "number of server shards in the job" },
	{ "RAGG_ROOT", "127.0.0.1:29500", SPEC_TEXT(sizeof(((struct ragg_opts *)0)->root)), 0,
	  FIELD(TEXT, root), "rendezvous host:port, served by server 0" },
	{ "RAGG_CHECK_GRADIENT", "off", SPEC_CHOICE("off|on"), 0, EXT,
	  "on: a worker reads each gradient once before pushing it and refuses one with a NaN or "
	  "an infinity (RAGG_ERR_NONFINITE); off: only the agents' check in their sums" },
	{ "RAGG_ON_NONFINITE", "refuse", SPEC_CHOICE("refuse|skip"), JOB, EXT,
	  "what an agent does with a worker's gradient or weight that is NaN or infinite: refuse "
	  "(the job fails, RAGG_ERR_NONFINITE); skip (that worker is left out of the chunk's sum, "
	  "logged and counted once per round)" },
	{ "RAGG_ROOT_FD", "auto", SPEC_INT(0, 1 << 20, RAGG__TP_AUTO), 0, EXT,
	  "server 0: serve the rendezvous on this inherited listening socket (a launcher bound it, "
	  "to port 0, and put its port in RAGG_ROOT) instead of binding RAGG_ROOT itself; auto: bind" },
	{ "RAGG_BOOTSTRAP", "auto", SPEC_CHOICE("auto|rendezvous|pmix"), 0, EXT,
	  "how endpoints are exchanged: rendezvous (at RAGG_ROOT), pmix (the launcher's), or auto "
	  "(pmix under a PMIx launcher unless RAGG_ROOT is set)" },
	{ "RAGG_LISTEN_HOST", "", SPEC_TEXT(TEXT_MAX), 0, EXT,
	  "address agents and servers listen on (default: the one that reaches RAGG_ROOT; with "
	  "pmix, every address)" },
	{ "RAGG_TRANSPORT", "auto", SPEC_TEXT(sizeof(((struct ragg_opts *)0)->transport)), 0,
	  FIELD(TEXT, transport),
	  "tcp, verbs, shm, a list in order of preference (\"shm,tcp\"), or auto (shm to same-host "
	  "peers, then verbs where an RDMA port is active, then tcp)" },
	{ "RAGG_TRANSPORT_WORKERS", "", SPEC_TEXT(sizeof(((struct ragg_opts *)0)->transport)), 0,
	  EXT, "transports between workers and agents (default: RAGG_TRANSPORT)" },
	{ "RAGG_TRANSPORT_SERVERS", "", SPEC_TEXT(sizeof(((struct ragg_opts *)0)->transport)), 0,
	  EXT, "transports between agents and servers (default: RAGG_TRANSPORT)" },
	{ "RAGG_CHUNK_BYTES", "4M", SPEC_SIZE(4096, 1LL << 40), JOB, FIELD(SIZE, chunk_bytes),
	  "model partition size (suffixes K, M, G; a multiple of 4)" },
	{ "RAGG_LR", "0.01", SPEC_DOUBLE(0, 1e9, 0), JOB, FIELD(FLOAT, lr),
	  "learning rate of the server's optimizer" },
	{ "RAGG_OPTIMIZER", "sgd", SPEC_CHOICE("sgd|momentum|adam|adamw"), JOB,
	  FIELD(INT, optimizer), "sgd, momentum, adam or adamw" },
	{ "RAGG_MOMENTUM", "0.9", SPEC_DOUBLE(0, 1, 0), JOB, FIELD(FLOAT, momentum),
	  "momentum coefficient (RAGG_OPTIMIZER=momentum)" },
	{ "RAGG_BETA1", "0.9", SPEC_DOUBLE(0, 1, RAGG__TP_OPEN_MAX), JOB, EXT,
	  "decay of Adam's first moment (adam, adamw)" },
	{ "RAGG_BETA2", "0.999", SPEC_DOUBLE(0, 1, RAGG__TP_OPEN_MAX), JOB, EXT,
	  "decay of Adam's second moment (adam, adamw)" },
	{ "RAGG_EPS", "1e-8", SPEC_DOUBLE(1e-30, 1, 0), JOB, EXT,
	  "term added to Adam's denominator (adam, adamw)" },
	{ "RAGG_WEIGHT_DECAY", "0", SPEC_DOUBLE(0, 1e9, 0), JOB, EXT,
	  "weight decay: adam adds wd*w to the gradient, adamw decays w by lr*wd (adam, adamw)" },
	{ "RAGG_COMPRESS", "none", SPEC_TEXT(32), JOB, EXT,
	  "push codec, name[:param]: none, fp16, bf16, topk:r, randk:r, onebit or qsgd:s (see "
	  "ragg-compress(7)); workers encode, agents decode, sum and encode, servers decode" },
	{ "RAGG_WORKER_COMPRESS", "same", SPEC_CHOICE("same|none|fp16|bf16"), JOB, EXT,
	  "codec of the worker -> agent hop: same (RAGG_COMPRESS's), none (the workers' floats), "
	  "fp16 or bf16, with error feedback as RAGG_COMPRESS_EF says (ragg-compress(7))" },
	{ "RAGG_COMPRESS_EF", "auto", SPEC_CHOICE("auto|on|off"), JOB, EXT,
	  "error feedback for RAGG_COMPRESS at workers and agents, and RAGG_COMPRESS_PULL at servers "
	  "(auto: on for the lossy codecs)" },
	{ "RAGG_COMPRESS_PULL", "none", SPEC_TEXT(32), JOB, EXT,
	  "pull codec, as RAGG_COMPRESS: servers send each round's update encoded, with their own "
	  "error feedback (RAGG_COMPRESS_EF), and every replica applies the decoded update "
	  "(ragg-compress(7))" },
	{ "RAGG_COMPRESS_RESYNC", "100", SPEC_INT(0, 2147483647L, 0), JOB, EXT,
	  "with RAGG_COMPRESS_PULL, every this many rounds the parameters travel exact, the "
	  "servers' residual applied (0: only round 0)" },
	{ "RAGG_DP", "off", SPEC_CHOICE("off|on"), JOB, EXT,
	  "differential privacy at the agents: clipping and Gaussian noise (ragg-privacy(7))" },
	{ "RAGG_DP_CLIP", "1", SPEC_DOUBLE(1e-30, 1e30, 0), JOB, EXT,
	  "bound C on the L2 norm of a worker's weighted gradient over a tensor (RAGG_DP=on)" },
	{ "RAGG_DP_NOISE", "1", SPEC_DOUBLE(0, 1e6, 0), JOB, EXT,
	  "noise multiplier z: each agent adds N(0, (z C)^2) to every element (RAGG_DP=on)" },
	{ "RAGG_DP_DELTA", "1e-5", SPEC_DOUBLE(1e-300, 1, RAGG__TP_OPEN_MAX), JOB,
	  EXT, "delta at which ragg_dp_spent reports epsilon (RAGG_DP=on)" },
	{ "RAGG_DP_SAMPLE_RATE", "1", SPEC_DOUBLE(0, 1, 0), JOB, EXT,
	  "Poisson sampling rate q the accountant assumes for each round (RAGG_DP=on)" },
	{ "RAGG_DP_EPSILON", "0", SPEC_DOUBLE(0, 1000, 0), JOB, EXT,
	  "> 0: the noise is the one that makes each round (epsilon, RAGG_DP_DELTA)-DP by "
	  "RAGG_DP_MECHANISM, in place of RAGG_DP_NOISE (RAGG_DP=on)" },
	{ "RAGG_DP_MECHANISM", "analytic", SPEC_CHOICE("analytic|classic"), JOB, EXT,
	  "how RAGG_DP_EPSILON sizes the noise: analytic (Balle and Wang, any epsilon) or "
	  "classic (sqrt(2 ln(1.25/delta))/epsilon, epsilon < 1 only)" },
	{ "RAGG_DP_MAX_EPSILON", "0", SPEC_DOUBLE(0, 1e6, 0), JOB, EXT,
	  "> 0: a worker refuses a round after which the epsilon spent would exceed it "
	  "(RAGG_ERR_BUDGET; RAGG_DP=on)" },
	{ "RAGG_SECAGG", "off", SPEC_CHOICE("off|on"), JOB, EXT,
	  "secure aggregation: workers push masked fixed-point contributions, agents learn only "
	  "their sum (ragg-privacy(7))" },
	{ "RAGG_SECAGG_RANGE", "64", SPEC_DOUBLE(1e-6, 1e6, 0), JOB, EXT,
	  "RAGG_SECAGG=on: each element of a worker's weight times gradient is clipped to "
	  "[-range, range] before its fixed-point encoding" },
	{ "RAGG_SECAGG_NEIGHBOURS", "0", SPEC_INT(0, 65534, 0), JOB, EXT,
	  "RAGG_SECAGG=on: each worker masks with the k workers nearest it on a ring of its "
	  "agent's workers, k/2 on each side (SecAgg+); 0: with every other worker" },
	{ "RAGG_SECAGG_THRESHOLD", "0", SPEC_INT(0, 255, 0), JOB, EXT,
	  "RAGG_SECAGG=on with RAGG_ON_WORKER_LOSS=continue: t, the shares of a worker's self "
	  "mask that unmask it, and the fewest workers of an agent a round can go on with "
	  "(2 <= t <= its workers; 0: half its workers plus one)" },
	{ "RAGG_SECAGG_TEST_SWAP", "-1", SPEC_INT(-1, 65534, 0), 0, EXT,
	  "testing only: an agent relays a key of its own in place of this worker's secure "
	  "aggregation key (-1: none)" },
	{ "RAGG_SECAGG_TEST_REASK", "off", SPEC_CHOICE("off|on"), 0, EXT,
	  "testing only: an agent asks its workers a second time to unmask a round of secure "
	  "aggregation's dropout recovery, its first worker said lost" },
	{ "RAGG_SECAGG_TEST_EXIT_UNMASK", "0", SPEC_INT(0, INT32_MAX, 0), 0, EXT,
	  "testing only: a worker exits at once (as if lost) when its agent asks it to unmask "
	  "this round of secure aggregation's dropout recovery (0: never)" },
	{ "RAGG_TEST_SLOT_DUMP", "", SPEC_TEXT(TEXT_MAX), 0, EXT,
	  "testing only: an agent writes chunk 0 of each worker's contribution, as it lies in "
	  "its memory when it lands, to PREFIX.wRANK.rROUND" },
	{ "RAGG_ON_WORKER_LOSS", "fail", SPEC_CHOICE("fail|continue"), JOB, EXT,
	  "a worker that finalizes or is lost while the job goes on: fail (every process gets "
	  "RAGG_ERR_PEER_LOST naming it) or continue (rounds go on with the survivors' weighted "
	  "mean)" },
	{ "RAGG_STALENESS", "0", SPEC_TEXT(16), JOB, EXT,
	  "bounded staleness s: 0 synchronous rounds; s >= 1: the pull after the push of clock t "
	  "returns parameters at version >= t + 1 - s; inf: no bound (ragg(7))" },
	{ "RAGG_TIMEOUT_MS", "60000", SPEC_INT(1, 86400000L, 0), 0, FIELD(INT, timeout_ms),
	  "longest a wait goes without progress before it fails, in milliseconds" },
	{ "RAGG_SERVE_TIMEOUT_MS", "3600000", SPEC_INT(1, 2147483647L, 0), 0,
	  FIELD(INT, serve_timeout_ms),
	  "longest an agent or server waits without any traffic (workers may pause to evaluate)" },
	{ "RAGG_HANDSHAKE_MS", "0", SPEC_INT(0, 86400000L, 0), 0, EXT,
	  "longest a connection's set-up (hello and handshake) may take; 0: RAGG_TIMEOUT_MS" },
	{ "RAGG_POLL", "adaptive", SPEC_CHOICE("adaptive|busy|block"), 0, FIELD(INT, poll),
	  "busy, block or adaptive (spin RAGG_SPIN_US, then block)" },
	{ "RAGG_SPIN_US", "50", SPEC_INT(0, 1000000, 0), 0, FIELD(INT, spin_us),
	  "adaptive polling: spin this long before blocking" },
	{ "RAGG_JOB_KEY", "", SPEC_TEXT(sizeof(((struct ragg_opts *)0)->job_key)),
	  RAGG__SETTING_SECRET, FIELD(TEXT, job_key),
	  "shared secret every connection proves knowledge of" },
	{ "RAGG_SEAL", "off", SPEC_CHOICE("off|on"), JOB, EXT,
	  "on: seal every tcp frame with an AEAD under the handshake's session keys" },
	{ "RAGG_LOG", "none", SPEC_CHOICE("none|error|warn|info|debug"), 0, EXT,
	  "none, error, warn, info or debug (to standard error)" },
	{ "RAGG_KERNELS", "auto", SPEC_TEXT(32), 0, EXT,
	  "summing kernels: auto, avx512, avx2, scalar or openblas" },
	{ "RAGG_AGG_THREADS", "auto", SPEC_INT(0, 1024, RAGG__TP_AUTO), 0, EXT,
	  "aggregation threads per agent or server (0: inline; auto: one per core of the node, "
	  "at most 8); on a worker with RAGG_SECAGG=on, its encoding and masking threads" },
	{ "RAGG_CPUS", "", SPEC_TEXT(TEXT_MAX), 0, EXT,
	  "cpus for aggregation threads (hwloc list, e.g. 0-3); default: the device's NUMA node" },
	{ NULL, NULL, { 0 }, 0, 0, 0, NULL },
};

const struct ragg__setting *ragg__setting_find(const char *name)
{
	if (!name)
		return NULL;
	for (const struct ragg__setting *s = ragg__settings; s->name; s++)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

const char *ragg__setting_env(const struct ragg__setting *s)
{
	return ragg__tp_value_or_default(getenv(s->name), s->def);
}

static void log_error(void *arg, const char *msg)
{
	(void)arg;
	ragg__error("%s", msg);
}

/*
 * The opaque area: entries "RAGG_<FIELD>=value\0" one after another, ended
 * by an empty one, so all zero is the empty list. Only rows without a
 * public field are kept there, and only when not at their default.
 */
static const char *ext_find(const struct ragg_opts *o, const char *name)
{
	const char *e = (const char *)o->ext, *end = e + sizeof(o->ext);
	size_t n = strlen(name);
	while (e < end && *e) {
		size_t len = strnlen(e, (size_t)(end - e));
		if (len == (size_t)(end - e))
			return NULL; /* not terminated: not filled by the library */
		if (len > n && e[n] == '=' && strncmp(e, name, n) == 0)
			return e + n + 1;
		e += len + 1;
	}
	return NULL;
}

static size_t ext_used(const struct ragg_opts *o)
{
	const char *e = (const char *)o->ext, *end = e + sizeof(o->ext);
	while (e < end && *e)
		e += strnlen(e, (size_t)(end - e)) + 1;
	return e < end ? (size_t)(e - (const char *)o->ext) : sizeof(o->ext);
}

static int ext_put(struct ragg_opts *o, const struct ragg__setting *s, const char *text)
{
	unsigned char tmp[sizeof(o->ext)];
	size_t n = 0, nlen = strlen(s->name);
	const char *e = (const char *)o->ext, *end = e + ext_used(o);

	/* Rebuilt aside so that o is untouched when it does not fit. */
	memset(tmp, 0, sizeof(tmp));
	while (e < end && *e) {
		size_t len = strlen(e);
		if (!(len > nlen && e[nlen] == '=' && strncmp(e, s->name, nlen) == 0)) {
			memcpy(tmp + n, e, len + 1);
			n += len + 1;
		}
		e += len + 1;
	}
	if (strcmp(text, s->def) != 0) {
		size_t len = nlen + 1 + strlen(text) + 1;
		/* One byte stays for the empty entry that ends the list. */
		if (n + len >= sizeof(tmp)) {
			ragg__error("%s: no room left for it in struct ragg_opts", s->name);
			return -ENOSPC;
		}
		snprintf((char *)tmp + n, len, "%s=%s", s->name, text);
	}
	memcpy(o->ext, tmp, sizeof(tmp));
	return 0;
}

/* Check text against the row, and store it in o. */
static int set_row(struct ragg_opts *o, const struct ragg__setting *s, const char *text)
{
	union {
		size_t z;
		long l;
		double d;
		char text[TEXT_MAX];
	} v;
	int rc = ragg__tp_value_parse(s->name, &s->spec, text, &v, log_error, NULL);
	if (rc)
		return rc;
	char *field = (char *)o + s->offset;
	switch (s->field) {
	case RAGG__OPT_EXT:
		return ext_put(o, s, text);
	case RAGG__OPT_INT: {
		int i = (int)v.l; /* the bounds keep it in an int */
		memcpy(field, &i, sizeof(i));
		return 0;
	}
	case RAGG__OPT_SIZE:
		memcpy(field, &v.z, sizeof(v.z));
		return 0;
	case RAGG__OPT_FLOAT: {
		float f = (float)v.d;
		memcpy(field, &f, sizeof(f));
		return 0;
	}
	case RAGG__OPT_TEXT:
	default:
		memcpy(field, v.text, strlen(v.text) + 1);
		return 0;
	}
}

RAGG_EXPORT int ragg_opts_set(struct ragg_opts *opts, const char *name, const char *value)
{
	if (!opts || !name || opts->size < sizeof(*opts))
		return -EINVAL;
	const struct ragg__setting *s = ragg__setting_find(name);
	if (!s) {
		ragg__error("%s: no such setting (ragg-info lists them)", name);
		return -ENOENT;
	}
	return set_row(opts, s, value && *value ? value : s->def);
}

/* The n-th name of a choice. */
static void choice_name(const char *choices, long n, char *buf, size_t len)
{
	const char *c = choices;
	for (long i = 0; i < n && c; i++) {
		c = strchr(c, '|');
		if (c)
			c++;
	}
	if (!c || n < 0) {
		snprintf(buf, len, "%ld", n);
		return;
	}
	const char *bar = strchr(c, '|');
	snprintf(buf, len, "%.*s", (int)(bar ? (size_t)(bar - c) : strlen(c)), c);
}

const char *ragg__opt_get(const struct ragg_opts *o, const char *name)
{
	static __thread char buf[64];
	const struct ragg__setting *s = ragg__setting_find(name);
	if (!s)
		return NULL;
	const char *field = (const char *)o + s->offset;
	int i;
	size_t z;
	float f;
	switch (s->field) {
	case RAGG__OPT_EXT: {
		const char *v = ext_find(o, s->name);
		return v ? v : s->def;
	}
	case RAGG__OPT_INT:
		memcpy(&i, field, sizeof(i));
		if (s->spec.kind == RAGG__TP_CHOICE)
			choice_name(s->spec.choices, i, buf, sizeof(buf));
		else
			snprintf(buf, sizeof(buf), "%d", i);
		return buf;
	case RAGG__OPT_SIZE:
		memcpy(&z, field, sizeof(z));
		snprintf(buf, sizeof(buf), "%zu", z);
		return buf;
	case RAGG__OPT_FLOAT:
		memcpy(&f, field, sizeof(f));
		snprintf(buf, sizeof(buf), "%g", (double)f);
		return buf;
	case RAGG__OPT_TEXT:
	default:
		return field;
	}
}

/* A row's value parsed into v (the row's kind); false for no such row. */
static bool opt_value(const struct ragg_opts *o, const char *name, enum ragg__tp_kind kind, void *v)
{
	const struct ragg__setting *s = ragg__setting_find(name);
	if (!s || s->spec.kind != kind)
		return false;
	const char *field = (const char *)o + s->offset;
	if (s->field == RAGG__OPT_INT) {
		int i;
		memcpy(&i, field, sizeof(i));
		long l = i;
		memcpy(v, &l, sizeof(l));
		return true;
	}
	if (s->field == RAGG__OPT_SIZE) {
		memcpy(v, field, sizeof(size_t));
		return true;
	}
	if (s->field == RAGG__OPT_FLOAT) {
		float f;
		memcpy(&f, field, sizeof(f));
		double d = f;
		memcpy(v, &d, sizeof(d));
		return true;
	}
	/* Text that set_row checked, or the default: it parses. */
	return ragg__tp_value_parse(s->name, &s->spec, ragg__opt_get(o, name), v, log_error,
	                            NULL) == 0;
}

long ragg__opt_long(const struct ragg_opts *o, const char *name)
{
	long l = 0;
	if (!opt_value(o, name, RAGG__TP_INT, &l))
		opt_value(o, name, RAGG__TP_CHOICE, &l);
	return l;
}

double ragg__opt_double(const struct ragg_opts *o, const char *name)
{
	double d = 0;
	opt_value(o, name, RAGG__TP_DOUBLE, &d);
	return d;
}

size_t ragg__opt_size(const struct ragg_opts *o, const char *name)
{
	size_t z = 0;
	opt_value(o, name, RAGG__TP_SIZE, &z);
	return z;
}

uint64_t ragg__setting_canon(const struct ragg_opts *o, const struct ragg__setting *s)
{
	double d;
	uint64_t u;
	switch (s->spec.kind) {
	case RAGG__TP_SIZE:
		return (uint64_t)ragg__opt_size(o, s->name);
	case RAGG__TP_INT:
	case RAGG__TP_CHOICE:
	case RAGG__TP_BOOL:
		return (uint64_t)ragg__opt_long(o, s->name);
	case RAGG__TP_DOUBLE:
		d = ragg__opt_double(o, s->name);
		memcpy(&u, &d, sizeof(u));
		return u;
	case RAGG__TP_STRING:
	default:
		/* FNV-1a: a text travels as its hash. */
		u = 0xcbf29ce484222325ull;
		for (const char *c = ragg__opt_get(o, s->name); *c; c++)
			u = (u ^ (unsigned char)*c) * 0x100000001b3ull;
		return u;
	}
}

void ragg__setting_canon_text(const struct ragg__setting *s, uint64_t v, char *buf, size_t len)
{
	double d;
	switch (s->spec.kind) {
	case RAGG__TP_SIZE:
		snprintf(buf, len, "%llu", (unsigned long long)v);
		return;
	case RAGG__TP_INT:
	case RAGG__TP_BOOL:
		snprintf(buf, len, "%lld", (long long)v);
		return;
	case RAGG__TP_CHOICE:
		choice_name(s->spec.choices, (long)v, buf, len);
		return;
	case RAGG__TP_DOUBLE:
		memcpy(&d, &v, sizeof(d));
		snprintf(buf, len, "%g", d);
		return;
	case RAGG__TP_STRING:
	default:
		snprintf(buf, len, "(text hashed %016llx)", (unsigned long long)v);
		return;
	}
}

/* One grammar for sizes and integers in the library: the transports' (see
 * transports/util/settings.h); here each failure is logged with the name. */
int ragg__parse_size(const char *name, const char *text, size_t *out)
{
	if (ragg__tp_parse_size(text, out)) {
		ragg__error("%s=\"%s\": expected a size such as 4096, 64K or 4M", name, text);
		return RAGG_ERR_CONFIG;
	}
	return 0;
}

int ragg__parse_int(const char *name, const char *text, long min, long max, long *out)
{
	long v;
	if (ragg__tp_parse_int(text, &v) || v < min || v > max) {
		ragg__error("%s=\"%s\": expected an integer in [%ld, %ld]", name, text, min, max);
		return RAGG_ERR_CONFIG;
	}
	*out = v;
	return 0;
}

int ragg__parse_float(const char *name, const char *text, float *out)
{
	char *end;
	errno = 0;
	float v = strtof(text, &end);
	if (end == text || *end || errno || !isfinite(v)) {
		ragg__error("%s=\"%s\": expected a finite number", name, text);
		return RAGG_ERR_CONFIG;
	}
	*out = v;
	return 0;
}

/* The logging level is process-wide and read first, so that errors in the
 * other settings are reported. */
void ragg__logging_setup(const struct ragg_opts *o)
{
	const char *v =
	    o ? ragg__opt_get(o, "RAGG_LOG") : ragg__setting_env(ragg__setting_find("RAGG_LOG"));
	int level = ragg__log_parse(v);
	if (level < 0) {
		/* Said once per process, though every ragg_opts_default() and
		 * ragg_init() reads it. */
		static int said;
		ragg__log_set(RAGG_LOG_ERROR);
		if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
			ragg__error("RAGG_LOG=\"%s\": expected none, error, warn, info or debug",
			            v);
		return;
	}
	ragg__log_set(level);
}

/*
 * Under a launcher (mpirun, srun) RAGG_ROLE and RAGG_RANK may be left unset:
 * the launcher's global rank g places the process, servers first (so that
 * g = 0 serves the rendezvous), then agents, then workers; without
 * RAGG_WORKERS the workers are all the remaining processes. The rank and
 * the size come from the launcher's variables, not from PMIx: a PMIx client
 * must finalize before it exits, and one that initializes again after
 * finalizing fails its fences (Open MPI 4.1), so only ragg_init holds PMIx.
 */
static const char *const launcher_rank_vars[][2] = {
	{ "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE" },
	{ "SLURM_PROCID", "SLURM_NTASKS" },
	{ "PMI_RANK", "PMI_SIZE" },
	{ "PMIX_RANK", NULL }, /* PMIx publishes no size variable */
};

static int role_from_launcher(struct ragg_opts *o)
{
	long g = -1, size = -1;
	const char *src = NULL;
	for (size_t i = 0; i < RAGG_ARRAY_SIZE(launcher_rank_vars) && !src; i++) {
		const char *r = getenv(launcher_rank_vars[i][0]);
		const char *n = launcher_rank_vars[i][1] ? getenv(launcher_rank_vars[i][1]) : NULL;
		if (!r)
			continue;
		src = launcher_rank_vars[i][0];
		if (ragg__parse_int(src, r, 0, 1 << 20, &g))
			return RAGG_ERR_CONFIG;
		if (n && ragg__parse_int(launcher_rank_vars[i][1], n, 1, 1 << 20, &size))
			return RAGG_ERR_CONFIG;
	}
	if (!src)
		return 0; /* no launcher: the role stays unset */
	if (!getenv("RAGG_WORKERS")) {
		if (size < 0) {
			ragg__error("%s is set but not the job size: set RAGG_WORKERS", src);
			return RAGG_ERR_CONFIG;
		}
		o->workers = (int)(size - o->agents - o->servers);
	}
	if (g < o->servers) {
		o->role = RAGG_ROLE_SERVER;
		o->rank = (int)g;
	} else if (g < o->servers + o->agents) {
		o->role = RAGG_ROLE_AGENT;
		o->rank = (int)(g - o->servers);
	} else {
		o->role = RAGG_ROLE_WORKER;
		o->rank = (int)(g - o->servers - o->agents);
	}
	return 0;
}

RAGG_EXPORT int ragg_opts_default(struct ragg_opts *opts)
{
	struct ragg_opts o;
	int rc;

	if (!opts)
		return -EINVAL;
	ragg__logging_setup(NULL);
	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
	for (const struct ragg__setting *s = ragg__settings; s->name; s++) {
		const char *text = ragg__setting_env(s);
		/* A bad logging level is no reason to stop a job: it was
		 * reported above and selects errors only. */
		if (strcmp(s->name, "RAGG_LOG") == 0 &&
		    ragg__tp_value_parse(s->name, &s->spec, text, NULL, NULL, NULL))
			text = "error";
		if ((rc = set_row(&o, s, text)))
			return rc;
	}
	if (o.role == RAGG_ROLE_NONE && (rc = role_from_launcher(&o)))
		return rc;
	*opts = o;
	return 0;
}

int ragg__opts_codec(const struct ragg_opts *o, struct ragg__codec_spec *spec)
{
	const char *text = ragg__opt_get(o, "RAGG_COMPRESS");
	long ef = ragg__opt_long(o, "RAGG_COMPRESS_EF");
	struct ragg__codec_spec s;
	if (!text || ragg__codec_parse(text, &s)) {
		ragg__error("RAGG_COMPRESS=\"%s\": expected none, fp16, bf16, topk[:r], randk[:r], "
		            "onebit or qsgd[:s], r in (0, 1], s a whole number (ragg-compress(7))",
		            text ? text : "");
		return RAGG_ERR_CONFIG;
	}
	if (ef != 0 && ragg__codec_set_error_feedback(&s, ef == 1)) {
		ragg__error("RAGG_COMPRESS_EF=on: codec %s is lossless, it has no error feedback",
		            s.codec->name);
		return RAGG_ERR_CONFIG;
	}
	*spec = s;
	return 0;
}

int ragg__opts_worker_codec(const struct ragg_opts *o, struct ragg__codec_spec *spec)
{
	static const char *const names[] = { NULL, "none", "fp16", "bf16" };
	long which = ragg__opt_long(o, "RAGG_WORKER_COMPRESS");
	long ef = ragg__opt_long(o, "RAGG_COMPRESS_EF");
	if (which <= 0 || which >= (long)(sizeof(names) / sizeof(names[0])))
		return ragg__opts_codec(o, spec);
	struct ragg__codec_spec s;
	if (ragg__codec_parse(names[which], &s))
		return RAGG_ERR_CONFIG;
	if (ef != 0 && (s.codec->flags & RAGG_CODEC_LOSSY))
		ragg__codec_set_error_feedback(&s, ef == 1);
	*spec = s;
	return 0;
}

int ragg__opts_pull_codec(const struct ragg_opts *o, struct ragg__codec_spec *spec,
                          uint64_t *resync)
{
	const char *text = ragg__opt_get(o, "RAGG_COMPRESS_PULL");
	long ef = ragg__opt_long(o, "RAGG_COMPRESS_EF");
	struct ragg__codec_spec s;
	if (!text || ragg__codec_parse(text, &s)) {
		ragg__error("RAGG_COMPRESS_PULL=\"%s\": expected none, fp16, bf16, topk[:r], "
		            "randk[:r], onebit or qsgd[:s], r in (0, 1], s a whole number "
		            "(ragg-compress(7))",
		            text ? text : "");
		return RAGG_ERR_CONFIG;
	}
	/* RAGG_COMPRESS_EF=on names the push codec; a lossless pull codec
	 * simply has none. */
	if (ef != 0 && (s.codec->flags & RAGG_CODEC_LOSSY))
		ragg__codec_set_error_feedback(&s, ef == 1);
	*spec = s;
	*resync = (uint64_t)ragg__opt_long(o, "RAGG_COMPRESS_RESYNC");
	return 0;
}

int ragg__opts_validate(const struct ragg_opts *o)
{
	if (o->size < sizeof(*o)) {
		ragg__error(
		    "struct ragg_opts: size %zu, expected %zu (fill it with ragg_opts_default)",
		    o->size, sizeof(*o));
		return RAGG_ERR_CONFIG;
	}
	if (o->role == RAGG_ROLE_NONE) {
		ragg__error("no role: set RAGG_ROLE=worker|agent|server (or start with ragg-run)");
		return RAGG_ERR_CONFIG;
	}
	if (o->workers < 1 || o->agents < 1 || o->servers < 1 || o->agents > o->workers) {
		ragg__error("job shape workers=%d agents=%d servers=%d: need at least one of each "
		            "and no more agents than workers",
		            o->workers, o->agents, o->servers);
		return RAGG_ERR_CONFIG;
	}
	int n = o->role == RAGG_ROLE_WORKER  ? o->workers
	        : o->role == RAGG_ROLE_AGENT ? o->agents
	                                     : o->servers;
	if (o->rank < 0 || o->rank >= n) {
		ragg__error("rank %d out of range for %d process(es) of this role", o->rank, n);
		return RAGG_ERR_CONFIG;
	}
	if (!ragg__optim_by_id(o->optimizer)) {
		ragg__error("optimizer %d: not one of sgd, momentum, adam, adamw", (int)o->optimizer);
		return RAGG_ERR_CONFIG;
	}
	if (!ragg__plan_chunk_bytes_ok(o->chunk_bytes)) {
		ragg__error("chunk size %zu: need a multiple of 4 and at least 4096 bytes",
		            o->chunk_bytes);
		return RAGG_ERR_CONFIG;
	}
	struct ragg__codec_spec cs;
	if (ragg__opts_codec(o, &cs))
		return RAGG_ERR_CONFIG;
	uint64_t resync;
	if (ragg__opts_pull_codec(o, &cs, &resync))
		return RAGG_ERR_CONFIG;
	if (ragg__stale_validate(o))
		return RAGG_ERR_CONFIG;
	if (o->timeout_ms <= 0 || o->serve_timeout_ms <= 0) {
		ragg__error("timeout %d ms: must be positive", o->timeout_ms);
		return RAGG_ERR_CONFIG;
	}
	if (!strchr(o->root, ':')) {
		ragg__error("RAGG_ROOT=\"%s\": expected host:port", o->root);
		return RAGG_ERR_CONFIG;
	}
	if (ragg__dp_opts_check(o))
		return RAGG_ERR_CONFIG;
	return 0;
}
