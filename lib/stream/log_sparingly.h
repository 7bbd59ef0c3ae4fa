// A flood of bad records or failed connects must not become a flood of log lines: the
// first ten are logged, then the 100th, 1000th, ... (with the count, by the caller).
#pragma once

#include <cstdint>

namespace mh::stream {

inline bool log_sparingly(uint64_t count) {
    if (count <= 10) return true;
    while (count % 10 == 0) count /= 10;
    return count == 1;
}

}  // namespace mh::stream
