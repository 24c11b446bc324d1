/*
 * config_test.c - the config module: good files (plain and wrapped items,
 * defaults and overrides, IPv6, host names), bad files (each error names the
 * file, the line and the key), the peers parser, the flags, the key/value
 * entry point, and a seeded mutation fuzz that must never crash.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"

#ifndef CFG_EXAMPLES_DIR
#define CFG_EXAMPLES_DIR "examples"
#endif

/* ---- helpers ---- */

static int load(const char *text, struct cfg *c, struct dl_errctx *e)
{
	memset(e, 0, sizeof(*e));
	return cfg_load_buffer("t.yaml", text, strlen(text), c, e);
}

static struct cfg load_ok(const char *text)
{
	struct cfg c;
	struct dl_errctx e;
	int rc = load(text, &c, &e);
	cr_assert_eq(rc, DL_OK, "expected the config to load, got %d: %s", rc, e.msg);
	return c;
}

/* The load fails with DL_ECONFIG and the message starts with
 * "t.yaml:<line>: key '<key>': " and contains `frag`. */
static void expect_err(const char *text, unsigned line, const char *key, const char *frag)
{
	struct cfg c;
	struct dl_errctx e;
	int rc = load(text, &c, &e);
	cr_assert_eq(rc, DL_ECONFIG, "expected DL_ECONFIG, got %d (%s)", rc, e.msg);
	char prefix[160];
	if (key != NULL)
		snprintf(prefix, sizeof(prefix), "t.yaml:%u: key '%s': ", line, key);
	else
		snprintf(prefix, sizeof(prefix), "t.yaml:%u: ", line);
	cr_assert(strncmp(e.msg, prefix, strlen(prefix)) == 0,
	          "message '%s' does not start with '%s'", e.msg, prefix);
	cr_assert(strstr(e.msg, frag) != NULL, "message '%s' lacks '%s'", e.msg, frag);
	/* A failed load leaves the struct empty. */
	cr_assert_null(c.groups);
	cr_assert_null(c.source);
	cr_assert_eq(c.n_groups, 0);
}

static const struct cfg_group *find_group(const struct cfg *c, const char *name)
{
	for (size_t i = 0; i < c->n_groups; i++)
		if (strcmp(c->groups[i].group, name) == 0)
			return &c->groups[i];
	cr_assert_fail("group %s not found", name);
	return NULL;
}

#define PEERS3 "n0-127.0.0.1:10000;n1-127.0.0.1:10001;n2-127.0.0.1:10002"
#define ITEM_G0                                                                                    \
	"  - group: g0\n"                                                                          \
	"    id: n0\n"                                                                             \
	"    peers: " PEERS3 "\n"

/* ---- good configurations ---- */

Test(config_examples, three_nodes_load_with_leaders_on_three_nodes)
{
	uint16_t leader_port[3] = {0};
	for (int node = 0; node < 3; node++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/node%d.yaml", CFG_EXAMPLES_DIR, node);
		struct cfg c;
		struct dl_errctx e = {{0}};
		int rc = cfg_load_file(path, &c, &e);
		cr_assert_eq(rc, DL_OK, "%s: %s", path, e.msg);
		cr_assert_eq(c.n_groups, 3);
		cr_assert_str_eq(c.node.self_host, "127.0.0.1");
		cr_assert_eq(c.node.self_port, 10000 + node);
		static const char *names[3] = {"g0", "g1", "g2"};
		static const char prefix[3] = {'n', 'a', 'b'};
		static const char *preferred[3] = {"n0", "a1", "b2"};
		for (int g = 0; g < 3; g++) {
			const struct cfg_group *gr = find_group(&c, names[g]);
			char id[8];
			snprintf(id, sizeof(id), "%c%d", prefix[g], node);
			cr_assert_str_eq(gr->self_id, id);
			cr_assert_eq(gr->peers.n_members, 3);
			cr_assert_eq(gr->self_index, (uint32_t)node);
			cr_assert_str_eq(gr->preferred_leader_id, preferred[g]);
			int pi = cfg_peers_find(&gr->peers, preferred[g]);
			cr_assert_geq(pi, 0);
			leader_port[g] = gr->peers.members[pi].port;
		}
		cfg_free(&c);
	}
	cr_assert_neq(leader_port[0], leader_port[1]);
	cr_assert_neq(leader_port[1], leader_port[2]);
	cr_assert_neq(leader_port[0], leader_port[2]);
}

Test(config_good, plain_and_wrapped_items_mix)
{
	struct cfg c = load_ok("DLedgerConfigs:\n" ITEM_G0 "  - DLedgerConfig:\n"
	                       "      group: g1\n"
	                       "      id: a0\n"
	                       "      peers: a0-127.0.0.1:10000;a1-127.0.0.1:10001\n");
	cr_assert_eq(c.n_groups, 2);
	cr_assert_str_eq(c.groups[0].group, "g0");
	cr_assert_eq(c.groups[0].line, 2);
	cr_assert_str_eq(c.groups[1].group, "g1");
	cr_assert_str_eq(c.groups[1].self_id, "a0");
	cr_assert_eq(c.groups[1].line, 5);
	cr_assert_str_eq(c.source, "t.yaml");
	cfg_free(&c);
}

Test(config_good, defaults_are_dledgers)
{
	struct cfg c = load_ok("DLedgerConfigs:\n" ITEM_G0);
	const struct cfg_node *n = &c.node;
	cr_assert_str_eq(n->store_base_dir, "/tmp/dledgerstore");
	cr_assert_str_eq(n->control_socket, "/tmp/dledgerstore/control.sock");
	cr_assert_null(n->metrics_address);
	cr_assert_eq(n->leader_balance, false);
	cr_assert_eq(n->log_level, CFG_LOG_INFO);
	cr_assert_eq(n->max_frame_bytes, 16u << 20);
	const struct cfg_group *g = &c.groups[0];
	cr_assert_null(g->preferred_leader_id);
	cr_assert_null(g->leader_id);
	const struct cfg_group_opts *o = &g->o;
	cr_assert_eq(o->store_type, CFG_STORE_FILE);
	cr_assert_str_eq(o->store_base_dir, "/tmp/dledgerstore");
	cr_assert_eq(o->mapped_file_size_for_entry_data_bytes, 1ull << 30);
	cr_assert_eq(o->mapped_file_size_for_entry_index_bytes, 32ull * 5 * 1024 * 1024);
	cr_assert_eq(o->heart_beat_time_interval_ms, 2000);
	cr_assert_eq(o->max_heart_beat_leak, 3);
	cr_assert_eq(o->election_timeout_ms, 6000); /* 2000 x 3 */
	cr_assert(o->enable_leader_elector);
	cr_assert_eq(o->flush_mode, CFG_FLUSH_SYNC);
	cr_assert_eq(o->flush_file_interval_ms, 10);
	cr_assert_eq(o->check_point_interval_ms, 3000);
	cr_assert_eq(o->file_reserved_hours, 72);
	cr_assert_float_eq(o->disk_space_ratio_to_force_clean, 0.85, 1e-9);
	cr_assert_float_eq(o->disk_full_ratio, 0.90, 1e-9);
	cr_assert(o->enable_disk_force_clean);
	cr_assert_eq(o->max_pending_requests_num, 10000);
	cr_assert_eq(o->max_pending_bytes, 64ull << 20);
	cr_assert_eq(o->max_push_time_out_ms, 1000);
	cr_assert_eq(o->max_wait_ack_time_ms, 2500);
	cr_assert_eq(o->max_leadership_transfer_wait_index, 1000);
	cr_assert_eq(o->leadership_transfer_wait_timeout_ms, 1000);
	cfg_free(&c);
}

