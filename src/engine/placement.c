/*
 * NUMA placement with hwloc: which node, which cpus for each thread, where
 * memory goes.
 *
 * The node is the one nearest the device data arrives through: RDMA writes
 * land in slot memory, and a thread summing them from the far socket pays
 * the inter-socket link twice (NIC -> memory, memory -> core). A device is
 * found among hwloc's OS devices by name (OpenFabrics "mlx5_0", network
 * "eth0") or by PCI bus id, so the core needs no verbs header; its
 * non-I/O ancestor gives the locality.
 *
 * Threads are bound to the node's whole cpuset, not one core each: several
 * ragg processes often share a node, and the scheduler balancing within it
 * beats every process pinning its thread 0 to the same core. An explicit
 * RAGG_CPUS list is taken literally, one cpu per thread. The launcher's
 * binding (mpirun, taskset) is respected: automatic cpus are taken within
 * the calling thread's binding.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ragg/ragg.h>

#include "engine/internal.h"
#include "log.h"

static pthread_mutex_t topology_load_lock = PTHREAD_MUTEX_INITIALIZER;

static int load_topology(struct ragg__placement *pl, const struct ragg__engine_conf *conf)
{
	const char *xml = conf->topology_xml;
	int rc = 0;

	if (hwloc_topology_init(&pl->topo) < 0)
		return -ENOMEM;
	/* I/O objects are off by default and only needed to find a device. */
	if (conf->device) {
		hwloc_topology_set_io_types_filter(pl->topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
#if HWLOC_API_VERSION >= 0x00020100
		/* Not through the "pci" plugin (libpciaccess): it reads the
		 * whole PCI name database (pci.ids) by growing an array one
		 * realloc at a time, which an ASan process, whose realloc
		 * always copies, took over a minute to do. Linux's backend
		 * finds the same PCI functions and OS devices in sysfs; the
		 * names, which placement never reads, are all that is lost. */
		if (!xml)
			hwloc_topology_set_components(pl->topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST,
			                              "pci");
#endif
	}
	if (xml && strncmp(xml, "synthetic:", 10) == 0)
		rc = hwloc_topology_set_synthetic(pl->topo, xml + 10);
	else if (xml && xml[0] == '<')
		rc = hwloc_topology_set_xmlbuffer(pl->topo, xml, (int)strlen(xml) + 1);
	else if (xml)
		rc = hwloc_topology_set_xml(pl->topo, xml);
	if (rc < 0) {
		ragg__error("engine: cannot read topology %.60s: %s", xml, strerror(errno));
		rc = RAGG_ERR_CONFIG;
		goto err;
	}
	/* hwloc's Linux discovery goes through libudev, whose global state is
	 * not safe to initialise from two threads at once (several contexts
	 * in one process start their engines concurrently). */
	pthread_mutex_lock(&topology_load_lock);
	int loaded = hwloc_topology_load(pl->topo);
	pthread_mutex_unlock(&topology_load_lock);
	if (loaded < 0) {
		ragg__error("engine: hwloc topology load failed: %s", strerror(errno));
		rc = xml ? RAGG_ERR_CONFIG : -errno;
		goto err;
	}
	pl->this_system = hwloc_topology_is_thissystem(pl->topo);
	return 0;
err:
	hwloc_topology_destroy(pl->topo);
	pl->topo = NULL;
	return rc;
}

static hwloc_obj_t find_osdev(hwloc_topology_t topo, const char *name, size_t len)
{
	for (hwloc_obj_t o = NULL; (o = hwloc_get_next_osdev(topo, o));)
		if (o->name && strlen(o->name) == len && strncmp(o->name, name, len) == 0)
			return o;
	return NULL;
}

/* A software RDMA device (Soft-RoCE "rxe0") has no PCI function of
 * its own, so hwloc does not list it; it names the network interface it
 * runs over in sysfs, and that one hwloc knows. */
static hwloc_obj_t find_rdma_parent(hwloc_topology_t topo, const char *name, size_t len)
{
	char path[160], parent[64];
	if (len > 64)
		return NULL;
	snprintf(path, sizeof(path), "/sys/class/infiniband/%.*s/parent", (int)len, name);
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char *got = fgets(parent, sizeof(parent), f);
	fclose(f);
	if (!got)
		return NULL;
	parent[strcspn(parent, "\n")] = 0;
	return find_osdev(topo, parent, strlen(parent));
}

