#include "aggregate/sketch.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace mh::aggregate {
namespace {

constexpr uint64_t mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Bigger than any sane sketch: guards --state reading against absurd lengths.
constexpr uint64_t k_max_state_buckets = 1 << 20;
constexpr int64_t k_max_state_offset = 1 << 20;

}  // namespace

void put_u64(std::string& out, uint64_t value) {
    char bytes[8];
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(value >> (8 * i));
    out.append(bytes, 8);
}

void put_f64(std::string& out, double value) { put_u64(out, std::bit_cast<uint64_t>(value)); }

void put_bytes(std::string& out, std::string_view bytes) {
    put_u64(out, bytes.size());
    out.append(bytes);
}

bool get_u64(std::span<const std::byte>& in, uint64_t& value) {
    if (in.size() < 8) return false;
    value = 0;
    for (int i = 0; i < 8; ++i) value |= static_cast<uint64_t>(in[static_cast<size_t>(i)]) << (8 * i);
    in = in.subspan(8);
    return true;
}

bool get_f64(std::span<const std::byte>& in, double& value) {
    uint64_t bits;
    if (!get_u64(in, bits)) return false;
    value = std::bit_cast<double>(bits);
    return true;
}

bool get_bytes(std::span<const std::byte>& in, std::string& bytes, size_t max_bytes) {
    uint64_t size;
    if (!get_u64(in, size) || size > max_bytes || size > in.size()) return false;
    bytes.assign(reinterpret_cast<const char*>(in.data()), size);
    in = in.subspan(size);
    return true;
}

uint64_t hash_bytes(std::span<const std::byte> bytes) {
    // Eight bytes at a time through the splitmix64 finalizer (a bijection), then once more:
    // fast on short keys, and well spread for HyperLogLog's registers.
    const size_t n = bytes.size();
    const std::byte* p = bytes.data();
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        std::memcpy(&word, p + i, 8);
        h = mix64(h ^ word) + 0x9e3779b97f4a7c15ULL;
    }
    uint64_t tail = 0;
    for (size_t k = 0; i + k < n; ++k) tail |= static_cast<uint64_t>(p[i + k]) << (8 * k);
    return mix64(h ^ tail ^ (uint64_t{0xa5} << 56));
}

// ---- DDSketch ----

DDSketch::Counts& DDSketch::Counts::operator=(const Counts& other) {
    if (this == &other) return *this;
    m_size = 0;
    reserve(other.m_size);
    std::copy(other.begin(), other.end(), data());
    m_size = other.m_size;
    return *this;
}

void DDSketch::Counts::reserve(size_t n) {
    if (n <= k_inline && m_heap.empty()) return;
    if (m_heap.empty()) {
        m_heap.resize(std::max(n, 2 * k_inline));
        std::copy(m_inline, m_inline + m_size, m_heap.data());
    } else if (n > m_heap.size()) {
        m_heap.resize(std::max(n, 2 * m_heap.size()));
    }
}

void DDSketch::Counts::resize(size_t n) {
    reserve(n);
    if (n > m_size) std::fill(data() + m_size, data() + n, 0);
    m_size = n;
}

void DDSketch::Counts::insert_front(size_t n) {
    reserve(m_size + n);
    uint64_t* d = data();
    std::memmove(d + n, d, m_size * sizeof(uint64_t));
    std::fill(d, d + n, 0);
    m_size += n;
}

void DDSketch::Counts::erase_front(size_t n) {
    uint64_t* d = data();
    std::memmove(d, d + n, (m_size - n) * sizeof(uint64_t));
    m_size -= n;
}

void DDSketch::Counts::assign(size_t n, uint64_t value) {
    reserve(n);
    std::fill(data(), data() + n, value);
    m_size = n;
}

DDSketch::DDSketch(double relative_accuracy)
    : m_accuracy(relative_accuracy),
      m_gamma((1 + relative_accuracy) / (1 - relative_accuracy)),
      m_log_gamma(std::log(m_gamma)) {}

int32_t DDSketch::index_of(double magnitude) const {
    return static_cast<int32_t>(std::ceil(std::log(magnitude) / m_log_gamma));
}

double DDSketch::value_of(int32_t index) const {
    // The middle of (gamma^(i-1), gamma^i] in relative terms: within `a` of both ends.
    return 2 * std::pow(m_gamma, index) / (m_gamma + 1);
}