Test(config_good, node_defaults_are_overridden_per_group)
{
	struct cfg c = load_ok("storeBaseDir: /srv/dl\n"
	                       "controlSocket: /run/dl.sock\n"
	                       "metricsAddress: 127.0.0.1:9100\n"
	                       "leaderBalance: true\n"
	                       "logLevel: debug\n"
	                       "maxFrameBytes: 4MiB\n"
	                       "heartBeatTimeIntervalMs: 500\n"
	                       "flushMode: async\n"
	                       "diskSpaceRatioToForceClean: 0.93\n"
	                       "DLedgerConfigs:\n" ITEM_G0 "  - group: g1\n"
	                       "    id: n0\n"
	                       "    peers: " PEERS3 "\n"
	                       "    heartBeatTimeIntervalMs: 1000\n"
	                       "    maxHeartBeatLeak: 5\n"
	                       "    storeBaseDir: /fast/dl\n"
	                       "    storeType: memory\n"
	                       "    flushMode: sync\n"
	                       "    diskFullRatio: 0.97\n"
	                       "    electionTimeoutMs: 7000\n");
	cr_assert_str_eq(c.node.store_base_dir, "/srv/dl");
	cr_assert_str_eq(c.node.control_socket, "/run/dl.sock");
	cr_assert_str_eq(c.node.metrics_address, "127.0.0.1:9100");
	cr_assert(c.node.leader_balance);
	cr_assert_eq(c.node.log_level, CFG_LOG_DEBUG);
	cr_assert_eq(c.node.max_frame_bytes, 4u << 20);
	const struct cfg_group *g0 = find_group(&c, "g0"), *g1 = find_group(&c, "g1");
	cr_assert_str_eq(g0->o.store_base_dir, "/srv/dl");
	cr_assert_eq(g0->o.heart_beat_time_interval_ms, 500);
	cr_assert_eq(g0->o.election_timeout_ms, 1500); /* derived from the node's 500 */
	cr_assert_eq(g0->o.flush_mode, CFG_FLUSH_ASYNC);
	cr_assert_float_eq(g0->o.disk_full_ratio, 0.95, 1e-9); /* 0.93 + 0.05, capped */
	cr_assert_eq(g0->o.store_type, CFG_STORE_FILE);
	cr_assert_str_eq(g1->o.store_base_dir, "/fast/dl");
	cr_assert_eq(g1->o.heart_beat_time_interval_ms, 1000);
	cr_assert_eq(g1->o.max_heart_beat_leak, 5);
	cr_assert_eq(g1->o.election_timeout_ms, 7000);
	cr_assert_eq(g1->o.store_type, CFG_STORE_MEMORY);
	cr_assert_eq(g1->o.flush_mode, CFG_FLUSH_SYNC);
	cr_assert_float_eq(g1->o.disk_full_ratio, 0.97, 1e-9);
	/* The node's defaults keep the derived keys unset for later groups. */
	cr_assert_eq(c.node.defaults.election_timeout_ms, 0);
	cfg_free(&c);
}

Test(config_good, ipv6_and_host_names_in_peers)
{
	struct cfg c = load_ok("DLedgerConfigs:\n"
	                       "  - group: g0\n"
	                       "    id: n1\n"
	                       "    peers: n0-[::1]:10000;n1-db-1.example.com:10001;n2-10.0.0.3:9\n"
	                       "  - group: g1\n"
	                       "    id: a1\n"
	                       "    peers: a0-[0:0::1]:10000;a1-DB-1.example.com:10001\n");
	const struct cfg_group *g = &c.groups[0];
	cr_assert_str_eq(g->peers.members[0].host, "::1");
	cr_assert_eq(g->peers.members[0].port, 10000);
	cr_assert_str_eq(g->peers.members[1].id, "n1");
	cr_assert_str_eq(g->peers.members[1].host, "db-1.example.com");
	cr_assert_str_eq(g->peers.members[2].host, "10.0.0.3");
	cr_assert_str_eq(c.node.self_host, "db-1.example.com");
	char buf[CFG_ADDR_STR_MAX];
	cr_assert_gt(cfg_format_addr("::1", 10000, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "[::1]:10000");
	cr_assert_gt(cfg_format_addr("10.0.0.3", 9, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "10.0.0.3:9");
	cfg_free(&c);
}

Test(config_good, dledger_spellings_units_and_yaml_forms)
{
	struct cfg c =
	        load_ok("# comment\n"
	                "DLedgerConfigs: [{group: g0, selfId: n0, peers: 'n0-h:1;n1-h:2;'}]\n"
	                "storeType: MMAP\n"
	                "flushFileInterval: 25\n"
	                "checkPointInterval: 100\n"
	                "leadershipTransferWaitTimeout: 300\n"
	                "enableDiskForceClean: no\n"
	                "mappedFileSizeForEntryData: 64m\n"
	                "mappedFileSizeForEntryIndex: 8192\n"
	                "metricsAddress: off\n");
	const struct cfg_group *g = &c.groups[0];
	cr_assert_str_eq(g->self_id, "n0");
	cr_assert_eq(g->peers.n_members, 2);
	cr_assert_str_eq(g->peers.raw, "n0-h:1;n1-h:2;");
	cr_assert_eq(g->o.store_type, CFG_STORE_FILE);
	cr_assert_eq(g->o.flush_file_interval_ms, 25);
	cr_assert_eq(g->o.check_point_interval_ms, 100);
	cr_assert_eq(g->o.leadership_transfer_wait_timeout_ms, 300);
	cr_assert_not(g->o.enable_disk_force_clean);
	cr_assert_eq(g->o.mapped_file_size_for_entry_data_bytes, 64ull << 20);
	cr_assert_eq(g->o.mapped_file_size_for_entry_index_bytes, 8192);
	cr_assert_null(c.node.metrics_address);
	cfg_free(&c);
}

Test(config_good, fixed_leader_without_elector)
{
	struct cfg c = load_ok("DLedgerConfigs:\n" ITEM_G0 "    enableLeaderElector: false\n"
	                       "    leaderId: n2\n");
	cr_assert_not(c.groups[0].o.enable_leader_elector);
	cr_assert_str_eq(c.groups[0].leader_id, "n2");
	cfg_free(&c);
}

Test(config_good, tls_keys_are_node_wide_paths)
{
	struct cfg c = load_ok("tlsCertFile: /etc/dl/node.crt\ntlsKeyFile: /etc/dl/node.key\n"
	                       "tlsCaFile: /etc/dl/ca.crt\nDLedgerConfigs:\n" ITEM_G0);
	cr_assert_str_eq(c.node.tls_cert_file, "/etc/dl/node.crt");
	cr_assert_str_eq(c.node.tls_key_file, "/etc/dl/node.key");
	cr_assert_str_eq(c.node.tls_ca_file, "/etc/dl/ca.crt");
	cfg_free(&c);
	c = load_ok("DLedgerConfigs:\n" ITEM_G0);
	cr_assert_null(c.node.tls_cert_file); /* plaintext by default */
	cfg_free(&c);
}

/* ---- bad configurations: file, line and key in every message ---- */

Test(config_bad, tls_needs_all_three_files_at_the_top_level)
{
	expect_err("tlsCertFile: /a.crt\ntlsCaFile: /ca.crt\nDLedgerConfigs:\n" ITEM_G0, 1,
	           "tlsCertFile", "tlsKeyFile is missing");
	expect_err("tlsCaFile: /ca.crt\nDLedgerConfigs:\n" ITEM_G0, 1, "tlsCaFile",
	           "tlsCertFile is missing");
	expect_err("tlsCertFile: ''\nDLedgerConfigs:\n" ITEM_G0, 1, "tlsCertFile",
	           "must not be empty");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    tlsCertFile: /a.crt\n", 5, "tlsCertFile",
	           "node-wide");
}

Test(config_bad, seed_tab_indentation_is_named_with_its_line)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/bad-tab.yaml", CFG_EXAMPLES_DIR);
	struct cfg c;
	struct dl_errctx e = {{0}};
	cr_assert_eq(cfg_load_file(path, &c, &e), DL_ECONFIG);
	char want[600];
	snprintf(want, sizeof(want),
	         "%s:6: key 'group': tab character used for indentation at line 6; YAML allows "
	         "only spaces",
	         path);
	cr_assert_str_eq(e.msg, want);
	/* And in a buffer, with the seed's exact lines. */
	expect_err("DLedgerConfigs:\n  - \n   \t  group: g0\n      id: n0\n", 3, "group",
	           "tab character used for indentation at line 3; YAML allows only spaces");
}