/* The device's non-I/O ancestor, or NULL when the name matches nothing. */
static hwloc_obj_t find_device(const struct ragg__placement *pl, const char *name)
{
	size_t len = strlen(name);
	hwloc_obj_t o = find_osdev(pl->topo, name, len);
	if (!o)
		o = hwloc_get_pcidev_by_busidstring(pl->topo, name);
	if (!o) {
		/* "mlx5_0:1": a verbs device with its port. */
		const char *colon = strrchr(name, ':');
		if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
			len = (size_t)(colon - name);
			o = find_osdev(pl->topo, name, len);
		}
	}
	if (!o && pl->this_system)
		o = find_rdma_parent(pl->topo, name, len);
	return o ? hwloc_get_non_io_ancestor_obj(pl->topo, o) : NULL;
}

/* The NUMA node an object's memory locality points to: its first. */
static hwloc_obj_t node_of(hwloc_topology_t topo, hwloc_obj_t obj)
{
	if (!obj || !obj->nodeset || hwloc_bitmap_iszero(obj->nodeset))
		return NULL;
	return hwloc_get_numanode_obj_by_os_index(topo, (unsigned)hwloc_bitmap_first(obj->nodeset));
}

/* Cpus the calling thread may run on: on this machine, its binding (what a
 * launcher gave the process); on a loaded topology, all allowed cpus. */
static hwloc_bitmap_t caller_cpus(const struct ragg__placement *pl)
{
	hwloc_bitmap_t set = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(pl->topo));
	if (!set || !pl->this_system)
		return set;
	hwloc_bitmap_t bound = hwloc_bitmap_alloc();
	if (bound && hwloc_get_cpubind(pl->topo, bound, HWLOC_CPUBIND_THREAD) == 0 &&
	    hwloc_bitmap_intersects(bound, set))
		hwloc_bitmap_and(set, set, bound);
	hwloc_bitmap_free(bound);
	return set;
}

static int choose_auto(struct ragg__placement *pl, hwloc_obj_t node)
{
	if (!node)
		node = hwloc_get_obj_by_type(pl->topo, HWLOC_OBJ_NUMANODE, 0);
	hwloc_bitmap_t allowed = caller_cpus(pl);
	if (!allowed)
		return -ENOMEM;
	if (node) {
		pl->node = (int)node->os_index;
		hwloc_bitmap_copy(pl->nodeset, node->nodeset);
		hwloc_bitmap_and(pl->cpuset, node->cpuset, allowed);
		if (hwloc_bitmap_iszero(pl->cpuset)) {
			/* The launcher bound us away from the device: its choice
			 * stands for cpus, memory still goes near the device. */
			ragg__warn("engine: no cpu of NUMA node %d is allowed here; threads stay "
			           "on the process's cpus",
			           pl->node);
			hwloc_bitmap_copy(pl->cpuset, allowed);
		}
	} else {
		hwloc_bitmap_copy(pl->cpuset, allowed);
		hwloc_bitmap_copy(pl->nodeset, hwloc_topology_get_allowed_nodeset(pl->topo));
	}
	hwloc_bitmap_free(allowed);
	return 0;
}

static int choose_cpus(struct ragg__placement *pl, const char *cpus)
{
	if (hwloc_bitmap_list_sscanf(pl->cpuset, cpus) < 0 || hwloc_bitmap_iszero(pl->cpuset)) {
		ragg__error("RAGG_CPUS=\"%s\": not a cpu list (e.g. \"0-3,8\")", cpus);
		return RAGG_ERR_CONFIG;
	}
	if (!hwloc_bitmap_isincluded(pl->cpuset, hwloc_topology_get_allowed_cpuset(pl->topo))) {
		char have[128];
		hwloc_bitmap_list_snprintf(have, sizeof(have),
		                           hwloc_topology_get_allowed_cpuset(pl->topo));
		ragg__error(
		    "RAGG_CPUS=\"%s\": not all of these cpus exist or are allowed (have %s)", cpus,
		    have);
		return RAGG_ERR_CONFIG;
	}
	pl->per_cpu = 1;
	hwloc_cpuset_to_nodeset(pl->topo, pl->cpuset, pl->nodeset);
	pl->node = hwloc_bitmap_iszero(pl->nodeset) ? -1 : hwloc_bitmap_first(pl->nodeset);
	return 0;
}

static int count_threads(const struct ragg__placement *pl, int asked)
{
	if (asked >= 0)
		return asked;
	int cores = hwloc_get_nbobjs_inside_cpuset_by_type(pl->topo, pl->cpuset, HWLOC_OBJ_CORE);
	if (cores <= 0)
		cores = hwloc_bitmap_weight(pl->cpuset);
	/* Chunks are the unit of parallel work; beyond this many threads a
	 * round rarely has the chunks in flight to keep them busy. */
	if (cores > RAGG_ENGINE_AUTO_THREADS_MAX)
		cores = RAGG_ENGINE_AUTO_THREADS_MAX;
	return cores > 0 ? cores : 1;
}

