/*
 * The skeleton the privacy test jobs share (dpjob.c, sajob.c): errors
 * printed the same way, settings read from the environment, and main's
 * start and end.
 */
#ifndef RAGG_TESTS_PRIVJOB_H
#define RAGG_TESTS_PRIVJOB_H

#include <ragg/ragg.h>

/* Prints "JOB: what: error (NAME)" on stderr; returns 1. */
int fail(const char *what, int rc);

/* The environment variable as a number, def when unset or empty. */
double env_double(const char *name, double def);

/* ragg_init; an agent or a server serves, finalizes and exits 0 or 1; a
 * worker runs worker(ctx, argc, argv) (its exit status: 0 ok, 1 a wrong
 * value, 2 bad arguments) and finalizes, a failed finalize making a
 * status of 0 a 1. Returns main's exit status; `name` prefixes errors. */
int privjob_main(const char *name, int argc, char **argv,
                 int (*worker)(ragg_ctx_t *ctx, int argc, char **argv));

#endif
