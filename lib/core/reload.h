// A reload request (SIGHUP) for tools with configuration: main() owns the flag and
// installs the handler; the component looks at the flag between rounds of work.
#pragma once

#include <atomic>

namespace mh {

using ReloadFlag = std::atomic<bool>;

// SIGHUP sets `flag` (with SA_RESTART: a reload interrupts nothing).
void install_reload_signal(ReloadFlag& flag);

}  // namespace mh
