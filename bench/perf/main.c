/* ragg-perf: see perf.h and ragg-perf(1). */
#include "perf.h"

int main(int argc, char **argv)
{
	struct perf_opts o;
	perf_parse(argc, argv, &o);
	return o.host ? perf_client(&o) : perf_server(&o);
}