static int assign_threads(struct ragg__placement *pl)
{
	int ncpus = hwloc_bitmap_weight(pl->cpuset);
	if (!pl->nthreads)
		return 0;
	pl->thread_cpus = calloc((size_t)pl->nthreads, sizeof(*pl->thread_cpus));
	if (!pl->thread_cpus)
		return -ENOMEM;
	for (int i = 0; i < pl->nthreads; i++) {
		pl->thread_cpus[i] = hwloc_bitmap_alloc();
		if (!pl->thread_cpus[i])
			return -ENOMEM;
		if (pl->per_cpu && ncpus > 0) {
			int cpu = -1;
			for (int s = 0; s <= i % ncpus; s++)
				cpu = hwloc_bitmap_next(pl->cpuset, cpu);
			hwloc_bitmap_only(pl->thread_cpus[i], (unsigned)cpu);
		} else {
			hwloc_bitmap_copy(pl->thread_cpus[i], pl->cpuset);
		}
	}
	return 0;
}

int ragg__placement_init(struct ragg__placement *pl, const struct ragg__engine_conf *conf)
{
	int rc;

	memset(pl, 0, sizeof(*pl));
	pl->node = pl->device_node = -1;
	if (conf->device)
		snprintf(pl->device, sizeof(pl->device), "%s", conf->device);
	if ((rc = load_topology(pl, conf)))
		return rc;
	pl->cpuset = hwloc_bitmap_alloc();
	pl->nodeset = hwloc_bitmap_alloc();
	if (!pl->cpuset || !pl->nodeset) {
		rc = -ENOMEM;
		goto err;
	}
	hwloc_obj_t dev_node = NULL;
	if (conf->device) {
		dev_node = node_of(pl->topo, find_device(pl, conf->device));
		if (dev_node)
			pl->device_node = (int)dev_node->os_index;
		else
			/* Normal for tcp ("tcp", "lo") and virtual devices: not a
			 * warning. describe shows it. */
			ragg__info("engine: device %s not found in the topology%s", conf->device,
			           conf->cpus ? "" : ", using the first NUMA node");
	}
	rc = conf->cpus ? choose_cpus(pl, conf->cpus) : choose_auto(pl, dev_node);
	if (rc)
		goto err;
	if (conf->cpus && dev_node && !hwloc_bitmap_isset(pl->nodeset, dev_node->os_index))
		ragg__warn("engine: RAGG_CPUS=%s is away from %s's NUMA node %u", conf->cpus,
		           conf->device, dev_node->os_index);
	pl->nthreads = count_threads(pl, conf->threads);
	if ((rc = assign_threads(pl)))
		goto err;
	return 0;
err:
	ragg__placement_fini(pl);
	return rc;
}

void ragg__placement_fini(struct ragg__placement *pl)
{
	if (pl->thread_cpus)
		for (int i = 0; i < pl->nthreads; i++)
			hwloc_bitmap_free(pl->thread_cpus[i]);
	free(pl->thread_cpus);
	hwloc_bitmap_free(pl->cpuset);
	hwloc_bitmap_free(pl->nodeset);
	if (pl->topo)
		hwloc_topology_destroy(pl->topo);
	memset(pl, 0, sizeof(*pl));
}

int ragg__placement_bind_self(const struct ragg__placement *pl, int index)
{
	/* A loaded topology describes another machine: its cpu numbers mean
	 * nothing here. */
	if (!pl->this_system)
		return 0;
	if (hwloc_set_cpubind(pl->topo, pl->thread_cpus[index], HWLOC_CPUBIND_THREAD) < 0)
		return -errno;
	return 0;
}

void *ragg__placement_alloc(const struct ragg__placement *pl, size_t bytes)
{
	void *p = NULL;
	/* A loaded topology's hwloc would hand out plain malloc memory; keep
	 * the page alignment promised either way. */
	if (!pl->this_system)
		return posix_memalign(&p, 4096, bytes) ? NULL : p;
	/* Not STRICT: where binding is refused (no mbind in a container)
	 * hwloc keeps the unbound pages, and first touch by the owning thread
	 * still puts them near it. */
	p = hwloc_alloc_membind(pl->topo, bytes, pl->nodeset, HWLOC_MEMBIND_BIND,
	                        HWLOC_MEMBIND_BYNODESET);
	if (!p)
		return NULL;
	/* Streaming kernels walk k + 1 large arrays at once: huge pages save
	 * TLB misses, which cost more under virtualisation. Advice only. */
	if (bytes >= ((size_t)4 << 20))
		(void)madvise(p, bytes, MADV_HUGEPAGE);
	return p;
}

void ragg__placement_free(const struct ragg__placement *pl, void *p, size_t bytes)
{
	if (!pl->this_system)
		free(p);
	else
		hwloc_free(pl->topo, p, bytes);
}
