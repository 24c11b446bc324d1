/*
 * codec.h - the wire format: frames of msgpack messages (docs/PROTOCOL.md).
 *
 * A frame is one nng message:
 *
 *   frame   := version:uint  message*
 *   message := header body
 *   header  := array[6] { type:uint, group:str, target:str, sender:str,
 *                         request_id:uint, body_len:uint }
 *   body    := body_len bytes holding one msgpack value (per type, below)
 *
 * The router decodes only headers (tp_frame_next) and hands the body bytes
 * to the actor, which decodes them (tp_decode_*). Entry bodies are decoded
 * as views into the frame (msgpack bin), never copied. Every decode checks
 * types, lengths and bounds; nothing here allocates except the encoders'
 * growing buffer. Pure functions, no threads: safe from any thread.
 */
#ifndef DLEDGER_TP_CODEC_H
#define DLEDGER_TP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#define TP_VERSION 1
#define TP_NAME_MAX 64            /* group names and member ids, bytes */
#define TP_ADDR_MAX 300           /* "host:port" */
#define TP_MAX_ENTRIES 65536      /* per message */
#define TP_DEFAULT_MAX_FRAME_BYTES (64u * 1024 * 1024)
/* GET's wait_ms (docs/PROTOCOL.md, CLIENT_GET): a member's default when the
 * field is absent, and the longest a member accepts. */
#define TP_GET_WAIT_DEFAULT_MS 1000u
#define TP_GET_WAIT_MAX_MS     60000u

/* Message types. 1..9 are the Raft messages, numbered as enum
 * raft_msg_type. */
enum tp_type {
	TP_RAFT_MIN = RAFT_MSG_PREVOTE,
	TP_RAFT_MAX = RAFT_MSG_TYPE_MAX,
	/* Peer messages of the runtime, one-way like Raft's (10..31): */
	TP_FETCH = 10,        /* a member asks a peer for one entry it holds damaged */
	TP_FETCH_RESP,        /* the entry, or why not (shape of GET_RESP) */
	TP_PEER_MAX = 31,
	TP_APPEND = 32,       /* client: append a batch of entries */
	TP_APPEND_RESP,       /* (index, term) per entry, or an error */
	TP_GET,               /* client: read entries [index, to] */
	TP_GET_RESP,          /* the entries */
	TP_METADATA,          /* client: a group's metadata, or all groups' */
	TP_METADATA_RESP,
	TP_ERROR = 63,        /* code, message, leader id and address */
	TP_TYPE_MAX = TP_ERROR,
};

struct tp_hdr {
	uint8_t type;
	char group[TP_NAME_MAX + 1];
	char target[TP_NAME_MAX + 1]; /* member id the message is for ("" for node-level) */
	char sender[TP_NAME_MAX + 1]; /* member id of the sender ("" for clients) */
	uint64_t request_id;          /* client requests: echoed in the reply */
	uint32_t body_len;
	const uint8_t *body;          /* points into the frame */
};

/* ---- decoding ---------------------------------------------------------- */

/* Checks the version at the start of a frame; *off is set past it.
 * Returns 0, or DL_EPROTO (not msgpack / not a version number) or
 * DL_EINVAL (a version we do not speak). */
int tp_frame_begin(const uint8_t *buf, size_t len, size_t *off);

/* Decodes the next header at *off and advances *off past its body.
 * Returns 0 with *h filled, DL_ENOTFOUND at the clean end of the frame,
 * DL_EPROTO on anything malformed (wrong types, names too long or not
 * valid names, body past the end, unknown type: h->type still set when it
 * was readable, so the caller can answer with TP_ERROR).
 * On DL_EPROTO for an unknown type whose header is otherwise sound, *h is
 * filled whole and *off is advanced past the body: the caller may answer
 * and read on. On any other DL_EPROTO *off is unchanged and the rest of
 * the frame is unreadable. The group may be "" only for TP_METADATA (all
 * groups), TP_METADATA_RESP, TP_ERROR and unknown types. */
