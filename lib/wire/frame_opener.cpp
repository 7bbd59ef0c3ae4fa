#include "wire/frame_opener.h"

#include "wire/message_view.h"

#include <kj/exception.h>

#include <cstdint>
#include <cstring>

namespace mh::wire {
namespace {

// The pointer encoding, from Cap'n Proto's encoding spec: the low two bits say the kind.
enum PointerKind : uint64_t { k_struct = 0, k_list = 1, k_far = 2, k_other = 3 };
enum ElementSize : uint64_t { k_void = 0, k_bit, k_byte, k_two_bytes, k_four_bytes, k_eight_bytes,
                              k_pointer, k_inline_composite };

class LayoutWalk {
  public:
    LayoutWalk(const uint64_t* begin, size_t words, uint64_t budget_words)
        : m_begin(begin), m_words(words), m_budget(budget_words) {}

    Layout root() { return pointer(0, 0); }
    const char* reason() const { return m_reason; }

  private:
    Layout garbled(const char* reason) {
        m_reason = reason;
        return Layout::garbled;
    }
    // Charges the traversal budget, as Cap'n Proto's read limiter does, so that pointers
    // aliasing one big target cannot make the walk (or a reader after it) loop for long.
    bool charge(uint64_t words) {
        if (words > m_budget) return false;
        m_budget -= words;
        return true;
    }

    // The pointer at word `at` of the segment, and everything it reaches.
    Layout pointer(size_t at, unsigned depth) {
        uint64_t word;
        std::memcpy(&word, m_begin + at, sizeof(word));
        if (word == 0) return Layout::sound;  // null
        if (depth >= k_max_nesting) return garbled("message is nested too deeply");
        uint64_t kind = word & 3;
        if (kind == k_far) return Layout::not_simple;
        if (kind == k_other) return garbled("message holds a capability pointer");
        int64_t offset = static_cast<int32_t>(static_cast<uint32_t>(word)) >> 2;
        int64_t target = static_cast<int64_t>(at) + 1 + offset;
        if (target < 0 || target > static_cast<int64_t>(m_words))
            return garbled("message contains an out-of-bounds pointer");
        size_t start = static_cast<size_t>(target);
        size_t room = m_words - start;

        if (kind == k_struct) {
            uint64_t data_words = (word >> 32) & 0xffff;
            uint64_t pointer_words = word >> 48;
            if (data_words + pointer_words > room) return garbled("message contains an out-of-bounds struct");
            if (!charge(data_words + pointer_words)) return garbled("message exceeds the traversal limit");
            return pointers(start + data_words, pointer_words, depth + 1);
        }

        uint64_t element_size = (word >> 32) & 7;
        uint64_t count = word >> 35;
        uint64_t words = 0;
        switch (element_size) {
            case k_void: words = 0; break;
            case k_bit: words = (count + 63) / 64; break;
            case k_byte: words = (count + 7) / 8; break;
            case k_two_bytes: words = (count * 2 + 7) / 8; break;
            case k_four_bytes: words = (count * 4 + 7) / 8; break;
            case k_eight_bytes:
            case k_pointer:
            case k_inline_composite: words = count; break;
        }
        if (element_size != k_inline_composite) {
            if (words > room) return garbled("message contains an out-of-bounds list");
            // Empty elements cost nothing to store but something to iterate: charge them too.
            if (!charge(element_size == k_void ? count : words))
                return garbled("message exceeds the traversal limit");
            return element_size == k_pointer ? pointers(start, count, depth + 1) : Layout::sound;
        }

        // An inline composite list: a tag word shaped like a struct pointer, then the elements.
        if (words + 1 > room) return garbled("message contains an out-of-bounds list");
        uint64_t tag;
        std::memcpy(&tag, m_begin + start, sizeof(tag));
        if ((tag & 3) != k_struct) return garbled("message contains a list whose tag is not a struct");
        uint64_t elements = (tag >> 2) & 0x3fffffff;
        uint64_t data_words = (tag >> 32) & 0xffff;
        uint64_t pointer_words = tag >> 48;
        uint64_t element_words = data_words + pointer_words;
        if (elements * element_words > words)
            return garbled("message contains a list whose elements overrun its word count");
        if (!charge(element_words == 0 ? elements : words)) return garbled("message exceeds the traversal limit");
        for (uint64_t i = 0; i < elements && pointer_words > 0; ++i) {
            Layout layout = pointers(start + 1 + i * element_words + data_words, pointer_words, depth + 1);
            if (layout != Layout::sound) return layout;
        }
        return Layout::sound;
    }