void DDSketch::Store::add(int32_t index, uint64_t count) {
    total += count;
    if (counts.empty()) {
        offset = index;
        counts.resize(1);
        counts[0] = count;
        return;
    }
    if (index < offset) {
        auto grow = static_cast<size_t>(offset - index);
        if (counts.size() + grow > k_max_buckets) {
            // Full: the lowest buckets absorb what falls below them (a coarser low tail,
            // the high quantiles that matter keep their accuracy).
            grow = k_max_buckets - counts.size();
            if (grow == 0) {
                counts[0] += count;
                return;
            }
        }
        counts.insert_front(grow);
        offset -= static_cast<int32_t>(grow);
        counts[static_cast<size_t>(std::max(index - offset, 0))] += count;
        return;
    }
    auto at = static_cast<size_t>(index - offset);
    if (at >= counts.size()) {
        if (at + 1 > k_max_buckets) {
            // Slide the window up: merge the lowest buckets into the new lowest one.
            size_t shift = at + 1 - k_max_buckets;
            if (shift >= counts.size()) {
                uint64_t all = 0;
                for (uint64_t c : counts) all += c;
                counts.assign(k_max_buckets, 0);
                counts[0] = all;
                offset = index - static_cast<int32_t>(k_max_buckets) + 1;
            } else {
                uint64_t merged = 0;
                for (size_t i = 0; i <= shift; ++i) merged += counts[i];
                counts.erase_front(shift);
                counts[0] = merged;
                offset += static_cast<int32_t>(shift);
            }
            at = static_cast<size_t>(index - offset);
        }
        if (at >= counts.size()) counts.resize(at + 1);
    }
    counts[at] += count;
}

void DDSketch::Store::clear() {
    counts.clear();
    offset = 0;
    total = 0;
}

void DDSketch::add(double value) {
    if (!std::isfinite(value)) return;
    if (m_count == 0) {
        m_min = m_max = value;
    } else {
        m_min = std::min(m_min, value);
        m_max = std::max(m_max, value);
    }
    ++m_count;
    double magnitude = std::fabs(value);
    if (magnitude < std::numeric_limits<double>::min())
        ++m_zero;
    else if (value > 0)
        m_positive.add(index_of(magnitude));
    else
        m_negative.add(index_of(magnitude));
}

void DDSketch::merge(const DDSketch& other) {
    if (other.m_count == 0) return;
    if (m_count == 0) {
        m_min = other.m_min;
        m_max = other.m_max;
    } else {
        m_min = std::min(m_min, other.m_min);
        m_max = std::max(m_max, other.m_max);
    }
    m_count += other.m_count;
    m_zero += other.m_zero;
    for (size_t i = 0; i < other.m_positive.counts.size(); ++i)
        if (other.m_positive.counts[i])
            m_positive.add(other.m_positive.offset + static_cast<int32_t>(i), other.m_positive.counts[i]);
    for (size_t i = 0; i < other.m_negative.counts.size(); ++i)
        if (other.m_negative.counts[i])
            m_negative.add(other.m_negative.offset + static_cast<int32_t>(i), other.m_negative.counts[i]);
}

void DDSketch::reset() {
    m_positive.clear();
    m_negative.clear();
    m_zero = 0;
    m_count = 0;
    m_min = m_max = 0;
}

double DDSketch::quantile(double q) const {
    if (m_count == 0) return std::numeric_limits<double>::quiet_NaN();
    q = std::clamp(q, 0.0, 1.0);
    if (q == 0) return m_min;
    if (q == 1) return m_max;
    // The item at rank floor(q * (n - 1)), counting from 0: the first bucket whose
    // cumulative count passes the rank holds it.
    const double rank = std::floor(q * static_cast<double>(m_count - 1));
    double cumulative = 0;
    double result = m_max;
    bool found = false;
    for (size_t i = m_negative.counts.size(); i-- > 0 && !found;) {
        cumulative += static_cast<double>(m_negative.counts[i]);
        if (cumulative > rank) {
            result = -value_of(m_negative.offset + static_cast<int32_t>(i));
            found = true;
        }
    }
    if (!found) {
        cumulative += static_cast<double>(m_zero);
        if (cumulative > rank) {
            result = 0;
            found = true;
        }
    }
    for (size_t i = 0; i < m_positive.counts.size() && !found; ++i) {
        cumulative += static_cast<double>(m_positive.counts[i]);
        if (cumulative > rank) {
            result = value_of(m_positive.offset + static_cast<int32_t>(i));
            found = true;
        }
    }
    return std::clamp(result, m_min, m_max);
}

void DDSketch::write(std::string& out) const {
    put_u64(out, m_count);
    put_u64(out, m_zero);
    put_f64(out, m_min);
    put_f64(out, m_max);
    for (const Store* store : {&m_positive, &m_negative}) {
        put_u64(out, static_cast<uint64_t>(static_cast<int64_t>(store->offset)));
        put_u64(out, store->counts.size());
        for (uint64_t c : store->counts) put_u64(out, c);
    }
}

bool DDSketch::read(std::span<const std::byte>& in) {
    reset();
    if (!get_u64(in, m_count) || !get_u64(in, m_zero) || !get_f64(in, m_min) || !get_f64(in, m_max))
        return false;
    uint64_t total = m_zero;
    for (Store* store : {&m_positive, &m_negative}) {
        uint64_t offset, size;
        if (!get_u64(in, offset) || !get_u64(in, size) || size > k_max_state_buckets ||
            size > k_max_buckets || size * 8 > in.size())
            return false;
        // Real indexes lie within +-36,000 (doubles at 1 %); anything far beyond is damage.
        auto signed_offset = static_cast<int64_t>(offset);
        if (signed_offset < -k_max_state_offset || signed_offset > k_max_state_offset) return false;
        store->offset = static_cast<int32_t>(signed_offset);
        store->counts.resize(size);
        for (auto& c : store->counts) {
            get_u64(in, c);
            store->total += c;
        }
        total += store->total;
    }
    return total == m_count;
}