int tp_frame_next(const uint8_t *buf, size_t len, size_t *off, struct tp_hdr *h);

/* Raft message body. `entries` (capacity max_entries) receives the
 * entries of an APPEND, their data pointing into h->body. The caller fills
 * m->from/m->to (member ids are mapped by the runtime). Returns 0 or
 * DL_EPROTO / DL_ETOOBIG (more entries than max_entries). */
int tp_decode_raft(const struct tp_hdr *h, struct raft_message *m, struct raft_entry *entries,
		   uint32_t max_entries);

/* Client append request: entry bodies as views. Returns the number of
 * entries in *n. */
int tp_decode_append(const struct tp_hdr *h, struct raft_entry *entries, uint32_t max_entries,
		     uint32_t *n);

struct tp_append_resp {
	int code;            /* 0, or an enum dl_err */
	uint64_t first_index; /* entries got first_index, first_index+1, ... */
	uint64_t term;
	uint32_t n;
};
int tp_decode_append_resp(const struct tp_hdr *h, struct tp_append_resp *r);

struct tp_get {
	uint64_t index;
	uint64_t to;        /* inclusive, >= index */
	uint32_t max_bytes; /* reply size cap (0: server default) */
	/* GET only, optional on the wire (a fourth field): how long a read of
	 * an index past the member's commit index may wait for the commit to
	 * reach it, in ms (0: answer at once). has_wait false: the field is
	 * absent (a client older than it) and the member's default applies. */
	bool has_wait;
	uint32_t wait_ms;
};
/* GET ([index, to, max_bytes] or [index, to, max_bytes, wait_ms]), and
 * FETCH (its body: index == to, max_bytes 0, never wait_ms). */
int tp_decode_get(const struct tp_hdr *h, struct tp_get *g);

/* Metadata request: checks that the body is the empty array. The header's
 * group names the group, or is "" for all groups. */
int tp_decode_metadata(const struct tp_hdr *h);

/* Get reply: code, then entries from first_index on (views). Also
 * FETCH_RESP (at most one entry, none with a code). */
struct tp_get_resp {
	int code;
	uint64_t first_index;
	uint32_t n;
};
int tp_decode_get_resp(const struct tp_hdr *h, struct tp_get_resp *r, struct raft_entry *entries,
		       uint32_t max_entries);

struct tp_member_meta {
	char id[TP_NAME_MAX + 1];
	char addr[TP_ADDR_MAX + 1];
	uint8_t role;    /* enum raft_role; as the answering node knows it */
	uint64_t match_index; /* leader's view; 0 when unknown */
};
#define TP_REASON_MAX 63
struct tp_group_meta {
	char group[TP_NAME_MAX + 1];
	char self[TP_NAME_MAX + 1]; /* the answering member */
	char leader[TP_NAME_MAX + 1];
	char leader_addr[TP_ADDR_MAX + 1];
	uint8_t role;
	uint64_t term, first_index, last_index, commit_index, durable_index;
	bool voter; /* the answering member (raft/raft.h, "Voters") */
	char stopped[TP_REASON_MAX + 1]; /* why it takes no part ("disk full"); "": it does */
	uint32_t n_members;
	struct tp_member_meta members[RAFT_MAX_MEMBERS];
};
/* A metadata reply holds one or more groups; decode them one by one:
 * *cursor starts at 0; returns DL_ENOTFOUND after the last. */
int tp_decode_metadata_resp(const struct tp_hdr *h, size_t *cursor, struct tp_group_meta *g);

struct tp_error {
	int code;
	char message[256];
	char leader[TP_NAME_MAX + 1];     /* for DL_ENOTLEADER, "" if unknown */
	char leader_addr[TP_ADDR_MAX + 1];
};
int tp_decode_error(const struct tp_hdr *h, struct tp_error *e);

/* ---- encoding ----------------------------------------------------------- */