    Layout pointers(size_t first, uint64_t count, unsigned depth) {
        for (uint64_t i = 0; i < count; ++i) {
            Layout layout = pointer(first + i, depth);
            if (layout != Layout::sound) return layout;
        }
        return Layout::sound;
    }

    const uint64_t* m_begin;
    size_t m_words;
    uint64_t m_budget;
    const char* m_reason = nullptr;
};

}  // namespace

Layout check_layout(const Frame& frame, const capnp::ReaderOptions& options, const char** reason) {
    // One segment: a table word (count - 1 = 0, then the segment's size), then the segment.
    if (frame.word_count < 2) return Layout::not_simple;
    uint32_t table[2];
    std::memcpy(table, frame.words, sizeof(table));
    if (table[0] != 0 || table[1] != frame.word_count - 1) return Layout::not_simple;
    LayoutWalk walk(reinterpret_cast<const uint64_t*>(frame.words + 1), frame.word_count - 1,
                    options.traversalLimitInWords);
    Layout layout = walk.root();
    if (layout == Layout::garbled) *reason = walk.reason();
    return layout;
}

FrameOpener::FrameOpener(const FrameLimits& limits)
    : m_options(reader_options(limits)), m_max_frame_bytes(limits.max_frame_bytes) {}

std::optional<std::string> FrameOpener::open(const Frame& frame) { return open(frame, nullptr); }

std::optional<std::string> FrameOpener::open(const Frame& frame, MessageView& view) {
    return open(frame, &view);
}

std::optional<std::string> FrameOpener::open(const Frame& frame, MessageView* view) {
    m_checked.reset();
    m_own_layout = false;
    m_root = nullptr;
    m_message = {};
    const char* reason = nullptr;
    try {
        // mh's own layout is recognised by a cheaper pass than the general walk; within the
        // frame limit, so that the traversal limit could not have refused it either.
        m_own_layout = frame.byte_count() <= m_max_frame_bytes && read_message_view(frame, view);
        Layout layout = m_own_layout ? Layout::sound : check_layout(frame, m_options, &reason);
        switch (layout) {
            case Layout::sound:
                // Every pointer lands inside the segment: read without bounds checks. Wrong
                // kinds of pointers and unterminated text are still refused by Cap'n Proto,
                // with an exception, when they are read.
                // A frame in mh's own layout has a struct root of the schema's size: its
                // reader, made by message() when asked for, cannot throw. Any other sound
                // frame's root may be of the wrong kind: read now, where that is caught.
                if (m_own_layout)
                    m_root = frame.words + 1;
                else
                    m_message = capnp::readMessageUnchecked<schema::Message>(frame.words + 1);
                break;
            case Layout::garbled:
                return std::string(reason);
            case Layout::not_simple:
                m_checked = std::make_unique<capnp::FlatArrayMessageReader>(
                    kj::arrayPtr(frame.words, frame.word_count), m_options);
                m_message = m_checked->getRoot<schema::Message>();
                break;
        }
    } catch (const kj::Exception& e) {
        return std::string(e.getDescription().cStr());
    }
    return std::nullopt;
}

std::optional<std::string> FrameOpener::open_checked(const Frame& frame) {
    if (auto reason = open(frame)) return reason;
    if (m_own_layout) return std::nullopt;
    return check_message(message());
}

}  // namespace mh::wire
