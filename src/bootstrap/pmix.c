/*
 * The PMIx bootstrap (boot.h): the launcher's PMIx server carries the
 * endpoint addresses. Each agent and server puts "ragg.<role>/<rank>" and
 * commits; every process of the launcher's job then takes part in one
 * fence that collects the data; lookups after it are local
 * (PMIX_OPTIONAL). Built only with PMIx (configure --enable-pmix); the
 * stubs below say so otherwise.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap/boot.h"
#include "clock.h"
#include "log.h"

#ifdef RAGG_HAVE_PMIX
#include <pmix.h>

struct ragg__pmix {
	pmix_proc_t me;
	long size;
	int timeout_ms;
};

bool ragg__pmix_built(void)
{
	return true;
}

/* The launcher's PMIx server hands its clients these. */
bool ragg__pmix_client(void)
{
	const char *ns = getenv("PMIX_NAMESPACE"), *rank = getenv("PMIX_RANK");
	return ns && *ns && rank && *rank;
}

static int status_code(pmix_status_t st)
{
	switch (st) {
	case PMIX_ERR_TIMEOUT:
		return RAGG_ERR_TIMEOUT;
	case PMIX_ERR_NOT_FOUND:
		return -ENOENT;
	case PMIX_ERR_NOMEM:
		return -ENOMEM;
	case PMIX_ERR_UNREACH:
	case PMIX_ERR_LOST_CONNECTION:
	case PMIX_ERR_PROC_ABORTED:
	case PMIX_ERR_PROC_ABORTING:
		return RAGG_ERR_PEER_LOST;
	default:
		return RAGG_ERR_CONFIG;
	}
}

static int job_size(const pmix_proc_t *me, long *size)
{
	pmix_proc_t job;
	pmix_value_t *v = NULL;
	PMIX_LOAD_PROCID(&job, me->nspace, PMIX_RANK_WILDCARD);
	pmix_status_t st = PMIx_Get(&job, PMIX_JOB_SIZE, NULL, 0, &v);
	if (st != PMIX_SUCCESS || !v || v->type != PMIX_UINT32) {
		ragg__error("bootstrap: pmix: no job size from the launcher: %s",
		            PMIx_Error_string(st));
		if (v)
			PMIX_VALUE_RELEASE(v);
		return st != PMIX_SUCCESS ? status_code(st) : RAGG_ERR_CONFIG;
	}
	*size = (long)v->data.uint32;
	PMIX_VALUE_RELEASE(v);
	return 0;
}

static int init(pmix_proc_t *me)
{
	pmix_status_t st = PMIx_Init(me, NULL, 0);
	if (st != PMIX_SUCCESS) {
		ragg__error("bootstrap: pmix: PMIx_Init: %s (set RAGG_BOOTSTRAP=rendezvous and "
		            "RAGG_ROOT to do without the launcher)",
		            PMIx_Error_string(st));
		return status_code(st);
	}
	return 0;
}

int ragg__pmix_open(int timeout_ms, struct ragg__pmix **out)
{
	struct ragg__pmix *p = calloc(1, sizeof(*p));
	int rc;
	if (!p)
		return -ENOMEM;
	if ((rc = init(&p->me))) {
		free(p);
		return rc;
	}
	if ((rc = job_size(&p->me, &p->size))) {
		ragg__pmix_close(p);
		return rc;
	}
	p->timeout_ms = timeout_ms;
	*out = p;
	return 0;
}

void ragg__pmix_close(struct ragg__pmix *p)
{
	if (!p)
		return;
	PMIx_Finalize(NULL, 0);
	free(p);
}

int ragg__pmix_put(struct ragg__pmix *p, const char *key, const char *value)
{
	char k[PMIX_MAX_KEYLEN + 1];
	pmix_value_t v;
	pmix_status_t st;
	snprintf(k, sizeof(k), "ragg.%s", key);
	PMIX_VALUE_CONSTRUCT(&v);
	v.type = PMIX_STRING;
	v.data.string = (char *)value; /* PMIx_Put copies it */
	st = PMIx_Put(PMIX_GLOBAL, k, &v);
	if (st == PMIX_SUCCESS)
		st = PMIx_Commit();
	if (st != PMIX_SUCCESS) {
		ragg__error("bootstrap: pmix: publishing %s: %s", k, PMIx_Error_string(st));
		return status_code(st);
	}
	return 0;
}

