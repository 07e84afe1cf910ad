/*
 * Placement without a NUMA machine: the engine reads a two-package,
 * two-node topology from tests/unit/data/engine-2numa.xml (an RDMA NIC
 * mlx5_0 / ib0 local to node 1, an Ethernet NIC eth0 local to node 0) and
 * we check what it asked of hwloc: the node, each thread's cpuset, the
 * memory nodeset and policy. A loaded topology is not this machine, so
 * nothing is applied; the last tests bind for real on this machine and
 * check what the threads got.
 */
#include <dirent.h>
#include <errno.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ragg/ragg.h>

#include "engine/engine.h"
#include "harness.h"

#ifndef RAGG_TEST_DATA
#define RAGG_TEST_DATA "tests/unit/data"
#endif
/* Two packages, one NUMA node and two cores each; an RDMA NIC (mlx5_0,
 * netdev ib0) behind a PCI bridge local to the second package, and an
 * Ethernet NIC (eth0) local to the first. No comment inside the file:
 * hwloc's built-in XML parser (used when libhwloc-plugins' libxml2 one is
 * not installed) refuses them. */
#define XML RAGG_TEST_DATA "/engine-2numa.xml"

static struct ragg__engine *start(int threads, const char *device, const char *cpus,
                                  const char *topo)
{
	struct ragg__engine *e = NULL;
	struct ragg__engine_conf conf = {
		.threads = threads, .device = device, .cpus = cpus, .topology_xml = topo
	};
	RAGG_CHECK_OK(ragg__engine_start(&conf, &e));
	return e;
}

static void check_threads(struct ragg__engine *e, const char *const *want, int n)
{
	char asked[256], got[256];
	RAGG_CHECK(ragg__engine_threads(e) == n);
	for (int i = 0; i < n; i++) {
		RAGG_CHECK_OK(
		    ragg__engine_thread_binding(e, i, asked, sizeof(asked), got, sizeof(got)));
		RAGG_CHECKF(strcmp(asked, want[i]) == 0, "thread %d asked %s, want %s", i, asked,
		            want[i]);
	}
	RAGG_CHECK(ragg__engine_thread_binding(e, n, asked, sizeof(asked), got, sizeof(got)) ==
	           -EINVAL);
}

static void check_describe(struct ragg__engine *e, const char *const *want)
{
	char d[512];
	RAGG_CHECK_OK(ragg__engine_describe(e, d, sizeof(d)));
	fprintf(stderr, "describe: %s\n", d);
	for (; *want; want++)
		RAGG_CHECKF(strstr(d, *want) != NULL, "\"%s\" lacks \"%s\"", d, *want);
}

/* The RDMA device's node wins over node 0, for threads and memory. */
RAGG_TEST(rdma_device_on_second_node)
{
	struct ragg__engine *e = start(2, "mlx5_0", NULL, XML);
	struct ragg__engine_placement p;
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.this_system == 0);
	RAGG_CHECK(p.node == 1);
	RAGG_CHECK(p.device_node == 1);
	RAGG_CHECK(p.threads == 2 && p.per_cpu == 0);
	RAGG_CHECKF(strcmp(p.cpus, "2-3") == 0, "cpus %s", p.cpus);
	RAGG_CHECKF(strcmp(p.mem_nodes, "1") == 0, "memory nodes %s", p.mem_nodes);
	RAGG_CHECK(p.membind_policy == HWLOC_MEMBIND_BIND);
	check_threads(e, (const char *const[]){ "2-3", "2-3" }, 2);
	check_describe(e, (const char *const[]){ "node=1 ", "device=mlx5_0 ", "cpus=2-3 ",
	                                         "threads=2 ", "binding=node", "memory=bind:1 ",
	                                         "topology=loaded", NULL });
	ragg__engine_stop(e);
}

/* Every way the core may name the device finds the same node. */
RAGG_TEST(device_names)
{
	static const char *const names[] = { "mlx5_0", "mlx5_0:1", "ib0", "0000:3b:00.0" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct ragg__engine *e = start(1, names[i], NULL, XML);
		struct ragg__engine_placement p;
		RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
		RAGG_CHECKF(p.node == 1 && p.device_node == 1, "%s: node %d", names[i], p.node);
		ragg__engine_stop(e);
	}
}

/* tcp: the NIC on the first package. */
RAGG_TEST(nic_on_first_node)
{
	struct ragg__engine *e = start(2, "eth0", NULL, XML);
	struct ragg__engine_placement p;
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.node == 0 && p.device_node == 0);
	RAGG_CHECKF(strcmp(p.cpus, "0-1") == 0, "cpus %s", p.cpus);
	RAGG_CHECKF(strcmp(p.mem_nodes, "0") == 0, "memory nodes %s", p.mem_nodes);
	check_threads(e, (const char *const[]){ "0-1", "0-1" }, 2);
	ragg__engine_stop(e);
}