/* A frame being built: version first, then messages, each added whole or
 * not at all. Owns a growing buffer (freed by tp_fb_free). The version is
 * written with the first message: a frame without messages is empty. */
struct tp_fb {
	uint8_t *buf;
	size_t len;
	size_t cap;
	uint32_t n_msgs;
	size_t max_bytes; /* a message that would pass this is refused (DL_ETOOBIG) */
};

void tp_fb_init(struct tp_fb *fb, size_t max_bytes); /* 0: TP_DEFAULT_MAX_FRAME_BYTES */
void tp_fb_reset(struct tp_fb *fb); /* empty again, keeps the buffer */
void tp_fb_free(struct tp_fb *fb);
/* Hands the buffer to the caller (who frees it with free()); fb is empty.
 * NULL (and *len 0) when no message was added. */
uint8_t *tp_fb_take(struct tp_fb *fb, size_t *len);

/* Reads the entry at `index` of the local log for an outbound APPEND:
 * fills term, type, data (a view valid until the encode returns) and len.
 * Returns 0 or an error (the message is then not added). */
typedef int (*tp_entry_reader)(void *ctx, uint64_t index, struct raft_entry *out);

struct tp_addr {
	const char *group;
	const char *target;
	const char *sender;
	uint64_t request_id;
};

/* Each adder returns 0, DL_ETOOBIG (frame would pass max_bytes: the frame
 * is unchanged) or DL_ENOMEM; the frame is unchanged on any error. They
 * also refuse with DL_EINVAL what the decoder would refuse (invalid names
 * or addresses, codes outside 0..255, to < index, an index past
 * UINT64_MAX), and pass on the error of a tp_entry_reader.
 * tp_fb_add_raft: an APPEND's entries are read with `read`; when `read` is
 * NULL they are taken from m->append.entries instead.
 * tp_fb_add_append: only data and len of each entry travel. */
int tp_fb_add_raft(struct tp_fb *fb, const struct tp_addr *a, const struct raft_message *m,
		   tp_entry_reader read, void *read_ctx);
int tp_fb_add_append(struct tp_fb *fb, const struct tp_addr *a, const struct raft_entry *entries,
		     uint32_t n);
int tp_fb_add_append_resp(struct tp_fb *fb, const struct tp_addr *a,
			  const struct tp_append_resp *r);
int tp_fb_add_get(struct tp_fb *fb, const struct tp_addr *a, const struct tp_get *g);
/* Entries from first_index on, read with `read`, as many as fit in
 * max_bytes of body (at least one when n > 0). *n_added tells how many. */
int tp_fb_add_get_resp(struct tp_fb *fb, const struct tp_addr *a, int code, uint64_t first_index,
		       uint32_t n, uint32_t max_bytes, tp_entry_reader read, void *read_ctx,
		       uint32_t *n_added);
/* FETCH: the body of a GET of entry `index` alone ([index, index, 0]). */
int tp_fb_add_fetch(struct tp_fb *fb, const struct tp_addr *a, uint64_t index);
/* FETCH_RESP: the body of a GET_RESP holding entry `index` read with
 * `read` (code 0), or no entry (code != 0: why not). */
int tp_fb_add_fetch_resp(struct tp_fb *fb, const struct tp_addr *a, int code, uint64_t index,
			 tp_entry_reader read, void *read_ctx);
int tp_fb_add_metadata(struct tp_fb *fb, const struct tp_addr *a);
int tp_fb_add_metadata_resp(struct tp_fb *fb, const struct tp_addr *a,
			    const struct tp_group_meta *groups, uint32_t n);
int tp_fb_add_error(struct tp_fb *fb, const struct tp_addr *a, const struct tp_error *e);

/* Name check used by the decoder: 1..TP_NAME_MAX bytes of [A-Za-z0-9_.-]. */
bool tp_name_is_valid(const char *s, size_t len);

const char *tp_type_name(uint8_t type);

#endif
