/* Output: perftest's tables, or one JSON object per size; then one
 * "ragg-perf: key=value ..." line per size for scripts. */
#include <stdio.h>

#include "perf.h"

#define MAX_ROWS 64

static struct {
	size_t size;
	double value; /* write_bw: average MB/s; msg_rate: Mpps; write_lat: median us */
} rows[MAX_ROWS];
static int nrows;

static void keep(size_t size, double value)
{
	if (nrows < MAX_ROWS) {
		rows[nrows].size = size;
		rows[nrows++].value = value;
	}
}

void perf_report_header(const struct perf_opts *o)
{
	if (o->json)
		return;
	printf("# ragg-perf %s, transport %s, server %s:%u%s\n", perf_mode_name(o->mode),
	       o->transport, o->host, o->port,
	       o->mode != PERF_LAT ? ", MB/sec = 10^6 bytes/s" : ", one way = RTT/2");
	if (o->mode != PERF_LAT)
		printf(" %-12s %-14s %-18s %-21s %s\n", "#bytes", "#iterations", "BW peak[MB/sec]",
		       "BW average[MB/sec]", "MsgRate[Mpps]");
	else
		printf(" %-12s %-12s %-12s %-14s %-12s %-12s %-14s %s\n", "#bytes", "#iterations",
		       "t_min[usec]", "t_median[usec]", "t_max[usec]", "t_p99[usec]",
		       "t_p99.9[usec]", "t_avg[usec]");
	fflush(stdout);
}

void perf_report_bw(const struct perf_opts *o, const struct perf_bw_result *r)
{
	keep(r->size, o->mode == PERF_RATE ? r->Mpps : r->avg_MBps);
	if (o->json)
		printf("{\"mode\":\"%s\",\"transport\":\"%s\",\"size\":%zu,\"iterations\":%llu,"
		       "\"bw_peak_MBps\":%.2f,\"bw_avg_MBps\":%.2f,\"msg_rate_Mpps\":%.6f}\n",
		       perf_mode_name(o->mode), o->transport, r->size, (unsigned long long)r->iters,
		       r->peak_MBps, r->avg_MBps, r->Mpps);
	else
		printf(" %-12zu %-14llu %-18.2f %-21.2f %.6f\n", r->size,
		       (unsigned long long)r->iters, r->peak_MBps, r->avg_MBps, r->Mpps);
	fflush(stdout);
}

void perf_report_lat(const struct perf_opts *o, const struct perf_lat_result *r)
{
	keep(r->size, r->median_us);
	if (o->json)
		printf("{\"mode\":\"%s\",\"transport\":\"%s\",\"size\":%zu,\"iterations\":%llu,"
		       "\"t_min_us\":%.2f,\"t_median_us\":%.2f,\"t_max_us\":%.2f,\"t_p99_us\":%.2f,"
		       "\"t_p999_us\":%.2f,\"t_avg_us\":%.2f}\n",
		       perf_mode_name(o->mode), o->transport, r->size, (unsigned long long)r->iters,
		       r->min_us, r->median_us, r->max_us, r->p99_us, r->p999_us, r->avg_us);
	else
		printf(" %-12zu %-12llu %-12.2f %-14.2f %-12.2f %-12.2f %-14.2f %.2f\n", r->size,
		       (unsigned long long)r->iters, r->min_us, r->median_us, r->max_us, r->p99_us,
		       r->p999_us, r->avg_us);
	fflush(stdout);
}

void perf_report_summary(const struct perf_opts *o)
{
	const char *key = o->mode == PERF_BW ? "bw_MBps" : o->mode == PERF_RATE ? "msg_rate_Mpps"
	                                                                          : "median_us";
	if (o->json)
		return;
	for (int i = 0; i < nrows; i++)
		printf("ragg-perf: mode=%s transport=%s size=%zu %s=%.*f\n", perf_mode_name(o->mode),
		       o->transport, rows[i].size, key, o->mode == PERF_RATE ? 6 : 2, rows[i].value);
	fflush(stdout);
}
