/* Command line, perftest-style. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: ragg-perf [options]         server\n"
	        "       ragg-perf [options] HOST    client\n"
	        "\n"
	        "  -t, --transport NAME   transport (default tcp; also RAGG_TRANSPORT)\n"
	        "  -p, --port PORT        port (default 18515)\n"
	        "  -B, --bind HOST        server: listen on HOST (default: all)\n"
	        "  -s, --size BYTES       message size (default 65536; K, M, G suffixes)\n"
	        "  -a, --all              every power of two up to --max-size\n"
	        "  -m, --max-size BYTES   largest size for -a (bw 256M, lat 8M)\n"
	        "  -n, --iters N          iterations per size\n"
	        "  -D, --duration SECONDS run each size this long instead\n"
	        "  -l, --latency          latency (ping-pong) instead of bandwidth\n"
	        "  -d, --depth N          writes in flight for bandwidth (default: queue depth)\n"
	        "  -x, --gid-index N      RDMA GID index (sets RAGG_VERBS_GID_INDEX)\n"
	        "  -T, --timeout SECONDS  server: give up without a client; both: without\n"
	        "                         progress (default 60)\n"
	        "      --busy             spin in poll() instead of sleeping\n"
	        "      --seal             both: seal the connection (as RAGG_SEAL=on does)\n"
	        "                         under fixed keys: measures the cost, protects\n"
	        "                         nothing\n"
	        "      --json             one JSON object per size instead of the table\n"
	        "  -v, --verbose          transport log on stderr (twice: debug)\n"
	        "  -h, --help\n");
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return -1;
	int shift = 0;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case '\0':
		break;
	default:
		return -1;
	}
	if (shift && *++end && toupper((unsigned char)*end) == 'I')
		end++;
	if (shift && *end && toupper((unsigned char)*end) == 'B')
		end++;
	if (*end || v > (SIZE_MAX >> shift))
		return -1;
	*out = (size_t)v << shift;
	return 0;
}

static long parse_long(const char *s, const char *what, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 0);
	if (errno || end == s || *end || v < min || v > max)
		perf_die("bad %s \"%s\"", what, s);
	return v;
}

int perf_parse(int argc, char **argv, struct perf_opts *o)
{
	enum { OPT_JSON = 256, OPT_BUSY, OPT_SEAL };
	static const struct option longs[] = {
		{ "transport", required_argument, NULL, 't' },
		{ "port", required_argument, NULL, 'p' },
		{ "bind", required_argument, NULL, 'B' },
		{ "size", required_argument, NULL, 's' },
		{ "all", no_argument, NULL, 'a' },
		{ "max-size", required_argument, NULL, 'm' },
		{ "iters", required_argument, NULL, 'n' },
		{ "duration", required_argument, NULL, 'D' },
		{ "latency", no_argument, NULL, 'l' },
		{ "depth", required_argument, NULL, 'd' },
		{ "gid-index", required_argument, NULL, 'x' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "busy", no_argument, NULL, OPT_BUSY },
		{ "seal", no_argument, NULL, OPT_SEAL },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *env = getenv("RAGG_TRANSPORT");
	memset(o, 0, sizeof(*o));
	o->transport = env && *env && strcmp(env, "auto") ? env : "tcp";
	o->port = 18515;
	o->mode = PERF_BW;
	o->size = 65536;
	o->timeout_s = 60;

	int c;
	while ((c = getopt_long(argc, argv, "t:p:B:s:am:n:D:ld:x:T:vh", longs, NULL)) != -1) {
		switch (c) {
		case 't':
			o->transport = optarg;
			break;
		case 'p':
			o->port = (unsigned)parse_long(optarg, "port", 0, 65535);
			break;
		case 'B':
			o->bind = optarg;
			break;
		case 's':
			if (parse_size(optarg, &o->size))
				perf_die("bad size \"%s\"", optarg);
			break;
		case 'a':
			o->all = true;
			break;
		case 'm':
			if (parse_size(optarg, &o->max_size) || !o->max_size)
				perf_die("bad size \"%s\"", optarg);
			break;
		case 'n':
			o->iters = (uint64_t)parse_long(optarg, "iteration count", 1, 1L << 40);
			break;
		case 'D':
			o->duration = strtod(optarg, NULL);
			if (!(o->duration > 0))
				perf_die("bad duration \"%s\"", optarg);
			break;
		case 'l':
			o->mode = PERF_LAT;
			break;
		case 'd':
			o->depth = (int)parse_long(optarg, "depth", 1, 1 << 20);
			break;
		case 'x':
			parse_long(optarg, "GID index", 0, 1 << 16);
			setenv("RAGG_VERBS_GID_INDEX", optarg, 1);
			break;
		case 'T':
			o->timeout_s = (int)parse_long(optarg, "timeout", 1, 1 << 24);
			break;
		case OPT_BUSY:
			o->busy = true;
			break;
		case OPT_SEAL:
			o->seal = true;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc)
		o->host = argv[optind++];
	if (optind < argc) {
		usage(stderr);
		exit(2);
	}
	if (!o->max_size)
		o->max_size = o->mode == PERF_BW ? (size_t)256 << 20 : (size_t)8 << 20;
	if (!o->all && o->size > o->max_size)
		o->max_size = o->size;
	/* Latency ping-pongs one write at a time. */
	if (o->mode == PERF_LAT)
		o->busy = true;
	return 0;
}
