// Exit codes (sysexits.h) and the one error type that ends a tool.
// Per-message problems are never thrown: they are counted rejections.
#pragma once

#include <stdexcept>
#include <string>

namespace mh {

enum class ExitCode : int {
    ok = 0,
    usage = 64,        // EX_USAGE: bad options or expression
    data = 65,         // EX_DATAERR: the input stream itself is broken
    unavailable = 69,  // EX_UNAVAILABLE: a peer or service is not there
    software = 70,     // EX_SOFTWARE: our own bug
    io = 74,           // EX_IOERR: reading or writing failed
    temp_fail = 75,    // EX_TEMPFAIL: try again later
    config = 78,       // EX_CONFIG: bad configuration
};

// Thrown to end the tool with a diagnostic and an exit code; caught only by run_main().
class Error : public std::runtime_error {
public:
    Error(ExitCode code, const std::string& what) : std::runtime_error(what), m_code(code) {}
    ExitCode code() const { return m_code; }

private:
    ExitCode m_code;
};

// The reader of our output went away (EPIPE): the tool exits quietly with status 0,
// as Unix filters do when `head` has seen enough.
class OutputClosed : public std::exception {
public:
    const char* what() const noexcept override { return "output closed"; }
};

// "CALL failed: strerror(errno)" with the call's name, for converting C errors in one place.
std::string errno_text(const char* call, int err);

}  // namespace mh
