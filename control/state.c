/*
 * state.c - <storeBaseDir>/groups.yaml: the run-time group changes of a
 * node, relative to its config file.
 *
 *   # dledger-actors: groups added and removed at run time (control socket).
 *   removed:            # dropped from the config file's groups at start
 *     - group: "g1"
 *       id: "n0"
 *   added:              # then added, with the keys given to add-group
 *     - group: "g7"
 *       id: "n0"
 *       peers: "n0-127.0.0.1:10000;n1-127.0.0.1:10001"
 *
 * Every value is a double-quoted scalar. The file is rewritten whole on each
 * change: temp file, fsync, rename, fsync of the directory.
 *
 * Threads: the caller's (ctl_open() at start, then the server thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "control/control_internal.h"

void ctl_rec_free(struct ctl_rec *r)
{
	if (r == NULL)
		return;
	for (uint32_t i = 0; i < r->n_kv; i++) {
		free(r->key[i]);
		free(r->val[i]);
	}
	memset(r, 0, sizeof(*r));
}

void ctl_state_free(struct ctl_state *st)
{
	for (size_t i = 0; i < st->n_added; i++)
		ctl_rec_free(&st->added[i]);
	for (size_t i = 0; i < st->n_removed; i++)
		ctl_rec_free(&st->removed[i]);
	free(st->added);
	free(st->removed);
	memset(st, 0, sizeof(*st));
}

const char *ctl_rec_get(const struct ctl_rec *r, const char *key)
{
	for (uint32_t i = 0; i < r->n_kv; i++)
		if (strcmp(r->key[i], key) == 0)
			return r->val[i];
	return NULL;
}

int ctl_rec_add(struct ctl_rec *r, const char *key, size_t klen, const char *val, size_t vlen)
{
	if (r->n_kv >= CTL_MAX_KV)
		return DL_ETOOBIG;
	char *k = strndup(key, klen), *v = strndup(val, vlen);
	if (k == NULL || v == NULL) {
		free(k);
		free(v);
		return DL_ENOMEM;
	}
	r->key[r->n_kv] = k;
	r->val[r->n_kv] = v;
	r->n_kv++;
	return DL_OK;
}

/* Index of the record of `group` in the list, or -1. */
static ssize_t rec_find(const struct ctl_rec *v, size_t n, const char *group)
{
	for (size_t i = 0; i < n; i++) {
		const char *g = ctl_rec_get(&v[i], "group");
		if (g != NULL && strcmp(g, group) == 0)
			return (ssize_t)i;
	}
	return -1;
}

static int rec_push(struct ctl_rec **v, size_t *n, struct ctl_rec *r)
{
	if (*n >= CFG_MAX_GROUPS)
		return DL_ETOOBIG;
	struct ctl_rec *nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (nv == NULL)
		return DL_ENOMEM;
	*v = nv;
	nv[(*n)++] = *r;
	memset(r, 0, sizeof(*r));
	return DL_OK;
}

static void rec_drop(struct ctl_rec *v, size_t *n, size_t i)
{
	DL_ASSERT(i < *n);
	ctl_rec_free(&v[i]);
	memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof(*v));
	(*n)--;
}

int ctl_state_note_added(struct ctl_state *st, struct ctl_rec *r)
{
	const char *g = ctl_rec_get(r, "group");
	DL_ASSERT(g != NULL);
	ssize_t i = rec_find(st->added, st->n_added, g);
	if (i >= 0)
		rec_drop(st->added, &st->n_added, (size_t)i);
	return rec_push(&st->added, &st->n_added, r);
}

int ctl_state_note_removed(struct ctl_state *st, const char *group, const char *id)
{
	ssize_t i = rec_find(st->added, st->n_added, group);
	if (i >= 0)
		rec_drop(st->added, &st->n_added, (size_t)i);
	i = rec_find(st->removed, st->n_removed, group);
	if (i >= 0 && strcmp(ctl_rec_get(&st->removed[i], "id"), id) == 0)
		return DL_OK;
	struct ctl_rec r = {0};
	int rc = ctl_rec_add(&r, "group", 5, group, strlen(group));
	if (rc == DL_OK)
		rc = ctl_rec_add(&r, "id", 2, id, strlen(id));
	if (rc == DL_OK)
		rc = rec_push(&st->removed, &st->n_removed, &r);
	ctl_rec_free(&r);
	return rc;
}

/* ---- reading ---------------------------------------------------------------- */

static int load_list(yaml_document_t *d, yaml_node_t *seq, struct ctl_rec **v, size_t *n,
		     const char *path, const char *what, struct dl_errctx *err)
{
	if (seq->type != YAML_SEQUENCE_NODE)
		return dl_errf(err, DL_ECONFIG, "%s:%zu: '%s' is not a list", path,
			       seq->start_mark.line + 1, what);
	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	     it < seq->data.sequence.items.top; it++) {
		yaml_node_t *m = yaml_document_get_node(d, *it);
		if (m == NULL || m->type != YAML_MAPPING_NODE)
			return dl_errf(err, DL_ECONFIG, "%s:%zu: an item of '%s' is not a mapping",
				       path, m ? m->start_mark.line + 1 : 0, what);
		struct ctl_rec r = {0};
		int rc = DL_OK;
		for (yaml_node_pair_t *p = m->data.mapping.pairs.start;
		     rc == DL_OK && p < m->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(d, p->key);
			yaml_node_t *val = yaml_document_get_node(d, p->value);
			if (k == NULL || val == NULL || k->type != YAML_SCALAR_NODE ||
			    val->type != YAML_SCALAR_NODE)
				rc = dl_errf(err, DL_ECONFIG, "%s:%zu: expected 'key: value'", path,
					     m->start_mark.line + 1);
			else
				rc = ctl_rec_add(&r, (const char *)k->data.scalar.value,
						 k->data.scalar.length,
						 (const char *)val->data.scalar.value,
						 val->data.scalar.length);
		}
		if (rc == DL_OK && (ctl_rec_get(&r, "group") == NULL || ctl_rec_get(&r, "id") == NULL))
			rc = dl_errf(err, DL_ECONFIG, "%s:%zu: an item of '%s' lacks group or id",
				     path, m->start_mark.line + 1, what);
		if (rc == DL_OK)
			rc = rec_push(v, n, &r);
		ctl_rec_free(&r);
		if (rc != DL_OK)
			return rc == DL_ECONFIG ? rc : dl_errf(err, rc, "%s: %s", path, dl_strerror(rc));
	}
	return DL_OK;
}

