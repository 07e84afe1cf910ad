/* The role tables (role.h), one per role, defined in each role's file. */
#include "role.h"

const struct ragg__role_ops *ragg__role_ops_of(enum ragg_role role)
{
	switch (role) {
	case RAGG_ROLE_WORKER:
		return &ragg__worker_role;
	case RAGG_ROLE_AGENT:
		return &ragg__agent_role;
	case RAGG_ROLE_SERVER:
		return &ragg__server_role;
	default:
		return NULL;
	}
}