/* No device, or one that is not there: node 0, and the miss is visible. */
RAGG_TEST(fallback_node0)
{
	struct ragg__engine *e = start(1, NULL, NULL, XML);
	struct ragg__engine_placement p;
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.node == 0 && p.device_node == -1);
	RAGG_CHECKF(strcmp(p.cpus, "0-1") == 0, "cpus %s", p.cpus);
	check_describe(e, (const char *const[]){ "node=0 ", "device=none ", NULL });
	ragg__engine_stop(e);

	e = start(1, "mlx5_9", NULL, XML);
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.node == 0 && p.device_node == -1);
	RAGG_CHECKF(strcmp(p.mem_nodes, "0") == 0, "memory nodes %s", p.mem_nodes);
	check_describe(e, (const char *const[]){ "device=mlx5_9(not-found) ", NULL });
	ragg__engine_stop(e);
}

/* RAGG_AGG_THREADS unset (< 0): one thread per core of the chosen node. */
RAGG_TEST(auto_thread_count)
{
	struct ragg__engine *e = start(-1, "mlx5_0", NULL, XML);
	check_threads(e, (const char *const[]){ "2-3", "2-3" }, 2);
	ragg__engine_stop(e);
}

/* RAGG_CPUS: one cpu per thread, cycling; memory on the nodes of those
 * cpus; it overrides the device. */
RAGG_TEST(explicit_cpus)
{
	struct ragg__engine *e = start(3, "mlx5_0", "1,3", XML);
	struct ragg__engine_placement p;
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.per_cpu == 1);
	RAGG_CHECKF(strcmp(p.cpus, "1,3") == 0, "cpus %s", p.cpus);
	RAGG_CHECKF(strcmp(p.mem_nodes, "0-1") == 0, "memory nodes %s", p.mem_nodes);
	check_threads(e, (const char *const[]){ "1", "3", "1" }, 3);
	RAGG_CHECK(p.device_node == 1); /* still reported */
	check_describe(
	    e, (const char *const[]){ "device=mlx5_0 ", "binding=cpu", "memory=bind:0-1 ", NULL });
	ragg__engine_stop(e);

	e = start(2, NULL, "2-3", XML);
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.node == 1);
	RAGG_CHECKF(strcmp(p.mem_nodes, "1") == 0, "memory nodes %s", p.mem_nodes);
	check_threads(e, (const char *const[]){ "2", "3" }, 2);
	ragg__engine_stop(e);
}

RAGG_TEST(bad_configuration)
{
	struct ragg__engine *e = NULL;
	struct ragg__engine_conf conf = { .threads = 1, .cpus = "7", .topology_xml = XML };
	RAGG_CHECK(ragg__engine_start(&conf, &e) == RAGG_ERR_CONFIG);
	conf.cpus = "two";
	RAGG_CHECK(ragg__engine_start(&conf, &e) == RAGG_ERR_CONFIG);
	conf.cpus = NULL;
	conf.topology_xml = RAGG_TEST_DATA "/no-such-topology.xml";
	RAGG_CHECK(ragg__engine_start(&conf, &e) == RAGG_ERR_CONFIG);
	RAGG_CHECK(e == NULL);
	RAGG_CHECK(ragg__engine_start(NULL, &e) == -EINVAL);
}

/* A synthetic description and an in-memory XML document load too. */
RAGG_TEST(synthetic_and_buffer_topologies)
{
	struct ragg__engine *e = start(2, NULL, "4-5", "synthetic:pack:2 numa:1 core:4 pu:1");
	struct ragg__engine_placement p;
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.node == 1);
	ragg__engine_stop(e);

	FILE *f = fopen(XML, "r");
	RAGG_CHECK(f != NULL);
	static char doc[65536];
	size_t len = fread(doc, 1, sizeof(doc) - 1, f);
	fclose(f);
	doc[len] = 0;
	RAGG_CHECK(doc[0] == '<');
	e = start(1, "mlx5_0", NULL, doc);
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.node == 1);
	ragg__engine_stop(e);
}

/* Memory from a loaded topology: zeroed, page aligned, every piece
 * touched, whatever the chunk size and thread count. */
RAGG_TEST(alloc_pieces)
{
	static const size_t chunks[] = { 0, 1, 4096, 5000, 1 << 20 };
	for (int threads = 0; threads <= 3; threads++) {
		struct ragg__engine *e = start(threads, "mlx5_0", NULL, XML);
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			size_t bytes = (3 << 20) + 123;
			unsigned char *p = ragg__engine_alloc(e, bytes, chunks[c]);
			RAGG_CHECK(p != NULL);
			RAGG_CHECK(((uintptr_t)p & 4095) == 0);
			for (size_t i = 0; i < bytes; i += 511)
				RAGG_CHECKF(p[i] == 0, "threads=%d chunk=%zu byte %zu", threads,
				            chunks[c], i);
			RAGG_CHECK(p[bytes - 1] == 0);
			memset(p, 0xa5, bytes);
			ragg__engine_free(e, p, bytes);
		}
		RAGG_CHECK(ragg__engine_alloc(e, 0, 4096) == NULL);
		ragg__engine_stop(e);
	}
}

