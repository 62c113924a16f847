/* Types of stats shared with the modules that report to it. */
#ifndef MIFFY_STATS_T_H
#define MIFFY_STATS_T_H

/* What comparing and decoding one exchange ran into, as its conclusion
 * reads it from the flags of its diff lists and decoded bodies (compare and
 * body count nothing themselves). */
struct stats_compare {
	unsigned order_unchecked;       /* comparisons whose pairing budget ran out */
	unsigned decode_failed;         /* bodies whose content-encoding failed */
	unsigned depth_exceeded;        /* JSON bodies deeper than max_depth */
	unsigned key_fallback;          /* comparisons where a keyed array fell back to index */
};

#endif
