/* dtoa.h - shortest round-trip formatting of doubles, and the fast way back.
 *
 * Owns ls_dtoa(), which the JSON encoder (json.c) and anything else that prints
 * a double use, so every number luastream writes reads back (strtod) to exactly
 * the same double; and ls_decimal_to_double(), the JSON decoder's exact fast
 * path for reading numbers. Self-contained: no locale, no allocation, no Lua. */
#ifndef LS_DTOA_H
#define LS_DTOA_H

/* Bytes ls_dtoa() may write, including the terminating NUL. */
#include <stdint.h>

#define LS_DTOA_BUFSIZE 32

/* Writes the shortest decimal that reads back (strtod) to exactly v, followed by
 * a NUL, and returns its length (without the NUL). Among equally short decimals
 * the one closest to v is chosen. v must be finite. out must hold
 * LS_DTOA_BUFSIZE bytes.
 *
 * The layout follows JavaScript's Number.prototype.toString: an exponent only
 * when the decimal exponent is below -6 or at least 21, no ".0" on integers:
 *   0.1 -> "0.1", 100 -> "100", 1e21 -> "1e+21", 5e-7 -> "5e-7",
 *   1.5e300 -> "1.5e+300", -0.0 -> "-0". */
int ls_dtoa(double v, char *out);

/* Writes the decimal digits of v to out (at least 20 bytes, no NUL) and
 * returns how many. */
int ls_u64toa(uint64_t v, char *out);

/* Stores in *out the double nearest to digits * 10^exp10 (ties to even), as
 * strtod would, and returns 0 -- when that can be done quickly and exactly
 * (almost always for digits < 10^19 and |exp10| < 290). Returns -1 when the
 * caller must use strtod: results that are subnormal or overflow, and the rare
 * inputs too close to halfway between two doubles to decide cheaply. */
int ls_decimal_to_double(uint64_t digits, int exp10, double *out);

#endif
