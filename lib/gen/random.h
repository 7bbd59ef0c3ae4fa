// Random numbers for the simulator: cheap enough to draw several per message at
// millions of messages per second, and fully determined by a 64-bit seed.
#pragma once

#include <array>
#include <cstdint>

namespace mh::gen {

// splitmix64: turns one seed into a stream of well-mixed words (seeds other generators).
class SplitMix64 {
public:
    explicit SplitMix64(uint64_t seed) : m_state(seed) {}
    uint64_t next() {
        uint64_t z = (m_state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

private:
    uint64_t m_state;
};

// xoshiro256** (Blackman and Vigna): a few cycles per word, 256 bits of state.
class Rng {
public:
    explicit Rng(uint64_t seed) {
        SplitMix64 mix(seed);
        for (auto& word : m_state) word = mix.next();
    }

    uint64_t next() {
        const uint64_t result = rotl(m_state[1] * 5, 7) * 9;
        const uint64_t t = m_state[1] << 17;
        m_state[2] ^= m_state[0];
        m_state[3] ^= m_state[1];
        m_state[1] ^= m_state[2];
        m_state[0] ^= m_state[3];
        m_state[2] ^= t;
        m_state[3] = rotl(m_state[3], 45);
        return result;
    }

    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; the bias is below 2^-32
    // for any n a command line can ask for).
    uint64_t below(uint64_t n) {
        return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
    }
    // Standard normal variate, see normal_from_bits().
    double normal();

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::array<uint64_t, 4> m_state;
};

// Inverse of the standard normal CDF (Acklam's rational approximation, relative error
// below 1.2e-9), for p in (0, 1).
double inverse_normal_cdf(double p);

// A standard normal variate from 64 random bits: the inverse CDF is tabulated at 4096
// equally likely cells and interpolated linearly inside each, which costs a table load
// and a multiply-add; the two tail cells (1 draw in 2048) use the exact inverse, so
// the tails reach about 8 standard deviations as they should.
double normal_from_bits(uint64_t bits);

inline double Rng::normal() { return normal_from_bits(next()); }

}  // namespace mh::gen
