/* timefmt.h - UTC timestamps as the service writes them (ISO 8601). */
#ifndef RESIZER_TIMEFMT_H
#define RESIZER_TIMEFMT_H

#include <stdint.h>
#include <time.h>

#define TIMEFMT_MAX 32 /* room for either form, with the NUL */

/* "2026-11-26T15:44:36Z" for secs (S3 policies, API expiry times). */
void timefmt_iso(time_t secs, char out[TIMEFMT_MAX]);

/* "2026-11-26T15:44:36.123Z" for a Unix time in milliseconds (logs,
 * status records). */
void timefmt_iso_ms(int64_t ms, char out[TIMEFMT_MAX]);

#endif
