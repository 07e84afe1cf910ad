/*
 * ragg-run: start a whole job on one machine. Each role and rank is a
 * process of PROGRAM with its RAGG_* variables set; their output comes back
 * line by line with a rank prefix. The first process to fail stops the
 * others (SIGTERM, then SIGKILL after a grace period) and ragg-run exits
 * non-zero.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#define GRACE_MS       3000
#define LINE_MAX_BYTES 4096

struct proc {
	char tag[16];
	pid_t pid;
	int out_fd; /* stdout and stderr, merged */
	int status;
	bool exited;
	size_t len;
	char line[LINE_MAX_BYTES];
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ragg-run -w WORKERS -a AGENTS -s SERVERS [-t TRANSPORT] [-p PORT]\n"
	           "                [-T TIMEOUT_S] [-K] -- PROGRAM [ARGS...]\n"
	           "Starts every process of a ragg job on this machine; see ragg-run(1).\n");
}

/* The rendezvous' socket: bound here to port 0 (the kernel picks a free
 * one, nothing is guessed), listening, and handed to server 0 as
 * RAGG_ROOT_FD, so that the port stays ours from bind to serve; -1 with
 * --port, where server 0 binds that port itself. */
static int root_fd = -1;

static int root_listen(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 1024) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		close(fd);
		return -1;
	}
	root_fd = fd;
	return ntohs(a.sin_port);
}

static void emit(struct proc *p, const char *s, size_t n)
{
	char buf[LINE_MAX_BYTES + 32];
	int h = snprintf(buf, sizeof(buf), "[%s] ", p->tag);
	memcpy(buf + h, s, n);
	buf[h + (int)n] = '\n';
	fwrite(buf, 1, (size_t)h + n + 1, stdout);
	fflush(stdout);
}

/* Read what is there; print complete lines with the prefix. Returns 0 at
 * end of file. */
static int drain(struct proc *p)
{
	ssize_t n = read(p->out_fd, p->line + p->len, sizeof(p->line) - p->len);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 1 : 0;
	if (n == 0) {
		if (p->len)
			emit(p, p->line, p->len);
		p->len = 0;
		return 0;
	}
	p->len += (size_t)n;
	char *start = p->line, *nl;
	while ((nl = memchr(start, '\n', p->len - (size_t)(start - p->line)))) {
		emit(p, start, (size_t)(nl - start));
		start = nl + 1;
	}
	p->len -= (size_t)(start - p->line);
	memmove(p->line, start, p->len);
	if (p->len == sizeof(p->line)) {
		emit(p, p->line, p->len);
		p->len = 0;
	}
	return 1;
}

static pid_t spawn(struct proc *p, const char *role, int rank, char **argv, char **env_extra)
{
	int fds[2];
	p->out_fd = -1;
	p->exited = true; /* until it is running */
	if (pipe2(fds, O_CLOEXEC))
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		char rank_s[16];
		snprintf(rank_s, sizeof(rank_s), "%d", rank);
		setenv("RAGG_ROLE", role, 1);
		setenv("RAGG_RANK", rank_s, 1);
		for (char **e = env_extra; *e; e += 2)
			setenv(e[0], e[1], 1);
		/* Only server 0 inherits the rendezvous' socket. */
		unsetenv("RAGG_ROOT_FD");
		if (root_fd >= 0 && rank == 0 && strcmp(role, "server") == 0 &&
		    fcntl(root_fd, F_SETFD, 0) == 0) {
			char fd_s[16];
			snprintf(fd_s, sizeof(fd_s), "%d", root_fd);
			setenv("RAGG_ROOT_FD", fd_s, 1);
		}
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		execvp(argv[0], argv);
		fprintf(stderr, "ragg-run: cannot start %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	p->pid = pid;
	p->out_fd = fds[0];
	p->exited = false;
	return pid;
}

static void signal_all(struct proc *ps, int n, int sig)
{
	for (int i = 0; i < n; i++)
		if (!ps[i].exited && ps[i].pid > 0)
			kill(ps[i].pid, sig);
}

static const char *describe(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "status %d", status);
	return buf;
}