int ctl_state_load(const char *path, struct ctl_state *st, struct dl_errctx *err)
{
	memset(st, 0, sizeof(*st));
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return errno == ENOENT ? DL_OK : dl_errf(err, DL_EIO, "%s: %s", path, strerror(errno));
	yaml_parser_t p;
	yaml_document_t d;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_file(&p, f);
	int rc = DL_OK;
	if (!yaml_parser_load(&p, &d)) {
		rc = dl_errf(err, DL_ECONFIG, "%s:%zu: %s", path, p.problem_mark.line + 1,
			     p.problem ? p.problem : "bad YAML");
		goto out_parser;
	}
	yaml_node_t *root = yaml_document_get_root_node(&d);
	if (root != NULL && root->type != YAML_MAPPING_NODE)
		rc = dl_errf(err, DL_ECONFIG, "%s: not a mapping", path);
	for (yaml_node_pair_t *pr = root ? root->data.mapping.pairs.start : NULL;
	     rc == DL_OK && root != NULL && root->type == YAML_MAPPING_NODE &&
	     pr < root->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = yaml_document_get_node(&d, pr->key);
		yaml_node_t *v = yaml_document_get_node(&d, pr->value);
		const char *key = k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value
								   : "";
		if (strcmp(key, "added") == 0)
			rc = load_list(&d, v, &st->added, &st->n_added, path, key, err);
		else if (strcmp(key, "removed") == 0)
			rc = load_list(&d, v, &st->removed, &st->n_removed, path, key, err);
		else
			rc = dl_errf(err, DL_ECONFIG, "%s:%zu: unknown key '%.60s'", path,
				     k ? k->start_mark.line + 1 : 0, key);
	}
	yaml_document_delete(&d);
out_parser:
	yaml_parser_delete(&p);
	fclose(f);
	if (rc != DL_OK)
		ctl_state_free(st);
	return rc;
}

/* ---- writing ---------------------------------------------------------------- */

size_t ctl_utf8_next(const char *s, size_t n, uint32_t *cp)
{
	DL_ASSERT(n > 0);
	const unsigned char *p = (const unsigned char *)s;
	size_t len;
	uint32_t c, min;
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1fu, min = 0x80;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0fu, min = 0x800;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07u, min = 0x10000;
	else
		return 0; /* a continuation byte, or 0xc0, 0xc1, 0xf5..0xff */
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0u) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3fu);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

bool ctl_utf8_valid(const char *s, size_t n)
{
	uint32_t c;
	for (size_t k; n > 0; s += k, n -= k)
		if ((k = ctl_utf8_next(s, n, &c)) == 0)
			return false;
	return true;
}

/* Whether a double-quoted YAML scalar cannot hold code point c as is: its
 * reader refuses it (C0 and C1 controls, U+FFFE, U+FFFF), or reads it as
 * something else (the line breaks NEL, LS and PS are folded; a BOM). */
static bool yaml_must_escape(uint32_t c)
{
	return c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 || c == 0x2029 ||
	       c == 0xfeff || c == 0xfffe || c == 0xffff;
}

/* `s` as a double-quoted scalar that reads back as the same bytes. */
static void put_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (size_t n = strlen(s), k; n > 0; s += k, n -= k) {
		uint32_t c;
		k = ctl_utf8_next(s, n, &c);
		DL_ASSERT(k > 0); /* decoded requests and libyaml's strings are UTF-8 */
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", (int)c);
		else if (yaml_must_escape(c))
			fprintf(f, "\\u%04x", (unsigned)c);
		else
			fwrite(s, 1, k, f);
	}
	fputc('"', f);
}

static void put_list(FILE *f, const char *name, const struct ctl_rec *v, size_t n)
{
	fprintf(f, "%s:%s\n", name, n == 0 ? " []" : "");
	for (size_t i = 0; i < n; i++)
		for (uint32_t k = 0; k < v[i].n_kv; k++) {
			fprintf(f, "  %s ", k == 0 ? "-" : " ");
			put_quoted(f, v[i].key[k]);
			fputs(": ", f);
			put_quoted(f, v[i].val[k]);
			fputc('\n', f);
		}
}

static int fsync_dir(const char *path)
{
	char dir[CFG_PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

int ctl_state_save(const char *path, const struct ctl_state *st, struct dl_errctx *err)
{
	char tmp[CFG_PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		return dl_errf(err, DL_EIO, "%s: %s", tmp, strerror(errno));
	fputs("# dledger-actors: groups added and removed at run time (control socket),\n"
	      "# relative to the config file: 'removed' is applied first, then 'added'.\n"
	      "# Rewritten by the node on every change; do not edit while it runs.\n",
	      f);
	put_list(f, "removed", st->removed, st->n_removed);
	put_list(f, "added", st->added, st->n_added);
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) != 0 || fsync_dir(path) != 0) {
		int e = errno;
		unlink(tmp);
		return dl_errf(err, DL_EIO, "%s: %s", path, strerror(e));
	}
	return DL_OK;
}
