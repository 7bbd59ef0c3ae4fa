#include "core/reload.h"

#include <csignal>

namespace mh {
namespace {
ReloadFlag* g_reload_flag = nullptr;  // a signal handler can reach nothing else

extern "C" void on_reload_signal(int) {
    if (g_reload_flag) g_reload_flag->store(true, std::memory_order_relaxed);
}
}  // namespace

void install_reload_signal(ReloadFlag& flag) {
    g_reload_flag = &flag;
    struct sigaction action {};
    action.sa_handler = on_reload_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &action, nullptr);
}

}  // namespace mh