Test(config_bad, tab_after_content_is_fine_but_not_before)
{
	struct cfg c = load_ok("DLedgerConfigs:\n" ITEM_G0 "    preferredLeaderId:\tn1 \t# ok\n");
	cr_assert_str_eq(c.groups[0].preferred_leader_id, "n1");
	cfg_free(&c);
	expect_err("\t# a comment after a tab\nDLedgerConfigs:\n" ITEM_G0, 1, NULL,
	           "tab character used for indentation at line 1");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "\t\n", 5, NULL,
	           "tab character used for indentation at line 5");
	expect_err("DLedgerConfigs:\n\t- group: g0\n", 2, "group", "tab character");
}

Test(config_bad, unknown_key_suggests_the_close_one)
{
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    heartbeatIntervalMs: 100\n", 5,
	           "heartbeatIntervalMs", "unknown key (did you mean 'heartBeatTimeIntervalMs'?)");
	expect_err("peer: x\nDLedgerConfigs:\n" ITEM_G0, 1, "peer", "did you mean 'peers'?");
	expect_err("zzzz: x\nDLedgerConfigs:\n" ITEM_G0, 1, "zzzz", "unknown key");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    minVoteIntervalMs: 100\n", 5,
	           "minVoteIntervalMs", "DLedger key not supported here");
}

Test(config_bad, wrong_types)
{
	expect_err("heartBeatTimeIntervalMs: fast\nDLedgerConfigs:\n" ITEM_G0, 1,
	           "heartBeatTimeIntervalMs", "expected a non-negative integer (milliseconds)");
	expect_err("DLedgerConfigs:\n  - group: [g0]\n", 2, "group",
	           "expected a single value, got a list");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    enableDiskForceClean: maybe\n", 5,
	           "enableDiskForceClean", "expected true or false");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    diskSpaceRatioToForceClean: lots\n", 5,
	           "diskSpaceRatioToForceClean", "expected a number");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    flushMode: sometimes\n", 5, "flushMode",
	           "'sometimes' is not one of: sync, async");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    storeType: disk\n", 5, "storeType",
	           "not one of: file (or mmap), memory");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    maxPushTimeOutMs:\n", 5, "maxPushTimeOutMs",
	           "has no value");
	expect_err("DLedgerConfigs: {group: g0}\n", 1, "DLedgerConfigs", "must be a list");
	expect_err("- a\n- b\n", 1, NULL, "the top level must be a mapping");
}

Test(config_bad, out_of_range_numbers)
{
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    heartBeatTimeIntervalMs: 0\n", 5,
	           "heartBeatTimeIntervalMs", "0 is out of range 1..600000 (milliseconds)");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    maxHeartBeatLeak: 99999999999999999999999\n", 5,
	           "maxHeartBeatLeak", "out of range");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    diskSpaceRatioToForceClean: 1.5\n", 5,
	           "diskSpaceRatioToForceClean", "out of range 0.10..0.99");
	expect_err("maxFrameBytes: 1k\nDLedgerConfigs:\n" ITEM_G0, 1, "maxFrameBytes",
	           "out of range");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    maxPendingRequestsNum: -1\n", 5,
	           "maxPendingRequestsNum", "expected a non-negative integer");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    maxPendingBytes: 1k\n", 5, "maxPendingBytes",
	           "out of range");
	expect_err("maxPendingBytes: 65g\nDLedgerConfigs:\n" ITEM_G0, 1, "maxPendingBytes",
	           "out of range");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    maxPendingBytes: lots\n", 5, "maxPendingBytes",
	           "");
}

Test(config_bad, election_timeout_must_exceed_heartbeat)
{
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    electionTimeoutMs: 100\n", 5,
	           "electionTimeoutMs", "must be longer than heartBeatTimeIntervalMs 2000 ms");
	/* Set at the top level: the message names the top-level line. */
	expect_err("electionTimeoutMs: 1000\nDLedgerConfigs:\n" ITEM_G0, 1, "electionTimeoutMs",
	           "election timeout 1000 ms");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    diskFullRatio: 0.5\n", 5, "diskFullRatio",
	           "below diskSpaceRatioToForceClean");
}

Test(config_bad, bad_ports_and_addresses)
{
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:70000\n", 4,
	           "peers", "port 70000 is out of range 1..65535");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:0\n", 4,
	           "peers", "port 0 is out of range");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:http\n", 4,
	           "peers", "is not a number");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-127.0.0.1\n", 4,
	           "peers", "has no ':port'");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-::1:10000\n", 4,
	           "peers", "IPv6 address must be in brackets");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-[::g]:10000\n", 4,
	           "peers", "is not an IPv6 address");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-300.0.0.1:1\n", 4,
	           "peers", "is not an IPv4 address");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-bad_host:1\n", 4,
	           "peers", "is not a valid host name");
	expect_err("metricsAddress: localhost\nDLedgerConfigs:\n" ITEM_G0, 1, "metricsAddress",
	           "has no ':port'");
}