int main(int argc, char **argv)
{
	int workers = 0, agents = 0, servers = 0, port = 0, timeout_s = 0, c;
	bool no_key = false;
	const char *transport = NULL;
	static const struct option longopts[] = {
		{ "workers", required_argument, NULL, 'w' },
		{ "agents", required_argument, NULL, 'a' },
		{ "servers", required_argument, NULL, 's' },
		{ "transport", required_argument, NULL, 't' },
		{ "port", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "no-key", no_argument, NULL, 'K' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	while ((c = getopt_long(argc, argv, "+w:a:s:t:p:T:Kh", longopts, NULL)) != -1) {
		switch (c) {
		case 'w':
			workers = atoi(optarg);
			break;
		case 'a':
			agents = atoi(optarg);
			break;
		case 's':
			servers = atoi(optarg);
			break;
		case 't':
			transport = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'T':
			timeout_s = atoi(optarg);
			break;
		case 'K':
			no_key = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc || workers < 1 || agents < 1 || servers < 1 || agents > workers ||
	    port < 0 || port > 65535 || timeout_s < 0) {
		usage(stderr);
		fprintf(stderr,
		        "ragg-run: need -w, -a, -s >= 1 (agents <= workers) and a program\n");
		return 2;
	}
	if (!port && (port = root_listen()) <= 0) {
		fprintf(stderr, "ragg-run: cannot listen for the rendezvous: %s\n", strerror(errno));
		return 1;
	}
	/* A fresh key per job unless one is given or none is wanted: the
	 * job's ports then take only its own processes. */
	const char *key = getenv("RAGG_JOB_KEY");
	if (!no_key && (!key || !*key)) {
		uint8_t raw[32];
		char hex[2 * sizeof(raw) + 1];
		if (sodium_init() < 0) {
			fprintf(stderr, "ragg-run: libsodium failed to start\n");
			return 1;
		}
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
		sodium_memzero(raw, sizeof(raw));
		setenv("RAGG_JOB_KEY", hex, 1);
		sodium_memzero(hex, sizeof(hex));
	}
	char root[64], w_s[16], a_s[16], s_s[16];
	snprintf(root, sizeof(root), "127.0.0.1:%d", port);
	snprintf(w_s, sizeof(w_s), "%d", workers);
	snprintf(a_s, sizeof(a_s), "%d", agents);
	snprintf(s_s, sizeof(s_s), "%d", servers);
	char *env[] = { "RAGG_ROOT",
		        root,
		        "RAGG_WORKERS",
		        w_s,
		        "RAGG_AGENTS",
		        a_s,
		        "RAGG_SERVERS",
		        s_s,
		        transport ? "RAGG_TRANSPORT" : NULL,
		        (char *)transport,
		        NULL,
		        NULL };

	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int n = workers + agents + servers;
	struct proc *ps = calloc((size_t)n, sizeof(*ps));
	struct pollfd *pfd = calloc((size_t)n, sizeof(*pfd));
	if (!ps || !pfd)
		return 1;
	/* Servers first: server 0 serves the rendezvous. */
	int k = 0, failed = 0;
	for (int r = 0; r < servers; r++, k++) {
		snprintf(ps[k].tag, sizeof(ps[k].tag), "s%d", r);
		if (spawn(&ps[k], "server", r, argv + optind, env) < 0)
			failed = 1;
	}
	/* Server 0 has it now. */
	if (root_fd >= 0) {
		close(root_fd);
		root_fd = -1;
	}
	for (int r = 0; r < agents; r++, k++) {
		snprintf(ps[k].tag, sizeof(ps[k].tag), "a%d", r);
		if (spawn(&ps[k], "agent", r, argv + optind, env) < 0)
			failed = 1;
	}
	for (int r = 0; r < workers; r++, k++) {
		snprintf(ps[k].tag, sizeof(ps[k].tag), "w%d", r);
		if (spawn(&ps[k], "worker", r, argv + optind, env) < 0)
			failed = 1;
	}
	if (failed) {
		fprintf(stderr, "ragg-run: cannot start processes: %s\n", strerror(errno));
		signal_all(ps, k, SIGKILL);
	}

	uint64_t start = now_ms(), stop_at = 0;
	int running = 0, open_fds = 0, exit_code = failed;
	for (int i = 0; i < k; i++) {
		running += !ps[i].exited;
		open_fds += ps[i].out_fd >= 0;
	}
	char desc[64];
	while (running > 0 || open_fds > 0) {
		int m = 0;
		for (int i = 0; i < k; i++)
			if (ps[i].out_fd >= 0)
				pfd[m++] = (struct pollfd){ .fd = ps[i].out_fd, .events = POLLIN };
		poll(pfd, (nfds_t)m, 100);
		for (int i = 0; i < k; i++)
			if (ps[i].out_fd >= 0 && !drain(&ps[i])) {
				close(ps[i].out_fd);
				ps[i].out_fd = -1;
				open_fds--;
			}
		pid_t pid;
		int status;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			for (int i = 0; i < k; i++) {
				if (ps[i].pid != pid || ps[i].exited)
					continue;
				ps[i].exited = true;
				ps[i].status = status;
				running--;
				if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !stop_at) {
					fprintf(stderr,
					        "ragg-run: %s failed (%s); stopping the job\n",
					        ps[i].tag, describe(status, desc, sizeof(desc)));
					exit_code = 1;
					stop_at = now_ms();
					signal_all(ps, k, SIGTERM);
				}
			}
		}
		if (interrupted && !stop_at) {
			fprintf(stderr, "ragg-run: interrupted; stopping the job\n");
			exit_code = 128 + interrupted;
			stop_at = now_ms();
			signal_all(ps, k, SIGTERM);
		}
		if (timeout_s && !stop_at && now_ms() - start > (uint64_t)timeout_s * 1000u) {
			fprintf(stderr, "ragg-run: job still running after %d s; stopping it\n",
			        timeout_s);
			exit_code = 1;
			stop_at = now_ms();
			signal_all(ps, k, SIGTERM);
		}
		if (stop_at && now_ms() - stop_at > GRACE_MS)
			signal_all(ps, k, SIGKILL);
		/* A process may leave its output open in a child of its own;
		 * once all have exited and a grace period passed, stop reading. */
		if (running == 0 && stop_at && now_ms() - stop_at > 2 * GRACE_MS)
			break;
	}
	for (int i = 0; i < k; i++)
		if (ps[i].exited && !(WIFEXITED(ps[i].status) && WEXITSTATUS(ps[i].status) == 0) &&
		    exit_code == 0)
			exit_code = 1;
	free(ps);
	free(pfd);
	return exit_code;
}
