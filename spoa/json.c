#include "json.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* ---- scanners ------------------------------------------------------------ */

static bool is_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

const uint8_t *json_scan_string(const uint8_t *p, const uint8_t *end)
{
	p++;
	while (p < end) {
		uint8_t c = *p;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			p = json_plain_run(p, end);
			continue;
		}
		if (c == '"')
			return p + 1;
		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			if (end - p < 2)
				return NULL;
			c = p[1];
			if (c == 'u') {
				if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5]))
					return NULL;
				p += 6;
			} else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
				   c == 'r' || c == 't') {
				p += 2;
			} else {
				return NULL;
			}
		} else if (c < 0x80) {
			p++;
		} else {
			int n = utf8_char(p, (size_t)(end - p));

			if (n < 0)
				return NULL;
			p += n;
		}
	}
	return NULL;
}

static const uint8_t *scan_digits(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *start = p;

	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p == start ? NULL : p;
}

/* RFC 8259 section 6. */
const uint8_t *json_scan_number(const uint8_t *p, const uint8_t *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (!(p = scan_digits(p, end)))
		return NULL;
	if (p < end && *p == '.' && !(p = scan_digits(p + 1, end)))
		return NULL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!(p = scan_digits(p, end)))
			return NULL;
	}
	return p;
}

/* ---- arena --------------------------------------------------------------- */

/* The largest first chunk of an arena. */
#define JSON_FIRST_CHUNK (256u << 10)

struct chunk {
	struct chunk *next;
	size_t used, cap;
	max_align_t data[];
};

struct json_arena {
	struct chunk *head;
	bool spaced;                 /* the text had whitespace between tokens */
};

static void *arena_alloc(struct json_arena *a, size_t n, size_t hint)
{
	struct chunk *c = a->head;

	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!c || c->cap - c->used < n) {
		size_t cap = c ? c->cap * 2 : hint;

		if (cap < n)
			cap = n;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->cap = cap;
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	c->used += n;
	return (char *)c->data + c->used - n;
}

bool json_parsed_compact(const struct json_arena *a)
{
	return !a->spaced;
}

void json_arena_free(struct json_arena *a)
{
	struct chunk *c, *next;

	if (!a)
		return;
	for (c = a->head; c; c = next) {
		next = c->next;
		free(c);
	}
	free(a);
}

/* ---- parser -------------------------------------------------------------- */

struct parser {
	const uint8_t *p, *end;
	struct json_arena *arena;
	size_t hint;
	unsigned depth, max_depth;
};

static const double pow10_exact[] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static void skip_ws(struct parser *ps)
{
	const uint8_t *p = ps->p;

	while (p < ps->end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	if (p != ps->p) {
		ps->arena->spaced = true;
		ps->p = p;
	}
}

static unsigned hex4(const uint8_t *p)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		uint8_t c = p[i];

		v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

static size_t put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The string token at ps->p, unescaped into the arena (NUL-terminated). An
 * escape that is not a whole UTF-16 character (a lone surrogate) fails, as
 * it does in cJSON. */
static char *parse_string(struct parser *ps)
{
	const uint8_t *s = ps->p + 1, *e = json_scan_string(ps->p, ps->end);
	char *out, *o;

	if (!e)
		return NULL;
	/* Unescaped text is never longer than its escaped form. */
	out = o = arena_alloc(ps->arena, (size_t)(e - s), ps->hint);
	if (!out)
		return NULL;
	while (s < e - 1) {
		const uint8_t *run = memchr(s, '\\', (size_t)(e - 1 - s));
		size_t n = run ? (size_t)(run - s) : (size_t)(e - 1 - s);
		uint32_t cp;

		memcpy(o, s, n);
		o += n;
		s += n;
		if (!run)
			break;
		switch (s[1]) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			cp = hex4(s + 2);
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return NULL;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned lo;

				if (e - 1 - (s + 6) < 6 || s[6] != '\\' || s[7] != 'u')
					return NULL;
				lo = hex4(s + 8);
				if (lo < 0xdc00 || lo > 0xdfff)
					return NULL;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				s += 6;
			}
			o += put_utf8(o, cp);
			s += 6;
			continue;
		default:   /* " \ / */
			*o++ = (char)s[1];
			break;
		}
		s += 2;
	}
	*o = '\0';
	ps->p = e;
	return out;
}

/* The value of a number token: exact from its digits when the mantissa has
 * at most 15 digits and the power of ten at most 22 (one correctly rounded
 * operation), else strtod's. */