// ---- HyperLogLog ----

void HyperLogLog::add_register(uint64_t hash) {
    size_t index = hash >> (64 - k_precision);
    uint64_t rest = (hash << k_precision) | (uint64_t{1} << (k_precision - 1));
    auto rho = static_cast<uint8_t>(std::countl_zero(rest) + 1);
    if (rho > m_registers[index]) m_registers[index] = rho;
}

void HyperLogLog::to_registers() {
    m_registers.assign(k_registers, 0);
    for (uint64_t h : m_exact)
        if (h != 0) add_register(h);
    m_dense = true;
}

void HyperLogLog::add_hash(uint64_t hash) {
    if (m_dense) {
        add_register(hash);
        return;
    }
    if (hash == 0) hash = 1;  // 0 marks an empty slot
    if (m_exact.empty()) m_exact.assign(2 * k_exact_max, 0);
    size_t mask = m_exact.size() - 1;
    for (size_t i = mix64(hash) & mask;; i = (i + 1) & mask) {
        if (m_exact[i] == hash) return;
        if (m_exact[i] == 0) {
            m_exact[i] = hash;
            if (++m_exact_count > k_exact_max) to_registers();
            return;
        }
    }
}

void HyperLogLog::merge(const HyperLogLog& other) {
    if (!other.m_dense) {
        for (uint64_t h : other.m_exact)
            if (h != 0) add_hash(h);
        return;
    }
    if (!m_dense) to_registers();
    for (size_t i = 0; i < k_registers; ++i)
        m_registers[i] = std::max(m_registers[i], other.m_registers[i]);
}

void HyperLogLog::reset() {
    if (m_exact_count > 0) std::fill(m_exact.begin(), m_exact.end(), 0);
    m_exact_count = 0;
    m_dense = false;
}

// Ertl's improved estimator ("New cardinality estimation algorithms for HyperLogLog
// sketches", 2017): unbiased from the smallest to the largest counts, with no empirical
// bias tables and no switch between linear counting and the raw estimate.
namespace {
double ertl_sigma(double x) {
    if (x == 1) return std::numeric_limits<double>::infinity();
    double y = 1, z = x;
    for (;;) {
        x *= x;
        double previous = z;
        z += x * y;
        y += y;
        if (previous == z) return z;
    }
}
double ertl_tau(double x) {
    if (x == 0 || x == 1) return 0;
    double y = 1, z = 1 - x;
    for (;;) {
        x = std::sqrt(x);
        double previous = z;
        y *= 0.5;
        z -= (1 - x) * (1 - x) * y;
        if (previous == z) return z / 3;
    }
}
}  // namespace

uint64_t HyperLogLog::estimate() const {
    if (!m_dense) return m_exact_count;
    constexpr unsigned q = 64 - k_precision;
    std::array<uint32_t, q + 2> histogram{};
    for (uint8_t r : m_registers) ++histogram[std::min<size_t>(r, q + 1)];
    const double m = static_cast<double>(k_registers);
    double z = m * ertl_tau(1 - histogram[q + 1] / m);
    for (unsigned k = q; k >= 1; --k) z = 0.5 * (z + histogram[k]);
    z += m * ertl_sigma(histogram[0] / m);
    const double alpha_infinity = 1 / (2 * std::log(2.0));
    return static_cast<uint64_t>(std::llround(alpha_infinity * m * m / z));
}

void HyperLogLog::write(std::string& out) const {
    put_u64(out, m_dense ? 1 : 0);
    if (m_dense) {
        out.append(reinterpret_cast<const char*>(m_registers.data()), m_registers.size());
        return;
    }
    put_u64(out, m_exact_count);
    for (uint64_t h : m_exact)
        if (h != 0) put_u64(out, h);
}

bool HyperLogLog::read(std::span<const std::byte>& in) {
    reset();
    uint64_t dense;
    if (!get_u64(in, dense) || dense > 1) return false;
    if (dense) {
        if (in.size() < k_registers) return false;
        m_registers.resize(k_registers);
        std::memcpy(m_registers.data(), in.data(), k_registers);
        in = in.subspan(k_registers);
        m_dense = true;
        return std::all_of(m_registers.begin(), m_registers.end(),
                           [](uint8_t r) { return r <= 64 - k_precision + 1; });
    }
    uint64_t count;
    if (!get_u64(in, count) || count > k_exact_max) return false;
    for (uint64_t i = 0; i < count; ++i) {
        uint64_t h;
        if (!get_u64(in, h) || h == 0) return false;
        add_hash(h);
    }
    return m_exact_count == count;
}

}  // namespace mh::aggregate
