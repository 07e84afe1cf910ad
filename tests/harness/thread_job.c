#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "thread_job.h"

struct member {
	struct ragg_thread_job *job;
	enum ragg_role role;
	int rank;
	char root[64];
	int rc;
	pthread_t tid;
};

/* A loopback port nobody listens on now. Another program may take it
 * before server 0 binds it; the job then fails to start, loudly. */
static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -errno;
	if (fd < 0)
		return port;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	else
		port = -errno;
	close(fd);
	return port;
}

static void *member_main(void *arg)
{
	struct member *m = arg;
	struct ragg_thread_job *job = m->job;
	struct ragg_opts o;
	ragg_ctx_t *ctx;
	int rc;

	if ((rc = ragg_opts_default(&o)))
		goto out;
	o.role = m->role;
	o.rank = m->rank;
	o.workers = job->workers;
	o.agents = job->agents;
	o.servers = job->servers;
	snprintf(o.root, sizeof(o.root), "%s", m->root);
	if (job->transport)
		snprintf(o.transport, sizeof(o.transport), "%s", job->transport);
	if (job->chunk_bytes)
		o.chunk_bytes = job->chunk_bytes;
	if (job->lr != 0)
		o.lr = job->lr;
	/* 30 s, times RAGG_TEST_TIMEOUT_SCALE under the sanitizers (scripts/check):
	 * every context of the job loads the topology, one at a time. */
	const char *scale = getenv("RAGG_TEST_TIMEOUT_SCALE");
	int times = scale ? atoi(scale) : 1;
	o.timeout_ms = job->timeout_ms ? job->timeout_ms : 30000 * (times >= 1 && times <= 100 ? times : 1);
	o.serve_timeout_ms = o.timeout_ms;
	if ((rc = ragg_init(&o, &ctx)))
		goto out;
	if (m->role == RAGG_ROLE_WORKER)
		rc = job->worker(ctx, m->rank, job->arg);
	else
		rc = ragg_serve(ctx);
	int frc = ragg_finalize(ctx);
	if (!rc)
		rc = frc;
out:
	m->rc = rc;
	return NULL;
}

int ragg_thread_job_run(struct ragg_thread_job *job)
{
	int n, started = 0, port, rc = 0;
	struct member *ms;

	if (!job || !job->worker || job->workers < 1 || job->agents < 1 || job->servers < 1 ||
	    job->agents > job->workers)
		return -EINVAL;
	if ((port = free_port()) < 0)
		return port;
	n = job->servers + job->agents + job->workers;
	if (!(ms = calloc((size_t)n, sizeof(*ms))))
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		struct member *m = &ms[i];
		m->job = job;
		if (i < job->servers) {
			m->role = RAGG_ROLE_SERVER;
			m->rank = i;
		} else if (i < job->servers + job->agents) {
			m->role = RAGG_ROLE_AGENT;
			m->rank = i - job->servers;
		} else {
			m->role = RAGG_ROLE_WORKER;
			m->rank = i - job->servers - job->agents;
		}
		snprintf(m->root, sizeof(m->root), "127.0.0.1:%d", port);
		if ((rc = -pthread_create(&m->tid, NULL, member_main, m)))
			break;
		started++;
	}
	job->worker_rc = job->agent_rc = job->server_rc = 0;
	for (int i = 0; i < started; i++) {
		struct member *m = &ms[i];
		pthread_join(m->tid, NULL);
		int *slot = m->role == RAGG_ROLE_WORKER  ? &job->worker_rc
		            : m->role == RAGG_ROLE_AGENT ? &job->agent_rc
		                                         : &job->server_rc;
		if (m->rc && !*slot)
			*slot = m->rc;
		if (m->rc && !rc)
			rc = m->rc;
	}
	free(ms);
	return rc;
}
