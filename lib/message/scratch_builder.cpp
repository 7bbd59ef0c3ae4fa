#include "message/scratch_builder.h"

namespace mh {

ScratchBuilder::ScratchBuilder() : m_scratch(new capnp::word[k_scratch_words]()) {}

schema::Message::Builder ScratchBuilder::start() {
    // MallocMessageBuilder zeroes the used part of a caller's first segment when it is
    // destroyed, which is what the next builder on the same buffer requires.
    m_builder.reset();
    m_builder.emplace(kj::arrayPtr(m_scratch.get(), k_scratch_words),
                      capnp::AllocationStrategy::GROW_HEURISTICALLY);
    return m_builder->initRoot<schema::Message>();
}

}  // namespace mh
