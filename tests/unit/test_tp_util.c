/* The transports' shared helpers (transports/util): the socket address
 * predicates, the epoll registration of endpoints and the wake fd, the
 * region id table, the software memory registration with the check that
 * admits a peer's write; and the registry, the one list of transports,
 * with the check of a transport's table. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "harness.h"
#include "../transports/registry.h"
#include "../transports/util/epoll.h"
#include "../transports/util/idtab.h"
#include "../transports/util/softmr.h"
#include "../transports/util/sockaddr.h"

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	in->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &in->sin_addr);
	return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	in6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, ip, &in6->sin6_addr);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

RAGG_TEST(sockaddr_predicates)
{
	struct sockaddr_storage lo = v4("127.3.2.1"), any = v4("0.0.0.0"), a = v4("10.0.0.1");
	struct sockaddr_storage lo6 = v6("::1"), any6 = v6("::"), m = v6("::ffff:127.0.0.1");
	struct sockaddr_storage a2 = v4("10.0.0.1"), b6 = v6("fe80::1"), unix_ss = { 0 };
	unix_ss.ss_family = AF_UNIX;

	RAGG_CHECK(ragg__tp_sa_is_loopback(SA(lo)) && ragg__tp_sa_is_loopback(SA(lo6)));
	RAGG_CHECK(!ragg__tp_sa_is_loopback(SA(a)) && !ragg__tp_sa_is_loopback(SA(m)));
	RAGG_CHECK(ragg__tp_sa_is_mapped_loopback(SA(m)) &&
	           !ragg__tp_sa_is_mapped_loopback(SA(lo)));
	RAGG_CHECK(ragg__tp_sa_is_wildcard(SA(any)) && ragg__tp_sa_is_wildcard(SA(any6)));
	RAGG_CHECK(!ragg__tp_sa_is_wildcard(SA(lo)) && !ragg__tp_sa_is_wildcard(SA(unix_ss)));
	RAGG_CHECK(ragg__tp_sa_same_ip(SA(a), SA(a2)) && !ragg__tp_sa_same_ip(SA(a), SA(lo)));
	RAGG_CHECK(ragg__tp_sa_same_ip(SA(b6), SA(b6)) && !ragg__tp_sa_same_ip(SA(b6), SA(lo6)));
	RAGG_CHECK(!ragg__tp_sa_same_ip(SA(unix_ss), SA(unix_ss)));
}

static char last[256];

static void keep(int level, const char *fmt, ...)
{
	va_list ap;
	(void)level;
	va_start(ap, fmt);
	vsnprintf(last, sizeof(last), fmt, ap);
	va_end(ap);
}

RAGG_TEST(epoll_set_mask_and_wake_sync)
{
	struct ragg_tp_params p = { .size = sizeof(p), .log = keep, .log_level = RAGG_LOG_ERROR };
	int ep = epoll_create1(EPOLL_CLOEXEC), efd = eventfd(1, EFD_CLOEXEC), wake = -1;
	uint32_t mask = 0;
	struct epoll_event ev;

	RAGG_CHECK(ep >= 0 && efd >= 0);
	RAGG_CHECK(ragg__tp_epoll_set_mask(ep, efd, &mask, EPOLLIN, &mask, &p, "ut", "x") == 0);
	RAGG_CHECK(mask == EPOLLIN);
	RAGG_CHECK(epoll_wait(ep, &ev, 1, 0) == 1 && ev.data.ptr == &mask);
	RAGG_CHECK(ragg__tp_epoll_set_mask(ep, efd, &mask, EPOLLOUT, &mask, &p, "ut", "x") == 0);
	RAGG_CHECK(epoll_wait(ep, &ev, 1, 0) == 1 && ev.events == EPOLLOUT);
	RAGG_CHECK(ragg__tp_epoll_set_mask(ep, -1, &mask, EPOLLIN, NULL, &p, "ut", "x") == 0);
	RAGG_CHECK(mask == EPOLLOUT);
	/* A failing epoll_ctl leaves the mask as it was and says why. */
	RAGG_CHECK(ragg__tp_epoll_set_mask(ep, 999, &mask, EPOLLIN, NULL, &p, "ut", "x") == -EBADF);
	RAGG_CHECK(mask == EPOLLOUT && strstr(last, "ut: x: epoll_ctl: "));
	RAGG_CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, efd, NULL) == 0);

	p.wake_fd = efd;
	RAGG_CHECK(ragg__tp_epoll_wake_sync(ep, &wake, 7, &p, "ut") == 0 && wake == efd);
	RAGG_CHECK(epoll_wait(ep, &ev, 1, 0) == 1 && ev.data.u64 == 7);
	p.wake_fd = -1;
	RAGG_CHECK(ragg__tp_epoll_wake_sync(ep, &wake, 7, &p, "ut") == 0 && wake == -1);
	RAGG_CHECK(epoll_wait(ep, &ev, 1, 0) == 0);
	p.wake_fd = 999;
	RAGG_CHECK(ragg__tp_epoll_wake_sync(ep, &wake, 7, &p, "ut") == -EBADF && wake == -1);
	RAGG_CHECK(strstr(last, "ut: wake fd 999: epoll_ctl: "));

	int64_t t = ragg__tp_now_ms();
	RAGG_CHECK(t > 0 && ragg__tp_now_ms() >= t);
	close(efd);
	close(ep);
}