Test(config_bad, self_id_not_in_peers)
{
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n3\n    peers: " PEERS3 "\n", 4,
	           "peers", "self id 'n3' is not in peers");
}

Test(config_bad, duplicate_id_in_peers)
{
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n"
	           "    peers: n0-127.0.0.1:10000;n0-127.0.0.1:10001\n",
	           4, "peers", "duplicate id 'n0' (members 1 and 2)");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n"
	           "    peers: n0-127.0.0.1:10000;n1-127.0.0.1:10000\n",
	           4, "peers", "have the same address");
}

Test(config_bad, group_listed_twice)
{
	expect_err("DLedgerConfigs:\n" ITEM_G0 ITEM_G0, 5, "group",
	           "group 'g0' with id 'n0' is listed twice (first at item 1, line 2)");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "  - group: g0\n    id: n1\n    peers: " PEERS3 "\n",
	           5, "group", "already on this node as id 'n0'");
}

Test(config_bad, groups_disagree_on_this_nodes_address)
{
	expect_err("DLedgerConfigs:\n" ITEM_G0 "  - DLedgerConfig:\n"
	           "      group: g1\n"
	           "      id: a0\n"
	           "      peers: a0-127.0.0.1:20000;a1-127.0.0.1:10001\n",
	           8, "peers",
	           "this node is 127.0.0.1:20000 ('a0') here but 127.0.0.1:10000 ('n0' of group "
	           "'g0', line 2)");
}

Test(config_bad, unsafe_names)
{
	expect_err("DLedgerConfigs:\n  - group: ../etc\n", 2, "group",
	           "has characters unsafe in a path");
	expect_err("DLedgerConfigs:\n  - group: ..\n", 2, "group", "is not allowed");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: a/b\n", 3, "id",
	           "has characters unsafe in a path");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n-0\n", 3, "id", "contains '-'");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n/0-h:1\n", 4, "peers",
	           "unsafe in a path");
	expect_err("DLedgerConfigs:\n  - group: \"\"\n", 2, "group", "must not be empty");
	expect_err("DLedgerConfigs:\n  - group:\n", 2, "group", "must not be empty");
}

Test(config_bad, leader_ids_must_be_members)
{
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    preferredLeaderId: n9\n", 5,
	           "preferredLeaderId", "'n9' is not in peers");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    enableLeaderElector: false\n"
	           "    leaderId: x1\n",
	           6, "leaderId", "'x1' is not in peers");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    enableLeaderElector: false\n", 2, "leaderId",
	           "missing");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    leaderId: n1\n", 5, "leaderId",
	           "only meaningful with enableLeaderElector: false");
}

Test(config_bad, keys_in_the_wrong_place_or_twice)
{
	expect_err("peers: " PEERS3 "\nDLedgerConfigs:\n" ITEM_G0, 1, "peers",
	           "belongs in a DLedgerConfigs item");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    controlSocket: /x.sock\n", 5, "controlSocket",
	           "is node-wide");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    id: n1\n", 5, "id",
	           "given twice (first at line 3");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    selfId: n1\n", 5, "id", "'selfId' is another");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "DLedgerConfigs:\n" ITEM_G0, 5, "DLedgerConfigs",
	           "given twice");
	expect_err("DLedgerConfigs:\n  - DLedgerConfig:\n      group: g0\n    id: n0\n", 2,
	           "DLedgerConfig", "a wrapped item holds only DLedgerConfig");
}

Test(config_bad, missing_and_empty_parts)
{
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n", 2, "peers", "missing");
	expect_err("DLedgerConfigs:\n  - id: n0\n    peers: n0-h:1\n", 2, "group", "missing");
	expect_err("DLedgerConfigs:\n  - \n", 2, NULL, "DLedgerConfigs item 1 is empty");
	expect_err("DLedgerConfigs: []\n", 1, "listenAddress",
	           "missing; a node with no group needs the address it listens on");
	expect_err("storeBaseDir: /x\n", 1, "DLedgerConfigs", "missing");
	expect_err("", 1, NULL, "empty configuration");
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: ''\n", 4, "peers",
	           "no members");
}

Test(config_bad, too_many_members)
{
	expect_err("DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: "
	           "n0-h:1;n1-h:2;n2-h:3;n3-h:4;n4-h:5;n5-h:6;n6-h:7;n7-h:8;n8-h:9;n9-h:10\n",
	           4, "peers", "more than 9 members");
}

Test(config_bad, socket_path_too_long)
{
	char text[1024];
	char dir[200];
	memset(dir, 'd', sizeof(dir) - 1);
	dir[sizeof(dir) - 1] = '\0';
	snprintf(text, sizeof(text), "storeBaseDir: /%s\nDLedgerConfigs:\n" ITEM_G0, dir);
	expect_err(text, 1, "controlSocket", "longer than a unix socket path");
	snprintf(text, sizeof(text), "controlSocket: /%s\nDLedgerConfigs:\n" ITEM_G0, dir);
	expect_err(text, 1, "controlSocket", "unix socket path limit");
}

Test(config_bad, member_directory_too_long)
{
	/* <storeBaseDir>/g0/n0 at 961 bytes is refused, at 960 taken. */
	char text[2048], dir[1024];
	size_t n = CFG_MEMBER_DIR_MAX - strlen("/g0/n0");
	memset(dir, 'd', n + 1);
	dir[0] = '/';
	dir[n + 1] = '\0';
	snprintf(text, sizeof(text),
	         "controlSocket: /tmp/c.sock\nstoreBaseDir: %s\nDLedgerConfigs:\n" ITEM_G0, dir);
	expect_err(text, 2, "storeBaseDir", "would be 961 bytes long, at most 960");
	snprintf(text, sizeof(text),
	         "controlSocket: /tmp/c.sock\nDLedgerConfigs:\n" ITEM_G0 "    storeBaseDir: %s\n", dir);
	expect_err(text, 6, "storeBaseDir", "would be 961 bytes long");
	dir[n] = '\0';
	snprintf(text, sizeof(text),
	         "controlSocket: /tmp/c.sock\nstoreBaseDir: %s\nDLedgerConfigs:\n" ITEM_G0, dir);
	struct cfg c = load_ok(text);
	cfg_free(&c);
}

Test(config_bad, yaml_syntax_errors_name_the_line)
{
	expect_err("DLedgerConfigs:\n" ITEM_G0 "    id: [n0\n", 6, NULL, "YAML syntax error");
	expect_err("DLedgerConfigs:\n" ITEM_G0 "---\nx: 1\n", 6, NULL, "a second YAML document");
}

