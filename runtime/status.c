/*
 * status.c - the published status of a member (rt_publish) and the metadata built from
 * it, for one member (a client's METADATA) or every member of the node.
 * See rt_internal.h for who owns what.
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_mem.h"

static void fill_meta(struct rt_actor *a, const struct rt_member_status *st,
		      struct tp_group_meta *gm)
{
	memset(gm, 0, sizeof(*gm));
	snprintf(gm->group, sizeof(gm->group), "%s", st->group);
	snprintf(gm->self, sizeof(gm->self), "%s", st->id);
	snprintf(gm->leader, sizeof(gm->leader), "%s", st->leader);
	for (uint32_t i = 0; i < a->cfg.n_peers; i++)
		if (strcmp(a->members[i].p.id, st->leader) == 0)
			snprintf(gm->leader_addr, sizeof(gm->leader_addr), "%s",
				 a->members[i].p.addr);
	gm->role = st->role;
	gm->term = st->term;
	gm->first_index = st->first_index;
	gm->last_index = st->last_index;
	gm->commit_index = st->commit_index;
	gm->durable_index = st->durable_index;
	gm->voter = st->voter;
	snprintf(gm->stopped, sizeof(gm->stopped), "%s", st->failed ? st->stopped : "");
	gm->n_members = a->cfg.n_peers;
	for (uint32_t i = 0; i < a->cfg.n_peers; i++) {
		struct tp_member_meta *mm = &gm->members[i];
		snprintf(mm->id, sizeof(mm->id), "%s", a->members[i].p.id);
		snprintf(mm->addr, sizeof(mm->addr), "%s", a->members[i].p.addr);
		mm->role = strcmp(mm->id, st->id) == 0 ? st->role
			   : strcmp(mm->id, st->leader) == 0 ? RAFT_LEADER
							     : RAFT_FOLLOWER;
		for (uint32_t k = 0; k < st->n_peers; k++)
			if (strcmp(st->peers[k].id, mm->id) == 0)
				mm->match_index = st->peers[k].match_index;
		if (strcmp(mm->id, st->id) == 0)
			mm->match_index = st->durable_index;
	}
}

void rt_publish(struct rt_actor *a)
{
	struct raft_status rs;
	if (a->raft != NULL)
		raft_get_status(a->raft, &rs);
	else
		rs = (struct raft_status){.role = RAFT_FOLLOWER, .commit_index = a->commit};
	if (a->failed) {
		/* Stopped: no role in the group, whatever the old core says. */
		rs.role = RAFT_FOLLOWER;
		rs.leader_id = 0;
		rs.n_peers = 0;
	}
	DL_ASSERT(rs.n_peers <= RAFT_MAX_MEMBERS);
	DL_ASSERT(a->pend_count <= a->cfg.max_pending_appends);
	struct rt_member_status *st = &a->st;
	pthread_mutex_lock(&a->st_mu);
	st->role = rs.role;
	st->term = rs.term;
	snprintf(st->leader, sizeof(st->leader), "%s", rt_rid_name(a, rs.leader_id));
	st->first_index = rs.first_index;
	st->last_index = rs.last_index;
	st->commit_index = rs.commit_index;
	st->durable_index = rs.durable_index;
	st->pending_appends = a->pend_count;
	st->waiting_gets = a->wget_count;
	st->get_wait_timeouts = a->get_wait_timeouts;
	st->get_wait_busy = a->get_wait_busy;
	st->mailbox_depth = atomic_load_explicit(&a->mb.depth, memory_order_relaxed);
	st->mailbox_full = atomic_load_explicit(&a->mailbox_full, memory_order_relaxed);
	st->appended_entries = a->appended_entries;
	st->committed_bytes = a->committed_bytes;
	st->elections = rs.elections;
	st->leader_changes = rs.leader_changes;
	st->failed = a->failed;
	snprintf(st->stopped, sizeof(st->stopped), "%s", a->failed ? a->fail_reason : "");
	st->voter = rs.voter;
	st->incarnation = rs.incarnation;
	st->member_resets = rs.member_resets;
	st->promotions = rs.promotions;
	st->corrupt_reads = a->store != NULL ? sto_corrupt_reads(a->store) : st->corrupt_reads;
	st->send_failures = a->send_failures;
	st->damaged_index = a->damaged_index;
	st->damage_handoffs = a->damage_handoffs;
	st->repaired_in_place = a->repaired_in_place;
	st->commit_conflicts = a->commit_conflicts;
	st->refused_msgs = rs.refused_msgs;
	st->n_peers = rs.n_peers;
	for (uint32_t i = 0; i < rs.n_peers; i++) {
		snprintf(st->peers[i].id, sizeof(st->peers[i].id), "%s", rt_rid_name(a, rs.peers[i].id));
		st->peers[i].match_index = rs.peers[i].match_index;
		st->peers[i].active = rs.peers[i].active;
	}
	pthread_mutex_unlock(&a->st_mu);
	a->dirty = false;
}

void rt_on_metadata(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h)
{
	rt_publish(a);
	struct rt_member_status st;
	pthread_mutex_lock(&a->st_mu);
	st = a->st;
	pthread_mutex_unlock(&a->st_mu);
	struct tp_group_meta gm;
	fill_meta(a, &st, &gm);
	struct tp_addr ad = rt_reply_addr(a, h);
	tp_fb_reset(&a->reply_fb);
	if (tp_fb_add_metadata_resp(&a->reply_fb, &ad, &gm, 1) == 0)
		(void)tp_reply(a->node->ep, f, &a->reply_fb);
}

int rt_metadata_all(struct rt_node *n, const struct rt_table *t, struct tp_frame *f,
			 const struct tp_hdr *h)
{
	struct tp_fb fb;
	tp_fb_init(&fb, n->cfg.max_frame_bytes);
	struct tp_group_meta *gm = calloc((t ? t->n : 0) + 1, sizeof(*gm));
	uint32_t k = 0;
	for (uint32_t i = 0; gm != NULL && t != NULL && i < t->n; i++) {
		struct rt_actor *a = t->a[i];
		struct rt_member_status st;
		pthread_mutex_lock(&a->st_mu);
		st = a->st;
		pthread_mutex_unlock(&a->st_mu);
		fill_meta(a, &st, &gm[k++]);
	}
	struct tp_addr ad = {.group = "", .target = "", .sender = "", .request_id = h->request_id};
	int rc = gm == NULL ? DL_ENOMEM : tp_fb_add_metadata_resp(&fb, &ad, gm, k);
	if (rc == 0)
		(void)tp_reply(n->ep, f, &fb);
	size_t bytes = fb.len + (size_t)k * sizeof(*gm);
	free(gm);
	tp_fb_free(&fb);
	dl_trim_after(bytes);
	return rc;
}
