// Endpoint strings in the czmq convention, parsed in one place:
//   "-"                         stdin / stdout
//   "@tcp://*:7001"             bind        ">tcp://host:7001"   connect
//   "pub@ipc:///run/mh/tap"     a pattern prefix where PUSH/PULL is not wanted
//   "@tcp://*:7001,>ipc://x"    a comma list: one socket, several attachments
// Without '@' or '>', a socket attaches the czmq way: pull and pub bind, push and sub connect.
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mh::zmq {

enum class Pattern { push, pull, pub, sub };
enum class Direction { in, out };

struct Attachment {
    bool bind;
    std::string address;  // "tcp://...", "ipc://...", "inproc://..."
};

struct Endpoint {
    Pattern pattern;
    std::vector<Attachment> attachments;
};

struct EndpointError {
    std::string message;
};

bool is_stdio(std::string_view spec);
std::variant<Endpoint, EndpointError> parse_endpoint(std::string_view spec, Direction direction);
std::string_view pattern_name(Pattern pattern);

}  // namespace mh::zmq
