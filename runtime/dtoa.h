/* dtoa.h - shortest round-trip formatting of doubles.
 *
 * Owns ls_dtoa(), which the JSON encoder (json.c) and anything else that prints
 * a double use, so every number luastream writes reads back (strtod) to exactly
 * the same double. Self-contained: no locale, no allocation, no Lua. */
#ifndef LS_DTOA_H
#define LS_DTOA_H

/* Bytes ls_dtoa() may write, including the terminating NUL. */
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

#endif