static bool parse_number(struct parser *ps, double *out)
{
	const uint8_t *s = ps->p, *e = json_scan_number(ps->p, ps->end), *q;
	uint64_t mant = 0;
	int digits = 0, exp10 = 0, eval = 0;
	bool neg = false, eneg = false, slow = false;
	char buf[64], *copy;

	if (!e)
		return false;
	ps->p = e;
	q = s;
	if (*q == '-')
		neg = true, q++;
	for (; q < e && *q >= '0' && *q <= '9'; q++) {
		if (digits || *q != '0')
			digits++;
		mant = mant * 10 + (uint64_t)(*q - '0');
		slow |= digits > 15;
	}
	if (q < e && *q == '.') {
		for (q++; q < e && *q >= '0' && *q <= '9'; q++) {
			if (digits || *q != '0')
				digits++;
			mant = mant * 10 + (uint64_t)(*q - '0');
			exp10--;
			slow |= digits > 15;
		}
	}
	if (q < e) {   /* e or E */
		q++;
		if (*q == '+' || *q == '-')
			eneg = *q++ == '-';
		for (; q < e; q++) {
			eval = eval * 10 + (*q - '0');
			if (eval > 1000) {
				slow = true;
				break;
			}
		}
		exp10 += eneg ? -eval : eval;
	}
	if (!slow && exp10 >= -22 && exp10 <= 22) {
		double v = (double)mant;

		v = exp10 < 0 ? v / pow10_exact[-exp10] : v * pow10_exact[exp10];
		*out = neg ? -v : v;
		return true;
	}
	/* strtod wants a NUL-terminated copy. */
	if ((size_t)(e - s) < sizeof(buf)) {
		memcpy(buf, s, (size_t)(e - s));
		buf[e - s] = '\0';
		*out = strtod(buf, NULL);
		return true;
	}
	copy = malloc((size_t)(e - s) + 1);
	if (!copy)
		return false;
	memcpy(copy, s, (size_t)(e - s));
	copy[e - s] = '\0';
	*out = strtod(copy, NULL);
	free(copy);
	return true;
}

static bool literal(struct parser *ps, const char *word, size_t n)
{
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return false;
	ps->p += n;
	return true;
}

static cJSON *parse_value(struct parser *ps);

/* Links item as the last child of parent (cJSON keeps the last child in
 * the first child's prev). */
static void append(cJSON *parent, cJSON *item)
{
	cJSON *first = parent->child;

	if (!first) {
		parent->child = item;
		item->prev = item;
		return;
	}
	first->prev->next = item;
	item->prev = first->prev;
	first->prev = item;
}

static cJSON *parse_container(struct parser *ps, cJSON *node)
{
	bool object = *ps->p == '{';
	char close = object ? '}' : ']';

	if (++ps->depth > ps->max_depth)
		return NULL;
	node->type = object ? cJSON_Object : cJSON_Array;
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		ps->depth--;
		return node;
	}
	for (;;) {
		char *key = NULL;
		cJSON *item;

		if (object) {
			if (ps->p == ps->end || *ps->p != '"' || !(key = parse_string(ps)))
				return NULL;
			skip_ws(ps);
			if (ps->p == ps->end || *ps->p != ':')
				return NULL;
			ps->p++;
		}
		item = parse_value(ps);
		if (!item)
			return NULL;
		item->string = key;
		append(node, item);
		skip_ws(ps);
		if (ps->p == ps->end)
			return NULL;
		if (*ps->p == close) {
			ps->p++;
			ps->depth--;
			return node;
		}
		if (*ps->p != ',')
			return NULL;
		ps->p++;
		skip_ws(ps);
	}
}

static cJSON *parse_value(struct parser *ps)
{
	cJSON *node;
	double v;

	skip_ws(ps);
	if (ps->p == ps->end)
		return NULL;
	node = arena_alloc(ps->arena, sizeof(*node), ps->hint);
	if (!node)
		return NULL;
	memset(node, 0, sizeof(*node));
	switch (*ps->p) {
	case '{':
	case '[':
		return parse_container(ps, node);
	case '"':
		node->type = cJSON_String;
		node->valuestring = parse_string(ps);
		return node->valuestring ? node : NULL;
	case 't':
		node->type = cJSON_True;
		return literal(ps, "true", 4) ? node : NULL;
	case 'f':
		node->type = cJSON_False;
		return literal(ps, "false", 5) ? node : NULL;
	case 'n':
		node->type = cJSON_NULL;
		return literal(ps, "null", 4) ? node : NULL;
	default:
		if (!parse_number(ps, &v))
			return NULL;
		node->type = cJSON_Number;
		node->valuedouble = v;
		/* As cJSON saturates it. */
		node->valueint = v >= INT_MAX ? INT_MAX : v <= (double)INT_MIN ? INT_MIN : (int)v;
		return node;
	}
}

cJSON *json_parse(const uint8_t *s, size_t len, unsigned max_depth, struct json_arena **arena)
{
	struct parser ps = { .p = s, .end = s + len, .max_depth = max_depth };
	cJSON *root;

	*arena = NULL;
	if (ps.max_depth > JSON_MAX_DEPTH)
		ps.max_depth = JSON_MAX_DEPTH;
	ps.arena = calloc(1, sizeof(*ps.arena));
	if (!ps.arena)
		return NULL;
	/* Room for a typical document in one chunk (a node per few bytes);
	 * a large one grows by doubling chunks rather than one huge guess. */
	ps.hint = len < (JSON_FIRST_CHUNK - 512) / 4 ? len * 4 + 512 : JSON_FIRST_CHUNK;
	root = parse_value(&ps);
	if (root) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			root = NULL;
	}
	if (!root) {
		json_arena_free(ps.arena);
		return NULL;
	}
	*arena = ps.arena;
	return root;
}
