/* clock.h - the service's two clocks, in milliseconds.
 *
 * Wall time is what records, logs and expiry times carry (it can jump when
 * the host's clock is set); monotonic time is what timeouts and rate limits
 * measure (it never goes back). Each caller picks the one its rule needs. */
#ifndef RESIZER_CLOCK_H
#define RESIZER_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_wall_ms(void);

/* Milliseconds since an arbitrary fixed point (CLOCK_MONOTONIC): only
 * differences between two calls mean anything. */
int64_t clock_mono_ms(void);

#endif