/* ---- this machine: bindings applied ---- */

static int cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* Explicit cpus: each thread runs where it asked, as the OS reports it. */
RAGG_TEST(real_binding_explicit)
{
	char cpu[16], asked[256], got[256];
	int last = cpu_count() - 1;
	snprintf(cpu, sizeof(cpu), "%d", last);
	struct ragg__engine *e = start(2, NULL, cpu, NULL);
	struct ragg__engine_placement p;
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.this_system == 1);
	for (int i = 0; i < 2; i++) {
		RAGG_CHECK_OK(
		    ragg__engine_thread_binding(e, i, asked, sizeof(asked), got, sizeof(got)));
		RAGG_CHECKF(strcmp(asked, cpu) == 0 && strcmp(got, cpu) == 0,
		            "thread %d asked %s got %s, want %s", i, asked, got, cpu);
	}
	ragg__engine_stop(e);
}

/* Automatic: threads get the first node's cpus (within ours), and memory
 * from ragg__engine_alloc is bound to that node where the kernel lets us
 * ask (containers may refuse get_mempolicy). */
RAGG_TEST(real_binding_auto)
{
	struct ragg__engine *e = start(2, NULL, NULL, NULL);
	struct ragg__engine_placement p;
	char asked[256], got[256];
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECK(p.this_system == 1 && p.node >= 0);

	hwloc_topology_t topo;
	RAGG_CHECK(hwloc_topology_init(&topo) == 0 && hwloc_topology_load(topo) == 0);
	hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(topo, (unsigned)p.node);
	RAGG_CHECK(node != NULL);
	hwloc_bitmap_t want = hwloc_bitmap_alloc(), set = hwloc_bitmap_alloc();
	hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_THREAD);
	hwloc_bitmap_and(want, node->cpuset, set);
	char wants[256];
	hwloc_bitmap_list_snprintf(wants, sizeof(wants), want);
	for (int i = 0; i < 2; i++) {
		RAGG_CHECK_OK(
		    ragg__engine_thread_binding(e, i, asked, sizeof(asked), got, sizeof(got)));
		RAGG_CHECKF(strcmp(asked, wants) == 0 && strcmp(got, wants) == 0,
		            "thread %d asked %s got %s, want %s", i, asked, got, wants);
	}

	size_t bytes = 8 << 20;
	void *mem = ragg__engine_alloc(e, bytes, 1 << 20);
	RAGG_CHECK(mem != NULL);
	hwloc_membind_policy_t policy;
	if (hwloc_get_area_membind(topo, mem, bytes, set, &policy, HWLOC_MEMBIND_BYNODESET) == 0) {
		RAGG_CHECKF(hwloc_bitmap_isequal(set, node->nodeset), "memory not on node %d",
		            p.node);
		/* A single-node machine reports its default policy either way. */
		RAGG_CHECKF(policy == HWLOC_MEMBIND_BIND ||
		                hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE) == 1,
		            "policy %d", (int)policy);
	} else {
		fprintf(stderr, "note: hwloc_get_area_membind: %s; memory binding not checked\n",
		        strerror(errno));
	}
	ragg__engine_free(e, mem, bytes);
	hwloc_bitmap_free(want);
	hwloc_bitmap_free(set);
	hwloc_topology_destroy(topo);
	ragg__engine_stop(e);
}

/* The PCI network device of this machine is found in its real topology
 * (read without the "pci" plugin: placement.c). */
RAGG_TEST(real_device_found)
{
	char name[sizeof(((struct dirent *)0)->d_name)] = "", path[320], target[512];
	DIR *d = opendir("/sys/class/net");
	for (struct dirent *de; d && !name[0] && (de = readdir(d));) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/net/%s/device", de->d_name);
		char *real = realpath(path, NULL);
		if (real && strstr(real, "/pci"))
			snprintf(name, sizeof(name), "%s", de->d_name);
		free(real);
	}
	if (d)
		closedir(d);
	if (!name[0]) {
		fprintf(stderr, "note: no PCI network device here; not checked\n");
		return;
	}
	struct ragg__engine *e = start(1, name, NULL, NULL);
	struct ragg__engine_placement p;
	RAGG_CHECK_OK(ragg__engine_get_placement(e, &p));
	RAGG_CHECKF(p.node < 0 || p.device_node >= 0, "%s not found (node %d)", name, p.node);
	snprintf(target, sizeof(target), "device=%s ", name);
	check_describe(e, (const char *const[]){ target, NULL });
	ragg__engine_stop(e);
}

int main(int argc, char **argv)
{
	return ragg_test_main(argc, argv);
}
