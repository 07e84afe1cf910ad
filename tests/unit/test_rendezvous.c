/* The rendezvous store: publish, look up, wait, refuse garbage. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

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
	RAGG_CHECK_OK(ragg__kv_server_start(root, 2000, "k", &s));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, "k", &a));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, "k", &b));
	RAGG_CHECK_OK(ragg__kv_put(a, "id", "agent/0", "127.0.0.1:1234"));
	RAGG_CHECK_OK(ragg__kv_get(b, "agent/0", v, sizeof(v), 1000));
	RAGG_CHECK(strcmp(v, "127.0.0.1:1234") == 0);
	RAGG_CHECK_OK(ragg__kv_put(a, "id", "agent/0", "127.0.0.1:999"));
	RAGG_CHECK_OK(ragg__kv_get(b, "agent/0", v, sizeof(v), 1000));
	RAGG_CHECK(strcmp(v, "127.0.0.1:999") == 0);
	RAGG_CHECK(ragg__kv_put(a, "id", "bad key", "x") < 0);
	RAGG_CHECK(ragg__kv_put(a, "id", "k", "") < 0);
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
	RAGG_CHECK_OK(ragg__kv_server_start(root, 2000, "k", &s));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, "k", &a));
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
	RAGG_CHECK(ragg__kv_connect(root, 400, "k", &a) == RAGG_ERR_TIMEOUT);
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
	RAGG_CHECK_OK(ragg__kv_server_start(root, 2000, "k", &s));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, "k", &a));
	RAGG_CHECK_OK(ragg__kv_put(a, "id", "x", "1"));
	/* A raw client sending nonsense is dropped ... */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
		                  .sin_port = htons((uint16_t)port),
		                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	RAGG_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	const char junk[] = "\x01\x02\xffHELLO?\n";
	RAGG_CHECK(write(fd, junk, sizeof(junk) - 1) == (ssize_t)sizeof(junk) - 1);
	char c[256];
	ssize_t n;
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while ((n = read(fd, c, sizeof(c))) > 0) /* its challenge */
		;
	RAGG_CHECK(n == 0); /* closed by the server */
	close(fd);
	/* ... and the good client carries on. */
	RAGG_CHECK_OK(ragg__kv_get(a, "x", v, sizeof(v), 1000));
	RAGG_CHECK(strcmp(v, "1") == 0);
	ragg__kv_close(a);
	ragg__kv_server_stop(s);
}

/* Only holders of the key publish or read; the first identity to publish
 * a key owns it; a request seen once does not verify again. */
RAGG_TEST(strangers_refused)
{
	char root[64], v[64];
	struct ragg__kv_server *s;
	struct ragg__kv *a, *b, *stranger;
	int port = free_port();
	snprintf(root, sizeof(root), "127.0.0.1:%d", port);
	RAGG_CHECK_OK(ragg__kv_server_start(root, 2000, "k", &s));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, "k", &a));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, "k", &b));
	RAGG_CHECK_OK(ragg__kv_connect(root, 2000, "not k", &stranger));
	RAGG_CHECK(ragg__kv_put(stranger, "agent/0", "agent/0", "evil") < 0);
	RAGG_CHECK_OK(ragg__kv_put(a, "agent/0", "agent/0", "good"));
	RAGG_CHECK(ragg__kv_put(b, "agent/1", "agent/0", "evil") == -EEXIST);
	RAGG_CHECK_OK(ragg__kv_put(a, "agent/0", "agent/0", "good2"));
	RAGG_CHECK_OK(ragg__kv_get(b, "agent/0", v, sizeof(v), 1000));
	RAGG_CHECK(strcmp(v, "good2") == 0);
	/* A request replayed on a new connection, or again on its own. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
		                  .sin_port = htons((uint16_t)port),
		                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	RAGG_CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	char line[256], mac[65], chal_hex[65];
	unsigned char chal[RAGG_KV_CHALLENGE_BYTES];
	struct timeval tv = { .tv_sec = 2 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssize_t n = read(fd, line, 5 + 64 + 1);
	RAGG_CHECK(n == 70 && memcmp(line, "CHAL ", 5) == 0);
	memcpy(chal_hex, line + 5, 64);
	chal_hex[64] = 0;
	RAGG_CHECK_OK(sodium_hex2bin(chal, sizeof(chal), chal_hex, 64, NULL, NULL, NULL));
	ragg__kv_mac("k", chal, "PUT agent/1 agent/1 x 0", mac);
	snprintf(line, sizeof(line), "PUT agent/1 agent/1 x 0 %s\n", mac);
	RAGG_CHECK(write(fd, line, strlen(line)) == (ssize_t)strlen(line));
	RAGG_CHECK(read(fd, v, 3) == 3 && memcmp(v, "OK\n", 3) == 0);
	RAGG_CHECK(write(fd, line, strlen(line)) == (ssize_t)strlen(line));
	RAGG_CHECK(read(fd, v, 3) == 0); /* same seq again: dropped */
	close(fd);
	ragg__kv_close(a);
	ragg__kv_close(b);
	ragg__kv_close(stranger);
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