int ragg__pmix_fence(struct ragg__pmix *p)
{
	pmix_proc_t all;
	pmix_info_t info[2];
	bool collect = true;
	/* In whole seconds, rounded up: PMIx's unit. */
	int secs = (p->timeout_ms + 999) / 1000;
	uint64_t t0 = ragg__now_us();
	PMIX_LOAD_PROCID(&all, p->me.nspace, PMIX_RANK_WILDCARD);
	PMIX_INFO_LOAD(&info[0], PMIX_COLLECT_DATA, &collect, PMIX_BOOL);
	PMIX_INFO_LOAD(&info[1], PMIX_TIMEOUT, &secs, PMIX_INT);
	pmix_status_t st = PMIx_Fence(&all, 1, info, 2);
	PMIX_INFO_DESTRUCT(&info[0]);
	PMIX_INFO_DESTRUCT(&info[1]);
	if (st != PMIX_SUCCESS) {
		ragg__error("bootstrap: pmix: fence of the %ld processes of job %s: %s (does every "
		            "process of the launch call ragg_init once?)",
		            p->size, p->me.nspace, PMIx_Error_string(st));
		return status_code(st);
	}
	ragg__info("bootstrap: pmix: rank %u of %ld in job %s: endpoints exchanged through the "
	           "launcher in %.1f ms",
	           p->me.rank, p->size, p->me.nspace, (double)(ragg__now_us() - t0) / 1000.0);
	return 0;
}

/* 0 and the value, -ENOENT when rank has no such key. */
static int get_from(struct ragg__pmix *p, long rank, const char *k, char *value, size_t cap)
{
	pmix_proc_t proc;
	pmix_info_t info;
	bool optional = true; /* the fence collected everything: look here only */
	pmix_value_t *v = NULL;
	PMIX_LOAD_PROCID(&proc, p->me.nspace, (pmix_rank_t)rank);
	PMIX_INFO_LOAD(&info, PMIX_OPTIONAL, &optional, PMIX_BOOL);
	pmix_status_t st = PMIx_Get(&proc, k, &info, 1, &v);
	PMIX_INFO_DESTRUCT(&info);
	if (st != PMIX_SUCCESS || !v) {
		if (v)
			PMIX_VALUE_RELEASE(v);
		return -ENOENT;
	}
	int rc = 0;
	if (v->type != PMIX_STRING || !v->data.string)
		rc = RAGG_ERR_PROTO;
	else if (strlen(v->data.string) >= cap)
		rc = -ENOSPC;
	else
		memcpy(value, v->data.string, strlen(v->data.string) + 1);
	PMIX_VALUE_RELEASE(v);
	return rc;
}

int ragg__pmix_get(struct ragg__pmix *p, long hint, const char *key, char *value, size_t cap)
{
	char k[PMIX_MAX_KEYLEN + 1];
	int rc = -ENOENT;
	snprintf(k, sizeof(k), "ragg.%s", key);
	if (hint >= 0 && hint < p->size)
		rc = get_from(p, hint, k, value, cap);
	/* A launch that placed the roles otherwise (RAGG_ROLE per rank). */
	for (long r = 0; r < p->size && rc == -ENOENT; r++)
		if (r != hint)
			rc = get_from(p, r, k, value, cap);
	if (rc == -ENOENT)
		ragg__error("bootstrap: pmix: no process of job %s published %s (is the job's "
		            "shape, RAGG_SERVERS, RAGG_AGENTS, RAGG_WORKERS, the same everywhere?)",
		            p->me.nspace, key);
	else if (rc)
		ragg__error("bootstrap: pmix: %s: %s", k, ragg_strerror(rc));
	return rc == -ENOENT ? RAGG_ERR_CONFIG : rc;
}

#else /* !RAGG_HAVE_PMIX */

bool ragg__pmix_built(void)
{
	return false;
}

bool ragg__pmix_client(void)
{
	return false;
}

int ragg__pmix_open(int timeout_ms, struct ragg__pmix **out)
{
	(void)timeout_ms;
	(void)out;
	ragg__error("bootstrap: this ragg was built without PMIx (configure --enable-pmix, "
	            "libpmix-dev)");
	return RAGG_ERR_CONFIG;
}

void ragg__pmix_close(struct ragg__pmix *p)
{
	(void)p;
}

int ragg__pmix_put(struct ragg__pmix *p, const char *key, const char *value)
{
	(void)p, (void)key, (void)value;
	return -ENOSYS;
}

int ragg__pmix_fence(struct ragg__pmix *p)
{
	(void)p;
	return -ENOSYS;
}

int ragg__pmix_get(struct ragg__pmix *p, long hint, const char *key, char *value, size_t cap)
{
	(void)p, (void)hint, (void)key, (void)value, (void)cap;
	return -ENOSYS;
}

#endif
