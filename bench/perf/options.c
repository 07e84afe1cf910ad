/* Command line, perftest-style. Sizes, integers and durations use the
 * library's grammars (transports/util/settings.h), so "-s 64K" means what
 * RAGG_CHUNK_SIZE=64K does. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf.h"
#include "settings.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: ragg-perf [options]         server\n"
	        "       ragg-perf [options] HOST    client\n"
	        "\n"
	        "  -M, --mode MODE        write_bw (default), write_lat or msg_rate\n"
	        "  -t, --transport NAME   transport (default tcp; also RAGG_TRANSPORT)\n"
	        "  -p, --port PORT        port (default 18515)\n"
	        "  -B, --bind HOST        server: listen on HOST (default: all)\n"
	        "  -s, --size BYTES       message size (default 65536, msg_rate 8;\n"
	        "                         K, M, G suffixes as in RAGG_CHUNK_SIZE)\n"
	        "  -a, --all              every power of two up to --max-size\n"
	        "  -m, --max-size BYTES   largest size for -a (write_bw 256M,\n"
	        "                         write_lat 8M, msg_rate 64K)\n"
	        "  -n, --iters N          iterations per size\n"
	        "  -D, --duration SECONDS run each size this long instead\n"
	        "  -l, --latency          the same as --mode write_lat\n"
	        "  -d, --depth N          writes in flight for write_bw and msg_rate\n"
	        "                         (default: queue depth)\n"
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

/* A usage error: the reason, a pointer to --help, exit status 2. */
static void __attribute__((noreturn, format(printf, 1, 2))) bad(const char *fmt, ...)
{
	va_list ap;
	fputs("ragg-perf: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (ragg-perf --help lists the options)\n", stderr);
	exit(2);
}

static size_t parse_size(const char *s, const char *opt)
{
	size_t v;
	int rc = ragg__tp_parse_size(s, &v);
	if (rc == -ERANGE)
		bad("%s \"%s\": too large", opt, s);
	if (rc)
		bad("%s \"%s\": expected a size such as 4096, 64K or 4M", opt, s);
	return v;
}

static long parse_long(const char *s, const char *opt, long min, long max)
{
	long v;
	if (ragg__tp_parse_int(s, &v) || v < min || v > max)
		bad("%s \"%s\": expected an integer in [%ld, %ld]", opt, s, min, max);
	return v;
}

static const char *const mode_names[] = { [PERF_BW] = "write_bw",
	                                   [PERF_LAT] = "write_lat",
	                                   [PERF_RATE] = "msg_rate" };

const char *perf_mode_name(enum perf_mode m)
{
	return m >= PERF_BW && m <= PERF_RATE ? mode_names[m] : "?";
}

int perf_parse(int argc, char **argv, struct perf_opts *o)
{
	enum { OPT_JSON = 256, OPT_BUSY, OPT_SEAL };
	static const struct option longs[] = {
		{ "mode", required_argument, NULL, 'M' },
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
	const char *size_text = NULL;
	memset(o, 0, sizeof(*o));
	o->transport = env && *env && strcmp(env, "auto") ? env : "tcp";
	o->port = 18515;
	o->mode = PERF_BW;
	o->timeout_s = 60;

	int c;
	opterr = 0; /* our messages, in our form */
	while ((c = getopt_long(argc, argv, ":M:t:p:B:s:am:n:D:ld:x:T:vh", longs, NULL)) != -1) {
		switch (c) {
		case 'M': {
			enum perf_mode m = 0;
			for (int i = PERF_BW; i <= PERF_RATE; i++)
				if (!strcmp(optarg, mode_names[i]))
					m = (enum perf_mode)i;
			if (!m)
				bad("--mode \"%s\": expected write_bw, write_lat or msg_rate", optarg);
			o->mode = m;
			break;
		}
		case 't':
			if (!*optarg)
				bad("--transport: empty name");
			o->transport = optarg;
			break;
		case 'p':
			o->port = (unsigned)parse_long(optarg, "--port", 0, 65535);
			break;
		case 'B':
			o->bind = optarg;
			break;
		case 's':
			o->size = parse_size(optarg, "--size");
			size_text = optarg;
			break;
		case 'a':
			o->all = true;
			break;
		case 'm':
			o->max_size = parse_size(optarg, "--max-size");
			if (!o->max_size)
				bad("--max-size \"%s\": must be at least 1 byte", optarg);
			break;
		case 'n':
			o->iters = (uint64_t)parse_long(optarg, "--iters", 1, 1L << 40);
			break;
		case 'D':
			if (ragg__tp_parse_double(optarg, &o->duration) || !(o->duration > 0) ||
			    o->duration > 86400)
				bad("--duration \"%s\": expected seconds, above 0 and at most 86400",
				    optarg);
			break;
		case 'l':
			o->mode = PERF_LAT;
			break;
		case 'd':
			o->depth = (int)parse_long(optarg, "--depth", 1, 1 << 20);
			break;
		case 'x':
			parse_long(optarg, "--gid-index", 0, 1 << 16);
			setenv("RAGG_VERBS_GID_INDEX", optarg, 1);
			break;
		case 'T':
			o->timeout_s = (int)parse_long(optarg, "--timeout", 1, 1 << 24);
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
		case ':':
			bad("%s needs a value", argv[optind - 1]);
		default:
			if (optopt)
				bad("unknown option -%c", optopt);
			bad("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		o->host = argv[optind++];
	if (optind < argc)
		bad("unexpected argument \"%s\" after the host", argv[optind]);
	if (o->iters && o->duration > 0)
		bad("-n and -D exclude each other: count iterations or run for a time");
	if (!size_text)
		o->size = o->mode == PERF_RATE ? 8 : 65536;
	if (!o->max_size)
		o->max_size = o->mode == PERF_BW    ? (size_t)256 << 20
		              : o->mode == PERF_LAT ? (size_t)8 << 20
		                                    : (size_t)64 << 10;
	if (!o->all && o->size > o->max_size)
		o->max_size = o->size;
	/* Latency ping-pongs one write at a time. */
	if (o->mode == PERF_LAT)
		o->busy = true;
	return 0;
}
