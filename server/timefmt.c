/* timefmt.c - ISO 8601 UTC timestamps. */
#include "timefmt.h"

#include <stdio.h>

void timefmt_iso(time_t secs, char out[TIMEFMT_MAX])
{
    struct tm tm;

    gmtime_r(&secs, &tm);
    strftime(out, TIMEFMT_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void timefmt_iso_ms(int64_t ms, char out[TIMEFMT_MAX])
{
    char day[TIMEFMT_MAX];
    struct tm tm;
    time_t secs = (time_t)(ms / 1000);

    gmtime_r(&secs, &tm);
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, TIMEFMT_MAX, "%.20s.%03dZ", day, (int)(ms % 1000));
}
