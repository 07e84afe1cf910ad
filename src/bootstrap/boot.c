/* The bootstrap's two kinds behind one interface (boot.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bootstrap/boot.h"
#include "bootstrap/kv.h"
#include "log.h"
#include "settings.h"

/* RAGG_BOOTSTRAP's choices, in the table's order. */
enum { BOOT_AUTO, BOOT_RENDEZVOUS, BOOT_PMIX };

const char *ragg__boot_kind(const struct ragg_opts *o)
{
	long kind = ragg__opt_long(o, "RAGG_BOOTSTRAP");
	if (kind == BOOT_AUTO) {
		/* A rendezvous address given (ragg-run gives one) is asked for;
		 * otherwise the launcher's PMIx when this process has one. */
		const char *env = getenv("RAGG_ROOT");
		bool root_given =
		    (env && *env) || strcmp(o->root, ragg__setting_find("RAGG_ROOT")->def) != 0;
		kind = !root_given && ragg__pmix_client() ? BOOT_PMIX : BOOT_RENDEZVOUS;
	}
	if (kind != BOOT_PMIX)
		return "rendezvous";
	if (!ragg__pmix_built()) {
		ragg__error("RAGG_BOOTSTRAP=pmix: this ragg was built without PMIx (libpmix-dev, "
		            "configure --enable-pmix)");
		return NULL;
	}
	if (!ragg__pmix_client()) {
		ragg__error("RAGG_BOOTSTRAP=pmix: this process was not started by a PMIx launcher "
		            "(no PMIX_NAMESPACE and PMIX_RANK in its environment)");
		return NULL;
	}
	return "pmix";
}

int ragg__boot_open(const struct ragg_opts *o, struct ragg__boot *b,
                    struct ragg__kv_server **server)
{
	const char *kind = ragg__boot_kind(o);
	int rc;
	memset(b, 0, sizeof(*b));
	b->timeout_ms = o->timeout_ms;
	if (!kind)
		return RAGG_ERR_CONFIG;
	if (strcmp(kind, "pmix") == 0)
		return ragg__pmix_open(o->timeout_ms, &b->pmix);
	ragg__info("bootstrap: rendezvous at %s", o->root);
	if (o->role == RAGG_ROLE_SERVER && o->rank == 0 &&
	    (rc = ragg__kv_server_start_fd(o->root, (int)ragg__opt_long(o, "RAGG_ROOT_FD"),
	                                   o->timeout_ms, o->job_key, server)))
		return rc;
	return ragg__kv_connect(o->root, o->timeout_ms, o->job_key, &b->kv);
}

void ragg__boot_close(struct ragg__boot *b)
{
	ragg__kv_close(b->kv);
	ragg__pmix_close(b->pmix);
	b->kv = NULL;
	b->pmix = NULL;
}

int ragg__boot_put(struct ragg__boot *b, const char *key, const char *value)
{
	return b->pmix ? ragg__pmix_put(b->pmix, key, value) : ragg__kv_put(b->kv, key, key, value);
}

int ragg__boot_exchange(struct ragg__boot *b)
{
	return b->pmix ? ragg__pmix_fence(b->pmix) : 0;
}

int ragg__boot_get(struct ragg__boot *b, long hint, const char *key, char *value, size_t cap)
{
	if (b->pmix)
		return ragg__pmix_get(b->pmix, hint, key, value, cap);
	return ragg__kv_get(b->kv, key, value, cap, b->timeout_ms);
}

int ragg__boot_listen_host(const struct ragg__boot *b, char *host, size_t cap)
{
	if (b->kv)
		return ragg__kv_local_host(b->kv, host, cap);
	/* No connection whose local address would do: every address, and
	 * each transport publishes one of its own (tcp: RAGG_TCP_IFACE's or
	 * the first interface up and not loopback; verbs: its device's). */
	if (cap < sizeof("0.0.0.0"))
		return -ENOSPC;
	memcpy(host, "0.0.0.0", sizeof("0.0.0.0"));
	return 0;
}
