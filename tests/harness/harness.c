#include "harness.h"

#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Exit codes a child uses to tell the parent how the test ended. */
enum { CHILD_PASS = 0, CHILD_FAIL = 1, CHILD_SKIP = 77 };

static struct ragg_test *tests_head, **tests_tail = &tests_head;

void ragg_test_register(struct ragg_test *t)
{
	*tests_tail = t;
	tests_tail = &t->next;
}

void ragg_test_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	fprintf(stderr, "%s:%d: check failed: %s", file, line, expr);
	if (fmt) {
		va_list ap;
		fputs(": ", stderr);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	fflush(NULL);
	_exit(CHILD_FAIL);
}

void ragg_test_skip(const char *why)
{
	fprintf(stderr, "skipped: %s\n", why);
	fflush(NULL);
	_exit(CHILD_SKIP);
}

static int run_one(const char *prog, struct ragg_test *t)
{
	int scale = 1;
	const char *s = getenv("RAGG_TEST_TIMEOUT_SCALE");
	if (s && atoi(s) > 0)
		scale = atoi(s);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		printf("FAIL: %s/%s (fork failed)\n", prog, t->name);
		return 1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		alarm((unsigned)(t->timeout_s * scale));
		t->fn();
		fflush(NULL);
		_exit(CHILD_PASS);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		;
	/* Tests may start processes of their own; none outlives its test. */
	kill(-pid, SIGKILL);
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_PASS) {
		printf("PASS: %s/%s\n", prog, t->name);
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_SKIP) {
		printf("SKIP: %s/%s\n", prog, t->name);
		return 0;
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		printf("FAIL: %s/%s (timed out after %d s)\n", prog, t->name, t->timeout_s * scale);
	else if (WIFSIGNALED(status))
		printf("FAIL: %s/%s (killed by signal %d)\n", prog, t->name, WTERMSIG(status));
	else
		printf("FAIL: %s/%s (exit %d)\n", prog, t->name, WEXITSTATUS(status));
	return 1;
}

int ragg_test_main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	int failed = 0, ran = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (struct ragg_test *t = tests_head; t; t = t->next) {
		int selected = argc < 2;
		for (int i = 1; i < argc; i++)
			selected |= strcmp(argv[i], t->name) == 0;
		if (!selected)
			continue;
		ran++;
		failed += run_one(prog, t);
	}
	if (!ran) {
		fprintf(stderr, "%s: no test selected\n", prog);
		return 2;
	}
	return failed ? 1 : 0;
}