Test(config_bad, absurd_inputs_are_refused_quickly, .timeout = 60)
{
	/* libyaml's scanner is quadratic in [ { depth: refused before it runs. */
	size_t depth = 100000;
	char *deep = malloc(2 * depth + 32);
	cr_assert_not_null(deep);
	strcpy(deep, "DLedgerConfigs: ");
	size_t n = strlen(deep);
	memset(deep + n, '[', depth);
	memset(deep + n + depth, ']', depth);
	deep[n + 2 * depth] = '\0';
	expect_err(deep, 1, NULL, "more than 32 nested [ ] or { } levels");
	free(deep);

	/* Many groups: the "listed twice" check is O(1) per group. */
	size_t groups = 20000, cap = groups * 64 + 64;
	char *big = malloc(cap);
	cr_assert_not_null(big);
	size_t len = (size_t)snprintf(big, cap, "DLedgerConfigs:\n");
	for (size_t i = 0; i < groups; i++)
		len += (size_t)snprintf(big + len, cap - len,
		                        "  - {group: g%zu, id: n0, peers: 'n0-h:1'}\n", i);
	struct cfg c = load_ok(big);
	cr_assert_eq(c.n_groups, groups);
	cfg_free(&c);
	snprintf(big + len, cap - len, "  - {group: g17, id: n0, peers: 'n0-h:1'}\n");
	expect_err(big, (unsigned)groups + 2, "group", "group 'g17' with id 'n0' is listed twice");
	free(big);
}

Test(config_bad, unreadable_file_is_an_io_error)
{
	struct cfg c;
	struct dl_errctx e = {{0}};
	cr_assert_eq(cfg_load_file("/nonexistent/dl.yaml", &c, &e), DL_EIO);
	cr_assert(strstr(e.msg, "/nonexistent/dl.yaml") != NULL);
	cr_assert_eq(cfg_load_file("/", &c, &e), DL_EIO);
}

/* ---- the peers parser ---- */

Test(config_peers, id_is_up_to_the_first_dash)
{
	struct cfg_peers p;
	struct dl_errctx e = {{0}};
	cr_assert_eq(cfg_parse_peers(" n0-my-host-1:10 ; n1-[fe80::1]:11 ;", &p, &e), DL_OK, "%s",
	             e.msg);
	cr_assert_eq(p.n_members, 2);
	cr_assert_str_eq(p.members[0].id, "n0");
	cr_assert_str_eq(p.members[0].host, "my-host-1");
	cr_assert_eq(p.members[0].port, 10);
	cr_assert_str_eq(p.members[1].host, "fe80::1");
	cr_assert_eq(cfg_peers_find(&p, "n1"), 1);
	cr_assert_eq(cfg_peers_find(&p, "n2"), -1);
	cfg_peers_free(&p);
	cfg_peers_free(&p); /* twice is fine */
}

