// SPDX-License-Identifier: MIT
/*
 * JSON-lines reporting: one object per line on stdout, diagnostics on
 * stderr. Every line has a "kind"; an error ends the program with a
 * "vmm-error" line. Nothing here touches KVM (what a VM reports of itself
 * is in vm.c), so a plain Linux program links this file alone.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rig_host.h"

static void put_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* Separator and key of the next member of the innermost object or array. */
static void member(struct rig_json *j, const char *key)
{
	if (j->more[j->depth])
		putchar(',');
	j->more[j->depth] = true;
	if (key) {
		put_string(key);
		putchar(':');
	}
}

static void open_nested(struct rig_json *j, const char *key, char open,
			char close)
{
	member(j, key);
	putchar(open);
	if (++j->depth == RIG_JSON_MAX_DEPTH)
		rig_die(0, "JSON nested too deeply");
	j->more[j->depth] = false;
	j->close[j->depth] = close;
}

void json_begin(struct rig_json *j, const char *kind)
{
	j->depth = 0;
	j->more[0] = false;
	j->close[0] = '}';
	putchar('{');
	json_str(j, "kind", kind);
}

void json_end(struct rig_json *j)
{
	while (j->depth)
		json_close(j);
	printf("}\n");
	fflush(stdout);
}

void json_str(struct rig_json *j, const char *key, const char *s)
{
	member(j, key);
	put_string(s);
}

void json_u64(struct rig_json *j, const char *key, uint64_t v)
{
	member(j, key);
	printf("%" PRIu64, v);
}

void json_i64(struct rig_json *j, const char *key, int64_t v)
{
	member(j, key);
	printf("%" PRId64, v);
}

void json_hex(struct rig_json *j, const char *key, uint64_t v)
{
	member(j, key);
	printf("\"0x%" PRIx64 "\"", v);
}

void json_bool(struct rig_json *j, const char *key, bool v)
{
	member(j, key);
	fputs(v ? "true" : "false", stdout);
}

void json_null(struct rig_json *j, const char *key)
{
	member(j, key);
	fputs("null", stdout);
}

void json_object(struct rig_json *j, const char *key)
{
	open_nested(j, key, '{', '}');
}

void json_array(struct rig_json *j, const char *key)
{
	open_nested(j, key, '[', ']');
}

void json_close(struct rig_json *j)
{
	if (!j->depth)
		rig_die(0, "JSON close without open");
	putchar(j->close[j->depth--]);
}

void rig_die(int err, const char *fmt, ...)
{
	struct rig_json j;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_begin(&j, "vmm-error");
	json_str(&j, "error", msg);
	if (err) {
		json_i64(&j, "errno", err);
		json_str(&j, "strerror", strerror(err));
	}
	json_end(&j);
	exit(RIG_EXIT_ERROR);
}

uint64_t rig_parse_u64(const char *s, const char *what)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		rig_die(0, "bad %s: %s", what, s);
	return (uint64_t)v;
}

/* Splits a comma-separated option value into at most max tokens. */
unsigned int rig_split_list(const char *arg, const char *what, char *buf,
			    size_t size, char **tok, unsigned int max)
{
	char *t, *save = NULL;
	unsigned int n = 0;

	if (strlen(arg) >= size)
		rig_die(0, "%s list too long", what);
	strcpy(buf, arg);
	for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == max)
			rig_die(0, "at most %u %s values", max, what);
		tok[n++] = t;
	}
	if (!n)
		rig_die(0, "empty %s list", what);
	return n;
}
