/* numfmt.c - shortest round-trip text of a double. */
#include "numfmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int numfmt_double(double v, char out[NUMFMT_MAX])
{
    int n = 0;

    if (isnan(v))
        n = snprintf(out, NUMFMT_MAX, "NaN");
    else if (isinf(v))
        n = snprintf(out, NUMFMT_MAX, "%s", v > 0 ? "+Inf" : "-Inf");
    else {
        /* 15 digits always read back as the same decimal; 17 always give
         * the same double. The first that round-trips is the shortest:
         * %g drops trailing zeros, so a value that needs fewer than 15
         * digits prints with fewer. */
        for (int prec = 15; prec <= 17; prec++) {
            n = snprintf(out, NUMFMT_MAX, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
    return n;
}
