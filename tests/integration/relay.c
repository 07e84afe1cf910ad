/*
 * A byte-forwarding tcp relay for the integration tests, standing where an
 * on-path attacker would.
 *   relay tap PORT TARGET FILE   accept one connection on 127.0.0.1:PORT,
 *                                forward both ways to TARGET (host:port),
 *                                and record what the connecting side sent
 *                                into FILE; exits when either side closes
 *   relay replay TARGET FILE [S] connect to TARGET, send FILE's bytes,
 *                                read and drop the answers until the peer
 *                                closes or S seconds (default 3) pass
 *   relay flip PORT TARGET write N
 *   relay flip PORT TARGET offset N
 *                                as tap (recording nothing), but flip one
 *                                bit of what the connecting side sends:
 *                                `write`: in the middle of the payload of
 *                                its N-th (from 1) tcp write frame with a
 *                                payload, read from the frame headers as
 *                                they pass (plain frames only); `offset`:
 *                                the byte at offset N of its stream (any
 *                                frames, sealed ones too). Says "relay:
 *                                flipped byte N" when it did
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

/* Where the flip goes: an offset in the client's stream, known at once
 * (offset) or found by following plain frame headers (write). */
struct flip {
	int write_n; /* > 0: the write_n-th write frame with a payload */
	long long at; /* the byte to flip, or -1 while not known */
	long long pos; /* bytes of the stream passed so far */
	unsigned char hdr[40];
	long long frame_end; /* stream offset where the next header starts */
	int writes;
	int done;
};

static void flip_scan(struct flip *f, unsigned char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++, f->pos++) {
		if (f->write_n > 0 && f->at < 0 && f->pos >= f->frame_end &&
		    f->pos < f->frame_end + 40) {
			f->hdr[f->pos - f->frame_end] = buf[i];
			if (f->pos == f->frame_end + 39) {
				unsigned long long len = 0;
				for (int k = 7; k >= 0; k--)
					len = len << 8 | f->hdr[32 + k];
				long long start = f->frame_end + 40;
				if (f->hdr[5] == 3 && len && ++f->writes == f->write_n)
					f->at = start + (long long)(len / 2);
				f->frame_end = start + (long long)len;
			}
		}
		if (!f->done && f->pos == f->at) {
			buf[i] ^= 0x01;
			f->done = 1;
			printf("relay: flipped byte %lld\n", f->pos);
			fflush(stdout);
		}
	}
}

static int pass_flip(int from, int to, struct flip *f)
{
	unsigned char buf[1 << 16];
	ssize_t n = read(from, buf, sizeof(buf));
	if (n <= 0)
		return -1;
	if (f)
		flip_scan(f, buf, (size_t)n);
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(to, buf + off, (size_t)(n - off));
		if (w <= 0)
			return -1;
		off += w;
	}
	return 0;
}

static int flip(int port, const char *target, const char *mode, long long n)
{
	struct flip f = { .at = -1 };
	if (strcmp(mode, "write") == 0 && n > 0)
		f.write_n = (int)n;
	else if (strcmp(mode, "offset") == 0 && n >= 0)
		f.at = n;
	else
		return 2;
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
	if (c < 0 || t < 0)
		return 1;
	struct pollfd p[2] = { { .fd = c, .events = POLLIN }, { .fd = t, .events = POLLIN } };
	for (;;) {
		if (poll(p, 2, -1) < 0)
			break;
		if (p[0].revents && pass_flip(c, t, &f))
			break;
		if (p[1].revents && pass_flip(t, c, NULL))
			break;
	}
	printf("relay: passed %lld bytes%s\n", f.pos, f.done ? "" : ", flipped none");
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

static int replay(const char *target, const char *file, int hold)
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
	time_t end = time(NULL) + hold;
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
	if (argc == 6 && strcmp(argv[1], "flip") == 0)
		return flip(atoi(argv[2]), argv[3], argv[4], atoll(argv[5]));
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "replay") == 0)
		return replay(argv[2], argv[3], argc == 5 ? atoi(argv[4]) : 3);
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
	    "usage: relay tap PORT TARGET FILE | relay flip PORT TARGET write|offset N | relay "
	    "replay TARGET FILE [S] | relay publish ROOT ID KEY VALUE\n");
	return 2;
}
