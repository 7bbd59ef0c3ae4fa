// A stop request (SIGTERM/SIGINT) shared by main() and the components it runs.
// main() owns the flag and installs the handlers; the library only reads it.
#pragma once

#include <atomic>

namespace mh {

using StopFlag = std::atomic<bool>;

// Installs SIGTERM/SIGINT handlers that set `flag` (without SA_RESTART, so a blocked
// read returns EINTR and the reader sees the request) and ignores SIGPIPE, so that a
// closed output shows up as EPIPE and the tool can exit quietly.
void install_stop_signals(StopFlag& flag);

}  // namespace mh
