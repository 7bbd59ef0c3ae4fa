// Opens frames for reading, cheaply and safely. Cap'n Proto's readers check bounds at every
// access, which costs more than the rest of a filter's work; a frame of one segment without
// far pointers (what every mh writer produces) is instead checked once, by a walk over its
// pointers, and then read without per-access checks. Any other frame goes through Cap'n
// Proto's checked reader. Either way no read of an opened frame leaves it: a pointer out of
// bounds is refused here, with the reason. What the walk does not judge is whether each
// pointer has the kind the schema says (text where text belongs): a read that meets one of
// the wrong kind throws kj::Exception, which readers catch and count as garbled.
#pragma once

#include "wire/frame.h"
#include "wire/message_view.h"

#include <capnp/serialize.h>

#include <memory>
#include <optional>
#include <string>

namespace mh::wire {

class FrameOpener {
  public:
    explicit FrameOpener(const FrameLimits& limits);

    // Checks `frame`; when it is sound, message() reads it until the next open() (the frame's
    // bytes must stay where they are until then). Returns the reason when it is garbled.
    std::optional<std::string> open(const Frame& frame);
    // open(), and when the frame is in mh's own layout (read_message_view() takes it) `view`
    // is filled too and own_layout() says so: the caller may read the view instead of the
    // message, without Cap'n Proto's per-access work.
    std::optional<std::string> open(const Frame& frame, MessageView& view);
    bool own_layout() const { return m_own_layout; }
    // open(), and every part judged now (check_message) unless the frame is in mh's own
    // layout, which read_message_view() already judged whole: what check_frame() does.
    std::optional<std::string> open_checked(const Frame& frame);
    // For a frame in mh's own layout made on first use after open() (it cannot throw
    // then): readers that read only the view never pay for Cap'n Proto's root reader.
    schema::Message::Reader message() const {
        if (m_root) {
            m_message = capnp::readMessageUnchecked<schema::Message>(m_root);
            m_root = nullptr;
        }
        return m_message;
    }

  private:
    std::optional<std::string> open(const Frame& frame, MessageView* view);

    capnp::ReaderOptions m_options;
    size_t m_max_frame_bytes;
    // For frames off the fast path. A pointer: the reader's destructor may throw (KJ's way),
    // which would make ours do so too.
    std::unique_ptr<capnp::FlatArrayMessageReader> m_checked;
    mutable schema::Message::Reader m_message;
    mutable const capnp::word* m_root = nullptr;  // a sound frame's segment, until message()
    bool m_own_layout = false;  // the last frame opened passed read_message_view()
};

// The walk behind the fast path, for tests and fuzzing: `sound` when every pointer of a
// one-segment frame lands inside it (within the nesting and traversal limits), `garbled`
// with the reason when one does not, `not_simple` for frames the walk does not judge
// (several segments, far pointers).
enum class Layout { sound, garbled, not_simple };
Layout check_layout(const Frame& frame, const capnp::ReaderOptions& options, const char** reason);

}  // namespace mh::wire