static int released;
static void count_release(void *obj)
{
	(void)obj;
	released++;
}

/* Lowest free id first, so ids stay small; growth by doubling up to the
 * limit, then -ENOSPC; lookups past the table are NULL, not a read past it;
 * destroy hands every object to the release function once. */
RAGG_TEST(idtab_ids_growth_and_limit)
{
	struct ragg__tp_idtab t = { 0 };
	int objs[40];
	uint32_t id;
	RAGG_CHECK(ragg__tp_idtab_get(&t, 0) == NULL);
	for (uint32_t i = 0; i < 20; i++) {
		RAGG_CHECK_OK(ragg__tp_idtab_free_id(&t, 20, &id));
		RAGG_CHECKF(id == i, "id %u, expected %u", id, i);
		ragg__tp_idtab_set(&t, id, &objs[i]);
	}
	RAGG_CHECKF(t.n == 20, "table of %u entries for a limit of 20", t.n);
	RAGG_CHECK(ragg__tp_idtab_free_id(&t, 20, &id) == -ENOSPC);
	RAGG_CHECK(ragg__tp_idtab_get(&t, 7) == &objs[7]);
	RAGG_CHECK(ragg__tp_idtab_get(&t, 20) == NULL &&
	           ragg__tp_idtab_get(&t, UINT32_MAX) == NULL);
	/* A freed id is the next one handed out, and stays free until set. */
	ragg__tp_idtab_set(&t, 7, NULL);
	ragg__tp_idtab_set(&t, 3, NULL);
	RAGG_CHECK_OK(ragg__tp_idtab_free_id(&t, 20, &id));
	RAGG_CHECK(id == 3);
	RAGG_CHECK_OK(ragg__tp_idtab_free_id(&t, 20, &id));
	RAGG_CHECK(id == 3);
	ragg__tp_idtab_set(&t, 3, &objs[3]);
	RAGG_CHECK_OK(ragg__tp_idtab_free_id(&t, 20, &id));
	RAGG_CHECK(id == 7);
	released = 0;
	ragg__tp_idtab_destroy(&t, count_release);
	RAGG_CHECKF(released == 19, "%d objects released, 19 held", released);
	RAGG_CHECK(t.slot == NULL && t.n == 0);
	/* A limit below the first growth step is honoured too. */
	for (int i = 0; i < 3; i++) {
		RAGG_CHECK_OK(ragg__tp_idtab_free_id(&t, 3, &id));
		ragg__tp_idtab_set(&t, id, &objs[i]);
	}
	RAGG_CHECK(ragg__tp_idtab_free_id(&t, 3, &id) == -ENOSPC && t.n == 3);
	ragg__tp_idtab_destroy(&t, NULL);
}

/* One registered region of 4096 bytes and one without any access. */
struct softmr_scene {
	struct ragg__tp_idtab t;
	struct ragg__tp_softmr mr, noaccess;
	uint8_t mem[4096];
};

static void softmr_scene_init(struct softmr_scene *sc)
{
	memset(sc, 0, sizeof(*sc));
	RAGG_CHECK_OK(ragg__tp_softmr_reg(&sc->t, 16, &sc->mr, sc->mem, sizeof(sc->mem),
	                                  RAGG__TP_ACCESS_REMOTE_WRITE));
	RAGG_CHECK_OK(ragg__tp_softmr_reg(&sc->t, 16, &sc->noaccess, sc->mem, 64, 0));
	RAGG_CHECK(sc->mr.id == 0 && sc->noaccess.id == 1);
	RAGG_CHECK(sc->mr.base.addr == sc->mem && sc->mr.base.len == sizeof(sc->mem));
}

