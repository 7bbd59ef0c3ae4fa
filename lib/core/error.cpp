#include "core/error.h"

#include <cstring>
#include <fmt/format.h>

namespace mh {

std::string errno_text(const char* call, int err) {
    return fmt::format("{} failed: {}", call, std::strerror(err));
}

}  // namespace mh
