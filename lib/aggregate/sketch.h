// The two summaries mh-aggregate keeps where exact answers would need every value:
// DDSketch for quantiles (relative error bounded by construction) and HyperLogLog for
// distinct counts (exact while small, then 2^14 registers: about 0.8 % standard error).
// Both reuse their storage when reset, so a recycled window allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace mh::aggregate {

// DDSketch (Masson, Rim, Lee, VLDB 2019): value x > 0 goes to bucket ceil(log_gamma(x)),
// gamma = (1 + a) / (1 - a); every value in a bucket is within a relative `a` of the
// bucket's representative, so the quantile returned is within a relative `a` of the exact
// one at rank floor(q * (n - 1)). Negative values have their own buckets, zero a counter.
class DDSketch {
  public:
    static constexpr double k_default_accuracy = 0.01;
    // Buckets per sign before the lowest ones are merged (only reached for values that
    // span more than ~e^(2 * 0.01 * 4096), i.e. never for one physical quantity).
    static constexpr size_t k_max_buckets = 4096;

    explicit DDSketch(double relative_accuracy = k_default_accuracy);

    void add(double value);
    void merge(const DDSketch& other);  // other must have the same accuracy
    void reset();  // keeps the buckets' storage
    uint64_t count() const { return m_count; }
    // The q-quantile (0 <= q <= 1), clamped to the exact min and max. count() must be > 0.
    double quantile(double q) const;
    double relative_accuracy() const { return m_accuracy; }

    // Binary form for --state: appended to `out`; read() returns false on bad input.
    void write(std::string& out) const;
    bool read(std::span<const std::byte>& in);

  private:
    // Bucket counts with room for a few buckets inline: the values of one group in one
    // window usually fall in a handful of buckets, and inline they cost no cache miss.
    class Counts {
      public:
        static constexpr size_t k_inline = 16;
        Counts() = default;
        Counts(const Counts& other) { *this = other; }
        Counts& operator=(const Counts& other);
        Counts(Counts&& other) noexcept { *this = other; }
        Counts& operator=(Counts&& other) noexcept { return *this = other; }

        size_t size() const { return m_size; }
        bool empty() const { return m_size == 0; }
        uint64_t& operator[](size_t i) { return data()[i]; }
        uint64_t operator[](size_t i) const { return data()[i]; }
        const uint64_t* begin() const { return data(); }
        const uint64_t* end() const { return data() + m_size; }
        uint64_t* begin() { return data(); }
        uint64_t* end() { return data() + m_size; }
        void clear() { m_size = 0; }
        void resize(size_t n);                      // new buckets are zero
        void insert_front(size_t n);                // n zero buckets before the first
        void erase_front(size_t n);
        void assign(size_t n, uint64_t value);

      private:
        uint64_t* data() { return m_heap.empty() ? m_inline : m_heap.data(); }
        const uint64_t* data() const { return m_heap.empty() ? m_inline : m_heap.data(); }
        void reserve(size_t n);
        size_t m_size = 0;
        uint64_t m_inline[k_inline] = {};
        std::vector<uint64_t> m_heap;  // used once more than k_inline are needed
    };
    struct Store {
        Counts counts;  // counts[i] is bucket offset + i
        int32_t offset = 0;
        uint64_t total = 0;
        void add(int32_t index, uint64_t count = 1);
        void clear();
    };
    int32_t index_of(double magnitude) const;
    double value_of(int32_t index) const;

    double m_accuracy;
    double m_gamma;
    double m_log_gamma;
    Store m_positive;
    Store m_negative;  // by magnitude
    uint64_t m_zero = 0;
    uint64_t m_count = 0;
    double m_min = 0;
    double m_max = 0;
};

// HyperLogLog with an exact phase: up to k_exact_max distinct 64-bit hashes are kept in a
// small open-addressing set (exact counts for small groups), then 2^14 six-bit registers
// with the bias-corrected estimate and linear counting for the low range.
class HyperLogLog {
  public:
    static constexpr unsigned k_precision = 14;
    static constexpr size_t k_registers = size_t{1} << k_precision;
    static constexpr size_t k_exact_max = 1024;

    void add_hash(uint64_t hash);
    void merge(const HyperLogLog& other);
    void reset();  // keeps the storage
    uint64_t estimate() const;

    void write(std::string& out) const;
    bool read(std::span<const std::byte>& in);

  private:
    void to_registers();
    void add_register(uint64_t hash);

    std::vector<uint64_t> m_exact;      // open addressing, 0 = empty (hash 0 is stored as 1)
    size_t m_exact_count = 0;
    std::vector<uint8_t> m_registers;   // empty while exact
    bool m_dense = false;
};

// A seedless 64-bit hash of bytes (the same on every machine: --state must restore it).
uint64_t hash_bytes(std::span<const std::byte> bytes);

// Little-endian helpers for the binary state form.
void put_u64(std::string& out, uint64_t value);
void put_f64(std::string& out, double value);
void put_bytes(std::string& out, std::string_view bytes);
bool get_u64(std::span<const std::byte>& in, uint64_t& value);
bool get_f64(std::span<const std::byte>& in, double& value);
bool get_bytes(std::span<const std::byte>& in, std::string& bytes, size_t max_bytes);

}  // namespace mh::aggregate