/* The check's answer for one access; *why is set exactly when refused. */
static int softmr_try(struct softmr_scene *sc, uint32_t id, uint64_t key, uint64_t off,
                      uint64_t len, unsigned access)
{
	struct ragg__tp_softmr *got = NULL;
	const char *why = NULL;
	int rc = ragg__tp_softmr_check(&sc->t, id, key, off, len, access, &got, &why);
	if (rc == 0)
		RAGG_CHECK(got == ragg__tp_idtab_get(&sc->t, id) && why == NULL);
	else
		RAGG_CHECK(got == NULL && why != NULL && why[0]);
	return rc;
}

RAGG_TEST(softmr_check_admits_exactly_the_region)
{
	struct softmr_scene sc;
	softmr_scene_init(&sc);
	const uint64_t k = sc.mr.key, n = sizeof(sc.mem);
	const unsigned w = RAGG__TP_ACCESS_REMOTE_WRITE;

	RAGG_CHECK(softmr_try(&sc, 0, k, 0, n, w) == 0);
	RAGG_CHECK(softmr_try(&sc, 0, k, 0, 0, w) == 0);
	RAGG_CHECK(softmr_try(&sc, 0, k, n - 1, 1, w) == 0);
	/* Exactly at the end: the last bytes, and an empty access there. */
	RAGG_CHECK(softmr_try(&sc, 0, k, n - 10, 10, w) == 0);
	RAGG_CHECK(softmr_try(&sc, 0, k, n, 0, w) == 0);
	ragg__tp_idtab_destroy(&sc.t, NULL);
}

RAGG_TEST(softmr_check_refuses_each_bad_field)
{
	struct softmr_scene sc;
	softmr_scene_init(&sc);
	const uint64_t k = sc.mr.key, n = sizeof(sc.mem);
	const unsigned w = RAGG__TP_ACCESS_REMOTE_WRITE;

	/* Region id. */
	RAGG_CHECK(softmr_try(&sc, 2, k, 0, 1, w) == RAGG_ERR_KEY);
	RAGG_CHECK(softmr_try(&sc, 1000, k, 0, 1, w) == RAGG_ERR_KEY);
	RAGG_CHECK(softmr_try(&sc, UINT32_MAX, k, 0, 0, w) == RAGG_ERR_KEY);
	/* Key: each single bit flipped, and another region's key. */
	for (int bit = 0; bit < 64; bit++)
		RAGG_CHECKF(softmr_try(&sc, 0, k ^ ((uint64_t)1 << bit), 0, 1, w) == RAGG_ERR_KEY,
		            "key with bit %d flipped admitted", bit);
	if (sc.noaccess.key != k)
		RAGG_CHECK(softmr_try(&sc, 0, sc.noaccess.key, 0, 1, w) == RAGG_ERR_KEY);
	/* Access: none asked, more than granted, and a region granting none. */
	RAGG_CHECK(softmr_try(&sc, 0, k, 0, 1, 0) == -EACCES);
	RAGG_CHECK(softmr_try(&sc, 0, k, 0, 1, w | (1u << 7)) == -EACCES);
	RAGG_CHECK(softmr_try(&sc, 1, sc.noaccess.key, 0, 1, w) == -EACCES);
	/* Offset and length. */
	RAGG_CHECK(softmr_try(&sc, 0, k, n - 10, 11, w) == RAGG_ERR_BOUNDS);
	RAGG_CHECK(softmr_try(&sc, 0, k, n, 1, w) == RAGG_ERR_BOUNDS);
	RAGG_CHECK(softmr_try(&sc, 0, k, n + 1, 0, w) == RAGG_ERR_BOUNDS);
	RAGG_CHECK(softmr_try(&sc, 0, k, 0, n + 1, w) == RAGG_ERR_BOUNDS);
	/* Sums that wrap: offset + length past 2^64 lands "inside" if added. */
	RAGG_CHECK(softmr_try(&sc, 0, k, UINT64_MAX, 1, w) == RAGG_ERR_BOUNDS);
	RAGG_CHECK(softmr_try(&sc, 0, k, UINT64_MAX - 10, 100, w) == RAGG_ERR_BOUNDS);
	RAGG_CHECK(softmr_try(&sc, 0, k, (uint64_t)1 << 63, (uint64_t)1 << 63, w) ==
	           RAGG_ERR_BOUNDS);
	RAGG_CHECK(softmr_try(&sc, 0, k, 1, UINT64_MAX, w) == RAGG_ERR_BOUNDS);
	RAGG_CHECK(softmr_try(&sc, 0, k, 0, UINT64_MAX, w) == RAGG_ERR_BOUNDS);
	ragg__tp_idtab_destroy(&sc.t, NULL);
}

