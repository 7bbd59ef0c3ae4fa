// Deduplication by message id with bounded memory: the ids seen within a window of id
// time (UUIDv7 ids carry their Unix milliseconds in the first 6 bytes) behind the newest
// seen, up to a hard cap. A fixed-capacity open-addressing hash set (linear probing,
// backward-shift deletion) over a FIFO ring that holds the ids in arrival order, so that
// the oldest go first; nothing is allocated after construction.
#pragma once

#include "message/id.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace mh::filter {

constexpr uint64_t k_default_dedup_max = 1'000'000;
constexpr uint64_t k_max_dedup_entries = uint64_t{1} << 30;  // keeps slot numbers in 32 bits

class DedupSet {
  public:
    // Remembers at most `capacity` ids (1 to k_max_dedup_entries), each for `window_ns`
    // of id time behind the newest id seen (rounded up to whole milliseconds). Memory:
    // 32 bytes per entry of capacity, allocated here.
    DedupSet(size_t capacity, int64_t window_ns);

    enum class Seen { first, again };
    // Says whether `id` was seen before (and is still remembered), and remembers it.
    // An id older than the window behind the newest is not remembered: it is `first`
    // unless it is still in the set.
    Seen check(std::span<const uint8_t, 16> id);

    size_t size() const { return m_count; }
    size_t capacity() const { return m_capacity; }
    // Ids forgotten before their window ended because the set was full: each one is a
    // duplicate that may now pass. Never silent: the filter counts and logs them.
    uint64_t evicted() const { return m_evicted; }
    // Ids forgotten because they fell out of the window.
    uint64_t expired() const { return m_expired; }

  private:
    struct Slot {
        uint32_t entry;  // ring position + 1; 0 marks an empty slot
        uint32_t hash;   // low bits of the id's hash: its home slot, and a cheap first compare
    };

    size_t find(const MessageId& id, uint64_t hash) const;  // slot index, or k_none
    void insert(const MessageId& id, uint64_t hash);
    void remove_oldest();
    void erase_slot(size_t slot);

    static constexpr size_t k_none = ~size_t{0};

    size_t m_capacity;
    int64_t m_window_ms;
    std::vector<Slot> m_table;  // a power of two, at least twice the capacity
    size_t m_mask;
    std::unique_ptr<MessageId[]> m_ring;  // ids in arrival order, m_count of them from m_head
    size_t m_head = 0;
    size_t m_count = 0;
    int64_t m_newest_ms = 0;
    uint64_t m_evicted = 0;
    uint64_t m_expired = 0;
};

}  // namespace mh::filter
