/* timefmt.h - UTC timestamps as the service writes and reads them (ISO 8601). */
#ifndef RESIZER_TIMEFMT_H
#define RESIZER_TIMEFMT_H

#include <stdint.h>
#include <time.h>

#include "err.h"

#define TIMEFMT_MAX 32 /* room for either form, with the NUL */

/* "2026-11-26T15:44:36Z" for secs (S3 policies, API expiry times). */
void timefmt_iso(time_t secs, char out[TIMEFMT_MAX]);

/* "2026-11-26T15:44:36.123Z" for a Unix time in milliseconds (logs,
 * status records). */
void timefmt_iso_ms(int64_t ms, char out[TIMEFMT_MAX]);

/* Reads "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)", the form of both
 * writers above, S3 listings and STS/IMDS expiry times, into *ms_out
 * (milliseconds since the epoch; a fraction of 1 to 9 digits counts to the
 * millisecond). RZ_EINVAL, *ms_out 0, for anything else: another offset,
 * a day that is not in its month (Feb 30), a time before 1970-01-01T00:00:01. */
enum rz_err timefmt_parse_iso_ms(const char *s, int64_t *ms_out);

#endif