RAGG_TEST(softmr_dereg_and_reuse_refuse_the_old_key)
{
	struct softmr_scene sc;
	softmr_scene_init(&sc);
	const uint64_t old = sc.mr.key;
	const unsigned w = RAGG__TP_ACCESS_REMOTE_WRITE;

	ragg__tp_softmr_dereg(&sc.t, &sc.mr);
	RAGG_CHECK(sc.mr.key == 0 && sc.mr.access == 0);
	RAGG_CHECK(softmr_try(&sc, 0, old, 0, 1, w) == RAGG_ERR_KEY);
	/* The id is handed out again, with a new key (a 2^-64 chance aside). */
	struct ragg__tp_softmr again;
	RAGG_CHECK_OK(ragg__tp_softmr_reg(&sc.t, 16, &again, sc.mem, 128, w));
	RAGG_CHECK(again.id == 0 && again.key != old);
	RAGG_CHECK(softmr_try(&sc, 0, old, 0, 1, w) == RAGG_ERR_KEY);
	RAGG_CHECK(softmr_try(&sc, 0, again.key, 0, 128, w) == 0);
	RAGG_CHECK(softmr_try(&sc, 0, again.key, 0, 129, w) == RAGG_ERR_BOUNDS);
	/* Bad ranges and a full table are refused with nothing entered. */
	struct ragg__tp_softmr bad = { .id = 99 };
	RAGG_CHECK(ragg__tp_softmr_reg(&sc.t, 16, &bad, NULL, 1, w) == -EINVAL);
	RAGG_CHECK(ragg__tp_softmr_reg(&sc.t, 16, &bad, (void *)(UINTPTR_MAX - 4), 8, w) ==
	           -EINVAL);
	RAGG_CHECK(bad.id == 99 && ragg__tp_idtab_get(&sc.t, 2) == NULL);
	ragg__tp_idtab_destroy(&sc.t, NULL);
	struct ragg__tp_idtab one = { 0 };
	RAGG_CHECK_OK(ragg__tp_softmr_reg(&one, 1, &again, sc.mem, 1, w));
	RAGG_CHECK(ragg__tp_softmr_reg(&one, 1, &bad, sc.mem, 1, w) == -ENOSPC);
	RAGG_CHECK(bad.id == 99 && ragg__tp_idtab_get(&one, 1) == NULL);
	ragg__tp_idtab_destroy(&one, NULL);
}

RAGG_TEST(in_bounds_and_mr_holds)
{
	RAGG_CHECK(ragg__tp_in_bounds(0, 0, 0) && !ragg__tp_in_bounds(0, 0, 1));
	RAGG_CHECK(ragg__tp_in_bounds(UINT64_MAX, UINT64_MAX, 0));
	RAGG_CHECK(ragg__tp_in_bounds(UINT64_MAX, 1, UINT64_MAX - 1));
	RAGG_CHECK(!ragg__tp_in_bounds(UINT64_MAX, 2, UINT64_MAX - 1));
	uint8_t buf[100];
	struct ragg_tp_mr mr = { .addr = buf + 10, .len = 50 };
	RAGG_CHECK(ragg__tp_mr_holds(&mr, buf + 10, 50) && ragg__tp_mr_holds(&mr, buf + 60, 0));
	RAGG_CHECK(!ragg__tp_mr_holds(&mr, buf + 9, 1) && !ragg__tp_mr_holds(&mr, buf + 59, 2));
	RAGG_CHECK(!ragg__tp_mr_holds(&mr, buf + 61, 0) && !ragg__tp_mr_holds(&mr, buf + 10, 51));
	RAGG_CHECK(!ragg__tp_mr_holds(&mr, buf + 11, SIZE_MAX));
}

/* The registry is the list: ragg_transport_list() and the settings tables
 * come from it, in auto's order, and every built-in table passes the
 * library's check. */
