// A reusable Cap'n Proto builder for one message at a time: the first segment is
// a buffer kept across messages, so building a typical message allocates nothing.
#pragma once

#include "schema/message.capnp.h"

#include <capnp/message.h>

#include <memory>
#include <optional>

namespace mh {

constexpr size_t k_scratch_words = 8192;  // 64 KiB: room for any ordinary message

class ScratchBuilder {
public:
    ScratchBuilder();

    // Drops the previous message (zeroing what it used) and starts an empty one.
    schema::Message::Builder start();

    capnp::MessageBuilder& builder() { return *m_builder; }

private:
    std::unique_ptr<capnp::word[]> m_scratch;
    std::optional<capnp::MallocMessageBuilder> m_builder;
};

}  // namespace mh
