#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "compiler.h"
#include "settings.h"
#include "log.h"
#include "../transports/util/settings.h"

const struct ragg__setting ragg__settings[] = {
	{ "RAGG_ROLE", "", "worker, agent or server" },
	{ "RAGG_RANK", "0", "rank within the role" },
	{ "RAGG_WORKERS", "1", "number of workers in the job" },
	{ "RAGG_AGENTS", "1", "number of agents in the job" },
	{ "RAGG_SERVERS", "1", "number of server shards in the job" },
	{ "RAGG_ROOT", "127.0.0.1:29500", "rendezvous host:port, served by server 0" },
	{ "RAGG_LISTEN_HOST", "",
	  "address agents and servers listen on (default: the one that reaches RAGG_ROOT)" },
	{ "RAGG_TRANSPORT", "auto",
	  "tcp, verbs, shm, a list in order of preference (\"shm,tcp\"), or auto (shm to same-host "
	  "peers, then verbs where an RDMA port is active, then tcp)" },
	{ "RAGG_TRANSPORT_WORKERS", "",
	  "transports between workers and agents (default: RAGG_TRANSPORT)" },
	{ "RAGG_TRANSPORT_SERVERS", "",
	  "transports between agents and servers (default: RAGG_TRANSPORT)" },
	{ "RAGG_CHUNK_BYTES", "4M", "model partition size (suffixes K, M, G)" },
	{ "RAGG_LR", "0.01", "learning rate of the server's optimizer" },
	{ "RAGG_OPTIMIZER", "sgd", "sgd, momentum, adam or adamw" },
	{ "RAGG_MOMENTUM", "0.9", "momentum coefficient (RAGG_OPTIMIZER=momentum)" },
	{ "RAGG_BETA1", "0.9", "Adam's first-moment decay, in [0, 1) (adam, adamw)" },
	{ "RAGG_BETA2", "0.999", "Adam's second-moment decay, in [0, 1) (adam, adamw)" },
	{ "RAGG_EPS", "1e-8", "Adam's epsilon, added to the denominator (adam, adamw)" },
	{ "RAGG_WEIGHT_DECAY", "0",
	  "weight decay: adam adds wd*w to the gradient, adamw decays w by lr*wd (adam, adamw)" },
	{ "RAGG_TIMEOUT_MS", "60000",
	  "longest a wait goes without progress before it fails, in milliseconds" },
	{ "RAGG_SERVE_TIMEOUT_MS", "3600000",
	  "longest an agent or server waits without any traffic (workers may pause to evaluate)" },
	{ "RAGG_POLL", "adaptive", "busy, block or adaptive (spin RAGG_SPIN_US, then block)" },
	{ "RAGG_SPIN_US", "50", "adaptive polling: spin this long before blocking" },
	{ "RAGG_JOB_KEY", "", "shared secret every connection proves knowledge of" },
	{ "RAGG_LOG", "none", "none, error, warn, info or debug (to standard error)" },
	{ "RAGG_KERNELS", "auto", "summing kernels: auto, avx512, avx2, scalar or openblas" },
	{ "RAGG_AGG_THREADS", "auto",
	  "aggregation threads per agent or server (0: inline; auto: one per core of the node, "
	  "at most 8)" },
	{ "RAGG_CPUS", "",
	  "cpus for aggregation threads (hwloc list, e.g. 0-3); default: the device's NUMA node" },
	{ NULL, NULL, NULL },
};

