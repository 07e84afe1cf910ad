/* The privacy test jobs' shared skeleton (privjob.h). */
#include <stdio.h>
#include <stdlib.h>

#include "privjob.h"

static const char *job = "privjob";

int fail(const char *what, int rc)
{
	fprintf(stderr, "%s: %s: %s (%s)\n", job, what, ragg_strerror(rc), ragg_strerror_name(rc));
	return 1;
}

double env_double(const char *name, double def)
{
	const char *v = getenv(name);
	return v && *v ? atof(v) : def;
}

int privjob_main(const char *name, int argc, char **argv,
                 int (*worker)(ragg_ctx_t *ctx, int argc, char **argv))
{
	ragg_ctx_t *ctx;
	int rc, status;
	job = name;
	if ((rc = ragg_init(NULL, &ctx)))
		return fail("init", rc);
	if (ragg_role(ctx) != RAGG_ROLE_WORKER) {
		if ((rc = ragg_serve(ctx)))
			fprintf(stderr, "%s: serve: %s\n", job, ragg_strerror(rc));
		int rc2 = ragg_finalize(ctx);
		return rc || rc2 ? 1 : 0;
	}
	status = worker(ctx, argc, argv);
	rc = ragg_finalize(ctx);
	if (rc && !status)
		return fail("finalize", rc);
	return status;
}
