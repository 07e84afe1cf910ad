/* Software memory registration and the remote access check (softmr.h). */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "softmr.h"

int ragg__tp_softmr_reg(struct ragg__tp_idtab *t, uint32_t max_ids, struct ragg__tp_softmr *mr,
                        void *addr, size_t len, unsigned access)
{
	uint32_t id;
	int rc;

	if (!mr || (!addr && len) || (uintptr_t)addr > UINTPTR_MAX - len)
		return -EINVAL;
	rc = ragg__tp_idtab_free_id(t, max_ids, &id);
	if (rc)
		return rc;
	mr->base.addr = addr;
	mr->base.len = len;
	mr->id = id;
	mr->access = access;
	randombytes_buf(&mr->key, sizeof(mr->key));
	ragg__tp_idtab_set(t, id, mr);
	return 0;
}

void ragg__tp_softmr_dereg(struct ragg__tp_idtab *t, struct ragg__tp_softmr *mr)
{
	if (ragg__tp_idtab_get(t, mr->id) == mr)
		ragg__tp_idtab_set(t, mr->id, NULL);
	mr->access = 0;
	sodium_memzero(&mr->key, sizeof(mr->key));
}

int ragg__tp_softmr_check(const struct ragg__tp_idtab *t, uint32_t id, uint64_t key, uint64_t off,
                          uint64_t len, unsigned access, struct ragg__tp_softmr **out,
                          const char **why)
{
	struct ragg__tp_softmr *mr = ragg__tp_idtab_get(t, id);

	if (!mr) {
		*why = "no such region";
		return RAGG_ERR_KEY;
	}
	if (sodium_memcmp(&mr->key, &key, sizeof(key)) != 0) {
		*why = "wrong key";
		return RAGG_ERR_KEY;
	}
	if (!access || (access & ~mr->access)) {
		*why = "access not granted";
		return -EACCES;
	}
	if (!ragg__tp_in_bounds(mr->base.len, off, len)) {
		*why = "past the end of the region";
		return RAGG_ERR_BOUNDS;
	}
	*out = mr;
	return 0;
}
