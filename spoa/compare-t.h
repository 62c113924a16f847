/* Types of compare.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not compare.h. */
#ifndef MIFFY_COMPARE_T_H
#define MIFFY_COMPARE_T_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

enum diff_where { DIFF_STATUS = 0, DIFF_HEADER, DIFF_BODY, DIFF_WHERE_COUNT };
enum diff_kind { DIFF_VALUE = 0, DIFF_TYPE, DIFF_MISSING, DIFF_EXTRA, DIFF_ORDER, DIFF_KIND_COUNT };

struct difference {
	enum diff_where where;
	char *path;          /* JSON Pointer, lower-case header name, or "" */
	enum diff_kind kind;
	cJSON *reference;    /* owned; NULL when absent (extra) */
	cJSON *candidate;    /* owned; NULL when absent (missing) */
	cJSON *key;          /* owned; the key of the nearest enclosing keyed
			      * array's element (array_keys), or NULL */
	bool noise;
};

struct diff_list {
	struct difference *items;
	size_t count;
	size_t cap;
	bool reference_truncated;  /* compared on the reference's prefix */
	bool candidate_truncated;
	bool depth_exceeded;       /* a body nested deeper than max_depth */
	bool order_unchecked;      /* pairing budget spent: reported by index
				    * (miffy_compare_budget_exceeded_total) */
	bool key_fallback;         /* a keyed array (array_keys) had a duplicate
				    * or absent key: paired by index instead
				    * (miffy_compare_key_fallback_total) */
};

#endif
