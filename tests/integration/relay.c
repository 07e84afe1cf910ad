/*
 * A byte-forwarding tcp relay for the integration tests, standing where an
 * on-path attacker would.
 *   relay tap PORT TARGET FILE   accept one connection on 127.0.0.1:PORT,
 *                                forward both ways to TARGET (host:port),
 *                                and record what the connecting side sent
 *                                into FILE; exits when either side closes
 *   relay replay TARGET FILE     connect to TARGET, send FILE's bytes,
 *                                read and drop the answers until the peer
 *                                closes or 3 s pass
 *   relay publish ROOT ID KEY VALUE
 *                                publish at the rendezvous as identity ID
 *                                with RAGG_JOB_KEY (an insider's move: it
 *                                holds the key)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bootstrap/kv.h"

static int dial(const char *target)
{
	char host[64];
	const char *colon = strrchr(target, ':');
	if (!colon || (size_t)(colon - target) >= sizeof(host))
		return -1;
	memcpy(host, target, (size_t)(colon - target));
	host[colon - target] = 0;
	struct sockaddr_in sa = { .sin_family = AF_INET,
		                  .sin_port = htons((uint16_t)atoi(colon + 1)) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("relay: connect");
		return -1;
	}
	return fd;
}

static int pass(int from, int to, FILE *rec)
{
	char buf[1 << 16];
	ssize_t n = read(from, buf, sizeof(buf));
	if (n <= 0)
		return -1;
	if (rec && fwrite(buf, 1, (size_t)n, rec) != (size_t)n)
		return -1;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));
		if (w <= 0)
			return -1;
		off += w;
	}
	return 0;
}

static int tap(int port, const char *target, const char *file)
{
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1)) {
		perror("relay: listen");
		return 1;
	}
	printf("relay: listening\n");
	fflush(stdout);
	int c = accept(lfd, NULL, NULL);
	int t = dial(target);
	FILE *rec = fopen(file, "wb");
	if (c < 0 || t < 0 || !rec)
		return 1;
	struct pollfd p[2] = { { .fd = c, .events = POLLIN }, { .fd = t, .events = POLLIN } };
	for (;;) {
		if (poll(p, 2, -1) < 0)
			break;
		if (p[0].revents && pass(c, t, rec))
			break;
		if (p[1].revents && pass(t, c, NULL))
			break;
		fflush(rec);
	}
	fclose(rec);
	return 0;
}

static int replay(const char *target, const char *file)
{
	static char buf[1 << 20];
	FILE *f = fopen(file, "rb");
	if (!f)
		return 1;
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	int t = dial(target);
	if (t < 0)
		return 1;
	if (write(t, buf, n) != (ssize_t)n)
		return 1;
	printf("relay: replayed %zu bytes\n", n);
	time_t end = time(NULL) + 3;
	struct pollfd p = { .fd = t, .events = POLLIN };
	while (time(NULL) < end && poll(&p, 1, 200) >= 0)
		if (p.revents && read(t, buf, sizeof(buf)) <= 0)
			break;
	close(t);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "tap") == 0)
		return tap(atoi(argv[2]), argv[3], argv[4]);
	if (argc == 4 && strcmp(argv[1], "replay") == 0)
		return replay(argv[2], argv[3]);
	if (argc == 6 && strcmp(argv[1], "publish") == 0) {
		struct ragg__kv *kv;
		const char *key = getenv("RAGG_JOB_KEY");
		if (ragg__kv_connect(argv[2], 2000, key ? key : "", &kv))
			return 1;
		int rc = ragg__kv_put(kv, argv[3], argv[4], argv[5]);
		ragg__kv_close(kv);
		printf("relay: published %s=%s as %s: %d\n", argv[4], argv[5], argv[3], rc);
		return rc ? 1 : 0;
	}
	fprintf(
	    stderr,
	    "usage: relay tap PORT TARGET FILE | relay replay TARGET FILE | relay publish ROOT ID "
	    "KEY VALUE\n");
	return 2;
}
