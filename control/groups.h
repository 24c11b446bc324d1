/*
 * groups.h - the node's set of groups (groups.c): the groups of the node's
 * `struct cfg` as its running members see them. Used by the control server
 * (control.c) and by reload (reload.c); it uses neither, only groups.yaml's
 * records (state.c). No threads of its own: the caller holds whatever
 * serializes use of the cfg (the control server's lock).
 */
#ifndef DLEDGER_CONTROL_GROUPS_H
#define DLEDGER_CONTROL_GROUPS_H

#include <stddef.h>
#include <sys/types.h>

#include "common/dl_err.h"
#include "config/config.h"

struct ctl_rec;
struct ctl_state;

/* (ctl_member_config(), the member's runtime configuration, is in
 * control.h: the node's main uses it for the configured groups.) */

/* Index of `group` in c->groups, or -1. */
ssize_t ctl_cfg_find(const struct cfg *c, const char *group);
/* Frees c->groups[i] and closes the gap. */
void ctl_cfg_drop(struct cfg *c, size_t i);
/* The member's directory, <base>/<group>/<id>, into buf. */
void ctl_member_dir(const struct cfg *c, const struct cfg_group *g, char *buf, size_t cap);
/* An add-group's keys as a group of `c`: valid, and fitting the other
 * groups (not there yet, this node's address). On success `*g` is the
 * caller's (cfg_group_free()); on failure it is zeroed. */
int ctl_group_of_rec(const struct cfg *c, const struct ctl_rec *r, struct cfg_group *g,
		     struct dl_errctx *err);
/* groups.yaml on top of `c`: removals first, then additions (an addition
 * replaces c's item of the same group). DL_ECONFIG names `state_path`. */
int ctl_apply_state(struct cfg *c, const struct ctl_state *st, const char *state_path,
		    struct dl_errctx *err);
/* DL_ECONFIG when another member id of g's group has data on this node. */
int ctl_check_no_other_member(const struct cfg *c, const struct cfg_group *g,
			      struct dl_errctx *err);

#endif