Test(config_peers, limits_and_errors)
{
	struct cfg_peers p;
	struct dl_errctx e = {{0}};
	cr_assert_eq(
	        cfg_parse_peers("a-h:1;b-h:2;c-h:3;d-h:4;e-h:5;f-h:6;g-h:7;h-h:8;i-h:9", &p, &e),
	        DL_OK);
	cr_assert_eq(p.n_members, CFG_MAX_MEMBERS);
	cfg_peers_free(&p);
	static const struct {
		const char *s;
		const char *frag;
	} bad[] = {
	        {"", "no members"},
	        {";", "member 1 is empty"},
	        {"n0-h:1;;n1-h:2", "member 2 is empty"},
	        {"n0", "expected id-host:port"},
	        {"-h:1", "expected id-host:port"},
	        {"n0-h:65536", "out of range"},
	        {"n0-h:", "no ':port'"},
	        {"n0-:1", "host is empty"},
	        {"n0-[::1]10", "no ':port'"},
	        {"n0-[::1:10", "without ']'"},
	        {"n0-[127.0.0.1]:10", "not an IPv6 address"},
	        {"n0-h-:1", "not a valid host name"},
	        {"n0-h..x:1", "not a valid host name"},
	        {"n0-h:1;N0-h:1", "same address"},
	        {"n.-h:1;..-h:2", "is not allowed"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = cfg_parse_peers(bad[i].s, &p, &e);
		cr_assert_eq(rc, DL_ECONFIG, "'%s' was accepted", bad[i].s);
		cr_assert(strstr(e.msg, bad[i].frag) != NULL, "'%s': message '%s' lacks '%s'",
		          bad[i].s, e.msg, bad[i].frag);
		cr_assert_eq(p.n_members, 0);
		cr_assert_null(p.raw);
	}
}

Test(config_peers, names)
{
	cr_assert(cfg_name_valid("g_0.x-y", false));
	cr_assert_not(cfg_name_valid("g_0.x-y", true));
	cr_assert(cfg_name_valid("n0", true));
	cr_assert_not(cfg_name_valid(".", false));
	cr_assert_not(cfg_name_valid("..", true));
	cr_assert_not(cfg_name_valid("", false));
	cr_assert_not(cfg_name_valid("a b", false));
	cr_assert_not(cfg_name_valid("a/b", false));
	cr_assert_not(cfg_name_valid("\xc3\xa9", false));
	char longname[CFG_NAME_MAX + 2];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_assert_not(cfg_name_valid(longname, false));
	longname[CFG_NAME_MAX] = '\0';
	cr_assert(cfg_name_valid(longname, false));
}

/* ---- flags ---- */

static int args(struct cfg *c, struct dl_errctx *e, const char *const *v)
{
	int n = 0;
	while (v[n] != NULL)
		n++;
	memset(e, 0, sizeof(*e));
	return cfg_from_args(n, (char *const *)v, c, e);
}

Test(config_flags, dledger_flags_make_one_group)
{
	struct cfg c;
	struct dl_errctx e;
	const char *v[] = {"dledger-actors",
	                   "-g",
	                   "g0",
	                   "--id",
	                   "n1",
	                   "-p",
	                   PEERS3,
	                   "--store-base-dir=/var/dl",
	                   "--preferred-leader-id",
	                   "n0",
	                   "--store-type",
	                   "memory",
	                   "--flush-mode",
	                   "async",
	                   "--log-level",
	                   "debug",
	                   "--set",
	                   "heartBeatTimeIntervalMs=100",
	                   "--set",
	                   "maxFrameBytes=1m",
	                   NULL};
	cr_assert_eq(args(&c, &e, v), DL_OK, "%s", e.msg);
	cr_assert_str_eq(c.source, "flags");
	cr_assert_eq(c.n_groups, 1);
	const struct cfg_group *g = &c.groups[0];
	cr_assert_str_eq(g->group, "g0");
	cr_assert_str_eq(g->self_id, "n1");
	cr_assert_eq(g->self_index, 1);
	cr_assert_str_eq(g->preferred_leader_id, "n0");
	cr_assert_str_eq(g->o.store_base_dir, "/var/dl");
	cr_assert_eq(g->o.store_type, CFG_STORE_MEMORY);
	cr_assert_eq(g->o.flush_mode, CFG_FLUSH_ASYNC);
	cr_assert_eq(g->o.heart_beat_time_interval_ms, 100);
	cr_assert_eq(g->o.election_timeout_ms, 300);
	cr_assert_eq(c.node.log_level, CFG_LOG_DEBUG);
	cr_assert_eq(c.node.max_frame_bytes, 1u << 20);
	cr_assert_str_eq(c.node.control_socket, "/var/dl/control.sock");
	cr_assert_eq(c.node.self_port, 10001);
	cfg_free(&c);

	const char *tls[] = {"x", "-i", "n0", "-p", PEERS3, "--tls-cert-file", "/a.crt",
	                     "--tls-key=/a.key", "--tls-ca", "/ca.crt", NULL};
	cr_assert_eq(args(&c, &e, tls), DL_OK, "%s", e.msg);
	cr_assert_str_eq(c.node.tls_cert_file, "/a.crt");
	cr_assert_str_eq(c.node.tls_key_file, "/a.key");
	cr_assert_str_eq(c.node.tls_ca_file, "/ca.crt");
	cfg_free(&c);

	const char *dflt[] = {"x", "--id", "n0", "--peers", "n0-localhost:20911", NULL};
	cr_assert_eq(args(&c, &e, dflt), DL_OK, "%s", e.msg);
	cr_assert_str_eq(c.groups[0].group, "default");
	cr_assert_str_eq(c.groups[0].o.store_base_dir, "/tmp/dledgerstore");
	cfg_free(&c);
}

Test(config_good, max_pending_bytes_takes_units_per_group_and_as_a_flag)
{
	struct cfg c = load_ok("maxPendingBytes: 1m\nDLedgerConfigs:\n" ITEM_G0
	                       "  - group: g1\n    id: n0\n    peers: " PEERS3 "\n"
	                       "    maxPendingBytes: 2G\n");
	cr_assert_eq(find_group(&c, "g0")->o.max_pending_bytes, 1ull << 20);
	cr_assert_eq(find_group(&c, "g1")->o.max_pending_bytes, 2ull << 30);
	cfg_free(&c);

	struct dl_errctx e;
	const char *v[] = {"x", "-i", "n0", "-p", PEERS3, "--max-pending-bytes", "8m", NULL};
	cr_assert_eq(args(&c, &e, v), DL_OK, "%s", e.msg);
	cr_assert_eq(c.groups[0].o.max_pending_bytes, 8ull << 20);
	cfg_free(&c);
	const char *bad[] = {"x", "-i", "n0", "-p", PEERS3, "--max-pending-bytes", "0", NULL};
	cr_assert_eq(args(&c, &e, bad), DL_ECONFIG);
	cr_assert(strstr(e.msg, "flag '--max-pending-bytes': 0 is out of range") != NULL, "%s", e.msg);
}

Test(config_flags, help_version_and_config)
{
	struct cfg c;
	struct dl_errctx e;
	const char *h[] = {"x", "--id", "n0", "--help", NULL};
	cr_assert_eq(args(&c, &e, h), CFG_HELP);
	cr_assert_eq(c.n_groups, 0);
	const char *v[] = {"x", "-V", NULL};
	cr_assert_eq(args(&c, &e, v), CFG_VERSION);
	cr_assert(strstr(cfg_flags_usage(), "--peers") != NULL);
	const char *f[] = {"x", "-c", CFG_EXAMPLES_DIR "/node2.yaml", NULL};
	cr_assert_eq(args(&c, &e, f), DL_OK, "%s", e.msg);
	cr_assert_eq(c.n_groups, 3);
	cr_assert_eq(c.node.self_port, 10002);
	cfg_free(&c);
	const char *bad[] = {"x", "--config-file", CFG_EXAMPLES_DIR "/bad-tab.yaml", NULL};
	cr_assert_eq(args(&c, &e, bad), DL_ECONFIG);
	cr_assert(strstr(e.msg, "bad-tab.yaml:6: key 'group': tab character") != NULL, "%s", e.msg);
}

Test(config_flags, errors_name_the_flag)
{
	static const struct {
		const char *argv[10];
		const char *msg;
	} cases[] = {
	        {{"x", NULL}, "no configuration: give --config FILE, or --id and --peers"},
	        {{"x", "--id", "n0", NULL}, "flag '--peers': missing"},
	        {{"x", "--id", "n3", "--peers", PEERS3, NULL},
	         "flag '--peers': self id 'n3' is not in peers"},
	        {{"x", "-i", "n0", "-p", "n0-h:99999", NULL}, "flag '--peers': member 1 'n0'"},
	        {{"x", "-i", "n0", "-i", "n1", NULL}, "flag '--id': given twice"},
	        {{"x", "-c", "f.yaml", "-i", "n0", NULL},
	         "flag '--config' cannot be combined with '--id'"},
	        {{"x", "--peer", "x", NULL}, "unknown flag '--peer' (did you mean '--peers'?)"},
	        {{"x", "--id", NULL}, "flag '--id': needs a value"},
	        {{"x", "n0", NULL}, "unexpected argument 'n0'"},
	        {{"x", "--set", "nope=1", NULL}, "flag '--set': key 'nope': unknown key"},
	        {{"x", "--set", "novalue", NULL}, "expected KEY=VALUE"},
	        {{"x", "-i", "n0", "-p", "n0-h:1", "--flush-mode", "later", NULL},
	         "flag '--flush-mode': 'later' is not one of"},
	        {{"x", "-i", "n0", "-p", "n0-h:1", "-g", "a b", NULL},
	         "flag '--group': group name 'a b' has characters unsafe"},
	        {{"x", "-i", "n0", "-p", "n0-h:1", "--tls-cert", "/a.crt", "--tls-key", "/a.key",
	          NULL},
	         "flag '--tls-cert-file': TLS needs tlsCertFile, tlsKeyFile and tlsCaFile "
	         "together; tlsCaFile is missing"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg c;
		struct dl_errctx e;
		int rc = args(&c, &e, cases[i].argv);
		cr_assert_eq(rc, DL_ECONFIG, "case %zu: rc %d", i, rc);
		cr_assert(strstr(e.msg, cases[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i,
		          e.msg, cases[i].msg);
		cr_assert_eq(c.n_groups, 0);
		cr_assert_null(c.source);
	}
}

/* ---- key/value list (the control socket's add-group) ---- */

Test(config_kv, add_group_with_node_defaults)
{
	struct cfg c = load_ok("heartBeatTimeIntervalMs: 400\nDLedgerConfigs:\n" ITEM_G0);
	struct cfg_kv kv[] = {
	        {"group", "g7"},
	        {"id", "x0"},
	        {"peers", "x0-127.0.0.1:10000;x1-127.0.0.1:10001"},
	        {"preferredLeaderId", "x1"},
	        {"maxHeartBeatLeak", "10"},
	};
	struct cfg_group g;
	struct dl_errctx e = {{0}};
	cr_assert_eq(cfg_group_from_kv(&c.node, kv, 5, &g, &e), DL_OK, "%s", e.msg);
	cr_assert_eq(g.o.heart_beat_time_interval_ms, 400);
	cr_assert_eq(g.o.election_timeout_ms, 4000);
	cr_assert_str_eq(g.o.store_base_dir, "/tmp/dledgerstore");
	cr_assert_eq(cfg_add_group(&c, &g, &e), DL_OK, "%s", e.msg);
	cr_assert_eq(c.n_groups, 2);
	cr_assert_null(g.group); /* ownership moved */
	cr_assert_str_eq(c.groups[1].preferred_leader_id, "x1");

	/* The same group again, and a group that disagrees on our address. */
	cr_assert_eq(cfg_group_from_kv(&c.node, kv, 5, &g, &e), DL_OK);
	cr_assert_eq(cfg_add_group(&c, &g, &e), DL_ECONFIG);
	cr_assert(strstr(e.msg, "key 'group': group 'g7' with id 'x0' is listed twice") != NULL,
	          "%s", e.msg);
	cfg_group_free(&g);
	struct cfg_kv other[] = {{"group", "g8"}, {"id", "y0"}, {"peers", "y0-127.0.0.2:10000"}};
	cr_assert_eq(cfg_group_from_kv(&c.node, other, 3, &g, &e), DL_OK);
	cr_assert_eq(cfg_check_new_group(&c, &g, &e), DL_ECONFIG);
	cr_assert(strstr(e.msg, "key 'peers': this node is 127.0.0.2:10000") != NULL, "%s", e.msg);
	cfg_group_free(&g);
	cfg_free(&c);
}

Test(config_kv, errors_name_the_key)
{
	struct cfg_group g;
	struct dl_errctx e = {{0}};
	struct cfg_kv a[] = {{"group", "g0"}, {"id", "n0"}, {"peers", PEERS3}, {"logLevel", "x"}};
	cr_assert_eq(cfg_group_from_kv(NULL, a, 4, &g, &e), DL_ECONFIG);
	cr_assert_str_eq(e.msg, "key 'logLevel': node-wide; not settable per group");
	struct cfg_kv b[] = {{"group", "g0"}, {"id", "n5"}, {"peers", PEERS3}};
	cr_assert_eq(cfg_group_from_kv(NULL, b, 3, &g, &e), DL_ECONFIG);
	cr_assert_str_eq(e.msg, "key 'peers': self id 'n5' is not in peers");
	cr_assert_null(g.group);
	struct cfg_kv c[] = {{"grop", "g0"}};
	cr_assert_eq(cfg_group_from_kv(NULL, c, 1, &g, &e), DL_ECONFIG);
	cr_assert_str_eq(e.msg, "key 'grop': unknown key (did you mean 'group'?)");
	struct cfg_kv d[] = {{"group", "g0"}, {"id", "n0"}, {"peers", PEERS3}};
	cr_assert_eq(cfg_group_from_kv(NULL, d, 3, &g, &e), DL_OK);
	cr_assert_str_eq(g.o.store_base_dir, "/tmp/dledgerstore");
	cfg_group_free(&g);
}

Test(config_free, safe_on_empty_half_built_and_twice)
{
	cfg_free(NULL);
	cfg_group_free(NULL);
	cfg_peers_free(NULL);
	struct cfg c;
	memset(&c, 0, sizeof(c));
	cfg_free(&c);
	c = load_ok("DLedgerConfigs:\n" ITEM_G0);
	cfg_free(&c);
	cfg_free(&c);
	/* Half-built: a group slot with only some strings set. */
	memset(&c, 0, sizeof(c));
	c.groups = calloc(2, sizeof(*c.groups));
	c.n_groups = 2;
	c.groups[0].group = strdup("g0");
	c.node.control_socket = strdup("/x");
	cfg_free(&c);
	cr_assert_null(c.groups);
}

/* ---- fuzz: seeded mutations of a valid file never crash ---- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static const char fuzz_base[] =
        "storeBaseDir: /tmp/dl\n"
        "heartBeatTimeIntervalMs: 500\n"
        "diskSpaceRatioToForceClean: 0.8\n"
        "DLedgerConfigs:\n"
        "  - group: g0\n"
        "    id: n0\n"
        "    peers: n0-127.0.0.1:10000;n1-[::1]:10001;n2-db-2.example:10002\n"
        "    preferredLeaderId: n0\n"
        "  - DLedgerConfig:\n"
        "      group: g1\n"
        "      id: a0\n"
        "      peers: a0-127.0.0.1:10000;a1-127.0.0.1:10001\n"
        "      flushMode: async\n"
        "      mappedFileSizeForEntryData: 64m\n"
        "  - {group: g2, id: b0, peers: 'b0-127.0.0.1:10000', enableLeaderElector: false, "
        "leaderId: b0}\n";

static size_t mutate(char *buf, size_t len, size_t cap, uint64_t *s)
{
	static const char alphabet[] = " \t\n:-;[]{}'\"&*!#|>,.0123456789abzAZ_%@?~\\";
	size_t pos = len ? (size_t)(rng_next(s) % len) : 0;
	switch (rng_next(s) % 7) {
	case 0: /* replace a byte */
		if (len)
			buf[pos] = alphabet[rng_next(s) % (sizeof(alphabet) - 1)];
		break;
	case 1: /* insert a byte */
		if (len + 1 < cap) {
			memmove(buf + pos + 1, buf + pos, len - pos);
			buf[pos] = alphabet[rng_next(s) % (sizeof(alphabet) - 1)];
			len++;
		}
		break;
	case 2: { /* delete a run */
		size_t n = (size_t)(rng_next(s) % 8) + 1;
		if (pos + n > len)
			n = len - pos;
		memmove(buf + pos, buf + pos + n, len - pos - n);
		len -= n;
		break;
	}
	case 3: { /* duplicate a run */
		size_t n = (size_t)(rng_next(s) % 40) + 1;
		if (pos + n > len)
			n = len - pos;
		if (len + n < cap) {
			memmove(buf + pos + n, buf + pos, len - pos);
			len += n;
		}
		break;
	}
	case 4: /* flip a bit (may make invalid UTF-8) */
		if (len)
			buf[pos] = (char)(buf[pos] ^ (1 << (rng_next(s) % 8)));
		break;
	case 5: /* truncate */ len = pos; break;
	default: /* a NUL byte */
		if (len)
			buf[pos] = '\0';
		break;
	}
	return len;
}

Test(config_fuzz, mutated_files_load_or_fail_cleanly, .timeout = 120)
{
	enum { ROUNDS = 4000, CAP = 4096 };
	char buf[CAP];
	size_t ok = 0, bad = 0;
	{
		struct cfg c = load_ok(fuzz_base);
		cr_assert_eq(c.n_groups, 3);
		cfg_free(&c);
	}
	for (uint64_t seed = 1; seed <= ROUNDS; seed++) {
		uint64_t s = seed * 0x9E3779B97F4A7C15ull;
		size_t len = sizeof(fuzz_base) - 1;
		memcpy(buf, fuzz_base, len);
		int n = (int)(rng_next(&s) % 4) + 1;
		for (int i = 0; i < n; i++)
			len = mutate(buf, len, CAP, &s);
		struct cfg c;
		struct dl_errctx e = {{0}};
		int rc = cfg_load_buffer("fuzz.yaml", buf, len, &c, &e);
		cr_assert(rc == DL_OK || rc == DL_ECONFIG, "seed %llu: rc %d (%s)",
		          (unsigned long long)seed, rc, e.msg);
		if (rc == DL_OK) {
			ok++;
			cr_assert_geq(c.n_groups, 1);
			for (size_t g = 0; g < c.n_groups; g++) {
				const struct cfg_group *gr = &c.groups[g];
				cr_assert(cfg_name_valid(gr->group, false));
				cr_assert(cfg_name_valid(gr->self_id, true));
				cr_assert_lt(gr->self_index, gr->peers.n_members);
				cr_assert_gt(gr->o.election_timeout_ms,
				             gr->o.heart_beat_time_interval_ms);
			}
		} else {
			bad++;
			/* Every configuration error names the file and a line. */
			cr_assert(strncmp(e.msg, "fuzz.yaml:", 10) == 0 && e.msg[10] >= '1' &&
			                  e.msg[10] <= '9',
			          "seed %llu: '%s'", (unsigned long long)seed, e.msg);
			cr_assert_null(c.groups);
		}
		cfg_free(&c);
	}
	cr_log_info("%zu mutated files loaded, %zu refused", ok, bad);
	cr_assert_gt(ok, 0);
	cr_assert_gt(bad, 0);
}

Test(config_fuzz, random_peers_strings_never_crash)
{
	static const char alphabet[] = "n01-.:;[]abf: h9";
	uint64_t s = 42;
	char str[64];
	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)(rng_next(&s) % (sizeof(str) - 1));
		for (size_t i = 0; i < n; i++)
			str[i] = alphabet[rng_next(&s) % (sizeof(alphabet) - 1)];
		str[n] = '\0';
		struct cfg_peers p;
		struct dl_errctx e = {{0}};
		int rc = cfg_parse_peers(str, &p, &e);
		cr_assert(rc == DL_OK || rc == DL_ECONFIG);
		if (rc == DL_OK) {
			cr_assert(p.n_members >= 1 && p.n_members <= CFG_MAX_MEMBERS);
			for (uint32_t i = 0; i < p.n_members; i++)
				cr_assert_gt(p.members[i].port, 0);
		}
		cfg_peers_free(&p);
	}
}