RAGG_TEST(registry_is_the_one_list)
{
	const struct ragg_tp_ops *const *list = ragg_transport_list();
	const struct ragg__tp_entry *e = ragg__tp_registry;
	int n = 0;
	for (; e->ops; e++, n++) {
		char why[256], prefix[16];
		RAGG_CHECK(list[n] == e->ops);
		RAGG_CHECKF(ragg_transport_check(e->ops, why, sizeof(why)) == 0, "%s: %s",
		            e->ops->name, why);
		RAGG_CHECK(ragg_transport_find(e->ops->name) == e->ops);
		RAGG_CHECK(e->settings != NULL && e->settings[0].field != NULL);
		size_t i = 0;
		for (; e->ops->name[i] && i + 1 < sizeof(prefix); i++)
			prefix[i] = (char)toupper((unsigned char)e->ops->name[i]);
		prefix[i] = 0;
		RAGG_CHECKF(strcmp(e->prefix, prefix) == 0, "%s: prefix %s", e->ops->name,
		            e->prefix);
		/* describe is set; a transport with nothing to say answers so. */
		char buf[8192];
		RAGG_CHECK(RAGG_TP_HAS_OP(e->ops, describe));
		int rc = e->ops->describe(buf, sizeof(buf));
		RAGG_CHECKF(rc == 0 || rc == -EOPNOTSUPP, "%s: describe: %d", e->ops->name, rc);
		RAGG_CHECK(memchr(buf, 0, sizeof(buf)) != NULL);
	}
	RAGG_CHECK(list[n] == NULL && n >= 2);
	RAGG_CHECK(ragg_transport_find("nosuch") == NULL && ragg_transport_find(NULL) == NULL);
	/* auto's order: shared memory first, tcp (runs anywhere) last. */
	RAGG_CHECK(strcmp(list[0]->name, "shm") == 0 && strcmp(list[n - 1]->name, "tcp") == 0);
}

RAGG_TEST(transport_check_refuses_tables_it_does_not_understand)
{
	const struct ragg_tp_ops *tcp = ragg_transport_find("tcp");
	struct ragg_tp_ops t;
	char why[256];
	RAGG_CHECK(tcp != NULL);

	RAGG_CHECK(ragg_transport_check(NULL, why, sizeof(why)) == -EINVAL);
	t = *tcp;
	t.abi = RAGG_TP_ABI_VERSION + 1;
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == RAGG_ERR_VERSION);
	RAGG_CHECKF(strstr(why, "ABI") != NULL, "why: %s", why);
	t.abi = 0;
	RAGG_CHECK(ragg_transport_check(&t, NULL, 0) == RAGG_ERR_VERSION);
	t = *tcp;
	t.size = offsetof(struct ragg_tp_ops, wait);
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == RAGG_ERR_VERSION);
	t.size = 0;
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == RAGG_ERR_VERSION);
	/* A table from an older header, without describe, is understood. */
	t = *tcp;
	t.size = offsetof(struct ragg_tp_ops, describe);
	t.describe = NULL;
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == 0);
	RAGG_CHECK(!RAGG_TP_HAS_OP(&t, describe));
	/* Required operations are never NULL. */
	t = *tcp;
	t.write_imm = NULL;
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == -EINVAL);
	RAGG_CHECKF(strstr(why, "write_imm") != NULL, "why: %s", why);
	t = *tcp;
	t.probe = NULL;
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == -EINVAL);
	t = *tcp;
	t.describe = NULL;
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == -EINVAL);
	t = *tcp;
	t.name = "";
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == -EINVAL);
	/* Pairs go together. */
	t = *tcp;
	t.wait_fd = NULL;
	RAGG_CHECK(t.arm == NULL || ragg_transport_check(&t, why, sizeof(why)) == -EINVAL);
	t = *tcp;
	t.mem_alloc = NULL;
	t.mem_free = ragg_transport_find("shm")->mem_free;
	RAGG_CHECK(ragg_transport_check(&t, why, sizeof(why)) == -EINVAL);
	/* A short why is cut, not overrun. */
	t = *tcp;
	t.abi = 99;
	char tiny[8];
	memset(tiny, 'x', sizeof(tiny));
	RAGG_CHECK(ragg_transport_check(&t, tiny, sizeof(tiny)) == RAGG_ERR_VERSION);
	RAGG_CHECK(memchr(tiny, 0, sizeof(tiny)) != NULL);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
