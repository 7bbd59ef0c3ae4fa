#include "gen/random.h"

#include <cmath>

namespace mh::gen {

double inverse_normal_cdf(double p) {
    // P. J. Acklam, "An algorithm for computing the inverse normal cumulative
    // distribution function" (2003): a central and a tail rational approximation.
    static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                   1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                   6.680131188771972e+01,  -1.328068155288572e+01};
    static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                   -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                   3.754408661907416e+00};
    constexpr double k_low = 0.02425;
    if (p < k_low) {
        double q = std::sqrt(-2 * std::log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - k_low) return -inverse_normal_cdf(1 - p);
    double q = p - 0.5;
    double r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

namespace {

constexpr int k_cell_bits = 12;
constexpr int k_cells = 1 << k_cell_bits;
constexpr int k_fraction_bits = 52 - k_cell_bits;  // what is left of a double's mantissa

struct NormalTable {
    // quantile[i] = inverse CDF at i / k_cells; [0] and [k_cells] are never read.
    double quantile[k_cells + 1];
    NormalTable() {
        quantile[0] = quantile[k_cells] = 0;
        for (int i = 1; i < k_cells; ++i) quantile[i] = inverse_normal_cdf(static_cast<double>(i) / k_cells);
    }
};

// A constant lookup table, built once on first use (thread-safe static initialization).
const NormalTable& normal_table() {
    static const NormalTable table;
    return table;
}

}  // namespace

double normal_from_bits(uint64_t bits) {
    static const NormalTable& table = normal_table();
    const uint64_t cell = bits >> (64 - k_cell_bits);
    // Never exactly 0, so the lower tail cell never asks for the quantile of 0.
    const double fraction =
        (static_cast<double>(bits & ((uint64_t{1} << k_fraction_bits) - 1)) + 0.5) * (1.0 / (uint64_t{1} << k_fraction_bits));
    if (cell == 0) [[unlikely]]
        return inverse_normal_cdf(fraction / k_cells);
    if (cell == k_cells - 1) [[unlikely]]
        return -inverse_normal_cdf((1 - fraction) / k_cells);
    const double lo = table.quantile[cell];
    return lo + fraction * (table.quantile[cell + 1] - lo);
}

}  // namespace mh::gen
