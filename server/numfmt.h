/* numfmt.h - doubles as people read them.
 *
 * "%.17g" round-trips every double but prints 0.005 as
 * 0.0050000000000000001 and 0.61 as 0.60999999999999999. Here a value gets
 * the fewest significant digits (15, 16 or 17) that read back as the same
 * double: 0.005, 0.61, 0.1 + 0.2 as 0.30000000000000004. */
#ifndef RESIZER_NUMFMT_H
#define RESIZER_NUMFMT_H

#define NUMFMT_MAX 32 /* "-1.2345678901234567e-308" and the NUL, with room */

/* The shortest "%.Ng" text of v that strtod reads back as v, into out.
 * NaN gives "NaN", infinities "+Inf" and "-Inf" (Prometheus' spellings;
 * JSON has none, so JSON writers check isfinite first). Returns the
 * length. Like printf, it follows LC_NUMERIC, which the service leaves
 * at "C". */
int numfmt_double(double v, char out[NUMFMT_MAX]);

#endif