/* ---- a node with no group (issue 16) ---- */

Test(config_nogroups, a_node_with_no_group_takes_its_address_from_listen_address)
{
	struct cfg c = load_ok("listenAddress: 127.0.0.1:10007\nDLedgerConfigs: []\n");
	cr_assert_eq(c.n_groups, 0);
	cr_assert_str_eq(c.node.self_host, "127.0.0.1");
	cr_assert_eq(c.node.self_port, 10007);
	cr_assert_str_eq(c.node.listen_address, "127.0.0.1:10007");
	/* A group added later must give this node the same address. */
	struct cfg_kv bad[] = {{"group", "g9"}, {"id", "n1"}, {"peers", PEERS3}};
	struct cfg_group g;
	struct dl_errctx e = {{0}};
	cr_assert_eq(cfg_group_from_kv(&c.node, bad, 3, &g, &e), DL_OK, "%s", e.msg);
	cr_assert_eq(cfg_add_group(&c, &g, &e), DL_ECONFIG);
	cr_assert(strstr(e.msg, "key 'listenAddress': this node listens on 127.0.0.1:10007, but "
	                        "group 'g9' gives it (id 'n1') the address 127.0.0.1:10001") != NULL,
	          "%s", e.msg);
	cfg_group_free(&g);
	struct cfg_kv good[] = {{"group", "g9"}, {"id", "n7"},
	                        {"peers", "n7-127.0.0.1:10007;n8-127.0.0.1:10008"}};
	cr_assert_eq(cfg_group_from_kv(&c.node, good, 3, &g, &e), DL_OK, "%s", e.msg);
	cr_assert_eq(cfg_add_group(&c, &g, &e), DL_OK, "%s", e.msg);
	cr_assert_eq(c.n_groups, 1);
	cr_assert_str_eq(c.node.self_host, "127.0.0.1");
	cfg_free(&c);
}

