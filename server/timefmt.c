/* timefmt.c - ISO 8601 UTC timestamps. */
#include "timefmt.h"

#include <stdio.h>
#include <string.h>

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

/* n decimal digits at s into *out; 0 if any is not a digit. */
static int timefmt_digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* After the seconds: an optional fraction, then "Z" or "+00:00". */
static int timefmt_suffix(const char *p, int *ms_out)
{
    int ndig = 0;

    *ms_out = 0;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (ndig < 3)
                *ms_out = *ms_out * 10 + (*p - '0');
            ndig++;
        }
        if (ndig < 1 || ndig > 9)
            return 0;
        for (int k = ndig; k < 3; k++)
            *ms_out *= 10;
    }
    return strcmp(p, "Z") == 0 || strcmp(p, "+00:00") == 0;
}

enum rz_err timefmt_parse_iso_ms(const char *s, int64_t *ms_out)
{
    struct tm tm;
    struct tm back;
    int y, mo, d, h, mi, sec, ms;
    time_t t;

    *ms_out = 0;
    if (!s || strlen(s) < 20 || strlen(s) > 40)
        return RZ_EINVAL;
    if (!timefmt_digits(s, 4, &y) || s[4] != '-' || !timefmt_digits(s + 5, 2, &mo) ||
        s[7] != '-' || !timefmt_digits(s + 8, 2, &d) || s[10] != 'T' ||
        !timefmt_digits(s + 11, 2, &h) || s[13] != ':' || !timefmt_digits(s + 14, 2, &mi) ||
        s[16] != ':' || !timefmt_digits(s + 17, 2, &sec) || !timefmt_suffix(s + 19, &ms))
        return RZ_EINVAL;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
        return RZ_EINVAL;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    /* timegm normalises Feb 30 into March: the round trip catches it. */
    if (t <= 0 || !gmtime_r(&t, &back) || back.tm_mday != d || back.tm_mon != mo - 1)
        return RZ_EINVAL;
    *ms_out = (int64_t)t * 1000 + ms;
    return RZ_OK;
}
