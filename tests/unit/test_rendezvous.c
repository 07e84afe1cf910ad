/* The rendezvous store: publish, look up, wait, refuse garbage. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bootstrap/kv.h"
#include "clock.h"
#include "harness.h"

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	RAGG_CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	RAGG_CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

RAGG_TEST(put_get)
{
	char root[64], v[RAGG_KV_VALUE_MAX];
	struct ragg__kv_server *s;
	struct ragg__kv *a, *b;
	snprintf(root, sizeof(root), "127.0.0.1:%d", free_port());
	RAGG_CHECK_OK(ragg__kv_server_start(root, 2000, &s));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, &a));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, &b));
	RAGG_CHECK_OK(ragg__kv_put(a, "agent/0", "127.0.0.1:1234"));
	RAGG_CHECK_OK(ragg__kv_get(b, "agent/0", v, sizeof(v), 1000));
	RAGG_CHECK(strcmp(v, "127.0.0.1:1234") == 0);
	RAGG_CHECK_OK(ragg__kv_put(a, "agent/0", "127.0.0.1:999"));
	RAGG_CHECK_OK(ragg__kv_get(b, "agent/0", v, sizeof(v), 1000));
	RAGG_CHECK(strcmp(v, "127.0.0.1:999") == 0);
	RAGG_CHECK(ragg__kv_put(a, "bad key", "x") < 0);
	RAGG_CHECK(ragg__kv_put(a, "k", "") < 0);
	RAGG_CHECK_OK(ragg__kv_local_host(a, v, sizeof(v)));
	RAGG_CHECK(strcmp(v, "127.0.0.1") == 0);
	ragg__kv_close(a);
	ragg__kv_close(b);
	ragg__kv_server_stop(s);
}

RAGG_TEST(get_times_out)
{
	char root[64], v[64];
	struct ragg__kv_server *s;
	struct ragg__kv *a;
	snprintf(root, sizeof(root), "127.0.0.1:%d", free_port());
	RAGG_CHECK_OK(ragg__kv_server_start(root, 2000, &s));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, &a));
	uint64_t t0 = ragg__now_ms();
	RAGG_CHECK(ragg__kv_get(a, "never", v, sizeof(v), 300) == RAGG_ERR_TIMEOUT);
	uint64_t dt = ragg__now_ms() - t0;
	RAGG_CHECKF(dt >= 300 && dt < 3000, "took %llu ms", (unsigned long long)dt);
	ragg__kv_close(a);
	ragg__kv_server_stop(s);
}

RAGG_TEST(unreachable_root_times_out)
{
	char root[64];
	struct ragg__kv *a = NULL;
	snprintf(root, sizeof(root), "127.0.0.1:%d", free_port());
	uint64_t t0 = ragg__now_ms();
	RAGG_CHECK(ragg__kv_connect(root, 400, &a) == RAGG_ERR_TIMEOUT);
	RAGG_CHECK(a == NULL);
	RAGG_CHECK(ragg__now_ms() - t0 < 3000);
}

RAGG_TEST(garbage_client_dropped_others_served)
{
	char root[64], v[64];
	struct ragg__kv_server *s;
	struct ragg__kv *a;
	int port = free_port();
	snprintf(root, sizeof(root), "127.0.0.1:%d", port);
	RAGG_CHECK_OK(ragg__kv_server_start(root, 2000, &s));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, &a));
	RAGG_CHECK_OK(ragg__kv_put(a, "x", "1"));
	/* A raw client sending nonsense is dropped ... */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
		                  .sin_port = htons((uint16_t)port),
		                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	RAGG_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	const char junk[] = "\x01\x02\xffHELLO?\n";
	RAGG_CHECK(write(fd, junk, sizeof(junk) - 1) == (ssize_t)sizeof(junk) - 1);
	char c;
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	RAGG_CHECK(read(fd, &c, 1) == 0); /* closed by the server */
	close(fd);
	/* ... and the good client carries on. */
	RAGG_CHECK_OK(ragg__kv_get(a, "x", v, sizeof(v), 1000));
	RAGG_CHECK(strcmp(v, "1") == 0);
	ragg__kv_close(a);
	ragg__kv_server_stop(s);
}

RAGG_TEST(hostport_split)
{
	char h[64], p[16];
	RAGG_CHECK_OK(ragg__split_hostport("127.0.0.1:80", h, sizeof(h), p, sizeof(p)));
	RAGG_CHECK(strcmp(h, "127.0.0.1") == 0 && strcmp(p, "80") == 0);
	RAGG_CHECK_OK(ragg__split_hostport("[::1]:8080", h, sizeof(h), p, sizeof(p)));
	RAGG_CHECK(strcmp(h, "::1") == 0 && strcmp(p, "8080") == 0);
	RAGG_CHECK(ragg__split_hostport("host", h, sizeof(h), p, sizeof(p)) != 0);
	RAGG_CHECK(ragg__split_hostport(":80", h, sizeof(h), p, sizeof(p)) != 0);
	RAGG_CHECK(ragg__split_hostport("h:", h, sizeof(h), p, sizeof(p)) != 0);
	RAGG_CHECK(ragg__split_hostport("[::1:80", h, sizeof(h), p, sizeof(p)) != 0);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