const char *ragg__setting_value(const char *name)
{
	const char *env = getenv(name);
	if (env)
		return env;
	for (const struct ragg__setting *s = ragg__settings; s->name; s++)
		if (strcmp(s->name, name) == 0)
			return s->def;
	return "";
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

static int parse_role(const char *text, enum ragg_role *out)
{
	static const char *const names[] = { "", "worker", "agent", "server" };
	for (int i = 0; i < (int)RAGG_ARRAY_SIZE(names); i++)
		if (strcasecmp(text, names[i]) == 0) {
			*out = (enum ragg_role)i;
			return 0;
		}
	ragg__error("RAGG_ROLE=\"%s\": expected worker, agent or server", text);
	return RAGG_ERR_CONFIG;
}

static int parse_poll(const char *text, enum ragg_poll *out)
{
	if (strcasecmp(text, "adaptive") == 0)
		*out = RAGG_POLL_ADAPTIVE;
	else if (strcasecmp(text, "busy") == 0)
		*out = RAGG_POLL_BUSY;
	else if (strcasecmp(text, "block") == 0)
		*out = RAGG_POLL_BLOCK;
	else {
		ragg__error("RAGG_POLL=\"%s\": expected busy, block or adaptive", text);
		return RAGG_ERR_CONFIG;
	}
	return 0;
}

static int copy_text(const char *name, const char *text, char *dst, size_t cap)
{
	if (strlen(text) >= cap) {
		ragg__error("%s: value longer than %zu characters", name, cap - 1);
		return RAGG_ERR_CONFIG;
	}
	memcpy(dst, text, strlen(text) + 1);
	return 0;
}

/* The logging level is process-wide and read first, so that errors in the
 * other settings are reported. */
void ragg__logging_setup(void)
{
	const char *v = ragg__setting_value("RAGG_LOG");
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
 * RAGG_WORKERS the workers are all the remaining processes.
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
	long v;
	int rc;

	if (!opts)
		return -EINVAL;
	ragg__logging_setup();
	memset(&o, 0, sizeof(o));
	o.size = sizeof(o);
#define V(n) ragg__setting_value(n)
	if ((rc = parse_role(V("RAGG_ROLE"), &o.role)))
		return rc;
	if ((rc = ragg__parse_int("RAGG_RANK", V("RAGG_RANK"), 0, 65534, &v)))
		return rc;
	o.rank = (int)v;
	/* The hello carries the job's shape in 16 bits each. */
	if ((rc = ragg__parse_int("RAGG_WORKERS", V("RAGG_WORKERS"), 1, 65535, &v)))
		return rc;
	o.workers = (int)v;
	if ((rc = ragg__parse_int("RAGG_AGENTS", V("RAGG_AGENTS"), 1, 1 << 12, &v)))
		return rc;
	o.agents = (int)v;
	if ((rc = ragg__parse_int("RAGG_SERVERS", V("RAGG_SERVERS"), 1, 1 << 12, &v)))
		return rc;
	o.servers = (int)v;
	if ((rc = copy_text("RAGG_ROOT", V("RAGG_ROOT"), o.root, sizeof(o.root))))
		return rc;
	if ((rc = copy_text("RAGG_TRANSPORT", V("RAGG_TRANSPORT"), o.transport,
	                    sizeof(o.transport))))
		return rc;
	if ((rc = ragg__parse_size("RAGG_CHUNK_BYTES", V("RAGG_CHUNK_BYTES"), &o.chunk_bytes)))
		return rc;
	if ((rc = ragg__parse_float("RAGG_LR", V("RAGG_LR"), &o.lr)))
		return rc;
	if ((rc = ragg__parse_float("RAGG_MOMENTUM", V("RAGG_MOMENTUM"), &o.momentum)))
		return rc;
	const char *opt = V("RAGG_OPTIMIZER");
	if (strcasecmp(opt, "sgd") == 0)
		o.optimizer = RAGG_OPT_SGD;
	else if (strcasecmp(opt, "momentum") == 0)
		o.optimizer = RAGG_OPT_MOMENTUM;
	else if (strcasecmp(opt, "adam") == 0)
		o.optimizer = RAGG_OPT_ADAM;
	else if (strcasecmp(opt, "adamw") == 0)
		o.optimizer = RAGG_OPT_ADAMW;
	else {
		ragg__error("RAGG_OPTIMIZER=\"%s\": expected sgd, momentum, adam or adamw", opt);
		return RAGG_ERR_CONFIG;
	}
	if ((rc = ragg__parse_int("RAGG_TIMEOUT_MS", V("RAGG_TIMEOUT_MS"), 1, 86400000L, &v)))
		return rc;
	o.timeout_ms = (int)v;
	if ((rc = ragg__parse_int("RAGG_SERVE_TIMEOUT_MS", V("RAGG_SERVE_TIMEOUT_MS"), 1,
	                          2147483647L, &v)))
		return rc;
	o.serve_timeout_ms = (int)v;
	if ((rc = parse_poll(V("RAGG_POLL"), &o.poll)))
		return rc;
	if ((rc = ragg__parse_int("RAGG_SPIN_US", V("RAGG_SPIN_US"), 0, 1000000, &v)))
		return rc;
	o.spin_us = (int)v;
	if ((rc = copy_text("RAGG_JOB_KEY", V("RAGG_JOB_KEY"), o.job_key, sizeof(o.job_key))))
		return rc;
	if (o.role == RAGG_ROLE_NONE && (rc = role_from_launcher(&o)))
		return rc;
#undef V
	*opts = o;
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
	if (o->chunk_bytes < 4096 || o->chunk_bytes % sizeof(float)) {
		ragg__error("chunk size %zu: need a multiple of 4 and at least 4096 bytes",
		            o->chunk_bytes);
		return RAGG_ERR_CONFIG;
	}
	if (o->timeout_ms <= 0 || o->serve_timeout_ms <= 0) {
		ragg__error("timeout %d ms: must be positive", o->timeout_ms);
		return RAGG_ERR_CONFIG;
	}
	if (!strchr(o->root, ':')) {
		ragg__error("RAGG_ROOT=\"%s\": expected host:port", o->root);
		return RAGG_ERR_CONFIG;
	}
	return 0;
}

int ragg__agg_threads(long *out)
{
	const char *v = ragg__setting_value("RAGG_AGG_THREADS");
	if (strcmp(v, "auto") == 0) {
		*out = -1;
		return 0;
	}
	return ragg__parse_int("RAGG_AGG_THREADS", v, 0, 1024, out);
}