Test(config_nogroups, listen_address_must_agree_with_the_groups)
{
	struct cfg c = load_ok("listenAddress: 127.0.0.1:10000\nDLedgerConfigs:\n" ITEM_G0);
	cr_assert_eq(c.n_groups, 1);
	cr_assert_eq(c.node.self_port, 10000);
	cfg_free(&c);
	expect_err("listenAddress: 127.0.0.1:10005\nDLedgerConfigs:\n" ITEM_G0, 1, "listenAddress",
	           "this node listens on 127.0.0.1:10005, but group 'g0' gives it (id 'n0') the "
	           "address 127.0.0.1:10000 in its peers");
	expect_err("listenAddress: nowhere\nDLedgerConfigs: []\n", 1, "listenAddress", "");
	expect_err("storeBaseDir: /x\nDLedgerConfigs: []\n", 1, "listenAddress", "missing");
}

Test(config_nogroups, listen_address_alone_on_the_command_line_starts_a_node_with_no_group)
{
	struct cfg c;
	struct dl_errctx e;
	const char *v[] = {"dledger-actors", "--listen-address", "127.0.0.1:9100",
	                   "--store-base-dir", "/tmp/x", NULL};
	cr_assert_eq(args(&c, &e, v), DL_OK, "%s", e.msg);
	cr_assert_eq(c.n_groups, 0);
	cr_assert_str_eq(c.node.self_host, "127.0.0.1");
	cr_assert_eq(c.node.self_port, 9100);
	cfg_free(&c);
	const char *w[] = {"dledger-actors", "--listen-address", "127.0.0.1:9100", "--id", "n0",
	                   "--peers", PEERS3, NULL};
	cr_assert_eq(args(&c, &e, w), DL_ECONFIG);
	cr_assert(strstr(e.msg, "listenAddress") != NULL || strstr(e.msg, "--listen-address"),
	          "%s", e.msg);
	cr_assert(strstr(e.msg, "127.0.0.1:10000") != NULL, "%s", e.msg);
	const char *x[] = {"dledger-actors", "--store-base-dir", "/tmp/x", NULL};
	cr_assert_eq(args(&c, &e, x), DL_ECONFIG);
	cr_assert(strstr(e.msg, "--listen-address alone") != NULL, "%s", e.msg);
}
