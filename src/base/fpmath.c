/* The four libm functions shed calls (trunc, fmax, fmin, llround), so that
 * build/shed does not load libm: every process of it (worker, `shed run`,
 * each sandbox init) would otherwise map it and run its IFUNC resolvers,
 * ~0.3 MB of RSS for these four. The Makefile binds the standard names to
 * these with --defsym for build/shed only; unit tests keep libm. C99 Annex
 * F semantics (NaN, signed zero, halfway cases away from zero); must never
 * call into libm itself. */
#include <float.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

double shed_trunc(double x);
double shed_fmax(double a, double b);
double shed_fmin(double a, double b);
long long shed_llround(double x);

static int sign_bit(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof(u));
    return (int)(u >> 63);
}

double shed_trunc(double x)
{
    /* NaN, infinities and |x| >= 2^52 are integers already. */
    if (!(x > -4503599627370496.0 && x < 4503599627370496.0)) return x;
    double t = (double)(int64_t)x;
    return t == 0 && sign_bit(x) ? -0.0 : t;
}

double shed_fmax(double a, double b)
{
    if (a != a) return b;
    if (b != b) return a;
    if (a == b) return sign_bit(a) ? b : a; /* fmax(-0, +0) = +0 */
    return a > b ? a : b;
}

double shed_fmin(double a, double b)
{
    if (a != a) return b;
    if (b != b) return a;
    if (a == b) return sign_bit(a) ? a : b; /* fmin(-0, +0) = -0 */
    return a < b ? a : b;
}

long long shed_llround(double x)
{
    /* Out of range or NaN: what x86-64's libm returns (LLONG_MIN). */
    if (!(x > -9223372036854775808.0 && x < 9223372036854775808.0)) return LLONG_MIN;
    double t = shed_trunc(x);
    double d = x - t; /* exact */
    if (d >= 0.5)
        t += 1.0;
    else if (d <= -0.5)
        t -= 1.0;
    if (!(t > -9223372036854775808.0 && t < 9223372036854775808.0)) return LLONG_MIN;
    return (long long)t;
}
