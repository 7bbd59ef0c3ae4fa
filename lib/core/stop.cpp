#include "core/stop.h"

#include <csignal>

namespace mh {
namespace {
StopFlag* g_stop_flag = nullptr;  // the only global: a signal handler can reach nothing else

extern "C" void on_stop_signal(int) {
    if (g_stop_flag) g_stop_flag->store(true, std::memory_order_relaxed);
}
}  // namespace

void install_stop_signals(StopFlag& flag) {
    g_stop_flag = &flag;
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: blocking reads must wake up
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGINT, &action, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace mh
