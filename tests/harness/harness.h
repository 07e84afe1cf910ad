/*
 * A small test runner: every test runs in a child process with a time limit,
 * so a crash or a hang fails that test alone. Each test prints one line
 * "PASS: prog/name" or "FAIL: prog/name (why)"; scripts/check counts them.
 *
 *   RAGG_TEST(frame_roundtrip) { RAGG_CHECK(x == 1); }
 *   int main(int argc, char **argv) { return ragg_test_main(argc, argv); }
 *
 * A test that cannot run here (a device truly absent) calls
 * RAGG_SKIP("why") and is reported "SKIP: ...".
 */
#ifndef RAGG_TEST_HARNESS_H
#define RAGG_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>

#include <ragg/ragg.h>

struct ragg_test {
	const char *name;
	void (*fn)(void);
	int timeout_s;
	struct ragg_test *next;
};

void ragg_test_register(struct ragg_test *t);
int ragg_test_main(int argc, char **argv);
void ragg_test_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
void ragg_test_skip(const char *why) __attribute__((noreturn));

#define RAGG_TEST_T(name_, timeout_)                                                               \
	static void ragg_test_fn_##name_(void);                                                    \
	static struct ragg_test ragg_test_##name_ = { #name_, ragg_test_fn_##name_, timeout_,      \
		                                      NULL };                                      \
	__attribute__((constructor)) static void ragg_test_reg_##name_(void)                       \
	{                                                                                          \
		ragg_test_register(&ragg_test_##name_);                                            \
	}                                                                                          \
	static void ragg_test_fn_##name_(void)

#define RAGG_TEST(name_) RAGG_TEST_T(name_, 60)

#define RAGG_CHECK(expr)                                                                           \
	do {                                                                                       \
		if (!(expr))                                                                       \
			ragg_test_fail(__FILE__, __LINE__, #expr, NULL);                           \
	} while (0)

#define RAGG_CHECKF(expr, ...)                                                                     \
	do {                                                                                       \
		if (!(expr))                                                                       \
			ragg_test_fail(__FILE__, __LINE__, #expr, __VA_ARGS__);                    \
	} while (0)

/* Check a ragg return code is 0, naming the error otherwise. */
#define RAGG_CHECK_OK(call)                                                                        \
	do {                                                                                       \
		int ragg_rc_ = (call);                                                             \
		if (ragg_rc_ != 0)                                                                 \
			ragg_test_fail(__FILE__, __LINE__, #call, "returned %d (%s)", ragg_rc_,    \
			               ragg_strerror(ragg_rc_));                                   \
	} while (0)

#define RAGG_SKIP(why) ragg_test_skip(why)

#endif
